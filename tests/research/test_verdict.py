"""deskd verdict on hand-made evidence: every gate on both sides of its threshold, missing
evidence fails, the exit code says whether everything passed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deskd.configs.models import VerdictConfig
from deskd.research.backtest import file_sha256
from deskd.research.verdict import VerdictInputError, judge, table
from tests.conftest import EXAMPLE, run

GOOD = {"oos_expectancy_r": 0.12, "dsr": [0.97, 0.99, 0.96], "pbo": [0.2, 0.3, 0.1], "p_week": 0.01,
        "break_even": 2.2, "share": 0.8}


def make_run(folder: Path, oos_expectancy_r: float | None = 0.12, dsr=(0.97, 0.99, 0.96), pbo=(0.2, 0.3, 0.1),
             p_week: float | None = 0.01, break_even: float | None = 2.2, share: float | None = 0.8,
             censored: str | None = None) -> Path:
    """A walk-forward folder holding just the evidence the verdict reads (None: that evidence
    was never produced)."""
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / "config.yaml")
    wf = {"strategy_id": "S1_TREND_EMA_ATR_ADX", "scenarios": ["A", "B", "C"],
          "out_of_sample": {"A": {"expectancy_r": 0.5}, "B": {"expectancy_r": 0.4},
                            "C": {"expectancy_r": oos_expectancy_r, "trades": 0 if oos_expectancy_r is None else 90}}}
    wf["splits"] = [{"split": n} for n in range(1, len(dsr) + 1)]
    (folder / "walkforward.json").write_text(json.dumps(wf))
    made_from = {"files_sha256": {name: file_sha256(str(folder / name)) for name in ("walkforward.json", "config.yaml")}}
    for n, (d, p) in enumerate(zip(dsr, pbo), start=1):
        (folder / "splits" / f"{n:02d}").mkdir(parents=True)
        (folder / "splits" / f"{n:02d}" / "tune.json").write_text(json.dumps(
            {"overfitting": {"dsr": {"value": d}, "pbo": {"value": p}}}))
    if p_week is not None:
        (folder / "montecarlo-A").mkdir()
        (folder / "montecarlo-A" / "montecarlo.json").write_text(json.dumps(
            {"inputs": made_from, "results": {"daily": {"p_week_dd_above_week_limit": {"probability": p_week}}}}))
    if break_even is not None or share is not None:
        (folder / "stress-A").mkdir()
        (folder / "stress-A" / "stress.json").write_text(json.dumps(
            {"inputs": made_from, "cost": {"break_even_cost_multiple": break_even, "break_even_censored": censored},
             "params": {"profitable_share": share}}))
    return folder


def _gates(folder: Path) -> dict[str, bool]:
    return {g.key: g.passed for g in judge(folder).gates}


def test_a_run_with_good_evidence_passes_every_gate(tmp_path):
    v = judge(make_run(tmp_path / "wf"))
    assert v.passed and all(g.passed for g in v.gates) and len(v.gates) == 6
    values = {g.key: g.value for g in v.gates}
    assert values == {"oos_expectancy_r": 0.12, "dsr": 0.97, "pbo": 0.2, "p_week_breach": 0.01,
                      "break_even_cost_multiple": 2.2, "profitable_neighbours": 0.8}  # DSR and PBO: medians


@pytest.mark.parametrize("key, good, bad", [
    ("oos_expectancy_r", {"oos_expectancy_r": 0.0001}, {"oos_expectancy_r": 0.0}),           # > 0
    ("dsr", {"dsr": (0.951, 0.2, 0.99)}, {"dsr": (0.95, 0.99, 0.2)}),                         # median > 0.95
    ("pbo", {"pbo": (0.49, 0.9, 0.1)}, {"pbo": (0.5, 0.1, 0.9)}),                             # median < 0.5
    ("p_week_breach", {"p_week": 0.0499}, {"p_week": 0.05}),                                  # < 0.05
    ("break_even_cost_multiple", {"break_even": 1.5}, {"break_even": 1.4999}),                # >= 1.5
    ("profitable_neighbours", {"share": 0.6}, {"share": 0.5999}),                             # >= 0.6
])
def test_each_gate_passes_and_fails_on_either_side_of_its_threshold(tmp_path, key, good, bad):
    ok = _gates(make_run(tmp_path / "good", **good))
    ko = _gates(make_run(tmp_path / "bad", **bad))
    assert ok[key] is True and ko[key] is False
    assert all(ok.values()) and [k for k, v in ko.items() if not v] == [key]


@pytest.mark.parametrize("missing, key, hint", [
    ({"p_week": None}, "p_week_breach", "run deskd montecarlo"),
    ({"break_even": None, "share": None}, "break_even_cost_multiple", "run deskd stress"),
    ({"share": None}, "profitable_neighbours", "--neighbours"),
    ({"oos_expectancy_r": None}, "oos_expectancy_r", "no out-of-sample trades under scenario 'C'"),
    ({"dsr": (), "pbo": ()}, "dsr", "no split's tune has a DSR"),
])
def test_missing_evidence_fails_its_gate_and_says_what_to_run(tmp_path, missing, key, hint):
    v = judge(make_run(tmp_path / "wf", **missing))
    g = next(g for g in v.gates if g.key == key)
    assert g.passed is False and g.value is None and hint in g.note
    assert not v.passed


def test_a_censored_break_even_says_which_end_of_the_grid(tmp_path):
    v = judge(make_run(tmp_path / "wf", break_even=3.0, censored="at_or_above"))
    g = next(g for g in v.gates if g.key == "break_even_cost_multiple")
    assert g.passed and "stays positive" in g.note


def test_only_the_evidence_scenarios_monte_carlo_and_stress_count(tmp_path):
    # arrange: good evidence under A (the run's first scenario), bad under C
    wf = make_run(tmp_path / "wf")
    for name, doc in (("montecarlo-C/montecarlo.json", {"results": {"daily": {"p_week_dd_above_week_limit": {
            "probability": 0.2}}}}), ("stress-C/stress.json", {"cost": {"break_even_cost_multiple": 1.1},
                                                                "params": {"profitable_share": 0.1}})):
        (wf / name).parent.mkdir()
        (wf / name).write_text(json.dumps(doc))
    # act / assert: A's count by default, C's when the config says so
    assert judge(wf).passed
    v = judge(wf, VerdictConfig(evidence_scenario="C"))
    assert {g.key for g in v.gates if not g.passed} == {"p_week_breach", "break_even_cost_multiple",
                                                          "profitable_neighbours"}
    assert "Monte Carlo C" in v.gate("p_week_breach").label


def test_evidence_made_from_an_earlier_run_of_the_folder_is_stale(tmp_path):
    wf = make_run(tmp_path / "wf")
    doc = json.loads((wf / "walkforward.json").read_text())
    doc["out_of_sample"]["C"]["expectancy_r"] = 0.2  # the walk-forward was run again
    (wf / "walkforward.json").write_text(json.dumps(doc))
    v = judge(wf)
    for key in ("break_even_cost_multiple", "profitable_neighbours"):
        assert not v.gate(key).passed and v.gate(key).note.startswith("stale: stress-A/stress.json")
        assert "walkforward.json" in v.gate(key).note and "run deskd stress" in v.gate(key).note


def test_the_splits_of_walkforward_json_count_not_every_folder_left_in_splits(tmp_path):
    wf = make_run(tmp_path / "wf", dsr=(0.97, 0.99, 0.96, 0.1, 0.1))  # an earlier, longer run left 05, 04
    doc = json.loads((wf / "walkforward.json").read_text())
    doc["splits"] = doc["splits"][:3]
    (wf / "walkforward.json").write_text(json.dumps(doc))
    g = judge(wf).gate("dsr")
    assert g.value == 0.97 and g.label.endswith("median of 3 of 3 splits")


@pytest.mark.parametrize("name, content", [
    ("walkforward.json", {"strategy_id": "S1", "scenarios": ["A", "C"], "out_of_sample": [1], "splits": 5}),
    ("stress-A/stress.json", {"cost": [1], "params": "x", "inputs": None}),
    ("montecarlo-A/montecarlo.json", {"results": {"daily": [0.1]}}),
])
def test_damaged_evidence_fails_its_gates_without_a_traceback(tmp_path, name, content):
    wf = make_run(tmp_path / "wf")
    (wf / name).write_text(json.dumps(content))
    v = judge(wf)
    assert not v.passed


def test_a_damaged_split_tune_is_left_out_of_the_medians(tmp_path):
    wf = make_run(tmp_path / "wf")
    (wf / "splits/01/tune.json").write_text(json.dumps({"overfitting": 3}))
    v = judge(wf)
    assert v.gate("dsr").label.endswith("median of 2 of 3 splits") and v.gate("dsr").value == pytest.approx(0.975)


def test_gates_from_another_config_and_an_explicit_scenario(tmp_path):
    wf = make_run(tmp_path / "wf", oos_expectancy_r=-0.1)
    assert not judge(wf).passed
    lenient = VerdictConfig(oos_scenario="A", dsr_min=0.0, pbo_max=1.0)
    assert judge(wf, lenient).passed  # scenario A's 0.5 R
    with pytest.raises(VerdictInputError, match="verdict.oos_scenario 'Z'"):
        judge(wf, VerdictConfig(oos_scenario="Z"))


def test_not_a_walkforward_folder_is_refused(tmp_path):
    with pytest.raises(VerdictInputError, match="not a walk-forward folder"):
        judge(tmp_path)
    wf = make_run(tmp_path / "wf")
    (wf / "stress-A" / "stress.json").write_text("{not json")
    with pytest.raises(VerdictInputError, match="stress.json: cannot read it"):
        judge(wf)


def test_table_puts_runs_side_by_side_within_80_columns(tmp_path):
    a = judge(make_run(tmp_path / "a"))
    b = judge(make_run(tmp_path / "b", share=0.1))
    text = table([a, b])
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("  "))  # notes: paths
    row = next(line for line in text.splitlines() if line.startswith("profitable_neighbours"))
    assert "80.0% PASS" in row and "10.0% FAIL" in row


def test_exit_code_is_0_only_when_every_gate_of_every_run_passes(tmp_path):
    good, bad = make_run(tmp_path / "good"), make_run(tmp_path / "bad", pbo=(0.9, 0.9, 0.9))
    p = run("verdict", str(good), check=False)
    assert p.returncode == 0, p.stderr
    assert (good / "verdict" / "verdict.json").exists() and (good / "verdict" / "report.html").exists()
    p = run("verdict", str(good), str(bad), "--json", check=False)
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["passed"] is False and [r["passed"] for r in doc["runs"]] == [True, False]
    p = run("verdict", str(tmp_path / "nowhere"), check=False)
    assert p.returncode == 2 and p.stderr.startswith("deskd: error: ") and "not a walk-forward" in p.stderr


def test_a_reader_that_closes_the_pipe_first_ends_the_command_quietly(tmp_path):
    import subprocess

    from tests.conftest import deskd_cmd

    good = make_run(tmp_path / "good")
    # `true` exits without reading: deskd's first write meets a closed pipe
    p = subprocess.run(["bash", "-c", f"{deskd_cmd()[0]} verdict {good} --json | true; echo ${{PIPESTATUS[0]}}"],
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "141", p.stderr  # 128 + SIGPIPE, as the shell reports a killed writer
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
