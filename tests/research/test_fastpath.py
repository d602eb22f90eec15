"""The fast path's contract: for S1, S2 or S3 alone on one symbol its trades equal the event path's,
trade for trade (fill and exit time, side, units, entry and exit price to 1e-9, exit reason,
pnl_usd to 1e-6), under scenarios A, B and C, at several parameter points, on the bundled
sample (EURUSD and USDJPY, whose P&L converts at 1/price) and on the three 2017-2019 M1 files,
over whole files and over windows.

The reference is the event path itself: the real Desk with the paper broker
(:func:`deskd.research.backtest.run_scenario`, or ``paper_desk`` + ``replay``/``replay_window``
as it calls them). No expected value here comes from the fast path's code.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import MergedChunk, ReplayFeed, Window, replay, replay_feed, replay_window
from deskd.configs.loader import load_config
from deskd.configs.models import DeskConfig
from deskd.core.events import SIDE_NAME, Trade
from deskd.research.backtest import run_scenario, warmup_bars_of
from deskd.research.fastpath import (
    FastRun,
    event_config,
    has_kernel,
    load_bars,
    resolve_point,
    screen,
)
from deskd.research.fastpath.kernels import (
    atr_wilder,
    ema_slope,
    fsum,
    prior_max,
    rolling_zscore,
    round_decimal,
)
from deskd.research.outputs import DecisionCounter
from deskd.strategies.breakout import BreakoutAtrCompression
from deskd.strategies.indicators import ATR, EMA, AtrPctZScore, PriorRange, RollingSlope, RollingZScore
from deskd.strategies.mean_reversion import MeanReversionZScore
from deskd.strategies.trend import TrendEmaAtrAdx
from tests.conftest import EXAMPLE, ROOT

S1 = "S1_TREND_EMA_ATR_ADX"
M1_DIR = ROOT.parent / "shared" / "data" / "fx_m1"
M1_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
SCENARIOS = ("A", "B", "C")

S2 = "S2_MR_ZSCORE_EMA_REGIME"
S3 = "S3_BREAKOUT_ATR_REGIME_EMA200"
#: per strategy, non-default values for every param and every stop; the last point of each
#: has no target and a short time stop (TIME exits), the middle one tight stops (many SL/TP)
POINTS: dict[str, dict[str, dict[str, Any]]] = {
    S1: {
        "defaults": {},
        "fast_tight": {"params": {"ema_fast": 8, "ema_slow": 34, "adx_period": 10, "adx_th": 20.0,
                                  "atr_period": 21},
                       "stops": {"k_sl": 1.5, "min_sl_pips": 6.0, "k_tp": 2.5, "min_tp_pips": 10.0}},
        "slow_no_tp": {"params": {"ema_fast": 30, "ema_slow": 90, "adx_period": 20, "adx_th": 30.0,
                                  "atr_period": 10},
                       "stops": {"k_sl": 3.0, "min_sl_pips": 15.0, "k_tp": None}, "max_hold_bars": 40},
    },
    S2: {
        "defaults": {},
        "fast_tight": {"params": {"ema_regime": 100, "slope_window": 10, "slope_th_pips_per_bar": 1.0,
                                  "z_window": 20, "z_entry": 1.5, "adx_period": 10, "adx_max": 30.0,
                                  "atr_period": 20},
                       "stops": {"k_sl": 2.0, "min_sl_pips": 5.0, "k_tp": 1.0, "min_tp_pips": 5.0}},
        "slow_no_tp": {"params": {"ema_regime": 300, "slope_window": 30, "slope_th_pips_per_bar": 0.3,
                                  "z_window": 50, "z_entry": 2.5, "adx_period": 20, "adx_max": 25.0,
                                  "atr_period": 10},
                       "stops": {"k_sl": 1.0, "min_sl_pips": 12.0, "k_tp": None}, "max_hold_bars": 30},
    },
    S3: {
        "defaults": {},
        "fast_tight": {"params": {"atr_period": 10, "compression_window": 30, "compression_z_low": -0.25,
                                  "breakout_window": 10, "ema_trend": 100},
                       "stops": {"k_sl": 1.0, "min_sl_pips": 6.0, "k_tp": 2.0, "min_tp_pips": 8.0}},
        "slow_no_tp": {"params": {"atr_period": 20, "compression_window": 90, "compression_z_low": 0.0,
                                  "breakout_window": 40, "ema_trend": 300},
                       "stops": {"k_sl": 2.0, "min_sl_pips": 12.0, "k_tp": None}, "max_hold_bars": 30},
    },
}
CASES = [(sid, point) for sid in POINTS for point in POINTS[sid]]
#: the example's risk, and one that halts often: day, week and drawdown-from-peak halts
RISKS = {
    "example": {},
    "tight": {"r_base": 0.01, "dd_day_limit_frac": 0.015, "dd_week_limit_frac": 0.03,
              "max_drawdown_frac": 0.12, "max_hold_bars": 24},
}


# -- the comparison ------------------------------------------------------------------------------

def _event_frame(trades: list[Trade]) -> pd.DataFrame:
    cols = ["fill_ts", "exit_ts", "side", "units", "entry_price", "exit_price", "exit_reason", "pnl_usd",
            "signal_ts", "sl_price", "tp_price", "risk_usd", "r_multiple", "hold_bars", "mae_pips", "mfe_pips",
            "gross_pips", "cost_pips", "pnl_pips", "regime", "client_order_id", "entry_spread_pips",
            "entry_slippage_pips", "exit_spread_pips", "exit_slippage_pips", "entry_spike", "exit_spike"]
    rows = []
    for t in sorted(trades, key=lambda t: t.trade_id):
        r = {c: getattr(t, c) for c in cols}
        r["reason_codes"] = t.why
        r["side"] = SIDE_NAME[t.side]
        r["exit_reason"] = str(t.exit_reason)
        r["tp_price"] = math.nan if t.tp_price is None else t.tp_price
        rows.append(r)
    return pd.DataFrame(rows, columns=[*cols, "reason_codes"])


def assert_same_trades(fast: FastRun, event_trades: list[Trade], final_equity_usd: float,
                       max_dd: tuple[float, float], where: str) -> None:
    """The contract: same count; per trade the same times, side, units, exit reason, prices to
    1e-9, pnl_usd to 1e-6 (and the rest of trades.csv's record: bracket, risk, R, hold,
    MAE/MFE, regime, reason code, client order id); final equity and drawdown to 1e-6. The
    message names the first differing trade."""
    got = fast.trades
    want = _event_frame(event_trades)
    assert len(got) == len(want), f"{where}: {len(got)} fast-path trades, {len(want)} event-path trades"
    exact = ["fill_ts", "exit_ts", "side", "units", "exit_reason", "signal_ts", "hold_bars", "regime",
             "reason_codes", "client_order_id", "entry_spike", "exit_spike"]
    close = {"entry_price": 1e-9, "exit_price": 1e-9, "sl_price": 1e-9, "tp_price": 1e-9, "pnl_usd": 1e-6,
             "risk_usd": 1e-6, "r_multiple": 1e-9, "mae_pips": 1e-6, "mfe_pips": 1e-6, "gross_pips": 1e-6,
             "cost_pips": 1e-6, "pnl_pips": 1e-6, "entry_spread_pips": 1e-9, "entry_slippage_pips": 1e-9,
             "exit_spread_pips": 1e-9, "exit_slippage_pips": 1e-9}
    bad = np.zeros(len(want), dtype=bool)
    for c in exact:
        bad |= got[c].to_numpy() != want[c].to_numpy()
    for c, tol in close.items():
        g, w = got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float)
        bad |= ~((np.abs(g - w) <= tol) | (np.isnan(g) & np.isnan(w)))
    if bad.any():
        i = int(np.argmax(bad))
        cols = exact + list(close)
        diff = {c: (got[c].iloc[i], want[c].iloc[i]) for c in cols if not _same(got[c].iloc[i], want[c].iloc[i])}
        pytest.fail(f"{where}: trade {i + 1} of {len(want)} differs (fast, event): {diff}; "
                    f"{int(bad.sum())} trades differ")
    assert fast.final_equity_usd == pytest.approx(final_equity_usd, abs=1e-6), where
    assert fast.max_dd_usd == pytest.approx(max_dd[0], abs=1e-6), where
    assert fast.max_dd_frac == pytest.approx(max_dd[1], abs=1e-12), where


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9
    return bool(a == b)


# -- the bundled sample -------------------------------------------------------------------------

def _config(risk: str, sid: str, symbol: str, point: str) -> DeskConfig:
    d = load_config(EXAMPLE).model_dump(mode="json")
    d["risk"].update(RISKS[risk])
    return event_config(DeskConfig.model_validate(d), sid, symbol, POINTS[sid][point])


@cache
def _sample_event(risk: str, sid: str, symbol: str, scenario: str, point: str):
    return run_scenario(_config(risk, sid, symbol, point), scenario, None)


@cache
def _sample_bars(symbol: str):
    return load_bars(load_config(EXAMPLE), symbol)


@pytest.mark.parametrize("risk", RISKS)
@pytest.mark.parametrize("sid, point", CASES)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY"])
def test_trades_equal_the_event_path_on_the_sample(symbol, scenario, sid, point, risk):
    cfg = _config(risk, sid, symbol, point)
    ev = _sample_event(risk, sid, symbol, scenario, point)
    (fast,) = screen(cfg, sid, scenario, [POINTS[sid][point]], _sample_bars(symbol))
    assert fast.bars == ev.bars
    assert_same_trades(fast, ev.trades, ev.final_equity_usd, ev.max_dd, f"{sid} {symbol} {scenario} {point} {risk}")
    assert fast.min_equity_usd == pytest.approx(ev.min_equity_usd, abs=1e-6)
    day = [(ts, eq) for ts, kind, eq, _, _ in ev.equity_rows if kind in ("DAY", "END")]
    assert list(fast.mark_ts) == [ts for ts, _ in day]
    np.testing.assert_allclose(fast.mark_equity_usd, [eq for _, eq in day], rtol=0, atol=1e-6)


@pytest.mark.parametrize("sid", POINTS)
def test_the_sample_cases_exercise_every_exit_and_every_halt(sid):
    """The contract above is only as good as what its runs go through: stops, targets, time
    stops, day, week and drawdown-from-peak halts, on both symbols (the end-of-data close is
    exercised by the window tests)."""
    exits: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    for symbol in ("EURUSD", "USDJPY"):
        for point in POINTS[sid]:
            for risk in RISKS:
                ev = _sample_event(risk, sid, symbol, "C", point)
                exits.update(str(t.exit_reason) for t in ev.trades)
                skips.update(ev.decisions)
    assert {"SL", "TP", "TIME"} <= set(exits), exits
    assert {"guard:day_dd_halt", "guard:week_dd_halt", "guard:max_dd_halt", "position_open"} <= set(skips), skips


# -- windows --------------------------------------------------------------------------------------

def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


WINDOWS = {
    "strategy_warmup": Window(_utc("2026-02-10T09:00"), _utc("2026-03-20T15:37"), None),
    "no_warmup": Window(_utc("2026-02-10T09:00"), _utc("2026-03-20T15:37"), 0),
    "short_warmup": Window(_utc("2026-02-02T00:00"), _utc("2026-02-27T00:00"), 40),
    "open_start": Window(None, _utc("2026-03-01T00:00"), None),
    "open_end": Window(_utc("2026-04-01T00:00"), None, None),
}


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("sid, point", [c for c in CASES if c[1] != "slow_no_tp"])
@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY"])
def test_a_window_run_equals_the_event_path_window(symbol, sid, point, window):
    """Warm-up bars before --from feed the indicators without trading; the end-of-data close
    comes at the last bar before --to (EOD)."""
    cfg = _config("example", sid, symbol, point)
    ev = run_scenario(cfg, "B", None, window=WINDOWS[window])
    (fast,) = screen(cfg, sid, "B", [POINTS[sid][point]], _sample_bars(symbol), window=WINDOWS[window])
    assert fast.bars == ev.bars > 0
    assert_same_trades(fast, ev.trades, ev.final_equity_usd, ev.max_dd, f"{sid} {symbol} {point} {window}")


@pytest.mark.parametrize("sid", POINTS)
@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY"])
def test_a_window_ending_inside_a_trade_closes_it_at_its_last_close(symbol, sid):
    """--to falls two bars after a fill of the whole-file run: the window's run holds that
    position at its last bar and closes it there (EOD, at the last close, its time the
    close of that bar)."""
    cfg = _config("example", sid, symbol, "fast_tight")
    whole = _sample_event("example", sid, symbol, "A", "fast_tight")
    held = [t for t in whole.trades if t.hold_bars >= 4]
    t = held[len(held) // 2]
    window = Window(None, t.fill_ts + 2 * 900, None)
    ev = run_scenario(cfg, "A", None, window=window)
    assert str(ev.trades[-1].exit_reason) == "EOD" and ev.trades[-1].exit_ts == t.fill_ts + 2 * 900
    (fast,) = screen(cfg, sid, "A", [POINTS[sid]["fast_tight"]], _sample_bars(symbol), window=window)
    assert_same_trades(fast, ev.trades, ev.final_equity_usd, ev.max_dd, f"{sid} {symbol} window to {window.end_ts}")


def test_a_window_that_holds_no_bar_trades_nothing():
    cfg = _config("example", S1, "EURUSD", "defaults")
    empty = Window(_utc("2030-01-01T00:00"), None, None)
    ev = run_scenario(cfg, "A", None, window=empty)
    (fast,) = screen(cfg, S1, "A", [{}], _sample_bars("EURUSD"), window=empty)
    assert fast.bars == ev.bars == 0 and len(fast.trades) == 0
    assert fast.final_equity_usd == ev.final_equity_usd


# -- entry filters -------------------------------------------------------------------------------

#: entry filters a kernel does not know: the fast path masks its signals with them
FILTERS: dict[str, dict[str, Any]] = {
    "adx_band": {"adx": {"period": 10, "min": 22.0, "max": 45.0}},
    "atr_pct_vol": {"atr_pct": {"period": 20, "min_pct": 0.02, "max_pct": 0.09}, "vol_regimes": ["LOW", "MID"]},
    "spike_hours": {"block_spike": True, "hours_utc": list(range(7, 21))},
    "all": {"adx": {"period": 14, "min": 18.0}, "atr_pct": {"period": 14, "max_pct": 0.1},
            "vol_regimes": ["MID", "HIGH"], "block_spike": True, "hours_utc": [0, 1, 2, 8, 9, 10, 13, 14, 15, 16]},
}


def _filtered_config(sid: str, symbol: str, filters: str, risk: str = "example") -> DeskConfig:
    d = _config(risk, sid, symbol, "fast_tight").model_dump(mode="json")
    d["strategies"][sid]["filters"] = FILTERS[filters]
    return DeskConfig.model_validate(d)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("sid", POINTS)
@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY"])
def test_filtered_trades_equal_the_event_path_on_the_sample(symbol, sid, filters):
    """With entry filters the fast path still matches trade for trade, whole file and in a
    window warmed as the event path warms it (the filters' indicators counted)."""
    cfg = _filtered_config(sid, symbol, filters, risk="tight")
    counter = DecisionCounter("C", cfg.universe.timeframe_s)
    ev = run_scenario(cfg, "C", counter)
    assert any(r.startswith("filter:") for r in counter.counts), counter.counts  # the filter did block
    (fast,) = screen(cfg, sid, "C", [POINTS[sid]["fast_tight"]], _sample_bars(symbol))
    assert_same_trades(fast, ev.trades, ev.final_equity_usd, ev.max_dd, f"{sid} {symbol} {filters}")
    unfiltered = _sample_event("tight", sid, symbol, "C", "fast_tight")
    assert len(ev.trades) != len(unfiltered.trades)
    window = WINDOWS["strategy_warmup"]
    ev = run_scenario(cfg, "B", None, window=window)
    (fast,) = screen(cfg, sid, "B", [POINTS[sid]["fast_tight"]], _sample_bars(symbol), window=window)
    assert fast.bars == ev.bars > 0
    assert_same_trades(fast, ev.trades, ev.final_equity_usd, ev.max_dd, f"{sid} {symbol} {filters} window")


# -- sharing indicators between points ------------------------------------------------------------

SHARING = {
    S1: [
        {},
        {"params": {"adx_th": 20.0}},                                       # every indicator shared with {}
        {"params": {"ema_fast": 8}, "stops": {"k_sl": 1.0, "k_tp": None}},  # EMA(50), ADX(14), ATR(14) shared
        POINTS[S1]["fast_tight"], POINTS[S1]["slow_no_tp"],
        {"params": {"atr_period": 10}, "max_hold_bars": 12},                 # ATR(10) shared with slow_no_tp
    ],
    S2: [
        {},
        {"params": {"z_entry": 1.5}},                                       # every indicator shared with {}
        {"params": {"z_window": 20}},                                       # EMA(200), its slope, ADX, ATR
        {"params": {"ema_regime": 100, "z_window": 20}, "stops": {"k_tp": None}},
        POINTS[S2]["fast_tight"], POINTS[S2]["slow_no_tp"],
    ],
    S3: [
        {},
        {"params": {"compression_z_low": -0.25}},                           # every indicator shared with {}
        {"params": {"breakout_window": 10}, "stops": {"k_tp": None}},       # ATR, its z-score, EMA(200)
        {"params": {"compression_window": 30, "ema_trend": 100}},           # ATR(14), prior range(20)
        POINTS[S3]["fast_tight"], POINTS[S3]["slow_no_tp"],
    ],
}


@pytest.mark.parametrize("sid", POINTS)
def test_points_sharing_indicators_trade_as_each_point_alone(sid):
    """One call computes each indicator (kind, periods, first bar) once for all its points;
    a point's trades do not depend on which other points share the call."""
    cfg = _config("tight", sid, "EURUSD", "defaults")
    bars = _sample_bars("EURUSD")
    points = SHARING[sid]
    for window in (None, WINDOWS["strategy_warmup"], WINDOWS["short_warmup"]):
        together = screen(cfg, sid, "C", points, bars, window=window)
        for point, run in zip(points, together):
            (alone,) = screen(cfg, sid, "C", [point], bars, window=window)
            pd.testing.assert_frame_equal(run.trades, alone.trades)
            assert (run.final_equity_usd, run.max_dd_usd, run.max_dd_frac) == \
                (alone.final_equity_usd, alone.max_dd_usd, alone.max_dd_frac)
        assert len({len(r.trades) for r in together}) > 1  # the points differ


# -- the API --------------------------------------------------------------------------------------

class UserTrend(TrendEmaAtrAdx):
    """A user's strategy: a subclass of S1 may trade differently, so it has no kernel."""


def test_deskd_strategies_have_kernels_and_a_user_strategy_runs_on_the_event_path():
    assert has_kernel(TrendEmaAtrAdx) and has_kernel(MeanReversionZScore) and has_kernel(BreakoutAtrCompression)
    assert not has_kernel(UserTrend)
    d = load_config(EXAMPLE).model_dump(mode="json")
    d["strategies"] = {"mine": {"class": f"{__name__}:UserTrend"}}
    d["risk"]["priority"] = []
    cfg = DeskConfig.model_validate(d)
    with pytest.raises(ValueError, match="mine: no fast-path kernel for .*UserTrend; run it on the event path"):
        screen(cfg, "mine", "A", [{}], _sample_bars("EURUSD"))


def test_a_point_is_validated_by_the_strategy_params_and_stops():
    cfg = load_config(EXAMPLE)
    p = resolve_point(cfg, S1, {"params": {"ema_fast": 5}, "stops": {"k_tp": None}})
    assert p.params.ema_fast == 5 and p.params.ema_slow == 50 and p.stops.k_tp is None
    assert p.stops.k_sl == 2.0 and p.max_hold_bars == 96
    with pytest.raises(ValueError, match="point 1: params: ema_fast must be shorter than ema_slow"):
        screen(cfg, S1, "A", [{}, {"params": {"ema_fast": 60}}], _sample_bars("EURUSD"))
    with pytest.raises(ValueError, match="point 0: .*unknown"):
        screen(cfg, S1, "A", [{"param": {}}], _sample_bars("EURUSD"))
    with pytest.raises(ValueError, match="params.atr_period: "):
        resolve_point(cfg, S1, {"params": {"atr_period": 0}})
    with pytest.raises(ValueError, match="stops.k_sl: "):
        resolve_point(cfg, S1, {"stops": {"k_sl": -1}})
    with pytest.raises(KeyError):
        screen(cfg, S1, "Z", [{}], _sample_bars("EURUSD"))


def test_the_bars_are_those_the_replay_feeds():
    cfg = event_config(load_config(EXAMPLE), S1, "USDJPY")
    bars = load_bars(cfg, "USDJPY")
    chunks = list(replay_feed(cfg).chunks())
    np.testing.assert_array_equal(bars.ts, np.concatenate([c.ts for c in chunks]))
    np.testing.assert_array_equal(bars.close, np.concatenate([c.close for c in chunks]))
    assert bars.ts.dtype == np.int64 and bars.open.dtype == np.float64 and len(bars) == 11998


# -- the kernels' arithmetic against deskd's own -------------------------------------------------

def test_prices_round_to_the_grid_exactly_as_python_rounds():
    """The bracket's quote grid and the tenth-of-a-pip stop: CPython rounds the exact binary
    value, ties to even; near-ties are where a scaled floating-point rounding goes wrong."""
    rng = random.Random(11)
    values = [rng.uniform(0.5, 200.0) for _ in range(20_000)]
    for d in (1, 3, 5):
        for _ in range(5_000):  # decimal ties k + 0.5 at the next digit, and their neighbours
            x = (rng.randrange(1, 2_000_000) + 0.5) / 10 ** d
            values += [x, math.nextafter(x, 0.0), math.nextafter(x, math.inf)]
    values += [2.675, 1.0000050000000001, 0.125, 0.375, 110.0005, 1.234565, 0.05, 0.15, 0.25]
    for d in (1, 3, 5):
        scale = 10.0 ** d
        wrong = [x for x in values if round_decimal(x, scale) != round(x, d)]
        assert not wrong, f"{len(wrong)} values round differently at {d} decimals, e.g. {wrong[:3]}"


def test_fsum_is_math_fsum():
    rng = np.random.default_rng(7)
    partials = np.empty(64)
    cases = [rng.normal(0, 1, 50), rng.normal(1e6, 1e-3, 80), np.array([1e-16, 1.0, 1e16]),
             np.array([1e100, 1.0, -1e100, 1e-100]), np.zeros(5), rng.normal(0, 1, 1) * 1e-300,
             np.array([0.1] * 10), (rng.standard_cauchy(300) * 1e10)]
    cases += [rng.normal(0, 10.0 ** rng.integers(-20, 20), rng.integers(1, 200)) for _ in range(300)]
    for xs in cases:
        assert fsum(xs, partials) == math.fsum(xs.tolist()), xs


def _series(rng: np.random.Generator, n: int) -> np.ndarray:
    """Prices with flat stretches (a constant window: no z-score, the exact path) and tiny
    moves on a large level (variance far below the mean square: the exact path again)."""
    x = 1.1 + np.cumsum(rng.normal(0, 2e-4, n))
    x[300:420] = x[299]                                  # flat
    x[900:1300] = x[899] + rng.normal(0, 1e-9, 400)      # nearly flat
    x[2000:2100] = np.round(x[2000:2100], 4)             # on a grid
    return x


@pytest.mark.parametrize("window", [2, 7, 30])
def test_rolling_statistics_are_the_strategy_s_own_bit_for_bit(window):
    """S2's z-score of (close - EMA) and the EMA's slope, against RollingZScore and
    RollingSlope fed as S2 feeds them, over enough bars for many 64-window resyncs."""
    rng = np.random.default_rng(window)
    close = _series(rng, 6000)
    w0, end = 150, 5800
    for period in (1, 20):
        ema = np.full(len(close), math.nan)
        e = EMA(period)
        z, slope = RollingZScore(window), RollingSlope(window)
        want_z = np.full(len(close), math.nan)
        want_slope = np.full(len(close), math.nan)
        for t in range(w0, end):
            e.update(close[t])
            ema[t] = e.value
            if e.value == e.value:
                slope.update(e.value)
                z.update(close[t] - e.value)
                want_z[t], want_slope[t] = z.value, slope.value
        np.testing.assert_array_equal(rolling_zscore(close - ema, window, w0, end), want_z)
        np.testing.assert_array_equal(ema_slope(ema, window, w0, end), want_slope)
        if period == 1:  # close - EMA(1) is 0 over the flat stretch: a flat window, no z-score
            assert np.isnan(want_z[300 + window + 2:420]).all()


@pytest.mark.parametrize("window", [1, 5, 40])
def test_s3_statistics_are_the_indicator_book_s_own_bit_for_bit(window):
    """S3's breakout levels and compression, against PriorRange and AtrPctZScore fed as the
    indicator book feeds them (ties in highs and lows included: prices on a grid)."""
    rng = np.random.default_rng(100 + window)
    close = np.round(_series(rng, 4000), 4)
    high = close + np.round(rng.uniform(0, 5e-4, len(close)), 4)
    low = close - np.round(rng.uniform(0, 5e-4, len(close)), 4)
    w0, end = 60, 3900
    atr = ATR(14)
    rng_book, z = PriorRange(window), AtrPctZScore(atr, 30)
    want = np.full((3, len(close)), math.nan)
    for t in range(w0, end):
        rng_book.update_hlc(high[t], low[t], close[t])
        atr.update_hlc(high[t], low[t], close[t])
        z.update_hlc(high[t], low[t], close[t])
        want[:, t] = rng_book.high, rng_book.low, z.value
    np.testing.assert_array_equal(prior_max(high, window, w0, end), want[0])
    np.testing.assert_array_equal(-prior_max(-low, window, w0, end), want[1])
    atr_k = atr_wilder(high, low, close, 14, w0, end)
    np.testing.assert_array_equal(rolling_zscore(atr_k / close * 100.0, 30, w0, end), want[2])


# -- the 2017-2019 M1 files -----------------------------------------------------------------------

def _m1_path(symbol: str) -> Path:
    path = M1_DIR / f"{symbol}_M1.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} absent: the 2017-2019 M1 files live in shared/data/fx_m1 beside the repository")
    return path


def _m1_config(sid: str, symbol: str, point: str) -> DeskConfig:
    """tests/golden/m1_s123.yaml's desk (New York time, M1, the example's risk and costs),
    holding ``sid`` alone on ``symbol``."""
    d = load_config(EXAMPLE).model_dump(mode="json")
    d["desk"] = "m1"
    d["universe"] = {"timeframe": "M1", "symbols": [symbol]}
    d["data"] = {"timezone": "America/New_York", "files": {symbol: str(_m1_path(symbol))}}
    d["costs"]["spread_pips"] = {symbol: d["costs"]["spread_pips"][symbol]}
    return event_config(DeskConfig.model_validate(d), sid, symbol, POINTS[sid][point])


class _LoadedFeed(ReplayFeed):
    """A replay feed read once: the M1 files take seconds to parse, and 18 runs read each."""

    loaded: list[MergedChunk]

    def chunks(self) -> Iterator[MergedChunk]:
        if not hasattr(self, "loaded"):
            self.loaded = list(super().chunks())
        yield from self.loaded


@cache
def _m1_data(symbol: str):
    cfg = _m1_config(S1, symbol, "defaults")
    base = replay_feed(cfg)
    return _LoadedFeed(base.files, base.timezone, base.timeframe_s), load_bars(cfg, symbol)


@pytest.mark.parametrize("sid, point", CASES)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("symbol", M1_SYMBOLS)
def test_trades_equal_the_event_path_on_m1_2017_2019(symbol, scenario, sid, point):
    cfg = _m1_config(sid, symbol, point)
    feed, bars = _m1_data(symbol)
    desk = paper_desk(cfg, scenario)
    n = replay(desk, feed)
    (fast,) = screen(cfg, sid, scenario, [POINTS[sid][point]], bars)
    assert fast.bars == n == len(bars) > 1_000_000
    lg = desk.ledger
    assert len(lg.closed) > 1000
    assert_same_trades(fast, lg.closed, lg.equity_usd, (lg.max_dd_usd, lg.max_dd_frac),
                       f"{sid} {symbol} {scenario} {point}")


@pytest.mark.parametrize("sid", POINTS)
def test_an_m1_window_equals_the_event_path_window(sid):
    cfg = _m1_config(sid, "USDJPY", "fast_tight")
    feed, bars = _m1_data("USDJPY")
    desk = paper_desk(cfg, "C")
    window = Window(_utc("2018-03-04T22:00"), _utc("2018-06-15T13:30"), None)
    n = replay_window(desk, feed, Window(window.start_ts, window.end_ts, warmup_bars_of(desk)))
    (fast,) = screen(cfg, sid, "C", [POINTS[sid]["fast_tight"]], bars, window=window)
    assert fast.bars == n > 100_000
    lg = desk.ledger
    assert_same_trades(fast, lg.closed, lg.equity_usd, (lg.max_dd_usd, lg.max_dd_frac), f"{sid} USDJPY M1 window")
