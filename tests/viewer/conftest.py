"""Run folders for the viewer's tests: the sample's real backtest (scenarios A and B) without
counterfactuals.parquet, the same with it (the backtest's own, or, from a deskd that writes
none, one made up for the test: one row per decision, every third a WIN), and a small
walk-forward folder written by hand in walkforward's layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import EXAMPLE, run
from tests.viewer.runs import write_walkforward

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
    """Two splits of S1 on EURUSD (:func:`tests.viewer.runs.write_walkforward`)."""
    return write_walkforward(tmp_path_factory.mktemp("view") / "wf", sample_run)


@pytest.fixture(scope="package")
def csv_run(tmp_path_factory) -> Path:
    """Scenario A of the sample with its journal as decisions.csv."""
    out = tmp_path_factory.mktemp("view") / "csv"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--decisions", "csv", "--out", str(out), "--quiet")
    return out
