"""The live feed's bar gate: duplicates dropped, real gaps and late bars logged, weekends not."""

from datetime import UTC, datetime

from deskd.core.events import BarClosed
from deskd.daemon.runner import BarGate
from deskd.risk.guard import TradingCalendar


def ts(*a):
    return int(datetime(*a, tzinfo=UTC).timestamp())


def bar(t, sym="EURUSD"):
    return BarClosed(sym, 900, t, 1.1, 1.1, 1.1, 1.1, 0.0)


def gate():
    return BarGate(900, TradingCalendar("17:00", "America/New_York"), late_after_s=30)


def test_duplicate_and_out_of_order_bars_are_dropped_never_traded():
    g = gate()
    t = ts(2026, 1, 14, 10, 0)
    assert g.admit(bar(t)) and not g.admit(bar(t)) and not g.admit(bar(t - 900))
    assert g.admit(bar(t, "USDJPY"))  # per symbol
    assert g.duplicates == 2


def test_weekend_close_is_not_a_gap_but_a_midweek_hole_is():
    g = gate()
    assert g.admit(bar(ts(2026, 1, 16, 21, 45)))  # last bar of the week (closes 17:00 NY)
    assert g.admit(bar(ts(2026, 1, 18, 22, 0)))   # Sunday 17:00 NY open
    assert g.gaps == 0
    assert g.admit(bar(ts(2026, 1, 19, 3, 0)))    # 5 hours later on Monday
    assert g.gaps == 1


def test_bar_released_well_after_its_close_is_counted_late():
    g = gate()
    t = ts(2026, 1, 14, 10, 0)
    assert g.admit(bar(t), now_ts=t + 900 + 5) and g.late == 0
    assert g.admit(bar(t + 900), now_ts=t + 1800 + 120) and g.late == 1
