from datetime import UTC, date, datetime

from deskd.risk.guard import DrawdownGuard, TradingCalendar

NY_CAL = TradingCalendar("17:00", "America/New_York")


def ts(*a):
    return int(datetime(*a, tzinfo=UTC).timestamp())


def test_fx_day_rolls_at_17_new_york_in_winter_and_summer():
    # winter: 17:00 NY = 22:00 UTC; summer (EDT): 21:00 UTC
    assert NY_CAL.trading_day(ts(2026, 1, 14, 21, 59)) == date(2026, 1, 14)
    assert NY_CAL.trading_day(ts(2026, 1, 14, 22, 0)) == date(2026, 1, 15)
    assert NY_CAL.trading_day(ts(2026, 7, 14, 20, 59)) == date(2026, 7, 14)
    assert NY_CAL.trading_day(ts(2026, 7, 14, 21, 0)) == date(2026, 7, 15)
    assert NY_CAL.next_day_roll_ts(ts(2026, 7, 14, 12, 0)) == ts(2026, 7, 14, 21, 0)


def test_sunday_evening_opens_mondays_trading_day_and_a_new_week():
    sunday_open = ts(2026, 1, 18, 22, 0)  # Sunday 17:00 NY
    assert NY_CAL.trading_day(sunday_open) == date(2026, 1, 19)
    assert NY_CAL.next_week_roll_ts(ts(2026, 1, 14, 12, 0)) == sunday_open


def test_day_breach_halts_until_next_day_roll_then_lifts():
    g = DrawdownGuard(NY_CAL, 0.02, 0.05)
    t0 = ts(2026, 1, 13, 22, 0)
    assert g.roll(t0, 100_000)
    assert g.check(t0 + 3600, 98_500) is None
    v = g.check(t0 + 7200, 97_999)
    assert v is not None and not v.allow_entries and v.code == "day_dd"
    assert v.until == ts(2026, 1, 14, 22, 0)
    assert not g.verdict().allow_entries
    assert not g.expired(v.until - 1)
    g.roll(v.until, 97_999)
    assert g.expired(v.until) and g.verdict().allow_entries
    assert g.day_anchor_usd == 97_999 and g.week_anchor_usd == 100_000


def test_week_breach_halts_until_next_week_roll_even_after_day_rolls():
    g = DrawdownGuard(NY_CAL, 0.02, 0.05)
    g.roll(ts(2026, 1, 11, 22, 0), 100_000)  # Monday's day, new week
    g.roll(ts(2026, 1, 13, 22, 0), 96_000)   # Wednesday: day anchor 96k, week anchor 100k
    v = g.check(ts(2026, 1, 14, 3, 0), 94_900)
    assert v.code == "week_dd" and v.until == ts(2026, 1, 18, 22, 0)
    g.roll(ts(2026, 1, 14, 22, 0), 94_900)
    assert not g.expired(ts(2026, 1, 14, 22, 0)) and not g.verdict().allow_entries


def test_anchors_are_marked_at_the_roll_not_recomputed_by_later_bars():
    g = DrawdownGuard(NY_CAL, 0.02, 0.05)
    t0 = ts(2026, 1, 13, 22, 0)
    g.roll(t0, 100_000)
    assert not g.roll(t0 + 900, 90_000)
    assert g.day_anchor_usd == 100_000


def test_a_fall_from_the_equity_peak_halts_until_lifted_and_never_by_itself():
    g = DrawdownGuard(NY_CAL, 0.99, 0.99, max_dd_frac=0.10, peak_equity_usd=100_000)
    t0 = ts(2026, 1, 13, 22, 0)
    g.roll(t0, 100_000)
    assert g.check(t0 + 60, 120_000) is None and g.peak_equity_usd == 120_000  # a new peak
    assert g.check(t0 + 120, 108_001) is None                                  # 9.999 % below it
    v = g.check(t0 + 180, 108_000)                                              # 10 % below
    assert v is not None and v.code == "max_dd" and not g.verdict().allow_entries
    for day in range(1, 30):  # day and week rolls do not lift it
        g.roll(t0 + day * 86_400, 108_000)
        assert not g.expired(t0 + day * 86_400) and not g.verdict().allow_entries
    g.check(t0 + 40 * 86_400, 50_000)  # deeper: still the same halt
    assert g.verdict().code == "max_dd"
    g.lift(50_000)
    assert g.verdict().allow_entries and g.peak_equity_usd == 50_000
    assert g.check(t0 + 41 * 86_400, 46_000) is None and g.check(t0 + 41 * 86_400, 45_000).code == "max_dd"


def test_without_max_dd_frac_a_fall_from_the_peak_never_halts():
    g = DrawdownGuard(NY_CAL, 0.99, 0.99, peak_equity_usd=100_000)
    g.roll(ts(2026, 1, 13, 22, 0), 100_000)
    assert g.check(ts(2026, 1, 13, 23, 0), 10_000) is None
