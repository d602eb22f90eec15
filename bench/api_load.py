"""Bar latency of the paper daemon while 50 clients hammer its heaviest reads.

    python bench/api_load.py [--speed 3000] [--bars 500] [--clients 50] [--limit 10000]

The daemon runs in this process as ``deskd run`` runs it (DeskRunner, the paced replay of the
bundled M15 sample at ``--speed`` x real time, the control API on a free loopback port, the
SQLite store in WAL mode committing every bar). The store is first filled with the sample's
first ``--prefill`` bars (about 12,000 decisions and 800 trades), which the daemon then warms
up from, as after a restart. ``--bars`` of its bars are timed without load, then as many
while a second process runs ``--clients`` concurrent clients, each asking in turn for
``/trades?limit=N`` and ``/decisions?limit=N`` as fast as answers come (a 503 is waited out
for its Retry-After). At the default speed a phase lasts about a minute (weekends have no
bars, so longer when one falls in it), at most ``--max-seconds`` (a daemon whose loop the
load holds up gets through fewer bars: ``n`` says how many were timed).

A bar's latency is measured as bench/latency.py does, around ``DeskRunner.feed``, plus the
time the bar waited to be released: from its close on the paced clock (the moment the feed
was due to hand it over) to the end of its commit. A loop busy with a request delays the bar
by the time the request holds it. Prints JSON: p50 / p99 / max in milliseconds for both
phases, and the clients' request counts and answer latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summary(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50": round(pct(xs, 0.5), 2), "p99": round(pct(xs, 0.99), 2), "max": round(max(xs), 2)}


# -- the load: a separate process, so the clients do not share the daemon's interpreter ----------
async def hammer(url: str, clients: int, limit: int) -> dict:
    """``clients`` concurrent clients asking for trades and decisions in turn until SIGTERM
    (each finishes its request); a 503 is waited out for its Retry-After (seconds)."""
    import aiohttp

    counts = {"ok": 0, "503": 0, "other": 0}
    answer_ms: list[float] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        paths = ("/trades", "/decisions")
        k = i
        while not stop.is_set():
            t0 = time.perf_counter()
            async with session.get(f"{url}{paths[k % 2]}?limit={limit}") as r:
                await r.read()
                if r.status == 200:
                    counts["ok"] += 1
                    answer_ms.append((time.perf_counter() - t0) * 1e3)
                elif r.status == 503:
                    counts["503"] += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), float(r.headers.get("Retry-After", "1")))
                else:
                    counts["other"] += 1
            k += 1

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:
        await asyncio.gather(*(client(i, s) for i in range(clients)))
    return {"clients": clients, "limit": limit, "answers": counts, "answer_ms": summary(answer_ms)}


# -- the daemon ------------------------------------------------------------------------------------
def prefill(cfg, store_url: str, bars: int) -> None:
    """The store after the daemon has traded the sample's first ``bars`` bars."""
    from deskd.adapters.replay import ReplayFeed, replay_bars
    from deskd.daemon.runner import DeskRunner

    runner = DeskRunner(cfg, store_url)
    feed = ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)
    for i, bar in enumerate(replay_bars(feed)):
        if i >= bars:
            break
        runner.feed(bar)
    runner.close()


async def run_daemon(cfg, store_url: str, args) -> dict:
    """The daemon, a phase without load and one with it; the bar latencies of each."""
    from deskd.adapters.replay import ReplayFeed
    from deskd.daemon.api import ControlAPI, start_api
    from deskd.daemon.runner import DeskRunner, PacedReplayFeed, serve

    runner = DeskRunner(cfg, store_url)
    paced = PacedReplayFeed(ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s),
                            cfg.universe.timeframe_s, args.speed)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    phase: list[str] = ["start"]
    latency: dict[str, list[float]] = {"idle": [], "load": []}
    pipeline: dict[str, list[float]] = {"idle": [], "load": []}
    feed = runner.feed

    def timed_feed(bar, now_ts=None, entries_blocked=None) -> None:
        warm = runner.is_warm_up(bar)
        t0 = time.perf_counter()
        feed(bar, now_ts, entries_blocked)
        t1 = time.perf_counter()
        if warm or paced._t0 is None or phase[0] not in latency:
            return
        wall0, sim0 = paced._t0
        due = wall0 + (bar.close_ts - sim0) / args.speed  # time.monotonic() when the bar was due
        latency[phase[0]].append((time.monotonic() - due) * 1e3)
        pipeline[phase[0]].append((t1 - t0) * 1e3)
    runner.feed = timed_feed  # type: ignore[method-assign]

    api: list = []
    stop = asyncio.Event()

    async def ready() -> None:
        if args.gc_freeze:  # what `deskd run` could do once recovered: full collections skip that heap
            gc.collect()
            gc.freeze()
        kw = {} if args.read_workers is None else {"read_workers": args.read_workers}
        api.append(await start_api(ControlAPI(runner, None, **kw), "127.0.0.1", port))

    async def bars_in(name: str) -> None:
        """Time bars as phase ``name`` until ``--bars`` of them, or ``--max-seconds``, passed."""
        phase[0] = name
        end = time.monotonic() + args.max_seconds
        while len(latency[name]) < args.bars and time.monotonic() < end:
            await asyncio.sleep(0.1)

    async def script() -> dict:
        while not api:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # settle
        await bars_in("idle")
        phase[0] = "ramp"
        load = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--load", f"http://127.0.0.1:{port}", "--clients", str(args.clients),
            "--limit", str(args.limit), stdout=subprocess.PIPE)
        await asyncio.sleep(2)  # every client has a request in
        await bars_in("load")
        phase[0] = "done"
        load.terminate()
        out, _ = await load.communicate()
        stop.set()
        return json.loads(out)

    task = asyncio.create_task(script())
    await serve(runner, paced, exit_at_end=False, on_ready=ready, stop=stop)
    clients = await task
    for site in api:
        await site.cleanup()
    runner.close()
    return {"no_load": {"bar_close_to_committed_ms": summary(latency["idle"]),
                        "bar_including_commit_ms": summary(pipeline["idle"])},
            "load": {"bar_close_to_committed_ms": summary(latency["load"]),
                     "bar_including_commit_ms": summary(pipeline["load"]), **clients}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", type=float, default=3000.0, help="the paced clock, x real time")
    ap.add_argument("--bars", type=int, default=500, help="bars timed in each phase")
    ap.add_argument("--max-seconds", type=float, default=180.0, help="a phase ends then, whatever its bars")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--limit", type=int, default=10_000, help="rows asked for per request")
    ap.add_argument("--prefill", type=int, default=30_000, help="bars traded into the store first")
    ap.add_argument("--read-workers", type=int, help="the API's store read threads (default: its own)")
    ap.add_argument("--gc-freeze", action="store_true", help="gc.freeze() the heap once recovered")
    ap.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the client process
    args = ap.parse_args()
    if args.prefill + 2 * args.bars > 34_000:
        ap.error("the sample has 35,994 bars: --prefill plus two phases of --bars (and ramps) must fit")
    if args.load:
        print(json.dumps(asyncio.run(hammer(args.load, args.clients, args.limit))))
        return 0
    import deskd
    from deskd.configs.loader import load_config
    from deskd.daemon.logs import configure_logging
    from deskd.persistence.store import sqlite_url

    configure_logging("ERROR")  # the sample's holiday gaps would log warnings
    cfg = load_config(Path(deskd.__file__).parent / "configs" / "examples" / "desk.yaml")
    with tempfile.TemporaryDirectory() as d:
        url = sqlite_url(Path(d) / "bench.db")
        prefill(cfg, url, args.prefill)
        got = asyncio.run(run_daemon(cfg, url, args))
    print(json.dumps({"speed": args.speed, "bars_per_phase": args.bars, "prefill_bars": args.prefill,
                      "store": "sqlite (WAL), commit per bar", **got}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
