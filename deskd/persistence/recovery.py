"""Start-up and crash recovery, one code path.

1. Load the store's snapshot of (desk, scenario): desk state and balances, drawdown guard,
   open positions, unfilled orders, and the last bar processed per symbol.
2. Replay the feed's bars up to each symbol's cursor through :meth:`Desk.warm_up`
   (indicators and strategies only), which rebuilds their state bar for bar.
3. :func:`restore` hands the snapshot to :meth:`Desk.restore`: ledger, guard, state machine
   and order book each restore their own part; open positions and orders go back to the
   broker. Bars after the cursor then go through the normal pipeline.
4. Decisions the store holds without their counterfactual
   (:func:`decisions_without_counterfactual`) are followed again by the daemon's observer,
   over the warm-up bars from each one's own bar on (:meth:`deskd.daemon.runner.DeskRunner.feed`).

Every bar commits whole (see :mod:`deskd.persistence.store`), so the snapshot is always the state
at the end of some bar: nothing of a half-processed bar can survive a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, and_, or_, select

from deskd.core.events import Decision, DecisionAction, ExitReason, Intent, OrderIntent, Trade
from deskd.desk.desk import Desk, DeskSnapshot
from deskd.desk.ledger import LedgerSnapshot
from deskd.desk.orders import OrderStatus
from deskd.desk.state import DeskState, MachineSnapshot, Trigger
from deskd.persistence.store import (
    DECISION_FIELDS,
    LEDGER_FIELDS,
    ORDER_FIELDS,
    POSITION_FIELDS,
    bar_cursor,
    dd_guard,
    decisions,
    desk_state,
    fields_of,
    lacks_counterfactual,
    orders,
    positions,
)
from deskd.risk.guard import GuardSnapshot

_NAN = float("nan")

@dataclass
class Snapshot:
    """What the store holds of one (desk, scenario): the desk's snapshot and the last bar
    processed per symbol (UTC epoch seconds of its open)."""

    desk: DeskSnapshot
    cursor: dict[str, int] = field(default_factory=dict)


def load_snapshot(conn: Connection, desk_name: str, scenario: str) -> Snapshot | None:
    """The latest committed snapshot, or None for a desk the store has never seen."""
    key = {"desk": desk_name, "scenario": scenario}
    st = conn.execute(select(desk_state).filter_by(**key)).mappings().first()
    if st is None:
        return None
    g = dict(conn.execute(select(dd_guard).filter_by(**key)).mappings().one())
    g["trading_day"] = date.fromisoformat(g["trading_day"]) if g["trading_day"] else None
    open_ = tuple((_trade(r), r["unrealized_usd"])
                  for r in conn.execute(select(positions).filter_by(**key)).mappings())
    ledger = LedgerSnapshot(**{f: st[f] for f in LEDGER_FIELDS}, open=open_)
    machine = MachineSnapshot(DeskState(st["state"]), Trigger(st["halt_cause"]) if st["halt_cause"] else None,
                              st["execution_errors"], st["clean_executions"])
    pending = tuple((_order(r), OrderStatus(r["status"])) for r in conn.execute(
        select(orders).filter_by(**key).where(orders.c.status.in_([OrderStatus.SUBMITTED, OrderStatus.UNKNOWN]))
        .order_by(orders.c.bar_ts)).mappings())
    ids = [t.client_order_id for t, _ in open_]
    notional = dict(conn.execute(select(orders.c.client_order_id, orders.c.notional_usd)
                                 .filter_by(**key).where(orders.c.client_order_id.in_(ids))).all()) if ids else {}
    cursor = dict(conn.execute(select(bar_cursor.c.symbol, bar_cursor.c.last_bar_ts).filter_by(**key)).all())
    guard = GuardSnapshot(**{f: g[f] for f in fields_of(GuardSnapshot)})
    last_bar = or_(*[and_(orders.c.symbol == sym, orders.c.bar_ts == ts) for sym, ts in cursor.items()])
    exits = tuple(conn.execute(select(orders.c.symbol, orders.c.bar_ts, orders.c.client_order_id)
                               .filter_by(**key).where(orders.c.intent == Intent.EXIT.value, last_bar)
                               .order_by(orders.c.client_order_id)).all()) if cursor else ()
    return Snapshot(DeskSnapshot(ledger, guard, machine, pending, notional, exits), cursor)


def _order(row) -> OrderIntent:
    values = {f: row[f] for f in ORDER_FIELDS}
    values["intent"] = Intent(values["intent"])
    if values["exit_reason"] is not None:
        values["exit_reason"] = ExitReason(values["exit_reason"])
    return OrderIntent(**values)


def _trade(row) -> Trade:
    return Trade(**{f: row[f] for f in POSITION_FIELDS})


def decisions_without_counterfactual(conn: Connection, desk_name: str, scenario: str, symbol: str,
                                     since_ts: int) -> list[Decision]:
    """The decisions of (``desk_name``, ``scenario``) on ``symbol`` taken at the close of a bar
    opening at or after ``since_ts`` (UTC epoch seconds) whose counterfactual the store does not
    hold, in journal order, rebuilt as the Decision events they were stored from: every field
    is the stored row's (action a DecisionAction; a context stored NULL, before migration
    0005, is NaN for decision_price, atr_pips and score and "" for score_name, as a Decision
    without it has). Raises SQLAlchemyError."""
    d = decisions
    q = (select(*[d.c[f] for f in DECISION_FIELDS])
         .where(d.c.desk == desk_name, d.c.scenario == scenario, d.c.symbol == symbol, d.c.bar_ts >= since_ts)
         .where(lacks_counterfactual())
         .order_by(d.c.id))
    return [_decision(r) for r in conn.execute(q).mappings()]


def _decision(row) -> Decision:
    values = dict(row)
    values["action"] = DecisionAction(values["action"])
    for f in ("decision_price", "atr_pips", "score"):
        if values[f] is None:
            values[f] = _NAN
    values["score_name"] = values["score_name"] or ""
    return Decision(**values)


def unknown_symbols(snap: Snapshot, symbols: Iterable[str]) -> list[str]:
    """The symbols, sorted, of ``snap``'s positions and unfilled orders that are not in
    ``symbols`` (a desk's universe): a snapshot the desk cannot hold."""
    return sorted(snap.desk.symbols() - set(symbols))


def restore(desk: Desk, snap: Snapshot) -> None:
    """Put ``snap`` back into ``desk`` (after warm-up): :meth:`Desk.restore`. Raises
    ValueError when the snapshot names a symbol outside the desk's universe (check first
    with :func:`unknown_symbols`)."""
    desk.restore(snap.desk)
