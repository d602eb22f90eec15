import pytest

from deskd.configs.models import RiskConfig
from deskd.core.money import Instrument, QuoteConverter
from deskd.risk.allocator import Allocator


def make(**kw):
    ins = {s: Instrument.parse(s) for s in ("EURUSD", "USDJPY", "EURGBP", "GBPUSD")}
    conv = QuoteConverter(ins)
    conv.last_price["GBPUSD"] = 1.25
    return Allocator(RiskConfig(**kw), ins, conv)


def test_risk_is_r_base_times_equity_and_units_follow_the_stop():
    a = make(r_base=0.005)
    got = a.size("EURUSD", "S1_TREND_EMA_ATR_ADX", 20.0, 1.1, 100_000)
    assert got.skip is None and got.units == 250_000 and got.risk_usd == pytest.approx(500)
    assert got.notional_usd == pytest.approx(275_000)


def test_cross_pair_converts_quote_through_its_usd_pair():
    a = make(r_base=0.005)
    got = a.size("EURGBP", "S1_TREND_EMA_ATR_ADX", 20.0, 0.85, 100_000)
    # 500 USD / (20 x 0.0001 GBP x 1.25 USD/GBP) = 200,000 units
    assert got.units == 200_000


def test_degraded_scale_shrinks_the_order():
    a = make(r_base=0.005)
    assert a.size("EURUSD", "S1", 20.0, 1.1, 100_000, scale=0.5).units == 125_000


def test_symbol_cap_counts_open_positions_until_released():
    a = make(r_base=0.005, max_open_risk_frac_per_symbol=0.006, max_open_risk_frac_per_strategy=1)
    first = a.size("EURUSD", "S1", 20.0, 1.1, 100_000)
    a.book("o1", "EURUSD", "S1", first.risk_usd, first.notional_usd)
    assert a.size("EURUSD", "S2", 20.0, 1.1, 100_000).skip == "cap:symbol_open_risk"
    a.release("o1")
    assert a.size("EURUSD", "S2", 20.0, 1.1, 100_000).skip is None
    assert a.notional_usd == 0.0


def test_tiny_risk_rounds_to_zero_units_and_is_skipped():
    a = make(r_base=0.000001)
    assert a.size("EURUSD", "S1", 5000.0, 1.1, 100).skip == "size:zero_units"


def test_cross_without_a_usd_link_is_refused_at_construction():
    with pytest.raises(ValueError, match="EURGBP"):
        QuoteConverter({"EURGBP": Instrument.parse("EURGBP")})
