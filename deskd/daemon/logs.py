"""Structured logs: one JSON object per line on stderr (structlog), UTC ISO timestamps.

:class:`EventLogger` turns the desk's events into log lines with their bar time, symbol,
strategy and client order id. Decisions log at debug level: a trend strategy emits one on
most bars.
"""

from __future__ import annotations

import logging
import sys

import structlog

from deskd.core.bus import Bus
from deskd.core.events import (
    SIDE_NAME,
    Decision,
    Fill,
    OrderCancelled,
    OrderIntent,
    PositionClosed,
    StateChanged,
)
from deskd.core.time import iso


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr at ``level`` (DEBUG, INFO, WARNING, ERROR)."""
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


class EventLogger:
    """Subscribes to a desk's bus and logs what an operator needs to follow it."""

    def __init__(self, bus: Bus):
        self.log = structlog.get_logger("deskd.desk")
        bus.subscribe(OrderIntent, self.order)
        bus.subscribe(OrderCancelled, self.cancelled)
        bus.subscribe(Fill, self.fill)
        bus.subscribe(PositionClosed, self.closed)
        bus.subscribe(StateChanged, self.state)
        bus.subscribe(Decision, self.decision)

    def order(self, o: OrderIntent) -> None:
        self.log.info("order submitted", bar_time=iso(o.bar_ts), symbol=o.symbol,
                      strategy=o.strategy_id, order_id=o.client_order_id, intent=o.intent.value,
                      side=SIDE_NAME[o.side], units=o.units, risk_usd=round(o.risk_usd, 2),
                      exit_reason=o.exit_reason)

    def cancelled(self, e: OrderCancelled) -> None:
        self.log.info("order cancelled", bar_time=iso(e.bar_ts), order_id=e.client_order_id,
                      reason=e.reason)

    def fill(self, f: Fill) -> None:
        self.log.info("fill", bar_time=iso(f.bar_ts), symbol=f.symbol, strategy=f.strategy_id,
                      order_id=f.client_order_id, intent=f.intent.value, price=f.price,
                      cost_pips=round(f.cost_pips, 2), exit_reason=f.exit_reason)

    def closed(self, e: PositionClosed) -> None:
        t = e.trade
        self.log.info("position closed", bar_time=iso(e.bar_ts), symbol=t.symbol,
                      strategy=t.strategy_id, order_id=t.client_order_id, trade_id=t.trade_id,
                      exit_reason=t.exit_reason, pnl_usd=round(t.pnl_usd, 2),
                      r_multiple=round(t.r_multiple, 3))

    def state(self, e: StateChanged) -> None:
        self.log.warning("desk state changed", bar_time=iso(e.bar_ts), old=e.old, new=e.new,
                         trigger=e.trigger, reason=e.reason)

    def decision(self, d: Decision) -> None:
        self.log.debug("decision", bar_time=iso(d.bar_ts), symbol=d.symbol, strategy=d.strategy_id,
                       action=d.action, reason=d.reason, order_id=d.client_order_id)
