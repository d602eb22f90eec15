"""Trade log, decision journal and equity curve as CSV: the rows a desk audits.

Times are written as ISO 8601 UTC (``2026-01-15T14:30:00Z``); prices to 6 decimals, pips and
USD to 2, R to 4. ``signal_time`` / ``decision_time`` are the CLOSE of the decision bar;
``fill_time`` / ``exit_time`` the moment of the fill (the bar's open time for market orders
and for stops/targets filled inside that bar; the last close for EOD).
"""

from __future__ import annotations

import csv
from collections import Counter
from typing import IO

from deskd.core.events import SIDE_NAME, Decision, Trade
from deskd.core.time import iso, iso_many

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
