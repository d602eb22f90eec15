"""``deskd tune --filters``: candidates with the baseline, the penalised split score, thresholds
read from training bars only (shown to catch a leaking variant), and a whole tune on the sample
whose figures are the event path's."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from deskd.adapters.replay import Window
from deskd.configs.models import DeskConfig, FiltersConfig, FilterTuneConfig
from deskd.research.backtest import run_scenario
from deskd.research.fastpath import load_bars
from deskd.research.splits import calendar_splits, parse_span
from deskd.research.tuning.filters import (
    Candidate,
    FilterTuneOptions,
    SplitRun,
    candidates,
    filter_tune,
    longest_drawdown_days,
    split_score,
    summary,
    train_thresholds,
)
from deskd.research.tuning.tune import TuneError
from tests.conftest import EXAMPLE
from tests.research.test_tuning import S1, s1_config
from tests.research.test_walkforward import tampered_config, ts

SMALL_GRID = {"adx_min_q": [None, 0.75], "atr_pct_band_q": [None, [0.1, 0.9]], "vol_regimes": [None],
              "block_spike": [False], "hours_utc": {"all": None}, "min_trades_per_split": 1}
TRAIN_START, TRAIN_END, TEST_END = ts(2026, 1, 16), ts(2026, 3, 1), ts(2026, 4, 1)


def grid(**fields) -> FilterTuneConfig:
    return FilterTuneConfig(**{**SMALL_GRID, **fields})


def test_the_baseline_is_always_a_candidate_and_never_twice():
    g = FilterTuneConfig()
    cands = candidates(g)
    assert cands[0] == Candidate(0) and cands[0].label(g.hours_utc) == "none (baseline)"
    assert len(cands) == g.size  # the product's all-off entry is the baseline, not repeated
    assert len({c.label(g.hours_utc) for c in cands}) == len(cands)
    no_off = FilterTuneConfig(adx_min_q=[0.5], atr_pct_band_q=[[0.2, 0.8]], vol_regimes=[["MID"]],
                              block_spike=[True], hours_utc={"ny": [13, 14]})
    assert [c.number for c in candidates(no_off)] == [0, 1]  # the baseline added to a grid without one


def test_a_bad_grid_is_a_config_error_naming_its_key():
    from pydantic import ValidationError

    for bad, where in (({"atr_pct_band_q": [[0.9, 0.1]]}, "atr_pct_band_q"), ({"adx_min_q": [1.5]}, "adx_min_q.0"),
                       ({"hours_utc": {"x": [25]}}, "hours_utc.x.0"), ({"hours_utc": {"x": []}}, "hours_utc"),
                       ({"cost_stress_multiple": 1.0}, "cost_stress_multiple"), ({"lambda_dd": -1}, "lambda_dd")):
        with pytest.raises(ValidationError) as e:
            s1_config(filters=bad)
        assert f"tune.filters.{where}" in str(e.value).replace("\n", "."), str(e.value)


def test_the_split_score_is_expectancy_less_the_three_penalties():
    g = FilterTuneConfig(lambda_dd=2.0, mu_dd_days=0.01, nu_cost=0.5, min_trades_per_split=3)
    run = SplitRun(1, 1, trades=10, expectancy_r=0.30, expectancy_r_stressed=0.10, max_dd_frac=0.04, dd_days=12.0)
    parts = split_score(run, g)
    assert parts["cost_sensitivity_r"] == pytest.approx(0.20)
    assert parts["score"] == pytest.approx(0.30 - 2.0 * 0.04 - 0.01 * 12.0 - 0.5 * 0.20)
    run.trades = 2
    assert math.isnan(split_score(run, g)["score"])  # too few trades: ineligible


def test_the_longest_drawdown_runs_from_a_peak_to_its_recovery_or_the_end():
    day = 86_400
    rows = [(0, "DAY", 100.0), (day, "BAR", 110.0), (2 * day, "BAR", 105.0), (5 * day, "FILL", 111.0),
            (6 * day, "BAR", 109.0)]
    assert longest_drawdown_days(rows, 7 * day) == pytest.approx(4.0)  # day 1 -> day 5
    assert longest_drawdown_days(rows, 12 * day) == pytest.approx(7.0)  # day 5 -> the end, never back
    assert longest_drawdown_days([(0, "DAY", 1.0)], day) == 0.0


def test_thresholds_never_read_a_bar_after_the_train_window(tmp_path):
    g = grid(adx_min_q=[None, 0.25, 0.5, 0.9], atr_pct_band_q=[None, [0.05, 0.95]])
    honest = s1_config()
    changed = tampered_config(tmp_path, after_ts=TRAIN_END)  # every bar from the train end on mirrored
    bars = {"EURUSD": load_bars(honest, "EURUSD")}
    bars_changed = {"EURUSD": load_bars(changed, "EURUSD")}
    assert not np.array_equal(bars["EURUSD"].close, bars_changed["EURUSD"].close)
    th = train_thresholds(honest, ["EURUSD"], bars, TRAIN_START, TRAIN_END, g)
    assert th == train_thresholds(changed, ["EURUSD"], bars_changed, TRAIN_START, TRAIN_END, g)
    assert set(th["adx"]) == {0.25, 0.5, 0.9} and th["adx"][0.25] < th["adx"][0.5] < th["adx"][0.9]
    assert 0 < th["atr_pct"][0.05] < th["atr_pct"][0.95] < 1
    # the check can fail: a leaking variant taking its quantiles over train + test sees the change
    assert (train_thresholds(honest, ["EURUSD"], bars, TRAIN_START, TEST_END, g)
            != train_thresholds(changed, ["EURUSD"], bars_changed, TRAIN_START, TEST_END, g))


def _splits(train: str = "2M"):
    return calendar_splits(ts(2026, 1, 16), ts(2026, 7, 9), parse_span("--train", train),
                           parse_span("--test", "1M"), parse_span("--embargo", "1D"))


def _tune(cfg: DeskConfig, out, splits=None):
    return filter_tune(cfg, FilterTuneOptions(S1, out, splits or _splits(), {"unit": "calendar", "train": "2M",
                                                                             "test": "1M", "embargo": "1D"},
                                              config_dir=EXAMPLE.parent), quiet=True)


def test_a_filter_tune_ranks_candidates_by_the_robust_score_of_event_path_runs(tmp_path):
    cfg = s1_config(filters=SMALL_GRID)
    res = _tune(cfg, tmp_path / "f")
    df = pd.read_csv(tmp_path / "f" / "filters.csv")
    meta = json.loads((tmp_path / "f" / "filters.json").read_text())
    n = len(_splits())
    assert len(df) == len(candidates(cfg.tune.filters)) == 4 and 0 in set(df["candidate"])
    scores = df["score"].to_numpy()
    assert (np.diff(scores[np.isfinite(scores)]) <= 0).all()
    for row in df.to_dict("records"):  # candidate score = mean - std (ddof 1) of its split scores
        per = np.array([row[f"s{i}_score"] for i in range(1, n + 1)])
        if np.isfinite(per).all():
            assert row["score"] == pytest.approx(per.mean() - per.std(ddof=1))
            for i in range(1, n + 1):
                assert row[f"s{i}_score"] == pytest.approx(
                    row[f"s{i}_expectancy_r"] - row[f"s{i}_dd_penalty"] - row[f"s{i}_dd_days_penalty"]
                    - row[f"s{i}_cost_penalty"])
    assert meta["baseline"]["rank"] == int(df[df["candidate"] == 0]["rank"].iloc[0])
    assert meta["scenarios"]["base"] == "B" and meta["scenarios"]["stressed"] == "Bx2"
    assert set(meta["data"]) == {"EURUSD"} and len(meta["config_sha256"]) == 64
    # a split's figures are the event path's: the candidate's filters on that test window
    best = df.iloc[0]
    sp = meta["splits"][0]
    f = sp["best_filters"]
    d = cfg.model_dump(mode="json", by_alias=True)
    d["strategies"][S1]["filters"] = f
    run = run_scenario(DeskConfig.model_validate(d, context={"config_dir": EXAMPLE.parent}), "B", None,
                       window=Window(_splits()[0].test_start, _splits()[0].test_end, None))
    assert len(run.trades) == best["s1_trades"]
    assert np.mean([t.r_multiple for t in run.trades]) == pytest.approx(best["s1_expectancy_r"])
    if f is not None and "adx" in f:
        assert f["adx"]["min"] == sp["thresholds"]["adx"]["0.75"]
    paste = meta["paste"]["config"]["strategies"][S1]["filters"]
    assert paste is None or FiltersConfig.model_validate(paste).active
    text = summary(res.meta, res.ranking)
    assert max(len(line) for line in text.splitlines()) <= 80 and "baseline" in text


def test_split_thresholds_of_a_whole_tune_read_only_their_train_window(tmp_path):
    """Bars from the second split's train end on changed: the first two splits' thresholds stay,
    the third's (whose train window holds changed bars) move."""
    splits = _splits()
    honest = s1_config(filters=SMALL_GRID)
    d = tampered_config(tmp_path, after_ts=splits[1].train_end).model_dump(mode="json", by_alias=True)
    d["tune"]["filters"] = SMALL_GRID
    changed = DeskConfig.model_validate(d, context={"config_dir": EXAMPLE.parent})
    a = _tune(honest, tmp_path / "a").meta["splits"]
    b = _tune(changed, tmp_path / "b").meta["splits"]
    assert [s["thresholds"] for s in a[:2]] == [s["thresholds"] for s in b[:2]]
    assert a[2]["thresholds"] != b[2]["thresholds"]


def test_one_split_is_not_enough_for_mean_minus_std(tmp_path):
    with pytest.raises(TuneError, match="needs at least 2"):
        _tune(s1_config(filters=SMALL_GRID), tmp_path / "one", _splits("4M"))
