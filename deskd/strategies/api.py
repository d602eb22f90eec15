"""The strategy API: what a strategy is to the desk, for deskd's own S1-S3 and for yours.

A strategy is a class with an id (given by the config), params (a pydantic model, validated
with the rest of the config: a bad value names its key path), the indicators it asks of its
symbol's :class:`~deskd.strategies.indicators.IndicatorBook`, a warm-up, and ``on_bar``::

    from deskd.strategies.api import LONG, Strategy, StrategyContext, StrategyParams, bar_count

    class Donchian(Strategy):
        class Params(StrategyParams):
            window: int = bar_count(20, low=2)   # a bar count, bounded like every window
            atr_period: int = bar_count(14)

        def __init__(self, ctx: StrategyContext, params: Params):
            super().__init__(ctx, params)
            self.range = ctx.indicators.prior_range(params.window)
            self.atr = ctx.indicators.atr(params.atr_period)

        def warmup_bars(self) -> int:
            return max(self.params.window, 2 * self.params.atr_period)

        def on_bar(self, bar):
            if bar.close > self.range.high:
                return self.signal(bar, LONG, self.atr.value, "breakout", bar.close - self.range.high)
            return None

The contract (DESIGN.md, "bar and fill contract"): ``on_bar(bar)`` is called once per closed
bar of the strategy's symbol, after that symbol's shared indicators took the bar; it returns a
:class:`~deskd.core.events.SignalIntent` (made with :meth:`Strategy.signal`, which sizes the
bracket from ATR) or None. The desk decides on that close and fills at the next bar's open.
It may use only bars at or before ``bar``: check yours with
:func:`deskd.testing.lookahead.assert_no_lookahead`. Indicators are shared and O(1) per bar:
ask the book for ``ema(n)``, ``atr(n)``, ``adx(n)``, ``prior_range(n)``, ``atr_pct_z(n, w)``;
the same request from two strategies returns the same object, updated once.

Loaded from the config by id (S1-S3), by import path (``class: "my_desk.donchian:Donchian"``,
importable from the config's folder or the environment) or by the name of an entry point in
the ``deskd.strategies`` group (packaged strategies). Several ids may share one class with
different params.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from deskd.configs.models import Dimension, StopsConfig, StrategyParams, bar_count
from deskd.core.events import LONG, SHORT, BarClosed, SignalIntent
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger

__all__ = ["LONG", "SHORT", "BarClosed", "Dimension", "SignalIntent", "StopsConfig", "Strategy", "StrategyContext",
           "StrategyParams", "bar_count"]

_new = tuple.__new__  # builds the NamedTuple without its Python-level __new__ (hot path)


@dataclass(frozen=True)
class StrategyContext:
    """What the desk hands a strategy on one symbol: its config ``strategy_id``, the
    ``symbol`` and its ``pip_size`` (price units per pip), the symbol's shared
    ``indicators`` and ``regime`` tagger, and the bracket rule ``stops``."""

    strategy_id: str
    symbol: str
    pip_size: float
    indicators: IndicatorBook
    regime: RegimeTagger
    stops: StopsConfig


class Strategy:
    """One strategy on one symbol (see the module docstring for the contract).

    Subclasses set ``Params`` (a :class:`StrategyParams` model; the default takes none) and
    may set ``default_stops`` (used when the config gives no ``stops``), build their
    indicators in ``__init__`` after calling ``super().__init__(ctx, params)``, and implement
    :meth:`on_bar` and :meth:`warmup_bars`.
    """

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    default_stops: ClassVar[StopsConfig] = StopsConfig()

    def __init__(self, ctx: StrategyContext, params: StrategyParams):
        self.strategy_id = ctx.strategy_id
        self.symbol = ctx.symbol
        self.pip_size = ctx.pip_size
        self.regime = ctx.regime
        self.params = params
        stops = ctx.stops
        self.k_sl = stops.k_sl
        self.min_sl_pips = stops.min_sl_pips
        self.k_tp = stops.k_tp
        self.min_tp_pips = stops.min_tp_pips

    def warmup_bars(self) -> int:
        """Bars of history the strategy needs before its signals mean what they say (its
        longest indicator window; Wilder's ADX needs two periods). The desk warns when a
        file holds fewer, and ``--from`` reads this many bars before the window."""
        return 0

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:  # pragma: no cover - interface
        """The signal at the close of ``bar`` (this strategy's symbol), or None."""
        raise NotImplementedError

    def signal(self, bar: BarClosed, side: int, atr_price: float, score_name: str,
               score: float) -> SignalIntent:
        """The intent for ``side`` (LONG or SHORT) at ``bar``'s close with its bracket in pips:
        sl_pips = max(k_sl x ATR_pips, min_sl_pips), tp_pips = max(k_tp x ATR_pips,
        min_tp_pips), or None when k_tp is unset; ATR_pips = ``atr_price`` / pip_size.
        ``score_name``/``score`` say why (journaled with the decision)."""
        atr_pips = atr_price / self.pip_size
        sl = max(self.k_sl * atr_pips, self.min_sl_pips)
        tp = None if self.k_tp is None else max(self.k_tp * atr_pips, self.min_tp_pips)
        return _new(SignalIntent, (bar.bar_ts, self.symbol, self.strategy_id, side, sl, tp,
                                   atr_pips, self.regime.tag, score_name, score))
