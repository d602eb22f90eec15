"""Bar files: CSV (plain or .gz) and Parquet with ``time,open,high,low,close[,volume]``.

``time`` is the bar's OPEN time, written in the file's declared IANA timezone (or with an
explicit UTC offset, which wins). Everything leaves this module in UTC epoch seconds.

Files are read in chunks, so memory does not grow with the file. Each chunk is checked, and
the first bad row stops the load with a :class:`BarFileError` naming the file, the line and
the problem: a missing column, an unparsable time or price, NaN, a non-positive price, a high
below max(open, close) or a low above min(open, close), a local time that a DST change makes
ambiguous or impossible, and times that are duplicated, out of order or closer together than
the timeframe. Bad files are rejected rather than repaired: a desk should not trade on bars
that were silently re-sorted or de-duplicated; fix the file (the message says where).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("time", "open", "high", "low", "close")
PRICES = ("open", "high", "low", "close")
CHUNK_ROWS = 50_000


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


def read_bars(path: str | Path, timezone: str, timeframe_s: int,
              chunk_rows: int = CHUNK_ROWS) -> Iterator[BarChunk]:
    """Yield validated chunks of ``path`` in file order.

    Raises BarFileError (file, line, problem) on the first bad row, FileNotFoundError's
    message as a BarFileError when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise BarFileError(f"{path}: no such bar file")
    is_csv = not path.name.lower().endswith((".parquet", ".pq"))
    last_ts: int | None = None
    seen_any = False
    try:
        for df in _raw_chunks(path, chunk_rows):
            if not seen_any:
                cols = [str(c).strip().lower() for c in df.columns]
                missing = [c for c in REQUIRED if c not in cols]
                if missing:
                    raise BarFileError(
                        f"{path}: missing column(s) {', '.join(missing)}; "
                        f"expected header time,open,high,low,close[,volume], found {','.join(cols)}")
            seen_any = True
            df.columns = [str(c).strip().lower() for c in df.columns]
            if len(df) == 0:
                continue
            chunk = _validate(df, path, timezone, timeframe_s, is_csv, last_ts)
            last_ts = int(chunk.ts[-1])
            yield chunk
    except BarFileError:
        raise
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as e:
        raise BarFileError(f"{path}: cannot read as a bar file: {e}") from None
    if not seen_any or last_ts is None:
        raise BarFileError(f"{path}: holds no bars")


def _validate(df: pd.DataFrame, path: Path, tz: str, timeframe_s: int, is_csv: bool,
              last_ts: int | None) -> BarChunk:
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
            shown = str(raw.iloc[pos])
            what = "is empty" if shown.strip() == "" else f"is not a finite number ('{shown}')"
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
            raise BarFileError(f"{where(pos)}: volume '{df['volume'].iloc[pos]}' is not a "
                               f"non-negative number")
    else:
        vol = np.zeros(len(df))

    ts = _parse_times(df["time"], tz, where)

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
        shown = df["time"].iloc[pos]
        raise BarFileError(f"{where(pos)}: time {shown} {why}")
    return BarChunk(ts, o, h, l, c, vol)


def _parse_times(col: pd.Series, tz: str, where) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        t = pd.to_datetime(col)
    else:
        text = col.astype(str).str.strip()
        t = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=False)
        if t.isna().any():
            pos = int(np.argmax(t.isna().to_numpy()))
            raise BarFileError(f"{where(pos)}: time {text.iloc[pos]!r} is not a date-time "
                               f"(expected e.g. 2026-01-15 14:15:00)")
    if getattr(t.dt, "tz", None) is None:
        loc = t.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        if loc.isna().any():
            pos = int(np.argmax(loc.isna().to_numpy()))
            raise BarFileError(f"{where(pos)}: local time {t.iloc[pos]} is ambiguous or does "
                               f"not exist in {tz} (a daylight-saving change)")
        t = loc
    ns = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    return ns.astype(np.int64)
