"""deskd backtest runs its scenarios in worker processes (--jobs) and writes its decisions as
Parquet by default (--decisions): every output is byte for byte what one process writes, the
Parquet file holds decisions.csv's rows, --decisions none still reports, a user strategy
loaded from the config's folder runs in the workers, and a bad bar file in a worker is the
same one error line and exit 2 as in one process, leaving nothing behind."""

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from deskd.research.outputs import decision_csv_rows
from tests.conftest import EXAMPLE, ROOT, run
from tests.golden.make_fingerprint import fingerprint

pytestmark = pytest.mark.e2e

DONCHIAN = ROOT / "examples" / "strategies" / "donchian.yaml"
OUTPUTS = ("trades.csv", "equity.csv", "report.json", "report.html", "config.yaml", "counterfactuals.parquet")
#: the export (deskd.research.export): the same bytes whatever --jobs; run.json and the manifest
#: name the decisions file, so they differ between --decisions formats; metadata.json (wall-clock) differs
EXPORT = ("trades.parquet", "equity.parquet", "run.json", "manifest.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The sample, three scenarios: {name: (folder, completed process)} for one process
    (Parquet), two workers (Parquet, CSV, none)."""
    base = tmp_path_factory.mktemp("par")
    out = {}
    for name, args in {"seq": ["--jobs", "1"], "par": ["--jobs", "2"],
                       "par_csv": ["--jobs", "2", "--decisions", "csv"],
                       "par_none": ["--jobs", "2", "--decisions", "none"]}.items():
        folder = base / name
        out[name] = folder, run("backtest", "--config", str(EXAMPLE), "--out", str(folder), "--quiet", *args)
    return out


def test_two_workers_write_every_output_byte_for_byte_as_one_process(runs):
    seq, par = runs["seq"][0], runs["par"][0]
    assert sorted(p.name for p in seq.iterdir()) == sorted(p.name for p in par.iterdir()) == sorted(
        [*OUTPUTS, *EXPORT, "metadata.json", "decisions.parquet"])
    for name in (*OUTPUTS, *EXPORT, "decisions.parquet"):
        assert (seq / name).read_bytes() == (par / name).read_bytes(), name


def test_a_parallel_csv_run_is_the_recorded_golden_run(runs):
    expected = json.loads((ROOT / "tests" / "golden" / "sample_outputs.json").read_text())
    assert fingerprint(runs["par_csv"][0]) == expected


def test_decisions_parquet_holds_decisions_csv_rows_and_the_page_is_the_same(runs):
    pq_file, csv_run = runs["par"][0] / "decisions.parquet", runs["par_csv"][0]
    table = pq.read_table(pq_file)
    rows = list(csv.reader(io.StringIO((csv_run / "decisions.csv").read_text())))
    assert rows[0] == table.column_names
    assert rows[1:] == decision_csv_rows(table) and len(rows) > 40_000
    meta = pq.ParquetFile(pq_file).metadata
    assert meta.num_row_groups == 3  # one per scenario here (fewer than 100,000 decisions each)
    assert pq_file.stat().st_size < (csv_run / "decisions.csv").stat().st_size / 5
    for name in OUTPUTS:
        assert (runs["par"][0] / name).read_bytes() == (csv_run / name).read_bytes(), name


def test_decisions_none_writes_no_file_and_reports_the_same(runs):
    none, csv_run = runs["par_none"][0], runs["par_csv"][0]
    assert sorted(p.name for p in none.iterdir()) == sorted([*OUTPUTS, *EXPORT, "metadata.json"])
    for name in ("trades.csv", "equity.csv", "report.json"):
        assert (none / name).read_bytes() == (csv_run / name).read_bytes(), name
    decisions = json.loads((none / "report.json").read_text())["scenarios"]["A"]["decisions"]
    assert decisions["signals"] > 10_000 and decisions["skipped"]["position_open"] > 0
    assert "the run wrote no decision file" in (none / "report.html").read_text()


def test_progress_is_a_line_per_scenario_start_and_finish_off_a_terminal(tmp_path):
    for jobs in ("1", "2"):
        p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / jobs), "--jobs", jobs,
                "--decisions", "none")
        lines = p.stderr.splitlines()
        for scn in "ABC":
            assert lines.count(f"deskd backtest: scenario {scn} ...") == 1, p.stderr
            assert sum(ln.startswith(f"deskd backtest: scenario {scn} done (35,994 bars, ") for ln in lines) == 1
        assert len(lines) == 6, p.stderr
        assert "decisions" not in p.stdout.splitlines()[-1]  # the outputs line names no decision file


def test_a_user_strategy_from_the_config_folder_runs_in_the_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the module is found from the config's folder, not the working one
    run("backtest", "--config", str(DONCHIAN), "--out", "one", "--jobs", "1", "--quiet")
    run("backtest", "--config", str(DONCHIAN), "--out", "two", "--jobs", "2", "--quiet")
    for name in (*OUTPUTS, "decisions.parquet"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert {"donchian_20", "donchian_55"} <= set(report["scenarios"]["C"]["by_strategy"])


def test_a_bad_bar_file_in_a_worker_is_one_error_line_exit_2_and_nothing_left(tmp_path):
    bad = tmp_path / "EURUSD.csv"
    bad.write_text("time,open,high,low,close\n2026-01-15 10:00:00,1.1,1.2,1.0,1.1\n"
                   "2026-01-15 10:15:00,1.1,1.0,1.0,1.1\n")
    out = tmp_path / "out"
    p = run("backtest", "--config", str(EXAMPLE), "--data", f"EURUSD={bad}", "--data-timezone", "UTC",
            "--out", str(out), "--jobs", "2", check=False)
    assert p.returncode == 2, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("deskd: error:")]
    assert errors == [f"deskd: error: {bad}: line 3: high 1.0 is below max(open, close) = 1.1"]
    assert "Traceback" not in p.stderr
    assert list(tmp_path.iterdir()) == [bad]


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs 0: give 1 or more processes"),
    (["--jobs", "2", "--store", "{tmp}/x.db"], "--jobs 2 with --store: the store records the run in one transaction"),
    (["--decisions", "xml"], "invalid choice: 'xml'"),
])
def test_jobs_and_decisions_that_cannot_work_are_refused_before_anything_runs(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    p = run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "o"), *args, check=False)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o").exists() and not (tmp_path / "x.db").exists()
