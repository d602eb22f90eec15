"""S1_TREND_EMA_ATR_ADX: trade with the trend while it is strong."""

from __future__ import annotations

from pydantic import Field, model_validator

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


class TrendEmaAtrAdx(Strategy):
    """LONG while EMA(ema_fast) > EMA(ema_slow), SHORT while below (a state, not a crossover),
    only when ADX(adx_period) > adx_th. Brackets from ATR(atr_period)."""

    class Params(StrategyParams):
        ema_fast: int = bar_count(20)
        ema_slow: int = bar_count(50, low=2)
        adx_period: int = bar_count(14)
        adx_th: float = Field(25.0, ge=0, le=100)
        atr_period: int = bar_count(14)

        space = {"ema_fast": Dimension(low=5, high=40, step=5),
                 "ema_slow": Dimension(low=30, high=120, step=10),
                 "adx_th": Dimension(low=15.0, high=35.0, step=5.0)}

        @model_validator(mode="after")
        def _fast_below_slow(self):
            if self.ema_fast >= self.ema_slow:
                raise ValueError("ema_fast must be shorter than ema_slow")
            return self

    default_stops = StopsConfig()

    params: Params

    def __init__(self, ctx: StrategyContext, params: Params):
        super().__init__(ctx, params)
        book = ctx.indicators
        self.fast = book.ema(params.ema_fast)
        self.slow = book.ema(params.ema_slow)
        self.adx = book.adx(params.adx_period)
        self.atr = book.atr(params.atr_period)
        self.adx_th = params.adx_th

    def warmup_bars(self) -> int:
        p = self.params
        return max(p.ema_slow, 2 * p.adx_period, p.atr_period)

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
