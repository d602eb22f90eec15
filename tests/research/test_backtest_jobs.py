"""The pieces of a parallel backtest that need no worker: how many processes, the bar count
for the progress total, where a user's strategy module is imported from in a worker, and the
library's own parallel run against its sequential one."""

from __future__ import annotations

import gzip
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deskd.configs.loader import load_config
from deskd.research import backtest as bt
from deskd.research.backtest import BacktestInputError, backtest_jobs, count_bars, run_backtest
from tests.conftest import EXAMPLE, ROOT


def test_jobs_default_to_one_per_scenario_up_to_the_cpus(monkeypatch):
    monkeypatch.setattr(bt, "available_cpus", lambda: 2)
    assert backtest_jobs(None, 3) == 2 and backtest_jobs(None, 1) == 1
    assert backtest_jobs(8, 3) == 3 and backtest_jobs(1, 3) == 1
    assert backtest_jobs(None, 3, store=True) == 1 and backtest_jobs(1, 3, store=True) == 1
    with pytest.raises(BacktestInputError, match="--jobs 0: give 1 or more"):
        backtest_jobs(0, 3)
    with pytest.raises(BacktestInputError, match="--jobs 2 with --store"):
        backtest_jobs(2, 3, store=True)
    assert bt.available_cpus() >= 1


def test_bars_are_counted_from_csv_gzip_and_parquet_without_parsing(tmp_path):
    rows = "".join(f"2026-01-05 00:{m:02d}:00,1.1,1.2,1.0,1.1\n" for m in range(30))
    plain = tmp_path / "a.csv"
    plain.write_text("time,open,high,low,close\n" + rows)
    no_newline = tmp_path / "b.csv"
    no_newline.write_text("time,open,high,low,close\n" + rows.rstrip("\n"))
    gz = tmp_path / "c.csv.gz"
    gz.write_bytes(gzip.compress(("time,open,high,low,close\n" + rows).encode()))
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"time": list(range(12)), "close": [1.0] * 12}), parquet)
    assert count_bars([plain]) == count_bars([no_newline]) == count_bars([gz]) == 30
    assert count_bars([plain, gz, parquet]) == 72
    assert count_bars([tmp_path / "missing.csv"]) is None
    assert count_bars([tmp_path / "x.csv.bz2"]) is None
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert count_bars([empty]) == 0
    sample = load_config(EXAMPLE)
    assert count_bars(sample.data.files.values()) == 35_994  # report.json's bars


def test_a_strategy_module_is_imported_in_a_worker_from_the_folder_it_was_found_in():
    before = list(sys.path)  # pytest itself may have put examples/strategies there (its tests)
    cfg = load_config(ROOT / "examples" / "strategies" / "donchian.yaml")
    assert bt._strategy_modules(cfg) == [("donchian", str((ROOT / "examples" / "strategies").resolve()))]
    assert bt._strategy_modules(load_config(EXAMPLE)) == []  # deskd's own need nothing
    assert "donchian" in sys.modules  # loaded by the config, from its folder
    assert sys.path == before  # the loader's own addition to the path is not left there


def test_the_library_runs_scenarios_in_workers_with_the_same_outputs(tmp_path):
    cfg = load_config(EXAMPLE)
    seen: list[tuple[str, str, int]] = []

    class Progress:
        def started(self, scenario):
            seen.append(("started", scenario, 0))

        def advanced(self, scenario, bars):
            seen.append(("advanced", scenario, bars))

        def finished(self, scenario, bars):
            seen.append(("finished", scenario, bars))

    one = run_backtest(cfg, ["A", "B"], tmp_path / "one", decisions="csv")
    two = run_backtest(cfg, ["A", "B"], tmp_path / "two", progress=Progress(), jobs=2, decisions="csv")
    assert one == two
    for name in ("trades.csv", "equity.csv", "decisions.csv", "report.json", "report.html"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    for scn in ("A", "B"):
        mine = [e for e in seen if e[1] == scn]
        assert mine[0] == ("started", scn, 0) and mine[-1] == ("finished", scn, 35_994)
        assert sum(n for kind, _, n in mine if kind == "advanced") == 35_994
    assert not list(tmp_path.glob(".*"))  # no part file or partial folder left
