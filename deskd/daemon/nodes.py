"""The daemon's composition root: one builder per mode, each returning a :class:`Node` whose
``run()`` serves until SIGTERM/SIGINT (or the end of replayed data) and returns an exit code.

* :func:`build_paper_node` - a paced replay of the config's bar files, paper fills;
* :func:`build_live_node` - bars, fills and positions from an OANDA v20 broker.

A node owns its background jobs, in one place (:meth:`Node._jobs`): the strategy-health
snapshot, the systemd watchdog (pinged only while bars and ticks make progress), the SQLite
WAL checkpoint (in a worker thread), and the control API, which serves only once recovery is
complete. The live session's reconciliation runs on its own schedule, between ticks. The CLI only parses arguments into
:class:`RunOptions` and calls a builder.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from deskd.adapters.bars import BarFileSummary, scan_bars
from deskd.adapters.replay import replay_feed
from deskd.configs.models import DeskConfig
from deskd.core.text import shown
from deskd.daemon.logs import EventLogger
from deskd.daemon.runner import DeskRunner, PacedReplayFeed, serve, serve_live
from deskd.daemon.strategy_health import HealthMonitor, load_history, profiles_from_report
from deskd.daemon.systemd import notify, watchdog_interval_s

log = structlog.get_logger("deskd.run")

#: a PASSIVE WAL checkpoint this often keeps the WAL small without blocking a commit
WAL_CHECKPOINT_EVERY_S = 2.0


class OptionError(ValueError):
    """Run options that cannot work (the CLI exits 2 with the message)."""


@dataclass(frozen=True)
class RunOptions:
    """How to run the daemon. Times in seconds; ``store_url`` a SQLAlchemy URL."""

    store_url: str
    scenario: str = "A"
    speed: float = 1.0                      # paper: replay clock speed, 0 = as fast as possible
    exit_at_end: bool = False               # paper: close out (EOD) and exit at the end of the files
    warmup_bars: int = 500                  # live: candles per symbol read at start-up
    poll_interval_s: float | None = None    # live: poll every N s instead of at each bar close
    broker_timeout_s: float = 5.0           # live: one broker request
    reconcile_every_s: float = 300.0        # live: reconciliation between ticks (0 = every tick)
    adopt: bool = False                     # live: take over broker trades the store does not know
    serve_api: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 8765
    api_allowed_hosts: tuple[str, ...] = ()  # Host names clients use, beyond the bind host
    api_token: str | None = None
    health_file: str | None = None
    broker: str = field(default="paper")     # the mode's name, for the logs
    counterfactuals: bool = True             # follow every decision's bracket into the store


def check_options(cfg: DeskConfig, o: RunOptions) -> None:
    """Raises OptionError for options that cannot work with ``cfg``."""
    from deskd.daemon.api import check_token

    if o.scenario not in cfg.costs.scenarios:
        raise OptionError(f"--scenario {shown(o.scenario)}: the config defines {', '.join(cfg.costs.scenarios)}")
    if o.serve_api and not 1 <= o.api_port <= 65535:
        raise OptionError(f"--api-port {o.api_port}: a TCP port is 1-65535")
    if not (math.isfinite(o.speed) and o.speed >= 0):
        raise OptionError(f"--speed {o.speed:g}: must be 0 (as fast as possible) or a positive factor "
                          f"of real time")
    if o.api_token is not None:
        try:
            check_token(o.api_token)
        except ValueError as e:
            raise OptionError(str(e)) from None
    if not 2 <= o.warmup_bars <= 5000:
        raise OptionError("--warmup-bars: between 2 and 5000 (v20 serves at most 5000 candles)")
    for flag, v in (("--poll-interval", o.poll_interval_s), ("--broker-timeout", o.broker_timeout_s)):
        if v is not None and not (math.isfinite(v) and v > 0.0):
            raise OptionError(f"{flag}: must be a positive number of seconds, not {v:g}")
    if not (math.isfinite(o.reconcile_every_s) and o.reconcile_every_s >= 0):
        raise OptionError(f"--reconcile-every: must be 0 (every tick) or more seconds, not {o.reconcile_every_s:g}")


class Node:
    """A built daemon: its runner (store, desk, recovery), and either a paced replay feed
    (paper) or a live session (v20). ``run()`` returns the process's exit code."""

    def __init__(self, cfg: DeskConfig, opts: RunOptions, runner: DeskRunner,
                 feed: PacedReplayFeed | None = None, session=None):
        self.cfg, self.opts, self.runner, self.feed, self.session = cfg, opts, runner, feed, session
        EventLogger(runner.desk.bus)
        self.health = _health_monitor(runner)
        self.summary: str | None = None  # set by run() when replayed data ended (--exit-at-end)

    def run(self) -> int:
        """Serve until stopped; closes the store. After the end of replayed data
        (``--exit-at-end``) :attr:`summary` is one line: bars, trades, final equity. Raises
        OptionError (the API port cannot be bound), StoreError."""
        try:
            code = asyncio.run(self._serve())
            if self.runner.ended:
                self.summary = self._summary()
            return code
        finally:
            self.runner.close()

    def _summary(self) -> str:
        """Bars, trades (in the store, for this desk and scenario) and final equity."""
        from sqlalchemy import func, select

        from deskd.persistence.store import trades

        r, d = self.runner, self.runner.desk
        n = r.conn.execute(select(func.count()).select_from(trades).where(
            trades.c.desk == self.cfg.desk, trades.c.scenario == d.scenario)).scalar_one()
        return (f"end of data: {r.stats.live + r.stats.warmed:,} bars ({r.stats.live:,} traded now, "
                f"{r.stats.warmed:,} already in the store), {n:,} trades, final equity "
                f"{d.ledger.equity_usd:,.2f} USD (desk {self.cfg.desk}, scenario {d.scenario})")

    def busy_since(self) -> float | None:
        """perf_counter() when the bar or tick in flight started; None when idle."""
        started = [t for t in (self.runner.bar_started, self.session.busy_since if self.session else None)
                   if t is not None]
        return min(started) if started else None

    async def _serve(self) -> int:
        from deskd.adapters.v20.client import BrokerError
        from deskd.daemon.api import ControlAPI, allowed_hosts_for, bind_warning, start_api
        from deskd.daemon.prometheus import DeskMetrics

        o, runner, session = self.opts, self.runner, self.session
        # built now, so its metrics count start-up's events; it serves once recovery is complete
        control = None
        if o.serve_api:
            hosts = allowed_hosts_for(o.api_host) | set(o.api_allowed_hosts) if o.api_allowed_hosts else None
            control = ControlAPI(runner, o.api_token, session, DeskMetrics(runner, session, self.health),
                                 self.health, allowed_hosts=hosts)
            if (warning := bind_warning(o.api_host)) is not None:
                log.warning(warning)
        api: list = []  # the control API's AppRunner, once it serves
        log.info("deskd running", desk=runner.cfg.desk, scenario=runner.desk.scenario, broker=o.broker,
                 api=f"http://{o.api_host}:{o.api_port}" if o.serve_api else None,
                 api_actions=bool(o.api_token), speed=o.speed if session is None else None)
        jobs = self._jobs()

        async def ready() -> None:
            """Recovery is complete: only now does the API serve, so nothing reads or acts on
            a desk the store has not restored. Raises OptionError when the port is taken."""
            if control is not None:
                try:
                    api.append(await start_api(control, o.api_host, o.api_port))
                except OSError as e:
                    raise OptionError(f"--api-port {o.api_port}: cannot listen on {o.api_host}: "
                                      f"{e.strerror}") from None
            notify("READY=1")
            log.info("recovered; trading", open_positions=len(runner.desk.ledger.open),
                     state=runner.desk.state.state.value, warm_up_bars=runner.stats.warmed)
        try:
            if session is None:
                assert self.feed is not None
                return await serve(runner, self.feed, o.exit_at_end, on_ready=ready)
            try:
                async with session.client:
                    return await serve_live(session, o.poll_interval_s, on_ready=ready, stop=session.stop)
            except BrokerError as e:
                log.error("the broker could not be read at start-up; not trading blind", error=str(e))
                raise OptionError(f"the broker could not be read at start-up: {e}") from None
        finally:
            notify("STOPPING=1")
            for job in jobs:
                job.cancel()
            self._write_health()
            for site in api:
                await site.cleanup()

    # -- background jobs, in one home ----------------------------------------------------------
    def _jobs(self) -> list[asyncio.Task]:
        """Start the node's periodic jobs on the running loop; the caller cancels them."""
        jobs = [asyncio.create_task(_every(self.cfg.health.snapshot_every_s, self._write_health),
                                    name="health-snapshot")]
        interval = watchdog_interval_s()
        if interval:
            jobs.append(asyncio.create_task(_every(interval, lambda: self._watchdog(interval)), name="watchdog"))
        wal = self.runner.checkpoint
        if wal is not None:
            jobs.append(asyncio.create_task(_every(WAL_CHECKPOINT_EVERY_S, lambda: asyncio.to_thread(wal.checkpoint)),
                                            name="wal-checkpoint"))
        return jobs

    def _watchdog(self, interval_s: float) -> None:
        """Ping systemd's watchdog while the daemon makes progress: a bar or tick in flight for
        more than four intervals is a hang (a stuck await, a broker that never answers), the
        pings stop and systemd restarts the service. A blocked event loop stops them too."""
        started = self.busy_since()
        if started is None or time.perf_counter() - started < 4 * interval_s:
            notify("WATCHDOG=1")
        else:
            log.error("no progress: the bar or tick in flight has run too long; watchdog not pinged",
                      running_s=round(time.perf_counter() - started, 1))

    def _write_health(self) -> None:
        path = self.health_file()
        try:
            self.health.write(path, datetime.now(UTC).isoformat(timespec="seconds"))
        except OSError as e:
            log.error("cannot write the health snapshot", path=path, error=str(e))

    def health_file(self) -> str:
        """--health-file, else deskd-health.json beside a SQLite store (or in the working
        folder for another database)."""
        if self.opts.health_file:
            return self.opts.health_file
        url = self.opts.store_url
        base = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else Path("deskd.db")
        return str(base.with_name("deskd-health.json"))


async def _every(interval_s: float, job: Callable[[], object]) -> None:
    """Run ``job`` now and then every ``interval_s`` seconds until cancelled (awaiting what
    it returns when that is awaitable)."""
    while True:
        got = job()
        if inspect.isawaitable(got):
            await got
        await asyncio.sleep(interval_s)


def _health_monitor(runner: DeskRunner) -> HealthMonitor:
    """The strategy-health monitor of a running desk, seeded with the store's closed trades.
    Raises OptionError for an unreadable reference report."""
    hc = runner.cfg.health
    reference = None
    if hc.reference_report:
        try:
            reference = profiles_from_report(hc.reference_report, hc.reference_scenario)
        except ValueError as e:
            raise OptionError(str(e)) from None
    return HealthMonitor(hc, list(runner.cfg.strategies.enabled()), runner.desk.bus, reference,
                         load_history(runner.conn, runner.cfg.desk, runner.desk.scenario))


def check_bar_files(cfg: DeskConfig) -> dict[str, BarFileSummary]:
    """Every bar file of the universe validated whole, streaming, before the daemon trades: a
    bad row deep in a file stops it at start-up (exit 2) rather than mid-run, where every
    restart would trade up to it again. Raises BarFileError."""
    return {s: scan_bars(cfg.data.files[s], cfg.data.timezone_of(s), cfg.universe.timeframe_s)
            for s in cfg.universe.symbols}


def warmup_shortfalls(desk, bars: dict[str, int]) -> list[str]:
    """One line per symbol of ``desk`` whose ``bars`` (symbol -> bars in its file) are fewer
    than its strategies' warm-up (:meth:`Strategy.warmup_bars`): those strategies cannot
    signal, or signal on undefined indicators, for most of such a file."""
    lines = []
    filters = getattr(desk, "filters", {})  # the entry filters' indicators warm up too
    for sym, n in bars.items():
        needs = {st.strategy_id: max(st.warmup_bars(), filters[(st.strategy_id, sym)].warmup_bars()
                                     if (st.strategy_id, sym) in filters else 0)
                 for st in desk.strategies.get(sym, ())}
        short = {sid: w for sid, w in needs.items() if n < w}
        if short:
            worst = max(short.values())
            lines.append(f"{sym}: {n:,} bars, fewer than the {worst:,} that {', '.join(sorted(short))} "
                         f"need{'s' if len(short) == 1 else ''} to warm up: few or no signals can be trusted")
    return lines


def build_paper_node(cfg: DeskConfig, opts: RunOptions) -> Node:
    """The paper daemon: the config's bar files replayed at ``opts.speed``, paper fills with
    the ``opts.scenario`` costs. Raises OptionError, BarFileError (checked whole before the
    store opens), StoreError."""
    check_options(cfg, opts)
    checked = check_bar_files(cfg)
    runner = DeskRunner(cfg, opts.store_url, opts.scenario, counterfactuals=opts.counterfactuals)
    for line in warmup_shortfalls(runner.desk, {s: f.bars for s, f in checked.items()}):
        log.warning("short bar file", detail=line)
    feed = PacedReplayFeed(replay_feed(cfg), cfg.universe.timeframe_s, opts.speed)
    return Node(cfg, opts, runner, feed=feed)


def build_live_node(cfg: DeskConfig, opts: RunOptions) -> Node:
    """The live daemon on an OANDA v20 broker (credentials from the DESKD_V20_* environment).
    Raises OptionError (bad options, missing credentials), StoreError."""
    from deskd.adapters.v20.book import V20Book
    from deskd.adapters.v20.candles import V20CandleSource
    from deskd.adapters.v20.client import V20Client, credentials_from_env
    from deskd.daemon.live import LiveSession
    from deskd.daemon.scheduler import CandlePoller

    if opts.exit_at_end:
        raise OptionError("--exit-at-end is for replayed bar files (--broker paper); a live desk "
                          "is stopped with SIGTERM and flattened with `deskd flatten`")
    check_options(cfg, opts)
    try:
        creds = credentials_from_env()
    except (ValueError, OSError) as e:
        raise OptionError(str(e)) from None
    client = V20Client(creds, timeout_s=opts.broker_timeout_s)
    runner = DeskRunner(cfg, opts.store_url, opts.scenario,
                        make_broker=lambda desk: V20Book(desk.bus, desk.instruments, desk.tf_s),
                        counterfactuals=opts.counterfactuals)
    tf = cfg.universe.timeframe_s
    poller = CandlePoller(runner, V20CandleSource(client, cfg.universe.timeframe, tf, opts.warmup_bars),
                          list(cfg.universe.symbols), tf, wall_clock=opts.poll_interval_s is None)
    session = LiveSession(runner, client, poller, adopt=opts.adopt, reconcile_every_s=opts.reconcile_every_s)
    return Node(cfg, opts, runner, session=session)
