"""Breakdowns on hand-made trades and decisions: hours in UTC and New York (with its daylight
saving), weekdays, payoff, MAE/MFE by outcome, the longest drawdown, and good and bad skips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deskd.research.breakdowns import (
    by_time,
    counterfactual_breakdowns,
    drawdown_duration,
    mae_mfe_by_outcome,
    payoff,
    signals_by_regime,
    skips,
)


def _ts(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").timestamp())


def _trades(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame({"signal_ts": [_ts(t) for t, _, _ in rows], "pnl_usd": [p for _, p, _ in rows],
                         "r_multiple": [r for _, _, r in rows]})


def test_hours_are_the_decision_close_in_utc_and_in_new_york_with_daylight_saving():
    # 14:30 UTC is 09:30 in New York in January (EST, UTC-5) and 10:30 in July (EDT, UTC-4)
    tr = _trades([("2019-01-15T14:30", 100.0, 1.0), ("2019-07-15T14:30", -50.0, -0.5),
                  ("2019-07-16T14:45", -50.0, -0.5)])
    out = by_time(tr)
    assert out["by_hour_utc"] == {"14": {"trades": 3, "win_rate": pytest.approx(1 / 3, abs=1e-4),
                                         "expectancy_r": 0.0, "net_usd": 0.0}}
    assert out["by_hour_new_york"]["09"]["trades"] == 1 and out["by_hour_new_york"]["10"]["trades"] == 2
    assert out["by_hour_new_york"]["10"]["expectancy_r"] == -0.5
    assert list(out["by_weekday"]) == ["Mon", "Tue"]  # 2019-07-15 was a Monday; Jan 15 a Tuesday
    assert out["by_weekday"]["Tue"]["trades"] == 2


def test_payoff_ratio_is_average_win_over_average_loss_in_r():
    tr = _trades([("2019-01-15", 200.0, 2.0), ("2019-01-16", 100.0, 1.0), ("2019-01-17", -100.0, -1.0),
                  ("2019-01-18", -100.0, -1.0), ("2019-01-19", 0.0, 0.0)])
    p = payoff(tr)
    assert p["payoff_ratio"] == 1.5 and p["avg_win_r"] == 1.5 and p["avg_loss_r"] == -1.0
    assert p["avg_win_usd"] == 150.0 and p["avg_loss_usd"] == -100.0 and p["win_rate"] == 0.4
    assert payoff(tr[tr.pnl_usd > 0])["payoff_ratio"] is None  # no loss: no ratio


def test_mae_and_mfe_by_outcome_in_pips_and_atr():
    tr = pd.DataFrame({"pnl_usd": [10.0, 20.0, -5.0], "mae_pips": [2.0, 4.0, 10.0], "mfe_pips": [8.0, 12.0, 1.0]})
    out = mae_mfe_by_outcome(tr, np.array([2.0, 4.0, np.nan]))
    assert out["WIN"]["mae_pips"]["mean"] == 3.0 and out["WIN"]["mfe_pips"]["p50"] == 10.0
    assert out["WIN"]["mae_atr"]["mean"] == 1.0  # 2/2 and 4/4
    assert out["LOSS"]["mae_atr"] == {"n": 0} and out["LOSS"]["mae_pips"]["n"] == 1


def test_excursion_percentiles_are_the_10th_to_90th_linearly_interpolated():
    # 11 winners with MAE 0..10 pips: the k-th percentile is k/10 pips; NaN is left out
    tr = pd.DataFrame({"pnl_usd": [1.0] * 12, "mae_pips": [*range(11), np.nan], "mfe_pips": [5.0] * 12})
    q = mae_mfe_by_outcome(tr)["WIN"]["mae_pips"]
    assert q == {"n": 11, "mean": 5.0, "p10": 1.0, "p25": 2.5, "p50": 5.0, "p75": 7.5, "p90": 9.0}


def test_drawdown_duration_is_the_longest_time_under_a_peak():
    day = 86400
    ts = np.array([0, 1, 2, 3, 4, 5, 6]) * day
    eq = np.array([100, 110, 100, 105, 110, 109, 108.0])  # under 110 from day 1 to day 4; again from day 4
    d = drawdown_duration(ts, eq)
    assert d["days"] == 3.0 and d["recovered"] is True and d["from"].startswith("1970-01-02")
    eq2 = np.array([100, 110, 100, 111, 90, 95, 99.0])  # the last one never recovers, 3 days
    d2 = drawdown_duration(ts, eq2)
    assert d2["days"] == 3.0 and d2["recovered"] is False and d2["to"].startswith("1970-01-07")
    assert drawdown_duration(ts, np.arange(7.0))["days"] == 0.0  # always at a new peak


def test_skips_count_good_and_bad_and_the_r_they_saved_or_cost():
    cf = pd.DataFrame({
        "action": ["SKIPPED", "SKIPPED", "SKIPPED", "SKIPPED", "TRADED", "TRADED"],
        "reason": ["guard:day_halt", "guard:day_halt", "guard:day_halt", "position_open", "traded", "traded"],
        "cf_result": ["LOSS", "LOSS", "WIN", None, "WIN", "LOSS"],
        "cf_pnl_r": [-1.0, -1.2, 2.5, np.nan, 1.0, -1.0]})
    out = skips(cf)
    g = out["by_reason"]["guard:day_halt"]
    assert (g["signals"], g["good"], g["bad"], g["unresolved"]) == (3, 2, 1, 0)
    assert g["saved_r"] == pytest.approx(2.2) and g["cost_r"] == 2.5 and g["net_r"] == pytest.approx(-0.3)
    assert out["by_reason"]["position_open"]["unresolved"] == 1
    assert out["skipped"]["signals"] == 4 and out["skipped"]["good"] == 2
    assert out["traded"] == {"signals": 2, "won": 1, "lost": 1, "sum_cf_r": 0.0}


def test_signals_by_regime_count_every_decision_and_average_the_resolved_brackets():
    cf = pd.DataFrame({
        "regime": ["TREND", "TREND", "TREND", "RANGE", "RANGE"],
        "action": ["TRADED", "SKIPPED", "SKIPPED", "SKIPPED", "TRADED"],
        "cf_result": ["WIN", "LOSS", None, "WIN", "LOSS"],
        "cf_pnl_r": [1.5, -1.0, np.nan, 2.0, -1.0]})
    out = signals_by_regime(cf)
    assert list(out) == ["RANGE", "TREND"]
    assert out["TREND"] == {"signals": 3, "traded": 1, "resolved": 2, "cf_win_rate": 0.5, "cf_expectancy_r": 0.25,
                            "good_skips": 1, "bad_skips": 0}
    assert out["RANGE"]["bad_skips"] == 1 and out["RANGE"]["cf_expectancy_r"] == 0.5
    unresolved = signals_by_regime(cf.iloc[2:3])
    assert unresolved["TREND"]["cf_win_rate"] is None and unresolved["TREND"]["cf_expectancy_r"] is None
    # without a regime column (an older counterfactuals file) there is no regime breakdown
    assert "signals_by_regime" not in counterfactual_breakdowns(cf.drop(columns="regime").assign(
        reason="x", cf_mae_pips=1.0, cf_mfe_pips=1.0, cf_mae_atr=0.1, cf_mfe_atr=0.1))


def test_a_backtests_skip_table_accounts_for_every_decision(tmp_path):
    import json

    from tests.conftest import EXAMPLE, run

    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--out", str(tmp_path / "bt"), "--quiet")
    rep = json.loads((tmp_path / "bt" / "report.json").read_text())["scenarios"]["A"]
    sk, dec = rep["breakdowns"]["skips"], rep["decisions"]
    assert {k: v["signals"] for k, v in sk["by_reason"].items()} == dec["skipped"]
    assert sk["traded"]["signals"] == dec["traded"]
    for v in sk["by_reason"].values():
        assert v["good"] + v["bad"] + v["unresolved"] == v["signals"]
    # a traded decision's counterfactual is its trade: their R sums agree (the sample has no flatten)
    assert sk["traded"]["sum_cf_r"] == pytest.approx(rep["overall"]["avg_r_multiple"] * rep["overall"]["trades"],
                                                     abs=0.01 * rep["overall"]["trades"])
    assert rep["breakdowns"]["mae_mfe_by_cf_result"]["WIN"]["mae_atr"]["n"] > 0
    by_regime = rep["breakdowns"]["signals_by_regime"]
    assert sum(v["signals"] for v in by_regime.values()) == dec["signals"]
    assert sum(v["traded"] for v in by_regime.values()) == dec["traded"]
    assert sum(v["good_skips"] for v in by_regime.values()) == sk["skipped"]["good"]
