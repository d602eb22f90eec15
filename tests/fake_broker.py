"""The fake v20 broker's market in tests, and a thread to serve it for synchronous clients.

``BARS`` is the market (50 M15 bars of EURUSD and USDJPY); :func:`fake_v20_broker` a fresh
broker over a copy of it. :func:`running` serves a broker on a free loopback port in a
background thread, for synchronous clients (OANDA's v20 package, the deskd command); async
tests use the ``serve_v20`` / ``v20_client`` fixtures of tests/conftest.py instead, which serve
it in the test's own event loop."""

import asyncio
import contextlib
import socket
import threading

from aiohttp import web

from deskd.testing.fake_v20 import FakeV20, build_app

T0 = 1_768_000_000
BARS = {"EURUSD": [(T0 + i * 900, 1.1000 + i * 1e-4, 1.1010 + i * 1e-4, 1.0990 + i * 1e-4, 1.1005 + i * 1e-4)
                   for i in range(50)],
        "USDJPY": [(T0 + i * 900, 150.00 + i * 0.01, 150.10 + i * 0.01, 149.90 + i * 0.01, 150.05 + i * 0.01)
                   for i in range(50)]}


def fake_v20_broker(**kw) -> FakeV20:
    """A fresh fake broker over a copy of ``BARS`` (M15), no bar released yet."""
    return FakeV20({k: list(v) for k, v in BARS.items()}, 900, **kw)


@contextlib.contextmanager
def running(broker: FakeV20):
    """Yield the port the fake is listening on; stop it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(broker))
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    started.wait(10)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
