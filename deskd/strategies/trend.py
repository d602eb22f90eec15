"""S1_TREND_EMA_ATR_ADX: trade with the trend while it is strong."""

from __future__ import annotations

from deskd.configs.models import S1_ID, S1Config
from deskd.core.events import LONG, SHORT, BarClosed, SignalIntent
from deskd.strategies.base import Strategy
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger


class TrendEmaAtrAdx(Strategy):
    """LONG while EMA(ema_fast) > EMA(ema_slow), SHORT while below (a state, not a crossover),
    only when ADX(adx_period) > adx_th. Brackets from ATR(atr_period)."""

    strategy_id = S1_ID

    def __init__(self, symbol: str, pip_size: float, cfg: S1Config, book: IndicatorBook,
                 regime: RegimeTagger):
        super().__init__(symbol, pip_size, cfg.stops, regime)
        p = cfg.params
        self.fast = book.ema(p.ema_fast)
        self.slow = book.ema(p.ema_slow)
        self.adx = book.adx(p.adx_period)
        self.atr = book.atr(p.atr_period)
        self.adx_th = p.adx_th

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:
        adx = self.adx.value
        if not adx > self.adx_th:  # also False while ADX is NaN
            return None
        f = self.fast.value
        s = self.slow.value
        if f > s:
            side = LONG
        elif f < s:
            side = SHORT
        else:  # equal, or either EMA still NaN
            return None
        atr = self.atr.value
        if not atr > 0.0:
            return None
        return self.signal(bar, side, atr, "adx", adx)
