"""Breakdowns of a scenario's results: when and where the strategy works, and were the skips right.

All of it goes into report.json per scenario under ``breakdowns`` (and report.html draws it):

* ``payoff``: average win and average loss (USD and R), the payoff ratio (average win /
  |average loss|, in R; Tharp 1998's "reward to risk" of realised trades) and the win rate;
* ``by_hour_utc``, ``by_hour_new_york``, ``by_weekday``: per hour of the decision bar's close
  (UTC, and New York time with its daylight saving, the FX day's clock) and per UTC weekday of
  it: trades, win rate, expectancy (R per trade), net P&L (USD);
* ``mae_mfe_by_outcome``: for winning and losing trades, the mean and the 10th-90th
  percentiles of MAE and MFE in pips; ``mae_mfe_by_cf_result`` (with counterfactuals): the same for every decision's
  bracket by its result, in pips and in ATR units (the decision's ATR);
* ``drawdown_duration``: the longest stretch below a running peak of the marked equity (days,
  from the last peak to the first mark back at it, or to the end while still under water);
* ``skips`` (when the run has counterfactuals): per skip reason, the skipped signals, how many
  were good skips (their counterfactual lost: the skip saved money) and bad skips (it won: the
  skip cost money), and the R saved and cost (sum of -cf_pnl_r over good skips, of cf_pnl_r
  over bad ones); and the same for TRADED decisions for comparison;
* ``signals_by_regime`` (with counterfactuals): per regime tag of the decision (``VOL=HIGH|SPIKE=0``),
  every signal's bracket whatever the desk did with it: signals, traded, resolved, the
  counterfactual win rate and expectancy (R per signal), and the good and bad skips. The
  trades' own by-regime metrics are report.json's ``by_regime``.

Inputs are plain columns (DataFrames), so a backtest, a walk-forward's out-of-sample trades or
a stored run can all be broken down the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NEW_YORK = "America/New_York"


def _r(x: Any, nd: int) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def _group_stats(df: pd.DataFrame) -> dict[str, Any]:
    pnl = df["pnl_usd"].to_numpy(float)
    r = df["r_multiple"].to_numpy(float)
    n = len(df)
    return {"trades": n, "win_rate": _r((pnl > 0).mean(), 4) if n else None,
            "expectancy_r": _r(r.mean(), 4) if n else None, "net_usd": _r(pnl.sum(), 2)}


def by_time(trades: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``by_hour_utc``, ``by_hour_new_york`` and ``by_weekday`` of ``trades`` (columns
    ``signal_ts`` UTC epoch s, ``pnl_usd``, ``r_multiple``): per key, :func:`_group_stats`.
    Hours are "00".."23" (only those with trades), weekdays Mon..Sun."""
    if trades.empty:
        return {"by_hour_utc": {}, "by_hour_new_york": {}, "by_weekday": {}}
    t = pd.to_datetime(trades["signal_ts"].to_numpy(np.int64), unit="s", utc=True)
    keys = {"by_hour_utc": [f"{h:02d}" for h in t.hour],
            "by_hour_new_york": [f"{h:02d}" for h in t.tz_convert(NEW_YORK).hour],
            "by_weekday": [WEEKDAYS[d] for d in t.day_of_week]}
    out: dict[str, dict[str, Any]] = {}
    for name, k in keys.items():
        groups = trades.groupby(np.array(k), sort=False)
        order = WEEKDAYS if name == "by_weekday" else sorted(set(k))
        out[name] = {key: _group_stats(groups.get_group(key)) for key in order if key in set(k)}
    return out


def payoff(trades: pd.DataFrame) -> dict[str, Any]:
    """Average win and loss (USD and R), the payoff ratio in R (average winning R / |average
    losing R|; None without a loss) and the win rate. Winners have pnl_usd > 0, losers < 0."""
    pnl = trades["pnl_usd"].to_numpy(float)
    r = trades["r_multiple"].to_numpy(float)
    win, loss = pnl > 0, pnl < 0
    avg = (lambda x: float(x.mean()) if len(x) else math.nan)  # noqa: E731
    avg_win_r, avg_loss_r = avg(r[win]), avg(r[loss])
    return {"avg_win_usd": _r(avg(pnl[win]), 2), "avg_loss_usd": _r(avg(pnl[loss]), 2),
            "avg_win_r": _r(avg_win_r, 4), "avg_loss_r": _r(avg_loss_r, 4),
            "payoff_ratio": _r(avg_win_r / -avg_loss_r, 4) if loss.any() and win.any() and avg_loss_r < 0 else None,
            "win_rate": _r(win.mean(), 4) if len(pnl) else None}


def _quartiles(x: np.ndarray) -> dict[str, Any]:
    """``n``, ``mean`` and the 10th, 25th, 50th, 75th and 90th percentiles (linear
    interpolation, numpy's default) of the finite values of ``x``; ``{"n": 0}`` without any."""
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0}
    q = np.percentile(x, [10, 25, 50, 75, 90])
    return {"n": int(len(x)), "mean": _r(x.mean(), 3),
            **{f"p{k}": _r(v, 3) for k, v in zip((10, 25, 50, 75, 90), q)}}


def mae_mfe_by_outcome(trades: pd.DataFrame, atr_pips: np.ndarray | None = None) -> dict[str, Any]:
    """For WIN (pnl_usd > 0) and LOSS (< 0) trades: quartiles of ``mae_pips`` and ``mfe_pips``,
    and of the same over ``atr_pips`` (the decision ATR per trade, same order; NaN unknown)."""
    pnl = trades["pnl_usd"].to_numpy(float)
    out: dict[str, Any] = {}
    for name, sel in (("WIN", pnl > 0), ("LOSS", pnl < 0)):
        mae, mfe = trades["mae_pips"].to_numpy(float)[sel], trades["mfe_pips"].to_numpy(float)[sel]
        d = {"mae_pips": _quartiles(mae), "mfe_pips": _quartiles(mfe)}
        if atr_pips is not None:
            atr = np.asarray(atr_pips, float)[sel]
            with np.errstate(divide="ignore", invalid="ignore"):
                d["mae_atr"] = _quartiles(np.where(atr > 0, mae / atr, np.nan))
                d["mfe_atr"] = _quartiles(np.where(atr > 0, mfe / atr, np.nan))
        out[name] = d
    return out


def drawdown_duration(ts: np.ndarray, equity_usd: np.ndarray) -> dict[str, Any]:
    """The longest stretch under a running peak of ``equity_usd`` at times ``ts`` (UTC epoch s,
    ascending): days from the peak's mark to the first mark at or above it again (or to the
    last mark, ``recovered`` False), with the peak's and the end's times."""
    if len(ts) < 2:
        return {"days": 0.0, "from": None, "to": None, "recovered": True}
    best = (0, 0, 0, True)  # (length s, start index, end index, recovered)
    peak_i = 0
    for i in range(1, len(ts)):
        if equity_usd[i] >= equity_usd[peak_i]:
            if ts[i] - ts[peak_i] > best[0] and i - peak_i > 1:
                best = (int(ts[i] - ts[peak_i]), peak_i, i, True)
            peak_i = i
    if peak_i < len(ts) - 1 and ts[-1] - ts[peak_i] > best[0]:
        best = (int(ts[-1] - ts[peak_i]), peak_i, len(ts) - 1, False)
    from deskd.core.time import iso

    length, a, b, rec = best
    return {"days": round(length / 86400.0, 3), "from": iso(int(ts[a])) if length else None,
            "to": iso(int(ts[b])) if length else None, "recovered": rec}


def skips(cf: pd.DataFrame) -> dict[str, Any]:
    """Were the skips right? ``cf``: one row per decision with ``action`` (TRADED / SKIPPED),
    ``reason``, ``cf_result`` (WIN / LOSS, empty or None when the bracket never resolved) and
    ``cf_pnl_r``. Per skip reason: ``signals``, ``good`` (skipped and the counterfactual lost),
    ``bad`` (skipped and it won), ``unresolved``, ``saved_r`` (sum of -cf_pnl_r over good skips)
    and ``cost_r`` (sum of cf_pnl_r over bad skips), ``net_r`` = saved - cost (> 0: the skips
    of that reason paid); ``traded``: the same counts for what was taken."""
    res = cf["cf_result"].astype(object).where(cf["cf_result"].notna(), "")
    r = pd.to_numeric(cf["cf_pnl_r"], errors="coerce").fillna(0.0)
    win, loss = res == "WIN", res == "LOSS"
    out: dict[str, Any] = {"by_reason": {}}
    skipped = cf["action"].astype(str) == "SKIPPED"
    for reason, idx in cf[skipped].groupby("reason", sort=True).groups.items():
        w, lo = win[idx], loss[idx]
        saved, cost = float(-r[idx][lo].sum()), float(r[idx][w].sum())
        out["by_reason"][str(reason)] = {"signals": int(len(idx)), "good": int(lo.sum()), "bad": int(w.sum()),
                                         "unresolved": int(len(idx) - lo.sum() - w.sum()),
                                         "saved_r": round(saved, 4), "cost_r": round(cost, 4),
                                         "net_r": round(saved - cost, 4)}
    t = ~skipped
    out["traded"] = {"signals": int(t.sum()), "won": int((win & t).sum()), "lost": int((loss & t).sum()),
                     "sum_cf_r": round(float(r[t].sum()), 4)}
    all_skips = out["by_reason"].values()
    out["skipped"] = {k: sum(v[k] for v in all_skips) for k in ("signals", "good", "bad", "unresolved")}
    out["skipped"].update({k: round(sum(v[k] for v in all_skips), 4) for k in ("saved_r", "cost_r", "net_r")})
    return out


def signals_by_regime(cf: pd.DataFrame) -> dict[str, Any]:
    """Per ``regime`` of ``cf`` (one row per decision: ``regime``, ``action``, ``cf_result``,
    ``cf_pnl_r``), sorted by name: ``signals``, ``traded``, ``resolved`` (brackets that reached
    an exit), ``cf_win_rate`` and ``cf_expectancy_r`` (mean cf_pnl_r) over the resolved ones
    (None without any), ``good_skips`` and ``bad_skips`` (skipped, and the bracket lost / won)."""
    res = cf["cf_result"].astype(object)
    r = pd.to_numeric(cf["cf_pnl_r"], errors="coerce")
    skipped = (cf["action"].astype(str) == "SKIPPED").to_numpy()
    out: dict[str, Any] = {}
    for regime, idx in cf.groupby(cf["regime"].astype(str), sort=True).indices.items():
        won, lost = (res.iloc[idx] == "WIN").to_numpy(), (res.iloc[idx] == "LOSS").to_numpy()
        resolved = won | lost
        rr = r.iloc[idx].to_numpy(float)[resolved]
        sk = skipped[idx]
        out[str(regime)] = {"signals": int(len(idx)), "traded": int((~sk).sum()), "resolved": int(resolved.sum()),
                            "cf_win_rate": _r(won.sum() / resolved.sum(), 4) if resolved.any() else None,
                            "cf_expectancy_r": _r(rr.mean(), 4) if len(rr) else None,
                            "good_skips": int((sk & lost).sum()), "bad_skips": int((sk & won).sum())}
    return out


def counterfactual_breakdowns(cf: pd.DataFrame) -> dict[str, Any]:
    """The breakdowns a run's counterfactuals give (one row per decision, counterfactuals.parquet's
    columns): ``skips`` (:func:`skips`), ``by_regime`` (:func:`signals_by_regime`; when ``cf``
    has a ``regime`` column) and ``mae_mfe_by_cf_result``: for every decision whose bracket
    resolved, by its result (WIN / LOSS), the mean and 10th-90th percentiles of its MAE and MFE
    in pips and in ATR units (the decision's ATR)."""
    out: dict[str, Any] = {"skips": skips(cf), "mae_mfe_by_cf_result": {}}
    if "regime" in cf.columns:
        out["signals_by_regime"] = signals_by_regime(cf)
    res = cf["cf_result"].astype(object)
    for name in ("WIN", "LOSS"):
        sel = (res == name).to_numpy()
        out["mae_mfe_by_cf_result"][name] = {
            c.removeprefix("cf_"): _quartiles(pd.to_numeric(cf.loc[sel, c], errors="coerce").to_numpy(float))
            for c in ("cf_mae_pips", "cf_mfe_pips", "cf_mae_atr", "cf_mfe_atr")}
    return out
