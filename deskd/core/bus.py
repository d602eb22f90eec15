"""The event bus: publish an event, and every handler subscribed to its type sees it.

Handlers are plain functions and run inline, in subscription order, before ``publish``
returns: a replay of a million bars pays one dict lookup and a few calls per bar, not
scheduler overhead. The bus carries the desk's outputs to observers (journal, store, logs,
metrics); the order of the desk's own steps is code (:meth:`deskd.desk.desk.Desk.on_bar`),
not subscription order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Bus:
    """Type-keyed publish/subscribe. Not thread-safe: one bus per event loop."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        """Call ``handler(event)`` for each published event of exactly ``event_type``."""
        self._handlers[event_type].append(handler)

    def publish(self, event: Any) -> None:
        """Run the handlers of ``type(event)`` now, in subscription order. A handler's
        exception propagates to the publisher."""
        for h in self._handlers.get(type(event), ()):
            h(event)
