"""One trial: a parameter point run under one cost scenario and scored.

A trial runs in a worker (a local process, a Dask worker, or this process). What every trial of
a tune shares, the :class:`Job` (the config as data, the strategy, the scored window), is sent
with each task but built into an :class:`Evaluator` only once per worker: the config validated,
the bar files read into memory (:class:`deskd.adapters.replay.MemoryFeed`), so a trial costs its
replay, not a parse of the files.

The run is the event path: :func:`deskd.research.backtest.run_scenario`, the real Desk with the
paper broker, caps, drawdown guard and state machine, on a config holding only this strategy;
or, to screen stage 1 of a strategy with a kernel on one symbol, the fast path
(:mod:`deskd.research.fastpath`), whose trades equal the event path's (its contract test).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deskd.adapters.replay import MemoryFeed, Window, replay_feed
from deskd.configs.models import DeskConfig
from deskd.research.tuning.objective import robust_score, segment_edges
from deskd.research.tuning.space import InvalidPoint, SearchSpace


@dataclass(frozen=True)
class Job:
    """What every trial of one tune shares; small and picklable. ``config`` is the desk
    config as JSON data (validated again in each worker, with ``config_dir`` on the import
    path for a strategy module beside it); ``start_ts``/``end_ts`` the scored window (UTC
    epoch s, None = the data's first bar / past its last)."""

    config: dict[str, Any]
    config_dir: str | None
    strategy_id: str
    start_ts: int | None
    end_ts: int | None

    @property
    def key(self) -> str:
        """SHA-256 of the job, hex: the worker's cache key, and part of the study's name. The
        config's ``verdict`` gates and ``tune.filters`` grid are left out: they change nothing a
        trial computes, so editing them must not start a new study (nor change the key of a
        config written before they existed)."""
        cfg = {k: v for k, v in self.config.items() if k != "verdict"}
        cfg["tune"] = {k: v for k, v in cfg.get("tune", {}).items() if k != "filters"}
        blob = json.dumps([cfg, self.strategy_id, self.start_ts, self.end_ts], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Task:
    """Trials to run under ``scenario``: ``points[i]`` (varied name -> value) is trial
    ``trials[i]``. ``fast``: screen them with the fast path's kernel in one call (stage 1 of a
    strategy with a kernel, on one symbol), else run each on the event path."""

    trials: tuple[int, ...]
    stage: int
    scenario: str
    points: tuple[dict[str, Any], ...]
    fast: bool = False


@dataclass
class TrialResult:
    """A finished trial. ``status``: ok, invalid (the point breaks a params rule: not run),
    or error (the run raised: ``reason`` says what). Money in USD, drawdown as a fraction of
    peak equity, ``score`` and ``per_split`` in the objective's units (NaN: ineligible, see
    ``reason``). ``equity`` holds (UTC epoch s, equity_usd) at day rolls and the end, for the
    report's curves."""

    trial: int
    stage: int
    scenario: str
    point: dict[str, Any]
    status: str
    score: float = math.nan
    per_split: list[float] = field(default_factory=list)
    trades_per_split: list[int] = field(default_factory=list)
    reason: str = ""
    trades: int = 0
    net_usd: float = 0.0
    expectancy_r: float = math.nan
    max_dd_usd: float = 0.0
    max_dd_frac: float = 0.0
    final_equity_usd: float = math.nan
    bars: int = 0
    duration_s: float = 0.0
    path: str = "event"
    equity: list[tuple[int, float]] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("equity")
        return row


class Evaluator:
    """A worker's state for one :class:`Job`: the validated config, its search space, the bars
    in memory and the scored window's segment edges. Raises BarFileError (a bad bar file),
    ValueError (an empty window) at construction."""

    def __init__(self, job: Job):
        config_dir = Path(job.config_dir) if job.config_dir else None
        self.cfg = DeskConfig.model_validate(job.config, context={"config_dir": config_dir})
        self.config_dir = config_dir
        self.space = SearchSpace.of(self.cfg, job.strategy_id)
        self.feed = MemoryFeed.read(replay_feed(self.cfg))
        stats = self.feed.loaded_stats.values()
        first = min(st.first_ts for st in stats if st.first_ts is not None)
        last = max(st.last_ts for st in stats if st.last_ts is not None) + self.cfg.universe.timeframe_s
        self.window = (Window(job.start_ts, job.end_ts, warmup_bars=None)
                       if job.start_ts is not None or job.end_ts is not None else None)
        start = max(first, job.start_ts) if job.start_ts is not None else first
        end = min(last, job.end_ts) if job.end_ts is not None else last
        self.edges = segment_edges(start, end, self.cfg.tune.splits)
        self._fast_bars: Any = None

    @property
    def fast_path(self) -> bool:
        """Whether stage 1 may use the fast path: the strategy's class has a kernel, the desk's
        universe is that one symbol (the kernel's contract is one strategy alone on one
        symbol; `--symbols` narrows a config to it), and $DESKD_FAST_PATH is not 0 (a switch
        for benchmarks and doubts)."""
        from deskd.research.fastpath import has_kernel

        sid = self.space.strategy_id
        return (os.environ.get("DESKD_FAST_PATH", "1") != "0"
                and has_kernel(self.cfg.strategies[sid].strategy_class)
                and len(self.cfg.universe.symbols) == 1 and len(self.cfg.strategy_symbols(sid)) == 1)

    def run(self, task: Task) -> list[TrialResult]:
        """Run and score every trial of ``task`` (never raises: a failure is a result with
        status error)."""
        if task.fast:
            return self._screen(task)
        return [self._event(trial, task.stage, task.scenario, point)
                for trial, point in zip(task.trials, task.points)]

    def _screen(self, task: Task) -> list[TrialResult]:
        """The fast path: every point of ``task`` in one kernel call on the bars loaded once."""
        from deskd.research.fastpath import load_bars, screen

        t0 = time.perf_counter()
        sid = self.space.strategy_id
        try:
            if self._fast_bars is None:
                self._fast_bars = load_bars(self.cfg, self.cfg.strategy_symbols(sid)[0])
            runs = screen(self.cfg, sid, task.scenario, [fast_point(p) for p in task.points], self._fast_bars,
                          self.window)
        except Exception as e:  # noqa: BLE001 - reported per trial, as the event path's
            reason = f"{type(e).__name__}: {e}"
            return [TrialResult(t, task.stage, task.scenario, p, "error", reason=reason, path="fast")
                    for t, p in zip(task.trials, task.points)]
        each_s = (time.perf_counter() - t0) / max(len(runs), 1)
        out = []
        for trial, point, run in zip(task.trials, task.points, runs):
            tr = run.trades
            res = self._scored(TrialResult(trial, task.stage, task.scenario, point, "ok", path="fast"),
                               tr["fill_ts"].to_numpy(np.int64), tr["r_multiple"].to_numpy(float),
                               tr["pnl_usd"].to_numpy(float), run.max_dd_usd, run.max_dd_frac)
            res.final_equity_usd, res.bars, res.duration_s = run.final_equity_usd, run.bars, each_s
            res.equity = [(int(ts), float(e)) for ts, e in zip(run.mark_ts, run.mark_equity_usd)]
            out.append(res)
        return out

    def _scored(self, out: TrialResult, entry_ts: np.ndarray, r: np.ndarray, pnl: np.ndarray,
                max_dd_usd: float, max_dd_frac: float) -> TrialResult:
        sc = robust_score(entry_ts, r, pnl, max_dd_frac, self.edges, self.cfg.tune)
        out.score, out.per_split, out.trades_per_split, out.reason = sc.score, sc.per_split, sc.trades_per_split, sc.reason
        out.trades = len(r)
        out.net_usd = float(pnl.sum())
        out.expectancy_r = float(r.mean()) if len(r) else math.nan
        out.max_dd_usd, out.max_dd_frac = max_dd_usd, max_dd_frac
        return out

    def _event(self, trial: int, stage: int, scenario: str, point: dict[str, Any]) -> TrialResult:
        """One point on the event path: the real Desk with this strategy alone."""
        from deskd.research.backtest import run_scenario
        from deskd.research.outputs import DecisionCounter

        t0 = time.perf_counter()
        out = TrialResult(trial, stage, scenario, point, "ok")
        try:
            cfg = self.space.config_for(point, self.config_dir)
        except InvalidPoint as e:
            out.status, out.reason = "invalid", str(e)
            return out
        try:
            res = run_scenario(cfg, scenario, DecisionCounter(scenario, cfg.universe.timeframe_s),
                               window=self.window, feed=self.feed)
        except Exception as e:  # a strategy's own bug must not end the whole tune
            out.status = "error"
            out.reason = f"{type(e).__name__}: {e} ({traceback.extract_tb(e.__traceback__)[-1].name})"
            return out
        trades = res.trades
        self._scored(out, np.array([t.fill_ts for t in trades], dtype=np.int64),
                     np.array([t.r_multiple for t in trades], dtype=float),
                     np.array([t.pnl_usd for t in trades], dtype=float), *res.max_dd)
        out.final_equity_usd = res.final_equity_usd
        out.bars = res.bars
        out.equity = [(ts, eq) for ts, kind, eq, _, _ in res.equity_rows if kind in ("DAY", "END")]
        out.duration_s = time.perf_counter() - t0
        return out


_EVALUATORS: dict[str, Evaluator] = {}  # per worker process: one per job, built on first use


def evaluator(job: Job) -> Evaluator:
    """This process's Evaluator for ``job``, built on first use and kept (one job at a time:
    a new job frees the previous one's bars). Raises as :class:`Evaluator` does."""
    ev = _EVALUATORS.get(job.key)
    if ev is None:
        _EVALUATORS.clear()
        ev = _EVALUATORS[job.key] = Evaluator(job)
    return ev


def fast_point(point: dict[str, Any]) -> dict[str, Any]:
    """A tune point (``ema_fast``, ``stops.k_sl``) as the fast path takes it
    (``{"params": {...}, "stops": {...}}``)."""
    out: dict[str, dict[str, Any]] = {"params": {}, "stops": {}}
    for name, value in point.items():
        group, _, field = name.rpartition(".")
        out["stops" if group == "stops" else "params"][field] = value
    return out


def evaluate(job: Job, task: Task) -> list[TrialResult]:
    """The task function sent to workers: the worker's :func:`evaluator` for ``job`` runs
    ``task``'s trials. Raises BarFileError / ValueError only when the job itself cannot be set up (then
    no trial of it can run)."""
    return evaluator(job).run(task)

