"""The README's commands run as written, from a folder laid out as a fresh clone.

Each test takes its commands from the README itself (the fenced block holding a known line), so
a command edited in the README is the command tested. Commands run in a temporary folder that
holds the clone's ``deskd/`` and ``examples/`` (linked), so they write nothing into the
repository. Lines run one at a time with a short pause, as a person types them; a line ending in
``&`` runs in the background and is stopped at the end.

Not run here, and why: ``pip install`` (CI installs the project from a fresh clone before the
tests: .ci/run), the second Quick start command (it is this suite), the PostgreSQL, systemd,
OANDA and Prometheus/Grafana blocks (they need a server, root or an account; the PostgreSQL and
promtool paths have tests of their own), and ``deskd data`` (its block names the user's own
export files; tests/e2e/test_data_cli.py runs every verb on real files).
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, deskd_cmd

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```[a-z]*\n(.*?)```", README, re.S)


def block_with(line: str) -> list[str]:
    """The command lines (comments and blanks dropped) of the README block holding ``line``."""
    (block,) = [b for b in BLOCKS if line in b]
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.fixture
def clone(tmp_path):
    """A working folder laid out as the repository root, and an environment whose PATH finds
    the installed ``deskd`` and ``python``."""
    for name in ("deskd", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": f"{Path(deskd_cmd()[0]).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DESKD_API_TOKEN", None)
    return tmp_path, env


def script(lines: list[str], pause_s: float = 1.0) -> str:
    """``lines`` as a bash script that stops at the first failing line, pauses between lines
    and stops its background jobs on exit."""
    body = "\n".join(f"{ln}\nsleep {pause_s}" for ln in lines)
    return f"set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{body}\n"


def test_quick_start_runs_the_main_job_on_the_bundled_sample(clone):
    cwd, env = clone
    (cmd,) = [ln for ln in block_with("deskd backtest --config deskd/configs/examples/desk.yaml") if "deskd" in ln
              and "pytest" not in ln]
    job = cmd.split("&&", 1)[1].strip()  # after `pip install -e .` (done once by CI)
    p = subprocess.run(["bash", "-c", job], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert (cwd / "runs" / "sample" / "report.html").exists() and "scenario" in p.stdout


def test_your_own_strategy_example_runs(clone):
    cwd, env = clone
    lines = block_with("deskd backtest --config examples/strategies/donchian.yaml")
    p = subprocess.run(["bash", "-c", script(lines, 0)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert "donchian_20" in (cwd / "runs" / "donchian" / "trades.csv").read_text()


def test_the_paper_daemon_block_starts_trades_and_stops_on_sigterm(clone):
    cwd, env = clone
    lines = block_with("--store state/deskd.db --speed 600")
    p = subprocess.Popen(["bash", "-c", "\n".join(["set -e", *lines[:-1], f"exec {lines[-1]}"])], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (cwd / "state" / "deskd.db").exists() or p.poll() is not None:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1]
            time.sleep(0.5)
        status = None
        while time.monotonic() < deadline:
            status = subprocess.run(deskd_cmd() + ["status", "--json"], cwd=cwd, env=env, capture_output=True,
                                    text=True, timeout=30)
            if status.returncode == 0:
                break
            time.sleep(1)
        assert status is not None and status.returncode == 0, status.stderr if status else "no status"
        assert '"state": "RUNNING"' in status.stdout
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err


def test_the_fake_broker_demo_runs_in_order(clone):
    cwd, env = clone
    lines = block_with("deskd fake-broker --config deskd/configs/examples/desk.yaml")
    p = subprocess.run(["bash", "-c", script(lines, 0.2)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)  # as pasted: the block waits for itself where it must
    assert p.returncode == 0, p.stdout + p.stderr
    assert "desk example/A: RUNNING" in p.stdout and "broker: v20" in p.stdout, p.stdout


def test_the_research_block_tunes_and_walks_forward(clone):
    cwd, env = clone
    block = next(b for b in BLOCKS if "--out runs/tune-s1" in b).replace("\\\n", " ")
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 2
    p = subprocess.run(["bash", "-c", script(lines, pause_s=0.1)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    import json

    tune = json.loads((cwd / "runs" / "tune-s1" / "tune.json").read_text())
    assert tune["trials_stage1"] == 40 and tune["best"] is not None
    wf = json.loads((cwd / "runs" / "wf-s1" / "walkforward.json").read_text())
    assert len(wf["splits"]) >= 3 and set(wf["out_of_sample"]) == {"A", "B", "C"}
    assert "top_k.csv" in p.stdout and "walk-forward S1_TREND_EMA_ATR_ADX" in p.stdout

    # then the robustness blocks on that walk-forward, as written: Monte Carlo, stress, verdict
    def lines_of(marker: str) -> list[str]:
        block = next(b for b in BLOCKS if marker in b)
        return [ln.split("  #")[0] for ln in block.splitlines() if ln.strip() and "runs/wf-s1" in ln]

    for marker in ("deskd montecarlo runs/wf-s1", "deskd stress runs/wf-s1"):
        p = subprocess.run(["bash", "-c", script(lines_of(marker), pause_s=0.1)], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-2000:]
    assert (cwd / "runs" / "wf-s1" / "stress-A" / "stress.json").exists()
    assert (cwd / "runs" / "wf-s1" / "stress-B" / "stress.json").exists()
    for line in lines_of("deskd verdict runs/wf-s1"):
        p = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode in (0, 1), p.stderr  # 1: a gate failed, which the sample's S1 may well do
        assert "dsr" in p.stdout and "profitable_neighbours" in p.stdout
    assert (cwd / "runs" / "wf-s1" / "verdict" / "report.html").exists()
    assert (cwd / "runs" / "verdict" / "verdict.json").exists()


def test_the_regime_filters_block_tunes_filters_as_written(clone):
    import json

    cwd, env = clone
    lines = block_with("deskd tune --filters")
    p = subprocess.run(["bash", "-c", script([" ".join(ln.rstrip("\\").strip() for ln in lines)], pause_s=0.1)],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((cwd / "runs" / "filters-s1" / "filters.json").read_text())
    assert meta["candidates"] > 1 and len(meta["splits"]) >= 2
    assert "no filter (baseline): rank" in p.stdout


def test_the_viewer_line_serves_both_runs_and_stops_on_ctrl_c(clone):
    import json
    import urllib.request

    cwd, env = clone
    # the two folders the line names, made by the README's own lines
    quick = block_with("deskd backtest --config deskd/configs/examples/desk.yaml --out runs/sample")[0]
    research = next(b for b in BLOCKS if "--out runs/wf-s1" in b).replace("\\\n", " ")
    wf = next(ln for ln in research.splitlines() if "--out runs/wf-s1" in ln)
    for line in (quick.split("&&")[-1], wf):
        p = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
    line = block_with("deskd view runs/sample runs/wf-s1")[0].split("  #")[0]
    p = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline, runs = time.monotonic() + 90, None
        while time.monotonic() < deadline and runs is None:
            assert p.poll() is None, p.communicate()[1]
            try:
                with urllib.request.urlopen("http://127.0.0.1:8050/api/runs", timeout=5) as r:
                    runs = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert runs is not None, "the viewer did not answer on 127.0.0.1:8050"
        assert len(runs["runs"] if isinstance(runs, dict) else runs) == 2
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
