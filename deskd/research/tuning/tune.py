"""``deskd tune``: which parameters of a strategy deserve capital, in two stages.

Stage 1 scores every point of the search space (grid) or the points Optuna's TPE sampler asks
for, under one cost scenario (``tune.stage1_scenario``, B by default), with the robust score of
:mod:`deskd.research.tuning.objective` over the in-sample window. Stage 2 re-runs the ``top_k``
best of stage 1 under each of ``tune.stage2_scenarios`` (A, B, C) through the event path and
ranks them by their worst scenario's score. Every trial goes into an Optuna study in a database
(SQLite file or PostgreSQL URL) as soon as it finishes: a killed tune re-run with the same
arguments skips what is done, and several hosts may work on one study.

The bugs of the desk's old scripts this does not have: top-k is taken from the sorted list
(score descending, ineligible points last: :func:`rank_order`); drawdown is a penalty on a
positive fraction, never a sort key whose sign flips the order; profit factors are capped, so no
infinite value ranks first; the window and splits are calendar times, never bar counts that
read like days.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deskd.adapters.bars import BarFileError
from deskd.configs.loader import dump_config
from deskd.configs.models import DeskConfig
from deskd.core.text import duration_text
from deskd.core.time import iso
from deskd.research.export import write_manifest
from deskd.research.tuning.evaluate import Job, Task, TrialResult, evaluate, evaluator
from deskd.research.tuning.objective import OBJECTIVE_UNITS, rank_order
from deskd.research.tuning.space import InvalidPoint, SearchSpace

#: default stage-1 trials of the TPE sampler
DEFAULT_TPE_TRIALS = 100


class TuneError(Exception):
    """A tune that cannot start or go on (bad study, no eligible point, a worker that cannot
    load the data); the message is the one line to print."""


@dataclass
class TuneOptions:
    """How to tune (the command line). ``trials``: the stage-1 trials the study should hold
    (TPE: default DEFAULT_TPE_TRIALS; grid: the first N points of the grid in its seeded
    shuffled order, None: all), so a re-run completes a stopped tune. ``storage``: an
    SQLAlchemy URL for the Optuna study. ``workers``: processes (1: in this process)."""

    strategy_id: str
    out_dir: Path
    storage: str
    sampler: str = "grid"
    trials: int | None = None
    workers: int = 1
    cluster: str | None = None
    study_name: str | None = None
    start_ts: int | None = None
    end_ts: int | None = None
    config_dir: Path | None = None


@dataclass
class TuneOutcome:
    """What a tune produced: its folder, the stage-1 and stage-2 results (this session's and
    earlier sessions' from the study), and the counts the summary prints."""

    out_dir: Path
    meta: dict[str, Any]
    stage1: list[TrialResult]
    stage2: list[TrialResult]
    top: pd.DataFrame
    ran_now: int = 0
    skipped_invalid: int = 0


@dataclass
class _Progress:
    """One line per few seconds on stderr: trials done of total, best score, time left."""

    stage: str
    total: int | None
    quiet: bool = False
    done: int = 0
    best: float = math.nan
    t0: float = field(default_factory=time.monotonic)
    last: float = 0.0

    def tick(self, res: TrialResult, force: bool = False) -> None:
        self.done += 1
        if math.isfinite(res.score) and not res.score <= self.best:
            self.best = res.score
        now = time.monotonic()
        if self.quiet or (now - self.last < 5.0 and not force):
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        of = f"/{self.total}" if self.total else ""
        left = (f", about {duration_text((self.total - self.done) / rate)} left"
                if self.total and rate > 0 and self.done < self.total else "")
        best = f"{self.best:+.4f}" if math.isfinite(self.best) else "none yet"
        print(f"deskd tune: {self.stage}: {self.done}{of} trials, best score {best}{left}",
              file=sys.stderr, flush=True)


    def finish(self) -> None:
        """The stage's last line (when anything ran)."""
        if self.done and not self.quiet:
            best = f"{self.best:+.4f}" if math.isfinite(self.best) else "none"
            print(f"deskd tune: {self.stage}: {self.done} trials done in "
                  f"{duration_text(time.monotonic() - self.t0)}, best score {best}", file=sys.stderr, flush=True)


def _key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


class _Pool:
    """Runs tasks: in this process (workers == 1), in a local process pool, or on a Dask
    cluster; the same task function and the same results either way."""

    def __init__(self, workers: int, cluster: str | None, fn: Callable[[Any, Any], list[Any]] = evaluate):
        self.fn = fn  # the task function: evaluate(job, task), or another tuner's (tune --filters)
        self.client = None
        self.executor: cf.Executor | None
        if cluster is not None:
            from distributed import Client

            try:
                self.client = Client(cluster, timeout="10s")
            except (OSError, TimeoutError) as e:
                raise TuneError(f"--cluster {cluster}: cannot reach the Dask scheduler ({e})") from None
            self.executor = self.client.get_executor(pure=False)
            self.slots = max(1, sum(self.client.nthreads().values()))
        elif workers > 1:
            self.executor = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                   initializer=_ignore_sigint)
            self.slots = workers
        else:
            self.executor = None
            self.slots = 1

    def submit(self, job: Job, task: Task) -> cf.Future:
        if self.executor is not None:
            return self.executor.submit(self.fn, job, task)
        f: cf.Future = cf.Future()
        try:
            f.set_result(self.fn(job, task))
        except Exception as e:  # the job itself failed (data): surfaced by the caller
            f.set_exception(e)
        return f

    def close(self, cancel: bool = False) -> None:
        if isinstance(self.executor, cf.ProcessPoolExecutor):
            self.executor.shutdown(wait=not cancel, cancel_futures=cancel)
        if self.client is not None:
            self.client.close()


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: set by :func:`request_stop` (the command's Ctrl-C handler): stop handing out trials
_STOP = threading.Event()


def request_stop() -> None:
    """Ask a running tune to stop after the trials in flight (safe from a signal handler):
    :func:`run_tasks` then raises KeyboardInterrupt from a known place, with every finished
    trial recorded, instead of wherever a signal happens to land (inside a library's
    callback a KeyboardInterrupt can be swallowed)."""
    _STOP.set()


def run_tasks(pool: _Pool, job: Job, next_task: Callable[[], Task | None],
              on_result: Callable[[TrialResult], None]) -> int:
    """Keep the pool's slots busy with ``next_task()`` until it returns None and all are
    done, handing each trial's result to ``on_result`` as it arrives. Returns the trials run. Raises
    TuneError when a worker cannot set the job up (e.g. a bad bar file)."""
    pending: set[cf.Future] = set()
    ran = 0
    exhausted = False
    while True:
        if _STOP.is_set():
            for f in pending:
                f.cancel()
            raise KeyboardInterrupt
        while not exhausted and len(pending) < pool.slots and not _STOP.is_set():
            task = next_task()
            if task is None:
                exhausted = True
                break
            pending.add(pool.submit(job, task))
        if not pending:
            return ran
        done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
        for f in done:
            try:
                results = f.result()
            except Exception as e:  # noqa: BLE001 - the worker's own setup failed
                raise TuneError(f"a worker could not set up the tune: {type(e).__name__}: {e}") from None
            for res in results:
                ran += 1
                on_result(res)


def _study(opts: TuneOptions, name: str, sampler: Any = None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(study_name=name, storage=opts.storage, direction="maximize",
                                   sampler=sampler, load_if_exists=True)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's many errors: one line
        raise TuneError(f"study storage {opts.storage}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def _from_trial(t: Any, stage: int) -> TrialResult:
    """A finished study trial back as a TrialResult (its row was kept in user_attrs)."""
    row = dict(t.user_attrs["row"])
    return TrialResult(**{**row, "stage": stage, "equity": [tuple(x) for x in t.user_attrs.get("equity", [])]})


def _record(study: Any, space: SearchSpace, res: TrialResult, scenarios: list[str] | None = None) -> None:
    """Add a finished grid or stage-2 trial to ``study`` (COMPLETE with its score, PRUNED
    when ineligible or failed); a stage-2 trial's scenario is one of its params (one of
    ``scenarios``)."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    dists = space.distributions()
    params = dict(res.point)
    if scenarios:
        params["scenario"] = res.scenario
        dists["scenario"] = CategoricalDistribution(sorted(set(scenarios) | {res.scenario}))
    ok = res.status == "ok" and math.isfinite(res.score)
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=dists, value=res.score if ok else None,
        state=TrialState.COMPLETE if ok else TrialState.PRUNED,
        user_attrs={"row": res.as_row(), "equity": res.equity}))


def tune(cfg: DeskConfig, opts: TuneOptions, quiet: bool = False) -> TuneOutcome:
    """Run stage 1 and stage 2 (resuming the study of the same job) and write the outputs
    into ``opts.out_dir`` (written in a temporary folder beside it, then renamed: never half
    a result). Raises TuneError; KeyboardInterrupt after stopping the workers (every trial
    finished so far is in the study). Invalid points are counted, never raised."""
    _STOP.clear()
    t = _Tuner(cfg, opts, quiet)
    try:
        if opts.sampler == "grid":
            t.stage1_grid()
        else:
            t.stage1_tpe()
        top = t.stage2()
    except KeyboardInterrupt:
        t.pool.close(cancel=True)
        raise
    t.pool.close()
    top_table = _top_table(top, t.stage2_results, cfg)
    meta = _meta(cfg, opts, t.space, t.name, t.job, t.edges, len(t.stage1), len(t.invalid), t.ran)
    chosen = int(top_table.iloc[0]["trial"]) if not top_table.empty else None
    meta["overfitting"] = overfitting_stats(list(t.stage1.values()), chosen)
    trials = sorted(t.stage1.values(), key=lambda r: r.trial)
    s2 = sorted(t.stage2_results.values(), key=lambda r: (r.trial, r.scenario))
    write_outputs(opts.out_dir, cfg, meta, trials, s2, t.invalid, top_table)
    from deskd.research.tuning.report import write_tune_html

    write_tune_html(opts.out_dir)
    write_manifest(opts.out_dir, names=TUNE_FILES, kind="tune", state=("study.db",))  # last: the outputs as published
    return TuneOutcome(opts.out_dir, meta, trials, s2, top_table, t.ran, len(t.invalid))


class _Tuner:
    """One tune's state: the space, the job, the two studies (resumed), the pool, and the
    results so far keyed by point (stage 1) and by (point, scenario) (stage 2)."""

    def __init__(self, cfg: DeskConfig, opts: TuneOptions, quiet: bool):
        from optuna.samplers import TPESampler
        from optuna.trial import TrialState

        self.cfg, self.opts, self.quiet = cfg, opts, quiet
        self.space = SearchSpace.of(cfg, opts.strategy_id)
        if opts.sampler == "grid":
            self.space.size  # noqa: B018 - raises for a float range without a step, before any work
        self.job = Job(json.loads(json.dumps(cfg.model_dump(mode="json", by_alias=True))),
                       str(opts.config_dir) if opts.config_dir else None, opts.strategy_id,
                       opts.start_ts, opts.end_ts)
        try:  # the data read and checked here, once, before any worker starts
            ev = evaluator(self.job)
        except (BarFileError, ValueError) as e:
            raise TuneError(str(e)) from None
        self.edges = ev.edges
        self.fast = ev.fast_path  # stage 1 screened by the strategy's kernel
        self.name = opts.study_name or f"{opts.strategy_id}-{opts.sampler}-{self.job.key[:12]}"
        tpe = TPESampler(seed=cfg.tune.seed, constant_liar=True) if opts.sampler == "tpe" else None
        self.study1 = _study(opts, self.name, tpe)
        self.study2 = _study(opts, self.name + "-stage2")
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        for study in (self.study1, self.study2):  # left RUNNING by a killed run: failed, so TPE asks anew
            for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study._storage.set_trial_state_values(tr._trial_id, TrialState.FAIL)
        self.stage1: dict[str, TrialResult] = {}
        for tr in self.study1.get_trials(deepcopy=False, states=finished):
            if "row" in tr.user_attrs:
                r = _from_trial(tr, 1)
                self.stage1[_key(r.point)] = r
        self.stage2_results: dict[tuple[str, str], TrialResult] = {}
        for tr in self.study2.get_trials(deepcopy=False, states=finished):
            r = _from_trial(tr, 2)
            self.stage2_results[(_key(r.point), r.scenario)] = r
        self.invalid: dict[str, str] = {}
        self.ran = 0
        self.pool = _Pool(opts.workers, opts.cluster)

    def _valid(self, point: dict[str, Any]) -> bool:
        try:
            self.space.resolve(point)
        except InvalidPoint as e:
            self.invalid[_key(point)] = str(e)
            return False
        return True

    def stage1_grid(self) -> None:
        """The valid grid points in a seeded shuffled order, the first ``opts.trials`` of them
        (None: all), less those the study holds already."""
        import random

        s1 = self.cfg.tune.stage1_scenario
        valid = [p for p in self.space.grid() if self._valid(p)]  # invalid ones counted, never run
        random.Random(self.cfg.tune.seed).shuffle(valid)  # a capped run samples the whole space
        cap = len(valid) if self.opts.trials is None else min(self.opts.trials, len(valid))
        missing = [p for p in valid[:cap] if _key(p) not in self.stage1]
        todo = iter(missing)
        budget = len(missing)
        number = len(self.study1.trials)
        prog = _Progress(f"stage 1 (grid, scenario {s1}, {'fast path' if self.fast else 'event path'})",
                         budget, self.quiet)

        batch = max(1, min(64, budget // (4 * self.pool.slots))) if self.fast else 1

        def next_task() -> Task | None:
            nonlocal budget, number
            trials: list[int] = []
            points: list[dict[str, Any]] = []
            while budget > 0 and len(points) < batch:
                p = next(todo, None)
                if p is None:
                    break
                budget -= 1
                number += 1
                trials.append(number)
                points.append(p)
            return Task(tuple(trials), 1, s1, tuple(points), self.fast) if points else None

        def done(res: TrialResult) -> None:
            _record(self.study1, self.space, res)
            self.stage1[_key(res.point)] = res
            prog.tick(res)

        self.ran += run_tasks(self.pool, self.job, next_task, done)
        prog.finish()

    def stage1_tpe(self) -> None:
        """Ask Optuna's TPE sampler until the study holds ``opts.trials`` stage-1 trials. A
        point asked again is told its known score, not run again (it still counts: a small
        space is exhausted, not looped on)."""
        from optuna.trial import TrialState

        s1 = self.cfg.tune.stage1_scenario
        held = sum(1 for t in self.study1.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                   if "row" in t.user_attrs or "same_as_trial" in t.user_attrs)
        left = max((self.opts.trials or DEFAULT_TPE_TRIALS) - held, 0)
        asked: dict[int, Any] = {}
        prog = _Progress(f"stage 1 (TPE, scenario {s1}, {'fast path' if self.fast else 'event path'})",
                         left, self.quiet)

        def next_task() -> Task | None:
            nonlocal left
            while left > 0:
                trial = self.study1.ask()
                point = self.space.suggest(trial)
                if not self._valid(point):
                    trial.set_user_attr("invalid", self.invalid[_key(point)])
                    self.study1.tell(trial, state=TrialState.PRUNED)
                    continue
                left -= 1
                known = self.stage1.get(_key(point))
                if known is not None:
                    trial.set_user_attr("same_as_trial", known.trial)
                    ok = math.isfinite(known.score)
                    self.study1.tell(trial, known.score if ok else None, state=None if ok else TrialState.PRUNED)
                    continue
                asked[trial.number] = trial
                return Task((trial.number,), 1, s1, (point,), self.fast)
            return None

        def done(res: TrialResult) -> None:
            trial = asked.pop(res.trial)
            trial.set_user_attr("row", res.as_row())
            trial.set_user_attr("equity", res.equity)
            ok = res.status == "ok" and math.isfinite(res.score)
            self.study1.tell(trial, res.score if ok else None, state=None if ok else TrialState.PRUNED)
            self.stage1[_key(res.point)] = res
            prog.tick(res)

        self.ran += run_tasks(self.pool, self.job, next_task, done)
        prog.finish()

    def stage2(self) -> list[TrialResult]:
        """Run the stage-1 top k under every stage-2 scenario (those not in the study yet);
        returns the top k, best first."""
        results = list(self.stage1.values())
        order = rank_order([r.score for r in results], [r.trial for r in results])
        top = [results[i] for i in order if math.isfinite(results[i].score)][: self.cfg.tune.top_k]
        scenarios = self.cfg.tune.stage2_scenarios
        s1 = self.cfg.tune.stage1_scenario
        for r in top:  # stage 1 ran this scenario on the event path already: the same run
            if s1 in scenarios and r.path == "event" and (_key(r.point), s1) not in self.stage2_results:
                again = TrialResult(**{**r.as_row(), "stage": 2, "equity": r.equity})
                _record(self.study2, self.space, again, list(self.cfg.costs.scenarios))
                self.stage2_results[(_key(r.point), s1)] = again
        todo = [(r, sc) for r in top for sc in scenarios if (_key(r.point), sc) not in self.stage2_results]
        queue = iter(todo)
        prog = _Progress(f"stage 2 (event path, scenarios {','.join(scenarios)})", len(todo), self.quiet)

        def next_task() -> Task | None:
            nxt = next(queue, None)
            return None if nxt is None else Task((nxt[0].trial,), 2, nxt[1], (nxt[0].point,))

        def done(res: TrialResult) -> None:
            _record(self.study2, self.space, res, list(self.cfg.costs.scenarios))
            self.stage2_results[(_key(res.point), res.scenario)] = res
            prog.tick(res)

        self.ran += run_tasks(self.pool, self.job, next_task, done)
        prog.finish()
        return top


def daily_returns(results: list[TrialResult]) -> pd.DataFrame:
    """Day-on-day returns of each trial's equity (its day-roll marks), one column per trial
    number, rows the days all of them share (every trial of a tune marks the same day rolls)."""
    cols = {}
    for r in results:
        if r.status == "ok" and len(r.equity) >= 3:
            eq = pd.Series([e for _, e in r.equity], index=[ts for ts, _ in r.equity], dtype=float)
            eq = eq[~eq.index.duplicated(keep="last")]
            cols[r.trial] = eq.pct_change().iloc[1:]
    return pd.DataFrame(cols).dropna() if cols else pd.DataFrame()


def overfitting_stats(stage1: list[TrialResult], chosen_trial: int | None) -> dict[str, Any]:
    """The Deflated Sharpe Ratio of the chosen trial's daily returns in stage 1 given every
    stage-1 trial's daily Sharpe, and the Probability of Backtest Overfitting over the trials'
    daily-return matrix (:mod:`deskd.research.overfitting`, with the papers cited there). Daily
    Sharpe ratios are per day, not annualised. A statistic that cannot be computed (too few
    trials or days, no dispersion) is None with ``*_note`` saying why."""
    from deskd.research.overfitting import deflated_sharpe_ratio, probability_of_backtest_overfitting

    out: dict[str, Any] = {"returns": "daily, from each stage-1 trial's equity at the FX day rolls"}
    m = daily_returns(stage1)
    out["trials"], out["days"] = int(m.shape[1]), int(m.shape[0])
    if chosen_trial is None or chosen_trial not in m or m.shape[1] < 2 or m.shape[0] < 4:
        out["dsr"] = out["pbo"] = None
        out["note"] = "needs a chosen point and at least 2 trials over 4 or more days"
        return out
    sd = m.std(ddof=1)
    sharpes = (m.mean() / sd)[sd > 0]
    try:
        d = deflated_sharpe_ratio(m[chosen_trial].to_numpy(), sharpes.to_numpy())
        out["dsr"] = {"value": d.dsr, "psr": d.psr, "sharpe_daily": d.sr, "sr0_daily": d.sr0,
                      "n_trials": d.n_trials, "n_days": d.n_obs, "skew": d.skew, "kurtosis": d.kurtosis}
    except ValueError as e:
        out["dsr"], out["dsr_note"] = None, str(e)
    splits = min(16, (m.shape[0] // 4) // 2 * 2)  # even, at least 4 days per block
    try:
        p = probability_of_backtest_overfitting(m.to_numpy(), n_splits=max(splits, 2))
        out["pbo"] = {"value": p.pbo, "prob_loss": p.prob_loss, "n_splits": p.n_splits,
                      "combinations": p.n_combinations, "degradation_slope": p.degradation_slope,
                      "dropped_days": p.dropped_rows}
    except ValueError as e:
        out["pbo"], out["pbo_note"] = None, str(e)
    return out


def _top_table(top: list[TrialResult], stage2: dict[tuple[str, str], TrialResult], cfg: DeskConfig) -> pd.DataFrame:
    """Stage 2's ranking: one row per top-k point, its score per scenario and the worst; ranked
    by the worst (ineligible last)."""
    rows = []
    for r in top:
        row: dict[str, Any] = {"trial": r.trial, "stage1_score": r.score}
        scores = []
        for sc in cfg.tune.stage2_scenarios:
            s = stage2.get((_key(r.point), sc))
            v = s.score if s is not None else math.nan
            scores.append(v)
            row[f"score_{sc}"] = v
            row[f"trades_{sc}"] = s.trades if s is not None else 0
            row[f"net_usd_{sc}"] = s.net_usd if s is not None else math.nan
            row[f"max_dd_frac_{sc}"] = s.max_dd_frac if s is not None else math.nan
        row["worst_score"] = min(scores) if all(math.isfinite(v) for v in scores) else math.nan
        row.update({f"p.{k}": v for k, v in r.point.items()})
        rows.append(row)
    return _ranked(rows, "worst_score")


def _ranked(rows: list[dict[str, Any]], score: str) -> pd.DataFrame:
    """``rows`` as a frame ranked by ``score`` (:func:`rank_order`), a ``rank`` column first."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.iloc[rank_order(df[score].tolist(), df["trial"].tolist())].reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def _meta(cfg: DeskConfig, opts: TuneOptions, space: SearchSpace, study_name: str, job: Job,
          edges: Any, n_trials: int, n_invalid: int, ran: int) -> dict[str, Any]:
    import optuna

    from deskd import __version__
    from deskd.research.backtest import inputs_fingerprint

    t = cfg.tune
    return {
        "deskd_version": __version__,
        "optuna_version": optuna.__version__,
        "strategy_id": opts.strategy_id,
        "strategy_class": cfg.strategies[opts.strategy_id].model_dump(by_alias=True).get("class"),
        "symbols": list(cfg.strategy_symbols(opts.strategy_id)),
        "sampler": opts.sampler,
        "seed": t.seed,
        "space": space.describe(),
        "space_size": space.size if opts.sampler == "grid" else None,
        "trials_stage1": n_trials,
        "invalid_points_skipped": n_invalid,
        "trials_run_this_session": ran,
        "objective": {"name": t.objective, "units": OBJECTIVE_UNITS[t.objective], "splits": t.splits,
                      "min_trades_per_split": t.min_trades_per_split, "dd_penalty": t.dd_penalty,
                      "pf_cap": t.pf_cap,
                      "score": "mean - std (ddof 1) of the per-split values - dd_penalty x max_dd_frac"},
        "window": {"from": iso(opts.start_ts) if opts.start_ts is not None else None,
                   "to": iso(opts.end_ts) if opts.end_ts is not None else None},
        "split_edges": [iso(int(e)) for e in edges],
        "stage1_scenario": t.stage1_scenario,
        "stage2_scenarios": list(t.stage2_scenarios),
        "top_k": t.top_k,
        "study": {"name": study_name, "storage": _redacted(opts.storage)},
        **inputs_fingerprint(cfg),
        "job_sha256": job.key,
    }


def _redacted(url: str) -> str:
    """The storage URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url


TRIAL_COLUMNS = ["trial", "stage", "scenario", "status", "score", "trades", "net_usd", "expectancy_r",
                 "max_dd_usd", "max_dd_frac", "final_equity_usd", "bars", "duration_s", "path", "reason"]


def trials_frame(results: list[TrialResult], n_splits: int) -> pd.DataFrame:
    """Trials as a table, ranked best first (score descending, ineligible last): rank, the
    TRIAL_COLUMNS, split_1..n (objective units), trades_split_1..n, then p.<name> per param."""
    rows = []
    for r in results:
        row = {c: getattr(r, c) for c in TRIAL_COLUMNS}
        per = list(r.per_split) + [math.nan] * (n_splits - len(r.per_split))
        cnt = list(r.trades_per_split) + [0] * (n_splits - len(r.trades_per_split))
        row.update({f"split_{i + 1}": v for i, v in enumerate(per[:n_splits])})
        row.update({f"trades_split_{i + 1}": v for i, v in enumerate(cnt[:n_splits])})
        row.update({f"p.{k}": v for k, v in r.point.items()})
        rows.append(row)
    return _ranked(rows, "score")


#: the files a tune writes, which its manifest.json lists (not the study, which a resumed tune
#: keeps changing)
TUNE_FILES = ("trials.csv", "trials.parquet", "stage2.csv", "stage2.parquet", "top_k.csv", "invalid.csv",
              "equity_top_k.csv", "config.yaml", "tune.json", "report.html")


def write_outputs(out: Path, cfg: DeskConfig, meta: dict[str, Any], stage1: list[TrialResult],
                  stage2: list[TrialResult], invalid: dict[str, str], top: pd.DataFrame) -> None:
    """trials.csv/.parquet (stage 1, ranked), stage2.csv/.parquet, top_k.csv, invalid.csv,
    equity_top_k.csv (the top k's day-roll equity per scenario), config.yaml and, last,
    tune.json into ``out`` (beside the study file a resumed tune keeps there). Each file is
    written whole in a temporary folder first and moved in, so none is ever half written."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        n = cfg.tune.splits
        t1 = trials_frame(stage1, n)
        t2 = trials_frame(stage2, n)
        for name, df in (("trials", t1), ("stage2", t2)):
            df.to_csv(tmp / f"{name}.csv", index=False)
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        top.to_csv(tmp / "top_k.csv", index=False)
        pd.DataFrame([{"point": k, "reason": v} for k, v in sorted(invalid.items())],
                     columns=["point", "reason"]).to_csv(tmp / "invalid.csv", index=False)
        rank_of = {int(t): int(k) for k, t in zip(top.get("rank", []), top.get("trial", []))}
        eq = [{"rank": rank_of[r.trial], "trial": r.trial, "scenario": r.scenario, "time": iso(ts),
               "equity_usd": round(e, 2)} for r in stage2 if r.trial in rank_of for ts, e in r.equity]
        pd.DataFrame(eq, columns=["rank", "trial", "scenario", "time", "equity_usd"]).to_csv(
            tmp / "equity_top_k.csv", index=False)
        (tmp / "config.yaml").write_text(dump_config(cfg))
        best = top.iloc[0].to_dict() if not top.empty else None
        (tmp / "tune.json").write_text(json.dumps(jsonable({**meta, "best": best}), indent=2,
                                                  allow_nan=False) + "\n")
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == "tune.json"):  # tune.json last
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def jsonable(x: Any) -> Any:
    """NaN/inf as None (strict JSON), numpy scalars as Python numbers."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
