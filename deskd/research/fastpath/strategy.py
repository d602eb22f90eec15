"""What a strategy kernel is to :func:`deskd.research.fastpath.screen`, and the indicator
arrays it may ask for by key (shared across the points of a call, as the desk's indicator book
shares them across strategies)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from deskd.research.fastpath import kernels as k

#: an indicator request: ("ema", n), ("atr", n), ("adx", n) (Wilder; reads ("atr", n)),
#: ("ema_slope", n, window) and ("ema_deviation_z", n, window) (S2's statistics of EMA(n))
IndicatorKey = tuple[Any, ...]
#: the indicator arrays of one data load from one first bar, by key
Indicators = Callable[[IndicatorKey], np.ndarray]


class StrategyKernel(Protocol):
    """A strategy on arrays: the indicators a point's params need, and its signals."""

    def indicators(self, params: Any) -> list[IndicatorKey]:
        """The indicator keys the strategy reads for ``params``."""
        ...

    def signals(self, params: Any, pip_size: float, get: Indicators, start: int, end: int,
                out: np.ndarray) -> np.ndarray:
        """Write the signal at the close of each bar in [start, end) into ``out`` (int8: +1
        LONG, -1 SHORT, 0 none) and return the ATR array (price) its brackets are sized from."""
        ...


def compute_indicator(key: IndicatorKey, high: np.ndarray, low: np.ndarray, close: np.ndarray, w0: int,
                      end: int, get: Indicators) -> np.ndarray:
    """Indicator ``key`` fed from bar ``w0`` to ``end`` - 1, shape (len(close),), NaN where
    undefined (an indicator built on another reads it through ``get``). Raises KeyError for
    an unknown kind."""
    kind = key[0]
    if kind == "ema":
        return k.ema_close(close, key[1], w0, end)
    if kind == "atr":
        return k.atr_wilder(high, low, close, key[1], w0, end)
    if kind == "adx":
        return k.adx_wilder(high, low, get(("atr", key[1])), key[1], w0, end)
    if kind == "ema_slope":
        return k.ema_slope(get(("ema", key[1])), key[2], w0, end)
    if kind == "ema_deviation_z":
        return k.ema_deviation_z(close, get(("ema", key[1])), key[2], w0, end)
    raise KeyError(f"unknown indicator kind {kind!r}")
