"""The v20 client against the fake broker: retries within a bound, Retry-After honoured, a lost
order response never doubles the order, refusals are not retried, secrets never printed."""

import asyncio
import time

import pytest
from aiohttp.test_utils import TestServer

from deskd.adapters.v20.client import (
    BrokerRejected,
    BrokerUnavailable,
    Credentials,
    V20Client,
    credentials_from_env,
)
from deskd.testing.fake_v20 import FakeV20, build_app
from tests.adapters.test_fake_v20 import BARS


def run(scenario, faults=(), state_file=None, **client_kw):
    broker = FakeV20({k: list(v) for k, v in BARS.items()}, 900, state_file=state_file)
    broker.advance(10)
    broker.faults.extend(dict(f) for f in faults)

    async def go():
        server = TestServer(build_app(broker))
        await server.start_server()
        creds = Credentials(str(server.make_url("")).rstrip("/"), broker.account_id, broker.token)
        try:
            async with V20Client(creds, timeout_s=1.0, backoff_s=0.01, **client_kw) as c:
                return await scenario(c), c
        finally:
            await server.close()
    result, client = asyncio.run(go())
    return broker, result, client


def test_5xx_and_timeouts_are_retried_then_succeed():
    faults = [{"kind": "5xx", "path": "summary", "count": 2}, {"kind": "latency", "path": "summary", "delay_s": 2}]
    broker, summary, client = run(lambda c: c.summary(), faults)
    assert summary["balance"] == "100000.0000" and client.retries == 3


def test_repeated_failures_give_up_as_broker_unavailable():
    with pytest.raises(BrokerUnavailable, match="gave up after 3 attempts"):
        run(lambda c: c.open_trades(), [{"kind": "5xx", "path": "openTrades", "count": 10}], max_attempts=3)


def test_429_waits_the_retry_after():
    t = time.monotonic()
    broker, trades, client = run(lambda c: c.open_trades(), [{"kind": "429", "path": "openTrades", "retry_after_s": 1}])
    assert trades == [] and time.monotonic() - t >= 1.0 and client.retries == 1


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-5", "soon", ""])
def test_429_with_a_bad_retry_after_waits_the_default_backoff_not_forever(retry_after):
    async def scenario(c):
        return await asyncio.wait_for(c.open_trades(), 5)  # the old client slept nan: forever
    t = time.monotonic()
    broker, trades, client = run(scenario, [{"kind": "429", "path": "openTrades", "retry_after_s": retry_after}],
                                 max_retry_after_s=3.0)
    assert trades == [] and client.retries == 1 and time.monotonic() - t < 2.0


def test_lost_order_response_is_found_by_client_id_not_sent_twice():
    faults = [{"kind": "lose_response", "path": "/orders", "method": "POST", "count": 1}]
    broker, fill, _ = run(lambda c: c.market_order("EURUSD", 10_000, "deskd-A-EURUSD-9-ENTRY", sl_price=1.09), faults)
    assert len(broker.trades) == 1 and fill["trade_id"] == str(next(iter(broker.trades)))


def test_dropped_connection_before_the_order_is_retried_once_and_filled_once():
    faults = [{"kind": "drop", "path": "/orders", "method": "POST", "count": 1}]
    broker, fill, _ = run(lambda c: c.market_order("USDJPY", -5_000, "deskd-A-USDJPY-9-ENTRY"), faults)
    assert len(broker.trades) == 1 and fill["price"] == pytest.approx(BARS["USDJPY"][10][1])


def test_rejected_order_is_not_retried():
    faults = [{"kind": "reject", "path": "/orders", "method": "POST", "count": 1}]
    with pytest.raises(BrokerRejected, match="Insufficient margin"):
        run(lambda c: c.market_order("EURUSD", 1000, "deskd-A-EURUSD-10-ENTRY"), faults)


def test_fake_broker_restart_forgets_nothing(tmp_path):
    state = str(tmp_path / "broker.json")
    broker, _, _ = run(lambda c: c.market_order("EURUSD", 1000, "deskd-A-EURUSD-11-ENTRY"), state_file=state)
    broker.save()
    again = FakeV20({k: list(v) for k, v in BARS.items()}, 900, state_file=state)
    assert list(again.trades) == list(broker.trades) and again.released == broker.released
    assert "deskd-A-EURUSD-11-ENTRY" in again.orders_by_client_id


def test_credentials_come_from_the_environment_and_never_print_the_token(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("very-secret\n")
    c = credentials_from_env({"DESKD_V20_URL": "http://127.0.0.1:9/", "DESKD_V20_ACCOUNT": "101-1",
                              "DESKD_V20_TOKEN_FILE": str(tok)})
    assert c.token == "very-secret" and "very-secret" not in repr(c) and c.base_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="DESKD_V20_ACCOUNT"):
        credentials_from_env({"DESKD_V20_URL": "x", "DESKD_V20_TOKEN": "t"})


def test_candle_source_feeds_the_bar_close_poller_completed_bars_once(tmp_path):
    from deskd.adapters.v20.candles import V20CandleSource
    from deskd.daemon.runner import DeskRunner
    from deskd.daemon.scheduler import CandlePoller
    from deskd.persistence.store import sqlite_url
    from tests.daemon.helpers import config

    broker = FakeV20({k: list(v) for k, v in BARS.items()}, 900)
    runner = DeskRunner(config(), sqlite_url(tmp_path / "d.db"))

    async def go():
        server = TestServer(build_app(broker))
        await server.start_server()
        creds = Credentials(str(server.make_url("")).rstrip("/"), broker.account_id, broker.token)
        try:
            async with V20Client(creds) as c:
                poller = CandlePoller(runner, V20CandleSource(c, "M15", 900), ["EURUSD", "USDJPY"], 900)
                broker.advance(3)
                first = await poller.poll()
                broker.advance(2)
                second = await poller.poll()
                again = await poller.poll()
                return first, second, again
        finally:
            await server.close()
    assert asyncio.run(go()) == (6, 4, 0)
    assert runner.gate.last["EURUSD"] == BARS["EURUSD"][4][0] and runner.gate.duplicates == 0
    assert runner.stats.live == 10


def test_a_reply_that_is_not_json_is_retried_and_reported_to_the_observer():
    seen = []

    async def scenario(c):
        c.observer = lambda endpoint, s, outcome: seen.append((endpoint, outcome))
        return await c.summary()
    broker, summary, client = run(scenario, [{"kind": "malformed", "path": "summary", "count": 1}])
    assert summary["balance"] == "100000.0000" and client.retries == 1
    assert seen == [("GET summary", "malformed"), ("GET summary", "ok")]
