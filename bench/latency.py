"""Bar-close to order-submitted latency of the paper daemon, with the SQLite store on.

    python bench/latency.py [--strategies all|s1] [--metrics]

Feeds the bundled M15 sample (EURUSD, GBPUSD, USDJPY) through DeskRunner (the daemon's core:
gate, desk pipeline, StoreWriter committing every bar to a SQLite file in WAL mode) as fast
as it goes. For every bar that produces an order it records the time from the bar entering
the pipeline to the paper broker's submit; for every bar, the time to the end of its commit.
Reports p50 / p99 / max in milliseconds as JSON. ``--metrics`` attaches the daemon's
Prometheus metrics and strategy-health monitor (what ``deskd run`` serves) and renders one
scrape every 1,000 bars, to see what they cost the bar path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from deskd.adapters.replay import ReplayFeed, replay_bars
from deskd.configs.loader import load_config
from deskd.daemon.logs import configure_logging
from deskd.daemon.prometheus import DeskMetrics
from deskd.daemon.runner import DeskRunner
from deskd.daemon.strategy_health import HealthMonitor
from deskd.persistence.store import sqlite_url

EXAMPLE = Path(__file__).resolve().parents[1] / "deskd" / "configs" / "examples" / "desk.yaml"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", choices=["all", "s1"], default="all")
    ap.add_argument("--metrics", action="store_true", help="attach /metrics and strategy health")
    args = ap.parse_args()
    configure_logging("ERROR")  # the sample's holiday gaps would log warnings
    cfg = load_config(EXAMPLE)
    if args.strategies == "all":
        cfg = cfg.model_copy(update={"strategies": cfg.strategies.enable(
            "S2_MR_ZSCORE_EMA_REGIME", "S3_BREAKOUT_ATR_REGIME_EMA200")})
    with tempfile.TemporaryDirectory() as d:
        runner = DeskRunner(cfg, sqlite_url(Path(d) / "bench.db"))
        submit = runner.desk.broker.submit
        order_ms: list[float] = []
        start = [0.0]

        def timed_submit(order):
            order_ms.append((time.perf_counter() - start[0]) * 1e3)
            return submit(order)
        runner.desk.broker.submit = timed_submit
        metrics = None
        if args.metrics:
            health = HealthMonitor(cfg.health, list(cfg.strategies.enabled()), runner.desk.bus)
            metrics = DeskMetrics(runner, None, health)
        bar_ms: list[float] = []
        stop = threading.Event()  # the node's WAL checkpoint job, as the daemon runs it: a worker thread

        def checkpoints() -> None:
            while not stop.wait(2.0):
                runner.checkpoint.checkpoint()
        wal = threading.Thread(target=checkpoints)
        wal.start()
        feed = ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)
        for i, bar in enumerate(replay_bars(feed)):
            start[0] = time.perf_counter()
            runner.feed(bar)
            bar_ms.append((time.perf_counter() - start[0]) * 1e3)
            if metrics is not None and i % 1000 == 0:
                metrics.render()
        stop.set()
        wal.join()
        runner.close()
    out = {
        "symbols": cfg.universe.symbols, "strategies": list(cfg.strategies.enabled()), "metrics": args.metrics,
        "store": "sqlite (WAL, synchronous=NORMAL), commit per bar", "bars": len(bar_ms),
        "orders": len(order_ms),
        "bar_close_to_order_ms": {"p50": round(pct(order_ms, 0.5), 3), "p99": round(pct(order_ms, 0.99), 3),
                                  "max": round(max(order_ms), 3)},
        "bar_including_commit_ms": {"p50": round(pct(bar_ms, 0.5), 3), "p99": round(pct(bar_ms, 0.99), 3),
                                    "max": round(max(bar_ms), 3), "mean": round(statistics.fmean(bar_ms), 3)},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
