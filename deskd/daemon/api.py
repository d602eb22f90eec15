"""The control API (aiohttp), on 127.0.0.1 by default.

GET  /health     liveness: {"status": "ok", "state": ...}
GET  /metrics    Prometheus exposition (see deskd.daemon.prometheus)
GET  /status     state, why entries are stopped ("halt": trigger, reason, since, until; null
                 while entries are allowed), equity, drawdown (day, week, from peak), open
                 positions, last bar per symbol, feed checks, counterfactuals on / off
GET  /positions  open positions
GET  /trades     closed trades, newest first (?limit=100, at most 10000; ?symbol=EURUSD), in
                 trades.csv's format (its column names, ISO times, LONG/SHORT)
GET  /decisions  decisions, newest first (same query), in decisions.csv's format after
                 their ``decision_id`` (the row GET /counterfactuals names)
GET  /counterfactuals
                 what each decision's bracket would have done, as the daemon stored it when it
                 resolved: newest decision first (same query), counterfactuals.parquet's fields
                 (scenario, decision_time, symbol, strategy_id, side, action, reason, cf_outcome
                 ... cf_exit_price; times ISO, null where that file has null) and the decision's
                 row id, decision_id; a decision whose bracket is still open has no row yet
POST /halt       {"reason": "..."}                  stop new entries
POST /resume     {"reason": "...", "force": false}  back to RUNNING (force lifts a DD halt)
POST /flatten    {"reason": "...", "keep_trading": false}
                 halt new entries (unless keep_trading) and close every position at the next open
                 {"closing": [symbols], "fills_at": "next open of each symbol"}
                 With a v20 broker the exits go out at market, now, and the answer says what
                 became of each: "outcomes": {symbol: {"outcome": "closed", "price", "exit_reason"}
                 | {"outcome": "failed", "error", "next": "retried at every bar close"}
                 | {"outcome": "unknown", "error", "next": "looked up every tick"}}; 200 when
                 every position closed, else 502 with "error" naming the others
POST /poll       {"reason": "..."}  v20 broker: run a tick now (transactions, bars, orders)
                 and answer when it is done: {"bars": n, "state": ...}; 409 with a paper broker
POST /reconcile  {"reason": "...", "book_broker_closes": false}
                 reconcile with the v20 broker now; book_broker_closes first books the closes
                 the broker reported but the desk could not explain, at the broker's price.
                 200 {"in_sync": bool, "positions": n, "differences": [...]}; 409 with a paper broker;
                 502 when the broker cannot be read (the result is unknown)

POSTs need ``Authorization: Bearer <token>``; the token comes from the environment
(DESKD_API_TOKEN) or a file, never from the desk config (:func:`check_token` bounds its
length). Every request must name this daemon in its ``Host`` header (a loopback name or the
bind address, any port; see :func:`allowed_hosts_for`), so a DNS-rebinding page cannot read
it. Bodies are at most 64 KiB of JSON. Errors are JSON ``{"error": "..."}``: 400 malformed
request, 401 missing or wrong token, 403 no token configured, 409 refused by the state
machine, 413 body too large, 421 a Host this daemon does not answer to, 503 an action once
the daemon has begun to stop ``{"error": "shutting down"}``, or a store read refused while
too many wait (with ``Retry-After``). Actions run between bars (the bar pipeline does not
yield), and every action is committed to the store before the reply.

Store reads (/trades, /decisions, /counterfactuals) never run on the event loop: each runs in one of
``read_workers`` threads (default 2) on a connection of its own from the runner's engine
(never the runner's writer connection; SQLite in WAL mode lets readers run beside the
writer), rows encoded to JSON there too. Up to ``read_queue`` more (default 32) wait their
turn; past that a read is answered 503 with ``Retry-After``. The threads still share the GIL
with the loop, so rows are fetched and encoded in batches and few reads run at once: on a
2-core VM, 4 threads held bars up twice as long as 2 (bench/api_load.py, bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import json
import math
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Column, Select, Table, select
from sqlalchemy.exc import SQLAlchemyError

from deskd.core.events import SIDE_NAME
from deskd.core.time import iso
from deskd.daemon.runner import DeskRunner
from deskd.desk.state import TransitionRefused
from deskd.persistence.store import COUNTERFACTUAL_FIELDS, counterfactuals, decisions, trades
from deskd.research.counterfactuals import counterfactual_json
from deskd.research.outputs import decision_record, trade_record

log = structlog.get_logger("deskd.api")

MIN_TOKEN_CHARS = 16
READ_WORKERS = 2          # store reads running at once, each in its own thread and connection
READ_QUEUE = 32           # store reads waiting for a worker; past that: 503
READ_RETRY_AFTER_S = 1    # the Retry-After of that 503, seconds
READ_BATCH = 500          # rows fetched and JSON-encoded at a time by a store read
MAX_BODY_BYTES = 64 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# the store keeps "operator: <reason>" in state_transitions.reason, a String(200)
MAX_REASON_CHARS = 200 - len("operator: ")


def check_token(token: str) -> None:
    """Raise ValueError unless ``token`` is long enough to serve as the API bearer token."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the API token must be at least {MIN_TOKEN_CHARS} characters "
                         f"(it has {len(token)}); make one with "
                         f"python -c 'import secrets; print(secrets.token_urlsafe(24))'")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 brackets allowed) is this machine's loopback:
    localhost, 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_warning(host: str) -> str | None:
    """A warning to log when the API would listen on ``host``, a non-loopback address (e.g.
    0.0.0.0: every interface); None for a loopback address."""
    if is_loopback(host):
        return None
    return (f"the control API listens on {host or 'every interface'}, not loopback: anyone who "
            f"can reach it can read positions, and act with the token; the token travels unencrypted")


def allowed_hosts_for(bind_host: str) -> frozenset[str]:
    """The ``Host`` names the API answers to by default: the loopback names, plus ``bind_host``
    when it is a specific address or name (a wildcard such as 0.0.0.0 is no name a client
    uses: pass the names the clients use as ``allowed_hosts`` instead)."""
    host = host_name(bind_host)
    wildcard = host in ("", "0.0.0.0", "::")
    return LOOPBACK_HOSTS if wildcard else LOOPBACK_HOSTS | {host}


def host_name(host: str) -> str:
    """The name in a ``Host`` value, without its port and IPv6 brackets, lower case; "" when
    the value is malformed (a bad port, junk after the brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        port = rest.removeprefix(":") if sep else "-"
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""  # no port, or a bare IPv6 address
    return name.removesuffix(".") if port == "" or (port.isascii() and port.isdigit()) else ""


class _Body(BaseModel):
    """An action's body: the operator's reason, refused before anything changes when the store
    could not keep it (too long for its column; PostgreSQL refuses NUL). Pydantic already
    refuses lone surrogates."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)

    @field_validator("reason")
    @classmethod
    def _printable(cls, reason: str) -> str:
        if any(unicodedata.category(ch) == "Cc" for ch in reason):  # NUL, newline, DEL, C1
            raise ValueError("must not contain control characters")
        return reason


class HaltBody(_Body):
    pass


class ResumeBody(_Body):
    force: bool = False


class FlattenBody(_Body):
    keep_trading: bool = False  # leave the desk's state as is (a flatten halts new entries)


class PollBody(_Body):
    pass


class ReconcileBody(_Body):
    book_broker_closes: bool = False


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _shutting_down(**extra) -> web.Response:
    return web.json_response({"error": "shutting down", **extra}, status=503)


def _decision_row(row, timeframe_s: int) -> dict:
    """A stored decision as GET /decisions gives it: ``decision_id`` (its row, which
    GET /counterfactuals names too), then decisions.csv's fields (:func:`decision_record`)."""
    return {"decision_id": row["id"], **decision_record(row, timeframe_s)}


def _num(x: float | None, nd: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def _action(model: type[BaseModel]):
    """An action handler: the bearer token is checked and the body validated as ``model``
    before ``handler(self, body)`` runs; otherwise the error response is returned. Once the
    daemon has begun to stop (:attr:`ControlAPI.stopping`) the action is answered 503
    ``{"error": "shutting down"}``: at once, or when it was waiting for a tick and found the
    broker client closed (a RuntimeError then; other errors propagate)."""
    def wrap(handler):
        @functools.wraps(handler)
        async def route(self, request: web.Request) -> web.Response:
            body = await self._authorized_body(request, model)
            if isinstance(body, web.Response):
                return body
            if self.stopping:
                return _shutting_down()
            try:
                return await handler(self, body)
            except RuntimeError as e:  # ShuttingDown, or aiohttp's "Session is closed"
                if not self.stopping:
                    raise
                log.warning("action cut short: the daemon is stopping", path=request.path, error=str(e))
                return _shutting_down()
        return route
    return wrap


class ControlAPI:
    """Routes bound to one running desk. ``allowed_hosts`` are the only names a request's
    ``Host`` header may give (any port; "[::1]" or "::1" alike); None (the default):
    :func:`allowed_hosts_for` the host :meth:`app` is served on. ``read_workers`` store reads
    run at once (threads), ``read_queue`` more may wait (module docstring)."""

    def __init__(self, runner: DeskRunner, token: str | None, session=None, metrics=None, health=None,
                 allowed_hosts: Iterable[str] | None = None, read_workers: int = READ_WORKERS,
                 read_queue: int = READ_QUEUE):
        self.runner = runner
        self.token = token
        self.session = session  # the LiveSession with a v20 broker, else None
        self.metrics = metrics  # DeskMetrics, or None: no /metrics
        self.health_monitor = health  # HealthMonitor, or None
        self.allowed_hosts = None if allowed_hosts is None else frozenset(
            host_name(h) for h in allowed_hosts) - {""}
        self.read_workers = read_workers
        self.read_queue = read_queue
        self._reads = asyncio.Semaphore(read_workers)
        self._read_waiting = 0
        self._read_pool: ThreadPoolExecutor | None = None
        self._shutdown = False  # the web server is shutting down (aiohttp's on_shutdown)

    @property
    def stopping(self) -> bool:
        """The daemon has begun to stop: the server is shutting down, or the LiveSession says
        so (its broker client is closed or closing). Actions are then answered 503."""
        return self._shutdown or bool(self.session is not None and self.session.stopping)

    def app(self, bind_host: str = "127.0.0.1") -> web.Application:
        """The aiohttp application, to serve on ``bind_host`` (which sets the default
        allowed hosts)."""
        hosts = allowed_hosts_for(bind_host) if self.allowed_hosts is None else self.allowed_hosts

        @web.middleware
        async def check_host(request: web.Request, handler):
            if host_name(request.headers.get("Host", "")) not in hosts:
                return _error(421, "this daemon does not answer to that Host")
            return await handler(request)

        app = web.Application(middlewares=[check_host], client_max_size=MAX_BODY_BYTES)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        app.add_routes([
            web.get("/health", self.health), web.get("/status", self.status),
            web.get("/metrics", self.prometheus),
            web.get("/positions", self.positions), web.get("/trades", self.trades),
            web.get("/decisions", self.decisions), web.get("/counterfactuals", self.counterfactuals),
            web.post("/halt", self.halt),
            web.post("/resume", self.resume), web.post("/flatten", self.flatten),
            web.post("/reconcile", self.reconcile), web.post("/poll", self.poll),
        ])
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self._shutdown = True

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=False, cancel_futures=True)
            self._read_pool = None

    # -- reads ------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "state": self.runner.desk.state.state.value})

    async def prometheus(self, request: web.Request) -> web.Response:
        if self.metrics is None:
            return _error(404, "metrics are not enabled")
        return web.Response(body=self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def _positions(self) -> list[dict]:
        lg = self.runner.desk.ledger
        return [{"symbol": s, "strategy_id": t.strategy_id, "side": SIDE_NAME[t.side],
                 "units": t.units, "entry_price": t.entry_price, "fill_time": iso(t.fill_ts),
                 "sl_price": t.sl_price, "tp_price": t.tp_price, "risk_usd": _num(t.risk_usd),
                 "unrealized_usd": _num(lg.unrealized_usd.get(s)), "hold_bars": t.hold_bars,
                 "mae_pips": _num(t.mae_pips), "mfe_pips": _num(t.mfe_pips)}
                for s, t in sorted(lg.open.items())]

    def _halt(self) -> dict | None:
        """Why the desk takes no new entries, or None when it does: a drawdown halt (until its
        anchor), or the transition into HALTED or SAFE_MODE (an operator's halt and reason,
        an execution-error limit, a reconciliation difference), with its bar time."""
        d = self.runner.desk
        g, state = d.guard, d.state.state
        change = self.runner.last_change
        if change is not None and change.new != state.value:
            change = None  # the store's newest transition is not the one into this state
        since = iso(change.bar_ts) if change is not None else None
        if g.halt_until:
            return {"trigger": "DD_BREACH", "reason": g.halt.reason, "since": since, "until": iso(g.halt_until)}
        if state.value in ("HALTED", "SAFE_MODE"):
            return {"trigger": change.trigger if change else None, "reason": change.reason if change else None,
                    "since": since, "until": None}
        return None

    async def status(self, request: web.Request) -> web.Response:
        d = self.runner.desk
        lg, g, gate = d.ledger, d.guard, self.runner.gate
        eq = lg.equity_usd
        dd = lambda anchor: _num((anchor - eq) / anchor, 6) if anchor > 0 else None  # noqa: E731
        return web.json_response({
            "desk": d.cfg.desk, "scenario": d.scenario, "state": d.state.state.value,
            "halt": self._halt(),
            "equity_usd": _num(eq), "balance_usd": _num(lg.balance_usd),
            "drawdown": {"day_frac": dd(g.day_anchor_usd), "week_frac": dd(g.week_anchor_usd),
                         "peak_frac": dd(lg.peak_usd), "day_anchor_usd": _num(g.day_anchor_usd),
                         "week_anchor_usd": _num(g.week_anchor_usd)},
            "open_positions": self._positions(),
            "last_bar": {s: iso(ts) for s, ts in sorted(gate.last.items())},
            "feed": {"live_bars": self.runner.stats.live, "warm_up_bars": self.runner.stats.warmed,
                     "duplicates": gate.duplicates, "gaps": gate.gaps, "late": gate.late},
            "broker": self._broker_status(),
            "strategy_health": None if self.health_monitor is None else self.health_monitor.snapshot(),
            "counterfactuals": "on" if self.runner.cf_observer is not None else "off",
        })

    def _broker_status(self) -> dict:
        if self.session is None:
            return {"kind": "paper"}
        last = self.session.last_reconcile
        b = self.session.book
        return {"kind": "http", "ticks": self.session.ticks, "last_transaction_id": self.session.sender.last_tx_id,
                "reconciled_clean": self.runner.desk.state.reconciled_clean,
                "last_reconcile_differences": None if last is None else [d.as_dict() for d in last.diffs],
                "unexplained_closes": sorted(b.unexplained)}

    async def positions(self, request: web.Request) -> web.Response:
        return web.json_response(self._positions())

    async def _rows(self, request: web.Request, table: Table) -> web.Response:
        """Rows of ``table`` (trades, decisions or counterfactuals) for this desk and scenario,
        newest first: ``?limit=`` (1-10000, default 100), ``?symbol=``. 400 for a bad limit; the
        read itself goes through :meth:`_read`."""
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= 10_000:
            return _error(400, "limit must be between 1 and 10000")
        q, symbol, order, record = self._journal(table)
        if "symbol" in request.query:
            q = q.where(symbol == request.query["symbol"].upper())
        return await self._read(functools.partial(self._rows_json, q.order_by(order.desc()).limit(limit), record))

    def _journal(self, table: Table) -> tuple[Select, Column, Column, Callable[[dict], dict]]:
        """The query of ``table``'s rows for this desk and scenario, the column ``?symbol=``
        filters, the column that orders them (newest last), and how a row goes out: trades.csv's
        and decisions.csv's formats, or a counterfactual joined with its decision
        (:func:`~deskd.research.counterfactuals.counterfactual_json`), in decision order."""
        d = self.runner.desk
        if table is counterfactuals:
            c, dc = counterfactuals, decisions
            q = (select(c.c.decision_id, c.c.scenario, dc.c.bar_ts, dc.c.symbol, dc.c.strategy_id, dc.c.side,
                        dc.c.action, dc.c.reason, dc.c.regime, *[c.c[f] for f in COUNTERFACTUAL_FIELDS])
                 .join_from(c, dc, dc.c.id == c.c.decision_id)
                 .where(c.c.desk == d.cfg.desk, c.c.scenario == d.scenario))
            return q, dc.c.symbol, c.c.decision_id, functools.partial(counterfactual_json, timeframe_s=d.tf_s)
        q = select(*[c for c in table.c if c.name not in ("desk", "scenario")]).where(
            table.c.desk == d.cfg.desk, table.c.scenario == d.scenario)
        if table is trades:
            return q, table.c.symbol, table.c.trade_id, trade_record
        return q, table.c.symbol, table.c.id, functools.partial(_decision_row, timeframe_s=d.tf_s)

    def _rows_json(self, q: Select, record: Callable[[dict], dict]) -> bytes:
        """Run ``q`` on a connection of its own from the engine (this runs in a read thread,
        never on the event loop, and never touches the runner's writer connection) and encode
        its rows as a JSON array of objects. Rows are fetched and encoded ``READ_BATCH`` at a
        time, so no single C call holds the GIL away from the event loop for long, as the
        DBAPI cursor's plain tuples (the columns need no result processing): SQLAlchemy Row
        objects make the garbage collector run far more often. Each row goes out as ``record``
        makes it: the format of trades.csv / decisions.csv / counterfactuals.parquet (ISO
        times, side names). Raises
        SQLAlchemyError, or the DBAPI's Error while fetching."""
        parts = []
        with self.runner.engine.connect() as conn:
            result = conn.execute(q)
            keys = list(result.keys())
            while batch := result.cursor.fetchmany(READ_BATCH):
                parts.append(json.dumps([record(dict(zip(keys, row))) for row in batch])[1:-1])
            result.close()
        return f"[{', '.join(parts)}]".encode()

    async def _read(self, work: Callable[[], bytes]) -> web.Response:
        """A 200 JSON response of ``work()`` (the JSON body), run in a read thread. At most
        ``read_workers`` run at once and ``read_queue`` wait; past that, and when the store
        cannot be read, 503 with Retry-After (seconds). A worker counts as busy until its
        thread is done, even if the request went away."""
        if self._reads.locked() and self._read_waiting >= self.read_queue:
            return web.json_response({"error": "too many store reads waiting; try again"}, status=503,
                                     headers={"Retry-After": str(READ_RETRY_AFTER_S)})
        self._read_waiting += 1
        try:
            await self._reads.acquire()
        finally:
            self._read_waiting -= 1
        loop = asyncio.get_running_loop()

        def release(_: Future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to bound
                loop.call_soon_threadsafe(self._reads.release)
        try:
            if self._read_pool is None:
                self._read_pool = ThreadPoolExecutor(self.read_workers, thread_name_prefix="deskd-api-read")
            job = self._read_pool.submit(work)
        except BaseException:
            self._reads.release()
            raise
        job.add_done_callback(release)
        try:
            body = await asyncio.wrap_future(job)
        except (SQLAlchemyError, self.runner.engine.dialect.loaded_dbapi.Error) as e:
            log.error("the store could not be read", error=f"{type(e).__name__}: {e}")
            return web.json_response({"error": "the store could not be read; try again"}, status=503,
                                     headers={"Retry-After": str(READ_RETRY_AFTER_S)})
        return web.Response(body=body, content_type="application/json")

    async def trades(self, request: web.Request) -> web.Response:
        return await self._rows(request, trades)

    async def decisions(self, request: web.Request) -> web.Response:
        return await self._rows(request, decisions)

    async def counterfactuals(self, request: web.Request) -> web.Response:
        return await self._rows(request, counterfactuals)

    # -- actions ----------------------------------------------------------------------------
    async def _authorized_body(self, request: web.Request, model: type[BaseModel]):
        if not self.token:
            return _error(403, "this daemon has no API token configured: actions are disabled")
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        try:  # aiohttp keeps non-UTF-8 header bytes as surrogate escapes
            ok = bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                     self.token.encode())
        except UnicodeEncodeError:
            ok = False
        if not ok:
            return _error(401, "missing or wrong bearer token")
        try:
            raw = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
        except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep, an int too long
            return _error(400, "the body must be a JSON object")
        try:
            return model.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            return _error(400, f"{where}: {err['msg']}")

    @_action(HaltBody)
    async def halt(self, body: HaltBody) -> web.Response:
        self.runner.desk.operator_halt(body.reason)
        self.runner.writer.commit()
        return web.json_response({"state": self.runner.desk.state.state.value})

    @_action(ResumeBody)
    async def resume(self, body: ResumeBody) -> web.Response:
        try:
            self.runner.desk.operator_resume(body.reason, body.force)
        except TransitionRefused as e:
            return _error(409, str(e))
        self.runner.writer.commit()
        return web.json_response({"state": self.runner.desk.state.state.value})

    @_action(FlattenBody)
    async def flatten(self, body: FlattenBody) -> web.Response:
        """Paper: the exits fill at each symbol's next open (200). v20: they go out now and the
        answer says what became of each (module docstring): 200 when every position closed,
        502 otherwise; 503 when the daemon began to stop before they went out (they are
        committed: a restarted daemon sends them)."""
        from deskd.daemon.live import CLOSED, ShuttingDown

        closing = self.runner.desk.flatten(body.reason, keep_trading=body.keep_trading)
        self.runner.writer.commit()
        if self.session is None:
            return web.json_response({"closing": closing, "fills_at": "next open of each symbol",
                                      "state": self.runner.desk.state.state.value})
        try:
            outcomes = await self.session.send_now(closing)
        except ShuttingDown:
            return _shutting_down(closing=closing, note="the exits are committed; a restarted daemon sends them")
        reply = {"closing": closing, "fills_at": "market, now", "state": self.runner.desk.state.state.value,
                 "outcomes": {s: o.as_dict() for s, o in outcomes.items()}}
        open_ = [o for o in outcomes.values() if o.outcome != CLOSED]
        if not open_:
            return web.json_response(reply)
        reply["error"] = "not every position is closed: " + "; ".join(
            f"{o.symbol} {o.outcome} ({o.error}), {o.next}" for o in open_)
        return web.json_response(reply, status=502)

    @_action(PollBody)
    async def poll(self, body: PollBody) -> web.Response:
        if self.session is None:
            return _error(409, "the paper broker's bars come from the replay; there is nothing to poll")
        n = await self.session.tick()
        return web.json_response({"bars": n, "state": self.runner.desk.state.state.value})

    @_action(ReconcileBody)
    async def reconcile(self, body: ReconcileBody) -> web.Response:
        from deskd.adapters.v20.client import BrokerError

        if self.session is None:
            return _error(409, "the paper broker has nothing to reconcile against")
        unexplained = set(self.session.book.unexplained)
        try:
            diffs = await self.session.reconcile_now(body.book_broker_closes)
        except BrokerError as e:
            return _error(502, f"the broker could not be read: {e}")
        except RuntimeError:
            if not self.stopping:
                raise
            booked = sorted(unexplained - set(self.session.book.unexplained))
            return _shutting_down(**({"booked_broker_closes": booked} if booked else {}))
        return web.json_response({"in_sync": not diffs, "state": self.runner.desk.state.state.value,
                                  "positions": len(self.runner.desk.ledger.open),
                                  "differences": [d.as_dict() for d in diffs]})


async def start_api(api: ControlAPI, host: str, port: int) -> web.AppRunner:
    """Serve ``api`` on host:port; returns the runner to clean up. Raises OSError when the
    port is taken."""
    runner = web.AppRunner(api.app(host), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
