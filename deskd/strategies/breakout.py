"""S3_BREAKOUT_ATR_REGIME_EMA200: trade a range break after volatility compression."""

from __future__ import annotations

from deskd.configs.models import S3_ID, S3Config
from deskd.core.events import LONG, SHORT, BarClosed, SignalIntent
from deskd.strategies.base import Strategy
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger


class BreakoutAtrCompression(Strategy):
    """ATR% = ATR / close x 100; compression_z = z-score of ATR% over compression_window
    (population std); breakout_high/low = highest high / lowest low of the breakout_window
    bars before t. LONG when compression_z < compression_z_low and close > breakout_high and
    close > EMA(ema_trend); SHORT the mirror."""

    strategy_id = S3_ID

    def __init__(self, symbol: str, pip_size: float, cfg: S3Config, book: IndicatorBook,
                 regime: RegimeTagger):
        super().__init__(symbol, pip_size, cfg.stops, regime)
        p = cfg.params
        self.atr = book.atr(p.atr_period)
        self.ema = book.ema(p.ema_trend)
        self.range = book.prior_range(p.breakout_window)
        self.cz = book.atr_pct_z(p.atr_period, p.compression_window)
        self.z_low = p.compression_z_low

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
