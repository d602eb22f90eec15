"""``deskd run``: the daemon (paced replay and paper fills here; a v20 broker via live.py).

One process: a feed releases bars as they close, each bar goes through the same Desk as a
backtest, and the store commits every bar. Start-up and crash recovery are one path
(:mod:`deskd.persistence.recovery`): bars the store has already processed are replayed through
the indicators only, the snapshot is restored, and trading resumes with the next bar.
Start-up is restore, then serve: nothing reads or writes the desk before the snapshot is back
(the runner refuses to commit before it; the CLI starts the control API only once recovered).

Feeds: :class:`PacedReplayFeed` plays bar files as if live, releasing each bar at its close
time on a clock running at ``speed`` x real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from deskd.adapters.paper import paper_broker
from deskd.adapters.replay import ReplayFeed, close_out, replay_bars
from deskd.configs.models import DeskConfig
from deskd.core.bus import Bus
from deskd.core.events import BarClosed, StateChanged
from deskd.core.time import iso
from deskd.desk.desk import Desk
from deskd.persistence.recovery import (
    decisions_without_counterfactual,
    load_snapshot,
    restore,
    unknown_symbols,
)
from deskd.persistence.store import (
    StoreError,
    StoreWriter,
    WalCheckpoint,
    insert_counterfactuals,
    open_store,
    state_transitions,
)
from deskd.research.counterfactuals import (
    Counterfactual,
    CounterfactualObserver,
    counterfactual_json,
    counterfactual_rows,
)
from deskd.risk.guard import TradingCalendar

log = structlog.get_logger("deskd.run")

#: resolved counterfactuals a runner holds while the store refuses them (retried at each bar);
#: past that the oldest are dropped (a restart whose warm-up reaches them derives them again)
CF_UNSAVED_MAX = 10_000
#: counterfactuals written per transaction (a restart's back-fill may hold many)
CF_COMMIT_ROWS = 5_000
#: up to this many stored at once are logged one line each; more (a back-fill) in one line
CF_LOG_EACH_MAX = 100


class BarGate:
    """Checks each incoming bar of a live feed: a bar at or before the symbol's last one is a
    duplicate (logged and dropped, never traded); a jump of more than one timeframe is logged
    as missing bars unless the first missing bar falls in the weekly close (a Saturday or
    Sunday trading day of ``calendar``); a bar released more than ``late_after_s`` after its
    close is logged as late. Counts are kept for /status and metrics."""

    def __init__(self, timeframe_s: int, calendar: TradingCalendar, late_after_s: float = 60.0):
        self.tf = timeframe_s
        self.calendar = calendar
        self.late_after_s = late_after_s
        self.last: dict[str, int] = {}
        self.duplicates = 0
        self.gaps = 0
        self.late = 0

    def admit(self, bar: BarClosed, now_ts: float | None = None) -> bool:
        last = self.last.get(bar.symbol)
        if last is not None and bar.bar_ts <= last:
            self.duplicates += 1
            log.warning("duplicate or out-of-order bar dropped", symbol=bar.symbol,
                        bar_time=iso(bar.bar_ts), last_bar_time=iso(last))
            return False
        if last is not None and bar.bar_ts - last > self.tf \
                and self.calendar.trading_day(last + self.tf).weekday() < 5:
            self.gaps += 1
            log.warning("bars missing before this one", symbol=bar.symbol,
                        bar_time=iso(bar.bar_ts), missing=(bar.bar_ts - last) // self.tf - 1)
        if now_ts is not None and now_ts - bar.close_ts > self.late_after_s:
            self.late += 1
            log.warning("late bar", symbol=bar.symbol, bar_time=iso(bar.bar_ts),
                        late_s=round(now_ts - bar.close_ts, 3))
        self.last[bar.symbol] = bar.bar_ts
        return True


@dataclass
class RunStats:
    warmed: int = 0
    live: int = 0


class NotRestoredError(RuntimeError):
    """A commit before the store's snapshot was restored into the desk: it would write the
    bare desk (starting balance, no positions, trade ids from 1) over the store."""


class _RestoreFirstWriter(StoreWriter):
    """The daemon's StoreWriter: every bar commits, and nothing commits until ``restored()``."""

    def __init__(self, conn, desk: Desk, restored: Callable[[], bool]):
        super().__init__(conn, desk, commit_every_bars=1, on_existing="resume")
        self._is_restored = restored

    def commit(self) -> None:
        """Commit as StoreWriter does. Raises NotRestoredError before the snapshot is restored."""
        if not self._is_restored():
            raise NotRestoredError("the store's snapshot is not restored yet: refusing to commit "
                                   "the bare desk over it")
        super().commit()


def _in_memory(store_url: str) -> bool:
    """An SQLite database that lives only as long as its connection (``sqlite://``,
    ``sqlite:///:memory:``, ``mode=memory``). False for a URL that does not parse (open_store
    reports it)."""
    try:
        url = make_url(store_url)
    except ArgumentError:
        return False
    return url.get_backend_name() == "sqlite" and (url.database in (None, "", ":memory:")
                                                   or url.query.get("mode") == "memory")


def last_transition(conn, desk: str, scenario: str) -> StateChanged | None:
    """The newest state transition the store holds for (``desk``, ``scenario``), or None."""
    t = state_transitions
    row = conn.execute(select(t.c.bar_ts, t.c.old, t.c.new, t.c.trigger, t.c.reason)
                       .where(t.c.desk == desk, t.c.scenario == scenario)
                       .order_by(t.c.id.desc()).limit(1)).first()
    return None if row is None else StateChanged(*row)


class DeskRunner:
    """The daemon's synchronous core: store, recovery and the per-bar pipeline.

    ``make_broker(desk)`` builds the desk's broker (default: the paper broker with
    ``scenario``'s costs). ``clock()`` is the feed's clock in UTC epoch seconds, the only one
    the daemon reads (the desk itself reads none: its time is the bars'): the wall clock, a
    paced replay's simulated clock (:func:`serve` sets it), or the newest bar's close for a
    broker whose clock is not ours. ``checkpoint`` (SQLite stores only, else None) is called
    by the node's jobs every few seconds, off the event loop.
    ``feed(bar)`` for every bar from the start of the data: bars the store has processed are
    warm-up; :meth:`ensure_restored` (called by the first later bar at the latest) restores the
    snapshot and trading resumes. Each live bar commits on its own; nothing commits before the
    snapshot is restored (NotRestoredError).

    With ``counterfactuals`` (the default) an observer of the journal
    (:mod:`deskd.research.counterfactuals`) follows each decision on the bars after it; when its
    bracket resolves, its counterfactual goes to the store's ``counterfactuals`` table (keyed
    to the decision's row; :func:`~deskd.persistence.store.insert_counterfactuals`) and is
    logged (``counterfactual``, counterfactuals.parquet's fields). It is committed in a
    transaction of its own right after the bar's commit, never inside it: the observer is
    handed a bar only once the desk has finished and committed it, so a counterfactual can
    never delay, change or roll back the desk's record (a write the store refuses is logged and
    retried at the next bar, CF_UNSAVED_MAX at most waiting); and a crash between the two
    commits loses nothing for good. After a restart, at the first warm-up bar of each symbol,
    the decisions the store holds on it from that bar on without a counterfactual are re-armed
    (:meth:`CounterfactualObserver.rearm`) and followed over the warm-up bars from their own
    bar, so the store ends with what an uninterrupted run stores; those are written once the
    snapshot is restored. A decision whose bar the warm-up does not replay stays without one.
    Turning counterfactuals off changes no decision, order or trade.

    Raises StoreError when the store cannot be opened,
    is an in-memory SQLite database (a daemon's store must outlive the process), or holds
    positions or orders on symbols the config does not trade.
    """

    def __init__(self, cfg: DeskConfig, store_url: str, scenario: str = "A", make_broker=None,
                 clock: Callable[[], float] = time.time, counterfactuals: bool = True):
        self.cfg = cfg
        if _in_memory(store_url):
            raise StoreError(f"store {store_url} is an in-memory SQLite database, gone when the process "
                             f"ends: a daemon's store must outlive it; give a file path or a server URL")
        self.engine = open_store(store_url)
        where = self.engine.url.render_as_string(hide_password=True)
        self.conn = self.engine.connect()
        self.desk = Desk(cfg, make_broker or paper_broker(cfg, scenario), scenario, Bus())
        self.snapshot = load_snapshot(self.conn, cfg.desk, scenario)
        unknown = unknown_symbols(self.snapshot, self.desk.instruments) if self.snapshot else []
        if unknown:
            self.conn.close()
            self.engine.dispose()
            raise StoreError(f"store {where}: desk {cfg.desk!r} scenario {scenario!r} holds positions or "
                             f"orders on {', '.join(unknown)}, which universe.symbols of the config no "
                             f"longer trades; put them back to close them, or use another store")
        self.checkpoint = WalCheckpoint(self.engine, self.conn) if self.engine.dialect.name == "sqlite" else None
        # the transition into the desk's current state (its trigger and reason, for /status)
        self.last_change: StateChanged | None = last_transition(self.conn, cfg.desk, scenario)
        self.desk.bus.subscribe(StateChanged, self._on_state_changed)
        self.cursor = dict(self.snapshot.cursor) if self.snapshot else {}
        self.writer: StoreWriter = _RestoreFirstWriter(self.conn, self.desk, lambda: self.restored)
        self.gate = BarGate(self.desk.tf_s, self.desk.guard.cal)
        self.gate.last.update(self.cursor)
        self._restored = self.snapshot is None
        self.stats = RunStats()
        self.bar_started: float | None = None  # perf_counter() while a bar is in the pipeline
        self.ended = False  # the end of replayed data was closed out (end_of_data)
        self.clock = clock
        self._cf_done: list[Counterfactual] = []  # resolved, not yet in the store (oldest first)
        self._cf_rearmed: set[str] = set()  # symbols whose stored decisions were re-armed
        self.cf_observer: CounterfactualObserver | None = (
            CounterfactualObserver(self.desk, on_done=self._on_counterfactual) if counterfactuals else None)
        if self.snapshot is None:
            self.writer.commit()  # the desk exists in the store from its first moment

    def _on_state_changed(self, e: StateChanged) -> None:
        self.last_change = e

    def _on_counterfactual(self, cf: Counterfactual) -> None:
        self._cf_done.append(cf)

    def _rearm(self, bar: BarClosed) -> None:
        """At the first warm-up bar of a symbol: the observer follows again the decisions the
        store holds on it from that bar on without a counterfactual (those before it are out
        of reach: their bars are not replayed)."""
        self._cf_rearmed.add(bar.symbol)
        obs = self.cf_observer
        assert obs is not None
        try:
            stored = decisions_without_counterfactual(self.conn, self.cfg.desk, self.desk.scenario, bar.symbol,
                                                      bar.bar_ts)
        except SQLAlchemyError as e:  # they stay without one; a later restart tries again
            log.error("decisions without a counterfactual could not be read; not followed",
                      symbol=bar.symbol, error=f"{type(e).__name__}: {e}")
            return
        n = obs.rearm(stored)
        if n:
            log.info("counterfactuals re-armed: decisions before the restart followed again",
                     symbol=bar.symbol, decisions=n, since=iso(bar.bar_ts))

    def _store_counterfactuals(self) -> None:
        """Write the counterfactuals resolved since the last call and commit them (CF_COMMIT_ROWS
        per transaction), then log each at DEBUG (more than CF_LOG_EACH_MAX at once, a
        restart's back-fill: one INFO line). Called right after the bar's commit (and at
        restore and the end of data), so no transaction holds anything of the desk's: a
        failure rolls back only the chunk in hand, which with the rest is logged and kept for
        the next call (the oldest dropped past CF_UNSAVED_MAX). Never before the snapshot is
        restored."""
        done = self._cf_done
        if not done or not self._restored:
            return
        tf = self.desk.tf_s
        try:
            rows = counterfactual_rows(done, tf)
        except Exception:  # a defect in the formatting: these are lost, the desk goes on
            log.exception("counterfactuals could not be formatted; dropped", count=len(done))
            done.clear()
            return
        written = 0
        for start in range(0, len(rows), CF_COMMIT_ROWS):  # a restart's back-fill: in chunks
            try:
                written += insert_counterfactuals(self.conn, self.cfg.desk, self.desk.scenario,
                                                  rows[start:start + CF_COMMIT_ROWS])
                self.conn.commit()
            except SQLAlchemyError as e:
                with contextlib.suppress(SQLAlchemyError):
                    self.conn.rollback()
                del done[:start]  # the chunks before are committed
                if len(done) > CF_UNSAVED_MAX:
                    del done[:len(done) - CF_UNSAVED_MAX]
                log.error("counterfactuals could not be stored; retried at the next bar", waiting=len(done),
                          error=f"{type(e).__name__}: {e}")
                return
        done.clear()
        if len(rows) <= CF_LOG_EACH_MAX:
            for row in rows:
                log.debug("counterfactual", **counterfactual_json(row, tf))
        else:  # a back-fill after a restart: one line, the rows are in the store and GET /counterfactuals
            log.info("counterfactuals stored", count=len(rows), first=iso(rows[0]["bar_ts"] + tf),
                     last=iso(rows[-1]["bar_ts"] + tf))
        if written < len(rows):
            log.warning("counterfactuals not stored: their decision has one already or is not in the store",
                        count=len(rows) - written)

    def _observe(self, bar: BarClosed) -> None:
        """Hand a traded bar to the counterfactual observer, after the desk and the store: an
        error there is logged and turns the observer off, never stops the desk."""
        if self.cf_observer is None:
            return
        try:
            self.cf_observer.end_bar(bar)
        except Exception:
            log.exception("counterfactuals failed; turned off for this process")
            self.cf_observer.stop()
            self.cf_observer = None

    def is_warm_up(self, bar: BarClosed) -> bool:
        return bar.bar_ts <= self.cursor.get(bar.symbol, -1)

    def feed(self, bar: BarClosed, now_ts: float | None = None, entries_blocked: str | None = None) -> None:
        """One bar from the feed: warm-up for a bar the store has processed, else (once the
        snapshot is restored and the gate admits it) the desk's bar, then the store's commit.
        ``entries_blocked`` is passed to :meth:`Desk.on_bar`."""
        if self.is_warm_up(bar):
            self.desk.warm_up(bar)
            self.stats.warmed += 1
            obs = self.cf_observer
            if obs is not None:
                if bar.symbol not in self._cf_rearmed:
                    self._rearm(bar)
                if obs.following(bar.symbol):
                    self._observe(bar)
            return
        self.ensure_restored()
        if not self.gate.admit(bar, now_ts):
            return
        self.bar_started = time.perf_counter()
        try:
            self.desk.on_bar(bar, entries_blocked)
            self.writer.end_bar(bar)
            self._observe(bar)
            self._store_counterfactuals()
        finally:
            self.bar_started = None
        self.stats.live += 1

    @property
    def restored(self) -> bool:
        """The desk holds the store's snapshot (or the store had none): it may be read,
        traded and committed."""
        return self._restored

    def ensure_restored(self) -> None:
        """Put the store's snapshot back into the desk, once, after warm-up (the bars the
        store has processed); bars warmed up later only reach the indicators. The
        counterfactuals resolved in the warm-up are stored then."""
        if not self._restored:
            assert self.snapshot is not None  # _restored starts True without one
            restore(self.desk, self.snapshot)
            self._restored = True
            log.info("recovered from the store", warm_up_bars=self.stats.warmed,
                     open_positions=len(self.desk.ledger.open), state=self.desk.state.state.value)
            self._store_counterfactuals()

    def end_of_data(self) -> None:
        """Close out as a backtest does at the end of replayed data, and commit."""
        self.ensure_restored()
        close_out(self.desk)
        self.writer.commit()
        if self.cf_observer is not None:
            try:
                self.cf_observer.finish()
            except Exception:  # as in _observe: counterfactuals never stop the desk
                log.exception("counterfactuals failed at the end of data")
            self.cf_observer = None
        self._store_counterfactuals()
        self.ended = True

    def close(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.close()
        self.conn.close()
        self.engine.dispose()


class PacedReplayFeed:
    """Releases replayed bars at their close times on a clock running ``speed`` x real time
    (``speed`` 0 = as fast as possible). Bars the runner will only warm up are released at
    once. The clock starts at the first paced bar."""

    def __init__(self, feed: ReplayFeed, timeframe_s: int, speed: float):
        self.feed = feed
        self.tf = timeframe_s
        self.speed = speed
        self._t0: tuple[float, int] | None = None  # (wall monotonic, simulated) at the first paced bar
        self._last_close: float | None = None

    def now(self) -> float:
        """The simulated clock (UTC epoch seconds): the close of the last bar released while
        warming up or at speed 0, else extrapolated at ``speed`` x real time."""
        if self._t0 is None or self.speed <= 0:
            return self._last_close if self._last_close is not None else time.time()
        return self._t0[1] + (time.monotonic() - self._t0[0]) * self.speed

    async def bars(self, skip_pacing, stop: asyncio.Event) -> AsyncIterator[tuple[BarClosed, float]]:
        """Yield (bar, simulated now in UTC epoch seconds); return early once ``stop`` is set,
        even in the middle of waiting for a bar's close."""
        for i, bar in enumerate(replay_bars(self.feed)):
            self._last_close = float(bar.close_ts)
            if skip_pacing(bar):
                if i % 5000 == 0:
                    await asyncio.sleep(0)
                yield bar, float(bar.close_ts)
                continue
            if self._t0 is None:
                self._t0 = (time.monotonic(), bar.close_ts)
            t0_wall, t0_sim = self._t0
            if self.speed > 0:
                due = t0_wall + (bar.close_ts - t0_sim) / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                        return  # stopped while waiting for the bar to close
                    except TimeoutError:
                        pass
                now_sim = t0_sim + (time.monotonic() - t0_wall) * self.speed
            else:
                now_sim = float(bar.close_ts)
            await asyncio.sleep(0)  # let signals and the API in between bars
            yield bar, now_sim


class _Signals:
    """SIGTERM/SIGINT set ``stop`` while inside the block."""

    def __init__(self, stop: asyncio.Event):
        self.stop = stop

    def __enter__(self):
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop.set)
        return self

    def __exit__(self, *exc) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.remove_signal_handler(sig)


OnReady = Callable[[], Awaitable[None] | None]


async def _call(on_ready: OnReady | None) -> None:
    """``on_ready()``, awaited when it is a coroutine function."""
    if on_ready is not None:
        got = on_ready()
        if inspect.isawaitable(got):
            await got


async def serve(runner: DeskRunner, feed: PacedReplayFeed, exit_at_end: bool,
                on_ready: OnReady | None = None, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (finish the bar in flight, commit, exit 0) or, with
    ``exit_at_end``, the end of the data (EOD close-out, commit, exit 0).

    Recovery comes first: the bars the store has processed warm the indicators up, then the
    snapshot is restored, at the first new bar or at the end of a feed with nothing new, and
    ``on_ready()`` (sync or async) is called once, before that bar is traded. Nothing else may
    read or write the desk before it (the CLI starts the control API there). A signal during
    warm-up returns 0 having committed nothing. Raises what the runner and ``on_ready`` raise."""
    stop = stop or asyncio.Event()
    runner.clock = feed.now
    ready = False

    async def recovered() -> None:
        nonlocal ready
        if not ready:
            runner.ensure_restored()
            ready = True
            await _call(on_ready)
    with _Signals(stop):
        async for bar, now_sim in feed.bars(runner.is_warm_up, stop):
            if stop.is_set():
                break
            if not runner.is_warm_up(bar):
                await recovered()
            runner.feed(bar, now_sim)
        if stop.is_set():
            log.info("stopping on signal; every processed bar is committed")
            return 0
        await recovered()
        if exit_at_end:
            runner.end_of_data()
            log.info("end of data: positions closed out", live_bars=runner.stats.live)
            return 0
        await stop.wait()
        return 0


async def serve_live(session, poll_interval_s: float | None, on_ready: OnReady | None = None,
                     stop: asyncio.Event | None = None) -> int:
    """The live daemon (:class:`deskd.daemon.live.LiveSession`): start-up and reconciliation
    before any trading, then ``on_ready()`` (sync or async), then a tick at every bar close
    (``poll_interval_s`` None) or every ``poll_interval_s`` seconds, until SIGTERM/SIGINT; the
    tick in flight finishes and is committed before returning 0. Raises BrokerError when the
    broker cannot be read at start-up, and what ``on_ready`` raises."""
    stop = stop or asyncio.Event()
    with _Signals(stop):
        await session.start()
        await _call(on_ready)
        scheduler = None
        if poll_interval_s is None:
            scheduler = session.poller.start(session.tick)
            await stop.wait()
        else:
            while not stop.is_set():
                await session.tick()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll_interval_s)
                except TimeoutError:
                    pass
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        async with session.lock:  # a tick in flight finishes first
            log.info("stopping on signal; every processed bar and order is committed")
        return 0
