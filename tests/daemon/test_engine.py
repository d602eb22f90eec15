"""The bar-close pipeline end to end on hand-made bars: decisions, positions, time stop,
drawdown halts, sizing and the one-position-per-symbol rule."""

import pytest

from deskd.adapters.replay import close_out
from deskd.core.events import LONG, SHORT, OrderIntent
from tests.daemon.helpers import T0, TF, Harness, Scripted


def test_signal_at_close_fills_at_next_open_and_is_journaled_as_traded():
    h = Harness()
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0])])
    h.bar(1.1000, 1.1005, 1.0995, 1.1002)
    h.bar(1.1003, 1.1008, 1.1001, 1.1006)
    (d,) = h.decisions
    assert d.action == "TRADED" and d.client_order_id
    t = h.desk.ledger.open["EURUSD"]
    assert t.entry_price == 1.1003 and t.fill_ts == T0 + TF and t.signal_ts == T0 + TF


def test_signal_on_a_symbol_with_a_position_is_skipped_as_position_open():
    h = Harness()
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0, 1, 2])])
    h.flat(3)
    assert [d.reason for d in h.decisions] == ["traded", "position_open", "position_open"]
    assert len(h.desk.ledger.open) == 1


def test_time_stop_decided_at_close_of_max_hold_bar_fills_at_next_open():
    h = Harness()  # max_hold_bars = 4
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], sl_pips=100)])
    h.flat(5)  # entry at the open of bar 1; bars 1..4 held; exit decided at close of bar 4
    assert "EURUSD" in h.desk.ledger.open
    h.bar(1.1010, 1.1015, 1.1005, 1.1012)
    (t,) = h.desk.ledger.closed
    assert t.exit_reason == "TIME" and t.hold_bars == 4 and t.exit_price == 1.1010
    assert t.exit_ts == T0 + 5 * TF


def test_symbol_stopped_out_during_bar_may_signal_at_that_close():
    h = Harness()
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0, 1])])
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    h.bar(1.1000, 1.1001, 1.0970, 1.0975)  # entry at 1.1000, stopped at 1.0980 in this bar
    assert h.desk.ledger.closed[0].exit_reason == "SL"
    assert [d.reason for d in h.decisions] == ["traded", "traded"]


def test_units_size_risk_from_stop_distance_eurusd_and_usdjpy():
    h = Harness(r_base=0.01, max_open_risk_frac_per_strategy=0.05)
    orders = []
    h.desk.bus.subscribe(OrderIntent, orders.append)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], sl_pips=25)])
    h.desk.set_strategies("USDJPY", [Scripted("S1_TREND_EMA_ATR_ADX", "USDJPY", on=[0], sl_pips=25)])
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    h.bar(150.00, 150.05, 149.95, 150.00, symbol="USDJPY")
    units = {o.symbol: o.units for o in orders}
    # EURUSD: 1000 USD / (25 pips x 0.0001 x 1 USD) = 400,000 units
    assert units["EURUSD"] == 400_000
    # USDJPY: 1000 USD / (25 x 0.01 JPY x 1/150 USD per JPY) = 600,000 units
    assert units["USDJPY"] == 600_000


def test_usdjpy_pnl_is_converted_to_usd_at_the_exit_price():
    h = Harness(r_base=0.01)
    h.desk.set_strategies("USDJPY", [Scripted("S1_TREND_EMA_ATR_ADX", "USDJPY", on=[0], sl_pips=50, side=SHORT)])
    h.bar(150.00, 150.05, 149.95, 150.00, symbol="USDJPY")
    h.bar(150.00, 150.10, 149.90, 150.00, symbol="USDJPY")
    h.bar(150.40, 150.60, 150.30, 150.50, symbol="USDJPY")  # gaps through the 150.50 stop? no: 150.60 >= 150.50
    (t,) = h.desk.ledger.closed
    assert t.exit_reason == "SL" and t.exit_price == pytest.approx(150.50)
    assert t.pnl_pips == pytest.approx(-50.0)
    assert t.pnl_usd == pytest.approx(-0.50 * t.units / 150.50)
    assert h.desk.ledger.balance_usd == pytest.approx(100_000 + t.pnl_usd)


def test_strategy_open_risk_cap_blocks_an_order_and_says_why():
    h = Harness(r_base=0.01, max_open_risk_frac_per_strategy=0.015, max_open_risk_frac_per_symbol=0.05)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], sl_pips=30)])
    h.desk.set_strategies("USDJPY", [Scripted("S1_TREND_EMA_ATR_ADX", "USDJPY", on=[0], sl_pips=30)])
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    h.bar(150.00, 150.05, 149.95, 150.00, symbol="USDJPY")
    assert [d.reason for d in h.decisions] == ["traded", "cap:strategy_open_risk"]


def test_notional_cap_blocks_an_order():
    h = Harness(r_base=0.01, max_notional_usd=100_000)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], sl_pips=30)])
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    assert h.decisions[0].reason == "cap:notional_usd"


def test_conflicting_signals_trade_the_priority_winner_only():
    h = Harness()
    h.desk.set_strategies("EURUSD", [Scripted("S2_MR_ZSCORE_EMA_REGIME", "EURUSD", on=[0], side=SHORT),
                                     Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], side=LONG)])
    h.flat(1)
    got = {d.strategy_id: d.reason for d in h.decisions}
    assert got == {"S1_TREND_EMA_ATR_ADX": "traded", "S2_MR_ZSCORE_EMA_REGIME": "conflict:S1_TREND_EMA_ATR_ADX"}


def test_day_drawdown_breach_halts_entries_until_next_day_anchor():
    # 1 % risk, 0.5 % day limit: one full stop-out breaches the day limit
    h = Harness(r_base=0.01, dd_day_limit_frac=0.005, dd_week_limit_frac=0.5)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0, 3, 100], sl_pips=20)])
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    h.bar(1.1000, 1.1001, 1.0970, 1.0975)  # stopped out: -1 % of equity
    h.flat(2, 1.0975)
    assert h.states[-1].new == "HALTED" and h.states[-1].trigger == "DD_BREACH"
    assert h.decisions[-1].reason == "guard:day_dd_halt"
    # the next trading day starts at T0 + 24 h; first bar of the new day lifts the halt
    for k in range(4, 101):
        h.bar(1.0975, 1.0980, 1.0970, 1.0975, ts=T0 + 86_400 + (k - 4) * TF if k >= 4 else None)
    assert h.states[-1].new == "RUNNING" and h.states[-1].trigger == "DD_HALT_EXPIRED"
    assert h.decisions[-1].reason == "traded"


def test_end_of_data_closes_open_positions_at_last_close_with_reason_eod():
    h = Harness()
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], sl_pips=100)])
    h.flat(2)
    h.bar(1.1000, 1.1010, 1.0990, 1.1007)
    close_out(h.desk)
    (t,) = h.desk.ledger.closed
    assert t.exit_reason == "EOD" and t.exit_price == 1.1007
    assert h.desk.allocator.notional_usd == 0.0


def test_order_ids_are_deterministic_per_symbol_bar_and_intent():
    a = Harness().desk
    b = Harness().desk
    assert a.order_id("EURUSD", 123, "ENTRY") == b.order_id("EURUSD", 123, "ENTRY")
    assert a.order_id("EURUSD", 123, "ENTRY") != a.order_id("EURUSD", 124, "ENTRY")


def test_time_stop_applies_to_a_strategy_the_config_does_not_enable():
    h = Harness()  # S2 is disabled in the config; risk.max_hold_bars = 4 applies
    h.desk.set_strategies("EURUSD", [Scripted("S2_MR_ZSCORE_EMA_REGIME", "EURUSD", on=[0], sl_pips=100)])
    h.flat(6)
    (t,) = h.desk.ledger.closed
    assert t.exit_reason == "TIME" and t.hold_bars == 4


def test_ledger_tracks_deepest_drawdown_fraction_even_when_smaller_in_usd():
    from deskd.core.bus import Bus
    from deskd.core.money import QuoteConverter
    from deskd.desk.ledger import Ledger
    lg = Ledger(Bus(), {}, QuoteConverter({}), 1000.0, TF)
    for e in (500.0, 3000.0, 2000.0):
        lg.equity_usd = e
        lg._track_drawdown(0)
    assert lg.max_dd_usd == pytest.approx(1000) and lg.max_dd_frac == pytest.approx(0.5)


def test_degraded_state_scales_risk_and_safe_mode_skips_entries():
    from deskd.desk.state import Trigger
    h = Harness(r_base=0.01)
    orders = []
    h.desk.bus.subscribe(OrderIntent, orders.append)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0], sl_pips=25)])
    h.desk.set_strategies("USDJPY", [Scripted("S1_TREND_EMA_ATR_ADX", "USDJPY", on=[0], sl_pips=25)])
    h.desk.state.execution_error(T0, "timeout")  # RUNNING -> DEGRADED, risk x 0.5
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    assert orders[0].units == 200_000  # half of 400,000
    h.desk.state.fire(Trigger.RECONCILE_MISMATCH, T0, "units differ")
    h.bar(150.00, 150.05, 149.95, 150.00, symbol="USDJPY")
    assert h.decisions[-1].reason == "state:SAFE_MODE" and len(orders) == 1


def test_week_breach_keeps_entries_halted_across_day_rolls_until_the_week_anchor():
    day = 86_400
    w0 = T0 + 2 * day  # Sunday 2026-01-11 17:00 New York: Monday's trading day, a new week
    h = Harness(r_base=0.01, dd_day_limit_frac=0.5, dd_week_limit_frac=0.008)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0, 3, 4, 5, 6], sl_pips=20)])
    h.bar(1.1000, 1.1005, 1.0995, 1.1000, ts=w0)
    h.bar(1.1000, 1.1001, 1.0970, 1.0975, ts=w0 + TF)  # -1 % of equity: week breach
    h.bar(1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 2 * TF)
    assert h.states[-1].trigger == "DD_BREACH" and "week" in h.states[-1].reason
    for k in (1, 2, 4):  # Tuesday, Wednesday, Friday: day anchors roll, the halt stays
        h.bar(1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + k * day)
        assert h.decisions[-1].reason == "guard:week_dd_halt"
    h.bar(1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 7 * day)  # next Sunday 17:00: lifted
    assert h.states[-1].trigger == "DD_HALT_EXPIRED" and h.decisions[-1].reason == "traded"


def test_broker_rejections_degrade_then_halt_and_clean_fills_recover():
    h = Harness(max_execution_errors=3, clean_executions_to_recover=2)
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=range(0, 40), sl_pips=5,
                                              tp_pips=5)])
    h.desk.broker.reject_next = 1
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    assert h.decisions[-1].reason == "broker:rejected" and h.desk.state.state.value == "DEGRADED"
    assert h.desk.allocator.notional_usd == 0.0  # a rejected order holds no cap
    # two clean round trips (each bar hits the 5-pip bracket) bring the desk back
    for _ in range(4):
        h.bar(1.1000, 1.1010, 1.0990, 1.1000)
    assert h.states[-1].new == "RUNNING" and h.states[-1].trigger == "CLEAN_EXECUTIONS"
    h.desk.broker.reject_next = 3
    for _ in range(6):
        h.bar(1.1000, 1.1010, 1.0990, 1.1000)
    assert h.desk.state.state.value == "HALTED" and h.states[-1].trigger == "ERROR_LIMIT"
    assert h.decisions[-1].reason == "state:HALTED"
