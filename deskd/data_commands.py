"""``deskd data``: prepare bar files for the desk (the library is :mod:`deskd.adapters.convert`).

    deskd data import FORMAT SRC... --to OUT [--tz ZONE] [--symbol SYM] [--keep-first] [--force] [--json]
    deskd data resample SRC --to-timeframe TF --out OUT [--force] [--json]
    deskd data info FILE [--json]

Results go to stdout (a table, or one JSON object with ``--json``); progress to stderr (a
spinner on a terminal, else a line per step once the job has run half a second). Exit codes: 0 done; 2 bad input, with one
``deskd: error:`` line naming the file and the line or row, and nothing written.

``add_parser(subparsers)`` registers ``data`` on the ``deskd`` command's sub-parsers; each
verb's handler (``args.func``) returns the exit code itself. ``main(argv)`` runs ``deskd data``
alone (``python -c "from deskd.data_commands import main; ..." data info FILE``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# pandas, pyarrow, pydantic and rich load only when a verb runs, so registering the verbs costs
# `deskd --help` nothing; tests/e2e/test_data_cli.py checks these names against the library's
FORMAT_NAMES = ("histdata", "mt4", "mt5")
TIMEFRAMES = ("M1", "M5", "M15", "M30", "H1", "H4")
DEFAULT_ZONES = {"histdata": "America/New_York"}
EXIT_OK, EXIT_INPUT = 0, 2


class _StderrProgress:
    """Progress of one verb on stderr: a transient spinner with the step and rows read on a
    terminal, else one line per step (``deskd data import: reading X (1/3)``) once the verb
    has run ``after_s`` seconds, so a quick job (or a quick failure) prints nothing but its
    result or its one error line."""

    def __init__(self, verb: str, after_s: float = 0.5):
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._verb = verb
        self._start, self._after_s = time.monotonic(), after_s
        self._pending: str | None = None
        self._err = Console(stderr=True)
        self._bar: Progress | None = None
        if self._err.is_terminal:
            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TextColumn("{task.completed:,} rows read"), TimeElapsedColumn(),
                                 console=self._err, transient=True)
            self._task = self._bar.add_task("", total=None)

    def __enter__(self) -> _StderrProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def stage(self, text: str) -> None:
        if self._bar is not None:
            from rich.markup import escape

            self._bar.update(self._task, description=escape(text))
        else:
            self._pending = text
            self._flush()

    def rows(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)
        else:
            self._flush()

    def _flush(self) -> None:
        if self._pending is not None and time.monotonic() - self._start >= self._after_s:
            print(f"deskd data {self._verb}: {self._pending}", file=sys.stderr, flush=True)
            self._pending = None


def _stdout() -> Console:
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=160)


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for k, v in rows:
        t.add_row(Text(k), Text(v))
    return t


def _handler(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a verb; a ConvertError (or an unreadable file) becomes one ``deskd: error:`` line
    and exit code 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from deskd.adapters.convert import ConvertError

        try:
            return fn(args)
        except ConvertError as e:
            msg = " ".join(str(e).split())
        except OSError as e:
            msg = f"{e.filename}: {e.strerror}" if e.filename else str(e)
        print(f"deskd: error: {msg}", file=sys.stderr)
        return EXIT_INPUT

    return run


def _timeframe_s(name: str) -> int | None:
    """Seconds of a timeframe name (M15 -> 900), None for another name."""
    from deskd.configs.models import TIMEFRAME_SECONDS

    return TIMEFRAME_SECONDS.get(name)


def _zone_note(tz: str | None, out: Path) -> str:
    if tz is None:
        return "unknown: declare the files' zone in the desk config (data.timezone)"
    if out.name.lower().endswith((".parquet", ".pq")):
        return f"{tz} (recorded in the Parquet file)"
    return f"{tz}: a CSV does not record it; declare data.timezone: {tz} (or --data-timezone {tz})"


@_handler
def cmd_import(args: argparse.Namespace) -> int:
    """``deskd data import``: raw exports -> one deskd bar file (deskd.adapters.convert)."""
    from deskd.adapters.convert import check_output_path, get_format, import_sources, write_bars

    fmt = get_format(args.format)
    out = Path(args.to)
    check_output_path(out, args.force)
    with _StderrProgress("import") as progress:
        bars, report = import_sources(fmt.name, args.src, tz=args.tz, symbol=args.symbol,
                                      keep_first=args.keep_first, out=out, progress=progress)
        tf = _timeframe_s(report.timeframe)
        write_bars(bars, out, force=args.force, timeframe_s=tf, progress=progress)
    report.out = str(out)
    if args.json:
        print(json.dumps(report.to_dict() | {"time_zone_note": _zone_note(report.tz, out)}))
        return EXIT_OK
    name = f"{report.symbol} {report.timeframe}" if report.symbol else report.timeframe
    rows = [("bars", f"{report.bars:,} {report.timeframe} bars written to {out}"),
            ("first bar", report.first), ("last bar", report.last),
            ("time zone", _zone_note(report.tz, out)),
            ("source", f"{fmt.name}: {len(report.files)} file(s), {report.rows:,} rows"
                       + (f", {report.blank_lines:,} blank lines skipped" if report.blank_lines else "")),
            ("files", "\n".join(f"{f['path']}: {f['rows']:,} rows, {f['first']} .. {f['last']}"
                                for f in report.files)),
            ("clock", f"{report.clock.get('evidence', '-')}"),
            ("findings", "\n".join(report.findings()) or "none: no duplicate, no DST glitch")]
    _stdout().print(_table(f"deskd data import: {name}", rows))
    return EXIT_OK


@_handler
def cmd_resample(args: argparse.Namespace) -> int:
    """``deskd data resample``: a bar file -> a coarser timeframe (deskd.adapters.convert.resample)."""
    from deskd.adapters.convert import (
        ConvertError,
        check_output_path,
        detect_timeframe,
        load_bar_file,
        resample,
        timeframe_name,
        wall_str,
        write_bars,
    )

    out = Path(args.out)
    tf = args.to_timeframe.upper()
    if tf not in TIMEFRAMES:
        raise ConvertError(f"--to-timeframe {args.to_timeframe!r}: expected one of {', '.join(TIMEFRAMES)}")
    check_output_path(out, args.force)
    with _StderrProgress("resample") as progress:
        progress.stage(f"reading {args.src}")
        bars = load_bar_file(args.src, progress)
        src_tf = detect_timeframe(bars)
        progress.stage(f"resampling {len(bars):,} bars to {tf}")
        res = resample(bars, tf)
        write_bars(res, out, force=args.force, timeframe_s=_timeframe_s(tf), progress=progress)
    result = {"src": str(args.src), "src_bars": len(bars), "src_timeframe": timeframe_name(src_tf),
              "out": str(out), "bars": len(res), "timeframe": tf, "first": wall_str(res.ts[0]),
              "last": wall_str(res.ts[-1]), "time_zone": res.tz, "time_zone_note": _zone_note(res.tz, out)}
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    rows = [("bars", f"{len(res):,} {tf} bars written to {out}"),
            ("source", f"{args.src}: {len(bars):,} {timeframe_name(src_tf)} bars"),
            ("first bar", result["first"]), ("last bar", result["last"]),
            ("time zone", result["time_zone_note"] if res.tz else "as the source (its times are naive)"),
            ("buckets", "aligned to midnight of the file's clock, labelled by their start; "
                        "open first, high max, low min, close last, volume summed; no empty bars")]
    _stdout().print(_table(f"deskd data resample: {timeframe_name(src_tf)} -> {tf}", rows))
    return EXIT_OK


@_handler
def cmd_info(args: argparse.Namespace) -> int:
    """``deskd data info``: what a bar file holds (deskd.adapters.convert.describe)."""
    from deskd.adapters.convert import describe, load_bar_file

    path = Path(args.file)
    with _StderrProgress("info") as progress:
        progress.stage(f"reading {path}")
        bars = load_bar_file(path, progress)
        info = {"file": str(path)} | describe(bars, longest=args.longest)
    if args.json:
        print(json.dumps(info))
        return EXIT_OK
    clock, gaps, price = info["clock"], info["gaps"], info["price"]
    tf = info["timeframe"] or (f"{info['spacing_s']} s apart (not a deskd timeframe)" if info["spacing_s"]
                               else "unknown (one bar)")
    zone = info["time_zone"] or "not recorded (naive times: the desk config's data.timezone declares it)"
    opens = ", ".join(f"{k} x{v}" for k, v in list(clock["weekly_opens"].items())[:4])
    closes = ", ".join(f"{k} x{v}" for k, v in list(clock["weekly_closes"].items())[:4])
    guess = clock["label"] + (f" -> data.timezone: {clock['zone']}" if clock.get("zone") else "")
    rows = [("bars", f"{info['bars']:,}"), ("first bar", info["first"]), ("last bar", info["last"]),
            ("timeframe", tf), ("time zone", zone),
            ("clock (guess)", f"{guess}\n{clock['evidence']}"
                              + (f"\nweekly opens: {opens}; closes (last bar): {closes}" if opens else "")),
            ("weekends", f"{info['weekends']:,} weekend closes (not gaps)"),
            ("gaps", f"{gaps['count']:,} outside weekends, {gaps['missing_bars']:,} missing bars"
                     + "".join(f"\n{g['after']} -> {g['before']} ({g['missing_bars']:,} bars)"
                               for g in gaps["longest"])),
            ("price", f"low {price['low']} at {price['low_at']}, high {price['high']} at {price['high_at']}"),
            ("volume", "all zero" if info["volume_total"] == 0 else f"{info['volume_total']:,.0f} in total")]
    _stdout().print(_table(f"deskd data info: {path}", rows))
    return EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` (import, resample, info) on the ``deskd`` command's sub-parsers."""
    d = subparsers.add_parser(
        "data", help="prepare bar files: import raw exports, resample, describe",
        description="Prepare bar files for the desk: import HistData/MT4/MT5 exports into deskd's bar "
                    "format, resample M1 to coarser timeframes, and describe a file.")
    verbs = d.add_subparsers(dest="data_command", required=True, metavar="VERB")

    zones = ", ".join(f"{k}: {v}" for k, v in DEFAULT_ZONES.items())
    imp = verbs.add_parser(
        "import", help="raw exports (histdata, mt4, mt5) -> one deskd bar file",
        description="Join raw exports of one symbol (any order, overlaps allowed) into one deskd bar "
                    "file, in the files' own clock. Formats: histdata (HistData ASCII M1: "
                    "'YYYYMMDD HHMMSS;o;h;l;c;v'), mt4 ('YYYY.MM.DD,HH:MM,o,h,l,c,v'), mt5 (tab-separated "
                    "with the <DATE> <TIME> <OPEN> ... header). Plain, .gz or .zip files. Duplicates, rows "
                    "out of order and DST glitches are reported with examples; nothing is shifted or "
                    "filled. OUT's suffix chooses the format: .csv / .csv.gz (naive local times: declare "
                    "the zone as data.timezone) or .parquet (the zone recorded in the file).")
    imp.add_argument("format", metavar="FORMAT", help=f"{', '.join(FORMAT_NAMES)}")
    imp.add_argument("src", nargs="+", metavar="SRC", help="raw files (plain, .gz, or a .zip holding one .csv)")
    imp.add_argument("--to", required=True, metavar="OUT", help="output bar file: .csv, .csv.gz or .parquet")
    imp.add_argument("--tz", metavar="ZONE",
                     help=f"IANA zone the source times are written in (defaults: {zones}; required for "
                          f"mt4/mt5, whose times are the broker's server time, often Europe/Athens)")
    imp.add_argument("--symbol", metavar="SYM",
                     help="the pair the files hold (default: the one their names give); a file named "
                          "for another pair is refused")
    imp.add_argument("--keep-first", action="store_true",
                     help="when a time repeats with different prices, keep the first copy (default: refuse)")
    imp.add_argument("--force", action="store_true", help="replace OUT if it exists")
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    imp.set_defaults(func=cmd_import)

    rs = verbs.add_parser(
        "resample", help="a bar file -> a coarser timeframe (M5, M15, M30, H1, H4)",
        description="Aggregate a bar file to a coarser timeframe in its own clock: buckets aligned to "
                    "midnight of the file's clock and labelled by their start (a New York Sunday 17:00 "
                    "open falls in the H4 bar labelled 16:00), open first, high max, low min, close "
                    "last, volume summed, no empty bars.")
    rs.add_argument("src", metavar="SRC", help="deskd bar file (.csv, .csv.gz, .parquet)")
    rs.add_argument("--to-timeframe", required=True, metavar="TF",
                    help=f"target timeframe: {', '.join(TIMEFRAMES[1:])}")
    rs.add_argument("--out", required=True, metavar="OUT", help="output bar file: .csv, .csv.gz or .parquet")
    rs.add_argument("--force", action="store_true", help="replace OUT if it exists")
    rs.add_argument("--json", action="store_true", help="print the result as JSON")
    rs.set_defaults(func=cmd_resample)

    inf = verbs.add_parser(
        "info", help="describe a bar file: span, timeframe, gaps, prices, clock",
        description="Describe a deskd bar file: first and last bar, count, timeframe, gaps outside "
                    "weekends, price range, and a guess at its clock (New York, UTC or broker time) "
                    "from the hour of the weekly open.")
    inf.add_argument("file", metavar="FILE", help="deskd bar file (.csv, .csv.gz, .parquet)")
    inf.add_argument("--longest", type=int, default=5, metavar="N", help="longest gaps to list (default 5)")
    inf.add_argument("--json", action="store_true", help="print the description as JSON")
    inf.set_defaults(func=cmd_info)
    return d


def main(argv: list[str] | None = None) -> int:
    """``deskd data ...`` alone (until ``deskd.cli`` registers it): parse ``argv``, run the verb."""
    p = argparse.ArgumentParser(prog="deskd", description="deskd data verbs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("deskd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
