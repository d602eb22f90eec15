"""S2_MR_ZSCORE_EMA_REGIME: fade stretched moves away from a flat long EMA in a quiet market."""

from __future__ import annotations

from deskd.configs.models import S2_ID, S2Config
from deskd.core.events import LONG, SHORT, BarClosed, SignalIntent
from deskd.strategies.base import Strategy
from deskd.strategies.indicators import IndicatorBook, RollingSlope, RollingZScore
from deskd.strategies.regime import RegimeTagger


class MeanReversionZScore(Strategy):
    """ema_base = EMA(ema_regime) of close; slope = least-squares slope of ema_base over
    slope_window bars, in pips per bar; mr_z = z-score of (close - ema_base) over z_window
    (population std). Gate: ADX < adx_max and |slope| < slope_th_pips_per_bar.
    SHORT when mr_z >= z_entry, LONG when mr_z <= -z_entry.

    The desk's old ``slope_th = 0.01`` was in price per bar (100 pips per bar on EURUSD), so the
    gate never closed; the threshold is now in pips per bar (default 0.5).
    """

    strategy_id = S2_ID

    def __init__(self, symbol: str, pip_size: float, cfg: S2Config, book: IndicatorBook,
                 regime: RegimeTagger):
        super().__init__(symbol, pip_size, cfg.stops, regime)
        p = cfg.params
        self.ema = book.ema(p.ema_regime)
        self.adx = book.adx(p.adx_period)
        self.atr = book.atr(p.atr_period)
        self.slope = RollingSlope(p.slope_window)
        self.z = RollingZScore(p.z_window)
        self.adx_max = p.adx_max
        self.slope_th_price = p.slope_th_pips_per_bar * pip_size
        self.z_entry = p.z_entry

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
