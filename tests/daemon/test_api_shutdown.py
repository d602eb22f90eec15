"""Actions once the daemon has begun to stop: answered 503 {"error": "shutting down"}, whether
they arrive then or were waiting for a tick, with nothing changed and no traceback. (The same
through the real daemon and SIGTERM: tests/e2e/test_api_shutdown_live.py.)"""

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from deskd.daemon.api import ControlAPI
from tests.daemon.helpers import TOKEN, runner

SHUTTING_DOWN = (503, {"error": "shutting down"})


class StoppingSession:
    """What the API sees of a LiveSession: ``stopping``, and a tick that waits for its turn
    (the session lock) and then finds the broker client closed, as aiohttp reports it."""

    def __init__(self):
        self.stopping = False
        self.turn = asyncio.Event()
        self.waiting = asyncio.Event()
        self.ticks = 0

    async def tick(self) -> int:
        self.waiting.set()
        await self.turn.wait()
        if self.stopping:
            raise RuntimeError("Session is closed")
        self.ticks += 1
        return 1

    async def send_now(self, symbols=()):
        raise AssertionError("nothing may be sent once stopping")


def errors_logged(caplog) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]


async def post(client, path: str) -> tuple[int, dict | str]:
    resp = await client.post(path, json={"reason": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    return resp.status, await (resp.json() if resp.content_type == "application/json" else resp.text())


@pytest.mark.parametrize("path", ["/poll", "/halt", "/resume", "/flatten", "/reconcile"])
def test_actions_arriving_once_stopping_get_503_and_change_nothing(tmp_path, caplog, path):
    r = runner(tmp_path)
    session = StoppingSession()
    session.stopping = True

    async def go():
        async with TestClient(TestServer(ControlAPI(r, TOKEN, session=session).app())) as client:
            return await post(client, path)
    assert asyncio.run(go()) == SHUTTING_DOWN
    assert r.desk.state.state.value == "RUNNING" and session.ticks == 0
    assert errors_logged(caplog) == []


def test_a_poll_waiting_for_its_tick_when_the_daemon_stops_gets_503_without_a_traceback(tmp_path, caplog):
    r = runner(tmp_path)
    session = StoppingSession()

    async def go():
        async with TestClient(TestServer(ControlAPI(r, TOKEN, session=session).app())) as client:
            pending = asyncio.create_task(post(client, "/poll"))
            await session.waiting.wait()
            session.stopping = True  # SIGTERM: the live loop returns, the broker client is closed
            session.turn.set()
            return await pending
    assert asyncio.run(go()) == SHUTTING_DOWN
    assert errors_logged(caplog) == []


def test_a_runtime_error_while_running_is_not_taken_for_a_shutdown(tmp_path):
    r = runner(tmp_path)
    session = StoppingSession()
    session.tick = _broken

    async def go():
        async with TestClient(TestServer(ControlAPI(r, TOKEN, session=session).app())) as client:
            return await post(client, "/poll")
    assert asyncio.run(go())[0] == 500


async def _broken() -> int:
    raise RuntimeError("a bug")
