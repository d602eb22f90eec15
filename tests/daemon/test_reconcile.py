"""Reconciliation: what it compares, and `deskd reconcile` with its three exit codes."""

import json
import os
import socket
import subprocess
import urllib.request

import pytest
from sqlalchemy import insert

from deskd.adapters.v20.reconcile import Holding, broker_holdings, reconcile
from deskd.core.events import Trade
from deskd.persistence.store import POSITION_FIELDS, open_store, positions, row_of, sqlite_url
from deskd.testing.fake_v20 import FakeV20
from tests.conftest import EXAMPLE, deskd_cmd, run
from tests.fake_broker import BARS, running

PREFIX = "example-A-"


def v20_trade(tid, instrument, units, price, cid, sl=None, tp=None):
    t = {"id": str(tid), "instrument": instrument, "currentUnits": str(units), "price": str(price),
         "clientExtensions": {"id": cid}}
    if sl is not None:
        t["stopLossOrder"] = {"price": str(sl)}
    if tp is not None:
        t["takeProfitOrder"] = {"price": str(tp)}
    return t


def test_in_sync_when_side_units_price_and_bracket_agree():
    held, foreign = broker_holdings([v20_trade(7, "EUR_USD", 1000, 1.10005, PREFIX + "x", sl=1.098)], PREFIX)
    expected = {"EURUSD": Holding("EURUSD", 1, 1000, 1.10005, 1.098, None)}
    assert reconcile(expected, held, foreign) == []


def test_every_kind_of_difference_is_named():
    trades = [v20_trade(1, "EUR_USD", 2000, 1.1001, PREFIX + "a", sl=1.097),
              v20_trade(2, "GBP_USD", -500, 1.3, "someone-else"),
              v20_trade(3, "AUD_USD", 100, 0.65, PREFIX + "b")]
    held, foreign = broker_holdings(trades, PREFIX)
    expected = {"EURUSD": Holding("EURUSD", 1, 1000, 1.1000, 1.098, None),
                "USDJPY": Holding("USDJPY", -1, 3000, 150.0, 150.5, None)}
    got = {(d.symbol, d.field) for d in reconcile(expected, held, foreign)}
    assert got == {("EURUSD", "units"), ("EURUSD", "avg_price"), ("EURUSD", "sl_price"),
                   ("USDJPY", "position"), ("AUDUSD", "position"), ("GBPUSD", "foreign_trade")}


def store_with_eurusd_long(db, units, price, sl):
    engine = open_store(sqlite_url(db))
    t = Trade(1, "EURUSD", "S1_TREND_EMA_ATR_ADX", 1, units, 0, 0, price, price, sl, None, 100.0, 0.0,
              "VOL=MID|SPIKE=0", "adx=30.00", PREFIX + "EURUSD-1-ENTRY")
    with engine.begin() as c:
        c.execute(insert(positions), [{"desk": "example", "scenario": "A", **row_of(t, POSITION_FIELDS), "unrealized_usd": 0.0}])
    engine.dispose()


@pytest.fixture
def broker_with_trade():
    b = FakeV20({k: list(v) for k, v in BARS.items()}, 900)
    b.advance(5)
    b.market_order({"instrument": "EUR_USD", "units": "1000", "stopLossOnFill": {"price": "1.09000"},
                    "clientExtensions": {"id": PREFIX + "EURUSD-1-ENTRY"}})
    return b


def reconcile_cmd(db, port, broker, *extra, url=None):
    env = {"DESKD_V20_URL": url or f"http://127.0.0.1:{port}", "DESKD_V20_ACCOUNT": broker.account_id,
           "DESKD_V20_TOKEN": broker.token}
    return run("reconcile", "--config", str(EXAMPLE), "--store", str(db), *extra, check=False, env=env)


def test_reconcile_command_exit_codes_in_sync_then_closed_by_hand_then_unreachable(tmp_path, broker_with_trade):
    b = broker_with_trade
    db = tmp_path / "desk.db"
    store_with_eurusd_long(db, 1000, BARS["EURUSD"][5][1], 1.09)
    with running(b) as port:
        p = reconcile_cmd(db, port, b)
        assert p.returncode == 0 and "in sync: 1 position" in p.stdout, p.stderr
        b.close_by_hand(next(iter(b.trades)))  # the trader closes it on the broker's side
        p = reconcile_cmd(db, port, b, "--json")
        assert p.returncode == 1, p.stderr
        diff = json.loads(p.stdout)["differences"]
        assert diff == [{"symbol": "EURUSD", "field": "position", "expected": "LONG 1000", "broker": "flat",
                         "note": "closed at the broker (by hand, stop-out or margin closeout?)"}]
    p = reconcile_cmd(db, port, b, url="http://127.0.0.1:9")  # nothing listens there
    assert p.returncode == 2 and "could not be read" in p.stderr


def test_reconcile_against_the_fake_broker_from_the_command_line(tmp_path):
    env = {"DESKD_V20_TOKEN": "demo-token", "DESKD_V20_ACCOUNT": "101-001-0000000-001"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = subprocess.Popen(deskd_cmd() + ["fake-broker", "--config", str(EXAMPLE), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    try:
        banner = json.loads(fake.stdout.readline())
        assert banner["instruments"] == ["EURUSD", "GBPUSD", "USDJPY"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/advance", data=b'{"bars": 3}', method="POST")
        # three bar times forward: only GBPUSD's file has bars that early (12:45-13:15)
        assert json.loads(urllib.request.urlopen(req, timeout=10).read())["released"] == 3
        db = tmp_path / "empty.db"
        open_store(sqlite_url(db)).dispose()
        p = run("reconcile", "--config", str(EXAMPLE), "--store", str(db), check=False,
                env={**env, "DESKD_V20_URL": f"http://127.0.0.1:{port}"})
        assert p.returncode == 0 and "in sync: 0 position(s)" in p.stdout, p.stderr
    finally:
        fake.terminate()
        assert fake.wait(timeout=30) == 0
