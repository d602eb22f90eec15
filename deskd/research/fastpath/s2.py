"""S2's fast-path kernel: :class:`deskd.strategies.mean_reversion.MeanReversionZScore` as arrays.

ema_base = EMA(ema_regime); mr_z = z-score of (close - ema_base) over z_window bars; slope =
least-squares slope of ema_base over slope_window bars (both fed from the bar where ema_base
is defined, as the strategy feeds them). SHORT when mr_z >= z_entry, LONG when
mr_z <= -z_entry, only when ADX(adx_period) < adx_max, |slope| < slope_th_pips_per_bar x pip
and ATR(atr_period) > 0; the bracket is sized from ATR(atr_period).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from deskd.research.fastpath.strategy import IndicatorKey, Indicators, Signals
from deskd.strategies.mean_reversion import MeanReversionZScore


@njit(cache=True)
def s2_signals(ema: np.ndarray, mr_z: np.ndarray, slope: np.ndarray, adx: np.ndarray, atr: np.ndarray,
               z_entry: float, adx_max: float, slope_th_price: float, start: int, end: int,
               out: np.ndarray) -> None:
    """S2's signal at the close of each bar in [start, end) into ``out`` (int8: +1 LONG,
    -1 SHORT, 0 none), from the values after that bar
    (:meth:`deskd.strategies.mean_reversion.MeanReversionZScore.on_bar`; a NaN compares
    False, so no signal while a value is undefined)."""
    for i in range(start, end):
        s = 0
        z = mr_z[i]
        if (ema[i] == ema[i] and (z >= z_entry or z <= -z_entry) and adx[i] < adx_max
                and abs(slope[i]) < slope_th_price and atr[i] > 0.0):
            s = -1 if z > 0 else 1
        out[i] = s


class MeanReversionKernel:
    """S2 on arrays (:class:`deskd.research.fastpath.strategy.StrategyKernel`)."""

    strategy_class = MeanReversionZScore

    @staticmethod
    def indicators(params: MeanReversionZScore.Params) -> list[IndicatorKey]:
        """The indicator keys S2 reads for ``params``."""
        return [("ema", params.ema_regime), ("ema_deviation_z", params.ema_regime, params.z_window),
                ("ema_slope", params.ema_regime, params.slope_window), ("adx", params.adx_period),
                ("atr", params.atr_period)]

    @staticmethod
    def signals(params: MeanReversionZScore.Params, pip_size: float, get: Indicators, start: int, end: int,
                out: np.ndarray) -> Signals:
        """Write the signals of bars [start, end) into ``out`` (int8, one per bar); return the
        ATR (price) its brackets are sized from and its score, mr_z."""
        atr = get(("atr", params.atr_period))
        s2_signals(get(("ema", params.ema_regime)), get(("ema_deviation_z", params.ema_regime, params.z_window)),
                   get(("ema_slope", params.ema_regime, params.slope_window)), get(("adx", params.adx_period)),
                   atr, float(params.z_entry), float(params.adx_max),
                   params.slope_th_pips_per_bar * pip_size, start, end, out)
        return Signals(atr, "mr_z", get(("ema_deviation_z", params.ema_regime, params.z_window)))
