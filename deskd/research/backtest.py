"""``deskd backtest``: the desk fed by the replay adapter, once per cost scenario.

Outputs (one folder): trades.csv, equity.csv, the decision journal (decisions.parquet,
decisions.csv or none: :data:`deskd.research.outputs.DECISION_FORMATS`), the counterfactual of
every decision (counterfactuals.parquet, :mod:`deskd.research.counterfactuals`; unless turned
off), report.json, config.yaml, and report.html drawn from them (:mod:`deskd.research.report_html`); last,
trades.parquet, equity.parquet, run.json and manifest.json (:mod:`deskd.research.export`); with a
store URL, the same run recorded in the store (the tables `deskd run` uses).
They are written into a hidden sibling folder that is renamed into place only when every
scenario has finished, so a failed run never leaves a folder that looks like a result.
report.json holds no wall-clock figures, so two runs on the same inputs are byte-identical.

Scenarios are independent replays of the same bars, so with ``jobs`` above 1 they run in
that many worker processes (``spawn``ed, each running :func:`run_scenario` for one scenario
at a time and writing its decisions to a part file of its own); this process joins the
parts in scenario order, so the outputs are byte for byte those of a run in one process.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import hashlib
import importlib
import json
import multiprocessing
import os
import pickle
import queue
import shutil
import signal
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from dataclasses import replace as replace_field
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import Connection

from deskd import __version__
from deskd.adapters.bars import time_basis
from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import ReplayFeed, Window, replay, replay_feed, replay_window
from deskd.configs.loader import absolute, dump_config
from deskd.configs.models import DeskConfig
from deskd.core.events import BarClosed, Decision, StateChanged, Trade
from deskd.core.text import shown
from deskd.core.time import iso
from deskd.desk.desk import Desk
from deskd.persistence.store import StoreWriter, open_store
from deskd.research.counterfactuals import CounterfactualJournal, CounterfactualObserver
from deskd.research.metrics import trade_metrics
from deskd.research.outputs import (
    DECISION_FORMATS,
    EQUITY_COLUMNS,
    TRADE_COLUMNS,
    CsvJournal,
    DecisionCounter,
    DecisionJournal,
    DecisionWriter,
    trade_row,
)
from deskd.research.report_html import write_report_html


class BacktestInputError(ValueError):
    """The backtest cannot start: a symbol without data, an unknown scenario, an output clash."""


@dataclass
class ScenarioResult:
    scenario: str
    bars: int
    trades: list[Trade]
    equity_rows: list[tuple]
    final_equity_usd: float
    max_dd: tuple[float, float]
    decisions: dict[str, int]
    files: dict
    transitions: list[StateChanged] = field(default_factory=list)
    min_equity_usd: float = 0.0  # lowest equity at a bar close (USD)


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, hex (read 1 MiB at a time). Raises OSError."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_sha256(cfg: DeskConfig) -> str:
    """SHA-256 of the resolved config as config.yaml writes it, hex: the config's fingerprint."""
    return hashlib.sha256(dump_config(cfg).encode()).hexdigest()


def inputs_fingerprint(cfg: DeskConfig) -> dict:
    """What a research output was computed from: each universe symbol's data file with its
    SHA-256, and the config's fingerprint (:func:`config_sha256`)."""
    return {"data": {s: {"path": p, "sha256": file_sha256(p)} for s, p in cfg.data.files.items()
                     if s in cfg.universe.symbols},
            "config_sha256": config_sha256(cfg)}


def check_inputs(cfg: DeskConfig, scenarios: list[str]) -> None:
    """Raise BacktestInputError for a universe symbol without a data file or an unknown
    scenario name."""
    missing = [s for s in cfg.universe.symbols if s not in cfg.data.files]
    if missing:
        raise BacktestInputError(f"no bar file for {', '.join(missing)}: add data.files."
                                 f"{missing[0]} to the config or pass --data {missing[0]}=PATH")
    unknown = [s for s in scenarios if s not in cfg.costs.scenarios]
    if unknown:
        raise BacktestInputError(f"unknown scenario(s) {', '.join(map(shown, unknown))}; the config defines "
                                 f"{', '.join(cfg.costs.scenarios)}")


def run_scenario(cfg: DeskConfig, scenario: str, decisions: IO[str] | DecisionCounter | None,
                 progress: Callable[[int], None] | None = None,
                 store: Connection | None = None, replace: bool = False,
                 window: Window | None = None, feed: ReplayFeed | None = None,
                 counterfactuals: Any = None) -> ScenarioResult:
    """Replay every bar through a fresh Desk with ``scenario``'s costs, handing its decisions
    to ``decisions``: a writer of :mod:`deskd.research.outputs` (flushed here at the end), an
    open decisions.csv (header already written), or None to only count them; given
    ``store``, every order, fill, trade, decision and state goes to it too (uncommitted: the
    caller commits). ``progress(n)`` is called with the bars of each chunk read.
    With ``window`` only its bars trade (:func:`deskd.adapters.replay.replay_window`); its
    ``warmup_bars`` of None means the strategies' own warm-up (:func:`warmup_bars_of`).
    ``feed``: the bars to replay (e.g. a :class:`deskd.adapters.replay.MemoryFeed` read once for
    many runs); None reads ``cfg``'s files. ``counterfactuals``: where the counterfactual of
    every decision goes (a sink of :class:`CounterfactualJournal`, rows in decision order); None
    computes none. Raises BarFileError (a bad bar file), StoreError."""
    desk = paper_desk(cfg, scenario)
    recorder = (StoreWriter(store, desk, commit_every_bars=0, flush_every_bars=10_000,
                             on_existing="replace" if replace else "refuse")
                if store is not None else None)
    if isinstance(decisions, DecisionCounter):
        writer = decisions
    elif decisions is not None:
        writer = DecisionWriter(decisions, scenario, desk.tf_s)
    else:
        writer = DecisionCounter(scenario, desk.tf_s)
    desk.bus.subscribe(Decision, writer)
    transitions: list[StateChanged] = []
    desk.bus.subscribe(StateChanged, transitions.append)
    feed = feed if feed is not None else replay_feed(cfg)
    end_bar: Callable[[BarClosed], None] | None = recorder.end_bar if recorder is not None else None
    observer = CounterfactualObserver(desk, counterfactuals) if counterfactuals is not None else None
    if observer is not None:  # an observer of the journal and the bars, after the desk and the store
        end_bar = observer.end_bar if end_bar is None else _both(end_bar, observer.end_bar)
    if window is None:
        bars = replay(desk, feed, progress, end_bar)
    else:
        if window.warmup_bars is None:
            window = replace_field(window, warmup_bars=warmup_bars_of(desk))
        bars = replay_window(desk, feed, window, progress, end_bar)
    writer.flush()
    if observer is not None:
        observer.finish()
    if recorder is not None:
        recorder.write_snapshots()
    lg = desk.ledger
    files = {s: {"bars": st.bars, "first_bar": iso(st.first_ts) if st.first_ts is not None else None,
                 "last_bar": iso(st.last_ts) if st.last_ts is not None else None}
             for s, st in feed.stats.items()}
    return ScenarioResult(scenario, bars, lg.closed, lg.equity_rows, lg.equity_usd,
                          (lg.max_dd_usd, lg.max_dd_frac), dict(writer.counts),
                          files, transitions, min(lg.min_equity_usd, lg.equity_usd))


def _both(first: Callable[[BarClosed], None], then: Callable[[BarClosed], None]) -> Callable[[BarClosed], None]:
    def end_bar(bar: BarClosed) -> None:
        first(bar)
        then(bar)
    return end_bar


def _daily(res: ScenarioResult) -> tuple[list[int], list[float], list[float]]:
    """Day-start times, equity at each day start, and daily returns of the whole account."""
    marks = [(ts, eq) for ts, kind, eq, _, _ in res.equity_rows if kind in ("DAY", "END")]
    starts = [ts for ts, _ in marks[:-1]]
    equity = [eq for _, eq in marks[:-1]]
    rets = [marks[i + 1][1] / marks[i][1] - 1.0 for i in range(len(marks) - 1)]
    return starts, equity, rets


def _subset_daily(trades: list[Trade], starts: list[int], equity: list[float]) -> list[float]:
    pnl = [0.0] * len(starts)
    for t in trades:
        i = bisect.bisect_right(starts, t.exit_ts) - 1
        if 0 <= i < len(pnl):
            pnl[i] += t.pnl_usd
    return [p / e for p, e in zip(pnl, equity)]


def scenario_report(cfg: DeskConfig, res: ScenarioResult, counterfactuals: Any = None) -> dict:
    start_eq = cfg.account.starting_equity_usd
    floor = cfg.account.equity_floor_frac * start_eq
    starts, equity, rets = _daily(res)
    groups: dict[str, dict[str, list[Trade]]] = {"by_strategy": defaultdict(list),
                                                 "by_symbol": defaultdict(list),
                                                 "by_regime": defaultdict(list),
                                                 "by_exit_reason": defaultdict(list)}
    for t in res.trades:
        groups["by_strategy"][t.strategy_id].append(t)
        groups["by_symbol"][t.symbol].append(t)
        groups["by_regime"][t.regime].append(t)
        groups["by_exit_reason"][t.exit_reason].append(t)
    out = {
        "bars": res.bars,
        "final_equity_usd": round(res.final_equity_usd, 2),
        "return_frac": round(res.final_equity_usd / start_eq - 1.0, 6),
        "trading_days": len(rets),
        "min_equity_usd": round(res.min_equity_usd, 2),
        "equity_floor_usd": round(floor, 2),
        "wiped_out": res.min_equity_usd < floor,
        "overall": trade_metrics(res.trades, start_eq, rets, res.max_dd),
    }
    for name, by in groups.items():
        out[name] = {k: trade_metrics(v, start_eq, _subset_daily(v, starts, equity))
                     for k, v in sorted(by.items())}
    traded = res.decisions.get("traded", 0)
    out["decisions"] = {"signals": sum(res.decisions.values()), "traded": traded,
                        "skipped": {k: v for k, v in sorted(res.decisions.items()) if k != "traded"}}
    out["state_transitions"] = [{"time": iso(e.bar_ts), "from": e.old, "to": e.new,
                                 "trigger": e.trigger, "reason": e.reason} for e in res.transitions]
    breakdowns = scenario_breakdowns(res)
    if counterfactuals is not None:  # this scenario's rows of counterfactuals.parquet
        from deskd.research.breakdowns import counterfactual_breakdowns

        breakdowns.update(counterfactual_breakdowns(counterfactuals))
    out["breakdowns"] = breakdowns
    return out


def scenario_breakdowns(res: ScenarioResult) -> dict:
    """report.json's ``breakdowns`` of a scenario (:mod:`deskd.research.breakdowns`): payoff,
    by hour (UTC and New York) and weekday, MAE/MFE by outcome, the longest drawdown."""
    import numpy as np
    import pandas as pd

    from deskd.research import breakdowns as b

    tr = pd.DataFrame({"signal_ts": [t.signal_ts for t in res.trades], "pnl_usd": [t.pnl_usd for t in res.trades],
                       "r_multiple": [t.r_multiple for t in res.trades], "mae_pips": [t.mae_pips for t in res.trades],
                       "mfe_pips": [t.mfe_pips for t in res.trades]})
    marks = np.array([(ts, eq) for ts, _, eq, _, _ in res.equity_rows], dtype=float).reshape(-1, 2)
    return {"payoff": b.payoff(tr), **b.by_time(tr), "mae_mfe_by_outcome": b.mae_mfe_by_outcome(tr),
            "drawdown_duration": b.drawdown_duration(marks[:, 0].astype(np.int64), marks[:, 1])}


def build_report(cfg: DeskConfig, feed_stats: dict, results: list[ScenarioResult], cf_file: Path | None = None) -> dict:
    """report.json's content: per scenario :func:`scenario_report`, with the breakdowns of the
    counterfactuals in ``cf_file`` (counterfactuals.parquet) when given."""
    cf = None
    if cf_file is not None and cf_file.exists():
        import pandas as pd

        cf = pd.read_parquet(cf_file, columns=["scenario", "action", "reason", "regime", "cf_result", "cf_pnl_r",
                                                "cf_mae_pips", "cf_mfe_pips", "cf_mae_atr", "cf_mfe_atr"])
    return {
        "deskd_version": __version__,
        "desk": cfg.desk,
        "timeframe": cfg.universe.timeframe,
        "config_sha256": config_sha256(cfg),
        "data": feed_stats,
        "starting_equity_usd": cfg.account.starting_equity_usd,
        "scenarios": {r.scenario: scenario_report(cfg, r, None if cf is None else cf[cf["scenario"] == r.scenario])
                      for r in results},
    }


def check_out(out: Path, force: bool, keep: Iterable[str | Path] = ()) -> None:
    """Raise BacktestInputError when ``out`` cannot take the outputs, before anything runs:
    it is the working folder or one of its parents, or holds one of ``keep`` (the config, the
    bar files), which publishing would replace; it is a file; it exists and is not empty
    without ``force``; a part of its path is a file."""
    target = Path(absolute(out))
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise BacktestInputError(f"--out {out} is the working folder or one of its parents: the outputs "
                                 f"replace their folder; choose a new folder such as runs/NAME")
    for k in keep:
        kp = Path(absolute(k))
        if kp == target or target in kp.parents:
            raise BacktestInputError(f"--out {out} holds {k}, an input of this run: choose a new folder")
    if target.exists() and not target.is_dir():
        raise BacktestInputError(f"--out {out} is a file, not a folder")
    if target.exists() and any(target.iterdir()) and not force:
        raise BacktestInputError(f"{out} exists and is not empty; choose another --out or pass --force")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BacktestInputError(f"--out {out}: {parent} is a file, not a folder")
            break


def _prepare_out(out: Path, force: bool, keep: Iterable[str | Path] = ()) -> Path:
    """The hidden sibling folder the outputs are written to (mode as the umask says, like
    any new folder), after :func:`check_out`; missing parents are created, and removed again
    when the folder cannot be made. Raises BacktestInputError."""
    check_out(out, force, keep)
    missing = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        for p in missing:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
        raise BacktestInputError(f"--out {out}: cannot create the output folder: {e.strerror or e}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
    return tmp


def _publish_out(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / "old")
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


class ScenarioProgress(Protocol):
    """How :func:`run_backtest` reports its scenarios while they run (the CLI's bars and
    lines). ``advanced`` gets the bars of each chunk read (tens of thousands at a time);
    ``finished`` the bars the scenario traded. In a parallel run the calls come from one
    thread of the calling process that is not its main thread: each scenario's in order,
    the scenarios interleaved; an exception from them is dropped there (the run goes on)."""

    def started(self, scenario: str) -> None: ...

    def advanced(self, scenario: str, bars: int) -> None: ...

    def finished(self, scenario: str, bars: int) -> None: ...


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (a container
    or ``taskset`` may allow fewer than the machine has), else ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def backtest_jobs(jobs: int | None, scenarios: int, store: bool = False) -> int:
    """How many processes run the ``scenarios``: ``jobs``, or with None one per scenario up to
    :func:`available_cpus`; never more than the scenarios. With a ``store`` 1 (the run is one
    transaction on one connection, in this process). Raises BacktestInputError for ``jobs``
    below 1, and above 1 with a store."""
    if jobs is not None and jobs < 1:
        raise BacktestInputError(f"--jobs {jobs}: give 1 or more processes (1 runs the scenarios one "
                                 f"after another in this process), or leave it out for one per scenario "
                                 f"up to the CPUs")
    if store:
        if jobs is not None and jobs > 1:
            raise BacktestInputError(f"--jobs {jobs} with --store: the store records the run in one "
                                     f"transaction from one process; leave --jobs out or give --jobs 1")
        return 1
    return max(1, min(scenarios, jobs if jobs is not None else available_cpus()))


def check_decisions(decisions: str) -> None:
    """Raise BacktestInputError for a decisions format other than DECISION_FORMATS."""
    if decisions not in DECISION_FORMATS:
        raise BacktestInputError(f"--decisions {shown(decisions)}: expected one of {', '.join(DECISION_FORMATS)}")


def count_bars(paths: Iterable[str | Path]) -> int | None:
    """The bars in ``paths`` together, for a progress bar's total, without parsing them:
    a Parquet file's row count (its footer), a CSV's lines after the header (gzip
    decompressed on the way, ~0.4 s for three years of M1; other compressions not counted).
    Exact for valid files whose lines are all bars; None when a file cannot be counted."""
    total = 0
    for p in paths:
        name = str(p).lower()
        try:
            if name.endswith((".parquet", ".pq")):
                import pyarrow.parquet as pq

                total += pq.ParquetFile(p).metadata.num_rows
                continue
            if name.endswith((".bz2", ".zip", ".xz", ".zst", ".tar")):
                return None
            lines, last = 0, b"\n"
            with gzip.open(p, "rb") if name.endswith(".gz") else open(p, "rb") as fh:
                while block := fh.read(1 << 20):
                    lines += block.count(b"\n")
                    last = block[-1:]
            total += max(0, lines - 1 + (last != b"\n"))  # the header; a last line without its newline
        except Exception:  # unreadable, or not what its name says (pyarrow's and gzip's errors)
            return None
    return total


def run_backtest(cfg: DeskConfig, scenarios: list[str], out: Path, force: bool = False,
                 progress: ScenarioProgress | None = None,
                 store_url: str | None = None, window: Window | None = None,
                 jobs: int | None = 1, decisions: str = "parquet", counterfactuals: bool = True) -> dict:
    """Run every scenario and write the outputs to ``out`` atomically; returns the report.
    With ``store_url`` every scenario is also recorded in that store, in one transaction
    committed only when everything else succeeded (``force`` replaces earlier rows of the
    same desk and scenario). ``decisions``: the decision journal's format, "parquet"
    (decisions.parquet), "csv" (decisions.csv) or "none" (no file; report.json still counts
    the decisions by reason). ``jobs``: processes running the scenarios
    (:func:`backtest_jobs`; None: one per scenario up to the CPUs; 1: one after another in
    this process, the default here, ``deskd backtest``'s is None). ``counterfactuals``: write
    counterfactuals.parquet (one row per decision, in decisions' order; on by default). Above 1, workers are
    ``spawn``ed, so a script calling this needs the ``if __name__ == "__main__":`` guard;
    a config that cannot be pickled (a strategy class defined inside a function) runs in
    this process. Every output is the same, byte for byte, whatever ``jobs``.

    Raises BacktestInputError (inputs), BarFileError (a bad bar file: in a parallel run the
    first a worker meets, the other workers stopped), StoreError; on any error (and on
    KeyboardInterrupt) the partial folder is removed, the store transaction rolled back, and
    ``out`` left as it was.
    """
    check_inputs(cfg, scenarios)
    check_decisions(decisions)
    n_jobs = backtest_jobs(jobs, len(scenarios), store_url is not None)
    if n_jobs > 1 and not _picklable(cfg, window):
        n_jobs = 1
    conn = open_store(store_url).connect() if store_url else None
    tmp = _prepare_out(out, force, [cfg.data.files[s] for s in cfg.universe.symbols])
    try:
        journal = DecisionJournal(tmp, decisions)
        cf_journal = CounterfactualJournal(tmp, counterfactuals)
        try:
            if n_jobs > 1:
                results = _run_parallel(cfg, scenarios, journal, tmp, n_jobs, progress, window, cf_journal)
            else:
                results = []
                for scn in scenarios:
                    if progress is not None:
                        progress.started(scn)
                    advance = (lambda n, scn=scn: progress.advanced(scn, n)) if progress is not None else None
                    res = run_scenario(cfg, scn, journal.writer(scn, cfg.universe.timeframe_s), advance, conn,
                                       replace=force, window=window, counterfactuals=cf_journal.sink())
                    results.append(res)
                    if progress is not None:
                        progress.finished(scn, res.bars)
        finally:
            journal.close()
            cf_journal.close()
        feed_stats = {}
        for sym in cfg.universe.symbols:
            path = cfg.data.files[sym]
            feed_stats[sym] = {"path": path, "sha256": file_sha256(path),
                               "timezone": time_basis(path, cfg.data.timezone_of(sym)), **results[0].files[sym]}
        with open(tmp / "trades.csv", "w", newline="") as fh:
            j = CsvJournal(fh, TRADE_COLUMNS)
            for r in results:
                for t in sorted(r.trades, key=lambda t: t.trade_id):  # closed in exit order
                    j.write(trade_row(t, r.scenario))
            j.flush()
        with open(tmp / "equity.csv", "w", newline="") as fh:
            j = CsvJournal(fh, EQUITY_COLUMNS)
            for r in results:
                for ts, kind, eq, bal, n_open in r.equity_rows:
                    j.write([r.scenario, iso(ts), kind, round(eq, 2), round(bal, 2), n_open])
            j.flush()
        report = build_report(cfg, feed_stats, results, tmp / "counterfactuals.parquet")
        if window is not None:  # only then: a run over whole files reads as it always has
            report["window"] = {"from": iso(window.start_ts) if window.start_ts is not None else None,
                                "to": iso(window.end_ts) if window.end_ts is not None else None,
                                "warmup_bars": window.warmup_bars if window.warmup_bars is not None
                                else warmup_bars_of(paper_desk(cfg, scenarios[0]))}
        (tmp / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        (tmp / "config.yaml").write_text(dump_config(cfg))
        write_report_html(tmp, cfg, report)
        from deskd.research.export import export_run  # run.json, Parquet copies, manifest.json: last

        export_run(tmp, cfg, results, report, decisions, counterfactuals)
        if conn is not None:
            conn.commit()
        _publish_out(tmp, out)
        return report
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if conn is not None:
            conn.close()  # rolls back whatever was not committed


@dataclass
class Backtest:
    """A backtest ready to run: ``run()`` replays every scenario and writes the outputs
    (see :func:`run_backtest`) and returns the report."""

    cfg: DeskConfig
    scenarios: list[str]
    out: Path
    force: bool = False
    store_url: str | None = None
    progress: ScenarioProgress | None = None
    window: Window | None = None
    jobs: int | None = 1
    decisions: str = "parquet"
    counterfactuals: bool = True

    def run(self) -> dict:
        return run_backtest(self.cfg, self.scenarios, self.out, self.force, self.progress,
                            self.store_url, self.window, self.jobs, self.decisions, self.counterfactuals)


def build_backtest(cfg: DeskConfig, scenarios: list[str] | None, out: Path, force: bool = False,
                   store_url: str | None = None, progress: ScenarioProgress | None = None,
                   window: Window | None = None, jobs: int | None = 1,
                   decisions: str = "parquet", counterfactuals: bool = True) -> Backtest:
    """The backtest of ``cfg`` over ``scenarios`` (default: every scenario of the config),
    trading only ``window``'s bars when given, in ``jobs`` processes, its decisions written
    as ``decisions``, with counterfactuals.parquet unless ``counterfactuals`` is False (see
    :func:`run_backtest`). Raises BacktestInputError when it cannot
    start (a symbol without data, an unknown scenario, an empty window, a bad ``jobs`` or
    ``decisions``)."""
    scenarios = scenarios or list(cfg.costs.scenarios)
    check_inputs(cfg, scenarios)
    check_decisions(decisions)
    backtest_jobs(jobs, len(scenarios), store_url is not None)
    if window is not None and window.start_ts is not None and window.end_ts is not None \
            and window.start_ts >= window.end_ts:
        raise BacktestInputError(f"--from {iso(window.start_ts)} is not before --to {iso(window.end_ts)}")
    return Backtest(cfg, scenarios, out, force, store_url, progress, window, jobs, decisions, counterfactuals)


# ------------------------------------------------------------------------------ parallel scenarios

#: in a worker process: the queue its progress events go to (set by :func:`_worker_init`)
_EVENTS: Any = None
#: seconds the event relay waits for the next event before looking whether it should stop
_RELAY_POLL_S = 0.2


def _picklable(*objs: object) -> bool:
    """Whether ``objs`` can be sent to a worker (a strategy class defined inside a function
    cannot)."""
    try:
        pickle.dumps(objs)
    except Exception:
        return False
    return True


def _strategy_modules(cfg: DeskConfig) -> list[tuple[str, str]]:
    """(module, folder to import it from) of each strategy class of ``cfg`` that is not
    deskd's own: a class loaded by import path from the config's folder
    (:func:`deskd.configs.models.load_strategy_class` takes that folder off ``sys.path``
    again) must be importable in a worker before the config is unpickled there."""
    out: dict[str, str] = {}
    for _, spec in cfg.strategies.items():
        name = spec.strategy_class.__module__
        if name in out or name == "__main__" or name.partition(".")[0] == "deskd":
            continue
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        root = path.parent
        for _ in range(name.count(".") + (path.name == "__init__.py")):
            root = root.parent
        out[name] = str(root)
    return list(out.items())


def _worker_init(modules: list[tuple[str, str]], events: Any) -> None:
    """First thing in each worker: leave Ctrl-C to the parent (which stops the workers),
    keep the progress queue, and import the user's strategy modules each from its folder
    (:func:`_strategy_modules`), as the parent did when it loaded the config."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _EVENTS
    _EVENTS = events
    for name, root in modules:
        added = root not in sys.path
        if added:
            sys.path.insert(0, root)
        try:
            importlib.import_module(name)
        finally:
            if added:
                sys.path.remove(root)


def _scenario_worker(cfg: DeskConfig, scenario: str, decisions: str, part: Path,
                     window: Window | None, cf_part: Path | None = None) -> ScenarioResult:
    """One scenario in a worker: :func:`run_scenario` writing its decisions to ``part``
    (:meth:`DecisionJournal.part_writer`), its progress to the parent's queue."""
    events = _EVENTS
    events.put(("started", scenario, 0))
    with DecisionJournal.part_writer(part, decisions, scenario, cfg.universe.timeframe_s) as writer, \
            CounterfactualJournal.part_writer(cf_part) as cf_sink:
        res = run_scenario(cfg, scenario, writer, lambda n: events.put(("advanced", scenario, n)),
                           window=window, counterfactuals=cf_sink)
    events.put(("finished", scenario, res.bars))
    return res


def _relay(events: Any, progress: ScenarioProgress | None, stop: threading.Event) -> None:
    """Hand the workers' progress events to ``progress`` until a None event (every worker has
    exited: nothing can follow it) or, once ``stop`` is set, the queue is quiet."""
    while True:
        try:
            event = events.get(timeout=_RELAY_POLL_S)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        except (EOFError, OSError):
            return
        if event is None:
            return
        if progress is None:
            continue
        kind, scn, n = event
        with contextlib.suppress(Exception):
            if kind == "started":
                progress.started(scn)
            elif kind == "advanced":
                progress.advanced(scn, n)
            else:
                progress.finished(scn, n)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate ``pool``'s worker processes now (a scenario can run for minutes; Python
    3.11's executor can only wait for them). Reads the executor's private process table."""
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            p.terminate()


def _run_parallel(cfg: DeskConfig, scenarios: list[str], journal: DecisionJournal, folder: Path, jobs: int,
                  progress: ScenarioProgress | None, window: Window | None,
                  cf_journal: CounterfactualJournal | None = None) -> list[ScenarioResult]:
    """Run ``scenarios`` in ``jobs`` spawned worker processes; each writes its decisions to
    a part file in ``folder``, appended to ``journal`` in scenario order as soon as it and
    the scenarios before it have finished. Returns the results in scenario order. On the
    first error (or KeyboardInterrupt) the workers are terminated and it is raised here."""
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    stop = threading.Event()
    relay = threading.Thread(target=_relay, args=(events, progress, stop), name="backtest-progress", daemon=True)
    relay.start()
    parts = {scn: folder / f".decisions-{i}.part" for i, scn in enumerate(scenarios)}
    cf_on = cf_journal is not None and cf_journal.on
    cf_parts = {scn: folder / f".counterfactuals-{i}.part" for i, scn in enumerate(scenarios)}
    done: dict[str, ScenarioResult] = {}
    ok = False
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                               initargs=(_strategy_modules(cfg), events))
    try:
        futures: dict[Future[ScenarioResult], str] = {
            pool.submit(_scenario_worker, cfg, scn, journal.fmt, parts[scn], window,
                        cf_parts[scn] if cf_on else None): scn for scn in scenarios}
        joined = 0
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()  # a worker's exception is raised here
            while joined < len(scenarios) and scenarios[joined] in done:
                if journal.path is not None:
                    journal.append_part(parts[scenarios[joined]])
                if cf_on and cf_journal is not None:
                    cf_journal.append_part(cf_parts[scenarios[joined]])
                joined += 1
        ok = True
    finally:
        if not ok:
            _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        if ok:
            events.put(None)  # after every worker's last event
        stop.set()
        relay.join(timeout=None if ok else 2.0)
        events.close()
        if ok:
            events.join_thread()
        else:
            events.cancel_join_thread()
    return [done[s] for s in scenarios]


def warmup_bars_of(desk: Desk) -> int:
    """The most bars any of ``desk``'s strategies needs before its signals mean what they say
    (:meth:`deskd.strategies.api.Strategy.warmup_bars`), and the regime tagger's ATR and
    volatility z-score windows, and the strategies' entry filters' indicators."""
    rg = desk.cfg.regime
    need = [st.warmup_bars() for sts in desk.strategies.values() for st in sts]
    need += [f.warmup_bars() for f in desk.filters.values()]
    return max([*need, rg.atr_period + rg.vol_z_window])
