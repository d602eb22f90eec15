"""Replay throughput and memory of the full pipeline on real M1 bars.

    python bench/replay.py [--symbols EURUSD,GBPUSD,USDJPY] [--strategies s1|all] [--bars N]

Loads each symbol's 2017-2019 HistData M1 file (New York time) from the workspace's
shared/data/fx_m1, then replays it through Desk (strategies, conflict resolution, allocator,
guard, state machine, paper broker, ledger, decision journal to a CSV in a temp folder).

Reports, separately: load+validate throughput of the bar files (bars/s); pipeline throughput
with the merged bars already in memory (bars/s, median and best of --repeat runs: this VM's
timings vary by about 10 % run to run); peak memory (tracemalloc of one pipeline run with
--memory, and the process's max RSS, which includes the bars held in memory). Numbers go to stdout as
JSON; RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import ReplayFeed, replay
from deskd.configs.models import DeskConfig
from deskd.core.events import Decision
from deskd.desk.desk import Desk
from deskd.research.outputs import DecisionWriter, write_decision_header

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fx_m1"


def config(symbols: list[str], strategies: str) -> DeskConfig:
    all3 = strategies == "all"
    return DeskConfig.model_validate({
        "desk": "bench",
        "universe": {"timeframe": "M1", "symbols": symbols},
        "data": {"timezone": "America/New_York",
                 "files": {s: str(DATA / f"{s}_M1.csv.gz") for s in symbols}},
        "strategies": {"S1_TREND_EMA_ATR_ADX": {},
                       "S2_MR_ZSCORE_EMA_REGIME": {"enabled": all3},
                       "S3_BREAKOUT_ATR_REGIME_EMA200": {"enabled": all3}},
    })


class MemoryFeed:
    """The merged chunks of a ReplayFeed, loaded once, replayed from memory."""

    def __init__(self, feed: ReplayFeed, limit: int | None):
        self.symbols = feed.symbols
        self.timeframe_s = feed.timeframe_s
        self._chunks = []
        n = 0
        for ch in feed.chunks():
            self._chunks.append(ch)
            n += len(ch)
            if limit and n >= limit:
                break
        self.bars = n

    def chunks(self):
        return iter(self._chunks)


def run(desk: Desk, feed, out_dir: str) -> tuple[int, float, int]:
    with open(os.path.join(out_dir, "decisions.csv"), "w", newline="") as fh:
        write_decision_header(fh)
        writer = DecisionWriter(fh, desk.scenario, desk.tf_s)
        desk.bus.subscribe(Decision, writer)
        t = time.perf_counter()
        n = replay(desk, feed)
        writer.flush()
        dt = time.perf_counter() - t
    return n, dt, len(desk.ledger.closed)


def stream(cfg: DeskConfig, feed: ReplayFeed, syms: list[str], strategies: str) -> int:
    """End to end from the files; then the same under tracemalloc for peak Python memory."""
    with tempfile.TemporaryDirectory() as d:
        n, dt, trades = run(paper_desk(cfg), feed, d)
        tracemalloc.start()
        run(paper_desk(cfg), feed, d)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps({
        "mode": "stream", "symbols": syms, "strategies": strategies, "bars": n, "trades": trades,
        "end_to_end_bars_per_s": round(n / dt), "end_to_end_s": round(dt, 2),
        "peak_traced_mib": round(peak / 2**20, 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", default="EURUSD")
    ap.add_argument("--strategies", choices=["s1", "all"], default="s1")
    ap.add_argument("--file", action="append", default=[], metavar="SYMBOL=PATH",
                    help="use this bar file (New York time) for a symbol instead of its 2017-2019 M1 file")
    ap.add_argument("--bars", type=int, default=None, help="stop after about N bars (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="pipeline runs; median and best are reported")
    ap.add_argument("--stream", action="store_true",
                    help="instead: one end-to-end run streaming from the files (load, validate, "
                         "pipeline), timed, then again under tracemalloc for its peak memory")
    args = ap.parse_args()
    syms = args.symbols.split(",")
    cfg = config(syms, args.strategies)
    if args.file:
        files = dict(cfg.data.files)
        files.update(item.split("=", 1) for item in args.file)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"files": files})})
    if not all(Path(p).exists() for p in cfg.data.files.values()):
        print(f"bench: bar files not found under {DATA}", file=sys.stderr)
        return 2

    feed = ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)
    if args.stream:
        return stream(cfg, feed, syms, args.strategies)
    t = time.perf_counter()
    mem = MemoryFeed(feed, args.bars)
    load_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        times = []
        for _ in range(max(1, args.repeat)):
            n, dt, trades = run(paper_desk(cfg), mem, d)
            times.append(dt)
        times.sort()
        med = times[len(times) // 2]
        result = {
            "symbols": syms, "strategies": args.strategies, "bars": n, "trades": trades,
            "load_validate_bars_per_s": round(n / load_s),
            "pipeline_bars_per_s_median": round(n / med), "pipeline_bars_per_s_best": round(n / times[0]),
            "pipeline_s_median": round(med, 2), "runs": len(times),
        }
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
