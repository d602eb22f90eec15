"""The ``deskd`` command line.

Exit codes: 0 success; 2 bad input (config, data, arguments, an unreachable daemon), with
one message naming the file, key or row; 1 an action the daemon refused, or an internal error.

Every log line of every command goes to stderr (structlog, JSON lines); stdout carries only
the command's output (tables, JSON). Heavy libraries (pandas, SQLAlchemy, pydantic) are
imported inside the commands that use them, so ``deskd --version`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from deskd import __version__

if TYPE_CHECKING:

    from deskd.configs.models import DeskConfig

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2
EXIT_GATE_FAILED = 1  # deskd verdict: a gate failed (a deployment script stops there)
EXIT_VERIFY_FAILED = 1  # deskd verify: a file differs from the manifest or the fingerprint
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout closed it first, as the shell reports it


class InputError(ValueError):
    """Bad command-line input."""


def _parse_data(items: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """--data SYMBOL=PATH[@ZONE] items as ({symbol: absolute path}, {symbol: zone given}).
    Raises InputError for an item that is not SYMBOL=PATH, and for a symbol given twice
    (which file was meant?)."""
    from deskd.configs.loader import absolute
    from deskd.core.text import shown

    out: dict[str, str] = {}
    zones: dict[str, str] = {}
    for item in items:
        sym, sep, path = item.partition("=")
        if not sep or not sym or not path:
            raise InputError(f"--data {shown(item)}: expected SYMBOL=PATH[@ZONE], e.g. "
                             f"EURUSD=bars/EURUSD_M1.csv.gz@America/New_York")
        sym = sym.strip().upper()
        head, at, zone = path.rpartition("@")
        if at and head and ("/" in zone or zone.upper() == "UTC") and not Path(path).exists():
            path = head
            zones[sym] = zone
        if sym in out:
            raise InputError(f"--data {sym} is given twice ({shown(out[sym])} and {shown(absolute(path))}): "
                             f"give one file per symbol")
        out[sym] = absolute(path)
    return out, zones


def _load(args) -> DeskConfig:
    from pydantic import ValidationError

    from deskd.configs.loader import load_config
    from deskd.configs.models import DataConfig, check_timezone
    from deskd.core.text import printable, shown

    cfg = load_config(args.config)
    if getattr(args, "data", None) or getattr(args, "data_timezone", None):
        given, zones = _parse_data(args.data or [])
        files = {**cfg.data.files, **given}
        unknown = [s for s in files if s not in cfg.universe.symbols]
        if unknown:
            raise InputError(f"--data: {', '.join(map(shown, unknown))} not in universe.symbols "
                             f"{cfg.universe.symbols} of {args.config}")
        # --data-timezone: the zone of the files --data names (without @ZONE); with no --data,
        # of every file (as before per-file zones)
        timezones = dict(cfg.data.timezones)
        for sym in given:
            timezones.pop(sym, None)
            if sym in zones or args.data_timezone:
                timezones[sym] = zones.get(sym) or args.data_timezone
        for sym, zone in zones.items():
            try:
                check_timezone(zone)
            except ValueError as e:
                raise InputError(f"--data {sym}=...@{shown(zone)}: {printable(str(e), 240)}") from None
        tz = args.data_timezone if args.data_timezone and not given else cfg.data.timezone
        try:
            data = DataConfig(timezone=tz, files=files, timezones=timezones)
        except ValidationError as e:
            err = e.errors()[0]
            flag = "--data" if err["loc"][:1] == ("files",) else "--data-timezone"
            raise InputError(f"{flag}: {printable(err['msg'].removeprefix('Value error, '), 240)}") from None
        cfg = cfg.model_copy(update={"data": data})
    return cfg


def _scenarios(value: str) -> list[str]:
    """--scenarios A,B,C as a list. Raises InputError when it names none (``--scenarios ""``
    used to run every scenario)."""
    from deskd.core.text import shown

    names = [s.strip() for s in value.split(",") if s.strip()]
    if not names:
        raise InputError(f"--scenarios {shown(value)} names no scenario: give e.g. A or A,B,C, "
                         f"or leave it out to run every scenario of the config")
    return names


def _store_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a file path made into a SQLite URL."""
    from deskd.persistence.store import sqlite_url

    return value if "://" in value else sqlite_url(value)


def _utc_ts(flag: str, value: str, end: bool = False) -> int:
    """``--from``/``--to`` as UTC epoch seconds: a date (midnight UTC; for ``end``, the next
    midnight, so the date is included) or a date-time in UTC (a trailing Z or +00:00 allowed).
    Raises InputError."""
    from datetime import UTC, datetime, timedelta

    from deskd.core.text import shown

    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{flag} {shown(value)}: expected a date or date-time in UTC, e.g. 2019-01-01 "
                         f"or 2019-01-01T12:00") from None
    if t.tzinfo is not None and t.utcoffset() != timedelta(0):
        raise InputError(f"{flag} {shown(value)}: give the time in UTC (Z or no offset)")
    t = t.replace(tzinfo=UTC)
    date_only = len(value.strip()) == 10
    if end and date_only:
        t += timedelta(days=1)
    if not 1970 <= t.year <= 2100:
        raise InputError(f"{flag} {shown(value)}: outside 1970-2100")
    return int(t.timestamp())


def _narrow(cfg: DeskConfig, args) -> DeskConfig:
    """The config restricted by backtest's --symbols, --strategies and --timeframe (each None
    when not given), validated again as a whole. Raises InputError naming the flag."""
    from pydantic import ValidationError

    from deskd.configs.models import DeskConfig
    from deskd.core.text import printable, shown

    if not (args.symbols or args.strategies or args.timeframe):
        return cfg
    d = cfg.model_dump(mode="json")
    if args.symbols:
        syms = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        unknown = [s for s in syms if s not in cfg.universe.symbols]
        if not syms or unknown:
            raise InputError(f"--symbols {shown(args.symbols)}: {'not in' if unknown else 'names none of'} "
                             f"universe.symbols {cfg.universe.symbols}")
        d["universe"]["symbols"] = syms
        d["data"]["files"] = {s: f for s, f in d["data"]["files"].items() if s in syms}
        d["costs"]["spread_pips"] = {s: v for s, v in d["costs"]["spread_pips"].items() if s in syms}
        for spec in d["strategies"].values():
            if spec.get("symbols"):
                spec["symbols"] = [s for s in spec["symbols"] if s in syms] or None
                spec["enabled"] = spec["enabled"] and spec["symbols"] is not None
    if args.strategies:
        ids = [s.strip() for s in args.strategies.split(",") if s.strip()]
        unknown = [s for s in ids if s not in d["strategies"]]
        if not ids or unknown:
            raise InputError(f"--strategies {shown(args.strategies)}: the config's strategies are "
                             f"{', '.join(d['strategies'])}")
        for sid, spec in d["strategies"].items():
            spec["enabled"] = sid in ids
        d["risk"]["priority"] = [s for s in d["risk"]["priority"] if s in ids]
    if args.timeframe:
        d["universe"]["timeframe"] = args.timeframe
    try:
        return DeskConfig.model_validate(d, context={"config_dir": Path(args.config).resolve().parent})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise InputError(f"--symbols/--strategies/--timeframe: {where}: "
                         f"{printable(err['msg'].removeprefix('Value error, '), 240)}") from None


class _ScenarioBars:
    """``deskd backtest``'s progress (a :class:`deskd.research.backtest.ScenarioProgress`): on
    a terminal, a bar per scenario with its bars done, their total and the time left once the
    total is known (counted from the bar files in a background thread, else taken from the
    first scenario to finish); elsewhere one line per scenario start and finish on stderr;
    nothing when ``quiet``. Its methods may be called from another thread (parallel runs)."""

    def __init__(self, console, quiet: bool, files: list[str]):
        import threading

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.lines = not quiet and not console.is_terminal
        self.bars = Progress(TextColumn("scenario {task.fields[scn]}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("bars"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                             console=console, transient=True, disable=quiet or not console.is_terminal)
        self.tasks: dict[str, TaskID] = {}
        self.started_at: dict[str, float] = {}
        self.total: int | None = None
        self.lock = threading.Lock()
        if not self.bars.disable:
            threading.Thread(target=self._count, args=(files,), name="count-bars", daemon=True).start()

    def _count(self, files: list[str]) -> None:
        from deskd.research.backtest import count_bars

        n = count_bars(files)
        if n is not None:
            self._set_total(n)

    def _set_total(self, n: int) -> None:
        with self.lock:
            if self.total is not None:
                return
            self.total = n
            for task in self.bars.tasks:
                if not task.finished:
                    self.bars.update(task.id, total=n)

    def started(self, scenario: str) -> None:
        import time

        self.started_at[scenario] = time.monotonic()
        if self.lines:
            print(f"deskd backtest: scenario {scenario} ...", file=sys.stderr, flush=True)
        with self.lock:
            self.tasks[scenario] = self.bars.add_task("replay", total=self.total, scn=scenario)

    def advanced(self, scenario: str, bars: int) -> None:
        self.bars.advance(self.tasks[scenario], bars)

    def finished(self, scenario: str, bars: int) -> None:
        import time

        task = self.tasks[scenario]
        read = next(int(t.completed) for t in self.bars.tasks if t.id == task)
        self.bars.update(task, total=read, completed=read)
        self._set_total(read)  # later scenarios read as many bars
        if self.lines:
            took = time.monotonic() - self.started_at.get(scenario, time.monotonic())
            print(f"deskd backtest: scenario {scenario} done ({bars:,} bars, {took:.1f} s)",
                  file=sys.stderr, flush=True)


def cmd_backtest(args) -> int:
    from datetime import UTC, datetime

    from rich.console import Console

    from deskd.adapters.replay import Window
    from deskd.research.backtest import build_backtest, check_out
    from deskd.research.outputs import DECISION_FILES

    cfg = _narrow(_load(args), args)
    window = None
    if args.from_ or args.to:
        window = Window(_utc_ts("--from", args.from_) if args.from_ else None,
                        _utc_ts("--to", args.to, end=True) if args.to else None, warmup_bars=None)
    scenarios = _scenarios(args.scenarios) if args.scenarios is not None else list(cfg.costs.scenarios)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("runs") / f"backtest-{cfg.desk}-{stamp}"
    check_out(out, args.force, [args.config, *cfg.data.files.values()])
    progress = _ScenarioBars(Console(stderr=True), args.quiet or args.json,
                             [cfg.data.files[s] for s in cfg.universe.symbols if s in cfg.data.files])
    backtest = build_backtest(cfg, scenarios, out, args.force, _store_url(args.store) if args.store else None,
                              progress, window, jobs=args.jobs, decisions=args.decisions,
                              counterfactuals=args.counterfactuals == "on")
    with progress.bars:
        report = backtest.run()
    _warn_warmup(cfg, scenarios[0], {s: d["bars"] for s, d in report["data"].items()})
    if args.json:
        print(json.dumps({"out": str(out), "scenarios": {k: v["overall"] for k, v in report["scenarios"].items()}}))
    elif not args.quiet:
        from deskd.research.summary import summary

        Console(width=None if sys.stdout.isatty() else 80).print(summary(report))
        files = ["report.html", "trades.csv", "equity.csv", DECISION_FILES.get(args.decisions),
                 "counterfactuals.parquet" if args.counterfactuals == "on" else None, "report.json",
                 "config.yaml", "trades.parquet", "equity.parquet", "run.json", "manifest.json", "metadata.json"]
        print(f"outputs: {out}/ ({', '.join(f for f in files if f)})")
    return EXIT_OK


def _research_config(args) -> DeskConfig:
    """The config of ``deskd tune``/``walkforward``: loaded, narrowed (--symbols, --timeframe),
    with --objective, --top-k, --seed and --scenario over its ``tune:`` section, and --strategy
    one of its strategies. Raises InputError naming the flag."""
    from pydantic import ValidationError

    from deskd.configs.models import TUNE_OBJECTIVES, DeskConfig

    cfg = _narrow(_load(args), args)
    updates = {k: v for k, v in (("objective", args.objective), ("top_k", args.top_k), ("seed", args.seed),
                                 ("stage1_scenario", args.scenario)) if v is not None}
    if args.objective is not None and args.objective not in TUNE_OBJECTIVES:
        raise InputError(f"--objective {args.objective}: one of {', '.join(TUNE_OBJECTIVES)}")
    if updates:
        d = cfg.model_dump(mode="json", by_alias=True)
        d["tune"].update(updates)
        try:
            cfg = DeskConfig.model_validate(d, context={"config_dir": Path(args.config).resolve().parent})
        except ValidationError as e:
            err = e.errors()[0]
            raise InputError(f"--{'.'.join(map(str, err['loc'][1:])).replace('_', '-')}: "
                             f"{err['msg'].removeprefix('Value error, ')}") from None
    if args.strategy not in cfg.strategies.root:
        raise InputError(f"--strategy {args.strategy}: the config's strategies are {', '.join(cfg.strategies.root)}")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}: give 1 or more")
    if args.trials is not None and args.trials < 1:
        raise InputError(f"--trials {args.trials}: give 1 or more")
    return cfg


def _research_out(args, cfg: DeskConfig, default: Path, what: str) -> tuple[Path, str]:
    """(--out, the study's storage URL): a folder that holds this command's study is resumed;
    any other non-empty folder is refused unless --force. Raises InputError."""
    from deskd.research.backtest import BacktestInputError, check_out

    out = Path(args.out) if args.out else default
    study_file = out / "study.db"
    if not study_file.exists() and args.storage is None:
        try:
            check_out(out, args.force, [args.config, *cfg.data.files.values()])
        except BacktestInputError as e:
            raise InputError(str(e).replace("--force", f"--force (or re-run a {what}'s own --out to resume it)")) from None
    out.mkdir(parents=True, exist_ok=True)
    return out, _store_url(args.storage) if args.storage else _store_url(str(study_file))


def _stop_on_ctrl_c() -> None:
    """First Ctrl-C: the tune stops after the trials in flight (every finished one is in the
    study); a second one stops at once."""
    import signal

    from deskd.research.tuning.tune import request_stop

    def first(signum, frame):
        print("deskd: stopping after the trials in flight (Ctrl-C again to stop now)", file=sys.stderr, flush=True)
        request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, first)


def _interrupted(storage: str) -> int:
    print(f"deskd: interrupted: every finished trial is in the study ({storage}); run the same command "
          f"again to resume", file=sys.stderr)
    return 130


def cmd_tune(args) -> int:
    """``deskd tune``: stage 1 over the space, stage 2 of the top k; resumes the study in --out."""
    from deskd.research.backtest import available_cpus
    from deskd.research.tuning.tune import TuneOptions, tune

    if args.filters:
        return cmd_tune_filters(args)
    split_flags = [f for f, v in (("--train", args.train), ("--test", args.test), ("--embargo", args.embargo),
                                  ("--train-bars", args.train_bars), ("--test-bars", args.test_bars),
                                  ("--embargo-bars", args.embargo_bars), ("--anchored", args.anchored or None))
                   if v is not None]
    if split_flags:
        raise InputError(f"{split_flags[0]} splits the data for --filters; a parameter tune scores the "
                         f"in-sample window (--from/--to), deskd walkforward tunes per split")
    cfg = _research_config(args)
    out, storage = _research_out(args, cfg, Path("runs") / f"tune-{args.strategy}-{args.sampler}", "tune")
    opts = TuneOptions(
        strategy_id=args.strategy, out_dir=out, storage=storage, sampler=args.sampler, trials=args.trials,
        workers=args.workers or available_cpus(), cluster=args.cluster, study_name=args.study,
        start_ts=_utc_ts("--from", args.from_) if args.from_ else None,
        end_ts=_utc_ts("--to", args.to, end=True) if args.to else None,
        config_dir=Path(args.config).resolve().parent)
    _stop_on_ctrl_c()
    try:
        res = tune(cfg, opts, quiet=args.quiet or args.json)
    except KeyboardInterrupt:
        return _interrupted(storage)
    if args.json:
        print((out / "tune.json").read_text().strip())
    elif not args.quiet:
        from deskd.research.tuning.summary import tune_summary

        print(tune_summary(res))
        print(f"outputs: {out}/ (report.html, top_k.csv, trials.csv, trials.parquet, stage2.csv, "
              f"equity_top_k.csv, invalid.csv, tune.json, manifest.json, study.db)")
    return EXIT_OK


def _walkforward_splits(args, cfg: DeskConfig) -> tuple[list, dict]:
    """The walk-forward splits of --train/--test/--embargo (calendar spans, default 12M, 3M,
    1D) or --train-bars/--test-bars/--embargo-bars over ``cfg``'s bars, and their spec for the
    record (``deskd walkforward``, ``deskd tune --filters``). Raises InputError."""
    from deskd.research.splits import bar_splits, calendar_splits, parse_span
    from deskd.research.walkforward import bar_times

    by_bars = [args.train_bars, args.test_bars]
    by_time = [args.train, args.test]
    if any(v is not None for v in by_bars) and any(v is not None for v in by_time + [args.embargo]):
        raise InputError("give calendar spans (--train, --test, --embargo) or bar counts (--train-bars, "
                         "--test-bars, --embargo-bars), not both")
    times = bar_times(cfg)
    if len(times) == 0:
        raise InputError("the config's bar files hold no bars")
    try:
        if any(v is not None for v in by_bars):
            if None in by_bars:
                raise ValueError("--train-bars and --test-bars go together")
            splits = bar_splits(times, args.train_bars, args.test_bars, args.embargo_bars or 0, args.anchored,
                                cfg.universe.timeframe_s)
            spec = {"unit": "bars", "train_bars": args.train_bars, "test_bars": args.test_bars,
                    "embargo_bars": args.embargo_bars or 0, "anchored": args.anchored}
        else:
            train, test, embargo = args.train or "12M", args.test or "3M", args.embargo or "1D"
            splits = calendar_splits(int(times[0]), int(times[-1]) + cfg.universe.timeframe_s,
                                     parse_span("--train", train), parse_span("--test", test),
                                     parse_span("--embargo", embargo), args.anchored)
            spec = {"unit": "calendar", "train": train, "test": test, "embargo": embargo, "anchored": args.anchored}
    except ValueError as e:
        raise InputError(str(e)) from None
    return splits, spec


def cmd_tune_filters(args) -> int:
    """``deskd tune --filters``: score entry-filter candidates on walk-forward splits, thresholds
    from each train window only (:mod:`deskd.research.tuning.filters`)."""
    from deskd.research.backtest import available_cpus
    from deskd.research.tuning.filters import FilterTuneOptions, as_json, filter_tune, summary

    for flag, given in (("--sampler tpe", args.sampler != "grid"), ("--trials", args.trials is not None),
                        ("--objective", args.objective is not None), ("--top-k", args.top_k is not None),
                        ("--from", args.from_ is not None), ("--to", args.to is not None),
                        ("--study", args.study is not None), ("--storage", args.storage is not None)):
        if given:
            raise InputError(f"{flag} does not apply to --filters (the split flags --train/--test/--embargo or "
                             f"--train-bars/--test-bars/--embargo-bars choose the windows)")
    cfg = _research_config(args)
    splits, spec = _walkforward_splits(args, cfg)
    out = Path(args.out) if args.out else Path("runs") / f"filters-{args.strategy}"
    _check_result_folder(out, "filters.json", "deskd tune --filters")
    opts = FilterTuneOptions(args.strategy, out, splits, spec, workers=args.workers or available_cpus(),
                             cluster=args.cluster, config_dir=Path(args.config).resolve().parent)
    _stop_on_ctrl_c()
    try:
        res = filter_tune(cfg, opts, quiet=args.quiet or args.json)
    except KeyboardInterrupt:
        print("deskd: interrupted: nothing written", file=sys.stderr)
        return 130
    if args.json:
        print(as_json(res.meta))
    elif not args.quiet:
        print(summary(res.meta, res.ranking))
        print(f"outputs: {out}/ (filters.csv, filters.json, manifest.json)")
    return EXIT_OK


def cmd_walkforward(args) -> int:
    """``deskd walkforward``: tune on each train window, run the choice on the test window."""
    from deskd.research.backtest import available_cpus
    from deskd.research.walkforward import WalkForwardOptions, walkforward

    cfg = _research_config(args)
    splits, spec = _walkforward_splits(args, cfg)
    out, storage = _research_out(args, cfg, Path("runs") / f"walkforward-{args.strategy}", "walk-forward")
    opts = WalkForwardOptions(
        strategy_id=args.strategy, out_dir=out, splits=splits, spec=spec, storage=storage, sampler=args.sampler,
        trials=args.trials, workers=args.workers or available_cpus(), cluster=args.cluster,
        config_dir=Path(args.config).resolve().parent)
    _stop_on_ctrl_c()
    try:
        meta = walkforward(cfg, opts, quiet=args.quiet or args.json)
    except KeyboardInterrupt:
        return _interrupted(storage)
    if args.json:
        print(json.dumps({"out": str(out), "out_of_sample": meta["out_of_sample"],
                          "parameter_stability": meta["parameter_stability"]}))
    elif not args.quiet:
        from deskd.research.walkforward import summary

        print(summary(meta))
        print(f"outputs: {out}/ (report.html, splits.csv, oos_trades.csv, oos_equity.csv, walkforward.json, "
              f"splits/NN/ per split's tune, manifest.json, study.db)")
    return EXIT_OK


def cmd_montecarlo(args) -> int:
    """``deskd montecarlo``: block-bootstrap Monte Carlo of a run's trades and days, and cost noise."""
    from deskd.research.montecarlo import (
        Options,
        check_options,
        check_out,
        default_out,
        parse_range,
        read_run,
        run_montecarlo,
        summary,
        write_outputs,
    )

    block = None
    if args.block != "auto":
        try:
            block = int(args.block)
        except ValueError:
            raise InputError(f"--block {args.block}: a whole number of steps, or auto") from None
    opts = Options(scenario=args.scenario, sims=args.sims, seed=args.seed, block=block, method=args.method,
                   spread_mult=parse_range("--spread-mult", args.spread_mult),
                   slippage_mult=parse_range("--slippage-mult", args.slippage_mult), spike_prob=args.spike_prob)
    check_options(opts)
    run_dir = Path(args.run_dir)
    inp = read_run(run_dir, args.scenario)
    out = Path(args.out) if args.out else default_out(run_dir, inp.scenario)
    check_out(out)
    mc = run_montecarlo(run_dir, opts, inp)
    write_outputs(mc, out)
    if args.json:
        print((out / "montecarlo.json").read_text().strip())
    elif not args.quiet:
        print(summary(mc.meta))
        print(f"outputs: {out}/ (report.html, montecarlo.json, paths.parquet, manifest.json)")
    return EXIT_OK


def _check_result_folder(out: Path, marker: str, what: str) -> None:
    """:func:`deskd.research.outputs.check_result_folder` as a command's input error."""
    from deskd.research.outputs import check_result_folder

    try:
        check_result_folder(out, marker, what)
    except FileExistsError as e:
        raise InputError(str(e)) from None


def cmd_stress(args) -> int:
    """``deskd stress``: cost sensitivity and param perturbation of a run, re-run on the desk."""
    from deskd.research.backtest import available_cpus
    from deskd.research.stress import (
        Options,
        check_options,
        default_out,
        read_plan,
        run_stress,
        summary,
        write_outputs,
    )

    try:
        multiples = tuple(float(x) for x in args.multiples.split(","))
    except ValueError:
        raise InputError(f"--multiples {args.multiples}: numbers separated by commas, e.g. 1,1.5,2,3") from None
    opts = Options(scenario=args.scenario, strategy_id=args.strategy, multiples=multiples, neighbours=args.neighbours,
                   jitter_frac=args.jitter_pct / 100.0, int_steps=args.int_steps, seed=args.seed,
                   workers=args.workers if args.workers is not None else available_cpus())
    check_options(opts)
    plan = read_plan(Path(args.run_dir), opts)
    out = Path(args.out) if args.out else default_out(Path(args.run_dir), plan.scenario)
    _check_result_folder(out, "stress.json", "deskd stress")
    st = run_stress(plan, opts, quiet=args.quiet or args.json)
    write_outputs(st, out)
    if args.json:
        print((out / "stress.json").read_text().strip())
    elif not args.quiet:
        print(summary(st.meta))
        print(f"outputs: {out}/ (report.html, stress.json, cost.csv, neighbours.csv, manifest.json)")
    return EXIT_OK


def cmd_verdict(args) -> int:
    """``deskd verdict``: each run's evidence against the config's gates; exit 0 only if all pass."""
    from deskd.configs.loader import load_config
    from deskd.research.verdict import judge, table, write_outputs

    gates = load_config(args.config).verdict if args.config else None
    verdicts = [judge(Path(d), gates) for d in args.run_dirs]
    out = Path(args.out) if args.out else (Path(args.run_dirs[0]) / "verdict" if len(args.run_dirs) == 1 else None)
    if out is not None:
        write_outputs(verdicts, out)
    if args.json:
        print(json.dumps({"passed": all(v.passed for v in verdicts), "runs": [v.as_dict() for v in verdicts]},
                         indent=2))
    elif not args.quiet:
        print(table(verdicts))
        if out is not None:
            print(f"outputs: {out}/ (report.html, verdict.json, manifest.json)")
    return EXIT_OK if all(v.passed for v in verdicts) else EXIT_GATE_FAILED


def cmd_view(args) -> int:
    """``deskd view``: serve the read-only viewer of the run folders until Ctrl-C."""
    import asyncio

    from deskd.viewer.app import exposure_warning, serve
    from deskd.viewer.data import open_runs

    runs = open_runs([Path(d) for d in args.run_dirs])
    if warning := exposure_warning(args.host):
        print(f"deskd: warning: {warning}", file=sys.stderr)
    for r in runs:
        print(f"deskd view: run {r.index} {r.id} ({r.kind}, scenarios {', '.join(r.scenarios) or 'none'}): {r.path}",
              file=sys.stderr)

    def ready(url: str) -> None:
        print(f"deskd view: serving {len(runs)} run{'s' if len(runs) != 1 else ''} at {url} (Ctrl-C to stop)",
              flush=True)
    try:
        asyncio.run(serve(runs, args.host, args.port, ready))
    except OSError as e:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    print("deskd view: stopped", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args) -> int:
    """``deskd verify``: a run folder against its manifest.json and run.json's fingerprint;
    exit 0 when everything holds, 1 naming each file that does not, 2 for a folder that is not
    a run (RunFolderError)."""
    from deskd.core.text import printable
    from deskd.research.export import verify_run

    v = verify_run(Path(args.run_dir))
    if args.json:
        print(json.dumps(v.as_dict(), indent=2))
    else:
        for name, why in v.warnings:
            print(f"deskd: warning: {printable(name)}: {printable(why)}", file=sys.stderr)
        for name, why in v.failures:
            print(f"deskd verify: FAILED {printable(name)}: {printable(why)}", file=sys.stderr)
        if not args.quiet:
            what = f"run {v.run_id}" if v.kind == "backtest" else f"{v.kind} folder"
            held = "manifest.json and the fingerprint" if v.kind == "backtest" else "manifest.json"
            print(f"{args.run_dir}: {what}: " + (f"OK, {v.checked} files match {held}" if v.ok
                                                            else f"FAILED ({len(v.failures)} problem(s))"))
    return EXIT_OK if v.ok else EXIT_VERIFY_FAILED


def _warn_warmup(cfg: DeskConfig, scenario: str, bars: dict[str, int]) -> None:
    """``deskd: warning:`` on stderr for each symbol with fewer bars than its strategies'
    warm-up."""
    from deskd.adapters.paper import paper_desk
    from deskd.daemon.nodes import warmup_shortfalls

    for line in warmup_shortfalls(paper_desk(cfg, scenario), bars):
        print(f"deskd: warning: {line}", file=sys.stderr)


def _token(args) -> str | None:
    """The API token: --token-file, else $DESKD_API_TOKEN; never the desk config."""
    from deskd.configs.settings import Settings

    if getattr(args, "token_file", None):
        return _read_token(args.token_file, "--token-file")
    return Settings().api_token_value()


def cmd_run(args) -> int:
    from deskd.configs.settings import Settings
    from deskd.daemon.logs import configure_logging
    from deskd.daemon.nodes import RunOptions, build_live_node, build_paper_node
    from deskd.research.backtest import check_inputs

    configure_logging(args.log_level)
    cfg = _load(args)
    opts = RunOptions(
        store_url=_store_url(args.store or str(Settings().default_store_path())), scenario=args.scenario,
        speed=args.speed, exit_at_end=args.exit_at_end, warmup_bars=args.warmup_bars,
        poll_interval_s=args.poll_interval, broker_timeout_s=args.broker_timeout,
        reconcile_every_s=args.reconcile_every, adopt=args.adopt, serve_api=not args.no_api,
        api_host=args.api_host, api_port=args.api_port, api_allowed_hosts=tuple(args.api_allowed_host),
        api_token=_token(args), health_file=args.health_file, broker=args.broker,
        counterfactuals=args.counterfactuals == "on")
    if args.broker == "http":
        return build_live_node(cfg, opts).run()
    check_inputs(cfg, [args.scenario])
    node = build_paper_node(cfg, opts)
    code = node.run()
    if node.summary:
        print(node.summary, flush=True)
    return code


def _api_request(args, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A call to the daemon's API with the token of ``args`` for actions. Raises InputError
    when the daemon cannot be reached or no token is set for a POST."""
    from deskd.configs.settings import Settings
    from deskd.daemon.api_client import DaemonUnreachable, api_request

    args.api = _api_url(args.api or Settings().api)
    token = None
    if method == "POST":
        token = _token(args)
        if not token:
            raise InputError("no API token: set DESKD_API_TOKEN or pass --token-file")
    try:
        return api_request(args.api, method, path, body, token)
    except DaemonUnreachable as e:
        raise InputError(str(e)) from None


def _api_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host (and a valid port). Raises InputError."""
    from urllib.parse import urlsplit

    from deskd.core.text import shown

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"--api {shown(url)}: not an http:// URL of the daemon's API (e.g. "
                         f"http://127.0.0.1:8765; the default comes from $DESKD_API)")
    return url


def _call_api(args, method: str, path: str, body: dict | None = None) -> int:
    status, reply = _api_request(args, method, path, body)
    if status >= 300:
        print(f"deskd: {method} {path} refused ({status}): {reply.get('error', reply)}", file=sys.stderr)
        return EXIT_INTERNAL
    print(json.dumps(reply, indent=2))
    return EXIT_OK


def cmd_status(args) -> int:
    """GET /status as a few readable lines (state and why entries stop, equity and drawdown,
    positions, feed, broker, strategy health), or with --json the daemon's answer as it is."""
    status, reply = _api_request(args, "GET", "/status")
    if status >= 300:
        print(f"deskd: GET /status refused ({status}): {reply.get('error', reply)}", file=sys.stderr)
        return EXIT_INTERNAL
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print("\n".join(_status_lines(reply)))
    return EXIT_OK


def _status_lines(r: dict) -> list[str]:
    """The readable lines of a GET /status answer (see deskd.daemon.api)."""
    from deskd.core.text import printable

    num = lambda x, f=",.2f": "-" if x is None else format(x, f)  # noqa: E731
    lines = [f"desk {r['desk']}/{r['scenario']}: {r['state']}"]
    halt = r.get("halt")
    if halt:
        why = ": ".join(str(x) for x in (halt.get("trigger"), halt.get("reason")) if x) or "reason not recorded"
        when = "".join(f" {k} {halt[k]}" for k in ("since", "until") if halt.get(k))
        lines[0] += f" - no new entries ({printable(why, 240)}){when}"
    dd = r.get("drawdown") or {}
    lines.append(f"equity {num(r.get('equity_usd'))} USD, balance {num(r.get('balance_usd'))} USD; drawdown "
                 f"day {num(dd.get('day_frac'), '.2%')}, week {num(dd.get('week_frac'), '.2%')}, "
                 f"from peak {num(dd.get('peak_frac'), '.2%')}")
    positions = r.get("open_positions") or []
    lines.append(f"positions: {len(positions) or 'none'}")
    px = lambda x: format(x, ".6g")  # noqa: E731 (fills carry costs: 1.1602202624594344 -> 1.16022)
    for p in positions:
        tp = f" TP {px(p['tp_price'])}" if p.get("tp_price") is not None else ""
        lines.append(f"  {p['symbol']} {p['side']} {p['units']:,} @ {px(p['entry_price'])} SL {px(p['sl_price'])}{tp} "
                     f"({p['strategy_id']}), unrealized {num(p.get('unrealized_usd'))} USD, "
                     f"{p['hold_bars']} bars")
    feed = r.get("feed") or {}
    last = ", ".join(f"{s} {t}" for s, t in (r.get("last_bar") or {}).items()) or "none yet"
    lines.append(f"feed: last bar {last}; {feed.get('live_bars', 0):,} live bars, "
                 f"{feed.get('warm_up_bars', 0):,} warm-up, {feed.get('duplicates', 0)} duplicates, "
                 f"{feed.get('gaps', 0)} gaps, {feed.get('late', 0)} late"
                 + (f"; counterfactuals {r['counterfactuals']}" if r.get("counterfactuals") else ""))
    b = r.get("broker") or {}
    if b.get("kind") == "http":
        diffs = b.get("last_reconcile_differences")
        rec = "not reconciled yet" if diffs is None else (
            "reconciled clean" if not diffs else f"{len(diffs)} reconciliation difference(s)")
        closes = b.get("unexplained_closes") or []
        lines.append(f"broker: v20, {b.get('ticks', 0):,} ticks, {rec}"
                     + (f", unexplained closes {', '.join(map(str, closes))}" if closes else ""))
    else:
        lines.append("broker: paper")
    for sid, h in (r.get("strategy_health") or {}).items():
        lines.append(f"health: {sid} {h.get('status')} - {h.get('reason')}")
    return lines


def cmd_halt(args) -> int:
    return _call_api(args, "POST", "/halt", {"reason": args.reason})


def cmd_resume(args) -> int:
    return _call_api(args, "POST", "/resume", {"reason": args.reason, "force": args.force})


def cmd_flatten(args) -> int:
    """POST /flatten, then one line per symbol saying what became of its position (a v20 broker:
    closed at a price, FAILED or UNKNOWN and what the desk does next; paper: closing at its next
    open), or with --json the daemon's answer as it is. Exit 0 when every position closed (or,
    paper, is closing), 1 when one did not or the daemon refused, 2 when it cannot be reached."""
    status, reply = _api_request(args, "POST", "/flatten", {"reason": args.reason, "keep_trading": args.keep_trading})
    if "closing" not in reply:  # refused before anything was done (400, 401, 403, ...)
        print(f"deskd: POST /flatten refused ({status}): {reply.get('error', reply)}", file=sys.stderr)
        return EXIT_INTERNAL
    if args.json:
        print(json.dumps(reply, indent=2))
        return EXIT_OK if status == 200 else EXIT_INTERNAL
    lines, not_closed = _flatten_lines(status, reply)
    for line in lines:
        print(line)
    if status == 503:
        print(f"deskd: flatten: the daemon is shutting down; {reply.get('note', 'nothing was sent')}",
              file=sys.stderr)
    elif not_closed:
        state = f" (desk {reply['state']})" if reply.get("state") else ""
        print(f"deskd: flatten: {len(not_closed)} of {len(lines)} position(s) not closed: "
              f"{', '.join(not_closed)}{state}", file=sys.stderr)
    elif status != 200:
        print(f"deskd: flatten: the daemon answered {status}: {reply.get('error', reply)}", file=sys.stderr)
    return EXIT_OK if status == 200 and not not_closed else EXIT_INTERNAL


def _flatten_lines(status: int, reply: dict) -> tuple[list[str], list[str]]:
    """The lines of a POST /flatten answer, one per symbol, and the symbols not closed (the
    module docstring of deskd.daemon.api has the answer's shape)."""
    closing = list(reply["closing"])
    outcomes = reply.get("outcomes")
    if not closing:
        return ["nothing to close: the desk holds no position"], []
    width = max(len(s) for s in closing)
    lines, not_closed = [], []
    for sym in closing:
        if status == 503:  # committed, never sent: a restarted daemon sends it
            label, detail = "PENDING", "not sent to the broker"
            not_closed.append(sym)
        elif outcomes is None:  # paper: the exit fills at the symbol's next bar
            label, detail = "closing", "at its next open"
        else:
            o = outcomes.get(sym) or {"outcome": "unknown", "error": "not in the daemon's answer"}
            if o.get("outcome") == "closed":
                label = "closed"
                at = f"at {o['price']}" if o.get("price") is not None else "the desk no longer holds it"
                detail = f"{at} ({o['exit_reason']})" if o.get("exit_reason") else at
            else:
                label = str(o.get("outcome", "unknown")).upper()
                detail = " -- ".join(str(x) for x in (o.get("error"), o.get("next")) if x)
                not_closed.append(sym)
        lines.append(f"{sym:<{width}}  {label:<7}  {detail}".rstrip())
    return lines, not_closed


def cmd_reconcile(args) -> int:
    """Store vs broker (or the running daemon's reconciliation with --daemon): exit 0 in sync,
    1 with differences, 2 when the broker (or the daemon) cannot be reached."""
    from deskd.configs.loader import load_config

    cfg = load_config(args.config)
    if args.daemon:
        status, reply = _api_request(args, "POST", "/reconcile",
                                     {"reason": args.reason, "book_broker_closes": args.book_broker_closes})
        if status == 502:
            print(f"deskd: reconcile: {reply.get('error')}", file=sys.stderr)
            return EXIT_INPUT
        if status != 200:
            print(f"deskd: POST /reconcile refused ({status}): {reply.get('error', reply)}", file=sys.stderr)
            return EXIT_INTERNAL
        diffs, n = reply["differences"], reply["positions"]
    else:
        if args.book_broker_closes:
            raise InputError("--book-broker-closes books fills in the running desk: use it with --daemon")
        got = _reconcile_store(cfg, args)
        if got is None:
            return EXIT_INPUT
        diffs, n = got
    _print_diffs(cfg, args, diffs, n)
    return EXIT_OK if not diffs else EXIT_INTERNAL


def _reconcile_store(cfg: DeskConfig, args) -> tuple[list[dict], int] | None:
    """(differences, positions in the store), or None when the broker could not be read."""
    from deskd.adapters.v20.client import BrokerError, credentials_from_env
    from deskd.configs.settings import Settings
    from deskd.daemon.reconcile_offline import reconcile_store

    try:
        creds = credentials_from_env()
    except (ValueError, OSError) as e:
        raise InputError(str(e)) from None
    try:
        return reconcile_store(cfg, _store_url(args.store or str(Settings().default_store_path())),
                               args.scenario, creds)
    except BrokerError as e:
        print(f"deskd: reconcile: the broker could not be read: {e}", file=sys.stderr)
        return None


def _print_diffs(cfg: DeskConfig, args, diffs: list[dict], n_positions: int) -> None:
    from rich.console import Console
    from rich.table import Table

    if args.json:
        print(json.dumps({"in_sync": not diffs, "desk": cfg.desk, "scenario": args.scenario,
                          "differences": diffs}, indent=2))
    elif not diffs:
        print(f"in sync: {n_positions} position(s) of desk {cfg.desk} match the broker")
    else:
        table = Table(title=f"reconcile {cfg.desk}/{args.scenario}: {len(diffs)} difference(s)")
        for col in ("symbol", "field", "expected (store)", "broker", "note"):
            table.add_column(col)
        for d in diffs:
            table.add_row(d["symbol"], d["field"], d["expected"], d["broker"], d["note"])
        Console(width=160).print(table)


#: the account the fake broker serves when neither --account nor $DESKD_V20_ACCOUNT names one
DEFAULT_FAKE_ACCOUNT = "101-001-0000000-001"


def _v20_token(args, settings) -> str:
    """The fake broker's token: --token-file, else $DESKD_V20_TOKEN, else the file named by
    $DESKD_V20_TOKEN_FILE: the variables the daemon's v20 client reads, so the two agree
    (never $DESKD_API_TOKEN, the control API's). Raises InputError when none is set."""
    if args.token_file:
        return _read_token(args.token_file, "--token-file")
    if settings.v20_token is not None and settings.v20_token.get_secret_value():
        return settings.v20_token.get_secret_value()
    if settings.v20_token_file:
        return _read_token(settings.v20_token_file, "DESKD_V20_TOKEN_FILE")
    raise InputError("no token for the fake broker: set DESKD_V20_TOKEN (as for `deskd run --broker http`) "
                     "or pass --token-file")


def _read_token(path: str | Path, where: str) -> str:
    """The token held in ``path`` (``where`` names its source in errors). Raises InputError."""
    try:
        token = Path(path).read_text().strip()
    except OSError as e:
        raise InputError(f"{where} {path}: {e.strerror}") from None
    if not token:
        raise InputError(f"{where} {path}: the file is empty")
    return token


def cmd_fake_broker(args) -> int:
    """Serve the fake v20 broker over the config's bar files until SIGTERM/SIGINT."""
    import asyncio

    from deskd.configs.settings import Settings
    from deskd.research.backtest import check_inputs
    from deskd.testing.fake_v20 import FakeV20, serve_until_signal

    cfg = _load(args)
    check_inputs(cfg, [next(iter(cfg.costs.scenarios))])
    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: a TCP port is 1-65535")
    settings = Settings()
    token = _v20_token(args, settings)
    broker = FakeV20.from_files({s: cfg.data.files[s] for s in cfg.universe.symbols},
                                {s: cfg.data.timezone_of(s) for s in cfg.universe.symbols},
                                cfg.universe.timeframe_s, token=token, state_file=args.state,
                                account_id=args.account or settings.v20_account or DEFAULT_FAKE_ACCOUNT)

    try:
        return asyncio.run(serve_until_signal(broker, args.host, args.port))
    except OSError as e:
        raise InputError(f"--port {args.port}: {e.strerror}") from None


def cmd_check_config(args) -> int:
    """Validate the config, then every bar file it names (whole, streaming, as `deskd run`
    does before trading): OK with each file's bars and range, or exit 2 naming the problem."""
    from deskd.adapters.bars import time_basis
    from deskd.configs.loader import load_config
    from deskd.core.time import iso
    from deskd.daemon.nodes import check_bar_files
    from deskd.research.backtest import check_inputs

    cfg = load_config(args.config)
    check_inputs(cfg, list(cfg.costs.scenarios))
    files = check_bar_files(cfg)
    enabled = ", ".join(cfg.strategies.enabled())
    print(f"{args.config}: OK - desk {cfg.desk}, {cfg.universe.timeframe} "
          f"{','.join(cfg.universe.symbols)}; strategies {enabled}; "
          f"scenarios {','.join(cfg.costs.scenarios)}")
    for sym, f in files.items():
        path = cfg.data.files[sym]
        print(f"  {sym}: {f.bars:,} bars {iso(f.first_ts)} .. {iso(f.last_ts)} "
              f"(times in {time_basis(path, cfg.data.timezone_of(sym))}) {path}")
    return EXIT_OK


def _add_config_and_data(p: argparse.ArgumentParser, config_help: str = "desk config YAML") -> None:
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--data", action="append", metavar="SYMBOL=PATH[@TZ]",
                   help="bar file for a symbol, overriding data.files (repeatable); CSV, .csv.gz or Parquet; "
                        "@TZ gives its timezone (EURUSD=EURUSD_M1.csv.gz@America/New_York)")
    p.add_argument("--data-timezone", metavar="TZ", help="IANA timezone of the files --data names (without "
                   "@TZ); with no --data, of every file of the config (e.g. America/New_York)")


def _add_api_args(p: argparse.ArgumentParser, token: bool, prefix: str = "") -> None:
    """--api (and --token-file) of the commands that talk to a running daemon."""
    p.add_argument("--api", default=None,
                   help=f"{prefix}daemon API URL (default $DESKD_API or http://127.0.0.1:8765)")
    if token:
        p.add_argument("--token-file", metavar="FILE", help=f"{prefix}bearer token file (default $DESKD_API_TOKEN)")


def _add_research_args(p: argparse.ArgumentParser, default_out: str) -> None:
    """The options ``deskd tune`` and ``deskd walkforward`` share."""
    _add_config_and_data(p)
    p.add_argument("--strategy", required=True, metavar="ID", help="the strategy id to tune")
    p.add_argument("--symbols", metavar="EURUSD,...", help="only these symbols of the universe")
    p.add_argument("--strategies", help=argparse.SUPPRESS)
    p.add_argument("--timeframe", choices=["M1", "M5", "M15", "M30", "H1", "H4"],
                   help="the bars' timeframe, overriding universe.timeframe (give matching --data files)")
    p.add_argument("--sampler", choices=["grid", "tpe"], default="grid",
                   help="grid: every point of the space (default); tpe: Optuna's TPE sampler, --trials points")
    p.add_argument("--trials", type=int, metavar="N",
                   help="stage-1 trials the study should hold: tpe default 100; grid default every point, "
                        "else N points drawn from it (seeded); a re-run completes a stopped tune")
    p.add_argument("--objective", metavar="NAME",
                   help="per-split metric: expectancy_r (default), sharpe_r, profit_factor, net_usd")
    p.add_argument("--scenario", metavar="NAME", help="stage-1 cost scenario (default tune.stage1_scenario, B)")
    p.add_argument("--top-k", type=int, metavar="K", help="points re-run in stage 2 (default tune.top_k, 10)")
    p.add_argument("--seed", type=int, help="sampler seed (default tune.seed, 42)")
    p.add_argument("--workers", type=int, metavar="N", help="processes (default: the CPUs this process may use; "
                   "1 runs trials in this process)")
    p.add_argument("--cluster", metavar="ADDRESS", help="run trials on a Dask cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--storage", metavar="URL|PATH", help="the Optuna study's database (default --out/study.db); "
                   "a PostgreSQL URL lets several hosts share a TPE study")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default runs/{default_out})")
    p.add_argument("--force", action="store_true", help="write into --out even if it holds other files")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--json", action="store_true", help="print the outputs' summary as JSON")


def _add_split_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The walk-forward split flags (``deskd walkforward``, ``deskd tune --filters``)."""
    p.add_argument("--train", metavar="SPAN", help=f"{prefix}train window, calendar: 12M (default), 26W, 90D, 1Y")
    p.add_argument("--test", metavar="SPAN", help=f"{prefix}test window, calendar (default 3M)")
    p.add_argument("--embargo", metavar="SPAN",
                   help=f"{prefix}gap between train and test, calendar (default 1D; 0D for none)")
    p.add_argument("--train-bars", type=int, metavar="N", help=f"{prefix}train window in bars (instead of --train)")
    p.add_argument("--test-bars", type=int, metavar="N", help=f"{prefix}test window in bars (instead of --test)")
    p.add_argument("--embargo-bars", type=int, metavar="N", help=f"{prefix}gap in bars (default 0 with bar counts)")
    p.add_argument("--anchored", action="store_true",
                   help=f"{prefix}every train window starts at the first bar (grows)")


def _port(text: str) -> int:
    """A TCP port for argparse: a whole number 0..65535 (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port}: a port is 0 to 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deskd", description="Event-driven trading daemon for a systematic FX desk.")
    p.add_argument("--version", action="version", version=f"deskd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("backtest", help="replay bar files through the desk, per cost scenario",
                       description="Replay bar files through the same handlers the daemon runs, once per "
                                   "cost scenario (in parallel processes, one per scenario up to the CPUs, "
                                   "unless --jobs), and write trades.csv, equity.csv, decisions.parquet (or "
                                   "decisions.csv, see --decisions), counterfactuals.parquet (see "
                                   "--counterfactuals), report.json, report.html, the resolved config.yaml, "
                                   "trades.parquet, equity.parquet, run.json and manifest.json (deskd verify "
                                   "checks them) to --out.")
    _add_config_and_data(b, "desk config YAML (see deskd/configs/examples/desk.yaml)")
    b.add_argument("--scenarios", metavar="A,B,C", help="cost scenarios to run (default: all in the config)")
    b.add_argument("--from", dest="from_", metavar="WHEN",
                   help="trade from this UTC date or date-time on (2019-01-01, 2019-01-01T12:00); the "
                        "strategies warm up on the bars just before it, as many as they need")
    b.add_argument("--to", metavar="WHEN", help="trade bars before this UTC date-time; a date is included "
                   "whole (--to 2019-12-31 trades through that day)")
    b.add_argument("--symbols", metavar="EURUSD,...", help="trade only these symbols of the universe")
    b.add_argument("--strategies", metavar="ID,...", help="run only these strategies of the config")
    b.add_argument("--timeframe", choices=["M1", "M5", "M15", "M30", "H1", "H4"],
                   help="the bars' timeframe, overriding universe.timeframe (give matching --data files)")
    b.add_argument("--out", metavar="DIR", help="output folder (default: runs/backtest-<desk>-<UTC time>)")
    b.add_argument("--store", metavar="URL|PATH", help="also record the run in a store: a SQLite file "
                   "path, or a SQLAlchemy URL such as postgresql+psycopg://user@host/deskd")
    b.add_argument("--force", action="store_true",
                   help="replace --out if it exists, and this desk's earlier rows in --store")
    b.add_argument("--jobs", type=int, metavar="N",
                   help="run the scenarios in N processes (default: one per scenario, up to the CPUs this "
                        "process may use; 1 runs them one after another in this process); the outputs are "
                        "the same either way")
    b.add_argument("--decisions", choices=["parquet", "csv", "none"], default="parquet",
                   help="the decision journal: decisions.parquet (default), decisions.csv, or none "
                        "(report.json still counts the decisions by reason)")
    b.add_argument("--counterfactuals", choices=["on", "off"], default="on",
                   help="counterfactuals.parquet: what every decision's bracket would have done, traded or "
                        "skipped, from the bars after it (default on; it never changes a decision or trade)")
    b.add_argument("--quiet", action="store_true", help="print nothing on success")
    b.add_argument("--json", action="store_true", help="print the output folder and overall metrics as JSON")
    b.set_defaults(func=cmd_backtest)

    t = sub.add_parser("tune", help="search a strategy's params: stage 1 over the space, stage 2 of the top k",
                       description="Score a strategy's parameter points on the event path (the real desk, "
                                   "one strategy) with a robust objective over walk-forward splits of the "
                                   "in-sample window (mean - std of the per-split metric - a drawdown "
                                   "penalty; tune: in the config), stage 1 under one cost scenario, then "
                                   "the top k under A, B and C, ranked by their worst. Every trial is "
                                   "kept in an Optuna study (--out/study.db, or --storage): run the same "
                                   "command again to resume a stopped tune.")
    _add_research_args(t, "tune-<strategy>-<sampler>")
    t.add_argument("--from", dest="from_", metavar="WHEN", help="in-sample window start, UTC date or date-time")
    t.add_argument("--to", metavar="WHEN", help="in-sample window end, UTC; a date is included whole")
    t.add_argument("--study", metavar="NAME", help="study name (default: strategy, sampler and a hash of the job)")
    t.add_argument("--filters", action="store_true",
                   help="tune the strategy's entry filters instead of its params: tune.filters' candidates, "
                        "thresholds from each walk-forward train window, scored on its test window "
                        "(with the split flags below; outputs filters.csv, filters.json; default --out "
                        "runs/filters-<strategy>)")
    _add_split_args(t, "with --filters: ")
    t.set_defaults(func=cmd_tune)

    w = sub.add_parser("walkforward", help="tune on rolling train windows, trade each choice on the test window after it",
                       description="Walk-forward analysis: split the data into train and test windows (calendar "
                                   "spans or bar counts, with an embargo between), tune the strategy on each "
                                   "train window as deskd tune does, run the chosen params on the following "
                                   "test window through the event path (indicators warmed on the bars before "
                                   "it) under each stage-2 scenario, and stitch the out-of-sample trades and "
                                   "equity. Re-run the same command to resume.")
    _add_research_args(w, "walkforward-<strategy>")
    _add_split_args(w)
    w.set_defaults(func=cmd_walkforward)

    mc = sub.add_parser("montecarlo", help="block-bootstrap Monte Carlo of a run's trades and days, and cost noise",
                        description="Resample a backtest's trades (or a walk-forward's out-of-sample trades) "
                                    "and daily returns with a block bootstrap (arch: stationary or circular, "
                                    "block length by Politis & White unless --block), compounding with the "
                                    "desk's sizing, and redraw each trade's spread and slippage; distributions "
                                    "of max drawdown, final equity, CAGR, Sharpe, drawdown duration and "
                                    "recovery, P(max DD > the desk's limits), P(ruin), P(net expectancy < 0). "
                                    "Writes montecarlo.json, paths.parquet and report.html to "
                                    "RUN_DIR/montecarlo-<scenario>/ (or --out).")
    mc.add_argument("run_dir", metavar="RUN_DIR", help="a deskd backtest or walkforward output folder")
    mc.add_argument("--scenario", metavar="NAME", help="cost scenario (default: the first in the run)")
    mc.add_argument("--sims", type=int, default=5000, metavar="N", help="simulations per method (default 5000)")
    mc.add_argument("--seed", type=int, default=42, help="seed; the same seed gives the same numbers (default 42)")
    mc.add_argument("--block", default="auto", metavar="N|auto",
                    help="block length in steps (trades, days); auto: Politis & White's optimum (default)")
    mc.add_argument("--method", choices=["stationary", "circular"], default="stationary",
                    help="stationary (Politis & Romano 1994, default) or circular block bootstrap")
    mc.add_argument("--spread-mult", default="0.8,1.5", metavar="LOW,HIGH",
                    help="cost noise: range of the spread multiplier per trade (default 0.8,1.5)")
    mc.add_argument("--slippage-mult", default="0.5,2.0", metavar="LOW,HIGH",
                    help="cost noise: range of the slippage multiplier per trade (default 0.5,2.0)")
    mc.add_argument("--spike-prob", type=float, default=0.0, metavar="P",
                    help="cost noise: probability a fill without a spike gets costs.slippage.spike_mult (default 0)")
    mc.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/montecarlo-<scenario>)")
    mc.add_argument("--quiet", action="store_true", help="print nothing on success")
    mc.add_argument("--json", action="store_true", help="print montecarlo.json")
    mc.set_defaults(func=cmd_montecarlo)

    st = sub.add_parser("stress", help="cost sensitivity and param perturbation of a run, re-run on the desk",
                        description="Re-run a walk-forward's chosen params on its test windows (or a backtest's "
                                    "strategy over its window) with spread and slippage scaled by each of "
                                    "--multiples (expectancy, Sharpe, net P&L and the break-even cost multiple), "
                                    "and with the params moved to --neighbours random neighbours (integers "
                                    "+-1..--int-steps, floats x(1 +- --jitter-pct), within their bounds): the "
                                    "share still profitable. The fast path where the strategy has a kernel, "
                                    "else the event path. Writes stress.json, cost.csv, neighbours.csv and "
                                    "report.html to RUN_DIR/stress-<scenario>/ (or --out).")
    st.add_argument("run_dir", metavar="RUN_DIR", help="a deskd walkforward or backtest output folder")
    st.add_argument("--scenario", metavar="NAME", help="base cost scenario (default: the run's first)")
    st.add_argument("--strategy", metavar="ID", help="the strategy (a backtest that ran several)")
    st.add_argument("--multiples", default="1,1.25,1.5,2,2.5,3", metavar="K,...",
                    help="cost multiples of the base scenario (default 1,1.25,1.5,2,2.5,3)")
    st.add_argument("--neighbours", type=int, default=50, metavar="N", help="param neighbours to run (default 50; 0: none)")
    st.add_argument("--jitter-pct", type=float, default=10.0, metavar="PCT",
                    help="a float param moves by a factor in 1 +- PCT/100 (default 10)")
    st.add_argument("--int-steps", type=int, default=2, metavar="K", help="an integer param moves +-1..K (default 2)")
    st.add_argument("--seed", type=int, default=42, help="seed of the neighbours (default 42)")
    st.add_argument("--workers", type=int, metavar="N", help="processes (default: the CPUs this process may use)")
    st.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/stress-<scenario>)")
    st.add_argument("--quiet", action="store_true", help="print nothing on success")
    st.add_argument("--json", action="store_true", help="print stress.json")
    st.set_defaults(func=cmd_stress)

    vd = sub.add_parser("verdict", help="a strategy's research evidence against the desk's gates: PASS or FAIL",
                        description="Put each walk-forward folder's evidence (out-of-sample expectancy, DSR and "
                                    "PBO of its tunes, the Monte Carlo week-breach probability, the stress's "
                                    "break-even cost multiple and profitable neighbours) against the gates of "
                                    "the config's verdict: section, each with its value and PASS or FAIL. "
                                    "Missing evidence fails its gate. Exit 0 only when every gate of every run "
                                    "passes, 1 when one fails, 2 for bad input. Writes verdict.json and "
                                    "report.html to RUN_DIR/verdict/ (one run) or --out.")
    vd.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="deskd walkforward output folders, one per strategy")
    vd.add_argument("--config", metavar="FILE", help="take the gates from this config (default: each run's config.yaml)")
    vd.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/verdict with one run; "
                    "with several, nothing is written without --out)")
    vd.add_argument("--quiet", action="store_true", help="print nothing (the exit code says it)")
    vd.add_argument("--json", action="store_true", help="print the gates as JSON")
    vd.set_defaults(func=cmd_verdict)

    vf = sub.add_parser("verify", help="check a result folder against its manifest.json (and run.json)",
                        description="Check a deskd backtest folder: every file manifest.json lists is there "
                                    "with its SHA-256 (files added since are reported), config.yaml has its "
                                    "recorded SHA-256, the data files config.yaml names still hash as recorded "
                                    "(a missing one is a warning), and run.json's config_fingerprint and run_id "
                                    "are the ones config.yaml and its recorded inputs give. A walkforward, tune, "
                                    "tune --filters, montecarlo, stress or verdict folder (manifest.json, no "
                                    "run.json) is "
                                    "checked against its manifest. Exit 0 when all holds, 1 naming each file "
                                    "that does not, 2 for a folder that is not a result folder or a damaged "
                                    "run.json or manifest.json.")
    vf.add_argument("run_dir", metavar="RUN_DIR", help="a deskd backtest (or other result) folder")
    vf.add_argument("--quiet", action="store_true", help="print only problems (the exit code says it)")
    vf.add_argument("--json", action="store_true", help="print the result as JSON")
    vf.set_defaults(func=cmd_verify)

    vw = sub.add_parser("view", help="a local, read-only web viewer of run folders",
                        description="Serve a page and a read-only JSON API over the run folders given (deskd "
                                    "backtest or walkforward outputs): runs and their metrics side by side, "
                                    "equity and drawdown, trades with filters, decisions paged one by one on "
                                    "the price window around each with the bracket, the real trade and the "
                                    "counterfactual, walk-forward splits and trials. Files are read on "
                                    "demand; charts use the plotly.js bundled with the plotly package (no "
                                    "network). Stop with Ctrl-C.")
    vw.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="deskd backtest or walkforward output folders")
    vw.add_argument("--port", type=_port, default=8050, help="TCP port (default 8050; 0: any free port)")
    vw.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    vw.set_defaults(func=cmd_view)

    r = sub.add_parser("run", help="run the trading daemon (paper replay or a v20 broker)",
                       description="Run the desk as a daemon, every bar committed to the store, control API "
                                   "on 127.0.0.1; restarting resumes from the store; SIGTERM/SIGINT finish "
                                   "the bar in flight, commit and exit 0. --broker paper (default): bars "
                                   "from a paced replay of the config's files, paper fills. --broker http: "
                                   "bars, fills and positions from an OANDA v20 REST broker (account from "
                                   "DESKD_V20_URL, DESKD_V20_ACCOUNT, DESKD_V20_TOKEN or DESKD_V20_TOKEN_FILE), "
                                   "reconciled before any trading, on a schedule and on demand.")
    _add_config_and_data(r)
    r.add_argument("--broker", choices=["paper", "http"], default="paper",
                   help="paper: replayed files and simulated fills; http: a v20 broker (default paper)")
    r.add_argument("--store", metavar="URL|PATH",
                   help="store: SQLite file path or SQLAlchemy URL (default $STATE_DIRECTORY/deskd.db "
                        "under systemd, else ./deskd.db)")
    r.add_argument("--scenario", default="A",
                   help="cost scenario of the paper fills; with http, only a name in client order ids (default A)")
    r.add_argument("--speed", type=float, default=1.0,
                   help="paper: replay clock speed: 1 = real time (the default), 100 = 100x faster, 0 = as fast "
                        "as possible")
    r.add_argument("--exit-at-end", action="store_true",
                   help="paper: at the end of the data close out positions (EOD), commit and exit 0")
    r.add_argument("--warmup-bars", type=int, default=500, metavar="N",
                   help="http: candles per symbol read at start-up to warm the indicators (default 500)")
    r.add_argument("--poll-interval", type=float, metavar="SECONDS",
                   help="http: poll the broker every SECONDS instead of at each bar close (the fake "
                        "broker, demos); the broker's clock is then not checked against the wall clock")
    r.add_argument("--broker-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="http: timeout of one broker request; timeouts are retried with backoff (default 5)")
    r.add_argument("--reconcile-every", type=float, default=300.0, metavar="SECONDS",
                   help="http: reconcile with the broker this often between ticks (default 300)")
    r.add_argument("--adopt", action="store_true",
                   help="http: at start-up take over broker trades the store does not know (one per "
                        "symbol, with a stop-loss); without it they are reported and the desk waits "
                        "in SAFE_MODE")
    r.add_argument("--api-host", default="127.0.0.1", help="control API address (default 127.0.0.1)")
    r.add_argument("--api-port", type=int, default=8765, help="control API port (default 8765)")
    r.add_argument("--no-api", action="store_true", help="do not serve the control API")
    r.add_argument("--counterfactuals", choices=["on", "off"], default="on",
                   help="follow every decision's bracket, traded or skipped, until it resolves and keep the "
                        "outcome in the store's counterfactuals table (GET /counterfactuals); off changes no "
                        "decision, order or trade (default on)")
    r.add_argument("--api-allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients use to reach the API, beyond the bind address and "
                        "localhost (repeatable; needed with --api-host 0.0.0.0); others get 421")
    r.add_argument("--token-file", metavar="FILE", help="file holding the API bearer token "
                   "(default: $DESKD_API_TOKEN); without one, the API is read-only")
    r.add_argument("--health-file", metavar="PATH",
                   help="strategy-health JSON snapshot, rewritten every health.snapshot_every_s "
                        "(default: deskd-health.json beside the SQLite store)")
    r.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="the lowest level logged (default INFO; DEBUG adds each decision and counterfactual)")
    r.set_defaults(func=cmd_run)

    for name, func, helptext in (("status", cmd_status, "show the running daemon's status"),
                                 ("halt", cmd_halt, "stop new entries (exits keep working)"),
                                 ("resume", cmd_resume, "return the desk to RUNNING"),
                                 ("flatten", cmd_flatten, "close every position at the next open")):
        v = sub.add_parser(name, help=helptext, description=f"{helptext[0].upper()}{helptext[1:]}, "
                           "through the daemon's control API.")
        _add_api_args(v, token=name != "status")
        if name != "status":
            v.add_argument("--reason", required=True, help="why, for the journal")
        if name == "resume":
            v.add_argument("--force", action="store_true", help="also lift a drawdown halt before its anchor")
        if name == "flatten":
            v.add_argument("--json", action="store_true",
                           help="print the daemon's answer as JSON (per-symbol outcomes) instead of lines")
            v.add_argument("--keep-trading", action="store_true",
                           help="leave new entries allowed (by default a flatten also halts them until "
                                "`deskd resume`, so flat stays flat)")
        if name == "status":
            v.add_argument("--json", action="store_true", help="print the daemon's GET /status answer as JSON")
        v.set_defaults(func=func)

    rc = sub.add_parser("reconcile", help="compare the store's positions with the broker's",
                        description="Compare the desk's open positions in the store with the broker's open "
                                    "trades (side, units, average price, stop and target). Broker from "
                                    "DESKD_V20_URL, DESKD_V20_ACCOUNT, DESKD_V20_TOKEN[_FILE]. Exit 0 in "
                                    "sync, 1 on differences, 2 when the broker cannot be reached. With "
                                    "--daemon the running daemon reconciles (and its desk state follows).")
    rc.add_argument("--config", required=True, help="desk config YAML (names the desk)")
    rc.add_argument("--store", metavar="URL|PATH", help="store (default as deskd run)")
    rc.add_argument("--scenario", default="A", help="the run's scenario key in the store (default A)")
    rc.add_argument("--json", action="store_true", help="print the differences as JSON")
    rc.add_argument("--daemon", action="store_true",
                    help="ask the running daemon to reconcile now (its API, token as for `deskd halt`); "
                         "a clean result lets `deskd resume` leave SAFE_MODE")
    rc.add_argument("--book-broker-closes", action="store_true",
                    help="with --daemon: first book the closes the broker reported but the desk could "
                         "not explain (by hand on the platform), at the broker's price")
    rc.add_argument("--reason", default="operator reconcile", help="with --daemon: why, for the journal")
    _add_api_args(rc, token=True, prefix="with --daemon: ")
    rc.set_defaults(func=cmd_reconcile)

    fb = sub.add_parser("fake-broker", help="serve a fake OANDA v20 broker over the config's bar files",
                        description="Serve a fake OANDA v20 REST broker (tests and demos) whose market is the "
                                    "config's bar files; POST /admin/advance {\"bars\": n} moves time, "
                                    "POST /admin/faults injects faults. Token from --token-file, else "
                                    "DESKD_V20_TOKEN or DESKD_V20_TOKEN_FILE (what `deskd run --broker "
                                    "http` sends), never DESKD_API_TOKEN.")
    _add_config_and_data(fb, "desk config YAML (universe and bar files)")
    fb.add_argument("--host", default="127.0.0.1")
    fb.add_argument("--port", type=int, default=8766)
    fb.add_argument("--account", help=f"the account id it serves (default $DESKD_V20_ACCOUNT, else "
                    f"{DEFAULT_FAKE_ACCOUNT})")
    fb.add_argument("--state", metavar="FILE", help="save state here; a restart reloads it")
    fb.add_argument("--token-file", metavar="FILE",
                    help="file holding the bearer token (default $DESKD_V20_TOKEN, then $DESKD_V20_TOKEN_FILE)")
    fb.set_defaults(func=cmd_fake_broker)

    c = sub.add_parser("check-config", help="validate a desk config and its bar files, and exit",
                       description="Validate a desk config and every bar file it names (read whole); "
                                   "exit 0 when valid, 2 with the failing key, file or row.")
    c.add_argument("config", help="desk config YAML")
    c.set_defaults(func=cmd_check_config)

    from deskd.data_commands import add_parser as add_data_parser  # light: loads pandas only when run
    add_data_parser(sub)
    return p


#: the exceptions that mean bad input (exit 2), by module: a module not imported yet cannot
#: have raised its error, so checking them costs no import
INPUT_ERRORS = (("deskd.configs.loader", "ConfigError"), ("deskd.adapters.bars", "BarFileError"),
                ("deskd.research.backtest", "BacktestInputError"), ("deskd.daemon.nodes", "OptionError"),
                ("deskd.persistence.store", "StoreError"), ("deskd.research.tuning.tune", "TuneError"),
                ("deskd.research.montecarlo", "MonteCarloInputError"),
                ("deskd.research.stress", "StressInputError"), ("deskd.research.verdict", "VerdictInputError"),
                ("deskd.viewer.data", "RunFolderError"),
                ("deskd.research.export", "RunFolderError"))


def _is_input_error(e: BaseException) -> bool:
    if isinstance(e, InputError):
        return True
    for module, name in INPUT_ERRORS:
        mod = sys.modules.get(module)
        if mod is not None and isinstance(e, getattr(mod, name)):
            return True
    return False


def _error(message: str) -> None:
    """Print ``message`` as ``deskd: error:`` lines on stderr: control characters escaped,
    each line bounded (messages may carry text from files and libraries)."""
    from deskd.core.text import printable

    for line in str(message).splitlines() or [""]:
        print(f"deskd: error: {printable(line)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from deskd.daemon.logs import configure_logging

    # every command logs to stderr, before its first log line (loggers cache their config)
    configure_logging(getattr(args, "log_level", "WARNING"))
    try:
        rc = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return rc
    except BrokenPipeError:
        # whoever read stdout went away (deskd verdict --json | head): stop quietly, as a
        # command killed by SIGPIPE does, with stdout on /dev/null so the exit flush is quiet
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("deskd: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _is_input_error(e):
            raise
        _error(str(e))
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
