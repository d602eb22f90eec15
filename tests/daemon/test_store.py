"""The store: migrations match the models, a bar commits whole or not at all, a backtest
records exactly what its CSVs say, and a failed run leaves nothing behind."""

import csv
import sqlite3
import sys
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from deskd.persistence.store import (
    StoreError,
    StoreWriter,
    bar_cursor,
    decisions,
    desk_state,
    metadata,
    open_store,
    positions,
    sqlite_url,
)
from tests.conftest import EXAMPLE, run
from tests.daemon.helpers import T0, TF, Harness, Scripted


def test_migrations_create_exactly_the_models_schema(tmp_path):
    engine = open_store(sqlite_url(tmp_path / "s.db"))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    open_store(sqlite_url(tmp_path / "s.db"))  # opening again is a no-op upgrade


def test_unreachable_store_is_a_store_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(StoreError, match=f"store {tmp_path}/afile/sub/s.db: {tmp_path}/afile is not a folder"):
        open_store(f"sqlite:///{tmp_path}/afile/sub/s.db")
    assert list(tmp_path.iterdir()) == [tmp_path / "afile"]


def test_a_new_store_gets_its_missing_folder_created_owner_only(tmp_path):
    open_store(sqlite_url(tmp_path / "state" / "deskd.db")).dispose()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "deskd.db").stat().st_mode & 0o777 == 0o600


def test_a_read_only_open_of_a_missing_store_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(StoreError, match=f"no store at {tmp_path}/deskd.db"):
        open_store(sqlite_url(tmp_path / "deskd.db"), create=False)
    assert list(tmp_path.iterdir()) == []
    open_store(sqlite_url(tmp_path / "deskd.db")).dispose()
    open_store(sqlite_url(tmp_path / "deskd.db"), create=False).dispose()


def test_a_postgresql_url_without_its_driver_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails as if not installed
    with pytest.raises(StoreError, match=r"pip install -e '\.\[postgres\]'"):
        open_store("postgresql+psycopg://deskd@dbhost/deskd")


def live_desk(tmp_path):
    engine = open_store(sqlite_url(tmp_path / "live.db"))
    h = Harness()
    h.desk.set_strategies("EURUSD", [Scripted("S1_TREND_EMA_ATR_ADX", "EURUSD", on=[0, 2], sl_pips=100)])
    conn = engine.connect()
    h.after_bar.append(StoreWriter(conn, h.desk, commit_every_bars=1).end_bar)
    return h, engine, conn


def test_each_bar_commits_its_rows_and_snapshots_together(tmp_path):
    h, engine, _ = live_desk(tmp_path)
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    h.bar(1.1003, 1.1008, 1.1001, 1.1006)
    with engine.connect() as other:  # a second connection sees only committed state
        assert other.execute(select(bar_cursor.c.last_bar_ts)).scalar() == T0 + TF
        pos = other.execute(select(positions)).mappings().one()
        assert pos["symbol"] == "EURUSD" and pos["hold_bars"] == 1 and pos["entry_price"] == 1.1003
        assert other.execute(select(decisions.c.reason)).scalars().all() == ["traded"]
        assert other.execute(select(desk_state.c.state)).scalar() == "RUNNING"


def test_a_bar_that_fails_halfway_commits_nothing(tmp_path):
    h, engine, _ = live_desk(tmp_path)
    h.bar(1.1000, 1.1005, 1.0995, 1.1000)
    h.bar(1.1003, 1.1008, 1.1001, 1.1006)

    def broker_down(order):
        raise RuntimeError("crash after the decision, before the bar completed")
    h.desk.broker.submit = broker_down
    h.desk.ledger.open.clear()  # flat, so the signal on bar 2 is sent and the submit crashes
    with pytest.raises(RuntimeError):
        h.bar(1.1006, 1.1010, 1.1000, 1.1004)
    with engine.connect() as other:
        assert other.execute(select(bar_cursor.c.last_bar_ts)).scalar() == T0 + TF
        assert other.execute(select(decisions.c.reason)).scalars().all() == ["traded"]


def test_backtest_store_holds_what_the_csvs_say(tmp_path):
    db = tmp_path / "bt.db"
    run("backtest", "--config", str(EXAMPLE), "--out", str(tmp_path / "o"), "--store", str(db), "--quiet",
        "--decisions", "csv")
    per_csv = defaultdict(lambda: [0, 0.0])
    with open(tmp_path / "o" / "trades.csv") as fh:
        for row in csv.DictReader(fh):
            per_csv[row["scenario"]][0] += 1
            per_csv[row["scenario"]][1] += float(row["pnl_usd"])
    with sqlite3.connect(db) as c:
        got = {s: (n, p) for s, n, p in c.execute(
            "select scenario, count(*), sum(pnl_usd) from trades group by scenario")}
        n_decisions = c.execute("select count(*) from decisions").fetchone()[0]
        statuses = dict(c.execute("select status, count(*) from orders group by status").fetchall())
    assert set(got) == {"A", "B", "C"}
    for s, (n, pnl) in per_csv.items():
        assert got[s][0] == n and got[s][1] == pytest.approx(pnl, abs=0.01 * n)
    with open(tmp_path / "o" / "decisions.csv") as fh:
        assert n_decisions == sum(1 for _ in fh) - 1
    assert set(statuses) <= {"FILLED", "CANCELLED"}


def test_backtest_refuses_to_mix_into_an_existing_run_unless_forced(tmp_path):
    db = tmp_path / "bt.db"
    args = ["backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--store", str(db), "--quiet"]
    run(*args, "--out", str(tmp_path / "o1"))
    p = run(*args, "--out", str(tmp_path / "o2"), check=False)
    assert p.returncode == 2 and "already holds desk 'example' scenario 'A'" in p.stderr
    assert not (tmp_path / "o2").exists()
    run(*args, "--out", str(tmp_path / "o2"), "--force")
    with sqlite3.connect(db) as c:
        assert c.execute("select count(distinct trade_id) = count(*) from trades").fetchone()[0] == 1


def test_backtest_failing_midway_leaves_the_store_empty(tmp_path):
    # USDJPY: 60,000 valid bars, then a bad one; the first 50k-row chunk replays (trades and
    # decisions are flushed to the open transaction) before the second chunk fails
    rng = np.random.default_rng(3)
    n = 60_000
    close = 150 + np.cumsum(rng.normal(0, 0.05, n))
    times = pd.date_range("2026-01-15", periods=n, freq="15min")
    df = pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M:%S"), "open": close, "high": close + 0.05,
                       "low": close - 0.05, "close": close})
    df.loc[55_000, "low"] = df.loc[55_000, "high"] + 1
    bad = tmp_path / "USDJPY.csv"
    df.to_csv(bad, index=False)
    db = tmp_path / "bt.db"
    p = run("backtest", "--config", str(EXAMPLE), "--data", f"USDJPY={bad}", "--data-timezone", "UTC",
            "--scenarios", "A", "--out", str(tmp_path / "o"), "--store", str(db), check=False)
    assert p.returncode == 2 and "line 55002: low" in p.stderr
    with sqlite3.connect(db) as c:
        for table in ("decisions", "trades", "orders", "desk_state"):
            assert c.execute(f"select count(*) from {table}").fetchone()[0] == 0, table


def test_a_new_sqlite_store_and_its_wal_are_private_to_their_owner(tmp_path):
    db = tmp_path / "private.db"
    engine = open_store(sqlite_url(db))
    with engine.begin() as c:
        c.execute(desk_state.delete())  # a write, so the WAL exists
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(db) == 0o600
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or mode(wal) == 0o600
    engine.dispose()


def test_a_store_killed_during_its_first_migration_opens_cleanly_next_time(tmp_path):
    """pysqlite runs DDL outside the transaction: a new store migrated in place and killed
    half-way kept a table without its Alembic version, and every later start failed with
    "table ... already exists". The schema is now written aside and linked into place."""
    import subprocess

    db = tmp_path / "s.db"
    code = ("import os\nimport alembic.command\nfrom deskd.persistence import store\n"
            "def dying(cfg, rev):\n"
            "    cfg.attributes['connection'].exec_driver_sql('CREATE TABLE bar_cursor (x INTEGER)')\n"
            "    os._exit(9)  # SIGKILL half-way through the migration\n"
            "alembic.command.upgrade = dying\n"
            f"store.open_store(store.sqlite_url({str(db)!r}))\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 9
    assert not db.exists()
    engine = open_store(sqlite_url(db))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_migration_0006_renames_decisions_price_to_decision_price_keeping_its_values(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect

    url = sqlite_url(tmp_path / "old.db")
    cfg = Config()
    cfg.set_main_option("script_location", "deskd.persistence:migrations")
    old = create_engine(url)
    with old.begin() as conn:  # a store of deskd before 0006, holding a decision with its price
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.exec_driver_sql(
            "INSERT INTO decisions (desk, scenario, bar_ts, symbol, strategy_id, side, action, reason, sl_pips, "
            "regime, price, atr_pips) VALUES ('d', 'A', 900, 'EURUSD', 'S1', 1, 'SKIPPED', 'position_open', "
            "12.5, 'R', 1.23456, 7.5)")
    old.dispose()
    engine = open_store(url)
    with engine.connect() as conn:
        assert conn.execute(select(decisions.c.id, decisions.c.decision_price, decisions.c.atr_pips)).all() == \
            [(1, 1.23456, 7.5)]
        assert "counterfactuals" in inspect(conn).get_table_names()
    with engine.begin() as conn:  # and back
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT price FROM decisions").all() == [(1.23456,)]
        assert "counterfactuals" not in inspect(conn).get_table_names()
    engine.dispose()
