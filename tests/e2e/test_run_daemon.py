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
def backtest_out(short_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bt") / "out"
    run("backtest", "--config", str(EXAMPLE), *short_data, "--scenarios", "A", "--out", str(out), "--quiet")
    return out


@pytest.fixture(scope="module")
def backtest_trades(backtest_out):
    with open(backtest_out / "trades.csv") as fh:
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


def store_counterfactuals(db):
    """(decision time, symbol, strategy, action, outcome, pnl pips, R, MAE, MFE, hold bars, exit
    time) of every counterfactual the store holds, joined with its decision, sorted."""
    from deskd.core.time import iso
    with sqlite3.connect(db) as c:
        rows = c.execute("select d.bar_ts, d.symbol, d.strategy_id, d.action, f.cf_outcome, f.cf_pnl_pips, "
                         "f.cf_pnl_r, f.cf_mae_pips, f.cf_mfe_pips, f.cf_hold_bars, f.cf_exit_ts "
                         "from counterfactuals f join decisions d on d.id = f.decision_id").fetchall()
    return sorted((ts + 900, sym, sid, act, out, pnl, r, mae, mfe, hold, iso(x) if x is not None else None)
                  for ts, sym, sid, act, out, pnl, r, mae, mfe, hold, x in rows)


def backtest_counterfactuals(out):
    """The same fields of the backtest's counterfactuals.parquet (M15 bars: decision time is the
    decision bar's open + 900 s)."""
    import pandas as pd

    from deskd.core.time import iso
    cf = pd.read_parquet(out / "counterfactuals.parquet")
    none = lambda v: None if pd.isna(v) else v  # noqa: E731
    return sorted((int(row.decision_time.timestamp()), row.symbol, row.strategy_id, row.action,
                   none(row.cf_outcome), none(row.cf_pnl_pips), none(row.cf_pnl_r), none(row.cf_mae_pips),
                   none(row.cf_mfe_pips), None if pd.isna(row.cf_hold_bars) else int(row.cf_hold_bars),
                   None if pd.isna(row.cf_exit_time) else iso(int(row.cf_exit_time.timestamp())))
                  for row in cf.itertuples())


def start(short_data, db, *extra):
    cmd = deskd_cmd() + ["run", "--config", str(EXAMPLE), *short_data, "--store", str(db), "--no-api",
                         "--speed", "400000", "--exit-at-end", "--log-level", "WARNING", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_points_then_restart_loses_and_doubles_nothing(short_data, backtest_trades, backtest_out,
                                                                        tmp_path):
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
    # every decision's counterfactual, each once, as the backtest's: the kills lost none (a
    # restart re-arms what the store holds without one) and doubled none
    stored = store_counterfactuals(db)
    assert len(stored) > 1000 and stored == backtest_counterfactuals(backtest_out)


def test_counterfactuals_off_stores_none_and_trades_the_same(short_data, backtest_trades, tmp_path):
    db = tmp_path / "desk.db"
    p = start(short_data, db, "--counterfactuals", "off")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert store_trades(db) == backtest_trades and store_counterfactuals(db) == []


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
