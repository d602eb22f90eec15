"""The real `deskd` command on the bundled sample."""

import csv
import json
from collections import defaultdict

import pytest

from tests.conftest import EXAMPLE, ROOT, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run1(tmp_path_factory):
    out = tmp_path_factory.mktemp("bt") / "run1"
    # decisions.csv, as the golden fingerprint was recorded (the default is decisions.parquet,
    # whose rows tests/e2e/test_backtest_parallel.py checks against this file's)
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--decisions", "csv")
    return out, p


def test_backtest_writes_every_output(run1):
    out, p = run1
    for name in ("trades.csv", "equity.csv", "decisions.csv", "report.json", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert "scenario" in p.stdout and "A" in p.stdout


def test_s1_trades_every_symbol_in_every_scenario_and_costs_rise_a_b_c(run1):
    out, _ = run1
    seen = defaultdict(set)
    cost = defaultdict(float)
    with open(out / "trades.csv") as fh:
        for row in csv.DictReader(fh):
            seen[row["scenario"]].add(row["symbol"])
            cost[row["scenario"]] += float(row["cost_pips"])
            assert row["strategy_id"] == "S1_TREND_EMA_ATR_ADX"
            assert row["exit_reason"] in {"SL", "TP", "TIME", "EOD"}
    assert {s: sorted(v) for s, v in seen.items()} == {s: ["EURUSD", "GBPUSD", "USDJPY"] for s in "ABC"}
    report = json.loads((out / "report.json").read_text())
    per_trade = {s: report["scenarios"][s]["overall"]["cost_pips"] / report["scenarios"][s]["overall"]["trades"]
                 for s in "ABC"}
    assert per_trade["A"] < per_trade["B"] < per_trade["C"]
    assert cost["A"] > 0


def test_report_has_metrics_overall_and_by_strategy_symbol_regime(run1):
    out, _ = run1
    r = json.loads((out / "report.json").read_text())["scenarios"]["A"]
    for key in ("trades", "win_rate", "expectancy_pips", "expectancy_usd", "profit_factor",
                "max_drawdown_usd", "max_drawdown_frac", "cvar_95_usd", "longest_win_streak",
                "longest_loss_streak", "sharpe_daily_ann", "sortino_daily_ann"):
        assert key in r["overall"]
    assert set(r["by_symbol"]) == {"EURUSD", "GBPUSD", "USDJPY"}
    assert set(r["by_strategy"]) == {"S1_TREND_EMA_ATR_ADX"}
    assert all(k.startswith("VOL=") for k in r["by_regime"])
    assert sum(v["trades"] for v in r["by_symbol"].values()) == r["overall"]["trades"]
    assert r["decisions"]["traded"] >= r["overall"]["trades"]


def test_two_runs_write_byte_identical_trades_and_report(run1, tmp_path):
    out1, _ = run1
    out2 = tmp_path / "run2"
    run("backtest", "--config", str(EXAMPLE), "--out", str(out2), "--quiet", "--decisions", "csv")
    for name in ("trades.csv", "report.json", "decisions.csv", "equity.csv"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def test_bad_bar_file_exits_2_with_one_message_and_leaves_no_output(tmp_path):
    bad = tmp_path / "EURUSD.csv"
    bad.write_text("time,open,high,low,close\n2026-01-15 10:00:00,1.1,1.2,1.0,1.1\n"
                   "2026-01-15 10:15:00,1.1,1.0,1.0,1.1\n")
    out = tmp_path / "out"
    p = run("backtest", "--config", str(EXAMPLE), "--data", f"EURUSD={bad}", "--data-timezone", "UTC",
            "--out", str(out), check=False)
    assert p.returncode == 2
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("deskd: error:")]
    assert errors == [f"deskd: error: {bad}: line 3: high 1.0 is below max(open, close) = 1.1"]
    assert "Traceback" not in p.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "desk.yaml"
    cfg.write_text(EXAMPLE.read_text().replace("r_base: 0.005", "r_base: 0.005\n  r_bse: 1"))
    p = run("backtest", "--config", str(cfg), "--out", str(tmp_path / "o"), check=False)
    assert p.returncode == 2 and "risk.r_bse: unknown key" in p.stderr
    p = run("check-config", str(cfg), check=False)
    assert p.returncode == 2 and "risk.r_bse" in p.stderr


def test_existing_output_folder_is_not_overwritten_without_force(run1):
    out, _ = run1
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(out), check=False)
    assert p.returncode == 2 and "--force" in p.stderr


def test_unknown_scenario_and_help(tmp_path):
    p = run("backtest", "--config", str(EXAMPLE), "--scenarios", "Z", "--out", str(tmp_path / "o"), check=False)
    assert p.returncode == 2 and "unknown scenario(s) 'Z'" in p.stderr
    assert "--scenarios" in run("backtest", "--help").stdout


def test_bad_data_arguments_exit_2_with_a_plain_message(tmp_path):
    p = run("backtest", "--config", str(EXAMPLE), "--data-timezone", "Mars/Olympus",
            "--out", str(tmp_path / "o"), check=False)
    assert p.returncode == 2
    assert "deskd: error: --data-timezone: unknown IANA timezone 'Mars/Olympus'" in p.stderr
    p = run("backtest", "--config", str(EXAMPLE), "--data", "EURUSD", "--out", str(tmp_path / "o"), check=False)
    assert p.returncode == 2 and "expected SYMBOL=PATH" in p.stderr
    p = run("backtest", "--config", str(EXAMPLE), "--data", f"AUDUSD={tmp_path}/x.csv",
            "--out", str(tmp_path / "o"), check=False)
    assert p.returncode == 2 and "--data: 'AUDUSD' not in universe.symbols" in p.stderr


def test_sample_backtest_outputs_are_byte_identical_to_the_recorded_ones(run1):
    """The re-cut of #9 (and any later refactor) must not change what a backtest writes.
    tests/golden/sample_outputs.json was recorded from main at c964979, before the re-cut;
    a deliberate behaviour change re-records it (make_fingerprint.py) and says why. Re-recorded
    (#10): equity.csv gained its BAR rows (every span's peak, low and deepest fall), the other
    files' hashes unchanged. Re-recorded (#11): report.json's state transitions gained the
    HALTED -> HALTED rows of a deeper drawdown halt taking over a day halt (trades, decisions
    and equity unchanged). Re-recorded (#12): trades.csv gained the cost split's six columns at
    its end; its first 26 columns are byte for byte what they were, the other files unchanged.
    Re-recorded (#13): report.json gained each scenario's breakdowns (the other files unchanged).
    Re-recorded (#13): decisions.csv gained the decision's context at its end (decision_price,
    atr_pips, reason_codes); its first 11 columns are byte for byte what they were, the other
    files unchanged. Re-recorded (#13): report.json's breakdowns gained the skip table of the
    counterfactuals (the other files unchanged)."""
    from tests.golden.make_fingerprint import fingerprint

    out, _ = run1
    expected = json.loads((ROOT / "tests" / "golden" / "sample_outputs.json").read_text())
    assert fingerprint(out) == expected
