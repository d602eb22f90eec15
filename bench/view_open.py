"""How long ``deskd view`` takes to open a run: the real command, timed from outside.

    python bench/view_open.py RUN_DIR [--repeat 3]

Each repeat starts a fresh ``deskd view RUN_DIR --port 0`` and times, over HTTP on loopback,
what a person opening the page waits for, in order:

* ``listening``: from the process start until it prints its URL (imports, run folders opened);
* ``page``: the page and plotly.min.js;
* ``runs``: /api/runs (report.json's metrics: the Runs tab is drawn);
* ``facets``: /api/runs/0/facets (the first use of the trades and of the whole decision
  journal, read into memory: the filter menus);
* ``first_decision``: the Decisions tab: the first page of 20 decisions and the first
  decision with its price window (the first use of that symbol's bar file);
* ``next_decision``: Next, ten times (mean): a page and a decision, everything cached;
* ``filter``: a page of a new filter (a skip reason and an hour: a mask over the journal);
* ``trades_page``, ``equity``: the Trades and Equity tabs.

Prints JSON: the median of each (seconds), the peak memory of the viewer (VmHWM, MiB), the
journal's size and the load average before each repeat (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as resp:
        return resp.read()


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def once(run_dir: Path) -> dict:
    deskd = str(Path(sys.executable).parent / "deskd")
    t0 = time.perf_counter()
    p = subprocess.Popen([deskd, "view", str(run_dir), "--port", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline() if p.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            raise SystemExit(f"deskd view printed no URL: {line!r}")
        url = found.group(0)
        out: dict = {"listening": time.perf_counter() - t0}
        out["page"], _ = timed(lambda: (get(url), get(url + "static/plotly.min.js")))
        out["runs"], _ = timed(lambda: get(url + "api/runs"))
        out["facets"], facets = timed(lambda: json.loads(get(url + "api/runs/0/facets")))

        def first() -> dict:
            page = json.loads(get(url + "api/runs/0/decisions?offset=0&limit=20"))
            json.loads(get(url + f"api/runs/0/decisions/{page['rows'][0]['row']}"))
            return page
        out["first_decision"], page = timed(first)
        out["decisions"] = page["total"]

        def nexts() -> None:
            for k in range(1, 11):
                pg = json.loads(get(url + f"api/runs/0/decisions?offset={k}&limit=20"))
                get(url + f"api/runs/0/decisions/{pg['rows'][0]['row']}")
        wall, _ = timed(nexts)
        out["next_decision"] = wall / 10
        reason = urllib.parse.quote(facets["reasons"][-1])
        out["filter"], _ = timed(lambda: get(url + f"api/runs/0/decisions?reason={reason}&hour=13&limit=20"))
        out["trades_page"], _ = timed(lambda: get(url + "api/runs/0/trades?outcome=WIN&limit=50"))
        out["equity"], _ = timed(lambda: get(url + "api/runs/0/equity"))
        with open(f"/proc/{p.pid}/status") as fh:
            out["peak_mib"] = int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) / 1024  # type: ignore[union-attr]
        return out
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs, loads = [], []
    for _ in range(args.repeat):
        loads.append(round(os.getloadavg()[0], 2))
        runs.append(once(args.run_dir))
    keys = [k for k in runs[0] if k != "decisions"]
    print(json.dumps({"run_dir": str(args.run_dir), "decisions": runs[0]["decisions"], "repeats": args.repeat,
                      "load_before": loads,
                      "median": {k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
                      "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs]}, indent=2))


if __name__ == "__main__":
    main()
