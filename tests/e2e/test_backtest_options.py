"""Choosing what a backtest runs without writing YAML: --from/--to (warm-up before --from, no
trade before it), --symbols, --strategies, --timeframe, each refused by name when it cannot work."""

import csv
import json

import pytest

from tests.conftest import EXAMPLE, ROOT, run

DONCHIAN = ROOT / "examples" / "strategies" / "donchian.yaml"


def trades_of(out):
    with open(out / "trades.csv") as fh:
        return list(csv.DictReader(fh))


def test_a_window_trades_only_inside_it_after_warming_up_before_it(tmp_path):
    out = tmp_path / "w"
    run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--scenarios", "A",
        "--from", "2026-03-01", "--to", "2026-04-30", "--symbols", "EURUSD,USDJPY")
    report = json.loads((out / "report.json").read_text())
    assert report["window"] == {"from": "2026-03-01T00:00:00Z", "to": "2026-05-01T00:00:00Z", "warmup_bars": 114}
    rows = trades_of(out)
    assert rows and {r["symbol"] for r in rows} == {"EURUSD", "USDJPY"}
    assert min(r["signal_time"] for r in rows) >= "2026-03-01" and max(r["exit_time"] for r in rows) <= "2026-05-01T00:00:00Z"
    # warmed up: the first signal comes within the first trading hours, not after EMA(50) bars
    assert min(r["signal_time"] for r in rows) < "2026-03-02T06:00"
    assert list(report["data"]) == ["EURUSD", "USDJPY"]


def test_strategies_narrows_to_the_named_ids(tmp_path):
    out = tmp_path / "s"
    run("backtest", "--config", str(DONCHIAN), "--out", str(out), "--scenarios", "A", "--strategies", "donchian_20")
    assert {r["strategy_id"] for r in trades_of(out)} == {"donchian_20"}


@pytest.mark.parametrize("args, message", [
    (["--from", "2026-13-01"], "--from '2026-13-01': expected a date or date-time in UTC"),
    (["--from", "2026-03-01T00:00+02:00"], "give the time in UTC"),
    (["--from", "2026-05-01", "--to", "2026-04-01"], "--from 2026-05-01T00:00:00Z is not before --to"),
    (["--symbols", "AUDUSD"], "--symbols 'AUDUSD': not in universe.symbols"),
    (["--strategies", "S9"], "--strategies 'S9': the config's strategies are S1_TREND_EMA_ATR_ADX"),
])
def test_options_that_cannot_work_are_one_error_line_and_exit_2(tmp_path, args, message):
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "x"), *args, check=False)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and p.stderr.startswith("deskd: error:") and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()


def test_timeframe_runs_the_config_on_other_bars(tmp_path):
    h1 = ROOT.parent / "shared" / "data" / "fx" / "EURUSD_H1.csv"
    if not h1.exists():
        pytest.skip(f"{h1} not present (the workspace's shared data)")
    out = tmp_path / "h1"
    run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--scenarios", "A", "--timeframe", "H1",
        "--symbols", "EURUSD", "--data", f"EURUSD={h1}")
    report = json.loads((out / "report.json").read_text())
    assert report["timeframe"] == "H1" and report["data"]["EURUSD"]["path"] == str(h1)
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "bad"), "--timeframe", "H1", check=False)
    assert p.returncode == 2 and "less than the 3600 s timeframe" in p.stderr


def test_a_file_given_with_its_zone_is_read_in_it_and_data_timezone_names_only_the_given_files(tmp_path):
    sample = ROOT / "deskd" / "data" / "sample"
    out = tmp_path / "z"
    run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--scenarios", "A",
        "--data", f"EURUSD={sample / 'EURUSD_M15.csv.gz'}@America/New_York")
    data = json.loads((out / "report.json").read_text())["data"]
    assert (data["EURUSD"]["timezone"], data["GBPUSD"]["timezone"]) == ("America/New_York", "Europe/Athens")
    out = tmp_path / "z2"
    run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--scenarios", "A",
        "--data", f"USDJPY={sample / 'USDJPY_M15.csv.gz'}", "--data-timezone", "UTC")
    data = json.loads((out / "report.json").read_text())["data"]
    assert (data["USDJPY"]["timezone"], data["EURUSD"]["timezone"]) == ("UTC", "Europe/Athens")
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "bad"),
            "--data", f"EURUSD={sample / 'EURUSD_M15.csv.gz'}@Mars/Base", check=False)
    assert p.returncode == 2 and "unknown IANA timezone 'Mars/Base'" in p.stderr


def test_files_that_do_not_overlap_in_time_are_refused_naming_their_ranges(tmp_path):
    sample = ROOT / "deskd" / "data" / "sample"
    import pandas as pd

    df = pd.read_csv(sample / "EURUSD_M15.csv.gz")
    df.iloc[:2000].to_csv(tmp_path / "early.csv", index=False)
    df.iloc[5000:7000].to_csv(tmp_path / "late.csv", index=False)
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "x"), "--symbols", "EURUSD,GBPUSD",
            "--data", f"EURUSD={tmp_path / 'early.csv'}", "--data", f"GBPUSD={tmp_path / 'late.csv'}", check=False)
    assert p.returncode == 2, p.stderr
    assert "early.csv (EURUSD, 2026-" in p.stderr and "ends before" in p.stderr and "late.csv (GBPUSD) begins at" in p.stderr
    assert "do not overlap in time" in p.stderr and not (tmp_path / "x").exists()
