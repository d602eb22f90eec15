"""The ``deskd`` command line.

Exit codes: 0 success; 2 bad input (config, data, arguments, an unreachable daemon), with
one message naming the file, key or row; 1 an action the daemon refused, or an internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deskd import __version__
from deskd.adapters.bars import BarFileError
from deskd.adapters.replay import ReplayFeed
from deskd.configs.loader import ConfigError, load_config
from deskd.configs.models import DataConfig, DeskConfig
from deskd.persistence.store import StoreError, sqlite_url
from deskd.research.backtest import BacktestInputError, check_inputs, run_backtest

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class InputError(ValueError):
    """Bad command-line input."""


def _parse_data(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        sym, sep, path = item.partition("=")
        if not sep or not sym or not path:
            raise InputError(f"--data {item!r}: expected SYMBOL=PATH, e.g. EURUSD=bars/EURUSD_M15.csv.gz")
        out[sym.strip().upper()] = str(Path(path).resolve())
    return out


def _load(args) -> DeskConfig:
    cfg = load_config(args.config)
    if getattr(args, "data", None) or getattr(args, "data_timezone", None):
        files = dict(cfg.data.files)
        files.update(_parse_data(args.data or []))
        tz = args.data_timezone or cfg.data.timezone
        try:
            data = DataConfig(timezone=tz, files=files)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise InputError(f"--data-timezone: {msg}") from None
        unknown = [s for s in files if s not in cfg.universe.symbols]
        if unknown:
            raise InputError(f"--data: {', '.join(unknown)} not in universe.symbols "
                             f"{cfg.universe.symbols} of {args.config}")
        cfg = cfg.model_copy(update={"data": data})
    return cfg


def _summary_table(report: dict) -> Table:
    t = Table(title=f"deskd backtest: {report['desk']} {report['timeframe']}")
    for col in ("scenario", "trades", "win rate", "exp. pips", "exp. USD", "PF", "net USD",
                "cost pips", "max DD", "Sharpe", "final equity USD"):
        t.add_column(col, justify="right")
    fmt = lambda x, f: "-" if x is None else format(x, f)  # noqa: E731
    for scn, r in report["scenarios"].items():
        o = r["overall"]
        t.add_row(scn, str(o["trades"]), fmt(o["win_rate"], ".1%"), fmt(o["expectancy_pips"], ".2f"),
                  fmt(o["expectancy_usd"], ",.2f"), fmt(o["profit_factor"], ".2f"),
                  fmt(o["net_pnl_usd"], ",.2f"), fmt(o["cost_pips"], ",.1f"),
                  fmt(o["max_drawdown_frac"], ".1%"), fmt(o["sharpe_daily_ann"], ".2f"),
                  fmt(r["final_equity_usd"], ",.2f"))
    return t


def _store_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a file path made into a SQLite URL."""
    return value if "://" in value else sqlite_url(value)


def cmd_backtest(args) -> int:
    cfg = _load(args)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios \
        else list(cfg.costs.scenarios)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("runs") / f"backtest-{cfg.desk}-{stamp}"
    err = Console(stderr=True)
    quiet = args.quiet or args.json
    progress = Progress(TextColumn("scenario {task.fields[scn]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("bars"), TimeElapsedColumn(),
                        console=err, transient=True, disable=quiet or not err.is_terminal)

    def on_start(scn: str):
        if not quiet and not err.is_terminal:
            print(f"deskd backtest: scenario {scn} ...", file=sys.stderr, flush=True)
        # the first scenario counts the bars; later ones show them as the total
        known = progress.tasks[-1].completed if progress.tasks else None
        task = progress.add_task("replay", total=known, scn=scn)
        return lambda n: progress.advance(task, n)

    with progress:
        report = run_backtest(cfg, scenarios, out, force=args.force, on_scenario_start=on_start,
                              store_url=_store_url(args.store) if args.store else None)
    if args.json:
        print(json.dumps({"out": str(out), "scenarios": {k: v["overall"] for k, v in report["scenarios"].items()}}))
    elif not args.quiet:
        out_console = Console()
        if not out_console.is_terminal:
            out_console = Console(width=160)
        out_console.print(_summary_table(report))
        print(f"outputs: {out}/ (trades.csv, equity.csv, decisions.csv, report.json, config.yaml)")
    return EXIT_OK


def _token(args) -> str | None:
    """The API token: --token-file, else $DESKD_API_TOKEN; never the desk config."""
    if getattr(args, "token_file", None):
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as e:
            raise InputError(f"--token-file {args.token_file}: {e.strerror}") from None
        if not token:
            raise InputError(f"--token-file {args.token_file}: the file is empty")
        return token
    return os.environ.get("DESKD_API_TOKEN") or None


def _default_store() -> str:
    """$STATE_DIRECTORY/deskd.db under systemd (StateDirectory=), else ./deskd.db."""
    return str(Path(os.environ.get("STATE_DIRECTORY", ".").split(":")[0]) / "deskd.db")


def cmd_run(args) -> int:
    import asyncio

    from deskd.daemon.logs import EventLogger, configure_logging
    from deskd.daemon.runner import DeskRunner, PacedReplayFeed

    configure_logging(args.log_level)
    cfg = _load(args)
    token = _token(args)
    store = _store_url(args.store or _default_store())
    if args.broker == "http":
        if args.exit_at_end:
            raise InputError("--exit-at-end is for replayed bar files (--broker paper); a live desk "
                             "is stopped with SIGTERM and flattened with `deskd flatten`")
        if args.scenario not in cfg.costs.scenarios:
            raise InputError(f"--scenario {args.scenario}: the config defines {', '.join(cfg.costs.scenarios)}")
        runner, session = _live_session(cfg, store, args)
        feed = None
    else:
        check_inputs(cfg, [args.scenario])
        runner = DeskRunner(cfg, store, args.scenario)
        files = {s: cfg.data.files[s] for s in cfg.universe.symbols}
        feed = PacedReplayFeed(ReplayFeed(files, cfg.data.timezone, cfg.universe.timeframe_s),
                               cfg.universe.timeframe_s, args.speed)
        session = None
    EventLogger(runner.desk.bus)
    try:
        return asyncio.run(_serve(runner, feed, session, args, token))
    finally:
        runner.close()


def _live_session(cfg: DeskConfig, store: str, args):
    """The runner and LiveSession of ``deskd run --broker http``."""
    from deskd.adapters.v20.broker import HttpBroker
    from deskd.adapters.v20.candles import V20CandleSource
    from deskd.adapters.v20.client import V20Client, credentials_from_env
    from deskd.adapters.v20.naming import GRANULARITY
    from deskd.core.money import Instrument
    from deskd.daemon.live import LiveSession
    from deskd.daemon.runner import DeskRunner
    from deskd.daemon.scheduler import CandlePoller

    try:
        creds = credentials_from_env()
    except (ValueError, OSError) as e:
        raise InputError(str(e)) from None
    if not 2 <= args.warmup_bars <= 5000:
        raise InputError("--warmup-bars: between 2 and 5000 (v20 serves at most 5000 candles)")
    for flag, v, low in (("--poll-interval", args.poll_interval, 0.0), ("--broker-timeout", args.broker_timeout, 0.0)):
        if v is not None and not v > low:
            raise InputError(f"{flag}: must be a positive number of seconds, not {v:g}")
    if args.reconcile_every < 0:
        raise InputError(f"--reconcile-every: must be 0 (every tick) or more seconds, not {args.reconcile_every:g}")
    client = V20Client(creds, timeout_s=args.broker_timeout)
    instruments = {s: Instrument.parse(s) for s in cfg.universe.symbols}
    runner = DeskRunner(cfg, store, args.scenario, make_broker=lambda desk: HttpBroker(desk.bus, instruments, client))
    tf = cfg.universe.timeframe_s
    poller = CandlePoller(runner, V20CandleSource(client, GRANULARITY[cfg.universe.timeframe], tf, args.warmup_bars),
                          list(cfg.universe.symbols), tf, wall_clock=args.poll_interval is None)
    return runner, LiveSession(runner, poller, adopt=args.adopt, reconcile_every_s=args.reconcile_every)


async def _serve(runner, feed, session, args, token) -> int:
    import asyncio

    import structlog

    from deskd.adapters.v20.client import BrokerError
    from deskd.daemon.api import ControlAPI, start_api
    from deskd.daemon.prometheus import DeskMetrics
    from deskd.daemon.runner import serve, serve_live
    from deskd.daemon.systemd import notify, watchdog_interval_s, watchdog_pings

    log = structlog.get_logger("deskd.run")
    health = _health_monitor(runner)
    # built now, so its metrics count start-up's events; it serves once recovery is complete
    control = None if args.no_api else ControlAPI(runner, token, session, DeskMetrics(runner, session, health),
                                                  health)
    api: list = []  # the control API's AppRunner, once it serves
    log.info("deskd running", desk=runner.cfg.desk, scenario=runner.desk.scenario, broker=args.broker,
             api=None if args.no_api else f"http://{args.api_host}:{args.api_port}",
             api_actions=bool(token), speed=args.speed if session is None else None)
    interval = watchdog_interval_s()
    dog = asyncio.create_task(watchdog_pings(interval)) if interval else None
    store_path = args.store if args.store and "://" not in args.store else _default_store()
    health_file = args.health_file or str(Path(store_path).with_name("deskd-health.json"))
    snapshots = asyncio.create_task(_write_health(health, health_file, runner.cfg.health.snapshot_every_s))

    async def ready() -> None:
        """Recovery is complete (the store's snapshot is in the desk): only now does the API
        serve, so nothing reads or acts on a desk the store has not restored. Raises
        InputError when the API port cannot be bound."""
        if control is not None:
            try:
                api.append(await start_api(control, args.api_host, args.api_port))
            except OSError as e:
                raise InputError(f"--api-port {args.api_port}: cannot listen on "
                                 f"{args.api_host}: {e.strerror}") from None
        notify("READY=1")
        log.info("recovered; trading", open_positions=len(runner.desk.ledger.open),
                 state=runner.desk.state.state.value, warm_up_bars=runner.stats.warmed)
    try:
        if session is None:
            return await serve(runner, feed, args.exit_at_end, on_ready=ready)
        try:
            async with session.client:
                return await serve_live(session, args.poll_interval, on_ready=ready)
        except BrokerError as e:
            log.error("the broker could not be read at start-up; not trading blind", error=str(e))
            print(f"deskd: error: the broker could not be read at start-up: {e}", file=sys.stderr)
            return EXIT_INPUT
    finally:
        notify("STOPPING=1")
        snapshots.cancel()
        _write_health_once(health, health_file)
        if dog is not None:
            dog.cancel()
        for site in api:
            await site.cleanup()


def _api_request(args, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a call to the daemon's API. Raises InputError when the
    daemon cannot be reached or no token is set for a POST."""
    import urllib.error
    import urllib.request

    url = args.api.rstrip("/") + path
    headers = {"Content-Type": "application/json"}
    if method == "POST":
        token = _token(args)
        if not token:
            raise InputError("no API token: set DESKD_API_TOKEN or pass --token-file")
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {"error": e.reason}
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"cannot reach the daemon at {args.api}: "
                         f"{getattr(e, 'reason', e)}") from None


def _health_monitor(runner):
    """The strategy-health monitor of a running desk, seeded with the store's closed trades.
    Raises InputError for an unreadable reference report."""
    from deskd.daemon.strategy_health import HealthMonitor, load_history, profiles_from_report

    hc = runner.cfg.health
    reference = None
    if hc.reference_report:
        try:
            reference = profiles_from_report(hc.reference_report, hc.reference_scenario)
        except ValueError as e:
            raise InputError(str(e)) from None
    return HealthMonitor(hc, list(runner.cfg.strategies.enabled()), runner.desk.bus, reference,
                         load_history(runner.conn, runner.cfg.desk, runner.desk.scenario))


def _write_health_once(health, path: str) -> None:
    import structlog
    try:
        health.write(path, datetime.now(UTC).isoformat(timespec="seconds"))
    except OSError as e:
        structlog.get_logger("deskd.run").error("cannot write the health snapshot", path=path, error=str(e))


async def _write_health(health, path: str, every_s: float) -> None:
    """The JSON health snapshot, every ``every_s`` seconds."""
    import asyncio
    while True:
        _write_health_once(health, path)
        await asyncio.sleep(every_s)


def _call_api(args, method: str, path: str, body: dict | None = None) -> int:
    status, reply = _api_request(args, method, path, body)
    if status >= 300:
        print(f"deskd: {method} {path} refused ({status}): {reply.get('error', reply)}", file=sys.stderr)
        return EXIT_INTERNAL
    print(json.dumps(reply, indent=2))
    return EXIT_OK


def cmd_status(args) -> int:
    return _call_api(args, "GET", "/status")


def cmd_halt(args) -> int:
    return _call_api(args, "POST", "/halt", {"reason": args.reason})


def cmd_resume(args) -> int:
    return _call_api(args, "POST", "/resume", {"reason": args.reason, "force": args.force})


def cmd_flatten(args) -> int:
    return _call_api(args, "POST", "/flatten", {"reason": args.reason})


def cmd_reconcile(args) -> int:
    """Store vs broker (or the running daemon's reconciliation with --daemon): exit 0 in sync,
    1 with differences, 2 when the broker (or the daemon) cannot be reached."""
    cfg = load_config(args.config)
    if args.daemon:
        status, reply = _api_request(args, "POST", "/reconcile",
                                     {"reason": args.reason, "book_broker_closes": args.book_broker_closes})
        if status == 502:
            print(f"deskd: reconcile: {reply.get('error')}", file=sys.stderr)
            return EXIT_INPUT
        if status != 200:
            print(f"deskd: POST /reconcile refused ({status}): {reply.get('error', reply)}", file=sys.stderr)
            return EXIT_INTERNAL
        diffs, n = reply["differences"], reply["positions"]
    else:
        if args.book_broker_closes:
            raise InputError("--book-broker-closes books fills in the running desk: use it with --daemon")
        got = _reconcile_store(cfg, args)
        if got is None:
            return EXIT_INPUT
        diffs, n = got
    _print_diffs(cfg, args, diffs, n)
    return EXIT_OK if not diffs else EXIT_INTERNAL


def _reconcile_store(cfg: DeskConfig, args) -> tuple[list[dict], int] | None:
    """(differences between the store's positions and the broker's open trades, positions
    in the store); None when the broker could not be read."""
    import asyncio

    from sqlalchemy import select

    from deskd.adapters.v20.client import BrokerError, V20Client, credentials_from_env
    from deskd.adapters.v20.reconcile import Holding, broker_holdings, reconcile
    from deskd.persistence.store import open_store, positions

    try:
        creds = credentials_from_env()
    except (ValueError, OSError) as e:
        raise InputError(str(e)) from None
    engine = open_store(_store_url(args.store or _default_store()))
    with engine.connect() as conn:
        rows = conn.execute(select(positions).filter_by(desk=cfg.desk, scenario=args.scenario)).mappings().all()
    engine.dispose()
    expected = {r["symbol"]: Holding(r["symbol"], r["side"], r["units"], r["entry_price"], r["sl_price"],
                                     r["tp_price"]) for r in rows}

    async def fetch():
        async with V20Client(creds, max_attempts=3) as client:
            return await client.open_trades()
    try:
        trades = asyncio.run(fetch())
    except BrokerError as e:
        print(f"deskd: reconcile: the broker could not be read: {e}", file=sys.stderr)
        return None
    held, foreign = broker_holdings(trades, f"{cfg.desk}-{args.scenario}-", {r["client_order_id"] for r in rows})
    return [d.as_dict() for d in reconcile(expected, held, foreign)], len(expected)


def _print_diffs(cfg: DeskConfig, args, diffs: list[dict], n_positions: int) -> None:
    if args.json:
        print(json.dumps({"in_sync": not diffs, "desk": cfg.desk, "scenario": args.scenario,
                          "differences": diffs}, indent=2))
    elif not diffs:
        print(f"in sync: {n_positions} position(s) of desk {cfg.desk} match the broker")
    else:
        table = Table(title=f"reconcile {cfg.desk}/{args.scenario}: {len(diffs)} difference(s)")
        for col in ("symbol", "field", "expected (store)", "broker", "note"):
            table.add_column(col)
        for d in diffs:
            table.add_row(d["symbol"], d["field"], d["expected"], d["broker"], d["note"])
        Console(width=160).print(table)


def cmd_fake_broker(args) -> int:
    """Serve the fake v20 broker over the config's bar files until SIGTERM/SIGINT."""
    import asyncio
    import signal

    from aiohttp import web

    from deskd.testing.fake_v20 import FakeV20, build_app

    cfg = _load(args)
    check_inputs(cfg, [next(iter(cfg.costs.scenarios))])
    token = _token(args) or os.environ.get("DESKD_V20_TOKEN")
    if not token:
        raise InputError("no token for the fake broker: set DESKD_V20_TOKEN or pass --token-file")
    broker = FakeV20.from_files({s: cfg.data.files[s] for s in cfg.universe.symbols}, cfg.data.timezone,
                                cfg.universe.timeframe_s, account_id=args.account, token=token,
                                state_file=args.state)

    async def serve() -> int:
        runner = web.AppRunner(build_app(broker), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as e:
            raise InputError(f"--port {args.port}: {e.strerror}") from None
        print(json.dumps({"fake_v20": f"http://{args.host}:{args.port}", "account": broker.account_id,
                          "instruments": sorted(broker.bars), "released": broker.released}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        broker.save()
        await runner.cleanup()
        return EXIT_OK
    return asyncio.run(serve())


def cmd_check_config(args) -> int:
    cfg = load_config(args.config)
    enabled = ", ".join(cfg.strategies.enabled())
    print(f"{args.config}: OK - desk {cfg.desk}, {cfg.universe.timeframe} "
          f"{','.join(cfg.universe.symbols)}; strategies {enabled}; "
          f"scenarios {','.join(cfg.costs.scenarios)}")
    return EXIT_OK


def _add_config_and_data(p: argparse.ArgumentParser, config_help: str = "desk config YAML") -> None:
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--data", action="append", metavar="SYMBOL=PATH",
                   help="bar file for a symbol, overriding data.files (repeatable); CSV, .csv.gz or Parquet")
    p.add_argument("--data-timezone", metavar="TZ", help="IANA timezone of the bar files' time column, "
                   "overriding data.timezone (e.g. America/New_York)")


def _add_api_args(p: argparse.ArgumentParser, token: bool, prefix: str = "") -> None:
    """--api (and --token-file) of the commands that talk to a running daemon."""
    p.add_argument("--api", default=os.environ.get("DESKD_API", "http://127.0.0.1:8765"),
                   help=f"{prefix}daemon API URL (default $DESKD_API or http://127.0.0.1:8765)")
    if token:
        p.add_argument("--token-file", metavar="FILE", help=f"{prefix}bearer token file (default $DESKD_API_TOKEN)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deskd", description="Event-driven trading daemon for a systematic FX desk.")
    p.add_argument("--version", action="version", version=f"deskd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("backtest", help="replay bar files through the desk, per cost scenario",
                       description="Replay bar files through the same handlers the daemon runs, once per "
                                   "cost scenario, and write trades.csv, equity.csv, decisions.csv, "
                                   "report.json and the resolved config.yaml to --out.")
    _add_config_and_data(b, "desk config YAML (see configs/examples/desk.yaml)")
    b.add_argument("--scenarios", metavar="A,B,C", help="cost scenarios to run (default: all in the config)")
    b.add_argument("--out", metavar="DIR", help="output folder (default: runs/backtest-<desk>-<UTC time>)")
    b.add_argument("--store", metavar="URL|PATH", help="also record the run in a store: a SQLite file "
                   "path, or a SQLAlchemy URL such as postgresql+psycopg://user@host/deskd")
    b.add_argument("--force", action="store_true",
                   help="replace --out if it exists, and this desk's earlier rows in --store")
    b.add_argument("--quiet", action="store_true", help="print nothing on success")
    b.add_argument("--json", action="store_true", help="print the output folder and overall metrics as JSON")
    b.set_defaults(func=cmd_backtest)

    r = sub.add_parser("run", help="run the trading daemon (paper replay or a v20 broker)",
                       description="Run the desk as a daemon, every bar committed to the store, control API "
                                   "on 127.0.0.1; restarting resumes from the store; SIGTERM/SIGINT finish "
                                   "the bar in flight, commit and exit 0. --broker paper (default): bars "
                                   "from a paced replay of the config's files, paper fills. --broker http: "
                                   "bars, fills and positions from an OANDA v20 REST broker (account from "
                                   "DESKD_V20_URL, DESKD_V20_ACCOUNT, DESKD_V20_TOKEN or DESKD_V20_TOKEN_FILE), "
                                   "reconciled before any trading, on a schedule and on demand.")
    _add_config_and_data(r)
    r.add_argument("--broker", choices=["paper", "http"], default="paper",
                   help="paper: replayed files and simulated fills; http: a v20 broker (default paper)")
    r.add_argument("--store", metavar="URL|PATH",
                   help="store: SQLite file path or SQLAlchemy URL (default $STATE_DIRECTORY/deskd.db "
                        "under systemd, else ./deskd.db)")
    r.add_argument("--scenario", default="A",
                   help="cost scenario of the paper fills; with http, only a name in client order ids (default A)")
    r.add_argument("--speed", type=float, default=1.0,
                   help="paper: replay clock speed: 1 = real time, 100 = 100x faster, 0 = as fast as possible")
    r.add_argument("--exit-at-end", action="store_true",
                   help="paper: at the end of the data close out positions (EOD), commit and exit 0")
    r.add_argument("--warmup-bars", type=int, default=500, metavar="N",
                   help="http: candles per symbol read at start-up to warm the indicators (default 500)")
    r.add_argument("--poll-interval", type=float, metavar="SECONDS",
                   help="http: poll the broker every SECONDS instead of at each bar close (the fake "
                        "broker, demos); the broker's clock is then not checked against the wall clock")
    r.add_argument("--broker-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="http: timeout of one broker request; timeouts are retried with backoff (default 5)")
    r.add_argument("--reconcile-every", type=float, default=300.0, metavar="SECONDS",
                   help="http: reconcile with the broker this often between ticks (default 300)")
    r.add_argument("--adopt", action="store_true",
                   help="http: at start-up take over broker trades the store does not know (one per "
                        "symbol, with a stop-loss); without it they are reported and the desk waits "
                        "in SAFE_MODE")
    r.add_argument("--api-host", default="127.0.0.1", help="control API address (default 127.0.0.1)")
    r.add_argument("--api-port", type=int, default=8765, help="control API port (default 8765)")
    r.add_argument("--no-api", action="store_true", help="do not serve the control API")
    r.add_argument("--token-file", metavar="FILE", help="file holding the API bearer token "
                   "(default: $DESKD_API_TOKEN); without one, the API is read-only")
    r.add_argument("--health-file", metavar="PATH",
                   help="strategy-health JSON snapshot, rewritten every health.snapshot_every_s "
                        "(default: deskd-health.json beside the SQLite store)")
    r.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    r.set_defaults(func=cmd_run)

    for name, func, helptext in (("status", cmd_status, "show the running daemon's status"),
                                 ("halt", cmd_halt, "stop new entries (exits keep working)"),
                                 ("resume", cmd_resume, "return the desk to RUNNING"),
                                 ("flatten", cmd_flatten, "close every position at the next open")):
        v = sub.add_parser(name, help=helptext, description=f"{helptext[0].upper()}{helptext[1:]}, "
                           "through the daemon's control API.")
        _add_api_args(v, token=name != "status")
        if name != "status":
            v.add_argument("--reason", required=True, help="why, for the journal")
        if name == "resume":
            v.add_argument("--force", action="store_true", help="also lift a drawdown halt before its anchor")
        v.set_defaults(func=func)

    rc = sub.add_parser("reconcile", help="compare the store's positions with the broker's",
                        description="Compare the desk's open positions in the store with the broker's open "
                                    "trades (side, units, average price, stop and target). Broker from "
                                    "DESKD_V20_URL, DESKD_V20_ACCOUNT, DESKD_V20_TOKEN[_FILE]. Exit 0 in "
                                    "sync, 1 on differences, 2 when the broker cannot be reached. With "
                                    "--daemon the running daemon reconciles (and its desk state follows).")
    rc.add_argument("--config", required=True, help="desk config YAML (names the desk)")
    rc.add_argument("--store", metavar="URL|PATH", help="store (default as deskd run)")
    rc.add_argument("--scenario", default="A", help="the run's scenario key in the store (default A)")
    rc.add_argument("--json", action="store_true", help="print the differences as JSON")
    rc.add_argument("--daemon", action="store_true",
                    help="ask the running daemon to reconcile now (its API, token as for `deskd halt`); "
                         "a clean result lets `deskd resume` leave SAFE_MODE")
    rc.add_argument("--book-broker-closes", action="store_true",
                    help="with --daemon: first book the closes the broker reported but the desk could "
                         "not explain (by hand on the platform), at the broker's price")
    rc.add_argument("--reason", default="operator reconcile", help="with --daemon: why, for the journal")
    _add_api_args(rc, token=True, prefix="with --daemon: ")
    rc.set_defaults(func=cmd_reconcile)

    fb = sub.add_parser("fake-broker", help="serve a fake OANDA v20 broker over the config's bar files",
                        description="Serve a fake OANDA v20 REST broker (tests and demos) whose market is the "
                                    "config's bar files; POST /admin/advance {\"bars\": n} moves time, "
                                    "POST /admin/faults injects faults. Token from DESKD_V20_TOKEN or "
                                    "--token-file.")
    _add_config_and_data(fb, "desk config YAML (universe and bar files)")
    fb.add_argument("--host", default="127.0.0.1")
    fb.add_argument("--port", type=int, default=8766)
    fb.add_argument("--account", default="101-001-0000000-001", help="the account id it serves")
    fb.add_argument("--state", metavar="FILE", help="save state here; a restart reloads it")
    fb.add_argument("--token-file", metavar="FILE", help="file holding the bearer token")
    fb.set_defaults(func=cmd_fake_broker)

    c = sub.add_parser("check-config", help="validate a desk config and exit",
                       description="Validate a desk config; exit 0 when valid, 2 with the failing keys.")
    c.add_argument("config", help="desk config YAML")
    c.set_defaults(func=cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, BarFileError, BacktestInputError, InputError, StoreError) as e:
        print(f"deskd: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("deskd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
