"""`deskd tune --filters` as a user meets it: the sample end to end, and bad input as one error
line and exit 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLE, run

pytestmark = pytest.mark.e2e

S1 = "S1_TREND_EMA_ATR_ADX"
GRID = """tune:
  filters:
    adx_min_q: [null, 0.75]
    vol_regimes: [null, [MID, HIGH]]
    atr_pct_band_q: [null]
    block_spike: [false]
    hours_utc: {all: null}
    min_trades_per_split: 1
"""


@pytest.fixture
def config(tmp_path):
    """The example config with a small filter grid, its data paths absolute."""
    sample = EXAMPLE.parent.parent.parent / "data" / "sample"
    path = tmp_path / "desk.yaml"
    path.write_text(EXAMPLE.read_text().replace("../../data/sample", str(sample)) + GRID)
    return path


def test_a_filter_tune_runs_end_to_end_on_the_sample(tmp_path, config):
    out = tmp_path / "f"
    p = run("tune", "--filters", "--config", str(config), "--strategy", S1, "--symbols", "EURUSD", "--train", "2M",
            "--test", "1M", "--workers", "2", "--out", str(out))
    assert "no filter (baseline): rank" in p.stdout and "deskd tune --filters:" in p.stderr
    assert max(len(line) for line in p.stdout.splitlines() if not line.startswith("outputs:")) <= 80
    meta = json.loads((out / "filters.json").read_text())
    assert meta["candidates"] == 4 and len(meta["splits"]) == 3
    first_csv = (out / "filters.csv").read_text()
    assert first_csv.count("\n") == 5
    again = run("tune", "--filters", "--config", str(config), "--strategy", S1, "--symbols", "EURUSD", "--train",
                "2M", "--test", "1M", "--workers", "1", "--out", str(out), "--json")  # its own folder: replaced
    assert json.loads(again.stdout)["splits"] == meta["splits"]
    assert (out / "filters.csv").read_text() == first_csv  # the same scores and ranking on one worker


@pytest.mark.parametrize("args, message", [
    (["--filters", "--train", "10Y"], "shorter than one train"),
    (["--filters", "--train", "4M", "--test", "1M"], "needs at least 2"),
    (["--filters", "--trials", "5"], "--trials does not apply to --filters"),
    (["--filters", "--train", "2M", "--train-bars", "100"], "not both"),
    (["--train", "2M"], "--train splits the data for --filters"),
])
def test_bad_filter_tune_input_is_one_error_line_and_exit_2(tmp_path, config, args, message):
    p = run("tune", "--config", str(config), "--strategy", S1, "--symbols", "EURUSD", "--out", str(tmp_path / "x"),
            *args, check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deskd: error:") and message in lines[0], p.stderr


def test_a_folder_that_is_not_a_filter_tune_is_refused(tmp_path, config):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    p = run("tune", "--filters", "--config", str(config), "--strategy", S1, "--train", "2M", "--test", "1M",
            "--out", str(out), check=False)
    assert p.returncode == 2 and "not an earlier deskd tune --filters folder" in p.stderr
    assert [f.name for f in out.iterdir()] == ["notes.txt"]
