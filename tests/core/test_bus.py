"""The bus: handlers run inline, in subscription order, before publish returns."""

import pytest

from deskd.core.bus import Bus
from deskd.core.events import OrderCancelled, OrderRejected


def test_handlers_run_in_subscription_order_and_only_for_their_type():
    bus, seen = Bus(), []
    bus.subscribe(OrderCancelled, lambda e: seen.append(("a", e.client_order_id)))
    bus.subscribe(OrderCancelled, lambda e: seen.append(("b", e.client_order_id)))
    bus.subscribe(OrderRejected, lambda e: seen.append(("rejected", e.client_order_id)))
    bus.publish(OrderCancelled(0, "o1", "r"))
    assert seen == [("a", "o1"), ("b", "o1")]


def test_handler_may_publish_and_the_nested_event_is_handled_first():
    bus, seen = Bus(), []
    bus.subscribe(OrderCancelled, lambda e: (seen.append("cancelled"), bus.publish(OrderRejected(0, "x", "r"))))
    bus.subscribe(OrderCancelled, lambda e: seen.append("cancelled-2"))
    bus.subscribe(OrderRejected, lambda e: seen.append("rejected"))
    bus.publish(OrderCancelled(0, "o", "r"))
    assert seen == ["cancelled", "rejected", "cancelled-2"]


def test_handler_error_reaches_the_publisher():
    bus = Bus()

    def broken(e):
        raise RuntimeError("journal full")

    bus.subscribe(OrderCancelled, broken)
    with pytest.raises(RuntimeError, match="journal full"):
        bus.publish(OrderCancelled(0, "o1", "r"))
