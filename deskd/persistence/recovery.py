"""Start-up and crash recovery, one code path.

1. Load the store's snapshot of (desk, scenario): desk state and balances, drawdown guard,
   open positions, unfilled orders, and the last bar processed per symbol.
2. Replay the feed's bars up to each symbol's cursor through :meth:`Desk.warm_up`
   (indicators and strategies only), which rebuilds their state bar for bar.
3. :func:`restore` puts the snapshot back into the ledger, allocator, paper broker, guard and
   state machine. Bars after the cursor then go through the normal pipeline.

Every bar commits whole (see :mod:`deskd.persistence.store`), so the snapshot is always the state
at the end of some bar: nothing of a half-processed bar can survive a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, select

from deskd.core.events import Intent, OrderIntent, Trade
from deskd.desk.desk import Desk
from deskd.desk.orders import OrderStatus
from deskd.desk.state import DeskState, Trigger
from deskd.persistence.store import bar_cursor, dd_guard, desk_state, orders, positions
from deskd.risk.guard import ALLOW, GuardVerdict


@dataclass
class Snapshot:
    """The store's rows for one (desk, scenario), as dicts."""

    state: dict
    guard: dict
    positions: list[dict]
    pending: list[dict]
    notional_by_order: dict[str, float]
    cursor: dict[str, int] = field(default_factory=dict)


def load_snapshot(conn: Connection, desk_name: str, scenario: str) -> Snapshot | None:
    """The latest committed snapshot, or None for a desk the store has never seen."""
    key = {"desk": desk_name, "scenario": scenario}
    state = conn.execute(select(desk_state).filter_by(**key)).mappings().first()
    if state is None:
        return None
    guard = conn.execute(select(dd_guard).filter_by(**key)).mappings().one()
    pos = [dict(r) for r in conn.execute(select(positions).filter_by(**key)).mappings()]
    pending = [dict(r) for r in conn.execute(
        select(orders).filter_by(**key).where(orders.c.status.in_(["SUBMITTED", "UNKNOWN"]))
        .order_by(orders.c.bar_ts)).mappings()]
    ids = [p["client_order_id"] for p in pos]
    notional = dict(conn.execute(select(orders.c.client_order_id, orders.c.notional_usd)
                                 .filter_by(**key).where(orders.c.client_order_id.in_(ids))).all()) if ids else {}
    cursor = dict(conn.execute(select(bar_cursor.c.symbol, bar_cursor.c.last_bar_ts).filter_by(**key)).all())
    return Snapshot(dict(state), dict(guard), pos, pending, notional, cursor)


def _order(row: dict) -> OrderIntent:
    return OrderIntent(row["client_order_id"], row["bar_ts"], row["symbol"], row["strategy_id"],
                       row["side"], row["units"], Intent(row["intent"]), row["sl_pips"],
                       row["tp_pips"], row["risk_usd"], row["exit_reason"], row["notional_usd"],
                       row["regime"], row["why"])


_TRADE_FIELDS = ("trade_id", "symbol", "strategy_id", "side", "units", "signal_ts", "fill_ts",
                 "entry_price", "entry_ref_price", "sl_price", "tp_price", "risk_usd",
                 "entry_cost_pips", "regime", "why", "client_order_id", "hold_bars", "mae_pips",
                 "mfe_pips")


def unknown_symbols(snap: Snapshot, symbols: Iterable[str]) -> list[str]:
    """The symbols, sorted, of ``snap``'s positions and unfilled orders that are not in
    ``symbols`` (a desk's universe): a snapshot the desk cannot hold."""
    return sorted({p["symbol"] for p in snap.positions + snap.pending} - set(symbols))


def restore(desk: Desk, snap: Snapshot) -> None:
    """Put ``snap`` back into ``desk`` (after warm-up). Raises ValueError when the snapshot
    names a symbol outside the desk's universe (check first with :func:`unknown_symbols`)."""
    unknown = unknown_symbols(snap, desk.instruments)
    if unknown:
        raise ValueError(f"the store holds positions or orders on {unknown}, which the "
                         f"config's universe does not trade")
    st, lg = snap.state, desk.ledger
    lg.balance_usd = st["balance_usd"]
    lg.equity_usd = st["equity_usd"]
    lg.peak_usd = st["peak_usd"]
    lg.max_dd_usd = st["max_dd_usd"]
    lg.max_dd_frac = st["max_dd_frac"]
    lg.next_trade_id = st["next_trade_id"]
    for row in snap.positions:
        t = Trade(**{k: row[k] for k in _TRADE_FIELDS})
        desk.adopt_position(t, row["unrealized_usd"], snap.notional_by_order.get(t.client_order_id, 0.0))
    for row in snap.pending:
        desk.adopt_order(_order(row), OrderStatus(row["status"]))
    g, gr = desk.guard, snap.guard
    g.day = date.fromisoformat(gr["trading_day"]) if gr["trading_day"] else None
    g.day_anchor_usd = gr["day_anchor_usd"]
    g.week_anchor_usd = gr["week_anchor_usd"]
    g.next_roll_ts = gr["next_roll_ts"]
    g.halt_until = gr["halt_until_ts"]
    g.halt = (GuardVerdict(False, gr["halt_until_ts"], gr["halt_reason"], gr["halt_code"])
              if gr["halt_until_ts"] is not None else ALLOW)
    sm = desk.state
    sm.state = DeskState(st["state"])
    sm.halt_cause = Trigger(st["halt_cause"]) if st["halt_cause"] else None
    sm.errors = st["execution_errors"]
    sm.clean = st["clean_executions"]
    desk.equity_restored()
