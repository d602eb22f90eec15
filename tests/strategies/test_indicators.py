"""Every incremental indicator equals its vectorised oracle (to 1e-9) and never looks ahead."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskd.strategies.indicators import ADX, ATR, EMA, IndicatorBook, PriorRange, RollingSlope, RollingZScore
from tests.strategies import oracles
from tests.strategies.helpers import ohlc, values

RTOL, ATOL = 1e-9, 1e-12


def run_scalar(ind, xs):
    out = []
    for x in xs:
        ind.update(x)
        out.append(ind.value)
    return np.array(out)


def run_bars(ind, df, attr="value"):
    out = []
    for h, l, c in zip(df.high, df.low, df.close):
        ind.update_hlc(h, l, c)
        out.append(getattr(ind, attr))
    return np.array(out)


def assert_matches(ours, oracle):
    np.testing.assert_allclose(ours, np.asarray(oracle, dtype=float), rtol=RTOL, atol=ATOL, equal_nan=True)


@settings(max_examples=150, deadline=None)
@given(xs=values, n=st.integers(1, 40))
def test_ema_equals_oracle(xs, n):
    assert_matches(run_scalar(EMA(n), xs), oracles.ema(pd.Series(xs), n))


@settings(max_examples=150, deadline=None)
@given(df=ohlc(), n=st.integers(1, 30))
def test_atr_wilder_equals_oracle(df, n):
    assert_matches(run_bars(ATR(n), df), oracles.atr(df.high, df.low, df.close, n))


@settings(max_examples=150, deadline=None)
@given(df=ohlc(), n=st.integers(1, 20))
def test_adx_wilder_equals_oracle(df, n):
    assert_matches(run_bars(ADX(n), df), oracles.adx(df.high, df.low, df.close, n))


@settings(max_examples=150, deadline=None)
@given(xs=values, w=st.integers(2, 40))
def test_rolling_zscore_equals_oracle(xs, w):
    assert_matches(run_scalar(RollingZScore(w), xs), oracles.zscore(pd.Series(xs), w))


@settings(max_examples=150, deadline=None)
@given(xs=values, w=st.integers(2, 40))
def test_rolling_slope_equals_oracle(xs, w):
    assert_matches(run_scalar(RollingSlope(w), xs), oracles.slope(pd.Series(xs), w))


@settings(max_examples=150, deadline=None)
@given(df=ohlc(), w=st.integers(1, 30))
def test_prior_range_high_and_low_equal_oracle(df, w):
    assert_matches(run_bars(PriorRange(w), df, "high"), oracles.prior_high(df.high, w))
    assert_matches(run_bars(PriorRange(w), df, "low"), oracles.prior_low(df.low, w))


def test_zscore_and_slope_stay_exact_past_many_resyncs():
    # 64 windows between exact recomputations: run far past several of them
    rng = np.random.default_rng(7)
    xs = np.cumsum(rng.normal(0, 1e-4, 20_000)) + 1.1
    diffs = pd.Series(xs - pd.Series(xs).rolling(200, min_periods=1).mean().to_numpy())
    assert_matches(run_scalar(RollingZScore(30), diffs), oracles.zscore(diffs, 30))
    assert_matches(run_scalar(RollingSlope(20), xs), oracles.slope(pd.Series(xs), 20))


def test_zscore_of_a_flat_window_is_undefined_not_huge():
    z = RollingZScore(5)
    for x in [0.3, 0.9, -0.2, 0.4, 0.1] + [0.25] * 5:
        z.update(x)
    assert math.isnan(z.value)


# -- no lookahead -----------------------------------------------------------------------------
INDICATORS = [lambda: EMA(5), lambda: ATR(5), lambda: ADX(4), lambda: PriorRange(6)]


@settings(max_examples=80, deadline=None)
@given(df=ohlc(min_size=20, max_size=120), other=ohlc(min_size=120, max_size=120),
       cut=st.integers(0, 19), which=st.integers(0, len(INDICATORS) - 1))
def test_changing_bars_after_t_changes_nothing_at_or_before_t(df, other, cut, which):
    changed = df.copy()
    changed.iloc[cut + 1:] = other.iloc[: len(df) - cut - 1].to_numpy()
    attr = "high" if which == 3 else "value"
    a = run_bars(INDICATORS[which](), df, attr)[: cut + 1]
    b = run_bars(INDICATORS[which](), changed, attr)[: cut + 1]
    np.testing.assert_array_equal(a, b)


@settings(max_examples=80, deadline=None)
@given(xs=values.filter(lambda v: len(v) > 10), tail=values, cut=st.integers(0, 10))
def test_rolling_stats_do_not_look_ahead(xs, tail, cut):
    ys = xs[: cut + 1] + tail
    for make in (lambda: RollingZScore(4), lambda: RollingSlope(4)):
        np.testing.assert_array_equal(run_scalar(make(), xs)[: cut + 1], run_scalar(make(), ys)[: cut + 1])


def test_book_shares_one_indicator_between_users_and_updates_it_once_per_bar():
    book = IndicatorBook()
    assert book.atr(14) is book.atr(14)
    assert book.ema(200) is not book.ema(50)
    assert len(book) == 3
    for h, l, c in [(1.2, 1.0, 1.1)] * 3:
        book.update(h, l, c)
    assert book.atr(14).prev_close == 1.1


@pytest.mark.parametrize("cls", [EMA, ATR, ADX, RollingZScore, RollingSlope, PriorRange])
def test_bad_period_is_rejected(cls):
    with pytest.raises(ValueError):
        cls(0)
