"""The daemon's builders: options checked before anything starts, and the watchdog tied to
progress."""

import itertools
import socket
import time

import pytest

from deskd.adapters.replay import replay_bars
from deskd.configs.loader import load_config
from deskd.daemon.nodes import OptionError, RunOptions, build_paper_node, check_options
from deskd.persistence.store import sqlite_url
from tests.conftest import EXAMPLE


@pytest.fixture
def cfg():
    return load_config(EXAMPLE)


@pytest.mark.parametrize("opts, match", [
    (dict(api_token="short"), "at least 16"),
    (dict(scenario="Z"), "--scenario 'Z'"),
    (dict(api_port=99999), "--api-port 99999: a TCP port is 1-65535"),
    (dict(speed=float("nan")), "--speed nan"),
    (dict(speed=-1.0), "--speed -1"),
    (dict(reconcile_every_s=float("inf")), "--reconcile-every"),
    (dict(poll_interval_s=float("inf")), "--poll-interval"),
    (dict(warmup_bars=1), "--warmup-bars"),
    (dict(poll_interval_s=0.0), "--poll-interval"),
    (dict(broker_timeout_s=-1.0), "--broker-timeout"),
    (dict(reconcile_every_s=-5.0), "--reconcile-every"),
])
def test_options_that_cannot_work_are_refused_before_anything_starts(cfg, tmp_path, opts, match):
    with pytest.raises(OptionError, match=match):
        check_options(cfg, RunOptions(store_url=sqlite_url(tmp_path / "d.db"), **opts))


def test_watchdog_is_pinged_while_idle_or_progressing_and_not_when_a_bar_hangs(cfg, tmp_path, monkeypatch):
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(sock_path)
        server.settimeout(0.2)
        monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
        node = build_paper_node(cfg, RunOptions(store_url=sqlite_url(tmp_path / "d.db"), serve_api=False))
        try:
            def pinged() -> bool:
                try:
                    return server.recv(64) == b"WATCHDOG=1"
                except TimeoutError:
                    return False
            node._watchdog(interval_s=1.0)                       # idle
            assert pinged()
            node.runner.bar_started = time.perf_counter() - 2.0  # a bar in flight, still in time
            node._watchdog(interval_s=1.0)
            assert pinged()
            node.runner.bar_started = time.perf_counter() - 60.0  # a bar that hangs
            node._watchdog(interval_s=1.0)
            assert not pinged()
        finally:
            node.runner.close()


def test_the_wal_checkpoint_writes_the_wal_back_into_the_database_file(cfg, tmp_path):
    """Automatic checkpoints are off on the writer (none inside a bar's commit); the node's job
    calls checkpoint(), which moves the committed pages into the database file."""
    node = build_paper_node(cfg, RunOptions(store_url=sqlite_url(tmp_path / "d.db"), serve_api=False))
    db = tmp_path / "d.db"
    try:
        for bar in itertools.islice(replay_bars(node.feed.feed), 3000):
            node.runner.feed(bar)
        before = db.stat().st_size
        assert (tmp_path / "d.db-wal").stat().st_size > 0
        node.runner.checkpoint.checkpoint()
        assert db.stat().st_size > before
    finally:
        node.runner.close()


@pytest.mark.asyncio
async def test_the_nodes_jobs_include_the_wal_checkpoint_on_sqlite(cfg, tmp_path):
    node = build_paper_node(cfg, RunOptions(store_url=sqlite_url(tmp_path / "d.db"), serve_api=False))
    try:
        jobs = node._jobs()
        names = {j.get_name() for j in jobs}
        for j in jobs:
            j.cancel()
        assert {"health-snapshot", "wal-checkpoint"} <= names
    finally:
        node.runner.close()
