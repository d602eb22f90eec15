"""Shared test helpers.

System tools (promtool, PostgreSQL's server binaries, systemd-analyze) come from Debian
packages that `.ci/run` installs; tests never install anything. Locally a missing tool skips
its tests with the reason; under ``DESKD_REQUIRE_SYSTEM_TOOLS=1`` (set by `.ci/run`) it
fails them instead, so CI cannot go green by skipping.

Fixtures shared by the async tests (pytest-asyncio, strict mode: each async test is marked
``@pytest.mark.asyncio``; function-scoped, so a test and its async fixtures share one event
loop): ``fake_v20`` (a fresh fake v20 broker), ``serve_v20`` (serves fake brokers on loopback
ports in the test's loop), ``v20_credentials`` / ``v20_client`` (``fake_v20`` served, and
deskd's async client of it), ``desk_runner`` (a DeskRunner of the test desk on a SQLite store
in ``tmp_path``). Synchronous clients of the fake broker use ``tests.fake_broker.running``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from deskd.adapters.v20.client import Credentials, V20Client
from deskd.daemon.runner import DeskRunner
from deskd.persistence.store import sqlite_url
from deskd.testing.fake_v20 import FakeV20, build_app
from tests.daemon.helpers import config
from tests.fake_broker import fake_v20_broker

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deskd" / "configs" / "examples" / "desk.yaml"
#: the fields by which two runs' closed trades are compared
TRADE_KEY = ("trade_id", "symbol", "strategy_id", "side", "units", "fill_ts", "entry_price", "exit_ts",
             "exit_price", "exit_reason", "pnl_usd", "hold_bars", "mae_pips", "mfe_pips", "regime")


def deskd_cmd() -> list[str]:
    """The installed ``deskd`` console script (fails the test when it is not installed)."""
    exe = Path(sys.executable).parent / "deskd"
    found = str(exe) if exe.exists() else shutil.which("deskd")
    if not found:
        pytest.fail("the deskd console script is not installed: pip install -e '.[dev]'")
    return [found]


def run(*args, check=True, env=None) -> subprocess.CompletedProcess:
    """Run the real ``deskd`` command; with ``check`` a non-zero exit fails with its stderr."""
    p = subprocess.run(deskd_cmd() + list(args), capture_output=True, text=True, timeout=600,
                       env=None if env is None else {**os.environ, **env})
    if check and p.returncode != 0:
        raise AssertionError(f"deskd {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def cfg_all_strategies():
    """The example desk with S1, S2 and S3 enabled, on the bundled sample."""
    from deskd.configs.loader import load_config

    c = load_config(EXAMPLE)
    strategies = c.strategies.enable("S2_MR_ZSCORE_EMA_REGIME", "S3_BREAKOUT_ATR_REGIME_EMA200")
    return c.model_copy(update={"strategies": strategies})


def require_tool(found: str | None, what: str, package: str) -> str:
    """``found`` (a path), or skip (locally) / fail (in CI) naming the Debian package."""
    if found:
        return found
    msg = f"{what} not found: apt-get install {package} (.ci/run installs it)"
    if os.environ.get("DESKD_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def fake_v20() -> FakeV20:
    """A fresh fake v20 broker over ``tests.fake_broker.BARS``, no bar released yet."""
    return fake_v20_broker()


@pytest_asyncio.fixture
async def serve_v20() -> AsyncIterator[Callable[[FakeV20], Awaitable[Credentials]]]:
    """``await serve_v20(broker)``: serve ``broker`` on a free loopback port in the test's event
    loop and give the credentials to reach it; every server is closed after the test."""
    servers: list[TestServer] = []

    async def serve(broker: FakeV20) -> Credentials:
        server = TestServer(build_app(broker), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Credentials(str(server.make_url("")).rstrip("/"), broker.account_id, broker.token)

    try:
        yield serve
    finally:
        for server in reversed(servers):
            await server.close()


@pytest_asyncio.fixture
async def v20_credentials(fake_v20: FakeV20, serve_v20) -> Credentials:
    """``fake_v20`` served on loopback: the credentials of its account."""
    return await serve_v20(fake_v20)


@pytest_asyncio.fixture
async def v20_client(v20_credentials: Credentials) -> AsyncIterator[V20Client]:
    """deskd's v20 client (default retries and timeouts) of the served ``fake_v20``, open."""
    async with V20Client(v20_credentials) as client:
        yield client


@pytest.fixture
def desk_runner(tmp_path) -> Iterator[DeskRunner]:
    """The daemon's runner of the test desk (tests.daemon.helpers.config, paper broker) on a new
    SQLite store in ``tmp_path``; closed after the test."""
    runner = DeskRunner(config(), sqlite_url(tmp_path / "d.db"))
    yield runner
    runner.close()


async def poll_once(poller) -> int:
    """What a bar-close run of the live daemon does with its CandlePoller: fetch every
    completed bar since the last fed, feed them; returns how many."""
    bars = await poller.fetch()
    poller.feed(bars)
    return len(bars)
