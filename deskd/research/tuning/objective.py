"""The tuner's objective: a score that rewards a parameter point for being good in every part
of the in-sample period, not for one lucky stretch.

The scored window [start, end) is cut into ``n`` consecutive segments of equal calendar length
(:func:`segment_edges`); a trade belongs to the segment its entry fill falls in. Per segment one
metric of its trades (units in :data:`OBJECTIVE_UNITS`); then

    score = mean(m_1..m_n) - std(m_1..m_n, ddof=1) - dd_penalty x max_dd_frac

(the desk's robust score: the mean minus the standard deviation of the split scores, with its
drawdown penalty; ``max_dd_frac`` is the run's deepest fall from peak equity, marked to market).
A segment with fewer than ``min_trades`` trades makes the point ineligible: no score (NaN),
ranked after every scored point, and the reason kept. Ranking is by score descending, NaN
last, ties by trial number: never a raw sort of a list with NaN or infinities in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from deskd.configs.models import TuneConfig

#: what each objective measures, per segment
OBJECTIVE_UNITS = {
    "expectancy_r": "R per trade (mean of pnl_usd / planned risk_usd)",
    "sharpe_r": "mean / sample std of the trades' R, per trade (not annualised)",
    "profit_factor": "gross profit / gross loss (dimensionless, capped at tune.pf_cap)",
    "net_usd": "USD (sum of pnl_usd)",
}


@dataclass(frozen=True)
class Score:
    """A point's score (NaN when ineligible, with ``reason``), the metric per segment (in the
    objective's units; NaN for a segment without trades) and the trades per segment."""

    score: float
    per_split: list[float]
    trades_per_split: list[int]
    reason: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def eligible(self) -> bool:
        return math.isfinite(self.score)


def segment_edges(start_ts: int, end_ts: int, n: int) -> np.ndarray:
    """``n + 1`` edges (UTC epoch seconds, int64) cutting [start_ts, end_ts) into ``n``
    segments of equal calendar length. Raises ValueError when the window is empty or n < 1."""
    if n < 1 or end_ts <= start_ts:
        raise ValueError(f"cannot cut [{start_ts}, {end_ts}) into {n} segments")
    return np.array([start_ts + (end_ts - start_ts) * i // n for i in range(n + 1)], dtype=np.int64)


def _metric(objective: str, r: np.ndarray, pnl_usd: np.ndarray, pf_cap: float) -> float:
    if len(r) == 0:
        return math.nan
    if objective == "expectancy_r":
        return float(r.mean())
    if objective == "sharpe_r":
        if len(r) < 2:
            return math.nan
        sd = float(r.std(ddof=1))
        return float(r.mean()) / sd if sd > 0 else math.nan
    if objective == "profit_factor":
        gross_win = float(pnl_usd[pnl_usd > 0].sum())
        gross_loss = float(-pnl_usd[pnl_usd < 0].sum())
        return min(gross_win / gross_loss, pf_cap) if gross_loss > 0 else (pf_cap if gross_win > 0 else 0.0)
    if objective == "net_usd":
        return float(pnl_usd.sum())
    raise ValueError(f"unknown objective {objective!r} (one of {', '.join(OBJECTIVE_UNITS)})")


def robust_score(entry_ts: np.ndarray, r: np.ndarray, pnl_usd: np.ndarray, max_dd_frac: float,
                 edges: np.ndarray, tune: TuneConfig) -> Score:
    """Score one run. ``entry_ts`` (UTC epoch s), ``r`` (R-multiples) and ``pnl_usd`` (USD)
    are per trade, same length; trades outside [edges[0], edges[-1]) are ignored. Uses
    ``tune``'s objective, min_trades_per_split, dd_penalty and pf_cap."""
    seg = np.searchsorted(edges, entry_ts, side="right") - 1
    n = len(edges) - 1
    counts = [int(c) for c in np.bincount(seg[(seg >= 0) & (seg < n)], minlength=n)]
    per = [_metric(tune.objective, r[seg == i], pnl_usd[seg == i], tune.pf_cap) for i in range(n)]
    few = [i + 1 for i, c in enumerate(counts) if c < tune.min_trades_per_split]
    if few:
        return Score(math.nan, per, counts, f"fewer than {tune.min_trades_per_split} trades in split(s) "
                                            f"{', '.join(map(str, few))}")
    if any(not math.isfinite(m) for m in per):
        return Score(math.nan, per, counts, f"{tune.objective} undefined in a split (no dispersion)")
    vals = np.array(per)
    score = float(mean_minus_std(vals) - tune.dd_penalty * max_dd_frac)
    return Score(score, per, counts)


def mean_minus_std(values: np.ndarray) -> float:
    """The desk's robust score of per-split values: mean - sample std (ddof 1), in the values'
    units; NaN for fewer than two values."""
    return float(values.mean() - values.std(ddof=1)) if len(values) >= 2 else math.nan


def rank_order(scores: list[float], trial_numbers: list[int]) -> list[int]:
    """Indices that sort trials best first: score descending, NaN (ineligible) last, ties by
    the lower trial number."""
    return sorted(range(len(scores)),
                  key=lambda i: (0, -scores[i], trial_numbers[i]) if math.isfinite(scores[i])
                  else (1, 0.0, trial_numbers[i]))
