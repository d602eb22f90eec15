"""S3_BREAKOUT_ATR_REGIME_EMA200: trade a range break after volatility compression."""

from __future__ import annotations

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


class BreakoutAtrCompression(Strategy):
    """ATR% = ATR / close x 100; compression_z = z-score of ATR% over compression_window
    (population std); breakout_high/low = highest high / lowest low of the breakout_window
    bars before t. LONG when compression_z < compression_z_low and close > breakout_high and
    close > EMA(ema_trend); SHORT the mirror."""

    class Params(StrategyParams):
        atr_period: int = bar_count(14)
        compression_window: int = bar_count(50, low=2)
        compression_z_low: float = -0.5
        breakout_window: int = bar_count(20)
        ema_trend: int = bar_count(200, low=2)

        space = {"compression_window": Dimension(low=30, high=90, step=20),
                 "compression_z_low": Dimension(low=-1.0, high=0.0, step=0.25),
                 "breakout_window": Dimension(low=10, high=40, step=5)}

    default_stops = StopsConfig(k_sl=1.5, min_sl_pips=10.0, k_tp=3.0, min_tp_pips=15.0)

    params: Params

    def __init__(self, ctx: StrategyContext, params: Params):
        super().__init__(ctx, params)
        p, book = params, ctx.indicators
        self.atr = book.atr(p.atr_period)
        self.ema = book.ema(p.ema_trend)
        self.range = book.prior_range(p.breakout_window)
        self.cz = book.atr_pct_z(p.atr_period, p.compression_window)
        self.z_low = p.compression_z_low

    def warmup_bars(self) -> int:
        p = self.params
        return max(p.atr_period + p.compression_window, p.breakout_window + 1, p.ema_trend)

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:
        cz = self.cz.value
        if not cz < self.z_low:  # also False while undefined
            return None
        c = bar.close
        e = self.ema.value
        if c > self.range.high and c > e:
            side = LONG
        elif c < self.range.low and c < e:
            side = SHORT
        else:
            return None
        return self.signal(bar, side, self.atr.value, "compression_z", cz)
