"""``deskd run --broker http``: the live node around the v20 broker.

:class:`LiveSession` runs the daemon around it: start-up (warm-up from the broker's candles,
restore from the store, orders a crash left unanswered, positions closed while the daemon
was down, reconciliation before any trading, optional adoption of unknown broker trades), the
tick (transactions, then candles through the pipeline, then orders, then commit), and
reconciliation on a schedule and on demand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from deskd.adapters.v20.book import V20Book, opened
from deskd.adapters.v20.client import BrokerError, V20Client
from deskd.adapters.v20.naming import parse_time, to_symbol
from deskd.adapters.v20.reconcile import (
    FOREIGN_ID,
    Holding,
    ReconcileDiff,
    broker_holdings,
    client_id,
    reconcile,
)
from deskd.adapters.v20.sender import V20Sender
from deskd.core.events import Fill, Intent, OrderCancelled, OrderIntent, OrderRejected, OrderUnknown, Trade
from deskd.core.time import iso
from deskd.desk.orders import OrderStatus

log = structlog.get_logger("deskd.live")

ADOPTED = "adopted"

#: what became of closing one position now (:meth:`LiveSession.send_now`)
CLOSED, FAILED, UNKNOWN = "closed", "failed", "unknown"
_NEXT = {CLOSED: None, FAILED: "retried at every bar close", UNKNOWN: "looked up every tick"}
_OUTCOME_EVENTS = (OrderIntent, Fill, OrderRejected, OrderUnknown, OrderCancelled)


@dataclass
class ReconcileResult:
    diffs: list[ReconcileDiff]
    at: float


class ShuttingDown(RuntimeError):
    """The daemon began to stop before the broker could be called: nothing was sent."""


@dataclass(frozen=True)
class ExitOutcome:
    """What became of closing ``symbol``'s position: ``outcome`` CLOSED (``price``: the
    broker's fill, ``exit_reason``: FLATTEN, or SL/TP when a bracket closed it first), FAILED
    (``error``: refused, or nothing to close at the broker; the desk sends the exit again at
    every bar close until the position is closed) or UNKNOWN (``error``: the broker never
    confirmed; the order is looked up every tick)."""

    symbol: str
    outcome: str
    price: float | None = None
    exit_reason: str | None = None
    error: str | None = None

    @property
    def next(self) -> str | None:
        """What the desk does next about it; None once closed."""
        return _NEXT[self.outcome]

    def as_dict(self) -> dict:
        if self.outcome == CLOSED:
            return {"outcome": CLOSED, "price": self.price, "exit_reason": self.exit_reason}
        return {"outcome": self.outcome, "error": self.error, "next": self.next}


class LiveSession:
    """The live daemon's loop around a DeskRunner whose desk trades through a V20Book.

    ``client`` is the broker's V20Client (the session sends the book's orders through it);
    ``poller`` is the CandlePoller of the broker's candles; ``adopt`` takes over broker
    trades the store does not know (only with a stop-loss, one per symbol) instead of only
    reporting them; ``reconcile_every_s`` schedules reconciliation between ticks.
    """

    def __init__(self, runner, client: V20Client, poller, adopt: bool = False, reconcile_every_s: float = 300.0):
        self.runner = runner
        self.desk = runner.desk
        self.book: V20Book = runner.desk.broker
        self.client = client
        self.sender = V20Sender(self.book, client)
        self.poller = poller
        self.adopt = adopt
        self.reconcile_every_s = reconcile_every_s
        self.lock = asyncio.Lock()
        self.ticks = 0
        self.reconcile_counts = {"in_sync": 0, "differences": 0, "unknown": 0}
        if not poller.wall_clock:  # the broker's clock is not ours (the fake): the newest bar is now
            runner.clock = lambda: max((t + runner.desk.tf_s for t in runner.gate.last.values()), default=0)
        self.last_reconcile: ReconcileResult | None = None
        self.prefix = f"{runner.cfg.desk}-{runner.desk.scenario}-"
        self.busy_since: float | None = None  # perf_counter() while a tick or reconciliation runs
        self.stop = asyncio.Event()  # set when the daemon begins to stop (pass it to serve_live)
        self._watches: list[list] = []  # events seen while send_now waits for outcomes
        for kind in _OUTCOME_EVENTS:
            runner.desk.bus.subscribe(kind, self._seen)

    @property
    def stopping(self) -> bool:
        """The daemon has begun to stop: :attr:`stop` is set, or the broker client is closed
        (``deskd run`` closes it once the live loop has returned). Nothing more may be sent."""
        http = getattr(self.client, "_session", None)  # the V20Client's aiohttp session
        return self.stop.is_set() or bool(http is not None and http.closed)

    def _seen(self, event) -> None:
        for seen in self._watches:
            seen.append(event)

    # -- start-up ---------------------------------------------------------------------------
    async def start(self) -> list[ReconcileDiff]:
        """Warm up, restore, settle what the broker did while the daemon was away, reconcile
        (SAFE_MODE on differences), then feed the bars closed since the store's last one.
        Raises BrokerError when the broker cannot be read: the daemon does not trade blind."""
        async with self._turn():
            r = self.runner
            self.sender.last_tx_id = (await self.client.summary())["lastTransactionID"]
            bars = await self.poller.fetch(since_last=False)
            if r.snapshot is None and bars:  # a new desk: history before it is warm-up only
                for bar in bars:
                    r.cursor[bar.symbol] = max(r.cursor.get(bar.symbol, bar.bar_ts), bar.bar_ts)
            warm = [bar for bar in bars if r.is_warm_up(bar)]
            for bar in warm:
                r.feed(bar)
            r.ensure_restored()
            r.gate.last.update(r.cursor)
            await self._settle_restored()
            diffs = await self._reconcile(adopt=self.adopt)
            unknown = [x for x in diffs if x.field == "foreign_trade" or x.expected == "flat"]
            if unknown and not self.adopt:
                log.warning("broker trades this desk's store does not know were NOT adopted; they are "
                            "reported until settled at the broker, or restart with --adopt to take them over",
                            symbols=sorted({x.symbol for x in unknown}))
            self.poller.feed([bar for bar in bars if not r.is_warm_up(bar)])
            await self.sender.send(self._withdraw)
            r.writer.commit()
            return diffs

    async def _settle_restored(self) -> None:
        """Orders the store left SUBMITTED and positions it holds, against the broker."""
        b, d = self.book, self.desk
        restored, b.restored = b.restored, []
        for order in restored:
            if order.intent is not Intent.ENTRY:
                b.track_exit(order)  # its close may be in the transactions read below
                b.submit(order)      # else it is still wanted: sent again with the next orders
                continue
            got = await self.client.order_by_client_id(order.client_order_id)
            if got is not None and got.get("fillingTransactionID"):
                tx = await self.client.transaction(got["fillingTransactionID"])
                log.info("order answered while the daemon was away", order_id=order.client_order_id)
                b.entry_filled(order, opened(tx))
            else:
                d.cancel_order(order, "not at the broker after a restart: never sent, too late now")
        for sym, t in list(d.ledger.open.items()):
            if sym not in b.trade_ids:
                cid = t.client_order_id
                bt = await self.client.trade(cid.removeprefix(FOREIGN_ID) if cid.startswith(FOREIGN_ID)
                                             else f"@{cid}")
                if bt is None:
                    continue  # reconciliation reports it: the broker never had it
                b.trade_ids[sym] = bt["id"]
            else:
                bt = await self.client.trade(b.trade_ids[sym])
            if bt is not None and bt.get("state") == "CLOSED":
                for tx_id in bt.get("closingTransactionIDs") or []:
                    found = b.on_transaction(await self.client.transaction(tx_id))
                    if found:
                        self._mismatch(found)

    # -- the tick ---------------------------------------------------------------------------
    async def tick(self) -> int:
        """The candles closed since the last tick, the transactions since the last one seen
        (so every fill inside those bars is known before they are fed), the bars through the
        pipeline, the orders they produced, commit; reconciliation when due. A broker that
        cannot be read, or answers what cannot be parsed, is an execution error and nothing
        is fed blind (the next tick fetches the same bars again). Returns the bars fed."""
        async with self._turn():
            self.ticks += 1
            d = self.desk
            try:  # candles first: every fill inside a bar fetched is then in the transactions
                bars = await self.poller.fetch()
                found = await self.sender.poll_transactions()
                found += await self.sender.resolve_unknown()
                if found:
                    self._mismatch(found)
            except (BrokerError, KeyError, ValueError, TypeError) as e:
                log.error("broker unreachable this tick", error=f"{type(e).__name__}: {e}")
                d.broker_error(f"broker unreachable: {e}")
                self.runner.writer.commit()
                return 0
            self.poller.feed(bars)
            await self.sender.send(self._withdraw)
            self.runner.writer.commit()
            due = self.last_reconcile is None or \
                time.monotonic() - self.last_reconcile.at >= self.reconcile_every_s
        if due and not self.stopping:
            try:
                await self.reconcile_now()
            except BrokerError as e:
                log.error("scheduled reconciliation: broker unreachable, result unknown", error=str(e))
                d.broker_error(f"reconciliation could not read the broker: {e}")
        return len(bars)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """The session's lock, held by one of start-up, a tick, an operator's sends or a
        reconciliation at a time, and marked busy while held (``busy_since``, which the
        watchdog reads: a turn that never ends stops its pings)."""
        async with self.lock:
            self.busy_since = time.perf_counter()
            try:
                yield
            finally:
                self.busy_since = None

    def _withdraw(self, order: OrderIntent) -> bool:
        """An entry still queued when the desk no longer allows entries is cancelled."""
        d = self.desk
        if d.state.allows_entries:
            return False
        d.cancel_order(order, f"not sent: desk {d.state.state.value}")
        return True

    async def send_now(self, symbols: Iterable[str] = ()) -> dict[str, ExitOutcome]:
        """Send the orders queued outside a tick (an operator's flatten), commit, and return
        what became of closing each of ``symbols`` (:class:`ExitOutcome`), from the fills,
        rejections and cancellations published meanwhile (a tick already in flight may be the
        one that sends them). Raises ShuttingDown when the daemon began to stop before the
        lock was free: nothing is sent (the orders stay committed for the next start)."""
        d = self.desk
        exits = {oid: sym for sym, oid in d.orders.exit_on.items()}
        seen: list = []
        self._watches.append(seen)
        try:
            async with self._turn():
                if self.stopping:
                    raise ShuttingDown("the daemon is stopping: nothing sent to the broker")
                await self.sender.send(self._withdraw)
                self.runner.writer.commit()
                return {sym: self._exit_outcome(sym, seen, exits) for sym in symbols}
        finally:
            self._watches.remove(seen)

    def _exit_outcome(self, sym: str, seen: list, exits: dict[str, str]) -> ExitOutcome:
        """The outcome of closing ``sym`` from the events ``seen`` and the desk's books;
        ``exits`` maps client order ids of the exits open before them to their symbols."""
        d = self.desk
        exits = {**exits, **{e.client_order_id: e.symbol for e in seen
                             if isinstance(e, OrderIntent) and e.intent is Intent.EXIT}}
        fills = [e for e in seen if isinstance(e, Fill) and e.symbol == sym and e.intent is Intent.EXIT]
        fills += self.book.exits_due.get(sym, [])  # closed at the broker, booked in its bar
        if fills:
            f = fills[-1]
            return ExitOutcome(sym, CLOSED, price=f.price, exit_reason=None if f.exit_reason is None
                               else str(f.exit_reason))
        if sym not in d.ledger.open:
            return ExitOutcome(sym, CLOSED)
        oid = d.orders.exit_on.get(sym)
        if oid is not None and d.orders.status(oid) is OrderStatus.UNKNOWN:
            why = [e.reason for e in seen if isinstance(e, OrderUnknown) and e.symbol == sym]
            return ExitOutcome(sym, UNKNOWN, error=why[-1] if why else "the broker has not confirmed the close")
        why = [e.reason for e in seen
               if (isinstance(e, OrderRejected) and e.symbol == sym and e.intent is Intent.EXIT)
               or (isinstance(e, OrderCancelled) and exits.get(e.client_order_id) == sym)]
        if why:
            return ExitOutcome(sym, FAILED, error=why[-1])
        return ExitOutcome(sym, UNKNOWN, error="no answer from the broker yet")

    # -- reconciliation ---------------------------------------------------------------------
    async def reconcile_now(self, book_broker_closes: bool = False) -> list[ReconcileDiff]:
        """Reconcile now (on schedule or an operator's demand). With ``book_broker_closes``
        the unexplained broker-side closes are first booked at the broker's price. Raises
        BrokerError when the broker cannot be read (the result is unknown, not "in sync")."""
        async with self._turn():
            if self.stopping:
                raise ShuttingDown("the daemon is stopping: not reconciling on a closed broker client")
            if book_broker_closes:
                for sym in list(self.book.unexplained):
                    log.warning("operator books the broker's close", symbol=sym)
                    self.book.book_unexplained(sym)
            try:
                return await self._reconcile(adopt=False)
            except BrokerError:
                self.reconcile_counts["unknown"] += 1
                raise
            finally:
                self.runner.writer.commit()

    async def _reconcile(self, adopt: bool) -> list[ReconcileDiff]:
        d, b = self.desk, self.book
        trades, at_id = await self.client.open_trades_snapshot()
        found = await self.sender.poll_transactions(until_id=at_id)  # the desk as of the broker's snapshot
        if found:
            self._mismatch(found)
        if adopt:
            self._adopt(trades)
        due = b.open_exit_due()
        expected = {s: Holding(s, t.side, t.units, t.entry_price, t.sl_price, t.tp_price)
                    for s, t in d.ledger.open.items() if s not in due}
        held, foreign = broker_holdings(trades, self.prefix,
                                        {t.client_order_id for t in d.ledger.open.values()})
        diffs = reconcile(expected, held, foreign)
        self.reconcile_counts["differences" if diffs else "in_sync"] += 1
        if not diffs:
            d.state.reconciled_clean = True
        self.last_reconcile = ReconcileResult(diffs, time.monotonic())
        if diffs:
            for x in diffs:
                log.error("reconciliation difference", symbol=x.symbol, field=x.field,
                          expected=x.expected, broker=x.broker, note=x.note)
            d.reconcile_mismatch(f"reconciliation: {len(diffs)} difference(s), first {diffs[0].symbol} "
                                f"{diffs[0].field}")
        else:
            log.info("reconciled: in sync with the broker", positions=len(expected))
        return diffs

    def _mismatch(self, found: list[str]) -> None:
        for f in found:
            log.error("unexplained close at the broker", detail=f)
        self.desk.reconcile_mismatch(found[0])

    def _adopt(self, trades: list[dict]) -> None:
        """Take over open broker trades the store does not know, on the universe's symbols
        where the desk is flat: one trade per symbol, with a stop-loss (every desk position
        has one). Others stay differences."""
        d = self.desk
        known = {t.client_order_id for t in d.ledger.open.values()}
        by_sym: dict[str, list[dict]] = {}
        for t in trades:
            if client_id(t) not in known:
                by_sym.setdefault(to_symbol(t["instrument"]), []).append(t)
        for sym, ts in sorted(by_sym.items()):
            t = ts[0]
            why = None
            if sym not in d.instruments:
                why = "symbol outside the desk's universe"
            elif sym in d.ledger.open:
                why = "the desk already holds this symbol"
            elif len(ts) > 1:
                why = f"{len(ts)} trades on one symbol"
            elif not t.get("stopLossOrder"):
                why = "no stop-loss attached"
            if why is not None:
                log.warning("broker trade not adopted", symbol=sym, trade_id=t["id"], why=why)
                continue
            self._adopt_one(sym, t)

    def _adopt_one(self, sym: str, t: dict) -> None:
        d, b = self.desk, self.book
        units = float(t["currentUnits"])
        side = 1 if units > 0 else -1
        price, sl = float(t["price"]), float(t["stopLossOrder"]["price"])
        tp = float(t["takeProfitOrder"]["price"]) if t.get("takeProfitOrder") else None
        risk_usd = abs(price - sl) * abs(units) * d.conv.quote_usd(sym, price)
        cid = client_id(t)
        ts = parse_time(t["openTime"])
        trade = Trade(d.ledger.next_trade_id, sym, ADOPTED, side, abs(units), ts, ts, price, price, sl, tp,
                      risk_usd, 0.0, "", "adopted from the broker", cid)
        d.ledger.next_trade_id += 1
        notional = abs(units) * price * d.conv.quote_usd(sym, price)
        d.adopt_position(trade, 0.0, notional)
        b.trade_ids[sym] = t["id"]
        log.warning("broker trade adopted", symbol=sym, trade_id=t["id"], units=units, price=price,
                    sl_price=sl, tp_price=tp, opened=iso(ts))
