"""Run the fake v20 broker on a free loopback port in a background thread (for synchronous
clients: OANDA's v20 package, the deskd command)."""

import asyncio
import contextlib
import socket
import threading

from aiohttp import web

from deskd.testing.fake_v20 import FakeV20, build_app


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
