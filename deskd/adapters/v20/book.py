"""The desk's broker on OANDA v20, the bookkeeping half: broker reports in, fills and decisions out.

:class:`V20Book` is the Desk's broker, as the paper broker is in a backtest, and does no I/O
(it is tested with plain dicts, as h11's ``Connection`` is tested without a socket): the bar
pipeline only queues orders in it; :class:`deskd.adapters.v20.sender.V20Sender` sends them
after the bar (committed, order rows SUBMITTED) and hands back what the broker answered
(``entry_filled``, ``on_transaction``, ``rejected``, ``unknown``), which the book turns into
a Fill with the broker's price, OrderRejected (an execution error for the state machine),
OrderUnknown or OrderCancelled on the bus.

Prices and costs of live fills. Entries: ``ref_price`` is the close of the decision bar,
``price`` the broker's fill; ``cost_pips`` = side x (price - ref) / pip is what the trader
paid against the price the signal saw (spread, slippage and the move while the order was in
flight; negative when the market moved his way). Stop-loss and take-profit: ``ref_price`` is
the level, so ``cost_pips`` is the slippage past it. Brackets are sent as distances from the
fill (``stopLossOnFill.distance``), as the desk's contract sets them from the fill price.

Broker-side closes are learned from the transactions since the last one seen: a stop-loss,
take-profit or margin closeout of a desk trade is booked as an exit at the broker's price,
during the bar it happened in (as the paper broker books a bracket fill). Any other close of
a desk trade (by hand on the platform) is unexplained: it is NOT booked, the desk goes to
SAFE_MODE, and reconciliation reports it until an operator books it
(``POST /reconcile {"book_broker_closes": true}``) or settles it at the broker.
"""

from __future__ import annotations

import structlog

from deskd.adapters.v20.naming import parse_time, price_str, quote_of, round_price
from deskd.core.bus import Bus
from deskd.core.events import (
    BarClosed,
    ExitReason,
    Fill,
    Intent,
    OrderCancelled,
    OrderIntent,
    OrderRejected,
    OrderUnknown,
)
from deskd.core.money import Instrument
from deskd.desk.broker import Position

log = structlog.get_logger("deskd.live")

#: v20 ORDER_FILL reasons the desk books by itself, and the exit reason it records
EXPLAINED_CLOSES: dict[str, ExitReason] = {"STOP_LOSS_ORDER": ExitReason.SL, "TAKE_PROFIT_ORDER": ExitReason.TP,
                                           "MARKET_ORDER_MARGIN_CLOSEOUT": ExitReason.MARGIN_CLOSEOUT}


class V20Book:
    """The Desk's broker on v20, bookkeeping only (see the module docstring).

    ``pending`` holds orders decided but not yet sent; ``positions`` the desk's open trades
    with their brackets; ``trade_ids`` the broker's trade id per symbol. Raises KeyError on an
    order for a symbol outside ``instruments``.
    """

    def __init__(self, bus: Bus, instruments: dict[str, Instrument], timeframe_s: int):
        self.bus = bus
        self.timeframe_s = timeframe_s
        self.instruments = instruments
        self.pending: dict[str, list[OrderIntent]] = {}
        self.positions: dict[str, Position] = {}
        self.last_bar: dict[str, BarClosed] = {}
        self.trade_ids: dict[str, str] = {}
        self.exits_due: dict[str, list[Fill]] = {}   # broker-side exits waiting for their bar
        self.unexplained: dict[str, dict] = {}       # symbol -> closing transaction not booked
        self.booked_tx: set[str] = set()             # transaction ids already booked
        self.restored: list[OrderIntent] = []        # open orders the store held at start-up
        self.unknown: dict[str, OrderIntent] = {}    # client id -> order whose outcome is UNKNOWN
        self.exits_out: dict[str, OrderIntent] = {}  # symbol -> the desk's exit sent, not yet answered

    # -- the Desk's side (synchronous) ----------------------------------------------------
    def submit(self, order: OrderIntent) -> bool:
        """Queue ``order`` for the sender (after the bar); always True."""
        if order.symbol not in self.instruments:
            raise KeyError(f"http broker: unknown symbol {order.symbol}")
        self.pending.setdefault(order.symbol, []).append(order)
        return True

    def on_bar(self, bar: BarClosed) -> None:
        """Book broker-side exits that happened before this bar's close."""
        sym = bar.symbol
        self.last_bar[sym] = bar
        due = self.exits_due.get(sym)
        while due and due[0].fill_ts < bar.close_ts:
            self.bus.publish(due.pop(0))

    def cancel_pending(self, symbol: str | None = None) -> list[OrderIntent]:
        """Drop unsent orders (all symbols when ``symbol`` is None); returns them."""
        if symbol is None:
            out = [o for orders in self.pending.values() for o in orders]
            self.pending.clear()
            return out
        return self.pending.pop(symbol, [])

    def pending_entries(self) -> list[OrderIntent]:
        return [o for orders in self.pending.values() for o in orders if o.intent is Intent.ENTRY]

    def withdraw(self, order: OrderIntent) -> None:
        orders = self.pending.get(order.symbol, [])
        if order in orders:
            orders.remove(order)

    def warm_up(self, bar: BarClosed) -> None:
        self.last_bar[bar.symbol] = bar

    def restore_position(self, symbol: str, position: Position) -> None:
        self.positions[symbol] = position

    def restore_order(self, order: OrderIntent) -> None:
        """An order the store holds open: settled against the broker at start-up
        (:meth:`deskd.daemon.live.LiveSession.start`) before anything is sent."""
        self.restored.append(order)

    def next_batch(self) -> list[OrderIntent]:
        """Take the queued orders of one symbol, in the order the desk queued them; [] when
        nothing is queued. The sender calls it until it answers []."""
        if not self.pending:
            return []
        return self.pending.pop(next(iter(self.pending)))

    def open_exit_due(self) -> set[str]:
        """Symbols whose position the broker closed (explained) but the ledger has not booked
        yet: reconciliation expects them flat."""
        return {s for s, fills in self.exits_due.items() if fills}

    def distances(self, order: OrderIntent) -> tuple[float, float | None]:
        """Bracket distances in price units, as v20 will read them (a tenth of a pip)."""
        sym, pip = order.symbol, self.instruments[order.symbol].pip_size
        sl_pips, tp_pips = order.bracket_pips()
        sl = float(price_str(sl_pips * pip, sym))
        return sl, None if tp_pips is None else float(price_str(tp_pips * pip, sym))

    def entry_filled(self, order: OrderIntent, got: dict) -> None:
        """Publish the entry Fill of ``order`` from the broker's answer ({"price", "time",
        "trade_id"}); its bracket levels are the fill price -/+ the distances sent."""
        sym, side = order.symbol, order.side
        sl_dist_price, tp_dist_price = self.distances(order)
        price = got["price"]
        sl = round_price(price - side * sl_dist_price, sym)
        tp = None if tp_dist_price is None else round_price(price + side * tp_dist_price, sym)
        self.trade_ids[sym] = got["trade_id"]
        self.positions[sym] = Position(order, side, order.units, sl, tp)
        bar = self.last_bar.get(sym)
        ref = bar.close if bar is not None else price
        pip = self.instruments[sym].pip_size
        log.info("entry filled", symbol=sym, order_id=order.client_order_id, trade_id=got["trade_id"],
                 price=price, sl_price=sl, tp_price=tp)
        cost = side * (price - ref) / pip
        spread, slippage = cost_split(cost, got.get("bid"), got.get("ask"), pip)
        self.bus.publish(Fill(self._bar_of(got["time"]), got["time"], order.client_order_id, sym, order.strategy_id, side,
                              order.units, Intent.ENTRY, ref, price, cost, sl_price=sl, tp_price=tp,
                              spread_pips=spread, slippage_pips=slippage))

    def _bar_of(self, fill_ts: int) -> int:
        """The open time of the bar a broker fill at ``fill_ts`` falls in (bars are aligned to
        their timeframe, as v20's M1..H1 candles are)."""
        return fill_ts - fill_ts % self.timeframe_s

    def unknown_outcome(self, order: OrderIntent, reason: str) -> None:
        """Nothing the broker said confirms or denies ``order``: OrderUnknown; it is kept in
        ``unknown`` for the sender to look up again every tick."""
        log.error("order outcome unknown; looked up again every tick", symbol=order.symbol,
                  order_id=order.client_order_id, error=reason)
        self.unknown[order.client_order_id] = order
        self.bus.publish(OrderUnknown(order.bar_ts, order.client_order_id, reason, order.symbol, order.intent))

    def resolved_filled(self, order: OrderIntent, tx: dict) -> list[str]:
        """An UNKNOWN order whose fill the broker now shows in ``tx`` (the ORDER_FILL that
        opened its trade, or closed it): booked at the broker's price. Returns the
        unexplained closes found, as :meth:`on_transaction`."""
        if self.unknown.pop(order.client_order_id, None) is None:
            return []
        if order.intent is Intent.ENTRY:
            self.booked_tx.add(tx["id"])
            self.entry_filled(order, opened(tx))
            return []
        self.exits_out[order.symbol] = order
        return self.on_transaction(tx)

    def resolved_unfilled(self, order: OrderIntent, why: str) -> None:
        """An UNKNOWN order the broker never filled: OrderCancelled with ``why``."""
        if self.unknown.pop(order.client_order_id, None) is None:
            return
        log.info("unknown order resolved", order_id=order.client_order_id, outcome=why)
        self.bus.publish(OrderCancelled(order.bar_ts, order.client_order_id, why))

    def exit_sent(self, order: OrderIntent) -> bool:
        """The sender is about to close ``order.symbol``'s trade: False (and OrderCancelled)
        when there is no open desk trade at the broker to close."""
        sym = order.symbol
        if self.trade_ids.get(sym) is None or sym in self.unexplained or sym not in self.positions:
            self.bus.publish(OrderCancelled(order.bar_ts, order.client_order_id,
                                            "no open desk trade at the broker to close"))
            return False
        self.exits_out[sym] = order
        return True

    def exit_unanswered(self, order: OrderIntent, reason: str, refused: bool) -> None:
        """The close of ``order`` was refused (``refused``: OrderRejected) or never answered
        (OrderUnknown)."""
        self.exits_out.pop(order.symbol, None)
        if refused:
            self.rejected(order, reason)
        else:
            self.unknown_outcome(order, reason)

    def rejected(self, order: OrderIntent, reason: str) -> None:
        """The broker refused ``order``: OrderRejected."""
        log.error("order failed", symbol=order.symbol, order_id=order.client_order_id, error=reason)
        self.bus.publish(OrderRejected(order.bar_ts, order.client_order_id, reason, order.symbol, order.intent))

    def _exit_fill(self, sym: str, tx: dict, price: float, order_id: str, reason: ExitReason,
                   ref: float) -> Fill:
        """The exit Fill of the desk's position on ``sym`` (which leaves ``positions``)."""
        pos = self.positions.pop(sym)
        self.trade_ids.pop(sym, None)
        pip = self.instruments[sym].pip_size
        fill_ts = parse_time(tx["time"])
        cost = pos.side * (ref - price) / pip
        spread, slippage = cost_split(cost, *quote_of(tx), pip)
        return Fill(self._bar_of(fill_ts), fill_ts, order_id, sym, pos.order.strategy_id, -pos.side, pos.units,
                    Intent.EXIT, ref, price, cost, exit_reason=reason, spread_pips=spread, slippage_pips=slippage)

    # -- what happened at the broker ------------------------------------------------------
    def on_transaction(self, tx: dict) -> list[str]:
        """Book a broker-side close of a desk trade (stop-loss, take-profit, margin
        closeout) at the broker's price, in the bar it happened; remember any other close
        as unexplained. Returns descriptions of the unexplained ones."""
        if tx.get("type") != "ORDER_FILL" or tx["id"] in self.booked_tx:
            return []
        opened_by = ((tx.get("tradeOpened") or {}).get("clientExtensions") or {}).get("id")
        if opened_by in self.unknown:  # an entry whose answer was lost: it filled after all
            return self.resolved_filled(self.unknown[opened_by], tx)
        by_trade = {tid: sym for sym, tid in self.trade_ids.items()}
        touched = list(tx.get("tradesClosed") or [])
        if tx.get("tradeReduced"):
            touched.append(tx["tradeReduced"])
        found = []
        for closed in touched:
            sym = by_trade.get(closed.get("tradeID"))
            if sym is None:
                continue
            self.booked_tx.add(tx["id"])
            price = float(closed.get("price") or tx["price"])
            reason = EXPLAINED_CLOSES.get(tx.get("reason", ""))
            own = self.exits_out.pop(sym, None)
            if own is not None and tx.get("reason") == "MARKET_ORDER_TRADE_CLOSE" \
                    and closed is not tx.get("tradeReduced"):
                # the desk's own exit (sent now, or before a restart): booked under its id
                self.withdraw(own)
                bar = self.last_bar.get(sym)
                log.info("exit filled", symbol=sym, order_id=own.client_order_id, price=price, transaction=tx["id"])
                self.bus.publish(self._exit_fill(sym, tx, price, own.client_order_id,
                                                 own.exit_reason or ExitReason.MARKET,
                                                 bar.close if bar is not None else price))
                continue
            if own is not None:  # closed by a bracket (or by hand) first: the exit has nothing to do
                self.withdraw(own)
                self.bus.publish(OrderCancelled(own.bar_ts, own.client_order_id,
                                                f"trade closed at the broker first ({tx.get('reason', '?')})"))
            if reason is None or closed is tx.get("tradeReduced"):
                self.unexplained[sym] = {**tx, "tradeID": closed["tradeID"], "closePrice": price}
                found.append(f"{sym}: trade {closed['tradeID']} closed at the broker "
                             f"({tx.get('reason', '?')}, transaction {tx['id']}, price {price:g}); not booked")
                continue
            pos = self.positions[sym]
            level = pos.sl_price if reason == "SL" else pos.tp_price if reason == "TP" else None
            ref = price if level is None else level
            fill = self._exit_fill(sym, tx, price, f"{pos.order.client_order_id}:{reason}", reason, ref)
            log.info("broker-side exit", symbol=sym, reason=reason, price=price, transaction=tx["id"])
            bar = self.last_bar.get(sym)
            if bar is not None and bar.close_ts > fill.fill_ts:
                self.bus.publish(fill)  # its bar is already behind us
            else:
                self.exits_due.setdefault(sym, []).append(fill)
        return found

    def track_exit(self, order: OrderIntent) -> None:
        """An exit the store held open on restart: a close of its trade found in the
        transactions is the desk's own, not a hand close."""
        self.exits_out[order.symbol] = order

    def book_unexplained(self, sym: str) -> None:
        """An operator accepts the broker's close of ``sym``: book it at the broker's price
        (exit reason BROKER_CLOSE)."""
        tx = self.unexplained.pop(sym)
        pos = self.positions[sym]
        self.bus.publish(self._exit_fill(sym, tx, tx["closePrice"], f"{pos.order.client_order_id}:BROKER_CLOSE",
                                         ExitReason.BROKER_CLOSE, tx["closePrice"]))


def opened(tx: dict) -> dict:
    """The fill of an ORDER_FILL transaction that opened a trade, as ``market_order`` answers."""
    bid, ask = quote_of(tx)
    return {"price": float(tx["price"]), "time": parse_time(tx["time"]),
            "trade_id": (tx.get("tradeOpened") or {}).get("tradeID"), "bid": bid, "ask": ask}


def cost_split(cost_pips: float, bid: float | None, ask: float | None, pip: float) -> tuple[float | None, float | None]:
    """A broker fill's cost (pips against the decision price, positive against the trader)
    as (half spread, slippage): the half spread is (ask - bid) / 2 from the bid and ask the
    broker reported with the fill, the slippage the rest (the market's move since the decision
    and any price improvement, so it can be negative). (None, None) when the broker reported
    no bid and ask: unknown, never assumed."""
    if bid is None or ask is None:
        return None, None
    spread = (ask - bid) / 2.0 / pip
    return spread, cost_pips - spread
