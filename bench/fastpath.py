"""Fast-path throughput: bar-evaluations per second per core on EURUSD M1 2017-2019.

    python bench/fastpath.py [--strategy s1|s2|s3] [--symbol EURUSD] [--scenario B] [--repeat 3]
                             [--workers 1,2]

A bar-evaluation is one bar of one parameter point: bars x points / wall seconds. Each grid
has 48 points sharing indicators as a tuner's grid does; S1's (the issue's target) is
ema_fast 10/20/30 x ema_slow 50/80 x adx_th 20/25/30/35 x k_sl 1.5/2.0 (five distinct EMAs,
one ADX, one ATR); S2's varies z_window, z_entry, adx_max and k_sl (three z-score arrays);
S3's compression_window, compression_z_low, breakout_window and k_sl. Measured after
compilation and after the bars are loaded (the load is timed separately), each figure the
median (and best) of ``--repeat`` runs:

* ``screen``: :func:`deskd.research.fastpath.screen` whole, per call: the desk's calendar,
  indicators, costs, then per point the signals, the desk loop and the trades DataFrame;
* ``kernel`` (S1): the desk loop alone (:func:`deskd.research.fastpath.kernels.simulate`) plus
  S1's signal pass, indicators already computed: the kernel of the issue's target;
* ``parts`` (S1): seconds per call of each step, to say where the time goes;
* ``workers``: the same grid split over N spawned processes (each loads the bars once, before
  the clock starts), wall time of the whole grid; per core = total / N.

Prints JSON. The machine is shared: record the load average with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, cast

import numpy as np

from deskd.configs.models import DeskConfig
from deskd.research.fastpath import BarArrays, load_bars, resolve_point, screen
from deskd.research.fastpath import kernels as k
from deskd.research.fastpath.s1 import s1_signals
from deskd.research.fastpath.screening import roll_schedule
from deskd.strategies.trend import TrendEmaAtrAdx

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fx_m1"
S1 = "S1_TREND_EMA_ATR_ADX"
STRATEGIES = {"s1": S1, "s2": "S2_MR_ZSCORE_EMA_REGIME", "s3": "S3_BREAKOUT_ATR_REGIME_EMA200"}


def config(symbol: str, sid: str = S1) -> DeskConfig:
    """The M1 desk of tests/golden/m1_s123.yaml holding ``sid`` alone on ``symbol`` (S1 with
    the golden's stops, the others with their own default stops)."""
    stops = {"stops": {"k_sl": 2.0, "min_sl_pips": 10, "k_tp": 3.0, "min_tp_pips": 15}} if sid == S1 else {}
    return DeskConfig.model_validate({
        "desk": "bench",
        "universe": {"timeframe": "M1", "symbols": [symbol]},
        "data": {"timezone": "America/New_York", "files": {symbol: str(DATA / f"{symbol}_M1.csv.gz")}},
        "strategies": {sid: stops},
        "costs": {"spread_pips": {symbol: 0.8}},
    })


def grid(sid: str = S1) -> list[dict[str, Any]]:
    """48 points of ``sid``, sharing indicators as a tuner's grid does."""
    if sid == S1:
        return [{"params": {"ema_fast": f, "ema_slow": s, "adx_th": a}, "stops": {"k_sl": sl}}
                for f in (10, 20, 30) for s in (50, 80) for a in (20.0, 25.0, 30.0, 35.0) for sl in (1.5, 2.0)]
    if sid == STRATEGIES["s2"]:
        return [{"params": {"z_window": w, "z_entry": z, "adx_max": a}, "stops": {"k_sl": sl}}
                for w in (20, 30, 40) for z in (1.5, 2.0, 2.5, 3.0) for a in (20.0, 30.0) for sl in (1.5, 2.0)]
    return [{"params": {"compression_window": w, "compression_z_low": z, "breakout_window": b}, "stops": {"k_sl": sl}}
            for w in (30, 50, 70) for z in (-1.0, -0.5, -0.25, 0.0) for b in (10, 20) for sl in (1.5, 2.0)]


def _timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _rate(bar_evals: int, seconds: list[float]) -> dict[str, float]:
    return {"median_bar_evals_per_s": round(bar_evals / statistics.median(seconds)),
            "best_bar_evals_per_s": round(bar_evals / min(seconds)),
            "median_s": round(statistics.median(seconds), 4)}


def kernel_parts(cfg: DeskConfig, bars: BarArrays, scenario: str, points: list[dict[str, Any]],
                 repeat: int) -> dict[str, Any]:
    """The steps of one screen call, timed apart (the same kernels, called as screen calls them)."""
    n = len(bars)
    h, lo, c = bars.high, bars.low, bars.close
    resolved = [resolve_point(cfg, S1, p) for p in points]
    s1 = [cast(TrendEmaAtrAdx.Params, r.params) for r in resolved]
    cal = roll_schedule(cfg, bars.ts, 0, n)
    atr = k.atr_wilder(h, lo, c, 14, 0, n)
    adx = k.adx_wilder(h, lo, atr, 14, 0, n)
    emas = {p: k.ema_close(c, p, 0, n) for p in {q.ema_fast for q in s1} | {q.ema_slow for q in s1}}
    scn = cfg.costs.scenarios[scenario]
    sl = cfg.costs.slippage
    slippage, _ = k.side_cost_parts(h, lo, c, atr, 0, n, sl.slip_base_pips, sl.slip_k_pips, scn.slippage_mult,
                                    scn.slippage_add_pips, sl.spike_tr_atr_th, sl.spike_mult if scn.spikes else 1.0)
    cost = 0.8 * scn.spread_mult / 2.0 + slippage
    signal = np.zeros(n, np.int8)
    params = []
    for r in resolved:
        p = np.zeros(k.N_PARAMS)
        p[[k.P_TF_S, k.P_PIP, k.P_PRICE_SCALE, k.P_INV_QUOTE]] = [60, 0.0001, 1e5, 0.0]
        p[[k.P_K_SL, k.P_MIN_SL_PIPS, k.P_K_TP, k.P_MIN_TP_PIPS, k.P_MAX_HOLD_BARS]] = [
            r.stops.k_sl, r.stops.min_sl_pips, r.stops.k_tp or math.nan, r.stops.min_tp_pips, r.max_hold_bars]
        risk = cfg.risk
        p[[k.P_R_BASE, k.P_CAP_STRATEGY_FRAC, k.P_CAP_SYMBOL_FRAC, k.P_MAX_NOTIONAL_USD, k.P_DD_DAY_FRAC,
           k.P_DD_WEEK_FRAC, k.P_MAX_DD_FRAC, k.P_EQUITY0_USD, k.P_POLICY]] = [
            risk.r_base, risk.max_open_risk_frac_per_strategy, risk.max_open_risk_frac_per_symbol,
            risk.max_notional_usd, risk.dd_day_limit_frac, risk.dd_week_limit_frac, math.nan,
            cfg.account.starting_equity_usd, 0]
        params.append(p)

    def signals_and_desk() -> None:
        for q, p in zip(s1, params):
            s1_signals(emas[q.ema_fast], emas[q.ema_slow], adx, atr, q.adx_th, 0, n, signal)
            k.simulate(bars.ts, bars.open, h, lo, c, signal, atr, cost, cal.roll, cal.day_end_ts,
                       cal.week_end_ts, 0, n, p)

    def signals_only() -> None:
        for q in s1:
            s1_signals(emas[q.ema_fast], emas[q.ema_slow], adx, atr, q.adx_th, 0, n, signal)

    per_call = {
        "calendar_s": _timed(lambda: roll_schedule(cfg, bars.ts, 0, n), repeat),
        "ema_s": _timed(lambda: k.ema_close(c, 20, 0, n), repeat),
        "atr_s": _timed(lambda: k.atr_wilder(h, lo, c, 14, 0, n), repeat),
        "adx_s": _timed(lambda: k.adx_wilder(h, lo, atr, 14, 0, n), repeat),
        "costs_s": _timed(lambda: k.side_cost_parts(h, lo, c, atr, 0, n, 0.1, 0.2, 1.0, 0.0, 2.5, 1.0), repeat),
    }
    grid_runs = {"signals_s": _timed(signals_only, repeat), "signals_and_desk_s": _timed(signals_and_desk, repeat)}
    evals = n * len(points)
    return {
        "kernel": _rate(evals, grid_runs["signals_and_desk_s"]),
        "parts_median_s": {
            **{name: round(statistics.median(v), 4) for name, v in per_call.items()},
            "signals_per_point_s": round(statistics.median(grid_runs["signals_s"]) / len(points), 4),
            "desk_loop_per_point_s": round((statistics.median(grid_runs["signals_and_desk_s"])
                                            - statistics.median(grid_runs["signals_s"])) / len(points), 4),
        },
    }


# -- workers --------------------------------------------------------------------------------------

_BARS: BarArrays | None = None
_CFG: DeskConfig | None = None
_SID = S1


def _worker_init(symbol: str, sid: str) -> None:
    global _BARS, _CFG, _SID
    _CFG, _SID = config(symbol, sid), sid
    _BARS = load_bars(_CFG, symbol)
    screen(_CFG, sid, "B", [{}], _BARS)  # compiled code loaded from numba's cache


def _worker_screen(scenario: str, points: list[dict[str, Any]]) -> list[int]:
    assert _CFG is not None and _BARS is not None
    return [len(r.trades) for r in screen(_CFG, _SID, scenario, points, _BARS)]


def _worker_pid() -> int:
    time.sleep(0.5)
    return os.getpid()


def workers_rate(symbol: str, sid: str, scenario: str, points: list[dict[str, Any]], n_bars: int, workers: int,
                 repeat: int) -> dict[str, Any]:
    """The grid split into ``workers`` contiguous chunks (points sharing indicators stay
    together), one per spawned process."""
    ctx = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(symbol, sid)) as pool:
        ready = {f.result() for f in [pool.submit(_worker_pid) for _ in range(4 * workers)]}
        size = -(-len(points) // workers)
        chunks = [points[i:i + size] for i in range(0, len(points), size)]
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            futures = [pool.submit(_worker_screen, scenario, ch) for ch in chunks]
            for f in futures:
                f.result()
            times.append(time.perf_counter() - t)
    rate = _rate(n_bars * len(points), times)
    return {"workers": workers, "processes_seen": len(ready), **rate,
            "median_bar_evals_per_s_per_core": round(rate["median_bar_evals_per_s"] / workers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategy", choices=sorted(STRATEGIES), default="s1")
    ap.add_argument("--symbol", default="EURUSD")
    ap.add_argument("--scenario", default="B")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="worker process counts to measure, e.g. 1,2")
    args = ap.parse_args()
    sid = STRATEGIES[args.strategy]
    cfg = config(args.symbol, sid)
    t = time.perf_counter()
    bars = load_bars(cfg, args.symbol)
    load_s = time.perf_counter() - t
    points = grid(sid)
    t = time.perf_counter()
    screen(cfg, sid, args.scenario, points[:1], bars)
    first_call_s = time.perf_counter() - t  # compilation, or loading it from numba's cache
    n = len(bars)
    screen_times = _timed(lambda: screen(cfg, sid, args.scenario, points, bars), args.repeat)
    out: dict[str, Any] = {
        "strategy": sid, "symbol": args.symbol, "scenario": args.scenario, "bars": n, "points": len(points),
        "load_s": round(load_s, 3), "first_call_s": round(first_call_s, 3),
        "loadavg_before": os.getloadavg(),
        "screen": _rate(n * len(points), screen_times),
        **(kernel_parts(cfg, bars, args.scenario, points, args.repeat) if sid == S1 else {}),
        "workers": [workers_rate(args.symbol, sid, args.scenario, points, n, int(w), args.repeat)
                    for w in args.workers.split(",")],
        "loadavg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
