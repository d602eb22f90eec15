"""A live tick of `deskd run --broker http` against the fake v20 broker, on loopback.

    python bench/live_tick.py [--bars 300]

Starts the fake broker (300 bars released for the warm-up) and the real daemon, then releases
one bar time at a time and asks the daemon to poll (POST /poll answers when the tick is done):
read the transactions, fetch the three symbols' new candles, run the bar pipeline, send the
orders, commit, reconcile (every tick here). Reports the tick's round trip p50 / p99 / max in
milliseconds, and the daemon's own broker request latencies from /metrics, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.e2e.live_harness import Live, write_live_config  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with Live(write_live_config(d, 300 + args.bars), d, release=300) as live:
            live.start()
            tick_ms = []
            for _ in range(args.bars):
                live.admin("advance", {"bars": 1})
                t0 = time.perf_counter()
                code, _ = live.action("/poll", {"reason": "bench"})
                tick_ms.append((time.perf_counter() - t0) * 1e3)
                assert code == 200
            text = urllib.request.urlopen(f"http://127.0.0.1:{live.api_port}/metrics").read().decode()
            trades = len([t for t in live.broker.trades.values() if t.client_id])
            live.stop()
    per_endpoint = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "deskd_broker_request_duration_seconds":
            for s in fam.samples:
                e = per_endpoint.setdefault(s.labels["endpoint"], {})
                if s.name.endswith("_sum"):
                    e["sum_s"] = s.value
                elif s.name.endswith("_count"):
                    e["count"] = s.value
    print(json.dumps({
        "ticks": len(tick_ms), "desk_trades_at_broker": trades,
        "tick_round_trip_ms": {"p50": round(pct(tick_ms, 0.5), 2), "p99": round(pct(tick_ms, 0.99), 2),
                               "max": round(max(tick_ms), 2)},
        "broker_request_mean_ms": {k: round(v["sum_s"] / v["count"] * 1e3, 2) for k, v in sorted(per_endpoint.items())
                                   if v.get("count")},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
