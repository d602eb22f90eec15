"""Run folders the viewer's tests build by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd


def write_walkforward(out: Path, backtest: Path) -> Path:
    """A walk-forward folder in walkforward's layout at ``out``, from a backtest folder: two
    splits of S1 on EURUSD, the out-of-sample trades the backtest's EURUSD trades, each
    split's tune folder with three trials (split 2's folder left out)."""
    out.mkdir(parents=True)
    shutil.copy(backtest / "config.yaml", out / "config.yaml")
    tr = pd.read_csv(backtest / "trades.csv")
    tr = tr[tr["symbol"] == "EURUSD"].copy()
    tr.insert(0, "split", np.where(np.arange(len(tr)) % 2 == 0, 1, 2))
    tr.to_csv(out / "oos_trades.csv", index=False)
    eq = pd.read_csv(backtest / "equity.csv")[["scenario", "time", "kind", "equity_usd"]]
    eq.insert(1, "split", 1)
    eq.to_csv(out / "oos_equity.csv", index=False)
    splits = [{"split": k, "train_from": "2026-01-15T00:00:00Z", "train_to": "2026-03-01T00:00:00Z",
               "test_from": "2026-03-02T00:00:00Z", "test_to": "2026-04-01T00:00:00Z", "embargo_s": 86400,
               "p.ema_fast": 10 * k, "is_score": -0.1 * k, "is_expectancy_r_A": 0.1, "oos_expectancy_r_A": float("nan"),
               "oos_trades_A": 3} for k in (1, 2)]
    (out / "walkforward.json").write_text(json.dumps({
        "strategy_id": "S1_TREND_EMA_ATR_ADX", "splits_spec": {"unit": "calendar", "train": "6W", "test": "4W",
                                                               "embargo": "1D", "anchored": False},
        "scenarios": ["A", "B"], "splits": splits, "parameter_stability": {},
        "out_of_sample": {"A": {"trades": 10, "net_usd": -5.0, "expectancy_r": -0.1, "final_equity_usd": 99995.0},
                          "B": {"trades": 8, "net_usd": -7.0, "expectancy_r": -0.2, "final_equity_usd": 99993.0}}}))
    pd.DataFrame(splits).to_csv(out / "splits.csv", index=False)
    tune = out / "splits" / "01"
    tune.mkdir(parents=True)
    (tune / "tune.json").write_text(json.dumps({
        "objective": {"name": "expectancy_r"}, "best": {"p.ema_fast": 10},
        "overfitting": {"dsr": {"value": 0.2}, "pbo": {"value": 0.6}}, "space_size": 8}))
    pd.DataFrame({"rank": [1, 2, 3], "trial": [7, 3, 5], "stage": 1, "scenario": "B", "status": "ok",
                  "score": [0.3, 0.2, 0.1], "trades": [40, 41, 42], "net_usd": [10.0, 5.0, -1.0],
                  "expectancy_r": [0.1, 0.05, -0.01], "max_dd_frac": [0.1, 0.2, 0.3], "duration_s": 0.1,
                  "p.ema_fast": [10, 20, 30]}).to_csv(tune / "trials.csv", index=False)
    return out
