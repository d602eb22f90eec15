"""Trade log, decision journal and equity curve as CSV: the rows a desk audits.

Times are written as ISO 8601 UTC (``2026-01-15T14:30:00Z``); prices to 6 decimals, pips and
USD to 2, R to 4. ``signal_time`` / ``decision_time`` are the CLOSE of the decision bar;
``fill_time`` / ``exit_time`` the moment of the fill (the bar's open time for market orders
and for stops/targets filled inside that bar; the last close for EOD).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import IO, Any

from deskd.core.events import SIDE_NAME, Decision, Trade
from deskd.core.time import iso, iso_many


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
]
#: Trade fields trades.csv leaves out: the reference prices and the per-leg costs (their sum is
#: cost_pips); the store keeps them.
TRADE_FIELDS_NOT_WRITTEN = ("entry_ref_price", "entry_cost_pips", "exit_ref_price", "exit_cost_pips")
TRADE_COLUMNS = [c for c, _, _ in TRADE_CSV]

#: decisions.csv: the Decision fields in order (bar_ts written as decision_time, the bar's
#: close), with the scenario first; :meth:`DecisionWriter.flush` formats the lines.
DECISION_COLUMNS = ["scenario", "decision_time",
                    *[f for f in Decision._fields if f != "bar_ts"]]
EQUITY_COLUMNS = ["scenario", "time", "kind", "equity_usd", "balance_usd", "open_positions"]


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
    out = {}
    for col, f, fmt in TRADE_CSV:
        if f:
            v = row[f]
            out[col] = None if v is None else fmt(v) if f != "tp_price" else round(v, 6)
    return out


def decision_record(row: Mapping[str, Any], timeframe_s: int) -> dict[str, Any]:
    """A stored decision (a row of the store's decisions table, keyed by Decision field) as
    decisions.csv writes it, for JSON: ``decision_time`` is the close of the decision bar
    (bar_ts + ``timeframe_s``), side a name, pips to 2 decimals, no take-profit null."""
    tp = row["tp_pips"]
    return {"decision_time": iso(row["bar_ts"] + timeframe_s), "symbol": row["symbol"],
            "strategy_id": row["strategy_id"], "side": SIDE_NAME[row["side"]], "action": row["action"],
            "reason": row["reason"], "sl_pips": round(row["sl_pips"], 2),
            "tp_pips": None if tp is None else round(tp, 2), "regime": row["regime"],
            "client_order_id": row["client_order_id"] or ""}


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


class DecisionWriter:
    """Bus handler for the Decision events of one scenario: keeps them (a list append per
    decision) and writes them to decisions.csv a buffer at a time, counting reasons. Lines are
    formatted directly, not through the csv module: every field is a number or a code that
    cannot hold a comma or quote (the config restricts desk and scenario names).
    Call :meth:`flush` when the scenario ends."""

    def __init__(self, fh: IO[str], scenario: str, timeframe_s: int, buffer_rows: int = 20_000):
        self.fh = fh
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
        times = iso_many([d.bar_ts + self.tf_s for d in buf])
        scn = self.scenario
        side = SIDE_NAME
        self.fh.write("".join([
            f"{scn},{t},{sym},{sid},{side[sd]},{act},{why},{sl:.2f},"
            f"{'' if tp is None else format(tp, '.2f')},{regime},{oid or ''}\n"
            for t, (_, sym, sid, sd, act, why, sl, tp, regime, oid) in zip(times, buf)]))
        buf.clear()


def write_decision_header(fh: IO[str]) -> None:
    """The header line of decisions.csv."""
    fh.write(",".join(DECISION_COLUMNS) + "\n")
