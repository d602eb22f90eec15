"""Run folders for the viewer's tests: the sample's real backtest (scenarios A and B) without
counterfactuals.parquet, the same with it (the backtest's own, or, from a deskd that writes
none, one made up for the test: one row per decision, every third a WIN), and a small
walk-forward folder written by hand in walkforward's layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import EXAMPLE, run

CF = "counterfactuals.parquet"


@pytest.fixture(scope="package")
def backtest_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "backtest"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A,B", "--out", str(out), "--quiet")
    return out


@pytest.fixture(scope="package")
def sample_run(backtest_run, tmp_path_factory) -> Path:
    """The backtest without counterfactuals."""
    out = tmp_path_factory.mktemp("view") / "sample"
    shutil.copytree(backtest_run, out, ignore=shutil.ignore_patterns(CF))
    return out


def made_up_counterfactuals(decisions: pd.DataFrame, timeframe_s: int) -> pd.DataFrame:
    """One counterfactual per decision, in order: every third a WIN at +20 pips, the others a
    LOSS at -10, entered one bar after the decision at a price of 1.0 or 100.0 (JPY)."""
    n = len(decisions)
    win = np.arange(n) % 3 == 0
    t = pd.to_datetime(decisions["decision_time"], utc=True)
    price = np.where(decisions["symbol"].astype(str).str.endswith("JPY"), 100.0, 1.0)
    return pd.DataFrame({
        "scenario": decisions["scenario"].astype(str), "decision_time": t,
        "symbol": decisions["symbol"].astype(str), "strategy_id": decisions["strategy_id"].astype(str),
        "side": decisions["side"].astype(str), "action": decisions["action"].astype(str),
        "reason": decisions["reason"].astype(str), "cf_outcome": np.where(win, "TP", "SL"),
        "cf_result": np.where(win, "WIN", "LOSS"), "cf_entry_time": t, "cf_entry_price": price,
        "cf_sl_price": price * 0.999, "cf_tp_price": price * 1.002,
        "cf_exit_time": t + pd.Timedelta(seconds=4 * timeframe_s), "cf_exit_price": price * np.where(win, 1.002, 0.999),
        "cf_pnl_pips": np.where(win, 20.0, -10.0), "cf_pnl_r": np.where(win, 2.0, -1.0),
        "cf_mae_pips": 5.0, "cf_mfe_pips": 20.0, "cf_mae_atr": 0.5, "cf_mfe_atr": 2.0, "cf_hold_bars": 4})


@pytest.fixture(scope="package")
def cf_run(backtest_run, tmp_path_factory) -> Path:
    """The backtest with counterfactuals: its own, else made up."""
    out = tmp_path_factory.mktemp("view") / "with-cf"
    shutil.copytree(backtest_run, out)
    if not (out / CF).exists():
        dec = pd.read_parquet(out / "decisions.parquet")
        made_up_counterfactuals(dec, 900).to_parquet(out / CF, index=False)
    return out


@pytest.fixture(scope="package")
def wf_run(sample_run, tmp_path_factory) -> Path:
    """Two splits of S1 on EURUSD, the out-of-sample trades the sample's EURUSD trades of A and
    B, each split's tune folder with three trials (split 2's folder left out)."""
    out = tmp_path_factory.mktemp("view") / "wf"
    out.mkdir()
    shutil.copy(sample_run / "config.yaml", out / "config.yaml")
    tr = pd.read_csv(sample_run / "trades.csv")
    tr = tr[tr["symbol"] == "EURUSD"].copy()
    tr.insert(0, "split", np.where(np.arange(len(tr)) % 2 == 0, 1, 2))
    tr.to_csv(out / "oos_trades.csv", index=False)
    eq = pd.read_csv(sample_run / "equity.csv")[["scenario", "time", "kind", "equity_usd"]]
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
