"""The run export (deskd.research.export): run.json's content-derived id, trades.parquet and
equity.parquet holding the CSVs' rows typed, manifest.json over whatever the folder holds, and
verify_run's failures, warnings and refusals."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from deskd.configs.loader import dump_config, load_config
from deskd.research import export as ex
from deskd.research.backtest import config_sha256, run_backtest
from tests.conftest import EXAMPLE


@pytest.fixture(scope="module")
def example():
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def two_runs(example, tmp_path_factory):
    """Scenario A of the sample run twice in-process, into folders at different depths, the
    bar files copied beside them (so a test may change one): (first folder, second, config)."""
    base = tmp_path_factory.mktemp("export")
    files = {}
    for sym, path in example.data.files.items():
        files[sym] = str(base / "bars" / f"{sym}.csv.gz")
        (base / "bars").mkdir(exist_ok=True)
        shutil.copyfile(path, files[sym])
    cfg = example.model_copy(update={"data": example.data.model_copy(update={"files": files})})
    first, second = base / "one", base / "deeper" / "two"
    run_backtest(cfg, ["A"], first)
    run_backtest(cfg, ["A"], second)
    return first, second, cfg


@pytest.fixture
def run_copy(two_runs, tmp_path):
    """A copy of the first run's folder, to damage."""
    return shutil.copytree(two_runs[0], tmp_path / "run")


def test_two_runs_on_the_same_inputs_have_identical_run_json_and_manifest(two_runs):
    first, second, cfg = two_runs
    for name in ("run.json", "manifest.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    run = json.loads((first / "run.json").read_text())
    assert len(run["run_id"]) == 16 and run["config"]["sha256"] == config_sha256(cfg)
    assert run["scenarios"] == ["A"] and run["window"] is None
    assert run["outputs"] == {"decisions": "parquet", "counterfactuals": "on"}
    meta = json.loads((first / "metadata.json").read_text())
    assert set(meta) >= {"created_utc", "host"} and "created_utc" not in (first / "run.json").read_text()


def test_the_manifest_lists_every_file_but_itself_and_the_metadata_with_plain_sha256(two_runs):
    first = two_runs[0]
    man = json.loads((first / "manifest.json").read_text())
    on_disk = sorted(p.name for p in first.iterdir())
    assert sorted(man["files"]) == sorted(set(on_disk) - {"manifest.json", "metadata.json"})
    assert {"report.html", "run.json", "trades.parquet", "equity.parquet", "decisions.parquet"} <= set(man["files"])
    for name, rec in man["files"].items():
        assert rec == {"size": (first / name).stat().st_size, "sha256": ex.file_sha256(first / name)}
    assert man["run_id"] == json.loads((first / "run.json").read_text())["run_id"]


def test_the_manifest_is_computed_from_the_folder_not_from_a_list_of_names(tmp_path):
    (tmp_path / "counterfactuals.parquet").write_bytes(b"PAR1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.csv").write_text("a\n")
    (tmp_path / "metadata.json").write_text("{}")
    man = ex.write_manifest(tmp_path)
    assert list(man["files"]) == ["counterfactuals.parquet", "sub/x.csv"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == man


def test_a_manifest_of_named_files_lists_them_and_their_folders_and_leaves_out_state(tmp_path):
    (tmp_path / "walkforward.json").write_text("{}")
    (tmp_path / "splits" / "01").mkdir(parents=True)
    (tmp_path / "splits" / "01" / "tune.json").write_text("{}")
    (tmp_path / "study.db").write_bytes(b"SQLite")
    man = ex.write_manifest(tmp_path, names=["walkforward.json", "splits"], kind="walkforward", state=["study.db"])
    assert list(man["files"]) == ["splits/01/tune.json", "walkforward.json"] and man["kind"] == "walkforward"
    assert "study.db" in man["not_listed"]
    v = ex.verify_run(tmp_path)  # no run.json: the files alone, and no warning for the study
    assert v.ok and v.kind == "walkforward" and v.checked == 2 and v.warnings == []
    (tmp_path / "splits" / "01" / "tune.json").write_text("{ }")
    assert [f for f, _ in ex.verify_run(tmp_path).failures] == ["splits/01/tune.json"]
    with pytest.raises(FileNotFoundError, match="report.html"):
        ex.write_manifest(tmp_path, names=["report.html"])


def test_the_run_id_follows_the_inputs_and_nothing_else():
    fp, out = "a" * 64, {"decisions": "parquet", "counterfactuals": "on"}
    base = ex.run_id_of("0.1.0", fp, ["A"], None, out)
    assert ex.run_id_of("0.1.0", fp, ["A"], None, dict(out)) == base
    changed = [ex.run_id_of("0.1.1", fp, ["A"], None, out),
               ex.run_id_of("0.1.0", "c" * 64, ["A"], None, out),
               ex.run_id_of("0.1.0", fp, ["A", "B"], None, out),
               ex.run_id_of("0.1.0", fp, ["B", "A"], None, out),
               ex.run_id_of("0.1.0", fp, ["A"], {"from": "2019-01-01T00:00:00Z", "to": None, "warmup_bars": 200},
                            out),
               ex.run_id_of("0.1.0", fp, ["A"], None, {**out, "counterfactuals": "off"}),
               ex.run_id_of("0.1.0", fp, ["A"], None, {**out, "decisions": "csv"})]
    assert len({base, *changed}) == 8


def test_the_config_fingerprint_takes_the_bars_content_not_their_path(example, tmp_path):
    """The same bars at another path give the same fingerprint, and so does a health reference
    report (which a backtest never reads) at another path; other bars or another setting do
    not; a file of a symbol the run does not read is left out."""
    data = {s: ex.file_sha256(p) for s, p in example.data.files.items()}
    moved = {}
    for sym, path in example.data.files.items():
        moved[sym] = str(tmp_path / f"{sym}-copy.csv.gz")
        shutil.copyfile(path, moved[sym])
    doc = yaml.safe_load(dump_config(example))
    moved_doc = yaml.safe_load(dump_config(example.model_copy(
        update={"data": example.data.model_copy(update={"files": moved})})))
    assert doc["data"]["files"] != moved_doc["data"]["files"]
    base = ex.config_fingerprint(doc, data)
    assert ex.config_fingerprint(moved_doc, data) == base
    assert ex.config_fingerprint(moved_doc, {**data, "EURUSD": "0" * 64}) != base
    extra = yaml.safe_load(dump_config(example))
    extra["data"]["files"]["AUDUSD"] = "/elsewhere/AUDUSD.csv"
    assert ex.config_fingerprint(extra, data) == base
    edited = yaml.safe_load(dump_config(example))
    edited["risk"]["r_base"] = 0.006
    assert ex.config_fingerprint(edited, data) != base
    assert ex.config_identity(doc, data)["data"]["files"] == {s: f"sha256:{h}" for s, h in sorted(data.items())}
    reports = [yaml.safe_load(dump_config(example)) for _ in range(2)]
    for d, folder in zip(reports, ("/desk/one", "/desk/two")):
        d["health"]["reference_report"] = f"{folder}/report.json"
    assert ex.config_fingerprint(reports[0], data) == ex.config_fingerprint(reports[1], data)


def test_trades_parquet_holds_trades_csv_rows_typed_with_each_fill(two_runs):
    first = two_runs[0]
    pq_trades = pd.read_parquet(first / "trades.parquet")
    csv_trades = pd.read_csv(first / "trades.csv", keep_default_na=False)
    assert list(pq_trades.columns[:len(csv_trades.columns)]) == list(csv_trades.columns)
    assert len(pq_trades) == len(csv_trades) > 100
    assert str(pq_trades["fill_time"].dtype) == "datetime64[ms, UTC]"
    assert pq_trades["units"].dtype == "int64" and pq_trades["entry_price"].dtype == "float64"
    for col in ("signal_time", "fill_time", "exit_time"):
        assert (pq_trades[col] == pd.to_datetime(csv_trades[col], utc=True)).all(), col
    for col in ("trade_id", "units", "entry_price", "exit_price", "sl_price", "pnl_usd", "r_multiple", "hold_bars"):
        assert (pq_trades[col] == csv_trades[col]).all(), col
    for col in ("symbol", "side", "exit_reason", "regime", "reason_codes", "client_order_id"):
        assert (pq_trades[col] == csv_trades[col].astype(str)).all(), col
    # each side's fill: reference price, cost split summing to that side's cost, the two to cost_pips
    split = pq_trades["entry_spread_pips"] + pq_trades["entry_slippage_pips"]
    assert (split - pq_trades["entry_cost_pips"]).abs().max() < 2e-4
    assert ((pq_trades["entry_cost_pips"] + pq_trades["exit_cost_pips"]) - pq_trades["cost_pips"]).abs().max() < 0.006
    longs = pq_trades["side"] == "LONG"
    assert (pq_trades.loc[longs, "entry_price"] > pq_trades.loc[longs, "entry_ref_price"]).all()
    assert set(pq_trades["exit_reason"]) <= {"SL", "TP", "TIME", "EOD"}
    tp = pq_trades[pq_trades["exit_reason"] == "TP"]
    assert (tp["exit_ref_price"] != 0).all() and tp["tp_price"].notna().all()


def test_equity_parquet_holds_equity_csv_rows_typed(two_runs):
    first = two_runs[0]
    a, b = pd.read_parquet(first / "equity.parquet"), pd.read_csv(first / "equity.csv")
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert (a["time"] == pd.to_datetime(b["time"], utc=True)).all()
    assert (a["equity_usd"] == b["equity_usd"]).all() and a["open_positions"].dtype == "int64"


def test_a_fresh_run_verifies(two_runs):
    v = ex.verify_run(two_runs[0])
    listed = json.loads((two_runs[0] / "manifest.json").read_text())["files"]
    assert v.ok and v.failures == [] and v.warnings == [] and v.checked == len(listed) >= 9


def test_one_byte_of_a_parquet_file_changed_fails_naming_it(run_copy):
    p = run_copy / "trades.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    v = ex.verify_run(run_copy)
    assert not v.ok and [f for f, _ in v.failures] == ["trades.parquet"]
    assert "SHA-256" in v.failures[0][1]


def test_an_edited_config_fails_the_manifest_and_the_fingerprint(run_copy):
    p = run_copy / "config.yaml"
    p.write_text(p.read_text().replace("r_base: 0.005", "r_base: 0.006"))
    v = ex.verify_run(run_copy)
    assert [f for f, _ in v.failures] == ["config.yaml", "config.yaml", "run.json"]
    assert "edited after the run" in v.failures[1][1] and "config_fingerprint" in v.failures[2][1]


@pytest.mark.parametrize("extra", ["when: 2019-01-01", "size: .nan"])
def test_a_config_yaml_with_a_value_no_config_holds_fails_naming_it(run_copy, extra):
    p = run_copy / "config.yaml"
    p.write_text(p.read_text() + extra + "\n")
    v = ex.verify_run(run_copy)
    assert ("config.yaml", "holds a value") in [(f, w[:13]) for f, w in v.failures]


def test_a_run_json_of_an_older_deskd_is_named_as_such(run_copy):
    run = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**run, "format": "deskd.run/1"}))
    with pytest.raises(ex.RunFolderError, match="written by an older deskd .deskd.run/1.*run the backtest again"):
        ex.verify_run(run_copy)


def test_a_backtest_manifest_without_run_json_fails_rather_than_passing_unchecked(run_copy):
    (run_copy / "run.json").unlink()
    man = json.loads((run_copy / "manifest.json").read_text())
    del man["files"]["run.json"]
    man["content_sha256"] = ex._sha256(man["files"])  # made to agree: only run.json is gone
    (run_copy / "manifest.json").write_text(json.dumps(man))
    v = ex.verify_run(run_copy)
    assert [f for f, _ in v.failures] == ["run.json"] and "missing" in v.failures[0][1]


@pytest.mark.parametrize("field,value", [("not_listed", 5), ("not_listed", "study.db"), ("kind", 3), ("run_id", [])])
def test_a_manifest_with_a_malformed_field_is_a_run_folder_error(tmp_path, field, value):
    (tmp_path / "verdict.json").write_text("{}")
    man = ex.write_manifest(tmp_path, kind="verdict")
    (tmp_path / "manifest.json").write_text(json.dumps({**man, field: value}))
    with pytest.raises(ex.RunFolderError, match="manifest.json: damaged"):
        ex.verify_run(tmp_path)


def test_a_config_yaml_that_is_not_a_mapping_fails_naming_it(run_copy):
    (run_copy / "config.yaml").write_text("- just\n- a list\n")
    v = ex.verify_run(run_copy)
    assert ("config.yaml", "not a YAML mapping: the config fingerprint cannot be re-derived") in v.failures


def test_a_deleted_file_fails_and_an_added_one_is_reported(run_copy):
    (run_copy / "equity.parquet").unlink()
    (run_copy / "notes.txt").write_text("mine\n")
    (run_copy / "montecarlo-A").mkdir()
    (run_copy / "montecarlo-A" / "montecarlo.json").write_text("{}")
    v = ex.verify_run(run_copy)
    assert v.failures == [("equity.parquet", "listed in manifest.json but missing")]
    assert sorted(f for f, _ in v.warnings) == ["montecarlo-A/", "notes.txt"]


def test_added_files_alone_are_warnings_not_failures(run_copy):
    (run_copy / "notes.txt").write_text("mine\n")
    v = ex.verify_run(run_copy)
    assert v.ok and [f for f, _ in v.warnings] == ["notes.txt"]


def test_a_changed_data_file_fails_and_a_missing_one_warns(run_copy, two_runs, tmp_path):
    cfg = two_runs[2]
    eur, gbp = cfg.data.files["EURUSD"], cfg.data.files["GBPUSD"]
    text = (run_copy / "config.yaml").read_text()
    moved_eur, moved_gbp = tmp_path / "eur.csv.gz", tmp_path / "gbp.csv.gz"
    shutil.copyfile(eur, moved_eur)
    shutil.copyfile(gbp, moved_gbp)
    moved_eur.write_bytes(moved_eur.read_bytes() + b"\n")
    moved_gbp.unlink()
    # the files config.yaml names are the ones checked: point it at the changed and the missing copy
    (run_copy / "config.yaml").write_text(text.replace(eur, str(moved_eur)).replace(gbp, str(moved_gbp)))
    v = ex.verify_run(run_copy)
    assert (str(moved_eur), "EURUSD's data file changed") in [(f, w.split(":")[0]) for f, w in v.failures]
    assert [f for f, _ in v.warnings] == [str(moved_gbp)]


def test_run_id_is_re_derived_from_the_recorded_inputs(run_copy):
    run = json.loads((run_copy / "run.json").read_text())
    run["scenarios"] = ["A", "B"]  # the recorded inputs no longer give the recorded id
    (run_copy / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    ex.write_manifest(run_copy, run["run_id"])  # and the manifest made to agree
    v = ex.verify_run(run_copy)
    assert [f for f, _ in v.failures] == ["run.json"] and "run_id" in v.failures[0][1]


@pytest.mark.parametrize("damage", ["not json", "[]", '{"format": "deskd.run/2"}', '{"format": "other"}'])
def test_a_damaged_run_json_is_a_run_folder_error(run_copy, damage):
    (run_copy / "run.json").write_text(damage)
    with pytest.raises(ex.RunFolderError, match="run.json: damaged"):
        ex.verify_run(run_copy)


def test_a_damaged_or_missing_manifest_and_a_non_folder_are_run_folder_errors(run_copy, tmp_path):
    (run_copy / "manifest.json").write_text('{"format": "deskd.manifest/1", "files": {"a": 1}}')
    with pytest.raises(ex.RunFolderError, match="manifest.json: damaged"):
        ex.verify_run(run_copy)
    (run_copy / "manifest.json").unlink()
    with pytest.raises(ex.RunFolderError, match="run: no manifest.json"):
        ex.verify_run(run_copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ex.RunFolderError, match=r"not a result folder \(no manifest.json or run.json\)"):
        ex.verify_run(tmp_path / "empty")
    with pytest.raises(ex.RunFolderError, match="no such folder"):
        ex.verify_run(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ex.RunFolderError, match="not a folder"):
        ex.verify_run(tmp_path / "file")
