"""A strategy's entry filters on arrays: which bars' signals :class:`deskd.strategies.filters.EntryFilter`
lets through, computed from the same indicator arrays the kernels read.

A filtered signal on the event path is journaled and never traded, and changes nothing else, so
the fast path's equivalent is a signal of 0 at that bar: :func:`screen` ANDs each kernel's
signals with :func:`entry_mask`. Every comparison is the event path's on the same float64
values (ATR% is ``atr / close * 100.0`` there and here), so the contract holds trade for trade
(``tests/research/test_fastpath.py`` runs filtered cases).
"""

from __future__ import annotations

import math

import numpy as np

from deskd.configs.models import DeskConfig, FiltersConfig
from deskd.research.fastpath.strategy import Indicators


def regime_parts(cfg: DeskConfig, high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray,
                 atr_pct_z: np.ndarray, at: np.ndarray, w0: int) -> tuple[np.ndarray, np.ndarray]:
    """The regime tagger's two parts at the close of each bar index in ``at``
    (:class:`deskd.strategies.regime.RegimeTagger`): the VOL class (int64: 0 UNKNOWN while the
    z-score of ATR(regime.atr_period)% ``atr_pct_z`` is undefined, 1 LOW, 2 MID, 3 HIGH) and
    SPIKE (bool: the bar's true range > spike_tr_atr_th x the ATR before it, ``atr`` being
    ATR(regime.atr_period); both fed from bar ``w0``, whose first bar has no true range).
    Shapes (len(at),)."""
    rg = cfg.regime
    z = atr_pct_z[at]
    vol = np.where(np.isnan(z), 0, np.where(z < rg.vol_z_low, 1, np.where(z > rg.vol_z_high, 3, 2)))
    h, lo, pc = high[at], low[at], close[at - 1]
    tr = np.maximum(np.maximum(h - lo, np.abs(h - pc)), np.abs(lo - pc))
    before = at > w0  # the first bar fed has no true range, nor an ATR before it
    with np.errstate(invalid="ignore"):
        spike = before & (tr > rg.spike_tr_atr_th * np.where(before, atr[at - 1], math.nan))
    return vol.astype(np.int64), spike


_VOL_CODE = {"LOW": 1, "MID": 2, "HIGH": 3}


def entry_mask(cfg: DeskConfig, spec: FiltersConfig, ts: np.ndarray, high: np.ndarray, low: np.ndarray,
               close: np.ndarray, timeframe_s: int, get: Indicators, w0: int, start: int,
               end: int) -> np.ndarray:
    """Whether ``spec`` allows an entry at the close of each bar in [start, end) (bool, shape
    (end - start,)), with indicators fed from bar ``w0`` (``get``: the screen's shared arrays):
    min <= ADX(period) <= max, min_pct <= ATR(period) / close x 100 <= max_pct (open bounds
    where null; an undefined value blocks), the VOL class in ``vol_regimes`` (UNKNOWN blocks),
    no SPIKE when ``block_spike``, the UTC hour of the bar's close in ``hours_utc``. ``ts``:
    the bars' open times (UTC epoch s)."""
    sl = slice(start, end)
    ok = np.ones(end - start, dtype=bool)
    with np.errstate(invalid="ignore"):
        if spec.adx is not None:
            a = spec.adx
            v = get(("adx", a.period))[sl]
            ok &= (v >= (-math.inf if a.min is None else a.min)) & (v <= (math.inf if a.max is None else a.max))
        if spec.atr_pct is not None:
            p = spec.atr_pct
            v = get(("atr", p.period))[sl] / close[sl] * 100.0
            ok &= ((v >= (-math.inf if p.min_pct is None else p.min_pct))
                   & (v <= (math.inf if p.max_pct is None else p.max_pct)))
    if spec.vol_regimes is not None or spec.block_spike:
        rg = cfg.regime
        at = np.arange(start, end, dtype=np.int64)
        vol, spike = regime_parts(cfg, high, low, close, get(("atr", rg.atr_period)),
                                  get(("atr_pct_z", rg.atr_period, rg.vol_z_window)), at, w0)
        if spec.vol_regimes is not None:
            ok &= np.isin(vol, [_VOL_CODE[v] for v in spec.vol_regimes])
        if spec.block_spike:
            ok &= ~spike
    if spec.hours_utc is not None:
        ok &= np.isin((ts[sl] + timeframe_s) // 3600 % 24, spec.hours_utc)
    return ok
