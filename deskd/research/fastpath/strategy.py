"""What a strategy kernel is to :func:`deskd.research.fastpath.screen`, and the indicator
arrays it may ask for by key (shared across the points of a call, as the desk's indicator book
shares them across strategies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from deskd.research.fastpath import kernels as k

#: an indicator request: ("close",) (the bar closes themselves), ("ema", n), ("atr", n), ("adx", n) (Wilder; reads ("atr", n)),
#: ("ema_slope", n, window) and ("ema_deviation_z", n, window) (S2's statistics of EMA(n)),
#: ("atr_pct_z", n, window) (z-score of ATR(n)% = ATR / close x 100, S3's compression and the
#: book's atr_pct_z), ("prior_high", window) and ("prior_low", window) (S3's breakout levels)
IndicatorKey = tuple[Any, ...]
#: the indicator arrays of one data load from one first bar, by key
Indicators = Callable[[IndicatorKey], np.ndarray]


class Signals(NamedTuple):
    """What a kernel's signals come with, per bar: ``atr`` (price), the ATR its bracket is
    sized from, and ``score``, the value of the metric named ``score_name`` that the
    strategy reports with a signal (the trade's reason code, ``adx=31.42``)."""

    atr: np.ndarray
    score_name: str
    score: np.ndarray


class StrategyKernel(Protocol):
    """A strategy on arrays: the indicators a point's params need, and its signals."""

    def indicators(self, params: Any) -> list[IndicatorKey]:
        """The indicator keys the strategy reads for ``params``."""
        ...

    def signals(self, params: Any, pip_size: float, get: Indicators, start: int, end: int,
                out: np.ndarray) -> Signals:
        """Write the signal at the close of each bar in [start, end) into ``out`` (int8: +1
        LONG, -1 SHORT, 0 none); return the ATR its brackets are sized from and its score."""
        ...


def compute_indicator(key: IndicatorKey, high: np.ndarray, low: np.ndarray, close: np.ndarray, w0: int,
                      end: int, get: Indicators) -> np.ndarray:
    """Indicator ``key`` fed from bar ``w0`` to ``end`` - 1, shape (len(close),), NaN where
    undefined (an indicator built on another reads it through ``get``). Raises KeyError for
    an unknown kind."""
    kind = key[0]
    if kind == "close":
        return close
    if kind == "ema":
        return k.ema_close(close, key[1], w0, end)
    if kind == "atr":
        return k.atr_wilder(high, low, close, key[1], w0, end)
    if kind == "adx":
        return k.adx_wilder(high, low, get(("atr", key[1])), key[1], w0, end)
    if kind == "ema_slope":
        return k.ema_slope(get(("ema", key[1])), key[2], w0, end)
    if kind == "ema_deviation_z":
        return k.rolling_zscore(close - get(("ema", key[1])), key[2], w0, end)
    if kind == "atr_pct_z":
        return k.rolling_zscore(get(("atr", key[1])) / close * 100.0, key[2], w0, end)
    if kind == "prior_high":
        return k.prior_max(high, key[1], w0, end)
    if kind == "prior_low":
        return -k.prior_max(-low, key[1], w0, end)
    raise KeyError(f"unknown indicator kind {kind!r}")
