"""Hand-made desks and bars for engine tests."""

from deskd.adapters.paper import paper_broker
from deskd.configs.models import DeskConfig
from deskd.core.events import BarClosed, Decision, SignalIntent, StateChanged
from deskd.desk.desk import Desk
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
