"""The event bus: publish an event, and every handler subscribed to its type sees it.

Handlers that do no I/O are plain functions and run inline, in subscription order, before
``publish`` returns: a replay of a million bars pays one dict lookup and a few calls per bar,
not scheduler overhead. Coroutine handlers (the live daemon's I/O) are queued and run by
:meth:`Bus.drain` on the event loop, in publication order.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Bus:
    """Type-keyed publish/subscribe. Not thread-safe: one bus per event loop."""

    def __init__(self) -> None:
        self._inline: dict[type, list[Callable[[Any], None]]] = defaultdict(list)
        self._async: dict[type, list[Callable[[Any], Any]]] = {}
        self._queue: asyncio.Queue | None = None

    def subscribe(self, event_type: type, handler: Callable[[Any], Any]) -> None:
        """Call ``handler(event)`` for each published event of exactly ``event_type``."""
        if inspect.iscoroutinefunction(handler):
            self._async.setdefault(event_type, []).append(handler)
        else:
            self._inline[event_type].append(handler)

    def handlers(self, event_type: type) -> list[Callable[[Any], None]]:
        """The inline handlers of ``event_type``, in order (a replay loop may bind them once)."""
        return self._inline[event_type]

    def publish(self, event: Any) -> None:
        """Run inline handlers now; queue coroutine handlers for :meth:`drain`."""
        t = type(event)
        for h in self._inline.get(t, ()):
            h(event)
        if self._async and t in self._async:
            if self._queue is None:
                self._queue = asyncio.Queue()
            for h in self._async[t]:
                self._queue.put_nowait((h, event))

    async def drain(self) -> int:
        """Await every queued coroutine handler, including ones queued meanwhile; returns the
        number run. A handler's exception propagates to the caller."""
        n = 0
        while self._queue is not None and not self._queue.empty():
            h, event = self._queue.get_nowait()
            await h(event)
            n += 1
        return n
