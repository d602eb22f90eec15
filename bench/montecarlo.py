"""Monte Carlo throughput: simulated trades (or days) per second of ``deskd montecarlo``'s parts.

    python bench/montecarlo.py [--sims 5000] [--trades 10000] [--days 756] [--repeat 3]

On synthetic, seeded inputs of the issue's size (5,000 simulations of 10,000 trades):

* ``trades_<method>``: :func:`deskd.research.montecarlo.simulate` on R-multiples (arch's
  stationary / circular block bootstrap, block length chosen by optimal_block_length,
  compounding, every per-path statistic and the percentile grid);
* ``daily``: the same on ``--days`` daily returns (three years of FX trading days);
* ``cost_noise``: :func:`deskd.research.montecarlo.cost_noise` over the trades with a cost
  split (spread and slippage multipliers and spikes drawn per trade and side).

Each figure is simulations x steps / wall seconds, the median (and best) of ``--repeat`` runs.
Prints JSON. The machine is shared: the load average is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import pandas as pd

from deskd.research.montecarlo import cost_noise, simulate


def synthetic_trades(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` trades of EURUSD and USDJPY: R from a -1 / +1.5 mix with noise (USD risk 500),
    a per-side cost split in pips, a few spikes."""
    rng = np.random.default_rng(seed)
    r = np.where(rng.random(n) < 0.4, 1.5, -1.0) + rng.normal(0, 0.1, n)
    sym = np.where(rng.random(n) < 0.5, "EURUSD", "USDJPY")
    return pd.DataFrame({
        "symbol": sym, "units": 100_000, "exit_price": np.where(sym == "USDJPY", 150.0, 1.1),
        "pnl_usd": r * 500.0, "risk_usd": 500.0, "r_multiple": r, "cost_pips": 1.2,
        "entry_spread_pips": 0.4, "exit_spread_pips": 0.4, "entry_slippage_pips": 0.2, "exit_slippage_pips": 0.2,
        "entry_spike": rng.random(n) < 0.05, "exit_spike": rng.random(n) < 0.05})


def timed(fn, repeat: int) -> tuple[float, float]:
    """(median, best) wall seconds of ``repeat`` calls."""
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), min(walls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=5000)
    ap.add_argument("--trades", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=756)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tr = synthetic_trades(a.trades)
    r = tr["r_multiple"].to_numpy()
    days = np.random.default_rng(1).normal(0.0002, 0.006, a.days)
    out: dict = {"sims": a.sims, "trades": a.trades, "days": a.days, "repeat": a.repeat,
                 "load_avg_1m_before": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    cases = {
        "trades_stationary": (lambda: simulate(r, 0.005, 1e5, 1e4, a.sims, None, "stationary",
                                               np.random.default_rng(42), "trades", 1000.0, 1.0), a.trades),
        "trades_circular": (lambda: simulate(r, 0.005, 1e5, 1e4, a.sims, None, "circular",
                                             np.random.default_rng(42), "trades", 1000.0, 1.0), a.trades),
        "daily_stationary": (lambda: simulate(days, 1.0, 1e5, 1e4, a.sims, None, "stationary",
                                              np.random.default_rng(42), "days", 1095.0, 252 ** 0.5), a.days),
        "cost_noise": (lambda: cost_noise(tr, a.sims, np.random.default_rng(42), (0.8, 1.5), (0.5, 2.0), 0.05, 2.0),
                       a.trades),
    }
    for name, (fn, steps) in cases.items():
        med, best = timed(fn, a.repeat)
        out[name] = {"wall_s_median": round(med, 3), "wall_s_best": round(best, 3),
                     "sim_steps_per_s_median": round(a.sims * steps / med), "sim_steps_per_s_best": round(a.sims * steps / best)}
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
