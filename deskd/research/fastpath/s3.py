"""S3's fast-path kernel: :class:`deskd.strategies.breakout.BreakoutAtrCompression` as arrays.

compression_z = z-score of ATR(atr_period)% over compression_window bars (the indicator
book's atr_pct_z); breakout_high/low = highest high / lowest low of the breakout_window bars
before the bar. LONG when compression_z < compression_z_low and close > breakout_high and
close > EMA(ema_trend); SHORT the mirror. The bracket is sized from ATR(atr_period).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from deskd.research.fastpath.strategy import IndicatorKey, Indicators, Signals
from deskd.strategies.breakout import BreakoutAtrCompression


@njit(cache=True)
def s3_signals(close: np.ndarray, compression_z: np.ndarray, high_before: np.ndarray, low_before: np.ndarray,
               ema: np.ndarray, z_low: float, start: int, end: int, out: np.ndarray) -> None:
    """S3's signal at the close of each bar in [start, end) into ``out`` (int8: +1 LONG,
    -1 SHORT, 0 none), from the values after that bar
    (:meth:`deskd.strategies.breakout.BreakoutAtrCompression.on_bar`; a NaN compares False,
    so no signal while a value is undefined)."""
    for i in range(start, end):
        s = 0
        if compression_z[i] < z_low:
            c = close[i]
            e = ema[i]
            if c > high_before[i] and c > e:
                s = 1
            elif c < low_before[i] and c < e:
                s = -1
        out[i] = s


class BreakoutKernel:
    """S3 on arrays (:class:`deskd.research.fastpath.strategy.StrategyKernel`)."""

    strategy_class = BreakoutAtrCompression

    @staticmethod
    def indicators(params: BreakoutAtrCompression.Params) -> list[IndicatorKey]:
        """The indicator keys S3 reads for ``params``."""
        return [("atr", params.atr_period), ("atr_pct_z", params.atr_period, params.compression_window),
                ("prior_high", params.breakout_window), ("prior_low", params.breakout_window),
                ("ema", params.ema_trend)]

    @staticmethod
    def signals(params: BreakoutAtrCompression.Params, pip_size: float, get: Indicators, start: int, end: int,
                out: np.ndarray) -> Signals:
        """Write the signals of bars [start, end) into ``out`` (int8, one per bar); return the
        ATR (price) its brackets are sized from and its score, compression_z."""
        atr = get(("atr", params.atr_period))
        s3_signals(get(("close",)), get(("atr_pct_z", params.atr_period, params.compression_window)),
                   get(("prior_high", params.breakout_window)), get(("prior_low", params.breakout_window)),
                   get(("ema", params.ema_trend)), float(params.compression_z_low), start, end, out)
        return Signals(atr, "compression_z", get(("atr_pct_z", params.atr_period, params.compression_window)))
