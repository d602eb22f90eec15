"""HttpBroker's bookkeeping of broker reports, without a server: which closes are booked, when,
at what price, and which are left for the operator; and the live daemon's start-up and stop on
the bar-close schedule against the fake broker."""

import asyncio

import pytest
import pytest_asyncio

from deskd.adapters.v20.broker import HttpBroker
from deskd.adapters.v20.candles import V20CandleSource
from deskd.adapters.v20.naming import rfc3339
from deskd.core.bus import Bus
from deskd.core.events import BarClosed, Fill, Intent, OrderIntent
from deskd.core.money import Instrument
from deskd.daemon.live import LiveSession
from deskd.daemon.runner import DeskRunner, serve_live
from deskd.daemon.scheduler import CandlePoller
from deskd.persistence.store import sqlite_url
from tests.daemon.helpers import config
from tests.fake_broker import BARS

T = 1_768_000_000 - 1_768_000_000 % 900


class Client:
    """The two calls the tested paths make, from canned transactions."""

    def __init__(self, txs):
        self.txs = txs

    async def transactions_since(self, tx_id):
        got = [t for t in self.txs if int(t["id"]) > tx_id]
        return got, int(self.txs[-1]["id"]) if self.txs else tx_id


def broker_with_long(txs=()):
    bus = Bus()
    fills = []
    bus.subscribe(Fill, fills.append)
    b = HttpBroker(bus, {"EURUSD": Instrument.parse("EURUSD")}, Client(list(txs)), 900)
    order = OrderIntent("d-A-EURUSD-1-ENTRY", T, "EURUSD", "S1", 1, 10_000, Intent.ENTRY, 20.0, 30.0, 20.0)
    b.last_bar["EURUSD"] = BarClosed("EURUSD", 900, T, 1.1, 1.1, 1.1, 1.1000, 0)
    b.entry_filled(order, {"price": 1.10012, "time": T + 900, "trade_id": "7"})
    return b, fills


def close_tx(tx_id, reason, price, ts, trade_id="7"):
    return {"id": str(tx_id), "type": "ORDER_FILL", "reason": reason, "time": rfc3339(ts), "price": f"{price:.5f}",
            "tradesClosed": [{"tradeID": trade_id, "units": "-10000", "price": f"{price:.5f}"}]}


def test_entry_fill_sets_the_bracket_from_the_fill_and_pays_against_the_decision_close():
    b, fills = broker_with_long()
    (f,) = fills
    assert (f.price, f.ref_price, f.sl_price, f.tp_price) == (1.10012, 1.1, 1.09812, 1.10312)
    assert f.cost_pips == (1.10012 - 1.1) / 0.0001


@pytest.mark.asyncio
async def test_stop_fill_waits_for_its_bar_then_books_at_the_broker_price_against_the_level():
    b, fills = broker_with_long([close_tx(5, "STOP_LOSS_ORDER", 1.09805, T + 1800)])
    assert await b.poll_transactions() == []
    assert len(fills) == 1 and b.open_exit_due() == {"EURUSD"}  # the bar of the fill is not in yet
    b.on_bar(BarClosed("EURUSD", 900, T + 900, 1.1, 1.1, 1.1, 1.1, 0))
    assert len(fills) == 1
    b.on_bar(BarClosed("EURUSD", 900, T + 1800, 1.1, 1.1, 1.09, 1.095, 0))
    exit_fill = fills[1]
    assert (exit_fill.exit_reason, exit_fill.price, exit_fill.ref_price, exit_fill.bar_ts) == \
        ("SL", 1.09805, 1.09812, T + 1800)
    assert round(exit_fill.cost_pips, 6) == 0.7 and b.positions == {} and b.trade_ids == {}


@pytest.mark.asyncio
async def test_a_close_by_hand_is_not_booked_and_is_reported():
    b, fills = broker_with_long([close_tx(5, "MARKET_ORDER_TRADE_CLOSE", 1.1003, T + 900)])
    (found,) = await b.poll_transactions()
    assert "EURUSD" in found and "not booked" in found
    assert len(fills) == 1 and "EURUSD" in b.unexplained and "EURUSD" in b.positions
    b.book_unexplained("EURUSD")
    assert (fills[1].exit_reason, fills[1].price) == ("BROKER_CLOSE", 1.1003)


@pytest.mark.asyncio
async def test_transactions_after_a_snapshot_are_left_for_the_next_poll():
    b, fills = broker_with_long([close_tx(5, "TAKE_PROFIT_ORDER", 1.10312, T + 900), {"id": "6", "type": "DAILY_FINANCING"}])
    b.last_tx_id = "4"
    await b.poll_transactions(until_id=4)
    assert b.last_tx_id == "4" and b.open_exit_due() == set()
    await b.poll_transactions()
    assert b.last_tx_id == "6" and b.open_exit_due() == {"EURUSD"}


@pytest.mark.asyncio
async def test_other_desks_and_repeated_transactions_are_ignored():
    tx = close_tx(5, "STOP_LOSS_ORDER", 1.098, T + 900)
    b, fills = broker_with_long([tx, close_tx(6, "STOP_LOSS_ORDER", 1.2, T + 900, trade_id="99")])
    await b.poll_transactions()
    assert b.on_transaction(tx) == []
    assert [len(v) for v in b.exits_due.values()] == [1]


@pytest.mark.asyncio
async def test_a_short_page_of_transactions_is_continued_not_skipped():
    class Paged(Client):
        async def transactions_since(self, tx_id):  # one per page, the account is at 7
            got = [t for t in self.txs if int(t["id"]) > tx_id][:1]
            return got, 7

    b, fills = broker_with_long()
    b.client = Paged([{"id": "5", "type": "DAILY_FINANCING"}, close_tx(6, "TAKE_PROFIT_ORDER", 1.10312, T + 900)])
    b.last_tx_id = "4"
    await b.poll_transactions()
    assert b.last_tx_id == "5" and b.open_exit_due() == set()
    await b.poll_transactions()
    assert b.last_tx_id == "6" and b.open_exit_due() == {"EURUSD"}


@pytest.mark.asyncio
async def test_a_margin_closeout_is_booked_as_such_at_the_broker_price():
    b, fills = broker_with_long([close_tx(5, "MARKET_ORDER_MARGIN_CLOSEOUT", 1.0950, T + 900)])
    assert await b.poll_transactions() == []
    b.on_bar(BarClosed("EURUSD", 900, T + 900, 1.1, 1.1, 1.09, 1.095, 0))
    assert (fills[1].exit_reason, fills[1].price, fills[1].cost_pips) == ("MARGIN_CLOSEOUT", 1.095, 0.0)


@pytest_asyncio.fixture
async def live_session(tmp_path, fake_v20, v20_client):
    """The live daemon's session on the fake broker at bar 30: a DeskRunner trading through an
    HttpBroker, and the CandlePoller of the broker's candles; the runner closed afterwards."""
    fake_v20.advance(30)
    instruments = {s: Instrument.parse(s) for s in ("EURUSD", "USDJPY")}
    runner = DeskRunner(config(), sqlite_url(tmp_path / "d.db"),
                        make_broker=lambda desk: HttpBroker(desk.bus, instruments, v20_client, desk.tf_s))
    try:
        poller = CandlePoller(runner, V20CandleSource(v20_client, "M15", 900, 20), ["EURUSD", "USDJPY"], 900)
        yield LiveSession(runner, poller)
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
