"""The viewer's web app (aiohttp): one page and a read-only JSON API over the run folders
given on the command line, on 127.0.0.1 by default.

GET /                                   the page (static/index.html)
GET /static/plotly.min.js               plotly.js as the plotly package bundles it (no CDN)
GET /api/runs                           every run: index, id, folder, kind, scenarios, headline
                                        and overall metrics per scenario, which views it has
GET /api/runs/{run}                     one of them
GET /api/runs/{run}/facets              the values each filter takes (symbols, reasons, ...)
GET /api/runs/{run}/equity              ?scenario=A  the equity and drawdown curve (cut to a
                                        few thousand points, every extreme kept)
GET /api/runs/{run}/trades              ?scenario= &symbol= &strategy= &exit_reason= &outcome=WIN|LOSS
                                        &split= &offset=0 &limit=50  a page of trades, the total
GET /api/runs/{run}/decisions           ?scenario= &action= &reason= &hour=0..23 &symbol= &strategy=
                                        &bad_skips=1 &offset=0 &limit=50  a page of decisions
GET /api/runs/{run}/decisions/{row}     journal row {row} with its price window, bracket, real
                                        trade and counterfactual
GET /api/runs/{run}/splits              a walk-forward's splits, spec, parameter stability
GET /api/runs/{run}/splits/{n}/trials   ?limit=20  split n's best trials, DSR and PBO

``{run}`` is a run's index (0, 1, ...) or its id (the folder's name, made unique):
paths come only from the command line, never from a request. Every response is JSON except
the page and plotly.js. Errors are JSON ``{"error": "..."}``: 400 a bad query parameter
(``"param"`` names it: unknown, repeated, not a number, out of range, a value the run never
takes), 404 an unknown run, row or split, or a view the run has not (no decision journal, not
a walk-forward), 405 any method but GET and HEAD (``Allow`` says so), 421 a ``Host`` the
viewer does not answer to (DNS rebinding; the loopback names and the bind address, as the
control API), 500 a file that could not be read. Files are read in worker threads, never on
the event loop, each once per run (:mod:`deskd.viewer.data`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from deskd.core.text import shown
from deskd.daemon.api import allowed_hosts_for, host_name, is_loopback
from deskd.viewer.data import (
    MAX_PAGE,
    DecisionFilter,
    NotAvailable,
    QueryError,
    Run,
    TradeFilter,
    Unreadable,
    jsonable,
)

log = structlog.get_logger("deskd.viewer")

STATIC = Path(__file__).parent / "static"
#: the largest offset a page may start at (past the end is an empty page, not an error)
MAX_OFFSET = 10**9
DEFAULT_PAGE = 50
DEFAULT_TRIALS = 20
_WHOLE = re.compile(r"-?[0-9]{1,12}")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                      "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                                      "frame-ancestors 'none'; form-action 'none'"}


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=HEADERS)


def _json(data: Any) -> web.Response:
    body = json.dumps(jsonable(data), allow_nan=False, separators=(",", ":"))
    return web.Response(text=body, content_type="application/json", headers=HEADERS)


class Query:
    """A request's query string, checked: only the ``allowed`` names, each at most once.
    Every getter raises QueryError naming the parameter. An empty value counts as absent."""

    def __init__(self, request: web.Request, allowed: frozenset[str]):
        self.q = request.query
        for name in self.q:
            if name not in allowed:
                raise QueryError(shown(name), f"unknown parameter; this endpoint takes "
                                              f"{', '.join(sorted(allowed)) or 'none'}")
            if len(self.q.getall(name)) > 1:
                raise QueryError(name, "given more than once")

    def text(self, name: str) -> str | None:
        """The value of ``name`` as given, None when absent or empty."""
        v = self.q.get(name)
        return v if v else None

    def number(self, name: str, default: int | None, low: int, high: int) -> int | None:
        """``name`` as a whole number in [low, high] (ASCII digits, an optional minus, at most
        12 digits), ``default`` when absent; raises QueryError otherwise."""
        v = self.q.get(name)
        if not v:
            return default
        if not _WHOLE.fullmatch(v):
            raise QueryError(name, f"{shown(v)} is not a whole number")
        n = int(v)
        if not low <= n <= high:
            raise QueryError(name, f"{n} is out of range: {low} to {high}")
        return n

    def flag(self, name: str) -> bool:
        """``name`` as a yes/no: 1 or true, 0 or false (absent: False); raises QueryError
        for anything else."""
        v = (self.q.get(name) or "0").lower()
        if v not in ("0", "1", "true", "false"):
            raise QueryError(name, f"{shown(v)}: 1 or 0 (true or false)")
        return v in ("1", "true")

    def page(self, default: int = DEFAULT_PAGE) -> tuple[int, int]:
        """(offset, limit) of ``?offset=&limit=``: offset from 0, limit 1 to MAX_PAGE."""
        offset = self.number("offset", 0, 0, MAX_OFFSET)
        limit = self.number("limit", default, 1, MAX_PAGE)
        assert offset is not None and limit is not None
        return offset, limit


_PAGE = frozenset({"offset", "limit"})
TRADE_PARAMS = frozenset({"scenario", "symbol", "strategy", "exit_reason", "outcome", "split"}) | _PAGE
DECISION_PARAMS = frozenset({"scenario", "action", "reason", "hour", "symbol", "strategy", "bad_skips"}) | _PAGE


def _run_route(params: frozenset[str] = frozenset()):
    """A handler of ``/api/runs/{run}/...``: the run looked up (404 when unknown) and the
    query checked against ``params`` before ``handler(self, request, run, query)`` runs."""
    def wrap(handler):
        @functools.wraps(handler)
        async def route(self: ViewerApp, request: web.Request) -> web.Response:
            run = self.lookup(request.match_info["run"])
            return await handler(self, request, run, Query(request, params))
        return route
    return wrap


class ViewerApp:
    """The routes over ``runs`` (module docstring)."""

    def __init__(self, runs: list[Run]):
        self.runs = runs
        self._by_id = {r.id: r for r in runs}
        self._page: bytes | None = None
        self._plotly: bytes | None = None

    def lookup(self, key: str) -> Run:
        """The run with index or id ``key``; raises NotAvailable (404) for any other."""
        if key.isascii() and key.isdigit() and len(key) < 10 and int(key) < len(self.runs):
            return self.runs[int(key)]
        if key in self._by_id:
            return self._by_id[key]
        raise NotAvailable(f"no run {shown(key)}: runs are 0 to {len(self.runs) - 1} "
                           f"or their ids ({', '.join(sorted(self._by_id))[:200]})")

    def app(self, bind_host: str = "127.0.0.1") -> web.Application:
        """The aiohttp application, to serve on ``bind_host`` (which sets the Host names it
        answers to)."""
        hosts = allowed_hosts_for(bind_host)

        @web.middleware
        async def guard(request: web.Request, handler):
            if host_name(request.headers.get("Host", "")) not in hosts:
                return _error(421, "this viewer does not answer to that Host")
            try:
                return await handler(request)
            except QueryError as e:
                return _error(400, str(e), param=e.param)
            except NotAvailable as e:
                return _error(404, str(e))
            except Unreadable as e:
                log.error("a run file cannot be read", error=str(e))
                return _error(500, str(e))
            except web.HTTPMethodNotAllowed:
                return web.json_response({"error": f"{request.method}: the viewer is read-only (GET only)"},
                                         status=405, headers={**HEADERS, "Allow": "GET, HEAD"})
            except web.HTTPException as e:
                if e.status < 400:
                    raise
                return _error(e.status, e.reason)
            except Exception as e:  # a run file of a shape no check foresaw: said, logged, never a bare 500
                log.exception("viewer request failed", path=request.path)
                return _error(500, f"{type(e).__name__}: {e}"[:300])

        app = web.Application(middlewares=[guard])
        app.add_routes([
            web.get("/", self.index), web.get("/static/plotly.min.js", self.plotly),
            web.get("/api/runs", self.list_runs), web.get("/api/runs/{run}", self.one_run),
            web.get("/api/runs/{run}/facets", self.facets), web.get("/api/runs/{run}/equity", self.equity),
            web.get("/api/runs/{run}/trades", self.trades), web.get("/api/runs/{run}/decisions", self.decisions),
            web.get("/api/runs/{run}/decisions/{row}", self.decision),
            web.get("/api/runs/{run}/splits", self.splits),
            web.get("/api/runs/{run}/splits/{split}/trials", self.trials),
        ])
        return app

    # -- the page ---------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        if self._page is None:
            self._page = (STATIC / "index.html").read_bytes()
        return web.Response(body=self._page, content_type="text/html", charset="utf-8", headers=HEADERS)

    async def plotly(self, request: web.Request) -> web.Response:
        if self._plotly is None:
            from plotly.offline import get_plotlyjs

            self._plotly = get_plotlyjs().encode()
        return web.Response(body=self._plotly, content_type="application/javascript", charset="utf-8",
                            headers={**HEADERS, "Cache-Control": "max-age=86400"})

    # -- runs -------------------------------------------------------------------------------
    async def list_runs(self, request: web.Request) -> web.Response:
        Query(request, frozenset())
        return _json({"runs": [r.summary() for r in self.runs]})

    @_run_route()
    async def one_run(self, request: web.Request, run: Run, q: Query) -> web.Response:
        return _json(run.summary())

    @_run_route()
    async def facets(self, request: web.Request, run: Run, q: Query) -> web.Response:
        return _json(await asyncio.to_thread(run.facets))

    @_run_route(frozenset({"scenario"}))
    async def equity(self, request: web.Request, run: Run, q: Query) -> web.Response:
        scenario = run.check_scenario(q.text("scenario"))
        return _json(await asyncio.to_thread(run.equity, scenario))

    @_run_route(TRADE_PARAMS)
    async def trades(self, request: web.Request, run: Run, q: Query) -> web.Response:
        outcome = q.text("outcome")
        f = TradeFilter(scenario=run.check_scenario(q.text("scenario")), symbol=q.text("symbol"),
                        strategy_id=q.text("strategy"), exit_reason=q.text("exit_reason"),
                        outcome=outcome.upper() if outcome else None, split=q.number("split", None, 0, 10**6))
        offset, limit = q.page()
        return _json(await asyncio.to_thread(run.trades_page, f, offset, limit))

    @_run_route(DECISION_PARAMS)
    async def decisions(self, request: web.Request, run: Run, q: Query) -> web.Response:
        f = DecisionFilter(scenario=run.check_scenario(q.text("scenario")), action=q.text("action"),
                           reason=q.text("reason"), hour=q.number("hour", None, 0, 23), symbol=q.text("symbol"),
                           strategy_id=q.text("strategy"), bad_skips=q.flag("bad_skips"))
        offset, limit = q.page()
        return _json(await asyncio.to_thread(run.decisions_page, f, offset, limit))

    @_run_route()
    async def decision(self, request: web.Request, run: Run, q: Query) -> web.Response:
        raw = request.match_info["row"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
            raise QueryError("row", f"{shown(raw)} is not a decision's row number (0, 1, ...)")
        return _json(await asyncio.to_thread(run.decision, int(raw)))

    @_run_route()
    async def splits(self, request: web.Request, run: Run, q: Query) -> web.Response:
        return _json(await asyncio.to_thread(run.splits))

    @_run_route(frozenset({"limit"}))
    async def trials(self, request: web.Request, run: Run, q: Query) -> web.Response:
        raw = request.match_info["split"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
            raise QueryError("split", f"{shown(raw)} is not a split number (1, 2, ...)")
        limit = q.number("limit", DEFAULT_TRIALS, 1, MAX_PAGE)
        assert limit is not None
        return _json(await asyncio.to_thread(run.trials, int(raw), limit))


def exposure_warning(host: str) -> str | None:
    """What to warn about when the viewer listens on ``host``: None on loopback; a specific
    address lets anyone who reaches it read the runs (no login, no TLS); a wildcard (0.0.0.0,
    ::) answers only requests that name a loopback host, as the control API."""
    if host_name(host) in ("", "0.0.0.0", "::"):
        return (f"listening on {host or 'every interface'}: only requests naming a loopback host are answered "
                f"(DNS-rebinding guard); give --host the address other machines use to serve them")
    if is_loopback(host):
        return None
    return f"listening on {host}: anyone who can reach it can read these runs (no login, no TLS)"


def url_of(host: str, port: int) -> str:
    """The page's URL for a viewer on ``host``:``port`` (IPv6 in brackets; a wildcard bind
    as 127.0.0.1)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def serve(runs: list[Run], host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve the viewer of ``runs`` on ``host``:``port`` (0: a free port the system picks)
    until SIGINT or SIGTERM, then stop cleanly; ``ready(url)`` is called once it listens.
    Raises OSError when the address cannot be bound."""
    import signal

    runner = web.AppRunner(ViewerApp(runs).app(host), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready(url_of(host, bound))
        await stop.wait()
    finally:
        await runner.cleanup()
