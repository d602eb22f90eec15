"""The real `deskd run`: SIGKILL at random points and restarts lose and double nothing;
SIGTERM exits 0 and a restart continues where it stopped."""

import contextlib
import csv
import gzip
import os
import random
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from tests.conftest import EXAMPLE, deskd_cmd, run

pytestmark = pytest.mark.e2e
SAMPLE = EXAMPLE.parent / "../../data/sample"
BARS = 1500  # per symbol: several hundred bars of trading after the warm-up
# paced replay at 400,000x real time: the ~16 days of these bars take ~4 s of pacing, so the
# kills below land while bars are being released


@pytest.fixture(scope="module")
def short_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("bars")
    args = []
    for sym in ("EURUSD", "GBPUSD", "USDJPY"):
        with gzip.open(SAMPLE / f"{sym}_M15.csv.gz", "rt") as fh:
            lines = fh.readlines()[: BARS + 1]
        (d / f"{sym}.csv").write_text("".join(lines))
        args += ["--data", f"{sym}={d / f'{sym}.csv'}"]
    return args


@pytest.fixture(scope="module")
def backtest_trades(short_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bt") / "out"
    run("backtest", "--config", str(EXAMPLE), *short_data, "--scenarios", "A", "--out", str(out), "--quiet")
    with open(out / "trades.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 20
    return sorted((r["symbol"], r["side"], int(r["units"]), r["fill_time"], round(float(r["entry_price"]), 6),
                   r["exit_time"], r["exit_reason"], round(float(r["pnl_usd"]), 2)) for r in rows)


def store_trades(db):
    from deskd.core.time import iso
    with sqlite3.connect(db) as c:
        rows = c.execute("select symbol, side, units, fill_ts, entry_price, exit_ts, exit_reason, pnl_usd "
                         "from trades").fetchall()
    side = {1: "LONG", -1: "SHORT"}
    return sorted((s, side[sd], int(u), iso(f), round(p, 6), iso(x), r, round(pnl, 2))
                  for s, sd, u, f, p, x, r, pnl in rows)


def start(short_data, db, *extra):
    cmd = deskd_cmd() + ["run", "--config", str(EXAMPLE), *short_data, "--store", str(db), "--no-api",
                         "--speed", "400000", "--exit-at-end", "--log-level", "WARNING", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_points_then_restart_loses_and_doubles_nothing(short_data, backtest_trades, tmp_path):
    db = tmp_path / "desk.db"
    rng = random.Random(11)
    kills = 0
    for _ in range(4):
        p = start(short_data, db)
        time.sleep(rng.uniform(1.0, 3.0))
        if p.poll() is not None:  # finished before the kill
            break
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        kills += 1
    assert kills >= 2, "the daemon finished before it could be killed twice: slow it down"
    p = start(short_data, db)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert store_trades(db) == backtest_trades


def test_sigterm_exits_0_and_a_restart_continues(short_data, backtest_trades, tmp_path):
    db = tmp_path / "desk.db"
    p = start(short_data, db)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:  # trading: the signal handlers are in
        with contextlib.suppress(sqlite3.Error):
            if db.exists() and store_trades(db):
                break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    partial = store_trades(db)
    assert 0 < len(partial) < len(backtest_trades)
    p = start(short_data, db)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert store_trades(db) == backtest_trades


def test_sigterm_while_waiting_for_a_bar_at_real_speed_exits_promptly(short_data, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(120)
        cmd = deskd_cmd() + ["run", "--config", str(EXAMPLE), *short_data, "--store", str(tmp_path / "desk.db"),
                             "--no-api", "--speed", "1", "--log-level", "WARNING"]  # next bar 15 minutes away
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "NOTIFY_SOCKET": sock_path})
        while sock.recv(256).decode() != "READY=1":  # signals handled from here on, however slow the start
            pass
    time.sleep(1.0)
    assert p.poll() is None
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert time.monotonic() - t < 10


def test_daemon_tells_systemd_ready_after_recovery_then_stopping(short_data, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(60)
        cmd = deskd_cmd() + ["run", "--config", str(EXAMPLE), *short_data, "--store", str(tmp_path / "d.db"),
                             "--no-api", "--speed", "0", "--exit-at-end", "--log-level", "WARNING"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"})
        got = []
        while "STOPPING=1" not in got:
            got.append(sock.recv(256).decode())
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert got.index("READY=1") < got.index("STOPPING=1")
    assert "WATCHDOG=1" in got


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_store_is_refused_with_exit_2(short_data, url):
    cmd = deskd_cmd() + ["run", "--config", str(EXAMPLE), *short_data, "--store", url, "--no-api",
                         "--speed", "0", "--exit-at-end", "--log-level", "WARNING"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.splitlines()
    assert line.startswith(f"deskd: error: store {url} is an in-memory SQLite database"), line
