"""Preparing bar files: raw FX exports to deskd bar files, resampling, and describing a file.

Functions here print nothing and keep no state; they read the files they are given, return
arrays and plain reports, and raise :class:`ConvertError` (a ValueError) with the file, the
line and the problem for any bad input. Long steps report through an optional
:class:`Progress`. ``deskd.data_commands`` is the command line over them.

Conventions
-----------
* **Wall-clock seconds.** Inside this module a bar time is the local date-time of the file's
  clock written as if it were UTC, in int64 seconds since 1970-01-01 (the bar's OPEN time):
  2019-03-10 17:00 New York is 1552237200 whatever the zone. Weekdays, hours, buckets and
  gaps are computed on it; the zone matters only when a file records one (Parquet) and when
  a local time must exist (daylight-saving changes).
* **Written files** are what :mod:`deskd.adapters.bars` reads, ``time,open,high,low,close,
  volume`` in the source's own clock: CSV (``.csv``, ``.csv.gz``) holds naive local times
  ``YYYY-MM-DD HH:MM:SS``, whose zone the desk config declares (``data.timezone`` or
  ``--data-timezone``); bars.py cannot read a CSV whose UTC offsets change within the file,
  so no offset is written. Parquet (``.parquet``, ``.pq``) records the zone in a timezone-aware
  ``time`` column, which bars.py honours over the declared one. Every file is written to a
  hidden temporary beside the target, read back with :func:`deskd.adapters.bars.read_bars`,
  and only then renamed into place: a failed conversion leaves nothing that looks like a result.
* **The FX week** runs from Sunday 17:00 to Friday 17:00 New York time. A step from a Friday or
  Saturday bar to a Sunday or Monday bar less than four days later is the weekend close, not a
  gap, whatever the file's clock (New York: Fri 16:59 -> Sun 17:00; UTC: Fri 21:59 -> Sun
  22:00; broker time: Fri 23:59 -> Mon 00:00).
* **Resampling** buckets bars by ``floor(wall-clock / timeframe)``: buckets are aligned to
  midnight of the file's clock and labelled by their start, a bar holds every source bar that
  opens inside it (open = first, high = max, low = min, close = last, volume = sum), and an
  empty bucket is not written. So the New York Sunday 17:00 open falls in the H4 bar labelled
  16:00 (16:00-20:00, whose open is the 17:00 open), in broker time in Monday's 00:00 bar.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import secrets
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from deskd.adapters.bars import BarFileError, read_bars
from deskd.configs.models import TIMEFRAME_SECONDS
from deskd.configs.models import check_timezone as check_config_timezone
from deskd.core.money import Instrument

#: timeframe name of a bar spacing in seconds (M1 .. H4, the timeframes deskd trades)
TIMEFRAME_NAMES: dict[int, str] = {s: name for name, s in TIMEFRAME_SECONDS.items()}
OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
CHUNK_ROWS = 250_000
DAY_S, HOUR_S = 86_400, 3_600
MON, FRI, SAT, SUN = 0, 4, 5, 6
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NEW_YORK = "America/New_York"
_EXAMPLES = 3  # examples shown per kind of finding


class ConvertError(ValueError):
    """Input that cannot be converted; the message names the file, the line and the problem."""


class Progress(Protocol):
    """Where long steps report: a stage starts (``stage``), rows are read (``rows``)."""

    def stage(self, text: str) -> None: ...

    def rows(self, n: int) -> None: ...


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def rows(self, n: int) -> None:
        pass


@dataclass(frozen=True, eq=False)
class Bars:
    """Bars of one file in time order.

    ``ts``: int64 wall-clock seconds of each bar's open (module docstring), strictly
    increasing; ``open``..``close`` float64 prices; ``volume`` float64 (tick volume, or 0);
    ``tz``: the IANA zone (or a fixed offset such as ``UTC-05:00``) of the clock when known,
    else None (a CSV's naive times); ``where(i)`` names row ``i`` in its source file and
    ``source`` the file, for messages.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    tz: str | None = None
    where: Callable[[int], str] = field(default=lambda i: f"bar {i + 1}")
    source: str = "bars"

    def __len__(self) -> int:
        return len(self.ts)


# --------------------------------------------------------------------------------------------
# small helpers


def wall_str(ts: int | np.integer) -> str:
    """Wall-clock seconds as ``YYYY-MM-DD HH:MM:SS``."""
    return str(np.datetime64(int(ts), "s")).replace("T", " ")


def _weekday(ts: np.ndarray) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 of wall-clock seconds (1970-01-01 was a Thursday)."""
    return (ts // DAY_S + 3) % 7


def timeframe_name(seconds: int | None) -> str:
    """``M15`` for 900; ``N s`` for a spacing that is not a deskd timeframe; ``unknown`` for None."""
    if seconds is None:
        return "unknown"
    return TIMEFRAME_NAMES.get(seconds, f"{seconds} s")


def check_timezone(name: str) -> str:
    """``name`` when it is an IANA zone the desk config would accept (the config's own rule:
    :func:`deskd.configs.models.check_timezone`); raises ConvertError naming --tz otherwise."""
    try:
        return check_config_timezone(name)
    except ValueError as e:
        raise ConvertError(f"--tz: {e}") from None


def check_output_path(out: Path, force: bool) -> None:
    """Refuse an output path before any work: a suffix deskd cannot read, a folder, a missing
    parent folder, or an existing file without ``force``. Raises ConvertError."""
    if out.is_dir():
        raise ConvertError(f"{out}: is a folder; give a file name such as {out / 'EURUSD_M1.csv.gz'}")
    if not out.name.lower().endswith(OUTPUT_SUFFIXES):
        raise ConvertError(f"{out}: the output must end with .csv, .csv.gz or .parquet "
                           f"(the suffix chooses the format)")
    if not out.parent.is_dir():
        raise ConvertError(f"{out}: folder {out.parent} does not exist")
    if out.exists() and not force:
        raise ConvertError(f"{out}: exists; pass --force to replace it")


def _check_input_path(path: Path) -> None:
    if path.is_dir():
        raise ConvertError(f"{path}: is a folder, not a file")
    if not path.exists():
        raise ConvertError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ConvertError(f"{path}: the file is empty")


# --------------------------------------------------------------------------------------------
# symbols in file names

_CURRENCIES = frozenset(
    "EUR USD GBP JPY CHF AUD NZD CAD SEK NOK DKK PLN HUF CZK TRY ZAR MXN SGD HKD CNH CNY RUB ILS "
    "THB INR KRW BRL XAU XAG XPT XPD".split())


def symbol_in_name(name: str) -> str | None:
    """The FX pair a file name names (``DAT_ASCII_EURUSD_M1_2019.csv`` -> EURUSD), or None."""
    for m in re.finditer(r"(?<![A-Za-z])([A-Za-z]{6})(?![A-Za-z])", name):
        s = m.group(1).upper()
        if s[:3] in _CURRENCIES and s[3:] in _CURRENCIES and s[:3] != s[3:]:
            return s
    return None


def resolve_symbol(symbol: str | None, paths: Sequence[Path], out: Path | None) -> str | None:
    """The symbol of an import: ``symbol`` (checked: a six-letter pair) or the one the source
    names agree on. Raises ConvertError when a source or the output name names another pair
    (joining GBPUSD into EURUSD is a mistake a file name can catch)."""
    if symbol is not None:
        try:
            symbol = Instrument.parse(symbol.strip().upper()).symbol
        except ValueError as e:
            raise ConvertError(f"--symbol: {e}") from None
    named = [(p, symbol_in_name(p.name)) for p in paths]
    found = {s for _, s in named if s}
    if symbol is None and len(found) > 1:
        listed = ", ".join(f"{s} ({p.name})" for p, s in named if s)
        raise ConvertError(f"the source files name different symbols: {listed}; pass --symbol to "
                           f"say which one they hold")
    symbol = symbol or (found.pop() if found else None)
    for p, s in named + ([(out, symbol_in_name(out.name))] if out is not None else []):
        if s and symbol and s != symbol:
            raise ConvertError(f"{p}: the file name says {s}, but the import is {symbol}")
    return symbol


# --------------------------------------------------------------------------------------------
# raw formats


@dataclass(frozen=True)
class RawFormat:
    """A raw export format: field separator, fields (no header, or after the header) and the
    strptime formats of its ``date time`` text."""

    name: str
    sep: str
    fields: tuple[str, ...]
    header: bool
    time_formats: tuple[str, ...]
    example: str


FORMATS: dict[str, RawFormat] = {
    "histdata": RawFormat("histdata", ";", ("time", "open", "high", "low", "close", "volume"), False,
                          ("%Y%m%d %H%M%S",), "20190101 170200;1.145980;1.145990;1.145980;1.145980;0"),
    "mt4": RawFormat("mt4", ",", ("date", "time", "open", "high", "low", "close", "volume"), False,
                     ("%Y.%m.%d %H:%M", "%Y.%m.%d %H:%M:%S"),
                     "2019.01.01,17:02,1.14598,1.14599,1.14598,1.14598,12"),
    "mt5": RawFormat("mt5", "\t", ("date", "time", "open", "high", "low", "close", "tickvol", "vol",
                                   "spread"), True,
                     ("%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M"),
                     "<DATE>\\t<TIME>\\t<OPEN>\\t<HIGH>\\t<LOW>\\t<CLOSE>\\t<TICKVOL>\\t<VOL>\\t<SPREAD>"),
}
#: the zone a format's times are in when --tz is not given (MT4/MT5: the broker's, unknown)
DEFAULT_TZ = {"histdata": NEW_YORK}


def get_format(name: str) -> RawFormat:
    """The :class:`RawFormat` called ``name``; raises ConvertError for an unknown one."""
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise ConvertError(f"unknown format {name!r} (expected {', '.join(FORMATS)})") from None


@dataclass(frozen=True, eq=False)
class SourceFile:
    """The rows of one raw file, in file order: wall-clock ``ts``, prices, ``volume`` and the
    1-based ``lines`` they came from; ``blank_lines`` skipped."""

    path: Path
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    lines: np.ndarray
    blank_lines: int

    def __len__(self) -> int:
        return len(self.ts)


def _open_binary(path: Path, stack: ExitStack) -> IO[bytes]:
    """The bytes of ``path``: a .zip's one .csv member, a .gz decompressed, else the file."""
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            zf = stack.enter_context(zipfile.ZipFile(path))
            members = [m for m in zf.namelist() if m.lower().endswith((".csv", ".txt"))
                       and not m.endswith("/")]
            csvs = [m for m in members if m.lower().endswith(".csv")] or members
            if len(csvs) != 1:
                raise ConvertError(f"{path}: expected one .csv file in the zip, found "
                                   f"{', '.join(csvs) if csvs else 'none'}")
            return stack.enter_context(zf.open(csvs[0]))
        if name.endswith(".gz"):
            return stack.enter_context(gzip.GzipFile(path, "rb"))  # type: ignore[arg-type]
        return stack.enter_context(open(path, "rb"))
    except zipfile.BadZipFile as e:
        raise ConvertError(f"{path}: not a readable zip file ({e})") from None


def _text_stream(raw: IO[bytes]) -> tuple[IO[bytes] | io.StringIO, str]:
    """``raw`` positioned after any UTF-8 byte-order mark, and its encoding; UTF-16 (some MT5
    exports) is decoded into memory."""
    peek = getattr(raw, "peek", None)
    head = peek(3)[:3] if peek is not None else b""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return io.StringIO(raw.read().decode("utf-16", errors="replace"), newline=""), "utf-8"
    if head == b"\xef\xbb\xbf":
        raw.read(3)
    return raw, "utf-8"


def _read_header(stream, path: Path, fmt: RawFormat) -> tuple[str, ...]:
    """MT5: the field names of the header line (``<DATE>`` -> ``date``), checked."""
    line = stream.readline()
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    names = tuple(f.strip().strip("<>").strip().lower() for f in text.strip("\r\n").split(fmt.sep))
    missing = [f for f in ("date", "time", "open", "high", "low", "close") if f not in names]
    if not text.strip():
        raise ConvertError(f"{path}: line 1: no header (an {fmt.name} file starts with {fmt.example})")
    if missing:
        raise ConvertError(f"{path}: line 1: header {text.strip()!r} lacks "
                           f"{', '.join('<' + m.upper() + '>' for m in missing)} (an {fmt.name} file "
                           f"is tab-separated and starts with {fmt.example})")
    if len(set(names)) != len(names):
        raise ConvertError(f"{path}: line 1: header {text.strip()!r} names a column twice")
    return names


def read_source(path: str | Path, fmt: RawFormat, progress: Progress | None = None) -> SourceFile:
    """Parse one raw export (plain, ``.gz``, or a ``.zip`` holding one ``.csv``).

    Times are read as the file's wall clock (no zone applied). Blank lines are skipped and
    counted. Raises ConvertError naming the file and line for: a missing file or folder, an
    empty file, a header that is not ``fmt``'s, a row with too few or too many fields, a time,
    price or volume that does not parse, a non-positive price, a high below max(open, close)
    or a low above min(open, close), a negative volume; and for a file that holds no bars.
    """
    path = Path(path)
    progress = progress or _Silent()
    _check_input_path(path)
    parts: list[dict[str, np.ndarray]] = []
    blank = 0
    with ExitStack() as stack:
        try:
            stream, encoding = _text_stream(_open_binary(path, stack))
            fields, skip = fmt.fields, 0
            if fmt.header:
                fields, skip = _read_header(stream, path, fmt), 1
            reader = pd.read_csv(stream, sep=fmt.sep, header=None, names=list(fields), dtype=str,
                                 na_filter=False, skip_blank_lines=False, quoting=csv.QUOTE_NONE,
                                 index_col=False, chunksize=CHUNK_ROWS, encoding=encoding,
                                 encoding_errors="replace", engine="c")
            for df in reader:
                chunk, n_blank = _parse_chunk(df, fmt, path, skip)
                blank += n_blank
                parts.append(chunk)
                progress.rows(len(df))
        except pd.errors.ParserError as e:
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
            if not m:
                raise ConvertError(f"{path}: not a {fmt.name} file: {e}") from None
            line = int(m.group(2)) + skip
            raise ConvertError(f"{path}: line {line}: {m.group(3)} fields, expected {m.group(1)} "
                               f"(a {fmt.name} row looks like {fmt.example})") from None
        except pd.errors.EmptyDataError:
            parts = []
        except (OSError, EOFError, zipfile.BadZipFile, UnicodeError) as e:
            raise ConvertError(f"{path}: cannot read: {e}") from None
    if not parts or sum(len(p["ts"]) for p in parts) == 0:
        raise ConvertError(f"{path}: holds no bars")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return SourceFile(path, cat["ts"], cat["open"], cat["high"], cat["low"], cat["close"],
                      cat["volume"], cat["lines"], blank)


def _text(df: pd.DataFrame, col: str) -> pa.ChunkedArray:
    """A column as trimmed Arrow strings (pandas' Arrow-backed strings pass without a copy)."""
    arr = pa.array(df[col])
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr])
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return pc.utf8_trim_whitespace(arr)


def _numbers(text: pa.ChunkedArray) -> np.ndarray:
    """float64 of text; NaN where a value does not parse (the slow path only then)."""
    try:
        return np.asarray(pc.cast(text, pa.float64()).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(pd.Series(text.to_pylist(), dtype=object), errors="coerce").to_numpy(np.float64)


def _parse_chunk(df: pd.DataFrame, fmt: RawFormat, path: Path,
                 header_lines: int) -> tuple[dict[str, np.ndarray], int]:
    """One chunk of rows: arrays of the rows that are not blank, and how many were blank.
    Raises ConvertError at the first bad row (by line)."""
    cols = list(df.columns)
    text = {c: _text(df, c) for c in cols}
    empty = {c: pc.equal(text[c], "").to_numpy(zero_copy_only=False) for c in cols}
    blank_rows = np.logical_and.reduce([empty[c] for c in cols])
    keep = ~blank_rows
    lines = df.index.to_numpy(dtype=np.int64)[keep] + 1 + header_lines
    if not keep.all():
        mask = pa.array(keep)
        text = {c: text[c].filter(mask) for c in cols}
        empty = {c: empty[c][keep] for c in cols}
    problems: list[tuple[np.ndarray, Callable[[int], str]]] = []

    # fields: an empty last field means a short row (pandas fills missing fields with "")
    vcol = next((c for c in ("volume", "tickvol", "vol") if c in text), None)
    needed = ["date", "time", "open", "high", "low", "close", vcol]
    short = empty[cols[-1]]
    for c in needed:
        if c in empty and c != cols[-1]:
            problems.append((empty[c] & ~short, _const(f"{c} is empty")))
    problems.append((short, lambda i: f"has fewer than {len(cols)} fields, or an empty {cols[-1]} (a "
                                      f"{fmt.name} row looks like {fmt.example})"))

    stamp = text["time"] if "date" not in text else \
        pc.binary_join_element_wise(text["date"], text["time"], pa.scalar(" ", type=text["date"].type))
    parsed = None
    for f in fmt.time_formats:
        got = pc.strptime(stamp, format=f, unit="s", error_is_null=True)
        parsed = got if parsed is None else pc.coalesce(parsed, got)
    assert parsed is not None
    bad_time = pc.is_null(parsed).to_numpy(zero_copy_only=False)
    ts = pc.fill_null(parsed.cast(pa.int64()), 0).to_numpy()
    problems.append((bad_time, lambda i: f"time {stamp[i].as_py()!r} is not a date-time like "
                                         f"{_example_time(fmt)}"))

    prices = {}
    for c in ("open", "high", "low", "close"):
        num = _numbers(text[c])
        prices[c] = num
        problems.append((~np.isfinite(num), _shown(c, text[c], "is not a number")))
        problems.append((num <= 0, _value(c, num, "is not a positive price")))
    o, h, lo, cl = prices["open"], prices["high"], prices["low"], prices["close"]
    with np.errstate(invalid="ignore"):
        problems.append((h < np.maximum(o, cl), lambda i: f"high {float(h[i])!r} is below max(open, close) = "
                                                          f"{float(max(o[i], cl[i]))!r}"))
        problems.append((lo > np.minimum(o, cl), lambda i: f"low {float(lo[i])!r} is above min(open, close) = "
                                                           f"{float(min(o[i], cl[i]))!r}"))
    if vcol is None:
        vol = np.zeros(len(ts))
    else:
        vol = _numbers(text[vcol])
        vtext = text[vcol]
        problems.append((~np.isfinite(vol) | (vol < 0),
                         lambda i: f"{vcol} {vtext[i].as_py()!r} is not a non-negative number"))

    first: tuple[int, str] | None = None
    for mask, msg in problems:
        if mask.any():
            pos = int(np.argmax(mask))
            if first is None or pos < first[0]:
                first = (pos, msg(pos))
    if first is not None:
        raise ConvertError(f"{path}: line {int(lines[first[0]])}: {first[1]}")
    return ({"ts": ts.astype(np.int64), "open": o, "high": h, "low": lo, "close": cl,
             "volume": vol.astype(np.float64), "lines": lines}, int(blank_rows.sum()))


def _const(msg: str) -> Callable[[int], str]:
    return lambda i: msg


def _shown(col: str, values: pa.ChunkedArray, what: str) -> Callable[[int], str]:
    return lambda i: f"{col} {values[i].as_py()!r} {what}"


def _value(col: str, values: np.ndarray, what: str) -> Callable[[int], str]:
    return lambda i: f"{col} {float(values[i])!r} {what}"


def _example_time(fmt: RawFormat) -> str:
    return {"histdata": "20190101 170200", "mt4": "2019.01.01,17:02"}.get(fmt.name, "2019.01.01\t17:02:00")


# --------------------------------------------------------------------------------------------
# timeframes, weekends, clocks


def spacing_mode(ts: np.ndarray) -> int | None:
    """The most common step between consecutive bars, in seconds (None for under two bars)."""
    d = np.diff(ts)
    d = d[d > 0]
    if len(d) == 0:
        return None
    vals, counts = np.unique(d, return_counts=True)
    return int(vals[np.argmax(counts)])


def detect_timeframe(bars: Bars) -> int | None:
    """The bars' timeframe in seconds: their most common spacing (None for one bar).

    Raises ConvertError, naming the row, when bars are closer together than that spacing
    (mixed timeframes) or when it is not one of deskd's timeframes (M1, M5, M15, M30, H1, H4).
    """
    tf = spacing_mode(bars.ts)
    if tf is None:
        return None
    _check_spacing(bars.ts, tf, bars.where)
    if tf not in TIMEFRAME_NAMES:
        raise ConvertError(f"{bars.source}: bars are mostly {tf} s apart, which is not a "
                           f"deskd timeframe ({', '.join(TIMEFRAME_SECONDS)})")
    return tf


def _check_spacing(ts: np.ndarray, tf: int, where: Callable[[int], str]) -> None:
    d = np.diff(ts)
    short = d < tf
    if short.any():
        j = int(np.argmax(short)) + 1
        raise ConvertError(f"{where(j)}: bar {wall_str(ts[j])} is {int(d[j - 1])} s after the previous one "
                           f"({wall_str(ts[j - 1])}), but most bars are {tf} s apart ({timeframe_name(tf)}): "
                           f"mixed timeframes?")


def weekend_breaks(ts: np.ndarray) -> np.ndarray:
    """Indices ``i`` where the step ``ts[i-1] -> ts[i]`` is the weekend close: from a Friday or
    Saturday bar to a Sunday or Monday bar, 12 hours to 4 days later (module docstring)."""
    if len(ts) < 2:
        return np.empty(0, dtype=np.int64)
    wd = _weekday(ts)
    d = np.diff(ts)
    m = (np.isin(wd[:-1], (FRI, SAT)) & np.isin(wd[1:], (SUN, MON)) & (d >= 12 * HOUR_S)
         & (d < 4 * DAY_S))
    return np.flatnonzero(m) + 1


#: how a file's clock is told from the weekday and hour of its weekly opens (a Monday at the
#: Sunday hour is the open after a Monday holiday, e.g. Christmas, in New York or UTC)
_CLOCKS = {
    **{(day, h): ("new_york", NEW_YORK) for day in (SUN, MON) for h in (16, 17, 18)},
    **{(day, h): ("utc", "UTC") for day in (SUN, MON) for h in (20, 21, 22)},
    (SUN, 23): ("broker", "Europe/Berlin"), (MON, 0): ("broker", "Europe/Athens"),
    (MON, 1): ("broker", None),
}
CLOCK_LABELS = {
    "new_york": "New York time (the week opens Sunday 17:00; HistData)",
    "utc": "UTC (the week opens Sunday 21:00 or 22:00)",
    "broker": "broker server time (Europe/Athens-like, MT4/MT5: the week opens Monday 00:00)",
    "unknown": "unknown",
}


def guess_clock(ts: np.ndarray) -> dict:
    """Which clock the bar times look like, from the weekday and hour of the weekly opens
    (the first bar after each weekend close): New York (Sunday ~17:00), UTC (Sunday 21:00 or
    22:00, following US daylight saving) or broker time (Monday ~00:00, e.g. Europe/Athens on
    MT4/MT5 servers). Returns ``clock`` (new_york, utc, broker, unknown), a suggested ``zone``
    (or None), ``weekly_opens`` and ``weekly_closes`` counts by weekday and hour, and the
    ``evidence`` in words (closes are the last bar's open time, to the minute)."""
    b = weekend_breaks(ts)
    if len(b) == 0:
        return {"clock": "unknown", "zone": None, "weekly_opens": {}, "weekly_closes": {},
                "evidence": "no weekend close in the file"}
    keys = list(zip(_weekday(ts[b]).tolist(), (ts[b] % DAY_S // HOUR_S).tolist()))
    opens = Counter(keys)
    (day, hour), n = opens.most_common(1)[0]
    clock, zone = _CLOCKS.get((day, hour), ("unknown", None))
    if clock == "utc" and set(opens) == {(SUN, 22)} and len(b) >= 10:
        zone = "Europe/London"  # 22:00 all year round: London (UTC would move with US DST)
    evidence = f"{n} of {len(b)} weekly opens at {DAY_NAMES[day]} {hour:02d}:00"
    if clock == "broker" and zone is None:
        evidence += " (a broker clock, but not the usual UTC+2/+3 one)"
    closes = Counter(f"{DAY_NAMES[(int(t) // DAY_S + 3) % 7]} {wall_str(t)[11:16]}" for t in ts[b - 1])
    return {"clock": clock, "zone": zone,
            "weekly_opens": {f"{DAY_NAMES[d]} {h:02d}:00": k for (d, h), k in opens.most_common()},
            "weekly_closes": dict(closes.most_common()), "evidence": evidence}


def _to_utc(ts: np.ndarray, tz: str) -> np.ndarray:
    """UTC seconds of wall-clock ``ts`` in ``tz`` (int64; a time that does not exist or is
    ambiguous there comes back as the minimum int64)."""
    idx = pd.DatetimeIndex(ts.astype("datetime64[s]"))
    loc = idx.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return loc.tz_convert("UTC").tz_localize(None).as_unit("s").asi8.copy()


def _from_utc(ts_utc: np.ndarray, tz: str | dt_timezone) -> np.ndarray:
    """Wall-clock seconds in ``tz`` of UTC seconds."""
    idx = pd.DatetimeIndex(ts_utc.astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    return idx.tz_localize(None).as_unit("s").asi8.copy()


def _dst_change_days(first: int, last: int, zones: Sequence[str]) -> set[int]:
    """Days (wall-clock day numbers) on which a daylight-saving change happens in any of
    ``zones`` between wall-clock ``first`` and ``last``."""
    days = np.arange(first // DAY_S - 1, last // DAY_S + 2, dtype=np.int64)
    noon = pd.DatetimeIndex((days * DAY_S + 12 * HOUR_S).astype("datetime64[s]")).tz_localize("UTC")
    out: set[int] = set()
    for z in dict.fromkeys(zones):
        off = (noon.tz_convert(z).tz_localize(None) - noon.tz_localize(None)).total_seconds().to_numpy()
        out.update(int(d) for d in days[1:][np.diff(off) != 0])
    return out


# --------------------------------------------------------------------------------------------
# import


@dataclass
class ImportReport:
    """What an import read and did. Times are wall clock ``YYYY-MM-DD HH:MM:SS`` in ``tz``."""

    format: str
    symbol: str | None
    tz: str
    files: list[dict]
    rows: int
    blank_lines: int
    bars: int = 0
    first: str = ""
    last: str = ""
    timeframe: str = "unknown"
    out_of_order: dict = field(default_factory=lambda: {"count": 0, "examples": []})
    duplicates_identical: dict = field(default_factory=lambda: {"count": 0, "examples": []})
    duplicates_conflicting: dict = field(default_factory=lambda: {"count": 0, "examples": []})
    dst_shifted_weeks: list[dict] = field(default_factory=list)
    dst_hour_gaps: list[dict] = field(default_factory=list)
    clock: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    out: str = ""

    def to_dict(self) -> dict:
        """The report as JSON-able plain data."""
        return asdict(self)

    def findings(self) -> list[str]:
        """One line per thing found in the data (duplicates, DST glitches, sorting, warnings)."""
        lines = []
        d = self.duplicates_identical
        if d["count"]:
            lines.append(f"duplicates: {d['count']:,} identical repeated row(s) dropped, e.g. "
                         + "; ".join(d["examples"]))
        d = self.duplicates_conflicting
        if d["count"]:
            lines.append(f"duplicates: {d['count']:,} repeated time(s) with different prices, the "
                         f"first kept (--keep-first), e.g. " + "; ".join(d["examples"]))
        d = self.out_of_order
        if d["count"]:
            lines.append(f"order: {d['count']:,} row(s) earlier than the row before them in their file, "
                         f"sorted into place, e.g. " + "; ".join(d["examples"]))
        for shift in sorted({w["shift_h"] for w in self.dst_shifted_weeks}):
            w = [x["week"] for x in self.dst_shifted_weeks if x["shift_h"] == shift]
            lines.append(f"DST glitch: {len(w)} week(s) open and close {_hours(shift)} New York's 17:00 "
                         f"when read in {self.tz}: " + ", ".join(w[:10]) + (" ..." if len(w) > 10 else "")
                         + " (the data's clock was off by an hour; not corrected)")
        if self.dst_hour_gaps:
            g = self.dst_hour_gaps
            lines.append(f"DST gap: {len(g)} gap(s) of about an hour on a daylight-saving change day: "
                         + "; ".join(f"{x['after']} -> {x['before']}" for x in g[:_EXAMPLES]))
        lines.extend(f"warning: {w}" for w in self.warnings)
        return lines


def _hours_from(ny: np.ndarray, day: int) -> np.ndarray:
    """Whole hours (rounded) from ``day`` 17:00 New York to New York wall-clock ``ny``, taken
    within half a week either side."""
    since_monday = _weekday(ny) * DAY_S + ny % DAY_S
    half = 7 * DAY_S // 2
    off = (since_monday - (day * DAY_S + 17 * HOUR_S) + half) % (7 * DAY_S) - half
    return np.rint(off / HOUR_S).astype(np.int64)


def _hours(h: int) -> str:
    return f"{abs(h)} hour{'s' if abs(h) != 1 else ''} {'before' if h < 0 else 'after'}"


def import_sources(fmt_name: str, paths: Sequence[str | Path], tz: str | None = None,
                   symbol: str | None = None, keep_first: bool = False, out: Path | None = None,
                   progress: Progress | None = None) -> tuple[Bars, ImportReport]:
    """Read raw exports of one symbol and join them into one run of bars, in time order.

    ``fmt_name``: histdata, mt4 or mt5. ``tz``: the IANA zone the files' times are written in
    (default America/New_York for histdata; required for mt4/mt5, whose times are the broker's
    server time). Files may come in any order and overlap: rows are sorted by time (rows out of
    order inside a file are counted), a time repeated with identical prices keeps its first
    copy (counted, with examples), and a time repeated with different prices is an error unless
    ``keep_first``. The weekly opens and closes are checked against the FX week (Sunday to
    Friday 17:00 New York) to report weeks an hour off (a DST glitch in the data) and hour-long
    gaps on daylight-saving change days; nothing is shifted or filled.

    Raises ConvertError for an unknown format or zone, a missing --tz, a bad file or row
    (:func:`read_source`), files of different timeframes, bars closer than the timeframe
    (mixed timeframes), a conflicting duplicate, a local time that does not exist or is
    ambiguous in ``tz``, and symbols that disagree (:func:`resolve_symbol`).
    """
    fmt = get_format(fmt_name)
    progress = progress or _Silent()
    if tz is not None:
        check_timezone(tz)
    srcs = [Path(p) for p in paths]
    if not srcs:
        raise ConvertError("no source file given")
    symbol = resolve_symbol(symbol, srcs, out)
    sources = []
    for k, p in enumerate(srcs, 1):
        progress.stage(f"reading {p} ({k}/{len(srcs)})")
        sources.append(read_source(p, fmt, progress))

    progress.stage("joining and checking")
    files, per_file_tf = [], []
    for s in sources:
        tf = spacing_mode(np.sort(s.ts))
        per_file_tf.append(tf)
        files.append({"path": str(s.path), "rows": len(s), "blank_lines": s.blank_lines,
                      "first": wall_str(s.ts.min()), "last": wall_str(s.ts.max()),
                      "timeframe": timeframe_name(tf)})
    known = [(s, tf) for s, tf in zip(sources, per_file_tf) if tf is not None]
    if len({tf for _, tf in known}) > 1:
        listed = ", ".join(f"{s.path} ({timeframe_name(tf)})" for s, tf in known)
        raise ConvertError(f"the files hold different timeframes: {listed}")

    report = ImportReport(fmt.name, symbol, tz or "", files, sum(len(s) for s in sources),
                          sum(s.blank_lines for s in sources))
    ts, cols, file_of, line_of = _join(sources, report)
    ts, cols, file_of, line_of = _dedupe(ts, cols, _namer(srcs, file_of, line_of), keep_first, report,
                                         file_of, line_of)
    where = _namer(srcs, file_of, line_of)
    label = str(srcs[0]) if len(srcs) == 1 else f"{len(srcs)} {fmt.name} files"
    tfs = detect_timeframe(Bars(ts, cols[0], cols[1], cols[2], cols[3], cols[4], tz, where, label))

    report.clock = guess_clock(ts)
    if tz is None:
        if fmt.name not in DEFAULT_TZ:
            g = report.clock
            hint = (f"; its weekly opens ({g['evidence']}) look like {CLOCK_LABELS[g['clock']]}"
                    + (f": --tz {g['zone']}?" if g.get("zone") else "")) if g["clock"] != "unknown" else ""
            raise ConvertError(f"--tz is required for {fmt.name} files: their times are the broker's "
                               f"server time (often Europe/Athens){hint}")
        tz = DEFAULT_TZ[fmt.name]
        report.tz = tz
    bars = Bars(ts, cols[0], cols[1], cols[2], cols[3], cols[4], tz, where, label)
    progress.stage(f"checking local times in {tz}")
    utc = _check_local_times(bars, tz)
    _week_findings(bars, utc, tfs, report)
    report.bars, report.first, report.last = len(bars), wall_str(ts[0]), wall_str(ts[-1])
    report.timeframe = timeframe_name(tfs)
    return bars, report


def _namer(paths: Sequence[Path], file_of: np.ndarray, line_of: np.ndarray) -> Callable[[int], str]:
    """``where(i)``: the file and line joined row ``i`` came from."""
    return lambda i: f"{paths[int(file_of[i])]}: line {int(line_of[i])}"


def _join(sources: list[SourceFile], report: ImportReport):
    """All rows in time order (files ordered by their first bar, a stable sort inside), with
    the file index and line of each; counts rows out of order inside their file."""
    order = sorted(range(len(sources)), key=lambda k: (int(sources[k].ts.min()), k))
    ooo_examples: list[str] = []
    ooo = 0
    for k in order:
        s = sources[k]
        back = np.flatnonzero(np.diff(s.ts) < 0) + 1
        ooo += len(back)
        ooo_examples += [f"{s.path}: line {int(s.lines[j])} ({wall_str(s.ts[j])} after "
                         f"{wall_str(s.ts[j - 1])})" for j in back[:_EXAMPLES - len(ooo_examples)]]
    report.out_of_order = {"count": ooo, "examples": ooo_examples}
    # keep the callers' file numbering: file_of indexes `sources`
    ts = np.concatenate([sources[k].ts for k in order])
    cols = [np.concatenate([getattr(sources[k], c) for k in order])
            for c in ("open", "high", "low", "close", "volume")]
    file_of = np.concatenate([np.full(len(sources[k]), k, dtype=np.int32) for k in order])
    line_of = np.concatenate([sources[k].lines for k in order])
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        perm = np.argsort(ts, kind="stable")
        ts, file_of, line_of = ts[perm], file_of[perm], line_of[perm]
        cols = [c[perm] for c in cols]
    return ts, cols, file_of, line_of


def _dedupe(ts, cols, where, keep_first: bool, report: ImportReport, file_of, line_of):
    """Drop repeated times (sorted input): identical copies always, differing ones only with
    ``keep_first`` (else ConvertError naming both rows). Records counts and examples."""
    dup = np.zeros(len(ts), dtype=bool)
    dup[1:] = ts[1:] == ts[:-1]
    if not dup.any():
        return ts, cols, file_of, line_of
    first = np.searchsorted(ts, ts, side="left")
    same = np.logical_and.reduce([c == c[first] for c in cols])
    conflict = dup & ~same
    if conflict.any() and not keep_first:
        j = int(np.argmax(conflict))
        raise ConvertError(f"{where(j)}: time {wall_str(ts[j])} repeats {where(int(first[j]))} with "
                           f"different prices; fix the files, or pass --keep-first to keep the first copy "
                           f"({int(conflict.sum()):,} such row(s))")
    ident = dup & same
    report.duplicates_identical = {"count": int(ident.sum()), "examples": _runs(ts, ident, where)}
    report.duplicates_conflicting = {"count": int(conflict.sum()), "examples": _runs(ts, conflict, where)}
    keep = ~dup
    return ts[keep], [c[keep] for c in cols], file_of[keep], line_of[keep]


def _runs(ts: np.ndarray, mask: np.ndarray, where) -> list[str]:
    """Examples of flagged rows grouped into runs of consecutive times (e.g. a repeated hour)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return []
    step = spacing_mode(np.unique(ts)) or 60
    cuts = np.flatnonzero(np.diff(ts[idx]) > step) + 1
    out = []
    for run in np.split(idx, cuts)[:_EXAMPLES]:
        a, b = int(run[0]), int(run[-1])
        span = wall_str(ts[a]) if a == b else f"{wall_str(ts[a])} .. {wall_str(ts[b])}"
        out.append(f"{span} ({len(run)} row(s), first at {where(a)})")
    return out


def _check_local_times(bars: Bars, tz: str) -> np.ndarray:
    """UTC seconds of the bars; ConvertError when local times do not exist or are ambiguous in
    ``tz`` (bars.py would reject them)."""
    utc = _to_utc(bars.ts, tz)
    bad = utc == np.iinfo(np.int64).min
    if bad.any():
        idx = np.flatnonzero(bad)
        shown = ", ".join(f"{wall_str(bars.ts[i])} ({bars.where(int(i))})" for i in idx[:_EXAMPLES])
        raise ConvertError(f"{len(idx):,} bar(s) at local times that do not exist or are ambiguous in {tz} "
                           f"(a daylight-saving change), e.g. {shown}: is --tz right?")
    return utc


def _week_findings(bars: Bars, utc: np.ndarray, tf: int | None, report: ImportReport) -> None:
    """Weeks whose open and close are both an hour off the FX week in New York time (a DST
    glitch), a clock that does not match ``tz``, and hour-long gaps on DST change days."""
    ts = bars.ts
    b = weekend_breaks(ts)
    step = tf or 60
    if len(b) >= 2:
        ny = _from_utc(utc, NEW_YORK)
        off_o = _hours_from(ny[b[:-1]], SUN)  # each full week's first bar opens ...
        off_c = _hours_from(ny[b[1:] - 1] + step, FRI)  # ... and its last bar closes
        shifted = (off_o == off_c) & (np.abs(off_o) == 1)
        report.dst_shifted_weeks = [{"week": wall_str(ts[b[k]])[:10], "open": wall_str(ts[b[k]]),
                                     "close": wall_str(ts[b[k + 1] - 1]), "shift_h": int(off_o[k])}
                                    for k in np.flatnonzero(shifted)]
        typical = Counter(zip(off_o.tolist(), off_c.tolist())).most_common(1)[0][0]
        if typical[1] != 0:
            g = report.clock
            report.warnings.append(
                f"read in {report.tz}, the week usually closes {_hours(int(typical[1]))} Friday 17:00 New "
                f"York, where the FX week closes: is --tz right? (the weekly opens look like "
                f"{CLOCK_LABELS[g['clock']]}{': ' + g['zone'] if g.get('zone') else ''})")
    # hour-long gaps on daylight-saving change days (US, EU or the file's zone)
    if len(ts) > 1:
        d = np.diff(ts)
        missing = d - step
        cand = np.flatnonzero((missing >= 50 * 60) & (missing <= 130 * 60)) + 1
        cand = np.setdiff1d(cand, b)
        if len(cand):
            days = _dst_change_days(int(ts[0]), int(ts[-1]), [NEW_YORK, "Europe/London", report.tz])
            near = [int(i) for i in cand if {int(ts[i - 1] // DAY_S) + k for k in (-1, 0, 1)} & days]
            report.dst_hour_gaps = [{"after": wall_str(ts[i - 1]), "before": wall_str(ts[i]),
                                     "missing_min": int(missing[i - 1] // 60)} for i in near]


# --------------------------------------------------------------------------------------------
# reading and writing deskd bar files


def recorded_zone(path: Path) -> str | dt_timezone | None:
    """The zone a bar file records for its times: a Parquet timestamp column's timezone, or
    the UTC offset written on a CSV's first time (as a fixed offset); None for naive times."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            typ = pq.read_schema(path).field("time").type
        except (KeyError, OSError, pa.ArrowException):
            return None
        return getattr(typ, "tz", None) if pa.types.is_timestamp(typ) else None
    try:
        with ExitStack() as stack:
            fh = stack.enter_context(gzip.open(path, "rt", errors="replace") if name.endswith(".gz")
                                     else open(path, errors="replace"))
            header = [c.strip().lower() for c in fh.readline().split(",")]
            first = fh.readline().split(",")
    except (OSError, EOFError, UnicodeError):
        return None
    if "time" not in header or len(first) <= header.index("time"):
        return None
    text = first[header.index("time")].strip()
    if text.endswith("Z"):
        return "UTC"
    m = re.search(r"([+-])(\d{2}):?(\d{2})$", text)
    if not m or len(text) < 16:
        return None
    mins = int(m.group(2)) * 60 + int(m.group(3))
    return dt_timezone(timedelta(minutes=mins if m.group(1) == "+" else -mins))


def load_bar_file(path: str | Path, progress: Progress | None = None) -> Bars:
    """Read a deskd bar file (CSV, .csv.gz, Parquet) with its own checks
    (:func:`deskd.adapters.bars.read_bars`), times as the file's wall clock.

    ``tz`` of the result is the zone the file records (:func:`recorded_zone`), None for naive
    times. Raises ConvertError for a folder, a missing or empty file, anything bars.py rejects
    (bad row, duplicate or out-of-order time), and recorded times that repeat in local time
    (a daylight-saving change).
    """
    path = Path(path)
    _check_input_path(path)
    progress = progress or _Silent()
    zone = recorded_zone(path)
    chunks = []
    try:
        for c in read_bars(path, "UTC", 1):
            chunks.append(c)
            progress.rows(len(c))
    except BarFileError as e:
        raise ConvertError(str(e)) from None
    ts = np.concatenate([c.ts for c in chunks])
    is_csv = not path.name.lower().endswith((".parquet", ".pq"))
    where = lambda i: f"{path}: line {i + 2}" if is_csv else f"{path}: row {i + 1}"  # noqa: E731
    if zone is not None:
        ts = _from_utc(ts, zone)
        back = np.flatnonzero(np.diff(ts) <= 0)
        if len(back):
            raise ConvertError(f"{where(int(back[0]) + 1)}: local time {wall_str(ts[back[0] + 1])} repeats or "
                               f"goes back in {zone} (a daylight-saving change): bars cannot be bucketed "
                               f"by local time")
    cols = [np.concatenate([getattr(c, k) for c in chunks]) for k in ("open", "high", "low", "close", "volume")]
    tz_name = None if zone is None else (zone if isinstance(zone, str) else str(zone))
    return Bars(ts, cols[0], cols[1], cols[2], cols[3], cols[4], tz_name, where, str(path))


def _fixed_offset(tz: str) -> int | None:
    """Seconds east of UTC of a fixed-offset zone label (``UTC-05:00`` -> -18000), else None."""
    m = re.fullmatch(r"UTC([+-])(\d{2}):(\d{2})", tz)
    if not m:
        return None
    secs = int(m.group(2)) * HOUR_S + int(m.group(3)) * 60
    return secs if m.group(1) == "+" else -secs


def _utc_seconds(bars: Bars) -> tuple[np.ndarray, str]:
    """UTC seconds of zoned ``bars`` and the zone as Arrow spells it; ConvertError when a
    local time does not exist or is ambiguous there."""
    assert bars.tz is not None
    fixed = _fixed_offset(bars.tz)
    if fixed is not None:
        return bars.ts - fixed, f"{'+' if fixed >= 0 else '-'}{abs(fixed) // HOUR_S:02d}:{abs(fixed) % HOUR_S // 60:02d}"
    utc = _to_utc(bars.ts, bars.tz)
    bad = utc == np.iinfo(np.int64).min
    if bad.any():
        i = int(np.argmax(bad))
        raise ConvertError(f"{bars.where(i)}: local time {wall_str(bars.ts[i])} does not exist or is ambiguous "
                           f"in {bars.tz} (a daylight-saving change)")
    return utc, bars.tz


def _table(bars: Bars, zone_aware: bool) -> pa.Table:
    """The Arrow table written: ``time`` naive wall clock, or (``zone_aware`` and a known zone)
    the instants with the zone; volume as integers when every value is one."""
    vol = bars.volume
    whole = bool(np.all(vol == np.floor(vol)) and np.all(np.abs(vol) < 2**53))
    volume = pa.array(vol.astype(np.int64)) if whole else pa.array(vol)
    if zone_aware and bars.tz is not None:
        utc, arrow_tz = _utc_seconds(bars)
        t = pa.array(utc, type=pa.int64()).cast(pa.timestamp("s", tz=arrow_tz))
    else:
        t = pa.array(bars.ts, type=pa.int64()).cast(pa.timestamp("s"))
    return pa.table({"time": t, "open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                     "volume": volume})


def write_bars(bars: Bars, out: str | Path, force: bool = False, timeframe_s: int | None = None,
               progress: Progress | None = None) -> Path:
    """Write ``bars`` to ``out`` atomically, in deskd's bar format (module docstring).

    The suffix chooses the format: ``.csv`` / ``.csv.gz`` (naive wall-clock times, gzip level 6
    without a timestamp, so equal bars give equal bytes) or ``.parquet`` / ``.pq`` (times
    timezone-aware when ``bars.tz`` is known). The data goes to a hidden temporary file in
    ``out``'s folder, is read back with deskd's own loader in ``bars.tz`` (or UTC) at
    ``timeframe_s``, and is renamed to ``out`` only when it loads; without ``force`` an
    existing ``out`` is never replaced, even one that appears meanwhile. Raises ConvertError
    for a bad path (:func:`check_output_path`), a write error, or bars that would not load
    (nothing is left behind). Returns ``out``.
    """
    out = Path(out)
    progress = progress or _Silent()
    check_output_path(out, force)
    if len(bars) == 0:
        raise ConvertError(f"{out}: no bars to write")
    tmp = out.parent / f".deskd-tmp-{os.getpid()}-{secrets.token_hex(4)}-{out.name}"
    try:
        progress.stage(f"writing {out}")
        parquet = out.name.lower().endswith((".parquet", ".pq"))
        table = _table(bars, zone_aware=parquet)
        if parquet:
            pq.write_table(table, tmp)
        else:
            opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
            with open(tmp, "wb") as raw:
                if out.name.lower().endswith(".gz"):
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
                        gz.write(b"time,open,high,low,close,volume\n")
                        pacsv.write_csv(table, gz, write_options=opts)
                else:
                    raw.write(b"time,open,high,low,close,volume\n")
                    pacsv.write_csv(table, raw, write_options=opts)
                raw.flush()
                os.fsync(raw.fileno())
        progress.stage(f"checking {out} loads in deskd")
        tz = bars.tz if bars.tz is not None and _fixed_offset(bars.tz) is None else "UTC"
        try:
            n = sum(len(c) for c in read_bars(tmp, tz, timeframe_s or 1))
        except BarFileError as e:
            raise ConvertError(f"{out}: the converted bars would not load in deskd "
                               f"({str(e).replace(str(tmp), out.name)}); nothing written") from None
        if n != len(bars):
            raise ConvertError(f"{out}: read back {n} bars of {len(bars)} written; nothing written")
        _publish(tmp, out, force)
    except OSError as e:
        raise ConvertError(f"{out}: cannot write: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Rename ``tmp`` to ``out``; without ``force`` never replace an existing ``out``."""
    if force:
        os.replace(tmp, out)
    else:
        try:
            os.link(tmp, out)  # fails if out exists: no window where another file is clobbered
        except FileExistsError:
            raise ConvertError(f"{out}: exists; pass --force to replace it") from None
        except OSError:  # a filesystem without hard links
            if out.exists():
                raise ConvertError(f"{out}: exists; pass --force to replace it") from None
            os.replace(tmp, out)
    try:
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# resample


def resample(bars: Bars, timeframe: str) -> Bars:
    """Aggregate ``bars`` to ``timeframe`` (M5, M15, M30, H1, H4) in their own clock
    (module docstring: buckets aligned to local midnight, labelled by their start; first, max,
    min, last, volume summed; no empty bars).

    Raises ConvertError for an unknown target, a source that is not finer than the target or
    does not divide it, mixed source timeframes, and a source bar not on its timeframe's grid
    (it would straddle two buckets).
    """
    target = TIMEFRAME_SECONDS.get(timeframe.upper())
    if target is None:
        raise ConvertError(f"--to-timeframe {timeframe!r}: expected one of {', '.join(TIMEFRAME_SECONDS)}")
    src = detect_timeframe(bars)
    if src is not None:
        if src >= target or target % src:
            raise ConvertError(f"{bars.source}: holds {timeframe_name(src)} bars, which "
                               f"cannot be resampled to {timeframe.upper()} (a finer timeframe that divides "
                               f"it is needed)")
        off = bars.ts % src != 0
        if off.any():
            i = int(np.argmax(off))
            raise ConvertError(f"{bars.where(i)}: bar {wall_str(bars.ts[i])} is not on the {timeframe_name(src)} "
                               f"grid, so it would straddle two {timeframe.upper()} bars")
    ts = bars.ts
    bucket = ts - ts % target
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    return Bars(bucket[starts], bars.open[starts], np.maximum.reduceat(bars.high, starts),
                np.minimum.reduceat(bars.low, starts), bars.close[ends], np.add.reduceat(bars.volume, starts),
                bars.tz, lambda i: f"{bars.source}: {timeframe.upper()} bar {i + 1}", bars.source)


# --------------------------------------------------------------------------------------------
# info


def describe(bars: Bars, longest: int = 5) -> dict:
    """What a bar file holds: bars, first and last bar (wall clock), ``timeframe``, recorded
    ``time_zone``, the ``clock`` guess (:func:`guess_clock`), weekend closes, ``gaps`` (steps
    longer than the timeframe that are not the weekend close: count, missing bars, the
    ``longest``), and the price range with the times of the low and the high.

    Raises ConvertError for mixed timeframes (:func:`detect_timeframe`).
    """
    ts = bars.ts
    tf = spacing_mode(ts)
    if tf is not None:
        _check_spacing(ts, tf, bars.where)
    b = weekend_breaks(ts)
    d = np.diff(ts)
    is_gap = np.zeros(len(d), dtype=bool) if tf is None else d > tf
    is_gap[b - 1] = False
    gi = np.flatnonzero(is_gap)
    missing = (d[gi] // tf - 1) if tf else np.zeros(0, dtype=np.int64)
    top = gi[np.argsort(-d[gi], kind="stable")[:longest]] if len(gi) else gi
    lo, hi = int(np.argmin(bars.low)), int(np.argmax(bars.high))
    clock = guess_clock(ts)
    return {
        "bars": len(bars), "first": wall_str(ts[0]), "last": wall_str(ts[-1]),
        "timeframe": TIMEFRAME_NAMES.get(tf) if tf else None, "spacing_s": tf,
        "time_zone": bars.tz,
        "clock": clock | {"label": CLOCK_LABELS[clock["clock"]]},
        "weekends": len(b),
        "gaps": {"count": len(gi), "missing_bars": int(missing.sum()),
                 "longest": [{"after": wall_str(ts[i]), "before": wall_str(ts[i + 1]),
                              "missing_bars": int(d[i] // tf - 1) if tf else 0} for i in top]},
        "price": {"low": float(bars.low[lo]), "low_at": wall_str(ts[lo]),
                  "high": float(bars.high[hi]), "high_at": wall_str(ts[hi])},
        "volume_total": float(bars.volume.sum()),
    }
