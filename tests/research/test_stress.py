"""deskd stress: the cost curve re-runs the run itself at x1, the fast and event paths agree,
neighbours stay valid, the break-even multiple is where expectancy crosses zero, seeded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from deskd.configs.loader import load_config
from deskd.configs.models import Dimension
from deskd.research.stress import (
    Options,
    StressInputError,
    apply_moves,
    break_even,
    by_move,
    check_options,
    draw_moves,
    neighbours,
    read_plan,
    run_stress,
)
from deskd.research.tuning.space import SearchSpace
from tests.conftest import EXAMPLE, run

S1 = "S1_TREND_EMA_ATR_ADX"


@pytest.fixture(scope="module")
def wf(tmp_path_factory) -> Path:
    """A small walk-forward of S1 on the sample's EURUSD: 3 splits, 4 grid points each."""
    out = tmp_path_factory.mktemp("wf") / "wf"
    run("walkforward", "--config", str(EXAMPLE), "--strategy", S1, "--symbols", "EURUSD", "--train", "2M",
        "--test", "1M", "--embargo", "1D", "--trials", "4", "--top-k", "2", "--workers", "1", "--out", str(out),
        "--quiet")
    return out


@pytest.mark.parametrize("fast", ["1", "0"])
def test_cost_multiple_one_reruns_the_walkforwards_out_of_sample_trades(wf, monkeypatch, fast):
    # arrange: the walk-forward's own out-of-sample record under A
    monkeypatch.setenv("DESKD_FAST_PATH", fast)
    oos = json.loads((wf / "walkforward.json").read_text())["out_of_sample"]["A"]
    plan = read_plan(wf, Options(scenario="A"))
    assert plan.fast is (fast == "1") and len(plan.legs) == 3
    # act
    st = run_stress(plan, Options(scenario="A", multiples=(1.0,), neighbours=0), quiet=True)
    # assert: the same trades, P&L and final equity, whichever path ran it
    at1 = st.meta["cost"]["curve"][0]
    assert at1["trades"] == oos["trades"]
    assert at1["net_usd"] == pytest.approx(oos["net_usd"], abs=0.005 * oos["trades"])  # the record sums cents
    assert at1["expectancy_r"] == pytest.approx(oos["expectancy_r"], abs=5e-5)  # R recorded to 4 decimals
    assert at1["final_equity_usd"] == pytest.approx(oos["final_equity_usd"], abs=0.01)


def test_fast_and_event_paths_give_the_same_stress(wf, monkeypatch):
    opts = Options(scenario="B", multiples=(1.0, 2.0), neighbours=4, seed=7)
    fast = run_stress(read_plan(wf, opts), opts, quiet=True)
    monkeypatch.setenv("DESKD_FAST_PATH", "0")
    event = run_stress(read_plan(wf, opts), opts, quiet=True)
    assert fast.meta["inputs"]["path"] == "fast" and event.meta["inputs"]["path"] == "event"
    for a, b in zip(fast.meta["cost"]["curve"], event.meta["cost"]["curve"]):
        assert a["trades"] == b["trades"]
        for k in ("expectancy_r", "net_usd", "max_dd_frac", "final_equity_usd", "sharpe_daily_ann", "profit_factor"):
            assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-6), k
    np.testing.assert_allclose(fast.neighbours["expectancy_r"], event.neighbours["expectancy_r"], rtol=1e-9)


def test_higher_costs_cost_more_per_trade(wf):
    st = run_stress(read_plan(wf, Options()), Options(multiples=(1.0, 3.0), neighbours=0), quiet=True)
    one, three = st.meta["cost"]["curve"]
    assert three["net_usd"] < one["net_usd"]
    assert three["expectancy_r"] < one["expectancy_r"]


def test_the_same_seed_draws_the_same_neighbours_and_another_seed_others(wf):
    plan = read_plan(wf, Options())
    pts = [leg.point for leg in plan.legs]
    a = neighbours(plan.space, pts, 20, np.random.default_rng(3), 0.1, 2)
    b = neighbours(plan.space, pts, 20, np.random.default_rng(3), 0.1, 2)
    c = neighbours(plan.space, pts, 20, np.random.default_rng(4), 0.1, 2)
    assert a == b and a[1] != c[1]


# -- neighbours ---------------------------------------------------------------------------------

def _space(extra: dict[str, Dimension] | None = None) -> SearchSpace:
    cfg = load_config(EXAMPLE)
    if extra:
        d = cfg.model_dump(mode="json", by_alias=True)
        d["tune"]["space"] = {S1: {k: v.model_dump(exclude_none=True) for k, v in extra.items()}}
        cfg = type(cfg).model_validate(d, context={"config_dir": EXAMPLE.parent})
    return SearchSpace.of(cfg, S1)


@settings(max_examples=200, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), steps=hs.integers(1, 60), jitter=hs.floats(0.01, 0.99),
       fast=hs.integers(5, 40), slow=hs.integers(30, 120), th=hs.floats(15, 35))
def test_a_neighbour_is_always_a_valid_point_within_its_bounds(seed, steps, jitter, fast, slow, th):
    # a space whose ranges reach the params' own minimum (a bar count >= 1; k_sl > 0)
    space = _space({"atr_period": Dimension(low=1, high=30, step=1), "stops.k_sl": Dimension(low=0.5, high=3.0, step=0.5)})
    point = {"adx_th": th, "atr_period": 2, "ema_fast": min(fast, slow - 1), "ema_slow": slow, "stops.k_sl": 0.6}
    moves, points, refused = neighbours(space, [point], 5, np.random.default_rng(seed), jitter, steps)
    for (moved,) in points:
        space.resolve(moved)  # raises InvalidPoint if the strategy's rules refuse it
        for name, d in space.dims.items():
            assert d.low <= moved[name] <= d.high, (name, moved[name])
        assert moved["atr_period"] >= 1 and isinstance(moved["atr_period"], int)
        assert moved["ema_fast"] < moved["ema_slow"]
        assert moved["stops.k_sl"] > 0


def test_an_integer_moves_by_whole_steps_and_a_float_by_a_factor():
    space = _space()
    point = {"adx_th": 20.0, "ema_fast": 10, "ema_slow": 60}
    moved = apply_moves(space, point, {"adx_th": 1.1, "ema_fast": -2.0, "ema_slow": 1.0})
    assert moved == {"adx_th": pytest.approx(22.0), "ema_fast": 8, "ema_slow": 61}
    # clipped to the dimension: adx_th <= 35, ema_fast >= 5
    moved = apply_moves(space, {"adx_th": 34.0, "ema_fast": 6, "ema_slow": 60}, {"adx_th": 1.5, "ema_fast": -2.0,
                                                                                  "ema_slow": 0.0})
    assert moved["adx_th"] == 35.0 and moved["ema_fast"] == 5


def test_a_range_below_a_params_minimum_is_clipped_to_the_minimum():
    # tune.space lets atr_period reach 1: a move of -2 from 2 stops at the param's own minimum 1
    space = _space({"atr_period": Dimension(low=1, high=30, step=1)})
    moved = apply_moves(space, {"atr_period": 2, "adx_th": 20.0, "ema_fast": 10, "ema_slow": 60},
                        {"atr_period": -2.0})
    assert moved["atr_period"] == 1


def test_draw_moves_leaves_choices_alone_and_stays_in_range():
    space = _space({"atr_period": Dimension(choices=[7, 14])})
    rng = np.random.default_rng(0)
    for _ in range(100):
        mv = draw_moves(space, rng, 0.2, 3)
        assert "atr_period" not in mv
        assert all(1 <= abs(mv[n]) <= 3 and mv[n] == int(mv[n]) for n in ("ema_fast", "ema_slow"))
        assert 0.8 <= mv["adx_th"] <= 1.2


# -- break-even ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ks, es, want, censored", [
    ([1.0, 2.0, 3.0], [0.2, 0.1, -0.1], 2.5, None),              # crosses between 2 and 3, halfway
    ([1.0, 1.5, 2.0], [0.3, 0.0, -0.2], 1.5, None),              # exactly zero at 1.5
    ([1.0, 2.0], [-0.1, -0.3], 1.0, "at_or_below"),              # not positive at the base costs
    ([1.0, 2.0, 3.0], [0.3, 0.2, 0.1], 3.0, "at_or_above"),      # positive throughout
    ([1.0, 2.0], [math.nan, 0.1], 1.0, "at_or_below"),           # no trades at x1: no evidence
])
def test_break_even_is_where_expectancy_first_reaches_zero(ks, es, want, censored):
    k, c = break_even(ks, es)
    assert k == pytest.approx(want) and c == censored


def test_by_move_groups_neighbours_by_param_and_move():
    import pandas as pd

    nb = pd.DataFrame({"move.ema_fast": [1.0, 1.0, -2.0], "move.adx_th": [1.01, 0.99, 1.09],
                       "expectancy_r": [0.1, -0.3, 0.2], "profitable": [True, False, True]})
    cells = by_move(nb)
    assert cells["ema_fast"]["+1"] == {"n": 2, "mean_expectancy_r": pytest.approx(-0.1), "profitable_share": 0.5}
    assert cells["ema_fast"]["-2"]["n"] == 1
    assert cells["adx_th"]["x1.00"]["n"] == 2 and cells["adx_th"]["x1.08"]["n"] == 1


# -- bad input ----------------------------------------------------------------------------------

def test_not_a_run_unknown_scenario_and_ambiguous_strategy_are_refused(tmp_path, wf):
    with pytest.raises(StressInputError, match="not a folder"):
        read_plan(tmp_path / "nothing", Options())
    (tmp_path / "empty").mkdir()
    with pytest.raises(StressInputError, match="no config.yaml"):
        read_plan(tmp_path / "empty", Options())
    with pytest.raises(StressInputError, match="--scenario Z"):
        read_plan(wf, Options(scenario="Z"))
    with pytest.raises(StressInputError, match="--strategy S2"):
        read_plan(wf, Options(strategy_id="S2"))
    bt = tmp_path / "bt"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--strategies", f"{S1},S2_MR_ZSCORE_EMA_REGIME",
        "--out", str(bt), "--quiet", "--decisions", "none")
    with pytest.raises(StressInputError, match="say which with --strategy"):
        read_plan(bt, Options())
    plan = read_plan(bt, Options(strategy_id=S1))
    assert plan.kind == "backtest" and plan.legs[0].window is None
    assert plan.legs[0].point == {"adx_th": 25.0, "ema_fast": 20, "ema_slow": 50}


@pytest.mark.parametrize("opts, message", [
    (Options(multiples=(1.0, 0.0)), "--multiples"),
    (Options(neighbours=-1), "--neighbours"),
    (Options(jitter_frac=1.0), "--jitter-pct"),
    (Options(int_steps=0), "--int-steps"),
    (Options(workers=0), "--workers"),
])
def test_options_out_of_range_are_refused(opts, message):
    with pytest.raises(StressInputError, match=message):
        check_options(opts)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.update(splits=5), "splits is not a list"),
    (lambda d: d.update(scenarios=7), "scenarios is not a list or an object"),
    (lambda d: d["splits"][0].update({"p.ema_fast": None}), "split 1: params"),
    (lambda d: d["splits"][0].update({"p.ema_fast": "abc"}), "split 1: params"),
    (lambda d: d["splits"][0].update({"p.bogus": 3}), "bogus not in the search space"),
    (lambda d: d["splits"][0].pop("test_from"), "split 1: bad test window"),
])
def test_a_damaged_walkforward_json_is_one_clear_error(wf, tmp_path, damage, message):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(wf, bad, ignore=shutil.ignore_patterns("splits", "study.db", "*.html"))
    doc = json.loads((bad / "walkforward.json").read_text())
    damage(doc)
    (bad / "walkforward.json").write_text(json.dumps(doc))
    with pytest.raises(StressInputError, match=message):
        read_plan(bad, Options())


@pytest.mark.parametrize("window, message", [("2026", "window is not an object"),
                                             ({"from": "2026-03-01", "warmup_bars": "abc"}, "warmup_bars 'abc'"),
                                             ({"from": "2026-03-01", "warmup_bars": -5}, "warmup_bars -5")])
def test_a_damaged_backtest_window_is_one_clear_error(tmp_path, window, message):
    bt = tmp_path / "bt"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--out", str(bt), "--quiet", "--decisions", "none")
    doc = json.loads((bt / "report.json").read_text())
    doc["window"] = window
    (bt / "report.json").write_text(json.dumps(doc))
    with pytest.raises(StressInputError, match=message):
        read_plan(bt, Options())
