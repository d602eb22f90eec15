"""``deskd tune --filters``: which entry filters (:mod:`deskd.strategies.filters`) a strategy
deserves, scored out of sample on walk-forward splits, thresholds chosen without leakage.

The strategy's params stay as the config has them; the search is over filter *candidates*
(:class:`Candidate`), the product of ``tune.filters``' lists, plus the baseline (no filter at
all), so a desk sees whether any filter helps. Thresholds are quantile levels: per split
(:mod:`deskd.research.splits`), :func:`train_thresholds` turns each level into an absolute value
over the TRAIN window's bars only (ADX and ATR% computed on the bars before the train window's
end and nothing after; a test changes every later bar and the thresholds stay). The candidate
with those thresholds then trades the TEST window through the event path (the real Desk, the
strategy alone, indicators warmed on the bars before it, as :mod:`deskd.research.walkforward`
runs a test window) under the base scenario (``tune.stage1_scenario``) and under that scenario's
costs scaled ``cost_stress_multiple`` times (:meth:`deskd.configs.models.ScenarioConfig.scaled`),
and gets the split score

    expectancy_r - lambda_dd x |max_dd_frac| - mu_dd_days x longest DD (days)
                 - nu_cost x (expectancy_r(base) - expectancy_r(stressed))

(expectancy in R per trade; drawdown fraction of peak equity and its longest duration, peak to
recovery or to the window's end, from the base run). Candidate score = mean - std (ddof 1) of
its split scores (:func:`deskd.research.tuning.objective.mean_minus_std`); a split with fewer
than ``min_trades_per_split`` trades makes it ineligible (ranked last, reason kept).

Thresholds are pooled over the strategy's symbols (one filter per strategy): run with
``--symbols`` for a symbol's own thresholds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskd.configs.models import DeskConfig, FiltersConfig, FilterTuneConfig, StrategiesConfig
from deskd.core.time import iso
from deskd.research.progress import RunProgress
from deskd.research.splits import Split
from deskd.research.tuning.objective import mean_minus_std, rank_order
from deskd.research.tuning.summary import signed
from deskd.research.tuning.tune import TuneError, _Pool, jsonable, request_stop, run_tasks

__all__ = ["Candidate", "FilterTuneOptions", "candidates", "filter_tune", "request_stop", "summary",
           "train_thresholds"]

WIDTH = 80
DAY_S = 86_400


@dataclass(frozen=True)
class Candidate:
    """One filter candidate: quantile levels (0..1) for the ADX minimum and the ATR% band (None:
    that part off), the VOL regimes allowed (None: all), the spike block, and the name of an hour
    set of ``tune.filters.hours_utc`` (its value None: every hour). ``number`` 0 is the baseline."""

    number: int
    adx_min_q: float | None = None
    atr_pct_band_q: tuple[float, float] | None = None
    vol_regimes: tuple[str, ...] | None = None
    block_spike: bool = False
    hours: str | None = None

    def is_baseline(self, hour_sets: dict[str, list[int] | None]) -> bool:
        """Whether this candidate filters nothing (every part off, or the hour set is every hour)."""
        return (self.adx_min_q is None and self.atr_pct_band_q is None and self.vol_regimes is None
                and not self.block_spike and (self.hours is None or hour_sets.get(self.hours) is None))

    def label(self, hour_sets: dict[str, list[int] | None]) -> str:
        """A short description, e.g. ``adx>=q0.25 atr%[q0.1,q0.9] vol=LOW,MID no-spike hours=london_ny``."""
        if self.is_baseline(hour_sets):
            return "none (baseline)"
        parts = []
        if self.adx_min_q is not None:
            parts.append(f"adx>=q{self.adx_min_q:g}")
        if self.atr_pct_band_q is not None:
            parts.append(f"atr%[q{self.atr_pct_band_q[0]:g},q{self.atr_pct_band_q[1]:g}]")
        if self.vol_regimes is not None:
            parts.append("vol=" + ",".join(self.vol_regimes))
        if self.block_spike:
            parts.append("no-spike")
        if self.hours is not None and hour_sets.get(self.hours) is not None:
            parts.append(f"hours={self.hours}")
        return " ".join(parts)

    def filters(self, thresholds: dict[str, dict[float, float]], grid: FilterTuneConfig) -> FiltersConfig | None:
        """The absolute filters of this candidate for one split's ``thresholds`` (quantile level
        -> value, see :func:`train_thresholds`); None for the baseline."""
        if self.is_baseline(grid.hours_utc):
            return None
        d: dict[str, Any] = {}
        if self.adx_min_q is not None:
            d["adx"] = {"period": grid.adx_period, "min": thresholds["adx"][self.adx_min_q]}
        if self.atr_pct_band_q is not None:
            lo, hi = self.atr_pct_band_q
            d["atr_pct"] = {"period": grid.atr_pct_period, "min_pct": thresholds["atr_pct"][lo],
                            "max_pct": max(thresholds["atr_pct"][hi], thresholds["atr_pct"][lo])}
        if self.vol_regimes is not None:
            d["vol_regimes"] = list(self.vol_regimes)
        if self.block_spike:
            d["block_spike"] = True
        hours = grid.hours_utc.get(self.hours) if self.hours is not None else None
        if hours is not None:
            d["hours_utc"] = sorted(hours)
        return FiltersConfig.model_validate(d)

    def columns(self) -> dict[str, Any]:
        """filters.csv's columns of this candidate: its quantile levels, regime set, spike block, hours."""
        lo, hi = self.atr_pct_band_q or (None, None)
        return {"adx_min_q": self.adx_min_q, "atr_pct_lo_q": lo, "atr_pct_hi_q": hi,
                "vol_regimes": ",".join(self.vol_regimes) if self.vol_regimes is not None else "",
                "block_spike": self.block_spike, "hours": self.hours or ""}


def candidates(grid: FilterTuneConfig) -> list[Candidate]:
    """The baseline (number 0) and every other candidate of ``grid``'s product, numbered from 1
    in the product's order; a product entry equal to the baseline is not repeated."""
    out = [Candidate(0)]
    for adx_q, band, vols, spike, hours in itertools.product(
            grid.adx_min_q, grid.atr_pct_band_q, grid.vol_regimes, grid.block_spike, grid.hours_utc):
        c = Candidate(len(out), adx_q, (band[0], band[1]) if band is not None else None,
                      tuple(vols) if vols is not None else None, spike, hours)
        if not c.is_baseline(grid.hours_utc):
            out.append(c)
    return out


# -- thresholds from the train window ------------------------------------------------------------

def train_thresholds(cfg: DeskConfig, symbols: list[str], bars: dict[str, Any], start_ts: int, end_ts: int,
                     grid: FilterTuneConfig) -> dict[str, dict[float, float]]:
    """Absolute thresholds for every quantile level of ``grid``: ``{"adx": {q: ADX value},
    "atr_pct": {q: ATR % of the close}}``, the q-th quantiles (numpy's linear interpolation) of
    ADX(adx_period) and ATR(atr_pct_period) / close x 100 over the bars of ``symbols`` opening in
    [start_ts, end_ts) (pooled; undefined values dropped). ``bars``: symbol ->
    :class:`deskd.research.fastpath.BarArrays`. The indicators are computed from each file's
    first bar on the bars BEFORE ``end_ts`` only (the arrays are cut there first), so no bar at
    or after ``end_ts`` is read. Raises TuneError when the window holds no defined value."""
    from deskd.research.fastpath import kernels as k

    adx_vals, atr_vals = [], []
    for sym in symbols:
        b = bars[sym]
        n = int(np.searchsorted(b.ts, end_ts, side="left"))
        first = int(np.searchsorted(b.ts, start_ts, side="left"))
        h, lo, c = b.high[:n].copy(), b.low[:n].copy(), b.close[:n].copy()  # nothing after the window
        atr_adx = k.atr_wilder(h, lo, c, grid.adx_period, 0, n)
        adx_vals.append(k.adx_wilder(h, lo, atr_adx, grid.adx_period, 0, n)[first:n])
        atr = atr_adx if grid.atr_pct_period == grid.adx_period else k.atr_wilder(h, lo, c, grid.atr_pct_period, 0, n)
        atr_vals.append((atr / c * 100.0)[first:n])
    out: dict[str, dict[float, float]] = {}
    for name, parts, levels in (("adx", adx_vals, [q for q in grid.adx_min_q if q is not None]),
                                ("atr_pct", atr_vals, sorted({q for b in grid.atr_pct_band_q if b is not None
                                                              for q in b}))):
        vals = np.concatenate(parts) if parts else np.array([])
        vals = vals[~np.isnan(vals)]
        if levels and len(vals) == 0:
            raise TuneError(f"the train window {iso(start_ts)} to {iso(end_ts)} holds no bar with a defined "
                            f"{name.upper().replace('_PCT', '%')}: lengthen --train")
        out[name] = {q: float(np.quantile(vals, q)) for q in levels}
    return out


# -- one (candidate, split) run, in a worker -------------------------------------------------------

@dataclass(frozen=True)
class FilterJob:
    """What every run of one filter tune shares (small, picklable): the config as JSON data
    (the strategy alone, the stressed scenario added to its costs), its folder, the strategy,
    the base and stressed scenario names."""

    config: dict[str, Any]
    config_dir: str | None
    strategy_id: str
    base: str
    stressed: str

    @property
    def key(self) -> str:
        blob = json.dumps([self.config, self.strategy_id, self.base, self.stressed], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class FilterTask:
    """One candidate on one split's test window [test_start, test_end) (UTC epoch s) with its
    absolute ``filters`` (FiltersConfig as JSON data; None: the baseline)."""

    candidate: int
    split: int
    test_start: int
    test_end: int
    filters: dict[str, Any] | None


@dataclass
class SplitRun:
    """A candidate's run on one test window: trades and expectancy (R per trade) under the
    base and the stressed scenario, the base run's max drawdown (fraction of peak equity) and
    longest drawdown (days); ``status`` ok or error (``reason``)."""

    candidate: int
    split: int
    status: str = "ok"
    reason: str = ""
    trades: int = 0
    expectancy_r: float = math.nan
    expectancy_r_stressed: float = math.nan
    max_dd_frac: float = 0.0
    dd_days: float = 0.0
    duration_s: float = 0.0
    score: float = math.nan  # filled in by the parent (it knows the weights)


def longest_drawdown_days(equity_rows: list[tuple], end_ts: int) -> float:
    """The longest time (days) equity spent below a previous peak: from the peak's time to the
    first mark back at or above it, or to ``end_ts`` when it never got back. ``equity_rows``:
    the ledger's (ts, kind, equity_usd, ...) marks in time order (they keep every peak and
    trough between marks, :class:`deskd.desk.ledger.Ledger`)."""
    peak, peak_ts, below, longest = -math.inf, 0, False, 0
    for row in equity_rows:
        ts, eq = row[0], row[2]
        if eq >= peak:
            if below:
                longest = max(longest, ts - peak_ts)
            peak, peak_ts, below = eq, ts, False
        else:
            below = True
    if below:
        longest = max(longest, end_ts - peak_ts)
    return longest / DAY_S


class _FilterEvaluator:
    """A worker's state for one :class:`FilterJob`: the validated config and its bars in memory."""

    def __init__(self, job: FilterJob):
        from deskd.adapters.replay import MemoryFeed, replay_feed

        self.config_dir = Path(job.config_dir) if job.config_dir else None
        self.cfg = DeskConfig.model_validate(job.config, context={"config_dir": self.config_dir})
        self.job = job
        self.feed = MemoryFeed.read(replay_feed(self.cfg))

    def with_filters(self, filters: FiltersConfig | None) -> DeskConfig:
        sid = self.job.strategy_id
        root = dict(self.cfg.strategies.root)
        root[sid] = root[sid].model_copy(update={"filters": filters})  # class and params stay resolved
        return self.cfg.model_copy(update={"strategies": StrategiesConfig.model_construct(root=root)})

    def run(self, task: FilterTask) -> list[SplitRun]:
        """``task``'s candidate on its test window under the base and the stressed scenario
        (task 0 only reads and checks the data). Never raises for a run: a failure is a
        SplitRun with status error."""
        from deskd.adapters.replay import Window
        from deskd.research.backtest import run_scenario

        t0 = time.perf_counter()
        out = SplitRun(task.candidate, task.split)
        try:
            cfg = self.with_filters(FiltersConfig.model_validate(task.filters) if task.filters is not None else None)
            window = Window(task.test_start, task.test_end, warmup_bars=None)
            base = run_scenario(cfg, self.job.base, None, window=window, feed=self.feed)
            stressed = run_scenario(cfg, self.job.stressed, None, window=window, feed=self.feed)
        except Exception as e:  # noqa: BLE001 - a strategy's own bug is this run's error, not the tune's
            out.status, out.reason = "error", f"{type(e).__name__}: {e}"
            return [out]
        out.trades = len(base.trades)
        out.expectancy_r = float(np.mean([t.r_multiple for t in base.trades])) if base.trades else math.nan
        out.expectancy_r_stressed = (float(np.mean([t.r_multiple for t in stressed.trades]))
                                     if stressed.trades else math.nan)
        out.max_dd_frac = base.max_dd[1]
        out.dd_days = longest_drawdown_days(base.equity_rows, task.test_end)
        out.duration_s = time.perf_counter() - t0
        return [out]


_EVALUATORS: dict[str, _FilterEvaluator] = {}


def evaluate_filters(job: FilterJob, task: FilterTask) -> list[SplitRun]:
    """The task function sent to workers (one evaluator per job and process, built on first
    use). Raises BarFileError / ValueError only when the job itself cannot be set up."""
    ev = _EVALUATORS.get(job.key)
    if ev is None:
        _EVALUATORS.clear()
        ev = _EVALUATORS[job.key] = _FilterEvaluator(job)
    return ev.run(task)


# -- the tune ----------------------------------------------------------------------------------------

@dataclass
class FilterTuneOptions:
    """``splits`` as :mod:`deskd.research.splits` made them (``spec`` says how, for the
    record); ``workers`` processes (1: this one) or a Dask ``cluster``; outputs into ``out_dir``."""

    strategy_id: str
    out_dir: Path
    splits: list[Split]
    spec: dict[str, Any]
    workers: int = 1
    cluster: str | None = None
    config_dir: Path | None = None


@dataclass
class FilterTuneOutcome:
    """The ranked candidates (filters.csv's rows) and filters.json's content."""

    ranking: pd.DataFrame
    meta: dict[str, Any]
    runs: list[SplitRun] = field(default_factory=list)


def split_score(run: SplitRun, grid: FilterTuneConfig) -> dict[str, float]:
    """The split score and its parts (R per trade): ``cost_sensitivity_r`` = expectancy(base)
    - expectancy(stressed); ``dd_penalty`` = lambda_dd x |max_dd_frac|; ``dd_days_penalty`` =
    mu_dd_days x dd_days; ``cost_penalty`` = nu_cost x cost_sensitivity_r; ``score`` =
    expectancy_r - the three (NaN when the run failed or had too few trades)."""
    sens = run.expectancy_r - run.expectancy_r_stressed
    parts = {"cost_sensitivity_r": sens, "dd_penalty": grid.lambda_dd * abs(run.max_dd_frac),
             "dd_days_penalty": grid.mu_dd_days * run.dd_days, "cost_penalty": grid.nu_cost * sens}
    ok = run.status == "ok" and run.trades >= grid.min_trades_per_split
    parts["score"] = (run.expectancy_r - parts["dd_penalty"] - parts["dd_days_penalty"] - parts["cost_penalty"]
                      if ok else math.nan)
    return parts


def filter_tune(cfg: DeskConfig, opts: FilterTuneOptions, quiet: bool = False) -> FilterTuneOutcome:
    """Score every candidate of ``cfg.tune.filters`` on ``opts.splits`` and write filters.csv and
    filters.json into ``opts.out_dir`` (whole or not at all). Raises TuneError (fewer than two
    splits, a train window without defined indicators, a worker that cannot load the data),
    KeyboardInterrupt (Ctrl-C: nothing written)."""
    from deskd.research.fastpath import load_bars
    from deskd.research.tuning.space import SearchSpace
    from deskd.research.tuning.tune import _STOP

    _STOP.clear()
    sid = opts.strategy_id
    grid = cfg.tune.filters
    if len(opts.splits) < 2:
        raise TuneError(f"{len(opts.splits)} walk-forward split: the score is mean - std over splits and needs "
                        f"at least 2 (shorten --train or --test)")
    base = cfg.tune.stage1_scenario
    try:
        stressed, alone = SearchSpace.of(cfg, sid).config_for({}, opts.config_dir).with_scaled_scenario(
            base, grid.cost_stress_multiple)
    except ValueError as e:
        raise TuneError(str(e)) from None
    d = json.loads(json.dumps(alone.model_dump(mode="json", by_alias=True)))
    d["strategies"][sid].pop("filters", None)  # each candidate brings its own
    job = FilterJob(d, str(opts.config_dir) if opts.config_dir else None, sid, base, stressed)
    symbols = cfg.strategy_symbols(sid)
    try:
        evaluate_filters(job, FilterTask(0, 0, 0, 0, None))  # the data read and checked here, before any worker
        bars = {s: load_bars(alone, s) for s in symbols}
    except (ValueError, KeyError, OSError) as e:
        raise TuneError(str(e).strip("'\"")) from None
    thresholds = {sp.number: train_thresholds(alone, symbols, bars, sp.train_start, sp.train_end, grid)
                  for sp in opts.splits}
    cands = candidates(grid)
    todo = iter([(c, sp) for c in cands for sp in opts.splits])
    total = len(cands) * len(opts.splits)
    runs: dict[tuple[int, int], SplitRun] = {}
    prog = RunProgress("deskd tune --filters", total, "runs (candidate x split)", quiet=quiet)

    def next_task() -> FilterTask | None:
        nxt = next(todo, None)
        if nxt is None:
            return None
        c, sp = nxt
        f = c.filters(thresholds[sp.number], grid)
        return FilterTask(c.number, sp.number, sp.test_start, sp.test_end,
                          f.model_dump(mode="json") if f is not None else None)

    def done(run: SplitRun) -> None:
        run.score = split_score(run, grid)["score"]
        runs[(run.candidate, run.split)] = run
        prog.tick()

    pool = _Pool(opts.workers, opts.cluster, evaluate_filters)
    try:
        run_tasks(pool, job, next_task, done)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pool.close(cancel=True)
        raise
    pool.close()
    prog.finish()
    ranking = _ranking(cands, opts.splits, runs, grid)
    meta = _meta(cfg, opts, grid, base, stressed, cands, thresholds, ranking, symbols)
    _write(opts.out_dir, ranking, meta)
    return FilterTuneOutcome(ranking, meta, list(runs.values()))


def _ranking(cands: list[Candidate], splits: list[Split], runs: dict[tuple[int, int], SplitRun],
             grid: FilterTuneConfig) -> pd.DataFrame:
    """filters.csv: one row per candidate, best first (score descending, ineligible last)."""
    rows = []
    for c in cands:
        row: dict[str, Any] = {"candidate": c.number, "filters": c.label(grid.hours_utc), **c.columns()}
        scores, reasons = [], []
        for sp in splits:
            r = runs[(c.number, sp.number)]
            parts = split_score(r, grid)
            scores.append(parts["score"])
            if r.status != "ok":
                reasons.append(f"split {sp.number}: {r.reason}")
            elif r.trades < grid.min_trades_per_split:
                reasons.append(f"split {sp.number}: {r.trades} trades (fewer than {grid.min_trades_per_split})")
            i = sp.number
            row.update({f"s{i}_score": parts["score"], f"s{i}_trades": r.trades, f"s{i}_expectancy_r": r.expectancy_r,
                        f"s{i}_expectancy_r_stressed": r.expectancy_r_stressed, f"s{i}_max_dd_frac": r.max_dd_frac,
                        f"s{i}_dd_days": r.dd_days, f"s{i}_cost_sensitivity_r": parts["cost_sensitivity_r"],
                        f"s{i}_dd_penalty": parts["dd_penalty"], f"s{i}_dd_days_penalty": parts["dd_days_penalty"],
                        f"s{i}_cost_penalty": parts["cost_penalty"]})
        vals = np.array(scores)
        ok = bool(np.isfinite(vals).all())
        row["score"] = mean_minus_std(vals) if ok else math.nan
        row["mean"] = float(vals.mean()) if ok else math.nan
        row["std"] = float(vals.std(ddof=1)) if ok else math.nan
        row["reason"] = "; ".join(reasons)
        rows.append(row)
    order = rank_order([r["score"] for r in rows], [r["candidate"] for r in rows])
    df = pd.DataFrame([rows[i] for i in order])
    df.insert(0, "rank", range(1, len(df) + 1))
    lead = ["rank", "candidate", "score", "mean", "std", "filters"]
    return df[lead + [c for c in df.columns if c not in lead]]


def _paste_block(sid: str, f: FiltersConfig | None) -> dict[str, Any]:
    """``{"strategies": {sid: {"filters": ...}}}``: the parts ``f`` sets (periods included)."""
    d = f.model_dump(mode="json", exclude_none=True) if f is not None else None
    if d is not None and not d.get("block_spike"):
        d.pop("block_spike", None)
    return {"strategies": {sid: {"filters": d}}}


def _meta(cfg: DeskConfig, opts: FilterTuneOptions, grid: FilterTuneConfig, base: str, stressed: str,
          cands: list[Candidate], thresholds: dict[int, dict[str, dict[float, float]]], ranking: pd.DataFrame,
          symbols: list[str]) -> dict[str, Any]:
    from deskd import __version__
    from deskd.research.backtest import inputs_fingerprint

    by_number = {c.number: c for c in cands}
    top = ranking.iloc[0]
    eligible = bool(np.isfinite(top["score"]))
    best = by_number[int(top["candidate"])] if eligible else None
    base_row = ranking[ranking["candidate"] == 0].iloc[0]
    splits = []
    for sp in opts.splits:
        th = thresholds[sp.number]
        f = best.filters(th, grid) if best is not None else None
        splits.append({**sp.as_dict(), "thresholds": {k: {f"{q:g}": v for q, v in t.items()} for k, t in th.items()},
                       "best_filters": f.model_dump(mode="json", exclude_none=True) if f is not None else None})
    last = opts.splits[-1]
    paste = best.filters(thresholds[last.number], grid) if best is not None else None
    return {
        "deskd_version": __version__,
        "strategy_id": opts.strategy_id,
        "symbols": symbols,
        "splits_spec": opts.spec,
        "scenarios": {"base": base, "stressed": stressed, "cost_stress_multiple": grid.cost_stress_multiple,
                      "stressed_config": cfg.costs.scenarios[base].scaled(grid.cost_stress_multiple).model_dump()},
        "weights": {"lambda_dd": grid.lambda_dd, "mu_dd_days": grid.mu_dd_days, "nu_cost": grid.nu_cost,
                    "min_trades_per_split": grid.min_trades_per_split},
        "score": {"split": "expectancy_r - lambda_dd x |max_dd_frac| - mu_dd_days x dd_days - nu_cost x "
                           "(expectancy_r - expectancy_r_stressed)",
                  "candidate": "mean - std (ddof 1) of the split scores",
                  "units": "R per trade; max_dd_frac a fraction of peak equity; dd_days the longest drawdown in days",
                  "thresholds": "quantiles over the train window's bars only, pooled over the symbols",
                  "caveat": f"the best of {len(cands)} candidates by their test-window scores: an optimistic score; "
                            f"judge the chosen filters on bars after the last split"},
        "grid": grid.model_dump(mode="json"),
        "candidates": len(cands),
        "splits": splits,
        "best": None if best is None else {"candidate": best.number, "filters": best.label(grid.hours_utc),
                                           "score": float(top["score"]), "mean": float(top["mean"]),
                                           "std": float(top["std"])},
        "baseline": {"rank": int(base_row["rank"]), "score": float(base_row["score"])},
        "paste": {"train_from": iso(last.train_start), "train_to": iso(last.train_end),
                  "config": _paste_block(opts.strategy_id, paste)} if best is not None else None,
        **inputs_fingerprint(cfg),
    }


def _write(out: Path, ranking: pd.DataFrame, meta: dict[str, Any]) -> None:
    """filters.csv and (last) filters.json into ``out``, whole or not at all."""
    from deskd.research.outputs import write_folder

    def write_json(p: Path) -> None:
        p.write_text(json.dumps(jsonable(meta), indent=2, allow_nan=False) + "\n")

    try:
        write_folder(out, {"filters.csv": lambda p: ranking.to_csv(p, index=False), "filters.json": write_json},
                     "filters.json")
    except FileExistsError as e:
        raise TuneError(str(e)) from None


# -- the terminal summary -------------------------------------------------------------------------

def paste_yaml(block: dict[str, Any]) -> str:
    """The ``strategies: {id: {filters: ...}}`` block as YAML to paste into a desk config."""
    import yaml

    return yaml.safe_dump(block, default_flow_style=None, sort_keys=False, width=WIDTH - 4).rstrip()


def summary(meta: dict[str, Any], ranking: pd.DataFrame, top: int = 10) -> str:
    """The terminal summary, 80 columns: what was searched and how it was scored, the best
    ``top`` candidates (score, mean and std of split scores, filters), the baseline's rank, and
    the best candidate's filters on the last train window as a block to paste."""
    w = meta["weights"]
    sc = meta["scenarios"]
    spec = meta["splits_spec"]
    kind = "anchored" if spec.get("anchored") else "rolling"
    how = (f"train {spec['train_bars']:,} bars, test {spec['test_bars']:,}, embargo {spec['embargo_bars']:,}"
           if spec.get("unit") == "bars" else f"train {spec.get('train')}, test {spec.get('test')}, "
                                              f"embargo {spec.get('embargo')}")
    lines = [f"filter tune {meta['strategy_id']} on {','.join(meta['symbols'])}: {meta['candidates']} candidates",
             f"  {len(meta['splits'])} splits ({kind}, {how})",
             f"  split score = expectancy_r - {w['lambda_dd']:g} x |max DD| - {w['mu_dd_days']:g} x DD days",
             f"                - {w['nu_cost']:g} x cost sensitivity ({sc['base']} vs {sc['stressed']})",
             "  score = mean - std of split scores; thresholds from train bars only", "",
             f"{'#':>3} {'score':>7} {'mean':>7} {'std':>6}  filters"]
    for row in ranking.head(top).to_dict("records"):
        std = f"{row['std']:.3f}" if math.isfinite(row["std"]) else "-"
        text = row["filters"] if math.isfinite(row["score"]) else f"{row['filters']}: {row['reason']}"
        head = f"{row['rank']:>3} {signed(row['score']):>7} {signed(row['mean']):>7} {std:>6}  "
        lines += textwrap.wrap(text, WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                               break_on_hyphens=False)
    b = meta["baseline"]
    lines += ["", f"no filter (baseline): rank {b['rank']} of {meta['candidates']}, score {signed(b['score'])}"]
    if meta["best"] is None:
        lines.append("no candidate was eligible (see filters.csv, column reason)")
    elif meta["best"]["candidate"] == 0:
        lines.append("best: no filter; the filters searched do not help this strategy here")
    else:
        p = meta["paste"]
        lines += [f"best, thresholds on the last train window ({p['train_from'][:10]} to {p['train_to'][:10]}):",
                  paste_yaml(p["config"])]
    return "\n".join(line[:WIDTH] for line in "\n".join(lines).splitlines())


def as_json(meta: dict[str, Any]) -> str:
    """filters.json's content as one JSON document (``--json``)."""
    return json.dumps(jsonable(meta), allow_nan=False)

