"""Bar files: CSV (plain or .gz) and Parquet with ``time,open,high,low,close[,volume]``.

``time`` is the bar's OPEN time, written in the file's declared IANA timezone, or with an
explicit UTC offset, which wins (``Z``, ``+00:00``, ``-05:00``; the offsets may change along
the file, e.g. across a DST change; a time-zone-aware Parquet column likewise). A file gives
every time an offset or none. Everything leaves this module in UTC epoch seconds;
:func:`time_basis` says which of the two a file used.

Files are read in chunks, so memory does not grow with the file. Each chunk is checked, and
the first bad row stops the load with a :class:`BarFileError` naming the file, the line and
the problem: a missing column, an unparsable time or price, NaN, a non-positive price, a high
below max(open, close) or a low above min(open, close), a local time that a DST change makes
ambiguous or impossible, and times that are duplicated, out of order or closer together than
the timeframe, and times outside the years 1970-2100 (a typo, or a sentinel such as
9999-12-31). Bad files are rejected rather than repaired: a desk should not trade on bars
that were silently re-sorted or de-duplicated; fix the file (the message says where).
Values from the file are echoed quoted and bounded (:func:`deskd.core.text.shown`).
:func:`scan_bars` validates a whole file without keeping it, before a daemon trades on it.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from deskd.core.text import shown

REQUIRED = ("time", "open", "high", "low", "close")
PRICES = ("open", "high", "low", "close")
CHUNK_ROWS = 50_000
#: bar times must fall in [1970-01-01, 2101-01-01): the trading calendar's range, and
#: anything else in an FX file is a typo or a sentinel
YEAR_MIN, YEAR_MAX = 1970, 2100
#: :func:`time_basis` of a CSV file whose times carry their own UTC offsets
OFFSETS_BASIS = "UTC offsets in the file"
#: a time of day followed by a UTC offset (``Z``, ``+00:00``, ``-0500``, ``+03``)
_OFFSET = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")


class BarFileError(ValueError):
    """A bar file that cannot be replayed; the message names file, line and problem."""


@dataclass(frozen=True, slots=True)
class BarChunk:
    """Consecutive bars of one file: ``ts`` int64 UTC epoch seconds (bar open); prices float64."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


def _raw_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        cols = [c for c in pf.schema_arrow.names]
        start = 0
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=cols):
            df = batch.to_pandas()
            df.index = pd.RangeIndex(start, start + len(df))
            start += len(df)
            yield df
        return
    # Prices parse as float64 in C (bit-identical to Python's float()); a column holding a
    # bad value comes back as text and _validate names the row. No NA guessing: an empty or
    # "nan" field is an error, not a missing value.
    reader = pd.read_csv(path, chunksize=chunk_rows, dtype={"time": str}, keep_default_na=False,
                         skipinitialspace=True, compression="infer")
    yield from reader


def _line(df: pd.DataFrame, pos: int, is_csv: bool) -> str:
    row = int(df.index[pos])
    return f"line {row + 2}" if is_csv else f"row {row + 1}"


def check_bar_path(path: str | Path) -> Path:
    """``path`` as a Path when it names a readable regular file. Raises BarFileError saying
    what it is instead: missing, a folder, a symlink loop, unreadable, not a regular file."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BarFileError(f"{path}: no such bar file") from None
    except OSError as e:  # a symlink loop (ELOOP), a path through a file (ENOTDIR), EACCES
        raise BarFileError(f"{path}: cannot open the bar file: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BarFileError(f"{path}: is a folder, not a bar file (name the file in it)")
    if not stat.S_ISREG(st.st_mode):
        raise BarFileError(f"{path}: is not a regular file (a bar file is CSV, .csv.gz or Parquet)")
    return path


def read_bars(path: str | Path, timezone: str, timeframe_s: int,
              chunk_rows: int = CHUNK_ROWS) -> Iterator[BarChunk]:
    """Yield validated chunks of ``path`` in file order.

    Raises BarFileError (file, line, problem) on the first bad row, and when ``path`` is not
    a readable bar file (:func:`check_bar_path`).
    """
    path = check_bar_path(path)
    is_csv = not path.name.lower().endswith((".parquet", ".pq"))
    last_ts: int | None = None
    seen_any = False
    mode: list[bool] = []  # [True] once the file's first time carried a UTC offset, [False] if not
    try:
        for df in _raw_chunks(path, chunk_rows):
            if not seen_any:
                cols = [str(c).strip().lower() for c in df.columns]
                missing = [c for c in REQUIRED if c not in cols]
                if missing:
                    raise BarFileError(
                        f"{path}: missing column(s) {', '.join(missing)}; expected header "
                        f"time,open,high,low,close[,volume], found {shown(','.join(cols))}")
            seen_any = True
            df.columns = [str(c).strip().lower() for c in df.columns]
            if len(df) == 0:
                continue
            chunk = _validate(df, path, timezone, timeframe_s, is_csv, last_ts, mode)
            last_ts = int(chunk.ts[-1])
            yield chunk
    except BarFileError:
        raise
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as e:
        raise BarFileError(f"{path}: cannot read as a bar file: {e}") from None
    if not seen_any or last_ts is None:
        raise BarFileError(f"{path}: holds no bars")


@dataclass(frozen=True, slots=True)
class BarFileSummary:
    """A whole bar file, validated: its number of bars and first and last bar open times
    (UTC epoch seconds)."""

    bars: int
    first_ts: int
    last_ts: int


def scan_bars(path: str | Path, timezone: str, timeframe_s: int,
              chunk_rows: int = CHUNK_ROWS) -> BarFileSummary:
    """Validate every row of ``path`` as :func:`read_bars` does, streaming (memory bounded
    by a chunk), and summarise it: a daemon checks its files whole before trading on them,
    so a bad row deep in a file stops it at start-up, not mid-run. Raises BarFileError."""
    bars, first, last = 0, None, None
    for chunk in read_bars(path, timezone, timeframe_s, chunk_rows):
        bars += len(chunk)
        first = int(chunk.ts[0]) if first is None else first
        last = int(chunk.ts[-1])
    assert first is not None and last is not None  # read_bars raises on a file with no bars
    return BarFileSummary(bars, first, last)


def time_basis(path: str | Path, timezone: str) -> str:
    """What the times of bar file ``path`` were read in: ``timezone`` (the declared zone)
    when they carry no offset, the column's zone for a time-zone-aware Parquet column, or
    OFFSETS_BASIS when a CSV's times carry their own UTC offsets (which win over the
    declared zone). The first row decides: :func:`read_bars` refuses a file that mixes them.
    Raises BarFileError when the file cannot be read."""
    path = check_bar_path(path)
    try:
        first = next(_raw_chunks(path, 1), None)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as e:
        raise BarFileError(f"{path}: cannot read as a bar file: {e}") from None
    if first is None or len(first) == 0:
        return timezone
    first.columns = [str(c).strip().lower() for c in first.columns]
    col = first["time"] if "time" in first.columns else None
    if col is None:
        return timezone
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        zone = getattr(col.dt, "tz", None)
        return timezone if zone is None else str(zone)
    return OFFSETS_BASIS if _OFFSET.search(str(col.iloc[0]).strip()) else timezone


def _validate(df: pd.DataFrame, path: Path, tz: str, timeframe_s: int, is_csv: bool,
              last_ts: int | None, mode: list[bool]) -> BarChunk:
    where = lambda pos: f"{path}: {_line(df, pos, is_csv)}"  # noqa: E731

    prices = {}
    for col in PRICES:
        raw = df[col]
        if raw.dtype == np.float64:
            num = raw.to_numpy()
        else:
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num)
        if bad.any():
            pos = int(np.argmax(bad))
            value = str(raw.iloc[pos])
            what = "is empty" if value.strip() == "" else f"is not a finite number ({shown(value)})"
            raise BarFileError(f"{where(pos)}: {col} {what}")
        nonpos = num <= 0
        if nonpos.any():
            pos = int(np.argmax(nonpos))
            raise BarFileError(f"{where(pos)}: {col} {float(num[pos])!r} is not a positive price")
        prices[col] = num
    o, h, l, c = prices["open"], prices["high"], prices["low"], prices["close"]
    bad = h < np.maximum(o, c)
    if bad.any():
        pos = int(np.argmax(bad))
        raise BarFileError(f"{where(pos)}: high {float(h[pos])!r} is below max(open, close) = "
                           f"{float(max(o[pos], c[pos]))!r}")
    bad = l > np.minimum(o, c)
    if bad.any():
        pos = int(np.argmax(bad))
        raise BarFileError(f"{where(pos)}: low {float(l[pos])!r} is above min(open, close) = "
                           f"{float(min(o[pos], c[pos]))!r}")

    if "volume" in df.columns:
        vol = pd.to_numeric(df["volume"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vol) | (vol < 0)
        if bad.any():
            pos = int(np.argmax(bad))
            raise BarFileError(f"{where(pos)}: volume {shown(df['volume'].iloc[pos])} is not a "
                               f"non-negative number")
    else:
        vol = np.zeros(len(df))

    ts = _parse_times(df["time"], tz, where, mode)

    prev = np.empty(len(ts), dtype=np.int64)
    prev[1:] = ts[:-1]
    prev[0] = ts[0] - timeframe_s if last_ts is None else last_ts
    gap = ts - prev
    bad = gap < timeframe_s
    if bad.any():
        pos = int(np.argmax(bad))
        if gap[pos] == 0:
            why = "duplicates the previous bar's time"
        elif gap[pos] < 0:
            why = "is earlier than the previous bar's (the file must be sorted by time)"
        else:
            why = (f"is only {int(gap[pos])} s after the previous bar, less than the "
                   f"{timeframe_s} s timeframe (wrong timeframe or file?)")
        raise BarFileError(f"{where(pos)}: time {shown(df['time'].iloc[pos])} {why}")
    return BarChunk(ts, o, h, l, c, vol)


def _parse_times(col: pd.Series, tz: str, where, mode: list[bool]) -> np.ndarray:
    """UTC epoch seconds of a chunk's ``time`` column. Naive times are in ``tz``; times with
    an explicit UTC offset (one offset, or several: a DST change) are converted by it. The
    file's first time decides which (``mode``: [] before it, then [has offset]); a time
    that differs is an error, as are times outside YEAR_MIN..YEAR_MAX."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        t = pd.to_datetime(col)
        text = col
    else:
        text = col.astype(str).str.strip()
        try:
            t = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=False)
        except ValueError:  # "Mixed timezones": several offsets (a DST change), or offsets and none
            has = text.str.contains(_OFFSET).to_numpy(dtype=bool)
            if not has.any():
                raise
            expect = mode[0] if mode else bool(has[0])
            if not has.all():
                pos = int(np.argmax(has != expect))
                _mixed(where, pos, text.iloc[pos], expect)
            t = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        if t.isna().any():
            pos = int(np.argmax(t.isna().to_numpy()))
            raise BarFileError(f"{where(pos)}: time {shown(text.iloc[pos])} is not a date-time "
                               f"(expected e.g. 2026-01-15 14:15:00)")
    aware = getattr(t.dt, "tz", None) is not None
    if not mode:
        mode.append(aware)
    elif mode[0] != aware:
        _mixed(where, 0, str(text.iloc[0]), mode[0])
    lo, hi = pd.Timestamp(f"{YEAR_MIN}-01-01"), pd.Timestamp(f"{YEAR_MAX + 1}-01-01")
    if aware:
        lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
    out = ((t < lo) | (t >= hi)).to_numpy(dtype=bool)
    if out.any():
        pos = int(np.argmax(out))
        raise BarFileError(f"{where(pos)}: time {shown(text.iloc[pos])} is outside the years "
                           f"{YEAR_MIN}-{YEAR_MAX}")
    if not aware:
        loc = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        if loc.isna().any():
            pos = int(np.argmax(loc.isna().to_numpy()))
            raise BarFileError(f"{where(pos)}: local time {t.iloc[pos]} is ambiguous or does "
                               f"not exist in {tz} (a daylight-saving change)")
        t = loc
    ns = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    return ns.astype(np.int64)


def _mixed(where, pos: int, value: object, expect_offset: bool) -> NoReturn:
    """Raise the error of a time with a UTC offset in a file whose times have none, or the
    other way round."""
    has = "has no UTC offset" if expect_offset else "carries a UTC offset"
    first = "carry one" if expect_offset else "carry none"
    raise BarFileError(f"{where(pos)}: time {shown(value)} {has} while the file's first times "
                       f"{first}: give every time an offset, or none")
