"""A strategy written outside deskd (examples/strategies/donchian.py, loaded by import path from
its config's folder) trades in `deskd backtest` and in `deskd run`, and both book the same
trades per strategy id."""

import csv
import sqlite3
from collections import Counter

from tests.conftest import ROOT, run

CONFIG = ROOT / "examples" / "strategies" / "donchian.yaml"


def test_the_example_strategy_runs_in_backtest_and_in_the_daemon_alike(tmp_path):
    run("backtest", "--config", str(CONFIG), "--out", str(tmp_path / "bt"), "--scenarios", "A")
    with open(tmp_path / "bt" / "trades.csv") as fh:
        backtest = Counter(r["strategy_id"] for r in csv.DictReader(fh))
    assert set(backtest) == {"donchian_20", "donchian_55", "S1_TREND_EMA_ATR_ADX"}
    db = tmp_path / "d.db"
    run("run", "--config", str(CONFIG), "--store", str(db), "--no-api", "--speed", "0", "--exit-at-end",
        "--log-level", "WARNING")
    with sqlite3.connect(db) as c:
        daemon = Counter(sid for (sid,) in c.execute("SELECT strategy_id FROM trades"))
    assert daemon == backtest
