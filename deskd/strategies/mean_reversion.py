"""S2_MR_ZSCORE_EMA_REGIME: fade stretched moves away from a flat long EMA in a quiet market."""

from __future__ import annotations

from pydantic import Field

from deskd.configs.models import StopsConfig, bar_count
from deskd.strategies.api import (
    LONG,
    SHORT,
    BarClosed,
    Dimension,
    SignalIntent,
    Strategy,
    StrategyContext,
    StrategyParams,
)
from deskd.strategies.indicators import RollingSlope, RollingZScore


class MeanReversionZScore(Strategy):
    """ema_base = EMA(ema_regime) of close; slope = least-squares slope of ema_base over
    slope_window bars, in pips per bar; mr_z = z-score of (close - ema_base) over z_window
    (population std). Gate: ADX < adx_max and |slope| < slope_th_pips_per_bar.
    SHORT when mr_z >= z_entry, LONG when mr_z <= -z_entry.

    The desk's old ``slope_th = 0.01`` was in price per bar (100 pips per bar on EURUSD), so the
    gate never closed; the threshold is now in pips per bar (default 0.5).
    """

    class Params(StrategyParams):
        ema_regime: int = bar_count(200, low=2)
        slope_window: int = bar_count(20, low=2)
        slope_th_pips_per_bar: float = Field(0.5, gt=0)
        z_window: int = bar_count(30, low=2)
        z_entry: float = Field(2.0, gt=0)
        adx_period: int = bar_count(14)
        adx_max: float = Field(20.0, ge=0, le=100)
        atr_period: int = bar_count(14)

        space = {"z_window": Dimension(low=20, high=60, step=10),
                 "z_entry": Dimension(low=1.5, high=3.0, step=0.25),
                 "adx_max": Dimension(low=15.0, high=30.0, step=5.0)}

    default_stops = StopsConfig(k_sl=1.5, min_sl_pips=8.0, k_tp=1.5, min_tp_pips=8.0)

    params: Params

    def __init__(self, ctx: StrategyContext, params: Params):
        super().__init__(ctx, params)
        p, book, pip_size = params, ctx.indicators, ctx.pip_size
        self.ema = book.ema(p.ema_regime)
        self.adx = book.adx(p.adx_period)
        self.atr = book.atr(p.atr_period)
        self.slope = RollingSlope(p.slope_window)
        self.z = RollingZScore(p.z_window)
        self.adx_max = p.adx_max
        self.slope_th_price = p.slope_th_pips_per_bar * pip_size
        self.z_entry = p.z_entry

    def warmup_bars(self) -> int:
        p = self.params
        return max(p.ema_regime + max(p.slope_window, p.z_window), 2 * p.adx_period, p.atr_period)

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:
        e = self.ema.value
        if e != e:
            return None
        self.slope.update(e)
        z = self.z
        z.update(bar.close - e)
        mr_z = z.value
        if not (mr_z >= self.z_entry or mr_z <= -self.z_entry):
            return None
        if not self.adx.value < self.adx_max:
            return None
        slope = self.slope.value
        if not abs(slope) < self.slope_th_price:
            return None
        atr = self.atr.value
        if not atr > 0.0:
            return None
        side = SHORT if mr_z > 0 else LONG
        return self.signal(bar, side, atr, "mr_z", mr_z)
