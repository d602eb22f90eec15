"""`deskd tune` and `deskd walkforward` as a user meets them: bad input is one line and exit 2,
a folder that is not a tune's is not written into, and Ctrl-C leaves a study that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import EXAMPLE, deskd_cmd, run

pytestmark = pytest.mark.e2e

S1 = "S1_TREND_EMA_ATR_ADX"


@pytest.mark.parametrize("args, message", [
    (["--strategy", "S9"], "--strategy S9: the config's strategies are"),
    (["--strategy", S1, "--objective", "sortino"], "--objective sortino: one of expectancy_r"),
    (["--strategy", S1, "--scenario", "Z"], "unknown scenario 'Z'"),
    (["--strategy", S1, "--workers", "0"], "--workers 0: give 1 or more"),
    (["--strategy", S1, "--from", "yesterday"], "--from 'yesterday'"),
])
def test_bad_tune_arguments_are_one_error_line_and_exit_2(tmp_path, args, message):
    p = run("tune", "--config", str(EXAMPLE), "--out", str(tmp_path / "t"), *args, check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deskd: error:") and message in lines[0], p.stderr


@pytest.mark.parametrize("args, message", [
    (["--train", "12"], "--train '12': expected a count and a unit"),
    (["--train", "2M", "--train-bars", "100"], "not both"),
    (["--train-bars", "100"], "--train-bars and --test-bars go together"),
    (["--train", "10Y"], "shorter than one train"),
])
def test_bad_walkforward_splits_are_one_error_line_and_exit_2(tmp_path, args, message):
    p = run("walkforward", "--config", str(EXAMPLE), "--strategy", S1, "--out", str(tmp_path / "w"), *args,
            check=False)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_folder_that_is_not_a_tune_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    p = run("tune", "--config", str(EXAMPLE), "--strategy", S1, "--out", str(out), check=False)
    assert p.returncode == 2 and "exists and is not empty" in p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["notes.txt"]


def test_ctrl_c_stops_the_tune_and_the_same_command_resumes_it(tmp_path):
    out = tmp_path / "t"
    cmd = deskd_cmd() + ["tune", "--config", str(EXAMPLE), "--strategy", S1, "--symbols", "EURUSD",
                         "--trials", "12", "--workers", "1", "--out", str(out)]
    slow = {**os.environ, "DESKD_FAST_PATH": "0"}  # stage 1 on the event path: long enough to interrupt
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=slow)
    study = out / "study.db"
    deadline = time.monotonic() + 120
    import sqlite3

    def finished() -> int:
        try:
            with sqlite3.connect(study) as db:
                return db.execute("select count(*) from trials t join studies s using (study_id) where "
                                  "t.state = 'COMPLETE' and s.study_name not like '%-stage2'").fetchone()[0]
        except sqlite3.Error:
            return 0

    while finished() < 3 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    done_before = finished()
    assert 3 <= done_before < 12 and not (out / "tune.json").exists()
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600, env=slow)
    assert again.returncode == 0, again.stderr
    meta = json.loads(again.stdout)
    assert meta["trials_stage1"] == 12
    assert meta["trials_run_this_session"] <= 12 - done_before + 3 * meta["top_k"]
