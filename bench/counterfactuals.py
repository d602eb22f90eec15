"""What the counterfactuals cost a backtest: one scenario replayed with and without them.

    python bench/counterfactuals.py [--config tests/golden/m1_s123.yaml] [--scenario A] [--repeat 2]

Reads the config's bar files once (``MemoryFeed``), then runs :func:`run_scenario` for the
scenario with counterfactuals off (decisions counted, no file) and on (counterfactuals.parquet
written to a temp folder), the two taking turns ``--repeat`` times. Reports wall seconds of
each run, the decisions, how many brackets the observer kept open per bar (mean and most,
from the file: a bracket is open from its entry bar through its exit bar) and the file's size.
Prints one JSON object; bench/RESULTS.md records the figures. The default config is S1+S2+S3
on three years of EURUSD M1 (``shared/data/fx_m1``, 1.1M bars, 1.6M decisions).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from deskd.adapters.replay import MemoryFeed, replay_feed
from deskd.configs.loader import load_config
from deskd.research.backtest import run_scenario
from deskd.research.counterfactuals import CF_FILE, counterfactual_schema
from deskd.research.outputs import PARQUET_COMPRESSION

ROOT = Path(__file__).resolve().parents[1]


def one(cfg, scenario: str, feed: MemoryFeed, folder: Path | None) -> tuple[float, int, float, int]:
    """Wall seconds of one run, its decisions, the load average before it, its bars; with
    ``folder``, counterfactuals on."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    if folder is None:
        res = run_scenario(cfg, scenario, None, feed=feed)
    else:
        with pq.ParquetWriter(str(folder / CF_FILE), counterfactual_schema(), compression=PARQUET_COMPRESSION) as w:
            res = run_scenario(cfg, scenario, None, feed=feed, counterfactuals=w)
    return time.perf_counter() - t0, sum(res.decisions.values()), load, res.bars


def open_per_bar(path: Path, bars: int) -> dict:
    """Brackets open per bar of the file's counterfactuals: mean (sum of hold bars over bars)
    and most (a sweep over entry and exit times)."""
    t = pq.read_table(path, columns=["cf_entry_time", "cf_exit_time", "cf_hold_bars"]).drop_null()
    enter = t.column("cf_entry_time").cast("int64").to_numpy()
    leave = t.column("cf_exit_time").cast("int64").to_numpy()
    times = np.concatenate([enter, leave + 1])
    delta = np.concatenate([np.ones(len(enter), np.int64), -np.ones(len(leave), np.int64)])
    order = np.argsort(times, kind="stable")
    return {"mean": round(float(t.column("cf_hold_bars").to_numpy().sum()) / bars, 1),
            "most": int(np.cumsum(delta[order]).max()) if len(order) else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "tests" / "golden" / "m1_s123.yaml")
    ap.add_argument("--scenario", default="A")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    cfg = load_config(a.config)
    t0 = time.perf_counter()
    feed = MemoryFeed.read(replay_feed(cfg))
    read_s = time.perf_counter() - t0
    runs: dict[str, list] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(a.repeat):
            for mode in ("off", "on"):
                wall, decisions, load, bars = one(cfg, a.scenario, feed, folder if mode == "on" else None)
                runs[mode].append({"wall_s": round(wall, 2), "load_before": round(load, 2)})
        size = (folder / CF_FILE).stat().st_size
        per_bar = open_per_bar(folder / CF_FILE, bars)
    off = statistics.median(r["wall_s"] for r in runs["off"])
    on = statistics.median(r["wall_s"] for r in runs["on"])
    print(json.dumps({"config": str(a.config), "scenario": a.scenario, "bars": bars, "decisions": decisions,
                      "read_s": round(read_s, 2), "runs": runs, "median_off_s": off, "median_on_s": on,
                      "extra_s": round(on - off, 2), "extra_us_per_decision": round((on - off) / decisions * 1e6, 2),
                      "open_brackets_per_bar": per_bar, "file_bytes": size}, indent=2))


if __name__ == "__main__":
    main()
