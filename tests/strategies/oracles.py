"""Vectorised pandas/numpy versions of every indicator: the oracles the incremental ones must
equal. Written from the definitions in deskd.strategies.indicators' docstring, not from its code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


def _seeded_ewm(x: pd.Series, first: int, n_seed: int, alpha: float) -> pd.Series:
    """NaN before ``first``; at ``first`` the mean of x[first-n_seed+1 .. first]; then
    y = (1 - alpha) y + alpha x."""
    out = pd.Series(np.nan, index=x.index)
    if len(x) <= first:
        return out
    y = x.iloc[first:].copy()
    y.iloc[0] = x.iloc[first - n_seed + 1:first + 1].mean()
    out.iloc[first:] = y.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def ema(x: pd.Series, n: int) -> pd.Series:
    return _seeded_ewm(x, n - 1, n, 2.0 / (n + 1))


def true_range(h: pd.Series, l: pd.Series, c: pd.Series) -> pd.Series:
    pc = c.shift(1)
    return pd.concat([h - l, (h - pc).abs(), (l - pc).abs()], axis=1).max(axis=1, skipna=False)


def atr(h, l, c, n: int) -> pd.Series:
    return _seeded_ewm(true_range(h, l, c), n, n, 1.0 / n)


def adx(h, l, c, n: int) -> pd.Series:
    up = h.diff()
    dn = -l.diff()
    pdm = pd.Series(np.where((up > dn) & (up > 0), up, 0.0), index=h.index)
    mdm = pd.Series(np.where((dn > up) & (dn > 0), dn, 0.0), index=h.index)
    tr = true_range(h, l, c)
    s_tr = _seeded_ewm(tr, n, n, 1.0 / n)
    s_p = _seeded_ewm(pdm, n, n, 1.0 / n)
    s_m = _seeded_ewm(mdm, n, n, 1.0 / n)
    pos = s_tr > 0
    pdi = pd.Series(np.where(pos, 100 * s_p / s_tr.where(pos, 1.0), 0.0), index=h.index).where(s_tr.notna())
    mdi = pd.Series(np.where(pos, 100 * s_m / s_tr.where(pos, 1.0), 0.0), index=h.index).where(s_tr.notna())
    tot = pdi + mdi
    dx = pd.Series(np.where(tot > 0, 100 * (pdi - mdi).abs() / tot.where(tot > 0, 1.0), 0.0),
                   index=h.index).where(tot.notna())
    return _seeded_ewm(dx, 2 * n - 1, n, 1.0 / n)


def zscore(x: pd.Series, w: int) -> pd.Series:
    """Exact two-pass window mean/std (ddof=0); NaN where std <= 1e-9 x the window's RMS."""
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        win = sliding_window_view(x.to_numpy(dtype=float), w)
        mean = win.mean(axis=1)
        std = np.sqrt(((win - mean[:, None]) ** 2).mean(axis=1))
        rms = np.sqrt((win ** 2).mean(axis=1))
        z = (win[:, -1] - mean) / np.where(std > 0, std, 1.0)
        out[w - 1:] = np.where(std > 1e-9 * rms, z, np.nan)
    return pd.Series(out, index=x.index)


def slope(y: pd.Series, w: int) -> pd.Series:
    """Least-squares slope per window by numpy.polyfit."""
    out = np.full(len(y), np.nan)
    if len(y) >= w:
        win = sliding_window_view(y.to_numpy(dtype=float), w)
        xs = np.arange(w)
        out[w - 1:] = np.polyfit(xs, win.T, 1)[0]
    return pd.Series(out, index=y.index)


def prior_high(h: pd.Series, w: int) -> pd.Series:
    return h.shift(1).rolling(w).max()


def prior_low(l: pd.Series, w: int) -> pd.Series:
    return l.shift(1).rolling(w).min()
