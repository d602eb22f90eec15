"""A fake OANDA v20 REST broker (aiohttp) for tests and demos.

It serves the subset of the v20 API deskd uses, with v20's paths, status codes and JSON
shapes (decimal numbers as strings, RFC 3339 times), so OANDA's own ``v20`` Python client
can read it. Its market is a set of bar files: ``POST /admin/advance {"bars": n}`` moves its clock n
bar times forward, releasing the bars that open then (the only way time passes); a market order fills at the
OPEN of the first bar not yet released, as in deskd's contract; stop-loss and take-profit
orders attached on fill rest at the broker and fill inside released bars (gap through a
level: at the open; both touched: the stop). Fills are at mid, without spread.

Served: GET /v3/accounts, /v3/accounts/{id}/summary, /openPositions, /positions,
/openTrades, /trades, /trades/{id or @clientID}, /orders/@{clientID}, /transactions/sinceid,
/transactions/{id}; POST /v3/accounts/{id}/orders (MARKET with stopLossOnFill/takeProfitOnFill
by price or distance, clientExtensions, tradeClientExtensions); PUT .../trades/{id}/close;
GET /v3/instruments/{instrument}/candles. Every /v3 call needs ``Authorization: Bearer``.

Faults, queued with ``POST /admin/faults {"faults": [{"kind": K, "path": "orders", "count": n,
...}]}``: ``latency`` (``delay_s``, then served), ``5xx`` (503), ``429`` (``retry_after_s``),
``drop`` (connection closed, nothing done), ``malformed`` (a 200 whose body is not JSON),
``lose_response`` (the request is carried out, then the connection is closed: the client
never hears), ``resend_404`` (the request is carried out, and the client hears the 404 that
its HTTP library's transparent re-send of the idempotent PUT got: a close whose answer was lost
on a dropped keep-alive connection), ``reject`` (an order rejected, 400 with an
orderRejectTransaction). Lookups that time out are ``latency`` on ``/orders/@`` with a delay
past the client's timeout; a close held at the broker while the daemon is killed is ``latency``
on ``/close`` (the fake carries it out after the delay, whoever is still listening); a malformed
Retry-After is ``429`` with ``retry_after_s`` set to any string (``"nan"``). ``POST /admin/close {"tradeID": id}`` closes a trade by hand
at the last price. With ``state_file`` every change is saved and a restarted fake reloads it:
a restart forgets nothing. Every request is logged in ``requests`` (time, method, path, status)
for tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web

from deskd.adapters.bars import read_bars
from deskd.adapters.v20.naming import parse_time, price_str, rfc3339, round_price, to_instrument, to_symbol
from deskd.core.money import Instrument, QuoteConverter


@dataclass
class FakeTrade:
    id: int
    symbol: str
    units: int  # signed: positive long
    price: float
    open_ts: int
    client_id: str | None
    sl_price: float | None
    tp_price: float | None
    state: str = "OPEN"
    close_price: float | None = None
    close_ts: int | None = None
    realized_pl: float = 0.0
    closing_tx_id: str | None = None


@dataclass
class FakeV20:
    """Broker state. ``bars`` maps symbol -> [(bar open ts, o, h, l, c), ...]."""

    bars: dict[str, list[tuple[int, float, float, float, float]]]
    timeframe_s: int
    account_id: str = "101-001-0000000-001"
    token: str = "fake-v20-token"
    balance: float = 100_000.0
    released: dict[str, int] = field(default_factory=dict)
    trades: dict[int, FakeTrade] = field(default_factory=dict)
    orders_by_client_id: dict[str, dict] = field(default_factory=dict)
    transactions: list[dict] = field(default_factory=list)
    created_ts: int = 0
    faults: list[dict] = field(default_factory=list)
    state_file: str | None = None
    requests: list[tuple[float, str, str, int]] = field(default_factory=list)  # (monotonic s, method, path, status)

    @classmethod
    def from_files(cls, files: dict[str, str], timezone: str | dict[str, str], timeframe_s: int,
                   **kw) -> FakeV20:
        """A fake broker whose market is ``files`` (symbol -> bar file), read in ``timezone``
        (one zone, or symbol -> zone). Raises BarFileError."""
        bars = {}
        for sym, path in files.items():
            rows: list[tuple[int, float, float, float, float]] = []
            zone = timezone if isinstance(timezone, str) else timezone[sym]
            for ch in read_bars(Path(path), zone, timeframe_s):
                rows.extend(zip(ch.ts.tolist(), ch.open.tolist(), ch.high.tolist(),
                                ch.low.tolist(), ch.close.tolist()))
            bars[sym] = rows
        return cls(bars, timeframe_s, **kw)

    def __post_init__(self) -> None:
        for sym in self.bars:
            self.released.setdefault(sym, 0)
        self.created_ts = min((rows[0][0] for rows in self.bars.values() if rows), default=0)
        self._conv = QuoteConverter({s: Instrument.parse(s) for s in self.bars})
        if self.state_file and Path(self.state_file).exists():
            self._load()

    # -- persistence: a restart forgets nothing -----------------------------------------------
    def save(self) -> None:
        if not self.state_file:
            return
        state = {"balance": self.balance, "released": self.released,
                 "trades": [asdict(t) for t in self.trades.values()],
                 "orders_by_client_id": self.orders_by_client_id, "transactions": self.transactions}
        tmp = f"{self.state_file}.tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_file)

    def _load(self) -> None:
        assert self.state_file is not None
        with open(self.state_file) as fh:
            state = json.load(fh)
        self.balance = state["balance"]
        self.released.update(state["released"])
        self.trades = {t["id"]: FakeTrade(**t) for t in state["trades"]}
        self.orders_by_client_id = state["orders_by_client_id"]
        self.transactions = state["transactions"]

    def take_fault(self, method: str, path: str) -> dict | None:
        """The first queued fault matching this request, counted down."""
        for f in self.faults:
            if f.get("count", 1) > 0 and f.get("path", "") in path and f.get("method", method) == method:
                f["count"] = f.get("count", 1) - 1
                return f
        return None

    def close_by_hand(self, trade_id: int) -> dict:
        """The trader closes a trade on the broker's side, at the last price."""
        t = self.trades[trade_id]
        n = self.released[t.symbol]
        price = self.bars[t.symbol][n - 1][4] if n else t.price
        return self._close(t, price, self.now_ts(), "MARKET_ORDER_TRADE_CLOSE")

    # -- market -----------------------------------------------------------------------------
    def now_ts(self) -> int:
        """The broker's clock: the close of the latest released bar."""
        ends = [self.bars[s][n - 1][0] + self.timeframe_s for s, n in self.released.items() if n]
        return max(ends, default=self.created_ts)

    def last_price(self, sym: str) -> float | None:
        n = self.released[sym]
        return self.bars[sym][n - 1][4] if n else None

    def advance(self, n: int) -> int:
        """Move the market ``n`` bar times forward: each step releases, for every instrument,
        the bar opening at the earliest time not yet released (an instrument without a bar at
        that time releases none), filling resting stops and targets inside it. Returns how
        many bars were released."""
        count = 0
        for _ in range(n):
            nxt = [rows[self.released[s]][0] for s, rows in self.bars.items() if self.released[s] < len(rows)]
            if not nxt:
                break
            t = min(nxt)
            for sym, rows in self.bars.items():
                i = self.released[sym]
                if i < len(rows) and rows[i][0] == t:
                    self.released[sym] = i + 1
                    count += 1
                    self._brackets(sym, rows[i])
        return count

    def _brackets(self, sym: str, bar: tuple) -> None:
        ts, o, h, lo, _ = bar
        for t in [t for t in self.trades.values() if t.symbol == sym and t.state == "OPEN"]:
            long = t.units > 0
            sl, tp = t.sl_price, t.tp_price
            hit = None
            if sl is not None and (o <= sl if long else o >= sl):
                hit = ("STOP_LOSS_ORDER", o)
            elif tp is not None and (o >= tp if long else o <= tp):
                hit = ("TAKE_PROFIT_ORDER", o)
            elif sl is not None and (lo <= sl if long else h >= sl):
                hit = ("STOP_LOSS_ORDER", sl)
            elif tp is not None and (h >= tp if long else lo <= tp):
                hit = ("TAKE_PROFIT_ORDER", tp)
            if hit:
                self._close(t, hit[1], ts, hit[0])

    # -- bookkeeping ----------------------------------------------------------------------
    def _tx(self, kind: str, ts: int, **fields) -> dict:
        tx = {"id": str(len(self.transactions) + 1), "time": rfc3339(ts), "type": kind,
              "accountID": self.account_id, "userID": 1, "batchID": str(len(self.transactions) + 1),
              **fields}
        self.transactions.append(tx)
        return tx

    def _quote_usd(self, sym: str, price: float) -> float:
        """USD per quote unit, through deskd's one converter (crosses use their USD leg's
        last released close)."""
        conv = self._conv
        for leg in conv.legs:
            last = self.last_price(leg)
            if last is not None:
                conv.last_price[leg] = last
        return conv.quote_usd(sym, price)

    def _pl(self, t: FakeTrade, price: float) -> float:
        return (price - t.price) * t.units * self._quote_usd(t.symbol, price)

    def _close(self, t: FakeTrade, price: float, ts: int, reason: str) -> dict:
        pl = self._pl(t, price)
        t.state, t.close_price, t.close_ts, t.realized_pl = "CLOSED", price, ts, pl
        self.balance += pl
        tx = self._tx("ORDER_FILL", ts, instrument=to_instrument(t.symbol), units=str(-t.units),
                        price=price_str(price, t.symbol), fullPrice=_full_price(price, t.symbol),
                        reason=reason, pl=f"{pl:.4f}",
                        accountBalance=f"{self.balance:.4f}",
                        tradesClosed=[{"tradeID": str(t.id), "units": str(-t.units),
                                       "price": price_str(price, t.symbol), "realizedPL": f"{pl:.4f}"}])
        t.closing_tx_id = tx["id"]
        return tx

    def market_order(self, order: dict) -> tuple[int, dict]:
        """A MARKET order body -> (HTTP status, v20 response)."""
        sym = to_symbol(order.get("instrument", ""))
        if sym not in self.bars:
            return 400, {"errorCode": "INVALID_INSTRUMENT", "errorMessage": f"unknown instrument {order.get('instrument')}"}
        units = int(float(order["units"]))
        client_id = (order.get("clientExtensions") or {}).get("id")
        now = self.now_ts()
        if client_id and client_id in self.orders_by_client_id:
            tx = self._tx("MARKET_ORDER_REJECT", now, rejectReason="CLIENT_ORDER_ID_ALREADY_EXISTS",
                          clientExtensions=order.get("clientExtensions"))
            return 400, {"orderRejectTransaction": tx, "errorCode": "CLIENT_ORDER_ID_ALREADY_EXISTS",
                         "errorMessage": "The client order ID specified is already assigned",
                         "lastTransactionID": tx["id"]}
        create = self._tx("MARKET_ORDER", now, instrument=order["instrument"], units=str(units),
                          timeInForce=order.get("timeInForce", "FOK"), positionFill="DEFAULT",
                          reason="CLIENT_ORDER", clientExtensions=order.get("clientExtensions"),
                          stopLossOnFill=order.get("stopLossOnFill"),
                          takeProfitOnFill=order.get("takeProfitOnFill"))
        i = self.released[sym]
        if i >= len(self.bars[sym]) or units == 0:
            cancel = self._tx("ORDER_CANCEL", now, orderID=create["id"], reason="MARKET_HALTED")
            return 201, {"orderCreateTransaction": create, "orderCancelTransaction": cancel,
                         "relatedTransactionIDs": [create["id"], cancel["id"]],
                         "lastTransactionID": cancel["id"]}
        ts, price = self.bars[sym][i][0], self.bars[sym][i][1]
        side = 1 if units > 0 else -1
        sl = _level(order.get("stopLossOnFill"), price, -side)
        tp = _level(order.get("takeProfitOnFill"), price, side)
        trade_ext = order.get("tradeClientExtensions") or order.get("clientExtensions") or {}
        trade = FakeTrade(int(create["id"]), sym, units, price, ts, trade_ext.get("id"),
                          None if sl is None else round_price(sl, sym),
                          None if tp is None else round_price(tp, sym))
        fill = self._tx("ORDER_FILL", ts, orderID=create["id"], instrument=order["instrument"],
                        units=str(units), price=price_str(price, sym), fullPrice=_full_price(price, sym),
                        reason="MARKET_ORDER",
                        accountBalance=f"{self.balance:.4f}", pl="0.0000",
                        tradeOpened={"tradeID": str(trade.id), "units": str(units),
                                     "price": price_str(price, sym), "clientExtensions": trade_ext or None})
        self.trades[trade.id] = trade
        if client_id:
            self.orders_by_client_id[client_id] = {"id": create["id"], "createTime": create["time"],
                                                   "state": "FILLED", "type": "MARKET",
                                                   "instrument": order["instrument"], "units": str(units),
                                                   "clientExtensions": order.get("clientExtensions"),
                                                   "fillingTransactionID": fill["id"],
                                                   "tradeOpenedID": str(trade.id)}
        return 201, {"orderCreateTransaction": create, "orderFillTransaction": fill,
                     "relatedTransactionIDs": [create["id"], fill["id"]], "lastTransactionID": fill["id"]}

    # -- v20 entities ---------------------------------------------------------------------
    def trade_json(self, t: FakeTrade) -> dict:
        cur = self.last_price(t.symbol) or t.price
        out: dict[str, object] = {"id": str(t.id), "instrument": to_instrument(t.symbol), "price": price_str(t.price, t.symbol),
               "openTime": rfc3339(t.open_ts), "state": t.state, "initialUnits": str(t.units),
               "currentUnits": str(t.units if t.state == "OPEN" else 0),
               "realizedPL": f"{t.realized_pl:.4f}",
               "unrealizedPL": f"{self._pl(t, cur) if t.state == 'OPEN' else 0.0:.4f}",
               "financing": "0.0000", "marginUsed": "0.0000"}
        if t.client_id:
            out["clientExtensions"] = {"id": t.client_id}
        if t.sl_price is not None:
            out["stopLossOrder"] = {"id": f"{t.id}-SL", "type": "STOP_LOSS", "tradeID": str(t.id),
                                    "price": price_str(t.sl_price, t.symbol), "state": "PENDING",
                                    "timeInForce": "GTC"}
        if t.tp_price is not None:
            out["takeProfitOrder"] = {"id": f"{t.id}-TP", "type": "TAKE_PROFIT", "tradeID": str(t.id),
                                      "price": price_str(t.tp_price, t.symbol), "state": "PENDING",
                                      "timeInForce": "GTC"}
        if t.state == "CLOSED" and t.close_price is not None and t.close_ts is not None:
            out["averageClosePrice"] = price_str(t.close_price, t.symbol)
            out["closeTime"] = rfc3339(t.close_ts)
            out["closingTransactionIDs"] = [t.closing_tx_id]
        return out

    def position_json(self, sym: str) -> dict:
        sides = {}
        total_upl = 0.0
        for name, sign in (("long", 1), ("short", -1)):
            ts = [t for t in self.trades.values() if t.symbol == sym and t.state == "OPEN" and t.units * sign > 0]
            units = sum(t.units for t in ts)
            upl = sum(self._pl(t, self.last_price(sym) or t.price) for t in ts)
            total_upl += upl
            side = {"units": str(units), "pl": "0.0000", "unrealizedPL": f"{upl:.4f}",
                    "resettablePL": "0.0000", "financing": "0.0000", "tradeIDs": [str(t.id) for t in ts]}
            if units:
                side["averagePrice"] = price_str(sum(t.price * t.units for t in ts) / units, sym)
            sides[name] = side
        pl = sum(t.realized_pl for t in self.trades.values() if t.symbol == sym)
        return {"instrument": to_instrument(sym), "pl": f"{pl:.4f}", "unrealizedPL": f"{total_upl:.4f}",
                "resettablePL": f"{pl:.4f}", "financing": "0.0000", "commission": "0.0000",
                "marginUsed": "0.0000", **sides}

    def summary_json(self) -> dict:
        open_trades = [t for t in self.trades.values() if t.state == "OPEN"]
        upl = sum(self._pl(t, self.last_price(t.symbol) or t.price) for t in open_trades)
        pl = sum(t.realized_pl for t in self.trades.values())
        return {"id": self.account_id, "alias": "deskd fake", "currency": "USD",
                "balance": f"{self.balance:.4f}", "createdTime": rfc3339(self.created_ts),
                "pl": f"{pl:.4f}", "resettablePL": f"{pl:.4f}", "financing": "0.0000",
                "commission": "0.0000", "marginRate": "0.02", "openTradeCount": len(open_trades),
                "openPositionCount": len({t.symbol for t in open_trades}), "pendingOrderCount": 0,
                "hedgingEnabled": False, "unrealizedPL": f"{upl:.4f}", "NAV": f"{self.balance + upl:.4f}",
                "marginUsed": "0.0000", "marginAvailable": f"{self.balance + upl:.4f}",
                "lastTransactionID": self.last_tx_id()}

    def last_tx_id(self) -> str:
        return str(len(self.transactions))


def _level(details: dict | None, fill_price: float, direction: int) -> float | None:
    """A stopLossOnFill/takeProfitOnFill level: its ``price``, or ``distance`` from the fill
    (``direction`` -1 below it, +1 above)."""
    if not details:
        return None
    if details.get("price") is not None:
        return float(details["price"])
    return fill_price + direction * float(details["distance"])


def _err(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"errorMessage": message}
    if code:
        body["errorCode"] = code
    return web.json_response(body, status=status)


def build_app(broker: FakeV20) -> web.Application:  # noqa: C901 (its handlers are nested, counted as one)
    """The aiohttp application serving ``broker``."""

    @web.middleware
    async def record(request: web.Request, handler):
        resp = None
        try:
            resp = await handler(request)
            return resp
        finally:
            broker.requests.append((time.monotonic(), request.method, request.path,
                                    resp.status if resp is not None else 0))

    @web.middleware
    async def auth_and_faults(request: web.Request, handler):
        if not request.path.startswith("/v3/"):
            return await handler(request)
        if request.headers.get("Authorization") != f"Bearer {broker.token}":
            return _err(401, "Insufficient authorization to perform request.")
        acc = request.match_info.get("account")
        if acc is not None and acc != broker.account_id:
            return _err(404, "The Account specified does not exist.", "NO_SUCH_ACCOUNT")
        fault = broker.take_fault(request.method, request.path) or {}
        kind = fault.get("kind")
        if kind == "latency":
            await asyncio.sleep(float(fault.get("delay_s", 1.0)))
        elif kind == "5xx":
            return _err(503, "Service Unavailable (injected)")
        elif kind == "429":
            resp = _err(429, "Too many requests (injected)")
            resp.headers["Retry-After"] = str(fault.get("retry_after_s", 1))
            return resp
        elif kind == "malformed":
            return web.Response(status=200, text="<html>502 Bad Gateway</html>", content_type="text/html")
        elif kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        elif kind == "reject" and request.method == "POST" and request.path.endswith("/orders"):
            tx = broker._tx("MARKET_ORDER_REJECT", broker.now_ts(), rejectReason="INSUFFICIENT_MARGIN")
            broker.save()
            return web.json_response({"orderRejectTransaction": tx, "errorCode": "INSUFFICIENT_MARGIN",
                                      "errorMessage": "Insufficient margin (injected)",
                                      "lastTransactionID": tx["id"]}, status=400)
        resp = await handler(request)
        if request.method in ("POST", "PUT"):
            broker.save()
        if kind == "lose_response" and request.transport is not None:
            request.transport.close()  # carried out, but the client never hears
        if kind == "resend_404":  # carried out; the re-sent request found nothing left to do
            return _err(404, "The Trade specified does not exist", "TRADE_DOESNT_EXIST")
        return resp

    def ok(body: dict, status: int = 200) -> web.Response:
        return web.json_response(body, status=status)

    async def accounts(request):
        return ok({"accounts": [{"id": broker.account_id, "tags": []}]})

    async def summary(request):
        return ok({"account": broker.summary_json(), "lastTransactionID": broker.last_tx_id()})

    async def positions(request):
        syms = sorted({t.symbol for t in broker.trades.values()
                       if t.state == "OPEN" or not request.path.endswith("openPositions")})
        return ok({"positions": [broker.position_json(s) for s in syms],
                   "lastTransactionID": broker.last_tx_id()})

    async def trades(request):
        state = "OPEN" if request.path.endswith("openTrades") else request.query.get("state", "OPEN")
        ts = [t for t in broker.trades.values() if state == "ALL" or t.state == state]
        return ok({"trades": [broker.trade_json(t) for t in sorted(ts, key=lambda t: -t.id)],
                   "lastTransactionID": broker.last_tx_id()})

    async def create_order(request):
        try:
            body = await request.json()
            order = body["order"]
        except (ValueError, KeyError, TypeError):
            return _err(400, "Invalid or malformed request body", "INVALID_REQUEST")
        if order.get("type") != "MARKET":
            return _err(400, "only MARKET orders are supported by the fake", "INVALID_ORDER_TYPE")
        status, reply = broker.market_order(order)
        return ok(reply, status)

    async def order_by_client_id(request):
        spec = request.match_info["order"]
        got = broker.orders_by_client_id.get(spec[1:]) if spec.startswith("@") else None
        if got is None:
            return _err(404, "The Order specified does not exist", "ORDER_DOESNT_EXIST")
        return ok({"order": got, "lastTransactionID": broker.last_tx_id()})

    def find_trade(spec: str):
        return next((t for t in broker.trades.values()
                     if (spec.startswith("@") and t.client_id == spec[1:]) or str(t.id) == spec), None)

    async def get_trade(request):
        t = find_trade(request.match_info["trade"])
        if t is None:
            return _err(404, "The Trade specified does not exist", "TRADE_DOESNT_EXIST")
        return ok({"trade": broker.trade_json(t), "lastTransactionID": broker.last_tx_id()})

    async def get_transaction(request):
        try:
            tx = broker.transactions[int(request.match_info["tx"]) - 1]
        except (ValueError, IndexError):
            return _err(404, "The Transaction specified does not exist", "TRANSACTION_DOESNT_EXIST")
        return ok({"transaction": tx, "lastTransactionID": broker.last_tx_id()})

    async def close_trade(request):
        t = find_trade(request.match_info["trade"])
        if t is None or t.state != "OPEN":
            return _err(404, "The Trade specified does not exist", "TRADE_DOESNT_EXIST")
        i = broker.released[t.symbol]
        if i >= len(broker.bars[t.symbol]):
            return _err(400, "market halted", "MARKET_HALTED")
        bar = broker.bars[t.symbol][i]
        fill = broker._close(t, bar[1], bar[0], "MARKET_ORDER_TRADE_CLOSE")
        return ok({"orderFillTransaction": fill, "relatedTransactionIDs": [fill["id"]],
                   "lastTransactionID": fill["id"]})

    async def since_id(request):
        try:
            since = int(request.query["id"])
        except (KeyError, ValueError):
            return _err(400, "id is required", "INVALID_REQUEST")
        return ok({"transactions": broker.transactions[since:], "lastTransactionID": broker.last_tx_id()})

    async def candles(request):
        try:
            sym = to_symbol(request.match_info["instrument"])
        except ValueError as e:
            return _err(400, str(e), "INVALID_INSTRUMENT")
        if sym not in broker.bars:
            return _err(400, f"unknown instrument {request.match_info['instrument']}", "INVALID_INSTRUMENT")
        rows = broker.bars[sym][: broker.released[sym]]
        try:
            if "from" in request.query:
                start = parse_time(request.query["from"])
                rows = [r for r in rows if r[0] >= start]
            count = int(request.query.get("count", "500"))
        except ValueError as e:
            return _err(400, f"bad query: {e}", "INVALID_REQUEST")
        rows = rows[:count] if "from" in request.query else rows[-count:]
        fmt = lambda x: price_str(x, sym)  # noqa: E731
        return ok({"instrument": request.match_info["instrument"],
                   "granularity": request.query.get("granularity", "S5"),
                   "candles": [{"time": rfc3339(ts), "volume": 1, "complete": True,
                                "mid": {"o": fmt(o), "h": fmt(h), "l": fmt(lo), "c": fmt(c)}}
                               for ts, o, h, lo, c in rows]})

    async def admin_advance(request):
        body = await request.json()
        n = broker.advance(int(body.get("bars", 1)))
        broker.save()
        return ok({"released": n, "now": rfc3339(broker.now_ts())})

    async def admin_faults(request):
        body = await request.json()
        broker.faults.extend(body.get("faults", []))
        return ok({"queued": len(broker.faults)})

    async def admin_close(request):
        body = await request.json()
        tx = broker.close_by_hand(int(body["tradeID"]))
        broker.save()
        return ok({"orderFillTransaction": tx})

    app = web.Application(middlewares=[record, auth_and_faults])
    acct = "/v3/accounts/{account}"
    app.add_routes([
        web.get("/v3/accounts", accounts), web.get(acct + "/summary", summary),
        web.get(acct + "/openPositions", positions), web.get(acct + "/positions", positions),
        web.get(acct + "/openTrades", trades), web.get(acct + "/trades", trades),
        web.post(acct + "/orders", create_order), web.get(acct + "/orders/{order}", order_by_client_id),
        web.get(acct + "/trades/{trade}", get_trade), web.put(acct + "/trades/{trade}/close", close_trade),
        web.get(acct + "/transactions/sinceid", since_id),
        web.get(acct + "/transactions/{tx}", get_transaction),
        web.get("/v3/instruments/{instrument}/candles", candles),
        web.post("/admin/advance", admin_advance), web.post("/admin/faults", admin_faults),
        web.post("/admin/close", admin_close),
    ])
    return app


async def serve_until_signal(broker: FakeV20, host: str, port: int) -> int:
    """Serve ``broker`` on ``host:port`` until SIGTERM/SIGINT, printing one JSON line with its
    address, account and instruments once listening; saves its state on the way out. Returns
    0. Raises OSError when the port cannot be bound."""
    import json
    import signal

    runner = web.AppRunner(build_app(broker), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(json.dumps({"fake_v20": f"http://{host}:{port}", "account": broker.account_id,
                          "instruments": sorted(broker.bars), "released": broker.released}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        broker.save()
        return 0
    finally:
        await runner.cleanup()


def _full_price(price: float, symbol: str) -> dict:
    """An ORDER_FILL's ``fullPrice`` as v20 writes it; this broker fills at mid without a
    spread, so its bid and ask are the fill price."""
    p = price_str(price, symbol)
    return {"type": "PRICE", "bids": [{"price": p, "liquidity": 10_000_000}],
            "asks": [{"price": p, "liquidity": 10_000_000}], "closeoutBid": p, "closeoutAsk": p}
