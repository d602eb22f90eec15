"""The desk's broker on OANDA v20, the I/O half: queued orders out, the broker's answers in.

:class:`V20Sender` owns every call to the broker that the desk's orders and fills need:
after a bar it sends what :class:`deskd.adapters.v20.book.V20Book` queued, looks up orders
whose outcome is UNKNOWN, and reads the transactions since the last one seen. Everything it
learns goes to the book, which decides what it means; the sender decides nothing itself
beyond which call answers which question.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from deskd.adapters.v20.book import V20Book
from deskd.adapters.v20.client import BrokerError, BrokerRejected, V20Client
from deskd.core.events import Intent, OrderIntent

log = structlog.get_logger("deskd.live")


class V20Sender:
    """Sends ``book``'s orders through ``client`` and hands the answers back to the book.

    ``last_tx_id`` is the id of the last broker transaction read (set from the account
    summary at start-up). Every method may raise BrokerError only where it says so; an order
    whose answer is lost becomes UNKNOWN in the book, never REJECTED.
    """

    def __init__(self, book: V20Book, client: V20Client):
        self.book = book
        self.client = client
        self.last_tx_id = "0"

    async def send(self, withdraw: Callable[[OrderIntent], bool] | None = None) -> int:
        """Send every queued order; the book publishes each outcome. ``withdraw(order) ->
        bool`` is asked before each entry goes out and may withdraw it (the desk stopped
        allowing entries while earlier orders failed). Returns how many were sent."""
        n = 0
        while batch := self.book.next_batch():
            for order in batch:
                if order.intent is Intent.ENTRY:
                    if withdraw is not None and withdraw(order):
                        continue
                    await self._send_entry(order)
                else:
                    await self._send_exit(order)
                n += 1
        return n

    async def _send_entry(self, order: OrderIntent) -> None:
        sl_dist_price, tp_dist_price = self.book.distances(order)
        try:
            got = await self.client.market_order(order.symbol, order.side * int(order.units), order.client_order_id,
                                                 sl_distance=sl_dist_price, tp_distance=tp_dist_price)
        except BrokerRejected as e:
            self.book.rejected(order, str(e))
            return
        except BrokerError as e:  # every answer and lookup lost: it may have filled
            self.book.unknown_outcome(order, str(e))
            return
        self.book.entry_filled(order, got)

    async def _send_exit(self, order: OrderIntent) -> None:
        if not self.book.exit_sent(order):
            return
        tid = self.book.trade_ids[order.symbol]
        try:
            tx = await self.client.close_trade(tid)
        except BrokerRejected as e:
            if e.status != 404:
                self.book.exit_unanswered(order, str(e), refused=True)
                return
            # closed already: by this very request whose answer was lost and re-sent (aiohttp
            # re-sends an idempotent PUT on a dropped keep-alive connection), or by a bracket.
            # The closing transaction says which; until it is read the outcome is unknown.
            try:
                closing = await self._closing_transaction(tid)
            except BrokerError as e2:
                self.book.unknown_outcome(order, f"close answered 404, lookup failed: {e2}")
                return
            if closing is None:
                self.book.unknown_outcome(order, f"trade {tid}: 404 on close, and no closing transaction")
                return
            tx = closing
        except BrokerError as e:
            self.book.exit_unanswered(order, str(e), refused=False)
            return
        self.book.on_transaction(tx)

    async def _closing_transaction(self, trade_id: str) -> dict | None:
        """The transaction that closed broker trade ``trade_id``; None while it is open (or
        unknown to the broker). Raises BrokerError."""
        t = await self.client.trade(trade_id)
        if t is None or t.get("state") != "CLOSED" or not t.get("closingTransactionIDs"):
            return None
        return await self.client.transaction(t["closingTransactionIDs"][-1])

    async def resolve_unknown(self) -> list[str]:
        """Ask the broker again about every order whose outcome is UNKNOWN: an entry found
        filled is booked at the broker's price, one the broker never took (or did not fill)
        is cancelled; an exit is resolved by its trade (closed: booked as the desk's exit;
        open: cancelled, so the desk sends it again). A lookup that fails leaves the order
        UNKNOWN until the next tick. Returns the unexplained closes found."""
        found: list[str] = []
        for oid, order in list(self.book.unknown.items()):
            try:
                if order.intent is Intent.ENTRY:
                    got = await self.client.order_by_client_id(oid)
                    if got is not None and got.get("fillingTransactionID"):
                        found += self.book.resolved_filled(order, await self.client.transaction(got["fillingTransactionID"]))
                        continue
                    why = "never reached the broker" if got is None else f"broker: {got.get('state', 'not filled')}"
                else:
                    tid = self.book.trade_ids.get(order.symbol)
                    tx = None if tid is None else await self._closing_transaction(tid)
                    if tx is not None:
                        found += self.book.resolved_filled(order, tx)
                        continue
                    why = "the trade is still open at the broker"
            except BrokerError as e:
                log.warning("order still unknown", order_id=oid, error=str(e))
                continue
            self.book.resolved_unfilled(order, why)
        return found

    async def poll_transactions(self, until_id: int | None = None) -> list[str]:
        """Read the transactions since the last one seen (up to ``until_id`` when given: the
        moment of a broker snapshot) into the book; returns the unexplained closes found
        (descriptions). Raises BrokerError."""
        txs, last = await self.client.transactions_since(int(self.last_tx_id))
        if txs:  # a page may stop short of the account's last transaction: go on from it next time
            last = max(int(tx["id"]) for tx in txs)
        if until_id is not None:
            txs = [tx for tx in txs if int(tx["id"]) <= until_id]
            last = max(min(last, until_id), int(self.last_tx_id))
        found = []
        for tx in txs:
            found += self.book.on_transaction(tx)
        self.last_tx_id = str(last)
        return found
