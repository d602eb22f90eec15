"""The fake v20 broker is faithful enough for OANDA's own `v20` Python client: account
summary, candles, a market order with a bracket, open trades and positions, transactions;
and its brackets fill by deskd's rules."""

import json
import urllib.request

import pytest
import v20

from deskd.adapters.v20.naming import parse_time, rfc3339
from deskd.testing.fake_v20 import FakeV20
from tests.fake_broker import BARS, T0, running


@pytest.fixture
def server(fake_v20):
    """``fake_v20`` served in a background thread: OANDA's v20 client is synchronous."""
    with running(fake_v20) as port:
        yield fake_v20, port


def advance(port, n):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/advance", data=json.dumps({"bars": n}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_oanda_v20_client_reads_the_account_candles_and_places_an_order(server):
    broker, port = server
    api = v20.Context("127.0.0.1", port, ssl=False, token=broker.token)
    advance(port, 20)

    r = api.account.summary(broker.account_id)
    assert r.status == 200 and r.get("account").balance == 100_000.0 and r.get("account").currency == "USD"

    r = api.instrument.candles("EUR_USD", granularity="M15", count=5, price="M")
    candles = r.get("candles")
    assert r.status == 200 and len(candles) == 5 and all(c.complete for c in candles)
    assert candles[-1].mid.o == pytest.approx(BARS["EURUSD"][19][1])
    assert parse_time(candles[-1].time) == BARS["EURUSD"][19][0]

    r = api.order.market(broker.account_id, instrument="EUR_USD", units=10_000,
                         stopLossOnFill={"price": "1.09000"}, takeProfitOnFill={"price": "1.12000"},
                         clientExtensions={"id": "deskd-A-EURUSD-1-ENTRY"})
    assert r.status == 201
    fill = r.get("orderFillTransaction")
    assert fill.price == pytest.approx(BARS["EURUSD"][20][1])  # the open of the next bar
    trade_id = fill.tradeOpened.tradeID

    trades = api.trade.list_open(broker.account_id).get("trades")
    assert [t.id for t in trades] == [trade_id] and trades[0].clientExtensions.id == "deskd-A-EURUSD-1-ENTRY"
    assert trades[0].stopLossOrder.price == pytest.approx(1.09)

    positions = api.position.list_open(broker.account_id).get("positions")
    assert [p.instrument for p in positions] == ["EUR_USD"] and positions[0].long.units == 10_000

    txs = api.transaction.since(broker.account_id, id=0).get("transactions")
    assert [t.type for t in txs] == ["MARKET_ORDER", "ORDER_FILL"]


def test_wrong_token_is_refused_the_v20_way(server):
    broker, port = server
    r = v20.Context("127.0.0.1", port, ssl=False, token="nope").account.summary(broker.account_id)
    assert r.status == 401


def test_brackets_fill_inside_released_bars_by_deskds_rules():
    rows = [(T0, 1.1000, 1.1005, 1.0995, 1.1000), (T0 + 900, 1.1000, 1.1004, 1.0996, 1.1000),
            (T0 + 1800, 1.0950, 1.0960, 1.0940, 1.0955)]  # gaps through the stop
    b = FakeV20({"EURUSD": rows}, 900)
    b.advance(1)
    status, reply = b.market_order({"instrument": "EUR_USD", "units": "1000", "stopLossOnFill": {"price": "1.09800"}})
    assert status == 201
    b.advance(2)
    (t,) = b.trades.values()
    assert t.state == "CLOSED" and t.close_price == 1.0950  # at the gap open, not the stop
    assert b.transactions[-1]["reason"] == "STOP_LOSS_ORDER"


def test_time_helpers_round_trip():
    assert parse_time(rfc3339(T0)) == T0 and parse_time(str(T0)) == T0


def test_fake_broker_reads_each_file_in_its_own_timezone(tmp_path):
    rows = "time,open,high,low,close\n2026-01-15 10:00:00,1.1,1.2,1.0,1.1\n"
    for sym in ("EURUSD", "USDJPY"):
        (tmp_path / f"{sym}.csv").write_text(rows)
    files = {s: str(tmp_path / f"{s}.csv") for s in ("EURUSD", "USDJPY")}
    b = FakeV20.from_files(files, {"EURUSD": "UTC", "USDJPY": "America/New_York"}, 900)
    assert b.bars["USDJPY"][0][0] - b.bars["EURUSD"][0][0] == 5 * 3600  # New York is UTC-5 in January
