"""The terminal summary fits 80 columns with every number whole, and says so when a scenario's
account was wiped out."""

import copy
import io
import json

from rich.console import Console

from deskd.research.summary import cagr, summary
from tests.conftest import ROOT

REPORT = {
    "desk": "bench", "timeframe": "M1", "starting_equity_usd": 100_000.0,
    "data": {"EURUSD": {"bars": 1_116_712, "first_bar": "2017-01-02T22:00:00Z", "last_bar": "2019-12-31T21:59:00Z"}},
    "scenarios": {},
}
OVERALL = {"trades": 17_203, "max_drawdown_frac": 0.999123, "sharpe_daily_ann": -12.3456,
           "profit_factor": 0.6123, "net_pnl_usd": -99_912.345678}
BY = {"trades": 9_001, "win_rate": 0.3012, "avg_r_multiple": -0.1234, "profit_factor": 0.71, "net_pnl_usd": -60_123.4}


def render(report, width=80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(summary(report))
    return out.getvalue()


def report_with(final_usd, scenarios=("A", "B", "C")):
    r = copy.deepcopy(REPORT)
    for s in scenarios:
        r["scenarios"][s] = {"bars": 1_116_712, "final_equity_usd": final_usd, "return_frac": final_usd / 100_000 - 1,
                             "min_equity_usd": min(final_usd, 100_000.0), "equity_floor_usd": 10_000.0,
                             "wiped_out": final_usd < 10_000.0,
                             "overall": dict(OVERALL), "by_strategy": {
                                 "S1_TREND_EMA_ATR_ADX": dict(BY), "S2_MR_ZSCORE_EMA_REGIME": dict(BY),
                                 "S3_BREAKOUT_ATR_REGIME_EMA200": dict(BY)}}
    return r


def test_every_number_is_whole_at_80_columns():
    text = render(report_with(87.65))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for shown in ("17,203", "-99.9%", "99.9%", "-12.35", "0.61", "-99,912", "1,116,712 bars",
                  "2017-01-02 to 2019-12-31", "S3_BREAKOUT_ATR_REGIME_EMA200", "9,001", "30.1%", "-0.12"):
        assert shown in text, shown


def test_a_wiped_out_account_is_named_and_a_healthy_one_is_not():
    text = render(report_with(87.65))
    assert "scenario A: account wiped out: equity fell to 88 USD, below the 10,000 USD floor" in text
    assert "wiped out" not in render(report_with(150_000.0))


def test_cagr_compounds_over_calendar_years_and_is_absent_for_short_or_dead_runs():
    assert abs(cagr(100.0, 121.0, 2 * 365.25) - 0.10) < 1e-12
    assert cagr(100.0, 121.0, 10) is None and cagr(100.0, 0.0, 800) is None


def test_the_sample_report_renders_within_80_columns(tmp_path):
    from tests.conftest import run

    run("backtest", "--config", str(ROOT / "deskd" / "configs" / "examples" / "desk.yaml"), "--out",
        str(tmp_path / "out"), "--scenarios", "A")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    text = render(report)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert f"{report['scenarios']['A']['overall']['trades']:,}" in text
