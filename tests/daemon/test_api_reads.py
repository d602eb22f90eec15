"""Store reads of the control API (/trades, /decisions) run off the event loop, on connections
of their own, a bounded number at a time: a bar is never held up by a client's read. (How much
that buys under load is measured by bench/api_load.py, never asserted here.)"""

import asyncio
import threading

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event

from deskd.daemon.api import ControlAPI
from tests.daemon.helpers import TOKEN, bar, runner


def traded(tmp_path):
    """A runner whose store holds a closed trade and a few decisions."""
    r = runner(tmp_path, signals=(1, 2, 3))
    for i in range(8):
        r.feed(bar(i))
    return r


def on_reads(engine, table: str, handler) -> None:
    """Call ``handler(conn)`` for every SELECT of ``table`` the engine runs, on the thread that
    runs it."""
    def before(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            handler(conn)
    event.listen(engine, "before_cursor_execute", before)


def test_trades_and_decisions_are_read_in_another_thread_on_another_connection(tmp_path):
    r = traded(tmp_path)
    seen: list[tuple[int, object]] = []
    for table in ("trades", "decisions"):
        on_reads(r.engine, table, lambda conn: seen.append((threading.get_ident(), conn)))

    async def go():
        async with TestClient(TestServer(ControlAPI(r, TOKEN).app())) as client:
            got = {}
            for path in ("/trades", "/decisions"):
                resp = await client.get(f"{path}?limit=10000")
                assert resp.status == 200 and resp.content_type == "application/json"
                got[path] = await resp.json()
            return threading.get_ident(), got
    loop_thread, got = asyncio.run(go())
    assert len(seen) == 2
    assert all(thread != loop_thread for thread, _ in seen)  # never on the event loop's thread
    assert all(conn is not r.conn for _, conn in seen)       # never on the runner's writer connection
    (t,) = got["/trades"]
    assert t["exit_reason"] == "TIME" and "desk" not in t and "scenario" not in t
    assert t["side"] in ("LONG", "SHORT") and t["exit_time"].endswith("Z")  # trades.csv's format
    times = [d["decision_time"] for d in got["/decisions"]]
    assert len(times) >= 3 and times == sorted(times, reverse=True)


def test_reads_past_the_workers_wait_and_past_the_queue_get_503_with_retry_after(tmp_path):
    r = traded(tmp_path)
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def hold(conn) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
    on_reads(r.engine, "decisions", hold)

    async def go():
        api = ControlAPI(r, TOKEN, read_workers=2, read_queue=2)
        async with TestClient(TestServer(api.app())) as client:
            async def read():
                resp = await client.get("/decisions?limit=10000")
                return resp.status, resp.headers.get("Retry-After"), await resp.json()
            reads = [asyncio.create_task(read()) for _ in range(6)]
            for _ in range(1000):  # two held in their threads, two waiting, two answered
                if running[0] == 2 and sum(t.done() for t in reads) == 2:
                    break
                await asyncio.sleep(0.01)
            early = [t.result() for t in reads if t.done()]
            release.set()
            return early, await asyncio.gather(*reads), api
    early, answers, api = asyncio.run(go())
    assert early == [(503, "1", {"error": "too many store reads waiting; try again"})] * 2
    assert sorted(status for status, _, _ in answers) == [200] * 4 + [503] * 2
    assert running[1] == 2 and running[0] == 0
    assert api._read_pool is None  # the threads are let go when the app is cleaned up
