"""``deskd run --broker http``: the desk trading through an OANDA v20 REST broker.

:class:`HttpBroker` is the Desk's broker, as the paper broker is in a backtest: the bar
pipeline stays synchronous and only queues orders; after the bar (committed, order rows
SUBMITTED), :meth:`HttpBroker.send` sends them and publishes what the broker answered -
a Fill with the broker's price, or OrderRejected (an execution error for the state machine).

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

:class:`LiveSession` runs the daemon around it: start-up (warm-up from the broker's candles,
restore from the store, orders a crash left unanswered, positions closed while the daemon
was down, reconciliation before any trading, optional adoption of unknown broker trades), the
tick (transactions, then candles through the pipeline, then orders, then commit), and
reconciliation on a schedule and on demand.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from deskd.adapters.http_broker import BrokerError, BrokerRejected, V20Client
from deskd.adapters.oanda import parse_time, price_str, round_price, to_symbol
from deskd.adapters.paper import Position
from deskd.daemon.bus import Bus
from deskd.daemon.events import (BarClosed, Fill, Intent, OrderCancelled, OrderIntent, OrderRejected,
                                 Trade)
from deskd.daemon.journal import iso
from deskd.daemon.reconcile import FOREIGN_ID, Holding, ReconcileDiff, broker_holdings, client_id, reconcile
from deskd.risk.money import Instrument

log = structlog.get_logger("deskd.live")

#: v20 ORDER_FILL reasons the desk books by itself, and the exit reason it records
EXPLAINED_CLOSES = {"STOP_LOSS_ORDER": "SL", "TAKE_PROFIT_ORDER": "TP",
                    "MARKET_ORDER_MARGIN_CLOSEOUT": "MARGIN_CLOSEOUT"}
ADOPTED = "adopted"


class HttpBroker:
    """The Desk's broker over a :class:`V20Client` (see the module docstring).

    ``pending`` holds orders decided but not yet sent; ``positions`` the desk's open trades
    with their brackets; ``trade_ids`` the broker's trade id per symbol. Raises KeyError on an
    order for a symbol outside ``instruments``.
    """

    def __init__(self, bus: Bus, instruments: dict[str, Instrument], client: V20Client):
        self.bus = bus
        self.instruments = instruments
        self.client = client
        self.pending: dict[str, list[OrderIntent]] = {}
        self.positions: dict[str, Position] = {}
        self.last_bar: dict[str, BarClosed] = {}
        self.trade_ids: dict[str, str] = {}
        self.exits_due: dict[str, list[Fill]] = {}   # broker-side exits waiting for their bar
        self.unexplained: dict[str, dict] = {}       # symbol -> closing transaction not booked
        self.booked_tx: set[str] = set()             # transaction ids already booked
        self.last_tx_id = "0"

    # -- the Desk's side (synchronous) ----------------------------------------------------
    def submit(self, order: OrderIntent) -> bool:
        """Queue ``order`` for :meth:`send` (after the bar); always True."""
        if order.symbol not in self.instruments:
            raise KeyError(f"http broker: unknown symbol {order.symbol}")
        self.pending.setdefault(order.symbol, []).append(order)
        return True

    def on_bar(self, bar: BarClosed) -> None:
        """Book broker-side exits that happened before this bar's close."""
        sym = bar.symbol
        self.last_bar[sym] = bar
        due = self.exits_due.get(sym)
        while due and due[0].bar_ts < bar.close_ts:
            self.bus.publish(due.pop(0))

    def cancel_pending(self, symbol: str | None = None) -> list[OrderIntent]:
        """Drop unsent orders (all symbols when ``symbol`` is None); returns them."""
        if symbol is None:
            out = [o for orders in self.pending.values() for o in orders]
            self.pending.clear()
            return out
        return self.pending.pop(symbol, [])

    def close_at_last(self, reason: str = "EOD") -> None:
        raise RuntimeError("a live broker has no end of data: flatten closes positions")

    def open_exit_due(self) -> set[str]:
        """Symbols whose position the broker closed (explained) but the ledger has not booked
        yet: reconciliation expects them flat."""
        return {s for s, fills in self.exits_due.items() if fills}

    # -- orders (async, after the bar) ----------------------------------------------------------
    async def send(self, withdraw=None) -> int:
        """Send every queued order; publish each outcome. ``withdraw(order) -> bool`` is asked
        before each entry goes out and may withdraw it (the desk stopped allowing entries
        while earlier orders failed). Returns how many were sent."""
        n = 0
        while self.pending:
            sym = next(iter(self.pending))
            for order in self.pending.pop(sym):
                if order.intent is Intent.ENTRY:
                    if withdraw is not None and withdraw(order):
                        continue
                    await self._send_entry(order)
                else:
                    await self._send_exit(order)
                n += 1
        return n

    async def _send_entry(self, order: OrderIntent) -> None:
        sym = order.symbol
        sl_dist_price, tp_dist_price = self._distances(order)
        try:
            got = await self.client.market_order(sym, order.side * int(order.units), order.client_order_id,
                                                 sl_distance=sl_dist_price, tp_distance=tp_dist_price)
        except BrokerError as e:
            self._reject(order, str(e))
            return
        self.entry_filled(order, got)

    def _distances(self, order: OrderIntent) -> tuple[float, float | None]:
        """Bracket distances in price units, as v20 will read them (a tenth of a pip)."""
        sym, pip = order.symbol, self.instruments[order.symbol].pip_size
        sl = float(price_str(order.sl_pips * pip, sym))
        return sl, None if order.tp_pips is None else float(price_str(order.tp_pips * pip, sym))

    def entry_filled(self, order: OrderIntent, got: dict) -> None:
        """Publish the entry Fill of ``order`` from the broker's answer ({"price", "time",
        "trade_id"}); its bracket levels are the fill price -/+ the distances sent."""
        sym, side = order.symbol, order.side
        sl_dist_price, tp_dist_price = self._distances(order)
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
        self.bus.publish(Fill(got["time"], order.client_order_id, sym, order.strategy_id, side,
                              order.units, Intent.ENTRY, ref, price, side * (price - ref) / pip,
                              sl_price=sl, tp_price=tp))

    async def _send_exit(self, order: OrderIntent) -> None:
        sym = order.symbol
        tid = self.trade_ids.get(sym)
        if tid is None or sym in self.unexplained or sym not in self.positions:
            self.bus.publish(OrderCancelled(order.bar_ts, order.client_order_id,
                                            "no open desk trade at the broker to close"))
            return
        try:
            tx = await self.client.close_trade(tid)
        except BrokerRejected as e:
            if e.status == 404:  # closed at the broker already; its transaction explains how
                self.bus.publish(OrderCancelled(order.bar_ts, order.client_order_id,
                                                f"trade {tid} already closed at the broker"))
                return
            self._reject(order, str(e))
            return
        except BrokerError as e:
            self._reject(order, str(e))
            return
        self.booked_tx.add(tx["id"])
        bar = self.last_bar[sym]
        reason = EXPLAINED_CLOSES.get(tx.get("reason", ""), order.exit_reason or "MARKET")
        self.bus.publish(self._exit_fill(sym, tx, float(tx["price"]), order.client_order_id, reason, bar.close))

    def _reject(self, order: OrderIntent, reason: str) -> None:
        log.error("order failed", symbol=order.symbol, order_id=order.client_order_id, error=reason)
        self.bus.publish(OrderRejected(order.bar_ts, order.client_order_id, reason, order.symbol, order.intent))

    def _exit_fill(self, sym: str, tx: dict, price: float, order_id: str, reason: str, ref: float) -> Fill:
        """The exit Fill of the desk's position on ``sym`` (which leaves ``positions``)."""
        pos = self.positions.pop(sym)
        self.trade_ids.pop(sym, None)
        pip = self.instruments[sym].pip_size
        return Fill(parse_time(tx["time"]), order_id, sym, pos.order.strategy_id, -pos.side, pos.units,
                    Intent.EXIT, ref, price, pos.side * (ref - price) / pip, exit_reason=reason)

    # -- what happened at the broker ------------------------------------------------------
    async def poll_transactions(self, until_id: int | None = None) -> list[str]:
        """Read the transactions since the last one seen (up to ``until_id`` when given: the
        moment of a broker snapshot); returns the unexplained closes found (descriptions).
        Raises BrokerError."""
        txs, last = await self.client.transactions_since(int(self.last_tx_id))
        if txs:  # a page may stop short of the account's last transaction: go on from it next time
            last = max(int(tx["id"]) for tx in txs)
        if until_id is not None:
            txs = [tx for tx in txs if int(tx["id"]) <= until_id]
            last = max(min(last, until_id), int(self.last_tx_id))
        found = []
        for tx in txs:
            found += self.on_transaction(tx)
        self.last_tx_id = str(last)
        return found

    def on_transaction(self, tx: dict) -> list[str]:
        """Book a broker-side close of a desk trade (stop-loss, take-profit, margin
        closeout) at the broker's price, in the bar it happened; remember any other close
        as unexplained. Returns descriptions of the unexplained ones."""
        if tx.get("type") != "ORDER_FILL" or tx["id"] in self.booked_tx:
            return []
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
            if reason is None or closed is tx.get("tradeReduced"):
                self.unexplained[sym] = {**tx, "tradeID": closed["tradeID"], "closePrice": price}
                found.append(f"{sym}: trade {closed['tradeID']} closed at the broker "
                             f"({tx.get('reason', '?')}, transaction {tx['id']}, price {price:g}); not booked")
                continue
            pos = self.positions[sym]
            ref = pos.sl_price if reason == "SL" else pos.tp_price if reason == "TP" else price
            fill = self._exit_fill(sym, tx, price, f"{pos.order.client_order_id}:{reason}", reason, ref)
            log.info("broker-side exit", symbol=sym, reason=reason, price=price, transaction=tx["id"])
            bar = self.last_bar.get(sym)
            if bar is not None and bar.close_ts > fill.bar_ts:
                self.bus.publish(fill)  # its bar is already behind us
            else:
                self.exits_due.setdefault(sym, []).append(fill)
        return found

    def book_unexplained(self, sym: str) -> None:
        """An operator accepts the broker's close of ``sym``: book it at the broker's price
        (exit reason BROKER_CLOSE)."""
        tx = self.unexplained.pop(sym)
        pos = self.positions[sym]
        self.bus.publish(self._exit_fill(sym, tx, tx["closePrice"], f"{pos.order.client_order_id}:BROKER_CLOSE",
                                         "BROKER_CLOSE", tx["closePrice"]))


@dataclass
class ReconcileResult:
    diffs: list[ReconcileDiff]
    at: float


class LiveSession:
    """The live daemon's loop around a DeskRunner whose desk trades through an HttpBroker.

    ``poller`` is the CandlePoller of the broker's candles; ``adopt`` takes over broker
    trades the store does not know (only with a stop-loss, one per symbol) instead of only
    reporting them; ``reconcile_every_s`` schedules reconciliation between ticks.
    """

    def __init__(self, runner, poller, adopt: bool = False, reconcile_every_s: float = 300.0):
        self.runner = runner
        self.desk = runner.desk
        self.broker: HttpBroker = runner.desk.broker
        self.client = self.broker.client
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

    # -- start-up ---------------------------------------------------------------------------
    async def start(self) -> list[ReconcileDiff]:
        """Warm up, restore, settle what the broker did while the daemon was away, reconcile
        (SAFE_MODE on differences), then feed the bars closed since the store's last one.
        Raises BrokerError when the broker cannot be read: the daemon does not trade blind."""
        async with self.lock:
            r, b = self.runner, self.broker
            b.last_tx_id = (await self.client.summary())["lastTransactionID"]
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
            await b.send(self._withdraw)
            r.writer.commit()
            return diffs

    async def _settle_restored(self) -> None:
        """Orders the store left SUBMITTED and positions it holds, against the broker."""
        b, d = self.broker, self.desk
        for sym, orders in list(b.pending.items()):
            for order in [o for o in orders if o.intent is Intent.ENTRY]:
                orders.remove(order)
                got = await self.client.order_by_client_id(order.client_order_id)
                if got is not None and got.get("fillingTransactionID"):
                    tx = await self.client.transaction(got["fillingTransactionID"])
                    log.info("order answered while the daemon was away", order_id=order.client_order_id)
                    b.entry_filled(order, {"price": float(tx["price"]), "time": parse_time(tx["time"]),
                                           "trade_id": (tx.get("tradeOpened") or {}).get("tradeID")})
                else:
                    d.cancel_entry(order, "not at the broker after a restart: never sent, too late now")
            if not orders:
                del b.pending[sym]
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
        async with self.lock:
            self.ticks += 1
            d = self.desk
            try:  # candles first: every fill inside a bar fetched is then in the transactions
                bars = await self.poller.fetch()
                found = await self.broker.poll_transactions()
                if found:
                    self._mismatch(found)
            except (BrokerError, KeyError, ValueError, TypeError) as e:
                log.error("broker unreachable this tick", error=f"{type(e).__name__}: {e}")
                d.broker_error(f"broker unreachable: {e}")
                self.runner.writer.commit()
                return 0
            self.poller.feed(bars)
            await self.broker.send(self._withdraw)
            self.runner.writer.commit()
            due = self.last_reconcile is None or \
                time.monotonic() - self.last_reconcile.at >= self.reconcile_every_s
        if due:
            try:
                await self.reconcile_now()
            except BrokerError as e:
                log.error("scheduled reconciliation: broker unreachable, result unknown", error=str(e))
                d.broker_error(f"reconciliation could not read the broker: {e}")
        return len(bars)

    def _withdraw(self, order: OrderIntent) -> bool:
        """An entry still queued when the desk no longer allows entries is cancelled."""
        d = self.desk
        if d.state.allows_entries:
            return False
        d.cancel_entry(order, f"not sent: desk {d.state.state.value}")
        return True

    async def send_now(self) -> None:
        """Send orders queued outside a tick (an operator's flatten), and commit."""
        async with self.lock:
            await self.broker.send(self._withdraw)
            self.runner.writer.commit()

    # -- reconciliation ---------------------------------------------------------------------
    async def reconcile_now(self, book_broker_closes: bool = False) -> list[ReconcileDiff]:
        """Reconcile now (on schedule or an operator's demand). With ``book_broker_closes``
        the unexplained broker-side closes are first booked at the broker's price. Raises
        BrokerError when the broker cannot be read (the result is unknown, not "in sync")."""
        async with self.lock:
            if book_broker_closes:
                for sym in list(self.broker.unexplained):
                    log.warning("operator books the broker's close", symbol=sym)
                    self.broker.book_unexplained(sym)
            try:
                return await self._reconcile(adopt=False)
            except BrokerError:
                self.reconcile_counts["unknown"] += 1
                raise
            finally:
                self.runner.writer.commit()

    async def _reconcile(self, adopt: bool) -> list[ReconcileDiff]:
        d, b = self.desk, self.broker
        trades, at_id = await self.client.open_trades_snapshot()
        found = await b.poll_transactions(until_id=at_id)  # the desk as of the broker's snapshot
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
        d, b = self.desk, self.broker
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
