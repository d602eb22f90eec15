"""A strategy's entry filters: regime rules a signal must pass before the desk considers it.

The config's ``strategies.<id>.filters`` (:class:`deskd.configs.models.FiltersConfig`) is built,
per (strategy, symbol), into an :class:`EntryFilter` reading that symbol's shared indicator book
and regime tagger, so a filter costs one comparison per part per signal and nothing at all for a
strategy without filters. The desk asks it at each signal of the strategy
(:meth:`deskd.desk.desk.Desk.on_bar`); a blocked signal is journaled SKIPPED with the reason
:meth:`EntryFilter.check` gives (``filter:adx``, ``filter:atr_pct``, ``filter:vol``,
``filter:spike``, ``filter:hour``), before the position, conflict, guard and cap checks: a
filter is the strategy's own rule. Backtest, paper and live share the Desk, so they share this.

Every part reads values at the decision bar's close (bars at or before it only); an indicator
still undefined (warm-up) blocks, as the desk cannot tell whether the regime allows the entry.
"""

from __future__ import annotations

from deskd.configs.models import FiltersConfig
from deskd.core.events import BarClosed
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger

#: every reason :meth:`EntryFilter.check` may give, in the order the parts are checked
FILTER_REASONS = ("filter:adx", "filter:atr_pct", "filter:vol", "filter:spike", "filter:hour")

_INF = float("inf")


class EntryFilter:
    """One strategy's entry filters on one symbol (``spec``, see :class:`FiltersConfig`).

    Indicators the parts need (ADX(period), ATR(period)) are asked of ``book``, the symbol's
    shared :class:`IndicatorBook` (the same object as any strategy's of that key, updated once
    per bar); the VOL and SPIKE parts read ``regime``, the symbol's :class:`RegimeTagger`.
    Raises ValueError for a spec none of whose parts can block (the desk builds no filter then).
    """

    __slots__ = ("spec", "_adx", "_adx_lo", "_adx_hi", "_atr", "_atr_lo", "_atr_hi", "_regime", "_vols",
                 "_block_spike", "_hours")

    def __init__(self, spec: FiltersConfig, book: IndicatorBook, regime: RegimeTagger):
        if not spec.active:
            raise ValueError("these filters have no part that can block an entry")
        self.spec = spec
        a = spec.adx
        self._adx = book.adx(a.period) if a is not None else None
        self._adx_lo = a.min if a is not None and a.min is not None else -_INF
        self._adx_hi = a.max if a is not None and a.max is not None else _INF
        p = spec.atr_pct
        self._atr = book.atr(p.period) if p is not None else None
        self._atr_lo = p.min_pct if p is not None and p.min_pct is not None else -_INF
        self._atr_hi = p.max_pct if p is not None and p.max_pct is not None else _INF
        self._regime = regime
        self._vols = frozenset(spec.vol_regimes) if spec.vol_regimes is not None else None
        self._block_spike = spec.block_spike
        self._hours = frozenset(spec.hours_utc) if spec.hours_utc is not None else None

    def check(self, bar: BarClosed) -> str | None:
        """The reason the filters block an entry at the close of ``bar`` (one of
        :data:`FILTER_REASONS`, the first part that blocks), or None when they allow it.
        Call after the symbol's indicator book took ``bar``. Bounds are inclusive; an undefined
        ADX, ATR or VOL z-score blocks. The hour is that of the bar's close time, UTC."""
        adx = self._adx
        if adx is not None and not self._adx_lo <= adx.value <= self._adx_hi:  # NaN: False, blocks
            return "filter:adx"
        atr = self._atr
        if atr is not None and not self._atr_lo <= atr.value / bar.close * 100.0 <= self._atr_hi:
            return "filter:atr_pct"
        if self._vols is not None and self._regime.vol not in self._vols:
            return "filter:vol"
        if self._block_spike and self._regime.spike:
            return "filter:spike"
        if self._hours is not None and (bar.bar_ts + bar.timeframe_s) // 3600 % 24 not in self._hours:
            return "filter:hour"
        return None

    def warmup_bars(self) -> int:
        """Bars its indicators need before they are defined (:meth:`FiltersConfig.warmup_bars`)."""
        return self.spec.warmup_bars()
