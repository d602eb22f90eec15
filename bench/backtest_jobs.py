"""Whole-process time of ``deskd backtest`` with its scenarios in one process or several, and
the size of its decision file as Parquet or CSV.

    python bench/backtest_jobs.py [--config tests/golden/m1_s123.yaml] [--repeat 2]
                                  [--jobs 1 auto] [--decisions parquet csv]

Runs the real command (``deskd backtest --config C --out TMP --force --quiet --jobs J
--decisions D``) for every combination of ``--jobs`` and ``--decisions``, the combinations
taking turns within each repeat so a change in the machine's load falls on all of them.
Per run: wall time (s), CPU time of the command and its worker processes (user + system,
s, from ``wait4``), the largest resident set of any of those processes (MiB), the load average just before it, the decision file's size (bytes), and the SHA-256 of
trades.csv, equity.csv and report.json (the same in every run, or the bench says so).
Prints one JSON object; bench/RESULTS.md records the figures. The default config is three
scenarios of S1+S2+S3 on three years of EURUSD M1 (``shared/data/fx_m1``, 1.1M bars).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def deskd() -> str:
    """The deskd console script of this interpreter's environment."""
    exe = Path(sys.executable).parent / "deskd"
    return str(exe) if exe.exists() else (shutil.which("deskd") or "deskd")


def one_run(config: Path, out: Path, jobs: str, decisions: str) -> dict:
    """Run the backtest once; raises CalledProcessError when it fails."""
    cmd = [deskd(), "backtest", "--config", str(config), "--out", str(out), "--force", "--quiet",
           "--decisions", decisions]
    if jobs != "auto":
        cmd += ["--jobs", jobs]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, ru = os.wait4(proc.pid, 0)  # the command and every worker it waited for
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    files = {p.name: p for p in out.iterdir()}
    dec = files.get(f"decisions.{decisions}")
    return {"jobs": jobs, "decisions": decisions, "wall_s": round(wall, 2),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "max_rss_mib": round(ru.ru_maxrss / 1024, 1),  # Linux: KiB; the largest of the processes
            "load_before": round(load, 2), "decision_file_bytes": dec.stat().st_size if dec else 0,
            "hashes": {n: hashlib.sha256(files[n].read_bytes()).hexdigest()[:16]
                       for n in ("trades.csv", "equity.csv", "report.json")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "tests" / "golden" / "m1_s123.yaml")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--jobs", nargs="+", default=["1", "auto"])
    ap.add_argument("--decisions", nargs="+", default=["parquet", "csv"])
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        for r in range(args.repeat):
            for jobs in args.jobs:
                for dec in args.decisions:
                    res = one_run(args.config, Path(tmp) / "out", jobs, dec)
                    res["repeat"] = r
                    runs.append(res)
                    print(json.dumps(res), file=sys.stderr, flush=True)
    summary = {}
    for jobs in args.jobs:
        for dec in args.decisions:
            mine = [x for x in runs if x["jobs"] == jobs and x["decisions"] == dec]
            summary[f"jobs={jobs} decisions={dec}"] = {
                "wall_s_median": statistics.median(x["wall_s"] for x in mine),
                "wall_s": [x["wall_s"] for x in mine], "cpu_s": [x["cpu_s"] for x in mine],
                "load_before": [x["load_before"] for x in mine],
                "max_rss_mib": max(x["max_rss_mib"] for x in mine),
                "decision_file_bytes": mine[0]["decision_file_bytes"]}
    same = len({json.dumps(x["hashes"], sort_keys=True) for x in runs}) == 1
    print(json.dumps({"config": str(args.config), "cpus": os.cpu_count(), "same_outputs": same,
                      "summary": summary, "runs": runs}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
