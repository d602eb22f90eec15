"""Deflated Sharpe Ratio and Probability of Backtest Overfitting (deskd.research.overfitting).

Published anchors (the figures are the papers', not this module's):

* Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio", section "A Numerical Example":
  an annualised Sharpe of 2.5 over T = 1250 daily returns (250 a year), N = 100 trials whose
  annualised Sharpe ratios have variance 1/2, skewness -3, kurtosis 10: SR0 = 0.1132 per day and
  DSR = 0.9004; with N = 46 trials DSR = 0.9505; with normal returns (skew 0, kurtosis 3) the
  strategy reaches DSR = 0.9505 at N = 88.
* Bailey & Lopez de Prado (2012), "The Sharpe Ratio Efficient Frontier", sec. 3: a monthly
  Sharpe of 0.458 (annualised 1.585) over 24 months has PSR(0) = 0.982 with normal returns and
  0.913 with skewness -2.448 and kurtosis 10.164.

The CSCV checks use an independent slow implementation (loops, itertools, statistics) instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskd.research.overfitting import (
    DsrResult,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)

DAYS_PER_YEAR = 250  # the DSR paper's convention in its example


def per_period_sharpe(columns: np.ndarray) -> np.ndarray:
    """Sharpe ratio of each column, mean / std (ddof=1), per period."""
    return columns.mean(axis=0) / columns.std(axis=0, ddof=1)


# ---------------------------------------------------------------- DSR: the papers' numbers


def test_psr_matches_the_sharpe_ratio_efficient_frontier_examples():
    # arrange: monthly Sharpe 1.585 / sqrt(12) = 0.458 over 24 months
    sr = 0.458
    # act / assert: the paper's PSR(0), to its 3 decimals
    assert round(probabilistic_sharpe_ratio(sr, 0.0, 24, 0.0, 3.0), 3) == 0.982
    assert round(probabilistic_sharpe_ratio(sr, 0.0, 24, -2.448, 10.164), 3) == 0.913


def test_dsr_reproduces_the_deflated_sharpe_papers_numerical_example():
    # arrange: per-day Sharpe and per-day variance of the trials' Sharpe ratios
    sr = 2.5 / math.sqrt(DAYS_PER_YEAR)
    variance = 0.5 / DAYS_PER_YEAR
    # act
    sr0 = expected_max_sharpe(100, variance)
    dsr = probabilistic_sharpe_ratio(sr, sr0, 1250, -3.0, 10.0)
    # assert: SR0 = 0.1132, DSR = 0.9004 < 0.95, so not a discovery at 95 %
    assert round(sr0, 4) == 0.1132
    assert round(dsr, 4) == 0.9004
    # had the search stopped at 46 trials, it would have passed
    dsr_46 = probabilistic_sharpe_ratio(sr, expected_max_sharpe(46, variance), 1250, -3.0, 10.0)
    assert round(dsr_46, 4) == 0.9505
    # with normal returns the same Sharpe survives up to 88 trials
    dsr_88_normal = probabilistic_sharpe_ratio(sr, expected_max_sharpe(88, variance), 1250, 0.0, 3.0)
    assert round(dsr_88_normal, 4) == 0.9505


def test_expected_max_sharpe_tracks_the_simulated_maximum_of_independent_trials():
    # arrange: Sharpe estimates of skill-less trials ~ N(0, V); the max of n of them, many times
    rng = np.random.default_rng(20140607)
    variance = 0.04
    for n_trials in (10, 100, 1000):
        draws = rng.normal(0.0, math.sqrt(variance), size=(4000, n_trials)).max(axis=1)
        # act
        sr0 = expected_max_sharpe(n_trials, variance)
        # assert: the paper's approximation is asymptotic; within 3 % from N = 10 up
        assert sr0 == pytest.approx(draws.mean(), rel=0.03)


# ---------------------------------------------------------------- DSR: properties


@settings(max_examples=200, deadline=None)
@given(
    sr=st.floats(-1.0, 1.0),
    n_obs=st.integers(2, 100_000),
    skew=st.floats(-5.0, 5.0),
    excess_over_bound=st.floats(0.1, 50.0),
)
def test_psr_is_one_half_when_the_sharpe_equals_the_benchmark(sr, n_obs, skew, excess_over_bound):
    # kurtosis >= skew^2 + 1 holds for every sample; the margin keeps the denominator > 0
    kurtosis = skew * skew + 1.0 + excess_over_bound
    assert probabilistic_sharpe_ratio(sr, sr, n_obs, skew, kurtosis) == 0.5


def test_dsr_falls_as_trials_grow_and_as_their_sharpes_disperse():
    sr, n_obs, skew, kurtosis = 0.1, 1000, -0.5, 5.0
    by_trials = [
        probabilistic_sharpe_ratio(sr, expected_max_sharpe(n, 0.001), n_obs, skew, kurtosis)
        for n in (1, 2, 5, 10, 100, 1000, 10_000)
    ]
    by_variance = [
        probabilistic_sharpe_ratio(sr, expected_max_sharpe(50, v), n_obs, skew, kurtosis)
        for v in (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
    ]
    assert all(a > b for a, b in zip(by_trials, by_trials[1:]))
    assert all(a > b for a, b in zip(by_variance, by_variance[1:]))


def test_one_trial_or_no_dispersion_sets_no_selection_benchmark():
    assert expected_max_sharpe(1, 0.5) == 0.0
    assert expected_max_sharpe(100, 0.0) == 0.0


# ---------------------------------------------------------------- DSR from returns


def test_best_of_pure_noise_looks_significant_alone_but_not_once_deflated():
    # arrange: 200 skill-less trials of 1250 daily returns; keep the best Sharpe
    rng = np.random.default_rng(11)
    returns = rng.normal(0.0, 0.01, size=(1250, 200))
    sharpes = per_period_sharpe(returns)
    best = int(np.argmax(sharpes))
    # act
    res = deflated_sharpe_ratio(returns[:, best], sharpes)
    # assert: "significant" against 0, not against the best of 200 lucky draws
    assert res.psr > 0.95
    assert res.dsr < 0.95
    assert res.sr == pytest.approx(sharpes[best], rel=1e-12)
    assert res.n_trials == 200 and res.n_obs == 1250


def test_a_skilled_series_keeps_its_significance_after_deflation():
    # arrange: the same 200 noise trials plus one with a drift of 0.15 std a day (2.4 a year)
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 0.01, size=(1250, 200))
    skilled = 0.01 * (rng.normal(0.0, 1.0, size=1250) + 0.15)
    returns = np.column_stack([noise, skilled])
    sharpes = per_period_sharpe(returns)
    # act
    res = deflated_sharpe_ratio(skilled, sharpes)
    # assert
    assert res.sr > res.sr0
    assert res.dsr > 0.95


def test_dsr_result_carries_the_moments_of_the_selected_returns():
    # arrange: Bernoulli(p = 1/4) returns, whose moments have closed forms:
    # skewness (1 - 2p) / sqrt(p q) and kurtosis (1 - 6 p q) / (p q) + 3, q = 1 - p
    p, q = 0.25, 0.75
    returns = np.array([0.0, 0.0, 0.0, 1.0] * 250)
    trial_sharpes = np.array([0.2, 0.5, -0.1, 0.3])
    # act
    res = deflated_sharpe_ratio(returns, trial_sharpes)
    # assert
    assert res.sr == pytest.approx(statistics.fmean(returns) / statistics.stdev(returns), rel=1e-12)
    assert res.skew == pytest.approx((1 - 2 * p) / math.sqrt(p * q), rel=1e-12)
    assert res.kurtosis == pytest.approx((1 - 6 * p * q) / (p * q) + 3, rel=1e-12)
    assert res.sharpe_variance == pytest.approx(statistics.variance(trial_sharpes.tolist()), rel=1e-12)
    assert res.sr0 == expected_max_sharpe(4, res.sharpe_variance)
    assert res.dsr == probabilistic_sharpe_ratio(res.sr, res.sr0, 1000, res.skew, res.kurtosis)
    assert res.psr == probabilistic_sharpe_ratio(res.sr, 0.0, 1000, res.skew, res.kurtosis)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.dsr = 1.0


def test_dsr_of_a_single_trial_is_its_psr_against_zero():
    returns = np.random.default_rng(3).normal(0.001, 0.01, size=500)
    res = deflated_sharpe_ratio(returns, [float(per_period_sharpe(returns[:, None])[0])])
    assert isinstance(res, DsrResult)
    assert (res.n_trials, res.sr0, res.sharpe_variance) == (1, 0.0, 0.0)
    assert res.dsr == res.psr


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda: probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0), "n_obs"),
        (lambda: probabilistic_sharpe_ratio(0.1, 0.0, 10.0, 0.0, 3.0), "n_obs"),  # type: ignore[arg-type]
        (lambda: probabilistic_sharpe_ratio(math.nan, 0.0, 10, 0.0, 3.0), "sr"),
        (lambda: probabilistic_sharpe_ratio(0.1, math.inf, 10, 0.0, 3.0), "sr_benchmark"),
        (lambda: probabilistic_sharpe_ratio(0.1, 0.0, 10, math.nan, 3.0), "skew"),
        (lambda: probabilistic_sharpe_ratio(0.1, 0.0, 10, 0.0, math.inf), "kurtosis"),
        # 1 - 3 * 1 + (1 - 1) / 4 < 0: impossible moments
        (lambda: probabilistic_sharpe_ratio(1.0, 0.0, 10, 3.0, 1.0), "square root"),
        (lambda: expected_max_sharpe(0, 0.1), "n_trials"),
        (lambda: expected_max_sharpe(10, -0.1), "sharpe_variance"),
        (lambda: expected_max_sharpe(10, math.nan), "sharpe_variance"),
        (lambda: deflated_sharpe_ratio([0.01], [0.1]), "returns"),
        (lambda: deflated_sharpe_ratio([0.01, math.nan, 0.02], [0.1]), "returns"),
        (lambda: deflated_sharpe_ratio([0.01, 0.01, 0.01], [0.1]), "returns"),
        (lambda: deflated_sharpe_ratio(np.zeros((3, 2)), [0.1]), "returns"),
        (lambda: deflated_sharpe_ratio([0.01, 0.02, 0.0], []), "trial_sharpes"),
        (lambda: deflated_sharpe_ratio([0.01, 0.02, 0.0], [0.1, math.inf]), "trial_sharpes"),
    ],
)
def test_bad_dsr_input_is_refused_naming_the_argument(call, names):
    with pytest.raises(ValueError, match=names):
        call()


# ---------------------------------------------------------------- PBO: slow reference


def _slow_metric(values: list[float], metric: str) -> float:
    mean = statistics.fmean(values)
    if metric == "mean":
        return mean
    sd = statistics.stdev(values)  # exact (fractions): 0 for a constant run
    return 0.0 if sd == 0 else mean / sd


def slow_cscv(perf: np.ndarray, n_splits: int, metric: str):
    """CSCV with plain loops, from the paper's steps: (logits, selected, is, oos) per combination."""
    n_rows, n_trials = perf.shape
    block_rows = n_rows // n_splits
    blocks = [perf[b * block_rows : (b + 1) * block_rows] for b in range(n_splits)]
    logits, selected, is_vals, oos_vals = [], [], [], []
    for is_blocks in itertools.combinations(range(n_splits), n_splits // 2):
        is_rows = [row for b in is_blocks for row in blocks[b]]
        oos_rows = [row for b in range(n_splits) if b not in is_blocks for row in blocks[b]]
        is_m = [_slow_metric([float(r[n]) for r in is_rows], metric) for n in range(n_trials)]
        oos_m = [_slow_metric([float(r[n]) for r in oos_rows], metric) for n in range(n_trials)]
        best = max(range(n_trials), key=lambda n: (is_m[n], -n))  # ties: lowest index
        v = oos_m[best]
        below = sum(1 for x in oos_m if x < v)
        tied = sum(1 for x in oos_m if x == v)
        rank = below + (tied + 1) / 2  # average of the tied ranks below+1 .. below+tied
        omega = rank / (n_trials + 1)
        logits.append(math.log(omega / (1 - omega)))
        selected.append(best)
        is_vals.append(is_m[best])
        oos_vals.append(v)
    return np.array(logits), np.array(selected), np.array(is_vals), np.array(oos_vals)


def _awkward_matrix() -> np.ndarray:
    """45 x 7: noise, a duplicate column (ties), a column flat at 0.1 over the first three blocks
    (constant halves: Sharpe 0; 0.1 has no exact binary form, so rounding is exercised), a
    constant column (Sharpe 0 everywhere: ties at 0)."""
    rng = np.random.default_rng(5)
    m = rng.normal(0.0, 1.0, size=(45, 7))
    m[:, 4] = m[:, 1]
    m[:21, 5] = 0.1
    m[:, 6] = 0.25
    return m


@pytest.mark.parametrize("metric", ["sharpe", "mean"])
def test_cscv_matches_a_slow_loop_implementation(metric):
    # arrange: 6 blocks of 7 rows (3 rows dropped) -> C(6, 3) = 20 combinations
    perf = _awkward_matrix()
    # act
    res = probability_of_backtest_overfitting(perf, n_splits=6, metric=metric)
    logits, selected, is_vals, oos_vals = slow_cscv(perf, 6, metric)
    # assert
    assert res.n_combinations == 20 and res.block_rows == 7 and res.dropped_rows == 3
    np.testing.assert_array_equal(res.selected_trial, selected)
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.is_metric, is_vals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.oos_metric, oos_vals, rtol=1e-9, atol=1e-12)
    assert res.pbo == pytest.approx(np.mean(logits <= 0))
    assert res.prob_loss == pytest.approx(np.mean(oos_vals < 0))
    assert res.degradation_slope == pytest.approx(np.polyfit(is_vals, oos_vals, 1)[0], rel=1e-9)


def test_cscv_on_random_matrices_matches_the_slow_implementation():
    rng = np.random.default_rng(8)
    for n_rows, n_trials, n_splits in ((40, 5, 4), (33, 8, 8), (24, 2, 2)):
        perf = rng.standard_t(3, size=(n_rows, n_trials)) * 0.01 + 0.001
        res = probability_of_backtest_overfitting(perf, n_splits=n_splits)
        logits, selected, _, oos_vals = slow_cscv(perf, n_splits, "sharpe")
        np.testing.assert_array_equal(res.selected_trial, selected)
        np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.oos_metric, oos_vals, rtol=1e-9)


def test_a_trial_flat_over_a_half_has_sharpe_zero_there_not_a_ratio_of_rounding_noise():
    # arrange: trial 0 earns 0.1 every period of the first half and 0.9 every period of the second
    # (a no-trade stretch looks the same: a constant run); trials 1..3 are noise
    rng = np.random.default_rng(0)
    perf = rng.normal(0.0, 1.0, size=(80, 4))
    perf[:40, 0] = 0.1
    perf[40:, 0] = 0.9
    # act: the first combination is in-sample = blocks 0..3 = the first half
    res = probability_of_backtest_overfitting(perf, n_splits=8)
    # assert: trial 0 is flat in both halves there, so noise trial 1 (best of the rest) is chosen
    noise_is = per_period_sharpe(perf[:40, 1:])
    assert res.selected_trial[0] == 1 + int(np.argmax(noise_is))
    assert res.is_metric[0] == pytest.approx(noise_is.max(), rel=1e-12)


def test_remainder_rows_are_dropped_at_the_end_and_counted():
    # arrange: 1003 rows, 16 blocks of 62 -> 11 rows dropped; the tail is garbage
    rng = np.random.default_rng(2)
    perf = rng.normal(0.0, 1.0, size=(1003, 6))
    other_tail = perf.copy()
    other_tail[-11:] = 1e6
    # act
    res = probability_of_backtest_overfitting(perf)
    res_tail = probability_of_backtest_overfitting(other_tail)
    res_cut = probability_of_backtest_overfitting(perf[:992])
    # assert
    assert (res.dropped_rows, res.block_rows, res.n_combinations) == (11, 62, 12_870)
    assert res_cut.dropped_rows == 0
    np.testing.assert_array_equal(res.logits, res_tail.logits)
    np.testing.assert_array_equal(res.logits, res_cut.logits)


# ---------------------------------------------------------------- PBO: behaviour


def test_pure_noise_trials_overfit_half_the_time_on_average():
    # arrange: many independent skill-less searches (an even N: logit <= 0 iff rank <= N / 2);
    # one search's PBO is very noisy (std ~0.2 here), their mean is not
    pbos = [
        probability_of_backtest_overfitting(
            np.random.default_rng(seed).normal(0.0, 1.0, size=(400, 20)), n_splits=8
        ).pbo
        for seed in range(100)
    ]
    # assert
    assert 0.42 < float(np.mean(pbos)) < 0.58


def test_one_trial_with_a_real_edge_among_noise_is_not_overfit():
    # arrange: 19 noise trials and trial 7 with a drift of 0.3 std a period
    rng = np.random.default_rng(4)
    perf = rng.normal(0.0, 1.0, size=(800, 20))
    perf[:, 7] += 0.3
    # act
    res = probability_of_backtest_overfitting(perf)
    # assert
    assert res.pbo < 0.05
    assert res.prob_loss == 0.0
    assert np.mean(res.selected_trial == 7) > 0.95


@pytest.mark.parametrize("metric", ["mean", "sharpe"])
def test_trials_that_give_back_in_one_half_what_they_made_in_the_other_are_overfit(metric):
    # arrange: demeaned noise: every trial has the same total, so whatever a trial makes in-sample
    # it loses out-of-sample; the in-sample best is the out-of-sample worst (exactly, for the mean)
    rng = np.random.default_rng(6)
    perf = rng.normal(0.0, 1.0, size=(640, 20))
    perf -= perf.mean(axis=0)
    # act
    res = probability_of_backtest_overfitting(perf, metric=metric)
    # assert
    if metric == "mean":
        assert res.pbo == 1.0
        np.testing.assert_allclose(res.logits, math.log(1 / 20))  # rank 1 of 20: omega = 1/21
        assert res.degradation_slope == pytest.approx(-1.0)
    else:
        assert res.pbo > 0.9
        assert res.degradation_slope < 0
    assert res.prob_loss > 0.9


def test_pbo_result_arrays_are_read_only():
    res = probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(40, 4)), n_splits=4)
    assert res.logits.shape == res.selected_trial.shape == res.is_metric.shape == (6,)
    with pytest.raises(ValueError):
        res.logits[0] = 0.0


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"perf": np.zeros((40, 1))}, "perf"),
        ({"perf": np.zeros(40)}, "perf"),
        ({"perf": np.zeros((10, 3)), "n_splits": 16}, "perf"),
        ({"perf": np.full((40, 3), np.nan)}, "perf"),
        ({"perf": np.zeros((3, 3)), "n_splits": 2}, "perf"),  # halves of 1 row: no Sharpe
        ({"perf": np.zeros((40, 3)), "n_splits": 7}, "n_splits"),
        ({"perf": np.zeros((40, 3)), "n_splits": 0}, "n_splits"),
        ({"perf": np.zeros((40, 3)), "n_splits": 4.0}, "n_splits"),
        ({"perf": np.zeros((40, 3)), "metric": "sortino"}, "metric"),
    ],
)
def test_bad_pbo_input_is_refused_naming_the_argument(kwargs, names):
    with pytest.raises(ValueError, match=names):
        probability_of_backtest_overfitting(**kwargs)
