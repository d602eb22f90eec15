"""Hand-made desks and bars for engine tests, and a runner and client for the control API tests."""

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from deskd.adapters.paper import paper_broker
from deskd.configs.models import DeskConfig
from deskd.core.events import BarClosed, Decision, SignalIntent, StateChanged
from deskd.daemon.api import ControlAPI
from deskd.daemon.runner import DeskRunner
from deskd.desk.desk import Desk
from deskd.persistence.store import sqlite_url
from deskd.testing.faults import RejectingBroker

TF = 900
T0 = 1_767_996_000  # 2026-01-09 22:00 UTC = 17:00 New York: a trading-day roll


def config(**risk) -> DeskConfig:
    raw = {
        "universe": {"timeframe": "M15", "symbols": ["EURUSD", "USDJPY"]},
        "costs": {"spread_pips": {"EURUSD": 0.0, "USDJPY": 0.0},
                  "slippage": {"slip_base_pips": 0.0, "slip_k_pips": 0.0}},
        "risk": {"max_hold_bars": 4, **risk},
    }
    return DeskConfig.model_validate(raw)


class Scripted:
    """Signals ``side`` with the given stops on the bar indices in ``on``."""

    def __init__(self, strategy_id, symbol, on, side=1, sl_pips=20.0, tp_pips=None):
        self.strategy_id = strategy_id
        self.symbol = symbol
        self.on = set(on)
        self.side = side
        self.sl = sl_pips
        self.tp = tp_pips
        self.i = -1

    def on_bar(self, bar):
        self.i += 1
        if self.i in self.on:
            return SignalIntent(bar.bar_ts, self.symbol, self.strategy_id, self.side, self.sl,
                                self.tp, 10.0, "VOL=MID|SPIKE=0", "scripted", 1.0)
        return None


class Harness:
    def __init__(self, cfg=None, **risk):
        cfg = cfg or config(**risk)
        self.desk = Desk(cfg, lambda d: RejectingBroker(paper_broker(cfg, "A")(d), d.bus), "A")
        self.decisions: list[Decision] = []
        self.states: list[StateChanged] = []
        self.desk.bus.subscribe(Decision, self.decisions.append)
        self.desk.bus.subscribe(StateChanged, self.states.append)
        self.n = {"EURUSD": 0, "USDJPY": 0}
        self.after_bar: list = []  # e.g. a StoreWriter's end_bar, as the runner calls it

    def bar(self, o, h, l, c, symbol="EURUSD", ts=None):
        i = self.n[symbol]
        self.n[symbol] += 1
        b = BarClosed(symbol, TF, ts if ts is not None else T0 + i * TF, o, h, l, c, 0.0)
        self.desk.on_bar(b)
        for f in self.after_bar:
            f(b)
        return b

    def flat(self, k, price=1.1000, symbol="EURUSD"):
        for _ in range(k):
            self.bar(price, price + 0.0005, price - 0.0005, price, symbol)


TOKEN = "t0ken-for-tests"
S1 = "S1_TREND_EMA_ATR_ADX"


def runner(tmp_path, signals=(0,), **risk):
    """A DeskRunner storing to ``tmp_path/desk.db``; S1 goes long on EURUSD on the bar indices in
    ``signals``."""
    r = DeskRunner(config(**risk), sqlite_url(tmp_path / "desk.db"))
    r.desk.set_strategies("EURUSD", [Scripted(S1, "EURUSD", on=signals, sl_pips=20)])
    return r


def bar(i, o=1.1000, h=1.1005, lo=1.0995, c=1.1000, ts=None):
    """EURUSD bar ``i``, at ``T0 + i * TF`` unless ``ts`` is given."""
    return BarClosed("EURUSD", TF, T0 + i * TF if ts is None else ts, o, h, lo, c, 0.0)


def call(r, token, method, path, json_body=None, raw=None, auth=TOKEN):
    """One request to a ControlAPI for ``r`` with ``token``, sending ``auth`` as the bearer token
    (none if falsy); the reply's status and JSON body."""
    async def go():
        client = TestClient(TestServer(ControlAPI(r, token).app()))
        await client.start_server()
        try:
            headers = {"Authorization": f"Bearer {auth}"} if auth else {}
            kw = {"json": json_body} if raw is None else {"data": raw}
            resp = await client.request(method, path, headers=headers, **kw)
            return resp.status, await resp.json()
        finally:
            await client.close()
    return asyncio.run(go())
