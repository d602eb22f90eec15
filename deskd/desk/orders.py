"""The order book: every order the desk has sent and not yet seen finished, with its status.

The status table, as data (a move not listed raises IllegalOrderMove):

| from      | to                                         | when                                             |
|-----------|--------------------------------------------|--------------------------------------------------|
| SUBMITTED | FILLED, CANCELLED, REJECTED, UNKNOWN       | the broker filled, withdrew, refused; or never answered |
| UNKNOWN   | FILLED, CANCELLED, REJECTED                | the broker answered a later lookup               |

FILLED, CANCELLED and REJECTED are final: the order leaves the book. An order is SUBMITTED
from the moment the broker took it (the paper broker at once; the v20 broker queues it and
sends it after the bar is committed). UNKNOWN is its own state, never assumed to be either
outcome: its caps stay booked and its symbol opens nothing new until the broker answers.

The book is the one place that releases an entry's caps (on CANCELLED and REJECTED; a
filled entry's caps are released when its position closes).
"""

from __future__ import annotations

from enum import StrEnum

from deskd.core.events import Intent, OrderIntent
from deskd.risk.allocator import Allocator


def bracket_pips(sl_pips: float, tp_pips: float | None) -> tuple[float, float | None]:
    """The bracket distances (pips) an entry order carries for a signal's ``sl_pips`` /
    ``tp_pips``: whole tenths of a pip, as brokers take them, and a stop of at least 0.1 pip;
    the target None when the signal has none. The desk sends these, and a decision's
    counterfactual (deskd.research.counterfactuals) simulates the same."""
    return max(round(sl_pips, 1), 0.1), None if tp_pips is None else round(tp_pips, 1)


class OrderStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


_S = OrderStatus
MOVES: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.SUBMITTED: frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED, _S.UNKNOWN}),
    _S.UNKNOWN: frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED}),
}
FINAL = frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED})


class IllegalOrderMove(RuntimeError):
    """A status change the table does not allow (a bug, or a broker report out of order)."""


class OrderBook:
    """Open orders by client id, with the symbol index the decision path reads.

    ``entry_on`` maps symbol -> client id of its open entry (SUBMITTED or UNKNOWN);
    ``exit_on`` symbol -> client id of its open exit. One of each per symbol at most.
    """

    def __init__(self, allocator: Allocator):
        self.allocator = allocator
        self.orders: dict[str, tuple[OrderIntent, OrderStatus]] = {}
        self.entry_on: dict[str, str] = {}
        self.exit_on: dict[str, str] = {}

    def add(self, order: OrderIntent, status: OrderStatus = OrderStatus.SUBMITTED) -> None:
        """Track an order the broker took (or, on restart, one the store held); an entry books
        its risk and notional against the caps."""
        oid = order.client_order_id
        self.orders[oid] = (order, status)
        if order.intent is Intent.ENTRY:
            self.entry_on[order.symbol] = oid
            self.allocator.book(oid, order.symbol, order.strategy_id, order.risk_usd, order.notional_usd)
        else:
            self.exit_on[order.symbol] = oid

    def get(self, oid: str) -> OrderIntent | None:
        got = self.orders.get(oid)
        return None if got is None else got[0]

    def status(self, oid: str) -> OrderStatus | None:
        got = self.orders.get(oid)
        return None if got is None else got[1]

    def move(self, oid: str, new: OrderStatus) -> OrderIntent | None:
        """Change an order's status; returns the order, or None when the book does not hold
        ``oid`` (a bracket fill, an order already finished). Raises IllegalOrderMove."""
        got = self.orders.get(oid)
        if got is None:
            return None
        order, old = got
        if new not in MOVES.get(old, ()):
            raise IllegalOrderMove(f"order {oid}: {old} -> {new} is not allowed")
        if new in FINAL:
            del self.orders[oid]
            index = self.entry_on if order.intent is Intent.ENTRY else self.exit_on
            if index.get(order.symbol) == oid:
                del index[order.symbol]
            if order.intent is Intent.ENTRY and new is not OrderStatus.FILLED:
                self.allocator.release(oid)
        else:
            self.orders[oid] = (order, new)
        return order

    def unknown(self) -> list[OrderIntent]:
        """Orders whose outcome the broker has not confirmed, oldest first."""
        return [o for o, st in self.orders.values() if st is OrderStatus.UNKNOWN]

    def open_entries(self) -> list[OrderIntent]:
        return [o for o, _ in self.orders.values() if o.intent is Intent.ENTRY]
