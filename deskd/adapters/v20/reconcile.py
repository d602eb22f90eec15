"""Reconciliation: the desk's expected positions (the store) against the broker's report.

Per symbol: side, units, average price, and the stop-loss and take-profit attached. The
broker's explicit report is authoritative; a report that could not be fetched is "unknown"
(the caller gets an exception, never an empty "flat"). Trades the desk did not open (no
client order id of this desk) are reported, never adopted silently. Any difference is a
:class:`ReconcileDiff`; the daemon answers a non-empty list with SAFE_MODE.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import asdict, dataclass

from deskd.adapters.v20.naming import to_symbol
from deskd.core.money import Instrument


@dataclass(frozen=True)
class Holding:
    """One net position: side (+1/-1), units (positive), average entry price, bracket levels."""

    symbol: str
    side: int
    units: float
    avg_price: float
    sl_price: float | None
    tp_price: float | None


@dataclass(frozen=True)
class ReconcileDiff:
    symbol: str
    field: str
    expected: str
    broker: str
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


FOREIGN_ID = "broker-trade-"  # the client order id the desk gives a broker trade that had none


def client_id(trade: dict) -> str:
    """A v20 trade's client id, or ``broker-trade-<id>`` when it has none."""
    return (trade.get("clientExtensions") or {}).get("id") or f"{FOREIGN_ID}{trade['id']}"


def broker_holdings(trades: list[dict], desk_prefix: str,
                    known_ids: Set[str] = frozenset()) -> tuple[dict[str, Holding], list[dict]]:
    """Net the broker's open trades (v20 JSON) per symbol; returns (holdings of this desk,
    trades not opened by it). The desk's are those whose client id starts with
    ``desk_prefix`` or is one of ``known_ids`` (trades it adopted)."""
    mine: dict[str, list[dict]] = {}
    foreign = []
    for t in trades:
        cid = client_id(t)
        if cid.startswith(desk_prefix) or cid in known_ids:
            mine.setdefault(to_symbol(t["instrument"]), []).append(t)
        else:
            foreign.append(t)
    out = {}
    for sym, ts in mine.items():
        units = sum(float(t["currentUnits"]) for t in ts)
        if units == 0:
            continue
        avg = sum(float(t["price"]) * float(t["currentUnits"]) for t in ts) / units
        sl = {float(t["stopLossOrder"]["price"]) for t in ts if t.get("stopLossOrder")}
        tp = {float(t["takeProfitOrder"]["price"]) for t in ts if t.get("takeProfitOrder")}
        out[sym] = Holding(sym, 1 if units > 0 else -1, abs(units), avg,
                           sl.pop() if len(sl) == 1 else None, tp.pop() if len(tp) == 1 else None)
    return out, foreign


def _price_differs(a: float | None, b: float | None, symbol: str) -> bool:
    """Prices differ by more than a tenth of a pip (v20 quotes to a tenth of a pip)."""
    if a is None or b is None:
        return a is not b
    return abs(a - b) > Instrument.parse(symbol).pip_size / 10 + 1e-12


def reconcile(expected: dict[str, Holding], broker: dict[str, Holding],
              foreign_trades: list[dict]) -> list[ReconcileDiff]:
    """All differences, symbol by symbol (sorted), then trades the desk did not open."""
    diffs = []
    fmt = lambda x: "-" if x is None else f"{x:g}"  # noqa: E731
    for sym in sorted(set(expected) | set(broker)):
        e, b = expected.get(sym), broker.get(sym)
        if e is None:
            assert b is not None
            diffs.append(ReconcileDiff(sym, "position", "flat", f"{'LONG' if b.side > 0 else 'SHORT'} {b.units:g}",
                                       "the broker holds a position the store does not know"))
            continue
        if b is None:
            diffs.append(ReconcileDiff(sym, "position", f"{'LONG' if e.side > 0 else 'SHORT'} {e.units:g}", "flat",
                                       "closed at the broker (by hand, stop-out or margin closeout?)"))
            continue
        if e.side != b.side:
            diffs.append(ReconcileDiff(sym, "side", fmt(e.side), fmt(b.side)))
        if abs(e.units - b.units) > 1e-9:
            diffs.append(ReconcileDiff(sym, "units", fmt(e.units), fmt(b.units)))
        if _price_differs(e.avg_price, b.avg_price, sym):
            diffs.append(ReconcileDiff(sym, "avg_price", fmt(e.avg_price), fmt(b.avg_price)))
        if _price_differs(e.sl_price, b.sl_price, sym):
            diffs.append(ReconcileDiff(sym, "sl_price", fmt(e.sl_price), fmt(b.sl_price)))
        if _price_differs(e.tp_price, b.tp_price, sym):
            diffs.append(ReconcileDiff(sym, "tp_price", fmt(e.tp_price), fmt(b.tp_price)))
    for t in foreign_trades:
        cid = (t.get("clientExtensions") or {}).get("id", "none")
        diffs.append(ReconcileDiff(to_symbol(t["instrument"]), "foreign_trade", "none",
                                   f"trade {t['id']} {t['currentUnits']} (client id {cid})",
                                   "not opened by this desk; not adopted"))
    return diffs
