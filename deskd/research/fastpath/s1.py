"""S1's fast-path kernel: :class:`deskd.strategies.trend.TrendEmaAtrAdx` as arrays.

LONG while EMA(ema_fast) > EMA(ema_slow), SHORT while below (a state, not a crossover), only
when ADX(adx_period) > adx_th and ATR(atr_period) > 0; the bracket is sized from
ATR(atr_period). The indicators are the shared ones of :mod:`.strategy`, requested by key so
that points with the same periods share one array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from deskd.research.fastpath.strategy import IndicatorKey, Indicators, Signals
from deskd.strategies.trend import TrendEmaAtrAdx


@njit(cache=True)
def s1_signals(fast: np.ndarray, slow: np.ndarray, adx: np.ndarray, atr: np.ndarray, adx_th: float,
               start: int, end: int, out: np.ndarray) -> None:
    """S1's signal at the close of each bar in [start, end) into ``out`` (int8: +1 LONG,
    -1 SHORT, 0 none), from the indicator values after that bar
    (:meth:`deskd.strategies.trend.TrendEmaAtrAdx.on_bar`: a NaN compares False, so no signal
    while an indicator is undefined)."""
    for i in range(start, end):
        s = 0
        if adx[i] > adx_th:
            f = fast[i]
            sl = slow[i]
            if f > sl:
                s = 1
            elif f < sl:
                s = -1
            if s != 0 and not atr[i] > 0.0:
                s = 0
        out[i] = s


class TrendKernel:
    """S1 on arrays (:class:`deskd.research.fastpath.strategy.StrategyKernel`)."""

    strategy_class = TrendEmaAtrAdx

    @staticmethod
    def indicators(params: TrendEmaAtrAdx.Params) -> list[IndicatorKey]:
        """The indicator keys S1 reads for ``params``."""
        return [("ema", params.ema_fast), ("ema", params.ema_slow), ("adx", params.adx_period),
                ("atr", params.atr_period)]

    @staticmethod
    def signals(params: TrendEmaAtrAdx.Params, pip_size: float, get: Indicators, start: int, end: int,
                out: np.ndarray) -> Signals:
        """Write the signals of bars [start, end) into ``out`` (int8, one per bar); return the
        ATR (price) its brackets are sized from and its score, adx."""
        atr = get(("atr", params.atr_period))
        s1_signals(get(("ema", params.ema_fast)), get(("ema", params.ema_slow)),
                   get(("adx", params.adx_period)), atr, float(params.adx_th), start, end, out)
        return Signals(atr, "adx", get(("adx", params.adx_period)))
