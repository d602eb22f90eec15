"""The ``deskd`` command line.

Exit codes: 0 success; 2 bad input (config, data, arguments), with one message naming the
file, key or row; 1 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, UTC
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deskd import __version__
from deskd.adapters.bars import BarFileError
from deskd.configs.loader import ConfigError, load_config
from pydantic import ValidationError

from deskd.configs.models import DataConfig, DeskConfig
from deskd.daemon.backtest import BacktestInputError, run_backtest
from deskd.daemon.store import StoreError, sqlite_url

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class InputError(ValueError):
    """Bad command-line input."""


def _parse_data(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        sym, sep, path = item.partition("=")
        if not sep or not sym or not path:
            raise InputError(f"--data {item!r}: expected SYMBOL=PATH, e.g. EURUSD=bars/EURUSD_M15.csv.gz")
        out[sym.strip().upper()] = str(Path(path).resolve())
    return out


def _load(args) -> DeskConfig:
    cfg = load_config(args.config)
    if getattr(args, "data", None) or getattr(args, "data_timezone", None):
        files = dict(cfg.data.files)
        files.update(_parse_data(args.data or []))
        tz = args.data_timezone or cfg.data.timezone
        try:
            data = DataConfig(timezone=tz, files=files)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise InputError(f"--data-timezone: {msg}") from None
        unknown = [s for s in files if s not in cfg.universe.symbols]
        if unknown:
            raise InputError(f"--data: {', '.join(unknown)} not in universe.symbols "
                             f"{cfg.universe.symbols} of {args.config}")
        cfg = cfg.model_copy(update={"data": data})
    return cfg


def _summary_table(report: dict) -> Table:
    t = Table(title=f"deskd backtest: {report['desk']} {report['timeframe']}")
    for col in ("scenario", "trades", "win rate", "exp. pips", "exp. USD", "PF", "net USD",
                "cost pips", "max DD", "Sharpe", "final equity USD"):
        t.add_column(col, justify="right")
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    for scn, r in report["scenarios"].items():
        o = r["overall"]
        t.add_row(scn, str(o["trades"]), fmt(o["win_rate"], ".1%"), fmt(o["expectancy_pips"], ".2f"),
                  fmt(o["expectancy_usd"], ",.2f"), fmt(o["profit_factor"], ".2f"),
                  fmt(o["net_pnl_usd"], ",.2f"), fmt(o["cost_pips"], ",.1f"),
                  fmt(o["max_drawdown_frac"], ".1%"), fmt(o["sharpe_daily_ann"], ".2f"),
                  fmt(r["final_equity_usd"], ",.2f"))
    return t


def _store_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a file path made into a SQLite URL."""
    return value if "://" in value else sqlite_url(value)


def cmd_backtest(args) -> int:
    cfg = _load(args)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios \
        else list(cfg.costs.scenarios)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("runs") / f"backtest-{cfg.desk}-{stamp}"
    err = Console(stderr=True)
    quiet = args.quiet or args.json
    progress = Progress(TextColumn("scenario {task.fields[scn]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("bars"), TimeElapsedColumn(),
                        console=err, transient=True, disable=quiet or not err.is_terminal)

    def on_start(scn: str):
        if not quiet and not err.is_terminal:
            print(f"deskd backtest: scenario {scn} ...", file=sys.stderr, flush=True)
        # the first scenario counts the bars; later ones show them as the total
        known = progress.tasks[-1].completed if progress.tasks else None
        task = progress.add_task("replay", total=known, scn=scn)
        return lambda n: progress.advance(task, n)

    with progress:
        report = run_backtest(cfg, scenarios, out, force=args.force, on_scenario_start=on_start,
                              store_url=_store_url(args.store) if args.store else None)
    if args.json:
        print(json.dumps({"out": str(out), "scenarios": {k: v["overall"] for k, v in report["scenarios"].items()}}))
    elif not args.quiet:
        out_console = Console()
        if not out_console.is_terminal:
            out_console = Console(width=160)
        out_console.print(_summary_table(report))
        print(f"outputs: {out}/ (trades.csv, equity.csv, decisions.csv, report.json, config.yaml)")
    return EXIT_OK


def cmd_check_config(args) -> int:
    cfg = load_config(args.config)
    enabled = ", ".join(cfg.strategies.enabled())
    print(f"{args.config}: OK - desk {cfg.desk}, {cfg.universe.timeframe} "
          f"{','.join(cfg.universe.symbols)}; strategies {enabled}; "
          f"scenarios {','.join(cfg.costs.scenarios)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deskd", description="Event-driven trading daemon for a systematic FX desk.")
    p.add_argument("--version", action="version", version=f"deskd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("backtest", help="replay bar files through the desk, per cost scenario",
                       description="Replay bar files through the same handlers the daemon runs, once per "
                                   "cost scenario, and write trades.csv, equity.csv, decisions.csv, "
                                   "report.json and the resolved config.yaml to --out.")
    b.add_argument("--config", required=True, help="desk config YAML (see configs/examples/desk.yaml)")
    b.add_argument("--data", action="append", metavar="SYMBOL=PATH",
                   help="bar file for a symbol, overriding data.files (repeatable); CSV, .csv.gz or Parquet")
    b.add_argument("--data-timezone", metavar="TZ", help="IANA timezone of the bar files' time column, "
                   "overriding data.timezone (e.g. America/New_York)")
    b.add_argument("--scenarios", metavar="A,B,C", help="cost scenarios to run (default: all in the config)")
    b.add_argument("--out", metavar="DIR", help="output folder (default: runs/backtest-<desk>-<UTC time>)")
    b.add_argument("--store", metavar="URL|PATH", help="also record the run in a store: a SQLite file "
                   "path, or a SQLAlchemy URL such as postgresql+psycopg://user@host/deskd")
    b.add_argument("--force", action="store_true",
                   help="replace --out if it exists, and this desk's earlier rows in --store")
    b.add_argument("--quiet", action="store_true", help="print nothing on success")
    b.add_argument("--json", action="store_true", help="print the output folder and overall metrics as JSON")
    b.set_defaults(func=cmd_backtest)

    c = sub.add_parser("check-config", help="validate a desk config and exit",
                       description="Validate a desk config; exit 0 when valid, 2 with the failing keys.")
    c.add_argument("config", help="desk config YAML")
    c.set_defaults(func=cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, BarFileError, BacktestInputError, InputError, StoreError) as e:
        print(f"deskd: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("deskd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
