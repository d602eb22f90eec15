"""The v20 client against the fake broker: retries within a bound, Retry-After honoured, a lost
order response never doubles the order, refusals are not retried, secrets never printed."""

import asyncio
import time

import pytest

from deskd.adapters.v20.candles import V20CandleSource
from deskd.adapters.v20.client import (
    BrokerRejected,
    BrokerUnavailable,
    V20Client,
    credentials_from_env,
)
from deskd.daemon.scheduler import CandlePoller
from tests.conftest import poll_once
from tests.fake_broker import BARS, fake_v20_broker


@pytest.fixture
def run(fake_v20, serve_v20):
    """``await run(scenario, faults, broker=None, **client_kw)``: the broker (``fake_v20`` unless
    given) at bar 10 with ``faults`` queued, served on loopback; ``scenario(client)`` run with a
    quick client of it (1 s timeout, 10 ms backoff, ``client_kw``). Returns the broker, the
    scenario's result and the client."""

    async def go(scenario, faults=(), broker=None, **client_kw):
        broker = fake_v20 if broker is None else broker
        broker.advance(10)
        broker.faults.extend(dict(f) for f in faults)
        creds = await serve_v20(broker)
        async with V20Client(creds, timeout_s=1.0, backoff_s=0.01, **client_kw) as c:
            return broker, await scenario(c), c

    return go


@pytest.mark.asyncio
async def test_5xx_and_timeouts_are_retried_then_succeed(run):
    faults = [{"kind": "5xx", "path": "summary", "count": 2}, {"kind": "latency", "path": "summary", "delay_s": 2}]
    broker, summary, client = await run(lambda c: c.summary(), faults)
    assert summary["balance"] == "100000.0000" and client.retries == 3


@pytest.mark.asyncio
async def test_repeated_failures_give_up_as_broker_unavailable(run):
    with pytest.raises(BrokerUnavailable, match="gave up after 3 attempts"):
        await run(lambda c: c.open_trades(), [{"kind": "5xx", "path": "openTrades", "count": 10}],
                  max_attempts=3)


@pytest.mark.asyncio
async def test_429_waits_the_retry_after(run):
    t = time.monotonic()
    broker, trades, client = await run(lambda c: c.open_trades(),
                                       [{"kind": "429", "path": "openTrades", "retry_after_s": 1}])
    assert trades == [] and time.monotonic() - t >= 1.0 and client.retries == 1


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-5", "soon", ""])
@pytest.mark.asyncio
async def test_429_with_a_bad_retry_after_waits_the_default_backoff_not_forever(run, retry_after):
    async def scenario(c):
        return await asyncio.wait_for(c.open_trades(), 5)  # the old client slept nan: forever
    t = time.monotonic()
    broker, trades, client = await run(scenario, [{"kind": "429", "path": "openTrades", "retry_after_s": retry_after}],
                                       max_retry_after_s=3.0)
    assert trades == [] and client.retries == 1 and time.monotonic() - t < 2.0


@pytest.mark.asyncio
async def test_lost_order_response_is_found_by_client_id_not_sent_twice(run):
    faults = [{"kind": "lose_response", "path": "/orders", "method": "POST", "count": 1}]
    broker, fill, _ = await run(lambda c: c.market_order("EURUSD", 10_000, "deskd-A-EURUSD-9-ENTRY", sl_price=1.09),
                                faults)
    assert len(broker.trades) == 1 and fill["trade_id"] == str(next(iter(broker.trades)))


@pytest.mark.asyncio
async def test_dropped_connection_before_the_order_is_retried_once_and_filled_once(run):
    faults = [{"kind": "drop", "path": "/orders", "method": "POST", "count": 1}]
    broker, fill, _ = await run(lambda c: c.market_order("USDJPY", -5_000, "deskd-A-USDJPY-9-ENTRY"), faults)
    assert len(broker.trades) == 1 and fill["price"] == pytest.approx(BARS["USDJPY"][10][1])


@pytest.mark.asyncio
async def test_rejected_order_is_not_retried(run):
    faults = [{"kind": "reject", "path": "/orders", "method": "POST", "count": 1}]
    with pytest.raises(BrokerRejected, match="Insufficient margin"):
        await run(lambda c: c.market_order("EURUSD", 1000, "deskd-A-EURUSD-10-ENTRY"), faults)


@pytest.mark.asyncio
async def test_fake_broker_restart_forgets_nothing(run, tmp_path):
    state = str(tmp_path / "broker.json")
    broker, _, _ = await run(lambda c: c.market_order("EURUSD", 1000, "deskd-A-EURUSD-11-ENTRY"),
                             broker=fake_v20_broker(state_file=state))
    broker.save()
    again = fake_v20_broker(state_file=state)
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


@pytest.mark.asyncio
async def test_candle_source_feeds_the_bar_close_poller_completed_bars_once(fake_v20, v20_client,
                                                                           desk_runner):
    broker, runner = fake_v20, desk_runner
    poller = CandlePoller(runner, V20CandleSource(v20_client, "M15", 900), ["EURUSD", "USDJPY"], 900)
    broker.advance(3)
    first = await poll_once(poller)
    broker.advance(2)
    second = await poll_once(poller)
    again = await poll_once(poller)
    assert (first, second, again) == (6, 4, 0)
    assert runner.gate.last["EURUSD"] == BARS["EURUSD"][4][0] and runner.gate.duplicates == 0
    assert runner.stats.live == 10


@pytest.mark.asyncio
async def test_a_reply_that_is_not_json_is_retried_and_reported_to_the_observer(run):
    seen = []

    async def scenario(c):
        c.observer = lambda endpoint, s, outcome: seen.append((endpoint, outcome))
        return await c.summary()
    broker, summary, client = await run(scenario, [{"kind": "malformed", "path": "summary", "count": 1}])
    assert summary["balance"] == "100000.0000" and client.retries == 1
    assert seen == [("GET summary", "malformed"), ("GET summary", "ok")]
