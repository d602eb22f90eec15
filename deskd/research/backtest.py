"""``deskd backtest``: the desk fed by the replay adapter, once per cost scenario.

Outputs (one folder): trades.csv, equity.csv, decisions.csv, report.json, config.yaml, and
report.html drawn from them (:mod:`deskd.research.report_html`); with a store URL, the same
run recorded in the store (the tables `deskd run` uses).
They are written into a hidden sibling folder that is renamed into place only when every
scenario has finished, so a failed run never leaves a folder that looks like a result.
report.json holds no wall-clock figures, so two runs on the same inputs are byte-identical.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from dataclasses import replace as replace_field
from pathlib import Path
from typing import IO

from sqlalchemy import Connection

from deskd import __version__
from deskd.adapters.bars import time_basis
from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import Window, replay, replay_feed, replay_window
from deskd.configs.loader import absolute, dump_config
from deskd.configs.models import DeskConfig
from deskd.core.events import Decision, StateChanged, Trade
from deskd.core.text import shown
from deskd.core.time import iso
from deskd.desk.desk import Desk
from deskd.persistence.store import StoreWriter, open_store
from deskd.research.metrics import trade_metrics
from deskd.research.outputs import (
    EQUITY_COLUMNS,
    TRADE_COLUMNS,
    CsvJournal,
    DecisionWriter,
    trade_row,
    write_decision_header,
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


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def run_scenario(cfg: DeskConfig, scenario: str, decisions: IO[str] | None,
                 progress: Callable[[int], None] | None = None,
                 store: Connection | None = None, replace: bool = False,
                 window: Window | None = None) -> ScenarioResult:
    """Replay every bar through a fresh Desk with ``scenario``'s costs, writing its decisions
    to the open decisions.csv ``decisions`` (header already written) and, given ``store``,
    every order, fill, trade, decision and state to it (uncommitted: the caller commits).
    With ``window`` only its bars trade (:func:`deskd.adapters.replay.replay_window`); its
    ``warmup_bars`` of None means the strategies' own warm-up (:func:`warmup_bars_of`)."""
    desk = paper_desk(cfg, scenario)
    recorder = (StoreWriter(store, desk, commit_every_bars=0, flush_every_bars=10_000,
                             on_existing="replace" if replace else "refuse")
                if store is not None else None)
    writer = None
    if decisions is not None:
        writer = DecisionWriter(decisions, scenario, desk.tf_s)
        desk.bus.subscribe(Decision, writer)
    transitions: list[StateChanged] = []
    desk.bus.subscribe(StateChanged, transitions.append)
    feed = replay_feed(cfg)
    end_bar = recorder.end_bar if recorder is not None else None
    if window is None:
        bars = replay(desk, feed, progress, end_bar)
    else:
        if window.warmup_bars is None:
            window = replace_field(window, warmup_bars=warmup_bars_of(desk))
        bars = replay_window(desk, feed, window, progress, end_bar)
    if writer is not None:
        writer.flush()
    if recorder is not None:
        recorder.write_snapshots()
    lg = desk.ledger
    files = {s: {"bars": st.bars, "first_bar": iso(st.first_ts) if st.first_ts is not None else None,
                 "last_bar": iso(st.last_ts) if st.last_ts is not None else None}
             for s, st in feed.stats.items()}
    return ScenarioResult(scenario, bars, lg.closed, lg.equity_rows, lg.equity_usd,
                          (lg.max_dd_usd, lg.max_dd_frac), dict(writer.counts) if writer else {},
                          files, transitions, min(lg.min_equity_usd, lg.equity_usd))


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


def scenario_report(cfg: DeskConfig, res: ScenarioResult) -> dict:
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
    return out


def build_report(cfg: DeskConfig, feed_stats: dict, results: list[ScenarioResult]) -> dict:
    return {
        "deskd_version": __version__,
        "desk": cfg.desk,
        "timeframe": cfg.universe.timeframe,
        "config_sha256": hashlib.sha256(dump_config(cfg).encode()).hexdigest(),
        "data": feed_stats,
        "starting_equity_usd": cfg.account.starting_equity_usd,
        "scenarios": {r.scenario: scenario_report(cfg, r) for r in results},
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


def run_backtest(cfg: DeskConfig, scenarios: list[str], out: Path, force: bool = False,
                 on_scenario_start: Callable[[str], Callable[[int], None] | None] | None = None,
                 store_url: str | None = None, window: Window | None = None) -> dict:
    """Run every scenario and write the outputs to ``out`` atomically; returns the report.
    With ``store_url`` every scenario is also recorded in that store, in one transaction
    committed only when everything else succeeded (``force`` replaces earlier rows of the
    same desk and scenario).

    Raises BacktestInputError (inputs), BarFileError (a bad bar file), StoreError; on any
    error the partial folder is removed, the store transaction rolled back, and ``out`` left
    as it was.
    """
    check_inputs(cfg, scenarios)
    conn = open_store(store_url).connect() if store_url else None
    tmp = _prepare_out(out, force, [cfg.data.files[s] for s in cfg.universe.symbols])
    try:
        results = []
        with open(tmp / "decisions.csv", "w", newline="") as dfh:
            write_decision_header(dfh)
            for scn in scenarios:
                progress = on_scenario_start(scn) if on_scenario_start else None
                results.append(run_scenario(cfg, scn, dfh, progress, conn, replace=force, window=window))
        feed_stats = {}
        for sym in cfg.universe.symbols:
            path = cfg.data.files[sym]
            feed_stats[sym] = {"path": path, "sha256": _sha256(path),
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
        report = build_report(cfg, feed_stats, results)
        if window is not None:  # only then: a run over whole files reads as it always has
            report["window"] = {"from": iso(window.start_ts) if window.start_ts is not None else None,
                                "to": iso(window.end_ts) if window.end_ts is not None else None,
                                "warmup_bars": window.warmup_bars if window.warmup_bars is not None
                                else warmup_bars_of(paper_desk(cfg, scenarios[0]))}
        (tmp / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        (tmp / "config.yaml").write_text(dump_config(cfg))
        write_report_html(tmp, cfg, report)
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
    on_scenario_start: Callable[[str], Callable[[int], None] | None] | None = None
    window: Window | None = None

    def run(self) -> dict:
        return run_backtest(self.cfg, self.scenarios, self.out, self.force, self.on_scenario_start,
                            self.store_url, self.window)


def build_backtest(cfg: DeskConfig, scenarios: list[str] | None, out: Path, force: bool = False,
                   store_url: str | None = None,
                   on_scenario_start: Callable[[str], Callable[[int], None] | None] | None = None,
                   window: Window | None = None) -> Backtest:
    """The backtest of ``cfg`` over ``scenarios`` (default: every scenario of the config),
    trading only ``window``'s bars when given. Raises BacktestInputError when it cannot start
    (a symbol without data, an unknown scenario, an empty window)."""
    scenarios = scenarios or list(cfg.costs.scenarios)
    check_inputs(cfg, scenarios)
    if window is not None and window.start_ts is not None and window.end_ts is not None \
            and window.start_ts >= window.end_ts:
        raise BacktestInputError(f"--from {iso(window.start_ts)} is not before --to {iso(window.end_ts)}")
    return Backtest(cfg, scenarios, out, force, store_url, on_scenario_start, window)


def warmup_bars_of(desk: Desk) -> int:
    """The most bars any of ``desk``'s strategies needs before its signals mean what they say
    (:meth:`deskd.strategies.api.Strategy.warmup_bars`), and the regime tagger's ATR and
    volatility z-score windows."""
    rg = desk.cfg.regime
    need = [st.warmup_bars() for sts in desk.strategies.values() for st in sts]
    return max([*need, rg.atr_period + rg.vol_z_window])
