"""Trade log, decision journal and equity curve as CSV: the rows a desk audits.

Times are written as ISO 8601 UTC (``2026-01-15T14:30:00Z``); prices to 6 decimals, pips and
USD to 2, R to 4. ``signal_time`` / ``decision_time`` are the CLOSE of the decision bar;
``fill_time`` / ``exit_time`` the moment of the fill (the bar's open time for market orders
and for stops/targets filled inside that bar; the last close for EOD).
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from typing import IO

import numpy as np

from deskd.daemon.events import SIDE_NAME, Decision, Trade

TRADE_COLUMNS = [
    "trade_id", "scenario", "symbol", "strategy_id", "side", "units", "signal_time", "fill_time",
    "entry_price", "exit_time", "exit_price", "exit_reason", "sl_price", "tp_price",
    "gross_pips", "cost_pips", "pnl_pips", "pnl_usd", "risk_usd", "r_multiple", "mae_pips",
    "mfe_pips", "hold_bars", "regime", "reason_codes", "client_order_id",
]
DECISION_COLUMNS = [
    "scenario", "decision_time", "symbol", "strategy_id", "side", "action", "reason",
    "sl_pips", "tp_pips", "regime", "client_order_id",
]
EQUITY_COLUMNS = ["scenario", "time", "kind", "equity_usd", "balance_usd", "open_positions"]


def iso(ts: int) -> str:
    """UTC epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _opt(x: float | None, nd: int) -> str:
    return "" if x is None else repr(round(x, nd))


def trade_row(t: Trade, scenario: str) -> list:
    return [t.trade_id, scenario, t.symbol, t.strategy_id, SIDE_NAME[t.side], int(t.units),
            iso(t.signal_ts), iso(t.fill_ts), round(t.entry_price, 6), iso(t.exit_ts),
            round(t.exit_price, 6), t.exit_reason, round(t.sl_price, 6), _opt(t.tp_price, 6),
            round(t.gross_pips, 2), round(t.cost_pips, 2), round(t.pnl_pips, 2),
            round(t.pnl_usd, 2), round(t.risk_usd, 2), round(t.r_multiple, 4),
            round(t.mae_pips, 2), round(t.mfe_pips, 2), t.hold_bars, t.regime, t.why,
            t.client_order_id]


def iso_many(ts: list[int]) -> list[str]:
    """:func:`iso` for many times at once (vectorised; the journal's hot path)."""
    return [f"{t}Z" for t in np.array(ts, dtype="datetime64[s]").astype(str).tolist()]


class CsvJournal:
    """Appends rows to an open CSV file, header first; buffered, so the per-row cost is a list
    append. Columns named in ``time_columns`` are given as UTC epoch seconds and written as
    ISO 8601, converted a buffer at a time. Call :meth:`flush` before closing the file."""

    def __init__(self, fh: IO[str], columns: list[str], buffer_rows: int = 10_000,
                 time_columns: tuple[str, ...] = ()):
        self._w = csv.writer(fh, lineterminator="\n")
        self._w.writerow(columns)
        self._buf: list[list] = []
        self._n = buffer_rows
        self._time_idx = [columns.index(c) for c in time_columns]

    def write(self, row: list) -> None:
        self._buf.append(row)
        if len(self._buf) >= self._n:
            self.flush()

    def flush(self) -> None:
        buf = self._buf
        for i in self._time_idx:
            for row, text in zip(buf, iso_many([row[i] for row in buf])):
                row[i] = text
        self._w.writerows(buf)
        buf.clear()


class DecisionWriter:
    """Bus handler for Decision events of one scenario, written through a CsvJournal whose
    ``decision_time`` column is a time column (see :func:`decision_journal`)."""

    def __init__(self, journal: CsvJournal, scenario: str, timeframe_s: int):
        self.journal = journal
        self.scenario = scenario
        self.tf_s = timeframe_s
        self.counts: dict[str, int] = {}

    def __call__(self, d: Decision) -> None:
        counts = self.counts
        key = d.reason
        counts[key] = counts.get(key, 0) + 1
        tp = d.tp_pips
        self.journal.write([self.scenario, d.bar_ts + self.tf_s, d.symbol, d.strategy_id,
                            SIDE_NAME[d.side], d.action, key, round(d.sl_pips, 2),
                            "" if tp is None else round(tp, 2), d.regime, d.client_order_id or ""])


def decision_journal(fh: IO[str]) -> CsvJournal:
    """The decisions.csv journal."""
    return CsvJournal(fh, DECISION_COLUMNS, time_columns=("decision_time",))
