"""The broker port: what the desk needs of a broker. The desk owns the port; adapters implement
it (the paper broker in a backtest and the paper daemon, the v20 broker live) and are injected,
so the desk never imports an adapter.

A broker publishes what happened on the desk's bus: ``Fill`` (entries, exits, and the resting
stop-loss / take-profit of the bracket set on the entry fill), ``OrderRejected`` (an execution
error), ``OrderCancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deskd.core.events import BarClosed, OrderIntent


@dataclass(slots=True)
class Position:
    """A position resting at the broker: its entry order and bracket levels (quote-currency
    prices on the instrument's grid; ``tp_price`` None when the strategy set no target)."""

    order: OrderIntent
    side: int
    units: float
    sl_price: float
    tp_price: float | None


class Broker(Protocol):
    """Implemented by :class:`deskd.adapters.paper.PaperBroker` and
    :class:`deskd.adapters.v20.book.V20Book`.

    ``positions`` maps symbol -> the desk's open position at the broker, ``last_bar`` symbol ->
    the last bar the broker saw (warm-up included); both are read by the desk, never written.
    """

    positions: dict[str, Position]
    last_bar: dict[str, BarClosed]

    def submit(self, order: OrderIntent) -> bool:
        """Take a market order decided at the close of ``order.bar_ts``; False when refused at
        once (an OrderRejected was published). Raises KeyError for an unknown symbol."""
        ...

    def on_bar(self, bar: BarClosed) -> None:
        """The market moved: fill what is due in ``bar`` (pending orders at its open, resting
        brackets inside it, broker-side exits that happened before its close)."""
        ...

    def warm_up(self, bar: BarClosed) -> None:
        """A bar seen while rebuilding state on start-up: remember it as the last price,
        fill nothing."""
        ...

    def pending_entries(self) -> list[OrderIntent]:
        """Entry orders taken but not yet filled (or not yet sent)."""
        ...

    def cancel_pending(self, symbol: str | None = None) -> list[OrderIntent]:
        """Withdraw unfilled orders (of ``symbol``, or all); returns them."""
        ...

    def withdraw(self, order: OrderIntent) -> None:
        """Withdraw one unfilled order (the desk publishes its cancellation)."""
        ...

    def restore_position(self, symbol: str, position: Position) -> None:
        """Take back an open position (and its resting bracket) from the store on restart."""
        ...

    def restore_order(self, order: OrderIntent) -> None:
        """Take back an order taken before a restart whose outcome the desk still awaits."""
        ...
