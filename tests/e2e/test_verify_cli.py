"""The real `deskd backtest` and `deskd verify` on the bundled sample: two runs on the same
inputs have the same manifest and run_id wherever they are written; verify passes on a fresh
run, fails (exit 1, naming the file) after a byte of a Parquet file, config.yaml or a deleted
file, and refuses (exit 2, one error line) a damaged run.json or a folder that is no run."""

import json
import shutil

import pytest

from tests.conftest import EXAMPLE, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The sample, every scenario, run twice into different folders: (first, second)."""
    base = tmp_path_factory.mktemp("verify")
    first, second = base / "first", base / "elsewhere" / "second"
    for out in (first, second):
        run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--quiet")
    return first, second


@pytest.fixture
def copy(runs, tmp_path):
    return shutil.copytree(runs[0], tmp_path / "run")


def verify(folder, *args):
    return run("verify", str(folder), *args, check=False)


def test_two_runs_on_the_same_inputs_have_identical_manifests_and_run_ids(runs):
    first, second = runs
    assert (first / "manifest.json").read_bytes() == (second / "manifest.json").read_bytes()
    assert (first / "run.json").read_bytes() == (second / "run.json").read_bytes()
    man = json.loads((first / "manifest.json").read_text())
    assert {"report.html", "trades.parquet", "decisions.parquet", "equity.parquet", "run.json"} <= set(man["files"])
    assert json.loads((first / "run.json").read_text())["scenarios"] == ["A", "B", "C"]


def test_verify_passes_on_a_fresh_run(runs):
    p = verify(runs[0])
    assert p.returncode == 0, p.stderr
    run_id = json.loads((runs[0] / "run.json").read_text())["run_id"]
    assert f"run {run_id}: OK" in p.stdout and p.stderr == ""
    as_json = json.loads(verify(runs[1], "--json").stdout)
    assert as_json["ok"] is True and as_json["run_id"] == run_id and as_json["failures"] == []


def test_one_byte_of_a_parquet_file_changed_exits_1_naming_it(copy):
    p = copy / "decisions.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x20
    p.write_bytes(bytes(data))
    r = verify(copy)
    assert r.returncode == 1
    assert "deskd verify: FAILED decisions.parquet: SHA-256" in r.stderr and "Traceback" not in r.stderr


def test_an_edited_config_exits_1_naming_it(copy):
    cfg = copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("starting_equity_usd: 100000", "starting_equity_usd: 100001"))
    r = verify(copy)
    assert r.returncode == 1 and "FAILED config.yaml" in r.stderr and "edited after the run" in r.stderr
    assert "FAILED run.json: config_fingerprint" in r.stderr


def test_a_deleted_file_exits_1_naming_it(copy):
    (copy / "trades.parquet").unlink()
    r = verify(copy)
    assert r.returncode == 1
    assert "deskd verify: FAILED trades.parquet: listed in manifest.json but missing" in r.stderr


def test_a_damaged_run_json_exits_2_with_one_error_line(copy):
    (copy / "run.json").write_text('{"format": "deskd.run/2", "run_id": ')
    r = verify(copy)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines()] == [ln for ln in r.stderr.splitlines() if ln.startswith("deskd: error:")]
    assert len(r.stderr.splitlines()) == 1 and "run.json: damaged" in r.stderr


def test_a_folder_that_is_no_run_exits_2(tmp_path):
    r = verify(tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("deskd: error:") and "not a result folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_run_json_holding_nan_is_damage_exit_2(copy):
    doc = (copy / "run.json").read_text().replace('"window": null', '"window": {"from": NaN}', 1)
    (copy / "run.json").write_text(doc if "NaN" in doc else doc.replace("{", '{"x": NaN, ', 1))
    r = verify(copy)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "NaN is not a JSON number" in r.stderr
