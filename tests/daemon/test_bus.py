"""The bus: inline handlers run in order before publish returns; coroutine handlers wait for
drain, in publication order."""

import asyncio

import pytest

from deskd.core.bus import Bus
from deskd.core.events import OrderAccepted, OrderRejected


def test_inline_handlers_run_in_subscription_order_and_only_for_their_type():
    bus, seen = Bus(), []
    bus.subscribe(OrderAccepted, lambda e: seen.append(("a", e.client_order_id)))
    bus.subscribe(OrderAccepted, lambda e: seen.append(("b", e.client_order_id)))
    bus.subscribe(OrderRejected, lambda e: seen.append(("rejected", e.client_order_id)))
    bus.publish(OrderAccepted(0, "o1"))
    assert seen == [("a", "o1"), ("b", "o1")]


def test_handler_may_publish_and_the_nested_event_is_handled_first():
    bus, seen = Bus(), []
    bus.subscribe(OrderAccepted, lambda e: (seen.append("accepted"), bus.publish(OrderRejected(0, "x", "r"))))
    bus.subscribe(OrderAccepted, lambda e: seen.append("accepted-2"))
    bus.subscribe(OrderRejected, lambda e: seen.append("rejected"))
    bus.publish(OrderAccepted(0, "o"))
    assert seen == ["accepted", "rejected", "accepted-2"]


def test_coroutine_handlers_run_on_drain_in_publication_order():
    bus, seen = Bus(), []

    async def slow(e):
        await asyncio.sleep(0)
        seen.append(e.client_order_id)

    bus.subscribe(OrderAccepted, slow)
    bus.publish(OrderAccepted(0, "o1"))
    bus.publish(OrderAccepted(0, "o2"))
    assert seen == []
    assert asyncio.run(bus.drain()) == 2
    assert seen == ["o1", "o2"]


def test_coroutine_handler_error_reaches_the_drainer():
    bus = Bus()

    async def broken(e):
        raise RuntimeError("broker down")

    bus.subscribe(OrderAccepted, broken)
    bus.publish(OrderAccepted(0, "o1"))
    with pytest.raises(RuntimeError, match="broker down"):
        asyncio.run(bus.drain())
