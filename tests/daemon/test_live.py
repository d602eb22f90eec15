"""The live daemon's start-up and stop on the bar-close schedule against the fake broker."""

import asyncio

import pytest
import pytest_asyncio

from deskd.adapters.v20.book import V20Book
from deskd.adapters.v20.candles import V20CandleSource
from deskd.core.money import Instrument
from deskd.daemon.live import LiveSession
from deskd.daemon.runner import DeskRunner, serve_live
from deskd.daemon.scheduler import CandlePoller
from deskd.persistence.store import sqlite_url
from tests.daemon.helpers import config
from tests.fake_broker import BARS


@pytest_asyncio.fixture
async def live_session(tmp_path, fake_v20, v20_client):
    """The live daemon's session on the fake broker at bar 30: a DeskRunner trading through an
    V20Book, and the CandlePoller of the broker's candles; the runner closed afterwards."""
    fake_v20.advance(30)
    instruments = {s: Instrument.parse(s) for s in ("EURUSD", "USDJPY")}
    runner = DeskRunner(config(), sqlite_url(tmp_path / "d.db"),
                        make_broker=lambda desk: V20Book(desk.bus, instruments, desk.tf_s))
    try:
        poller = CandlePoller(runner, V20CandleSource(v20_client, "M15", 900, 20), ["EURUSD", "USDJPY"], 900)
        yield LiveSession(runner, v20_client, poller)
    finally:
        runner.close()


@pytest.mark.asyncio
async def test_serve_live_on_the_bar_close_schedule_starts_reconciled_and_stops_cleanly(live_session):
    """The production path (no --poll-interval): start-up, then APScheduler owns the tick."""
    session, runner, poller = live_session, live_session.runner, live_session.poller
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_live(session, None, on_ready=ready.set, stop=stop))
    await asyncio.wait_for(ready.wait(), 10)
    job = poller.scheduler.get_job("bar-close-poll")
    scheduled, diffs, warmed, caught_up = (
        job.func == session.tick, session.last_reconcile.diffs, runner.stats.warmed,
        runner.gate.last == {"EURUSD": BARS["EURUSD"][29][0], "USDJPY": BARS["USDJPY"][29][0]})
    stop.set()
    rc = await asyncio.wait_for(task, 10)
    running = poller.scheduler.running
    assert scheduled and diffs == [] and warmed == 40 and caught_up
    assert rc == 0 and not running


@pytest.mark.asyncio
async def test_a_reconciliation_that_hangs_keeps_the_session_busy_so_the_watchdog_stops(live_session):
    session = live_session
    await session.start()
    assert session.busy_since is None
    release = asyncio.Event()
    snapshot = session.client.open_trades_snapshot

    async def hangs():
        await release.wait()
        return await snapshot()
    session.client.open_trades_snapshot = hangs
    task = asyncio.create_task(session.reconcile_now())
    await asyncio.sleep(0.05)
    busy_while_hanging = session.busy_since
    release.set()
    diffs = await asyncio.wait_for(task, 10)
    assert busy_while_hanging is not None and session.busy_since is None and diffs == []
