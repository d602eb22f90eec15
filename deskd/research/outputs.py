"""Trade log, decision journal and equity curve: the rows a desk audits.

trades.csv and equity.csv are CSV; the decision journal is decisions.parquet (the default),
decisions.csv, or not written (:data:`DECISION_FORMATS`): the same columns and values either
way (:data:`DECISION_COLUMNS`, :func:`decision_schema`).

Times are written as ISO 8601 UTC (``2026-01-15T14:30:00Z``; in decisions.parquet
``decision_time`` is a UTC timestamp column holding the same instant); prices to 6
decimals, pips and USD to 2, R to 4. ``signal_time`` / ``decision_time`` are the CLOSE of the
decision bar; ``fill_time`` / ``exit_time`` the moment of the fill (the bar's open time for
market orders and for stops/targets filled inside that bar; the last close for EOD).
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from deskd.core.events import SIDE_NAME, Decision, Trade
from deskd.core.time import iso, iso_many

if TYPE_CHECKING:
    import pyarrow as pa


#: the Decision fields before its context (decision_price, atr_pips, score_name, score)
_N_DECISION_CORE = Decision._fields.index("decision_price")


def _opt(x: float | None, nd: int) -> str:
    return "" if x is None else repr(round(x, nd))


def _price(x: float) -> float:
    return round(x, 6)


def _pips(x: float) -> float:  # pips and USD: 2 decimals
    return round(x, 2)


#: trades.csv, one entry per column: (column, Trade field, format). The column list and the row
#: are both read from it, and every Trade field is either here or in TRADE_FIELDS_NOT_WRITTEN
#: (checked at import), so the record and its CSV cannot drift apart unnoticed.
TRADE_CSV: list[tuple[str, str, Callable]] = [
    ("trade_id", "trade_id", int), ("scenario", "", str), ("symbol", "symbol", str),
    ("strategy_id", "strategy_id", str), ("side", "side", SIDE_NAME.__getitem__),
    ("units", "units", int), ("signal_time", "signal_ts", iso), ("fill_time", "fill_ts", iso),
    ("entry_price", "entry_price", _price), ("exit_time", "exit_ts", iso),
    ("exit_price", "exit_price", _price), ("exit_reason", "exit_reason", str),
    ("sl_price", "sl_price", _price), ("tp_price", "tp_price", lambda x: _opt(x, 6)),
    ("gross_pips", "gross_pips", _pips), ("cost_pips", "cost_pips", _pips), ("pnl_pips", "pnl_pips", _pips),
    ("pnl_usd", "pnl_usd", _pips), ("risk_usd", "risk_usd", _pips),
    ("r_multiple", "r_multiple", lambda x: round(x, 4)), ("mae_pips", "mae_pips", _pips),
    ("mfe_pips", "mfe_pips", _pips), ("hold_bars", "hold_bars", int), ("regime", "regime", str),
    ("reason_codes", "why", str), ("client_order_id", "client_order_id", str),
    ("entry_spread_pips", "entry_spread_pips", lambda x: _opt(x, 4)),
    ("entry_slippage_pips", "entry_slippage_pips", lambda x: _opt(x, 4)),
    ("exit_spread_pips", "exit_spread_pips", lambda x: _opt(x, 4)),
    ("exit_slippage_pips", "exit_slippage_pips", lambda x: _opt(x, 4)),
    ("entry_spike", "entry_spike", lambda x: "" if x is None else str(bool(x)).lower()),
    ("exit_spike", "exit_spike", lambda x: "" if x is None else str(bool(x)).lower()),
]
#: Trade fields trades.csv leaves out: the reference prices and the per-leg costs (their sum is
#: cost_pips); the store keeps them.
TRADE_FIELDS_NOT_WRITTEN = ("entry_ref_price", "entry_cost_pips", "exit_ref_price", "exit_cost_pips")
TRADE_COLUMNS = [c for c, _, _ in TRADE_CSV]

#: decisions.csv: the scenario, the Decision fields in order (bar_ts written as decision_time,
#: the bar's close), then the decision's context: ``decision_price`` (the decision bar's close,
#: as the bar file has it), ``atr_pips`` (the ATR the strategy sized with, 2 decimals) and
#: ``reason_codes`` (the strategy's score, as trades.csv writes it: ``adx=31.42``); empty
#: (null in Parquet) where a Decision does not carry them. :meth:`DecisionWriter.write`
#: formats the lines.
DECISION_CONTEXT_COLUMNS = ["decision_price", "atr_pips", "reason_codes"]
DECISION_COLUMNS = ["scenario", "decision_time",
                    *[f for f in Decision._fields[:_N_DECISION_CORE] if f != "bar_ts"],
                    *DECISION_CONTEXT_COLUMNS]
EQUITY_COLUMNS = ["scenario", "time", "kind", "equity_usd", "balance_usd", "open_positions"]

#: what ``deskd backtest --decisions`` accepts, the default first: Parquet, CSV, or no file
#: (the report still counts decisions by reason)
DECISION_FORMATS = ("parquet", "csv", "none")
#: the decision journal's file name per format
DECISION_FILES = {"parquet": "decisions.parquet", "csv": "decisions.csv"}
#: decisions.csv's rows per write; a decisions.parquet row group is at most this many rows
CSV_DECISION_ROWS = 20_000
PARQUET_DECISION_ROWS = 100_000
#: Parquet compression of decisions.parquet (the column chunks are dictionary-encoded first)
PARQUET_COMPRESSION = "zstd"


def decision_schema() -> pa.Schema:
    """decisions.parquet's columns: DECISION_COLUMNS, in order, holding decisions.csv's values.
    ``decision_time`` is timestamp[ms, tz=UTC] (the close of the decision bar, whole seconds;
    milliseconds because Parquet has no seconds unit: a seconds column reads back as
    milliseconds anyway); ``sl_pips`` and ``tp_pips`` float64 rounded to 2 decimals, ``tp_pips``
    null when the signal has no target (empty in the CSV); ``client_order_id`` "" when the
    signal did not trade (as in the CSV); ``decision_price`` float64 as the bar file has it,
    ``atr_pips`` float64 rounded to 2 decimals, both null when not known; the others strings
    (``side`` LONG or SHORT; ``reason_codes`` "" without a score)."""
    import pyarrow as pa

    types = {"decision_time": pa.timestamp("ms", tz="UTC"), "sl_pips": pa.float64(), "tp_pips": pa.float64(),
             "decision_price": pa.float64(), "atr_pips": pa.float64()}
    nullable = ("tp_pips", "decision_price", "atr_pips")
    return pa.schema([pa.field(c, types.get(c, pa.string()), nullable=c in nullable) for c in DECISION_COLUMNS])


def check_trade_csv(spec: list[tuple[str, str, Callable]], left_out: tuple[str, ...]) -> None:
    """Raises RuntimeError (at import, for TRADE_CSV) when a Trade field is neither written by
    ``spec`` nor in ``left_out``, or ``spec`` names a field Trade does not have."""
    written = {f for _, f, _ in spec if f}
    missing = [f.name for f in fields(Trade) if f.name not in written and f.name not in left_out]
    unknown = written - {f.name for f in fields(Trade)}
    if missing or unknown:
        raise RuntimeError(f"trades.csv: fields not placed {missing}, not Trade fields {sorted(unknown)}")


check_trade_csv(TRADE_CSV, TRADE_FIELDS_NOT_WRITTEN)


def trade_row(t: Trade, scenario: str) -> list:
    """One trades.csv row of ``t`` (columns TRADE_COLUMNS)."""
    return [fmt(getattr(t, f)) if f else scenario for _, f, fmt in TRADE_CSV]


def trade_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored trade (a row of the store's trades table, keyed by Trade field) as trades.csv
    writes it, for JSON: the same column names, ISO times, side names and rounding; a missing
    take-profit is null. The control API's GET /trades answers these."""
    out: dict[str, Any] = {}
    for col, f, fmt in TRADE_CSV:
        if f:
            v = row[f]
            if v is None:
                out[col] = None
            elif f == "tp_price":
                out[col] = round(v, 6)
            elif f in COST_SPLIT_FIELDS:
                out[col] = bool(v) if f.endswith("spike") else round(v, 4)
            else:
                out[col] = fmt(v)
    return out


#: the per-side cost split of a trade (pips, and whether the spike multiplier applied); empty
#: in trades.csv and null in JSON where the broker did not report it
COST_SPLIT_FIELDS = ("entry_spread_pips", "entry_slippage_pips", "exit_spread_pips", "exit_slippage_pips",
                     "entry_spike", "exit_spike")


def decision_record(row: Mapping[str, Any], timeframe_s: int) -> dict[str, Any]:
    """A stored decision (a row of the store's decisions table, keyed by Decision field) as
    decisions.csv writes it, for JSON: ``decision_time`` is the close of the decision bar
    (bar_ts + ``timeframe_s``), side a name, pips to 2 decimals, no take-profit null; the
    context (DECISION_CONTEXT_COLUMNS) null where not known (rows stored before it was)."""
    tp = row["tp_pips"]
    price, atr = _known(row.get("decision_price")), _known(row.get("atr_pips"))
    name, score = row.get("score_name") or "", row.get("score")
    return {"decision_time": iso(row["bar_ts"] + timeframe_s), "symbol": row["symbol"],
            "strategy_id": row["strategy_id"], "side": SIDE_NAME[row["side"]], "action": row["action"],
            "reason": row["reason"], "sl_pips": round(row["sl_pips"], 2),
            "tp_pips": None if tp is None else round(tp, 2), "regime": row["regime"],
            "client_order_id": row["client_order_id"] or "",
            "decision_price": price, "atr_pips": None if atr is None else round(atr, 2),
            "reason_codes": f"{name}={score:.2f}" if name and score is not None else ""}


def _known(x: float | None) -> float | None:
    """``x``, or None when it is None or NaN (a context value not known)."""
    return None if x is None or x != x else x


class CsvJournal:
    """Appends rows to an open CSV file, header first; buffered, so the per-row cost is a list
    append. Call :meth:`flush` before closing the file."""

    def __init__(self, fh: IO[str], columns: list[str], buffer_rows: int = 10_000):
        self._w = csv.writer(fh, lineterminator="\n")
        self._w.writerow(columns)
        self._buf: list[list] = []
        self._n = buffer_rows

    def write(self, row: list) -> None:
        self._buf.append(row)
        if len(self._buf) >= self._n:
            self.flush()

    def flush(self) -> None:
        self._w.writerows(self._buf)
        self._buf.clear()


class DecisionCounter:
    """Bus handler for the Decision events of one scenario: keeps them (a list append per
    decision) and, a buffer of ``buffer_rows`` at a time, counts them by reason (``counts``)
    and hands them to :meth:`write`, which here writes nothing (``--decisions none``).
    Call :meth:`flush` when the scenario ends."""

    def __init__(self, scenario: str, timeframe_s: int, buffer_rows: int = CSV_DECISION_ROWS):
        self.scenario = scenario
        self.tf_s = timeframe_s
        self.counts: Counter[str] = Counter()
        self._buf: list[Decision] = []
        self._n = buffer_rows

    def __call__(self, d: Decision) -> None:
        buf = self._buf
        buf.append(d)
        if len(buf) >= self._n:
            self.flush()

    def flush(self) -> None:
        buf = self._buf
        if not buf:
            return
        self.counts.update(d.reason for d in buf)
        self.write(buf)
        buf.clear()

    def write(self, buf: list[Decision]) -> None:
        """Write ``buf`` (the decisions since the last flush, in order) somewhere; nothing here."""


class DecisionWriter(DecisionCounter):
    """:class:`DecisionCounter` writing decisions.csv rows (no header: see
    :func:`write_decision_header`) to the open text file ``fh``. Lines are formatted directly,
    not through the csv module: every field is a number or a code that cannot hold a comma or
    quote (the config restricts desk and scenario names)."""

    def __init__(self, fh: IO[str], scenario: str, timeframe_s: int, buffer_rows: int = CSV_DECISION_ROWS):
        super().__init__(scenario, timeframe_s, buffer_rows)
        self.fh = fh

    def write(self, buf: list[Decision]) -> None:
        times = iso_many([d.bar_ts + self.tf_s for d in buf])
        scn = self.scenario
        side = SIDE_NAME
        self.fh.write("".join([
            f"{scn},{t},{sym},{sid},{side[sd]},{act},{why},{sl:.2f},"
            f"{'' if tp is None else format(tp, '.2f')},{regime},{oid or ''},"
            f"{'' if px != px else repr(px)},{'' if atr != atr else format(atr, '.2f')},"
            f"{f'{sn}={sc:.2f}' if sn else ''}\n"
            for t, (_, sym, sid, sd, act, why, sl, tp, regime, oid, px, atr, sn, sc) in zip(times, buf)]))


class BatchSink(Protocol):
    """Where :class:`ArrowDecisionWriter` puts its record batches: a
    ``pyarrow.parquet.ParquetWriter`` (one row group per batch) or an Arrow IPC writer."""

    def write_batch(self, batch: pa.RecordBatch) -> None: ...


def round2(values: list[float]) -> np.ndarray:
    """``[round(x, 2) for x in values]`` (Python's correctly rounded ``round``, which agrees
    with the ``.2f`` decisions.csv writes) as a float64 array, vectorised: x * 100 rounded to
    the nearest integer, over 100, is that same value except where the product lies within
    1e-6 of a half (the float product may sit on the other side of it than the exact one),
    or is not finite or too large to hold every integer; those few are rounded one by one."""
    a = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # the non-finite ones are done one by one
        scaled = a * 100.0
        out = np.rint(scaled) / 100.0
        odd = ~(np.abs(scaled) < 2.0**52) | (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) < 1e-6)
    for i in np.flatnonzero(odd).tolist():
        out[i] = round(float(a[i]), 2)
    return out


def decision_batch(buf: list[Decision], scenario: str, timeframe_s: int) -> pa.RecordBatch:
    """``buf`` as one record batch of :func:`decision_schema`, holding the values
    decisions.csv writes: the times as instants, pips rounded to 2 decimals (:func:`round2`),
    no target as null, no client order id as "", the context as :func:`decision_schema` says."""
    import pyarrow as pa

    col: list[list[Any]] = [[d[i] for d in buf] for i in range(len(Decision._fields))]
    _, sym, sid, sd, act, why, sl, tp, regime, oid, px, atr, sn, sc = col
    side = SIDE_NAME
    ts_ms = (np.asarray(col[0], dtype=np.int64) + timeframe_s) * 1000
    tp_missing = np.fromiter((x is None for x in tp), dtype=bool, count=len(tp))
    tp_pips = round2([0.0 if x is None else x for x in tp])
    arrays = [pa.array([scenario] * len(buf), pa.string()),
              pa.array(ts_ms, pa.timestamp("ms", tz="UTC")),
              pa.array(sym, pa.string()), pa.array(sid, pa.string()),
              pa.array([side[s] for s in sd], pa.string()), pa.array(act, pa.string()),
              pa.array(why, pa.string()), pa.array(round2(sl), pa.float64()),
              pa.array(tp_pips, pa.float64(), mask=tp_missing if tp_missing.any() else None),
              pa.array(regime, pa.string()), pa.array([o or "" for o in oid], pa.string()),
              _float_or_null(np.asarray(px, dtype=np.float64)), _float_or_null(round2(atr)),
              pa.array([f"{n}={v:.2f}" if n else "" for n, v in zip(sn, sc)], pa.string())]
    return pa.RecordBatch.from_arrays(arrays, schema=decision_schema())


def _float_or_null(a: np.ndarray) -> pa.Array:
    """A float64 Arrow array of ``a``, its NaNs null."""
    import pyarrow as pa

    missing = np.isnan(a)
    return pa.array(a, pa.float64(), mask=missing if missing.any() else None)


class ArrowDecisionWriter(DecisionCounter):
    """:class:`DecisionCounter` writing each buffer as one record batch
    (:func:`decision_batch`) to ``sink``: a decisions.parquet row group of at most
    ``buffer_rows`` rows, or a batch of a worker's part file."""

    def __init__(self, sink: BatchSink, scenario: str, timeframe_s: int,
                 buffer_rows: int = PARQUET_DECISION_ROWS):
        super().__init__(scenario, timeframe_s, buffer_rows)
        self.sink = sink

    def write(self, buf: list[Decision]) -> None:
        self.sink.write_batch(decision_batch(buf, self.scenario, self.tf_s))


class DecisionJournal:
    """The run's decision file in ``folder``, in format ``fmt`` (DECISION_FORMATS): opened
    at once (decisions.csv with its header, decisions.parquet with its schema; ``none``
    opens nothing), then fed scenario after scenario, each either by :meth:`writer` in this
    process or by :meth:`append_part`, the part file :meth:`part_writer` wrote in another.
    Both give the same bytes: a part holds the record batches (Arrow IPC) or the lines
    (CSV) the writer would have written here, and a batch becomes one row group either way.
    :meth:`close` finishes the file (Parquet writes its footer then). Raises OSError."""

    def __init__(self, folder: Path, fmt: str):
        if fmt not in DECISION_FORMATS:
            raise ValueError(f"decisions format {fmt!r}: expected one of {', '.join(DECISION_FORMATS)}")
        self.fmt = fmt
        self.path = folder / DECISION_FILES[fmt] if fmt in DECISION_FILES else None
        self._csv: io.TextIOWrapper | None = None
        self._parquet: Any = None
        if fmt == "csv":
            self._csv = open(folder / DECISION_FILES[fmt], "w", newline="")
            write_decision_header(self._csv)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(str(folder / DECISION_FILES[fmt]), decision_schema(),
                                             compression=PARQUET_COMPRESSION)

    def writer(self, scenario: str, timeframe_s: int) -> DecisionCounter:
        """The bus handler writing ``scenario``'s decisions into this file (call its flush)."""
        if self._csv is not None:
            return DecisionWriter(self._csv, scenario, timeframe_s)
        if self._parquet is not None:
            return ArrowDecisionWriter(self._parquet, scenario, timeframe_s)
        return DecisionCounter(scenario, timeframe_s)

    @staticmethod
    @contextlib.contextmanager
    def part_writer(part: Path, fmt: str, scenario: str, timeframe_s: int) -> Iterator[DecisionCounter]:
        """A bus handler writing ``scenario``'s decisions to the part file ``part`` (for
        :meth:`append_part`), closed on leaving the block; ``none`` writes no file."""
        if fmt == "csv":
            with open(part, "w", newline="") as fh:
                yield DecisionWriter(fh, scenario, timeframe_s)
        elif fmt == "parquet":
            import pyarrow.ipc as ipc

            with ipc.new_file(str(part), decision_schema()) as sink:
                yield ArrowDecisionWriter(sink, scenario, timeframe_s)
        else:
            yield DecisionCounter(scenario, timeframe_s)

    def append_part(self, part: Path) -> None:
        """Append a part file written by :meth:`part_writer` (this journal's format), then
        delete it."""
        if self._csv is not None:
            self._csv.flush()
            with open(part, "rb") as src:
                shutil.copyfileobj(src, self._csv.buffer, 1 << 20)
        elif self._parquet is not None:
            append_ipc_part(self._parquet, part)
        part.unlink(missing_ok=True)

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._parquet is not None:
            self._parquet.close()
        self._csv = self._parquet = None


def append_ipc_part(writer: Any, part: Path) -> None:
    """Write every record batch of the Arrow IPC file ``part`` (a worker's part of a journal)
    to the Parquet ``writer``, in order, without reading the file into memory at once."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.memory_map(str(part)) as src:
        reader = ipc.open_file(src)
        for i in range(reader.num_record_batches):
            writer.write_batch(reader.get_batch(i))


def decision_csv_rows(table: pa.Table) -> list[list[str]]:
    """decisions.parquet's rows (a table of :func:`decision_schema`) as the fields decisions.csv
    writes for them, in DECISION_COLUMNS order: for comparing the two files, and for readers
    that want text."""
    import pyarrow as pa

    cols: dict[str, list] = {}
    for c in DECISION_COLUMNS:
        col = table.column(c)
        if c == "decision_time":
            cols[c] = iso_many(col.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_pylist())
        elif c in ("sl_pips", "tp_pips", "atr_pips"):
            cols[c] = ["" if v is None else f"{v:.2f}" for v in col.to_pylist()]
        elif c == "decision_price":
            cols[c] = ["" if v is None else repr(v) for v in col.to_pylist()]
        else:
            cols[c] = col.to_pylist()
    return [list(r) for r in zip(*cols.values())]


def write_decision_header(fh: IO[str]) -> None:
    """The header line of decisions.csv."""
    fh.write(",".join(DECISION_COLUMNS) + "\n")


def check_result_folder(out: Path, marker: str, what: str) -> None:
    """Refuse, before any work, an ``out`` that is a file or a non-empty folder without
    ``marker`` (the file an earlier result of the same command holds; such a folder is
    replaced whole). Raises FileExistsError naming ``what`` made the folders it accepts."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).exists())):
        raise FileExistsError(f"--out {out}: exists and is not an earlier {what} folder (no {marker}); "
                              f"give another folder")


def write_folder(out: Path, files: Mapping[str, Callable[[Path], object]], marker: str) -> Path:
    """Write a result folder whole or not at all: each ``files[name](path)`` writes one file
    into a hidden sibling folder, in order, then manifest.json lists them with their SHA-256
    (:func:`deskd.research.export.write_manifest`, its kind the marker's stem: montecarlo ...;
    ``deskd verify`` checks it), and the folder is renamed to ``out``. An ``out`` holding
    ``marker`` (an earlier result of the same command) is replaced; any other non-empty
    ``out``, or a file there, raises FileExistsError before anything is written. On any error
    the partial folder is removed and ``out`` is as it was."""
    import os
    import tempfile

    out = Path(out)
    check_result_folder(out, marker, "result")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, write in files.items():
            write(tmp / name)
        from deskd.research.export import write_manifest

        write_manifest(tmp, kind=marker.split(".")[0])
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "x")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
