"""A fault-injecting wrapper around any broker of the desk's port, for tests and drills: the
production brokers carry no test switches."""

from __future__ import annotations

from typing import Any

from deskd.core.bus import Bus
from deskd.core.events import OrderIntent, OrderRejected
from deskd.desk.broker import Broker


class RejectingBroker:
    """Delegates to ``inner``; while ``reject_next`` > 0 a submission is refused instead
    (OrderRejected with ``reason`` published on ``bus``, ``submit`` answers False)."""

    def __init__(self, inner: Broker, bus: Bus, reason: str = "fault injected"):
        self.inner = inner
        self.bus = bus
        self.reason = reason
        self.reject_next = 0

    def submit(self, order: OrderIntent) -> bool:
        if self.reject_next > 0:
            self.reject_next -= 1
            self.bus.publish(OrderRejected(order.bar_ts, order.client_order_id, self.reason,
                                           order.symbol, order.intent))
            return False
        return self.inner.submit(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
