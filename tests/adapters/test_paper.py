"""The paper broker's fill and cost contract, each rule on hand-made bars."""

import pytest

from deskd.adapters.paper import CostModel, PaperBroker
from deskd.configs.models import CostsConfig, ScenarioConfig, SlippageConfig
from deskd.core.bus import Bus
from deskd.core.events import LONG, SHORT, BarClosed, Fill, Intent, OrderIntent
from deskd.core.money import Instrument
from deskd.strategies.indicators import ATR

PIP = 0.0001
FREE = CostsConfig(spread_pips={"EURUSD": 0.0}, slippage=SlippageConfig(slip_base_pips=0, slip_k_pips=0))


A_SCENARIO = ScenarioConfig()


def make(policy="sl_first", costs=FREE, scenario=A_SCENARIO):
    bus = Bus()
    fills: list[Fill] = []
    bus.subscribe(Fill, fills.append)
    atr = ATR(3)
    broker = PaperBroker(bus, {"EURUSD": Instrument.parse("EURUSD")}, CostModel(costs, scenario),
                         {"EURUSD": atr}, policy)
    return broker, fills, atr


def bar(i, o, h, l, c):
    return BarClosed("EURUSD", 900, i * 900, o, h, l, c, 0.0)


def entry(side, sl_pips=50.0, tp_pips=None, ts=0):
    return OrderIntent(f"e{ts}", ts, "EURUSD", "S1", side, 10_000, Intent.ENTRY, sl_pips, tp_pips, 50.0)


def test_market_order_fills_at_next_bar_open_not_at_decision_close():
    broker, fills, _ = make()
    broker.submit(entry(LONG))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0990, 1.1005))
    (f,) = fills
    assert f.intent is Intent.ENTRY and f.price == 1.1000 and f.bar_ts == 900
    assert f.sl_price == pytest.approx(1.0950) and f.tp_price is None


def test_stop_fills_at_open_when_bar_gaps_through_it():
    # arrange: long at 1.1000, stop 1.0950; next bar opens at 1.0930
    broker, fills, _ = make()
    broker.submit(entry(LONG))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0990, 1.1005))
    # act
    broker.on_bar(bar(2, 1.0930, 1.0940, 1.0900, 1.0935))
    # assert: exit 1.0930 (not 1.0950), reason SL
    assert fills[-1].exit_reason == "SL" and fills[-1].price == 1.0930


def test_short_stop_fills_at_open_when_bar_gaps_up_through_it():
    broker, fills, _ = make()
    broker.submit(entry(SHORT))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0990, 1.1005))
    broker.on_bar(bar(2, 1.1080, 1.1090, 1.1070, 1.1075))
    assert fills[-1].exit_reason == "SL" and fills[-1].price == 1.1080


def test_target_gapped_through_fills_at_the_better_open():
    broker, fills, _ = make()
    broker.submit(entry(LONG, tp_pips=30))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0990, 1.1005))
    broker.on_bar(bar(2, 1.1050, 1.1060, 1.1045, 1.1055))
    assert fills[-1].exit_reason == "TP" and fills[-1].price == 1.1050


def test_stop_and_target_inside_one_bar_fill_the_stop_by_default():
    broker, fills, _ = make()
    broker.submit(entry(LONG, sl_pips=20, tp_pips=20))
    broker.on_bar(bar(1, 1.1000, 1.1005, 1.0995, 1.1000))
    broker.on_bar(bar(2, 1.1001, 1.1030, 1.0970, 1.1000))
    assert fills[-1].exit_reason == "SL" and fills[-1].price == pytest.approx(1.0980)


def test_tp_first_policy_fills_the_target_when_both_are_touched():
    broker, fills, _ = make("tp_first")
    broker.submit(entry(LONG, sl_pips=20, tp_pips=20))
    broker.on_bar(bar(1, 1.1000, 1.1005, 1.0995, 1.1000))
    broker.on_bar(bar(2, 1.1001, 1.1030, 1.0970, 1.1000))
    assert fills[-1].exit_reason == "TP" and fills[-1].price == pytest.approx(1.1020)


@pytest.mark.parametrize("open_, want", [(1.1015, "TP"), (1.0985, "SL"), (1.1000, "SL")])
def test_open_proximity_policy_fills_the_level_nearer_the_open(open_, want):
    broker, fills, _ = make("open_proximity")
    broker.submit(entry(LONG, sl_pips=20, tp_pips=20))
    broker.on_bar(bar(1, 1.1000, 1.1005, 1.0995, 1.1000))
    broker.on_bar(bar(2, open_, 1.1030, 1.0970, 1.1000))
    assert fills[-1].exit_reason == want


def test_stop_touched_on_the_entry_bar_fills_in_that_bar():
    broker, fills, _ = make()
    broker.submit(entry(LONG, sl_pips=20))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0975, 1.0990))
    assert [f.intent for f in fills] == [Intent.ENTRY, Intent.EXIT]
    assert fills[-1].exit_reason == "SL" and fills[-1].bar_ts == 900
    assert fills[-1].price == pytest.approx(1.0980)


def test_no_exit_when_bar_stays_between_the_levels():
    broker, fills, _ = make()
    broker.submit(entry(LONG, sl_pips=20, tp_pips=20))
    for i in range(1, 5):
        broker.on_bar(bar(i, 1.1000, 1.1015, 1.0985, 1.1000))
    assert len(fills) == 1 and "EURUSD" in broker.positions


def test_eod_closes_at_the_last_close():
    broker, fills, _ = make()
    broker.submit(entry(SHORT))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0990, 1.1005))
    broker.on_bar(bar(2, 1.1005, 1.1010, 1.0990, 1.0995))
    broker.close_at_last()
    f = fills[-1]
    assert f.exit_reason == "EOD" and f.price == 1.0995 and f.fill_ts == 3 * 900  # at the last close
    assert f.bar_ts == 2 * 900  # which belongs to the last bar


def test_costs_are_paid_on_both_sides_half_spread_each():
    costs = CostsConfig(spread_pips={"EURUSD": 1.0}, slippage=SlippageConfig(slip_base_pips=0.2, slip_k_pips=0))
    broker, fills, _ = make(costs=costs)
    broker.submit(entry(LONG, sl_pips=20))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0995, 1.1005))
    broker.on_bar(bar(2, 1.0970, 1.0975, 1.0960, 1.0965))  # gaps through the stop
    e, x = fills
    assert e.cost_pips == pytest.approx(0.7) and e.price == pytest.approx(1.1000 + 0.7 * PIP)
    assert x.cost_pips == pytest.approx(0.7) and x.price == pytest.approx(1.0970 - 0.7 * PIP)


def test_slippage_grows_with_true_range_over_atr_and_spikes_multiply_it():
    costs = CostsConfig(spread_pips={"EURUSD": 0.0},
                        slippage=SlippageConfig(slip_base_pips=0.1, slip_k_pips=0.5, spike_tr_atr_th=2.0,
                                                spike_mult=3.0))
    c_scn = ScenarioConfig(spread_mult=1.6, slippage_mult=1.8, spikes=True)
    broker, fills, atr = make(costs=costs, scenario=c_scn)
    for _ in range(5):  # ATR(3) = 0.0010 from bars of range 10 pips
        atr.update_hlc(1.1005, 1.0995, 1.1000)
    broker.submit(entry(LONG, sl_pips=100))
    broker.on_bar(bar(5, 1.1000, 1.1030, 1.1000, 1.1020))  # TR = 30 pips -> TR/ATR = 3 > 2
    ratio = 3.0
    want = (0.1 + 0.5 * ratio) * 1.8 * 3.0
    assert fills[0].cost_pips == pytest.approx(want)


def test_scenario_b_adds_pips_and_widens_spread():
    costs = CostsConfig(spread_pips={"EURUSD": 1.0}, slippage=SlippageConfig(slip_base_pips=0.1, slip_k_pips=0))
    a = CostModel(costs, ScenarioConfig())
    b = CostModel(costs, ScenarioConfig(spread_mult=1.3, slippage_add_pips=0.3))
    assert a.side_cost_pips("EURUSD", 0.0) == pytest.approx(0.6)
    assert b.side_cost_pips("EURUSD", 0.0) == pytest.approx(0.65 + 0.1 + 0.3)


def test_exit_order_after_a_stop_out_fills_nothing():
    broker, fills, _ = make()
    broker.submit(entry(LONG, sl_pips=20))
    broker.on_bar(bar(1, 1.1000, 1.1010, 1.0975, 1.0990))  # stopped in the entry bar
    broker.submit(OrderIntent("x", 900, "EURUSD", "S1", SHORT, 10_000, Intent.EXIT, exit_reason="TIME"))
    broker.on_bar(bar(2, 1.0990, 1.0995, 1.0985, 1.0990))
    assert len(fills) == 2


def test_a_fill_splits_its_cost_into_half_spread_and_slippage_and_flags_the_spike():
    costs = CostsConfig(spread_pips={"EURUSD": 1.0}, slippage=SlippageConfig(slip_base_pips=0.1, slip_k_pips=0.5,
                                                                             spike_tr_atr_th=2.0, spike_mult=3.0))
    c = CostModel(costs, ScenarioConfig(spread_mult=1.6, slippage_mult=1.8, slippage_add_pips=0.2, spikes=True))
    calm, wild = c.side_cost("EURUSD", 1.0), c.side_cost("EURUSD", 3.0)
    assert calm.spread_pips == wild.spread_pips == pytest.approx(0.8)  # half of 1.0 x 1.6
    assert calm.slippage_pips == pytest.approx((0.1 + 0.5) * 1.8 + 0.2) and not calm.spike
    assert wild.slippage_pips == pytest.approx((0.1 + 1.5) * 1.8 * 3.0 + 0.2) and wild.spike
    for sc in (calm, wild):
        assert sc.pips == sc.spread_pips + sc.slippage_pips  # exactly: the cost charged is the sum
    no_spikes = CostModel(costs, ScenarioConfig(spread_mult=1.6, slippage_mult=1.8))
    assert not no_spikes.side_cost("EURUSD", 3.0).spike  # above the threshold, but no multiplier applied


def test_every_trade_of_the_sample_carries_a_split_that_sums_exactly_to_its_costs():
    from deskd.configs.loader import load_config
    from deskd.research.backtest import run_scenario
    from tests.conftest import EXAMPLE

    cfg = load_config(EXAMPLE)
    for scenario in ("A", "C"):
        trades = run_scenario(cfg, scenario, None).trades
        assert trades
        for t in trades:
            assert t.entry_spread_pips + t.entry_slippage_pips == t.entry_cost_pips
            assert t.exit_spread_pips + t.exit_slippage_pips == t.exit_cost_pips
            assert t.cost_pips == t.entry_cost_pips + t.exit_cost_pips
        spikes = sum(bool(t.entry_spike) + bool(t.exit_spike) for t in trades)
        assert (spikes > 0) == (scenario == "C")  # only C applies the spike multiplier
