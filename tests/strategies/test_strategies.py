"""S1, S2 and S3 signal exactly where their rules, computed vectorised, say they should."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deskd.configs.models import StopsConfig
from deskd.core.events import LONG, SHORT, BarClosed
from deskd.strategies.api import StrategyContext
from deskd.strategies.breakout import BreakoutAtrCompression as S3
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.mean_reversion import MeanReversionZScore as S2
from deskd.strategies.regime import RegimeTagger
from deskd.strategies.trend import TrendEmaAtrAdx as S1
from tests.strategies import oracles

SAMPLE = Path(__file__).resolve().parents[2] / "deskd" / "data" / "sample"


@pytest.fixture(scope="module")
def bars():
    with gzip.open(SAMPLE / "EURUSD_M15.csv.gz", "rt") as fh:
        return pd.read_csv(fh).iloc[:4000].reset_index(drop=True)


def make(cls, params=None, stops=None, pip=0.0001):
    """``cls`` on EURUSD with ``params`` (a dict) and ``stops`` (default: the class's), and its book."""
    book = IndicatorBook()
    regime = RegimeTagger(book, 14, 100, -0.5, 0.5, 2.5)
    ctx = StrategyContext("X", "EURUSD", pip, book, regime, stops or cls.default_stops)
    return cls(ctx, cls.Params.model_validate(params or {})), book


def run(cls, params, df):
    strat, book = make(cls, params)
    sides, sls = [], []
    for i, r in enumerate(df.itertuples()):
        book.update(r.high, r.low, r.close)
        s = strat.on_bar(BarClosed("EURUSD", 900, i * 900, r.open, r.high, r.low, r.close, 0.0))
        sides.append(0 if s is None else s.side)
        sls.append(np.nan if s is None else s.sl_pips)
    return np.array(sides), np.array(sls)


def test_s1_is_long_while_fast_above_slow_and_adx_above_threshold(bars):
    sides, sls = run(S1, {}, bars)
    h, l, c = bars.high, bars.low, bars.close
    f, s, a = oracles.ema(c, 20), oracles.ema(c, 50), oracles.adx(h, l, c, 14)
    atr = oracles.atr(h, l, c, 14)
    on = (a > 25) & atr.notna()
    want = np.where(on & (f > s), LONG, np.where(on & (f < s), SHORT, 0))
    np.testing.assert_array_equal(sides, want)
    assert (sides != 0).sum() > 100 and (sides == LONG).any() and (sides == SHORT).any()
    exp_sl = np.maximum(2.0 * atr / 0.0001, 10.0)
    np.testing.assert_allclose(sls[sides != 0], exp_sl[sides != 0], rtol=1e-9)


def test_s2_fades_z_extremes_only_in_quiet_flat_markets(bars):
    sides, _ = run(S2, {"adx_max": 30, "slope_th_pips_per_bar": 1.0, "z_entry": 1.5}, bars)
    h, l, c = bars.high, bars.low, bars.close
    base = oracles.ema(c, 200)
    slope = oracles.slope(base.dropna(), 20).reindex(c.index)
    z = oracles.zscore((c - base).dropna(), 30).reindex(c.index)
    gate = (oracles.adx(h, l, c, 14) < 30) & (slope.abs() < 1.0 * 0.0001)
    want = np.where(gate & (z >= 1.5), SHORT, np.where(gate & (z <= -1.5), LONG, 0))
    np.testing.assert_array_equal(sides, want)
    assert (sides != 0).sum() > 5


def test_s3_breaks_out_after_compression_with_the_trend(bars):
    sides, _ = run(S3, {}, bars)
    h, l, c = bars.high, bars.low, bars.close
    atr = oracles.atr(h, l, c, 14)
    cz = oracles.zscore((atr / c * 100).dropna(), 50).reindex(c.index)
    e = oracles.ema(c, 200)
    comp = cz < -0.5
    want = np.where(comp & (c > oracles.prior_high(h, 20)) & (c > e), LONG,
                    np.where(comp & (c < oracles.prior_low(l, 20)) & (c < e), SHORT, 0))
    np.testing.assert_array_equal(sides, want)
    assert (sides != 0).sum() > 5


def test_no_signal_before_every_input_is_defined(bars):
    sides, _ = run(S3, {}, bars)
    # EMA(200) is defined from bar 199 on
    assert not sides[:199].any()
    sides, _ = run(S1, {}, bars)
    assert not sides[:49].any()  # EMA(50)


def test_take_profit_is_absent_when_k_tp_is_unset(bars):
    strat, book = make(S1, stops=StopsConfig(k_sl=1.0, min_sl_pips=5, k_tp=None))
    got = []
    for i, r in enumerate(bars.itertuples()):
        book.update(r.high, r.low, r.close)
        s = strat.on_bar(BarClosed("EURUSD", 900, i * 900, r.open, r.high, r.low, r.close, 0.0))
        if s is not None:
            got.append(s)
    assert got and all(s.tp_pips is None for s in got)
    assert all(s.sl_pips >= 5 for s in got)


def test_regime_tags_spike_when_true_range_beats_threshold_times_prior_atr():
    book = IndicatorBook()
    regime = RegimeTagger(book, 3, 5, -0.5, 0.5, 2.0)
    for _ in range(6):
        book.update(1.1010, 1.1000, 1.1005)
    assert regime.tag.endswith("SPIKE=0")
    book.update(1.1100, 1.1000, 1.1090)  # TR 0.0100 vs ATR 0.0010
    assert regime.tag.endswith("SPIKE=1")
