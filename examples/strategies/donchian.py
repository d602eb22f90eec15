"""A Donchian channel breakout, written as a desk user would write a strategy for deskd.

LONG when the close breaks above the highest high of the ``window`` bars before it, SHORT when
it breaks below their lowest low; only while ADX(``adx_period``) shows a trend (> ``adx_min``).
The stop-loss and take-profit come from ATR through the config's ``stops`` (or
``default_stops`` below).
"""

from __future__ import annotations

from pydantic import Field

from deskd.strategies.api import (
    LONG,
    SHORT,
    BarClosed,
    Dimension,
    SignalIntent,
    StopsConfig,
    Strategy,
    StrategyContext,
    StrategyParams,
    bar_count,
)


class Donchian(Strategy):
    """Donchian breakout with an ADX filter (see the module docstring)."""

    class Params(StrategyParams):
        window: int = bar_count(20, low=2)      # bars in the channel, before the signal bar
        atr_period: int = bar_count(14)         # ATR for the bracket
        adx_period: int = bar_count(14)
        adx_min: float = Field(20.0, ge=0, le=100)

        # what `deskd tune` may vary, and over what (the config's tune.space can override)
        space = {"window": Dimension(low=10, high=60, step=10),
                 "adx_min": Dimension(low=15.0, high=30.0, step=5.0)}

    default_stops = StopsConfig(k_sl=2.0, min_sl_pips=10.0, k_tp=4.0, min_tp_pips=20.0)
    params: Params

    def __init__(self, ctx: StrategyContext, params: Params):
        super().__init__(ctx, params)
        book = ctx.indicators  # shared with every other strategy on the symbol
        self.channel = book.prior_range(params.window)
        self.atr = book.atr(params.atr_period)
        self.adx = book.adx(params.adx_period)

    def warmup_bars(self) -> int:
        return max(self.params.window + 1, 2 * self.params.adx_period, self.params.atr_period)

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:
        if not self.adx.value > self.params.adx_min:  # False while ADX is still undefined
            return None
        atr = self.atr.value
        if not atr > 0.0:
            return None
        if bar.close > self.channel.high:
            return self.signal(bar, LONG, atr, "breakout_pips", (bar.close - self.channel.high) / self.pip_size)
        if bar.close < self.channel.low:
            return self.signal(bar, SHORT, atr, "breakout_pips", (self.channel.low - bar.close) / self.pip_size)
        return None
