"""Trials per minute of ``deskd tune``, the whole command, with 1 and 2 worker processes.

    python bench/tune.py [--config tests/golden/m1_s123.yaml] [--strategy S1_TREND_EMA_ATR_ADX]
                         [--trials 16] [--top-k 2] [--workers 1 2] [--repeat 1] [--fast auto|off]

Runs the real command (``deskd tune --config C --strategy S --trials N --top-k K --workers W
--out TMP --json``, a fresh study each time) and times it with its workers (``wait4``): wall
seconds, CPU seconds, trials run (stage 1 + stage 2, from tune.json), trials per minute. The
default config is S1 on three years of EURUSD M1 (``shared/data/fx_m1``, 1.1M bars), where one
event-path trial replays every bar. Prints one JSON object; bench/RESULTS.md records it.
"""

from __future__ import annotations

import argparse
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


def one_run(args: argparse.Namespace, workers: int, out: Path) -> dict:
    """One tune into ``out``; raises CalledProcessError when it fails."""
    cmd = [deskd(), "tune", "--config", str(args.config), "--strategy", args.strategy, "--trials", str(args.trials),
           "--top-k", str(args.top_k), "--workers", str(workers), "--out", str(out), "--json"]
    env = {**os.environ, "DESKD_FAST_PATH": "0"} if args.fast == "off" else None
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise subprocess.CalledProcessError(code, cmd)
    meta = json.loads((out / "tune.json").read_text())
    ran = meta["trials_run_this_session"]
    return {"workers": workers, "wall_s": round(wall, 2), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "trials_run": ran, "trials_per_min": round(ran / wall * 60, 2), "load_before": round(load, 2),
            "best": meta["best"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "tests" / "golden" / "m1_s123.yaml")
    ap.add_argument("--strategy", default="S1_TREND_EMA_ATR_ADX")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--fast", choices=["auto", "off"], default="auto",
                    help="off: stage 1 on the event path even where a fast-path kernel exists")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for w in args.workers:
                out = Path(tmp) / f"t{i}-{w}"
                runs.append(one_run(args, w, out))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    by = {w: [r for r in runs if r["workers"] == w] for w in args.workers}
    print(json.dumps({"config": str(args.config), "strategy": args.strategy, "trials": args.trials,
                      "top_k": args.top_k, "fast": args.fast, "runs": runs,
                      "trials_per_min_median": {w: statistics.median(r["trials_per_min"] for r in rs)
                                                for w, rs in by.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
