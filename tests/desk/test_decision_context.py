"""Every decision carries its context: the decision bar's close, the ATR the strategy sized
with, its score (reason codes), its regime, and the gate that blocked it, also when the
strategy's own entry filter blocked it (filter:...)."""

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import replay_bars, replay_feed
from deskd.configs.loader import load_config
from deskd.configs.models import FiltersConfig
from deskd.core.events import Decision, SignalIntent
from tests.conftest import EXAMPLE

S1 = "S1_TREND_EMA_ATR_ADX"


def test_each_decision_carries_the_bar_close_and_the_strategys_atr_score_and_regime():
    cfg = load_config(EXAMPLE)
    spec = cfg.strategies.root[S1].model_copy(update={"filters": FiltersConfig.model_validate(
        {"adx": {"period": 14, "min": 32}})})
    cfg = cfg.model_copy(update={"strategies": cfg.strategies.model_copy(update={"root": {**cfg.strategies.root,
                                                                                          S1: spec}})})
    desk = paper_desk(cfg, "A")
    intents: dict[tuple[str, int], SignalIntent] = {}

    class Seen:
        """The strategy, its intents noted on the way."""

        def __init__(self, st):
            self.st, self.strategy_id = st, st.strategy_id

        def on_bar(self, bar):
            sig = self.st.on_bar(bar)
            if sig is not None:
                intents[(sig.symbol, sig.bar_ts)] = sig
            return sig

    for sym, sts in list(desk.strategies.items()):
        desk.set_strategies(sym, [Seen(st) for st in sts])
    got: list[Decision] = []
    desk.bus.subscribe(Decision, got.append)
    closes = {}
    for b in replay_bars(replay_feed(cfg)):
        closes[(b.symbol, b.bar_ts)] = b.close
        desk.on_bar(b)
    reasons = {d.reason for d in got}
    assert {"traded", "position_open", "filter:adx"} <= reasons
    for d in got:
        sig = intents[(d.symbol, d.bar_ts)]
        assert d.decision_price == closes[(d.symbol, d.bar_ts)]
        assert (d.atr_pips, d.score_name, d.score, d.regime) == (sig.atr_pips, "adx", sig.score, sig.regime)
        assert d.why == sig.why and d.atr_pips > 0
