"""The tuner: search spaces, the robust score and its ranking, and tunes on the bundled sample
(stage 2 is the event path, a stopped tune resumes, a Dask cluster gives the local results)."""

from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from deskd.adapters.replay import Window
from deskd.configs.loader import load_config
from deskd.configs.models import DeskConfig, Dimension, TuneConfig
from deskd.research.backtest import run_scenario
from deskd.research.tuning.objective import rank_order, robust_score, segment_edges
from deskd.research.tuning.space import InvalidPoint, SearchSpace
from deskd.research.tuning.tune import TuneOptions, tune
from tests.conftest import EXAMPLE

S1 = "S1_TREND_EMA_ATR_ADX"


def s1_config(**tune_fields) -> DeskConfig:
    """The sample config, S1 alone on EURUSD, with ``tune`` settings."""
    d = load_config(EXAMPLE).model_dump(mode="json", by_alias=True)
    d["universe"]["symbols"] = ["EURUSD"]
    d["data"]["files"] = {"EURUSD": d["data"]["files"]["EURUSD"]}
    d["costs"]["spread_pips"] = {"EURUSD": d["costs"]["spread_pips"]["EURUSD"]}
    d["strategies"] = {S1: d["strategies"][S1]}
    d["risk"]["priority"] = []
    d["tune"] = {**d["tune"], **tune_fields}
    return DeskConfig.model_validate(d, context={"config_dir": EXAMPLE.parent})


# -- dimensions and spaces ------------------------------------------------------------------

def test_dimensions_enumerate_ints_floats_and_choices():
    assert Dimension(low=10, high=30, step=10).values() == [10, 20, 30]
    assert Dimension(low=0.1, high=0.5, step=0.1).values() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert Dimension(low=1.0, high=2.0, step=0.3).values() == [1.0, 1.3, 1.6, 1.9]
    assert Dimension(choices=[3, "x"]).values() == [3, "x"]
    assert Dimension(low=1, high=3, step=1).is_int and not Dimension(low=1, high=3.0, step=1).is_int
    with pytest.raises(ValueError, match="needs a step"):
        Dimension(low=0.5, high=1.5).values()
    for bad, msg in (({"low": 5, "high": 1}, "above high"), ({"low": 1, "high": 2, "choices": [1]}, "not both"),
                     ({"low": 1}, "needs low and high"), ({"low": 0, "high": 10**9, "step": 1}, "widen the step"),
                     ({"low": 1, "high": 2, "step": 0}, "greater than 0")):
        with pytest.raises(ValidationError, match=msg):
            Dimension(**bad)


def test_the_space_is_the_class_ranges_updated_by_the_config_and_invalid_points_are_refused():
    space = SearchSpace.of(s1_config(space={S1: {"ema_fast": {"low": 10, "high": 20, "step": 10},
                                                "stops.k_sl": {"choices": [1.5, 2.5]}}}), S1)
    assert list(space.dims) == ["adx_th", "ema_fast", "ema_slow", "stops.k_sl"]
    assert space.size == 5 * 2 * 10 * 2
    assert space.dims["ema_slow"].values()[:2] == [30, 40]  # the class's own range kept
    params, stops = space.resolve({"ema_fast": 10, "ema_slow": 30, "adx_th": 20.0, "stops.k_sl": 2.5})
    assert (params["ema_fast"], params["ema_slow"], params["adx_th"], stops["k_sl"]) == (10, 30, 20.0, 2.5)
    assert params["atr_period"] == 14  # untouched params keep the config's values
    with pytest.raises(InvalidPoint, match="ema_fast must be shorter than ema_slow"):
        space.resolve({"ema_fast": 20, "ema_slow": 20})
    with pytest.raises(InvalidPoint, match="k_sl"):
        space.resolve({"stops.k_sl": -1.0})
    cfg = space.config_for({"ema_fast": 10, "ema_slow": 30}, EXAMPLE.parent)
    assert list(cfg.strategies.enabled()) == [S1]
    assert cfg.strategies[S1].validated_params.ema_slow == 30


def test_a_tune_space_naming_an_unknown_param_or_scenario_is_a_config_error():
    with pytest.raises(ValidationError, match=r"tune.space.S1_TREND_EMA_ATR_ADX.emafast: not a param"):
        s1_config(space={S1: {"emafast": {"low": 1, "high": 2}}})
    with pytest.raises(ValidationError, match="tune.space.S9: not a strategy id"):
        s1_config(space={"S9": {"x": {"low": 1, "high": 2}}})
    with pytest.raises(ValidationError, match="tune.stage2_scenarios: unknown scenario 'Z'"):
        s1_config(stage2_scenarios=["A", "Z"])


# -- the score ------------------------------------------------------------------------------

def test_the_robust_score_is_mean_minus_std_of_the_splits_minus_the_drawdown_penalty():
    edges = segment_edges(0, 400, 4)
    assert edges.tolist() == [0, 100, 200, 300, 400]
    rng = np.random.default_rng(7)
    ts = rng.integers(0, 400, 200)
    r = rng.normal(0.1, 1.0, 200)
    pnl = r * 100.0
    tune_cfg = TuneConfig(min_trades_per_split=5, dd_penalty=2.0)
    sc = robust_score(ts, r, pnl, 0.25, edges, tune_cfg)
    per = [statistics.fmean(r[(ts >= lo) & (ts < hi)]) for lo, hi in zip(edges[:-1], edges[1:])]
    assert sc.per_split == pytest.approx(per)
    assert sc.score == pytest.approx(statistics.fmean(per) - statistics.stdev(per) - 2.0 * 0.25)
    assert sum(sc.trades_per_split) == 200
    # a thin split makes the point ineligible, and says which
    thin = robust_score(ts[ts >= 100], r[ts >= 100], pnl[ts >= 100], 0.0, edges, tune_cfg)
    assert math.isnan(thin.score) and "split(s) 1" in thin.reason
    # profit factor is capped: a split without losses is the cap, never infinity
    pf = robust_score(np.array([10, 110, 210, 310]), np.ones(4), np.ones(4), 0.0, edges,
                      TuneConfig(objective="profit_factor", min_trades_per_split=1, pf_cap=3.0))
    assert pf.per_split == [3.0] * 4 and pf.score == 3.0


def test_ranking_puts_the_best_first_ineligible_last_and_ties_by_trial():
    scores = [0.1, math.nan, 0.3, -math.inf, 0.3, -0.2]
    trials = [1, 2, 3, 4, 5, 6]
    assert rank_order(scores, trials) == [2, 4, 0, 5, 1, 3]  # NaN and -inf have no rank among scores


# -- tunes on the sample ---------------------------------------------------------------------

SMALL = {S1: {"ema_fast": {"low": 10, "high": 30, "step": 10}, "ema_slow": {"choices": [30, 60]},
              "adx_th": {"choices": [20.0]}}}  # 6 points, (30, 30) invalid


def small_tune(tmp_path, name="t", **kw) -> tuple:
    cfg = s1_config(space=SMALL, top_k=3, min_trades_per_split=3, stage2_scenarios=["A", "B", "C"])
    opts = TuneOptions(strategy_id=S1, out_dir=tmp_path / name, storage=f"sqlite:///{tmp_path / name}.db",
                       config_dir=EXAMPLE.parent, **kw)
    return cfg, opts


def test_a_grid_tune_scores_every_valid_point_and_its_stage_2_is_the_event_path(tmp_path):
    cfg, opts = small_tune(tmp_path)
    res = tune(cfg, opts, quiet=True)
    assert res.skipped_invalid == 1 and len(res.stage1) == 5
    trials = pd.read_csv(tmp_path / "t" / "trials.csv")
    scores = trials["score"].to_numpy()
    finite = scores[np.isfinite(scores)]
    assert (np.diff(finite) <= 0).all() and np.isfinite(scores[: len(finite)]).all()  # best first, NaN last
    assert (trials["scenario"] == "B").all()
    top = pd.read_csv(tmp_path / "t" / "top_k.csv")
    assert len(top) == min(3, len(finite))
    worst = top[["score_A", "score_B", "score_C"]].min(axis=1)
    assert np.allclose(top["worst_score"], worst) and (np.diff(top["worst_score"]) <= 0).all()
    # the winner's scenario-C result is what a plain event-path backtest of that point gives
    best = top.iloc[0]
    point = {k[2:]: (int(v) if k[2:] != "adx_th" else float(v)) for k, v in best.items() if k.startswith("p.")}
    run = run_scenario(SearchSpace.of(cfg, S1).config_for(point, EXAMPLE.parent), "C", None)
    assert best["trades_C"] == len(run.trades)
    assert best["net_usd_C"] == pytest.approx(sum(t.pnl_usd for t in run.trades), abs=1e-6)
    meta = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert meta["space_size"] == 6 and meta["invalid_points_skipped"] == 1
    assert meta["objective"]["units"].startswith("R per trade")
    assert len(meta["data"]["EURUSD"]["sha256"]) == 64
    of = meta["overfitting"]
    assert of["trials"] == sum(r.status == "ok" for r in res.stage1) and 0 <= of["dsr"]["value"] <= 1
    assert 0 <= of["pbo"]["value"] <= 1 and of["pbo"]["combinations"] > 1
    eq = pd.read_csv(tmp_path / "t" / "equity_top_k.csv")
    assert set(eq["scenario"]) == {"A", "B", "C"} and set(eq["rank"]) == set(top["rank"])


def test_a_stopped_tune_resumes_where_it_stopped(tmp_path):
    cfg, opts = small_tune(tmp_path, trials=2)
    first = tune(cfg, opts, quiet=True)
    assert len(first.stage1) == 2
    opts.trials = None
    second = tune(cfg, opts, quiet=True)
    assert len(second.stage1) == 5
    stage1_runs = second.ran_now - sum(1 for r in second.stage2 if r.trial not in {t.trial for t in first.stage2})
    assert stage1_runs <= 3 + 3 * 3  # the first two points were not run again
    again = {json.dumps(r.point, sort_keys=True): r.score for r in second.stage1}
    for r in first.stage1:
        assert again[json.dumps(r.point, sort_keys=True)] == r.score
    third = tune(cfg, opts, quiet=True)
    assert third.ran_now == 0  # nothing left: outputs rewritten from the study


def test_a_window_scores_only_trades_entered_inside_it(tmp_path):
    start = int(datetime(2026, 2, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
    cfg, opts = small_tune(tmp_path, start_ts=start, end_ts=end)
    cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"min_trades_per_split": 1, "top_k": 1})})
    res = tune(cfg, opts, quiet=True)
    edges = res.meta["split_edges"]
    assert edges[0] == "2026-02-01T00:00:00Z" and edges[-1] == "2026-04-01T00:00:00Z"
    best = res.stage2[0]
    run = run_scenario(SearchSpace.of(cfg, S1).config_for(best.point, EXAMPLE.parent), best.scenario, None,
                       window=Window(start, end, warmup_bars=None))
    assert best.trades == len(run.trades) and all(start <= t.fill_ts < end for t in run.trades)


def test_tpe_with_a_seed_asks_the_same_points(tmp_path):
    cfg, opts = small_tune(tmp_path, "a", sampler="tpe", trials=4)
    a = tune(cfg, opts, quiet=True)
    cfg, opts = small_tune(tmp_path, "b", sampler="tpe", trials=4)
    b = tune(cfg, opts, quiet=True)
    assert [r.point for r in a.stage1] == [r.point for r in b.stage1]
    import optuna

    study = optuna.load_study(study_name=a.meta["study"]["name"], storage=opts.storage.replace("/b.db", "/a.db"))
    assert len(study.trials) >= 4  # four counted (a repeated point is told its score, not run), invalid ones besides
    assert len({json.dumps(r.point, sort_keys=True) for r in a.stage1}) == len(a.stage1)


def test_a_dask_cluster_gives_the_local_pool_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg, opts = small_tune(tmp_path, "local", workers=1)
    local = tune(cfg, opts, quiet=True)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        cfg, opts = small_tune(tmp_path, "dask", cluster=cluster.scheduler_address)
        remote = tune(cfg, opts, quiet=True)
    cols = ["score", "trades", "net_usd", "max_dd_frac", "p.ema_fast", "p.ema_slow"]
    for name in ("trials.csv", "top_k.csv"):
        a = pd.read_csv(tmp_path / "local" / name)
        b = pd.read_csv(tmp_path / "dask" / name)
        keep = [c for c in cols if c in a] + [c for c in a if c.startswith("score_")]
        pd.testing.assert_frame_equal(a[keep], b[keep])
    assert len(local.stage2) == len(remote.stage2)


def test_stage_1_on_the_fast_path_scores_what_stage_2_measures_on_the_event_path(tmp_path, monkeypatch):
    """S1 has a kernel: stage 1 screens on it, stage 2 re-runs the top k on the real desk; under
    the stage-1 scenario both must give the same score, trades and money (the fast path's
    contract, seen through the tuner). With DESKD_FAST_PATH=0 stage 1 is the event path."""
    cfg, opts = small_tune(tmp_path, "fast")
    res = tune(cfg, opts, quiet=True)
    assert {r.path for r in res.stage1} == {"fast"} and {r.path for r in res.stage2} == {"event"}
    s1 = {json.dumps(r.point, sort_keys=True): r for r in res.stage1}
    twins = [(s1[json.dumps(r.point, sort_keys=True)], r) for r in res.stage2 if r.scenario == "B"]
    assert len(twins) == len(res.top) > 0
    for fast, event in twins:
        assert fast.trades == event.trades
        assert fast.net_usd == pytest.approx(event.net_usd, abs=1e-6)
        assert fast.score == pytest.approx(event.score, abs=1e-9)
        assert fast.max_dd_frac == pytest.approx(event.max_dd_frac, abs=1e-12)
        assert [ts for ts, _ in fast.equity] == [ts for ts, _ in event.equity]
        assert [e for _, e in fast.equity] == pytest.approx([e for _, e in event.equity], abs=1e-6)
    monkeypatch.setenv("DESKD_FAST_PATH", "0")
    cfg, opts = small_tune(tmp_path, "event")
    slow = tune(cfg, opts, quiet=True)
    assert {r.path for r in slow.stage1} == {"event"}
    assert sorted((json.dumps(r.point, sort_keys=True), round(r.score, 9)) for r in slow.stage1 if r.status == "ok") == \
        sorted((json.dumps(r.point, sort_keys=True), round(r.score, 9)) for r in res.stage1 if r.status == "ok")
