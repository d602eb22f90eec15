"""The store on a real PostgreSQL server: migrations, a recorded backtest, crash recovery.

Starts a throwaway cluster on a Unix socket in a temporary folder (installing Debian's
postgresql package first when the machine has none and we are root, as CI is)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import ReplayFeed, close_out, replay_bars
from deskd.daemon.runner import DeskRunner
from deskd.persistence.store import counterfactuals, decisions, metadata, open_store, trades
from tests.conftest import TRADE_KEY as KEY
from tests.conftest import require_tool


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _ensure_postgres() -> Path:
    bindir = _pg_bin()
    require_tool(str(bindir) if bindir else None, "PostgreSQL server binaries (initdb)", "postgresql")
    return bindir


@pytest.fixture(scope="module")
def cfg(cfg_all_strategies):
    return cfg_all_strategies


@pytest.fixture(scope="module")
def pg_url():
    bindir = _ensure_postgres()
    root = os.geteuid() == 0
    # directly under /tmp: pytest's own temp folders are root-only, and the server runs as postgres
    data = Path(tempfile.mkdtemp(prefix="deskd-pg-"))
    as_pg = ["runuser", "-u", "postgres", "--"] if root else []
    if root:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "deskd"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                            "-o", f"-p {port} -k {data} -c listen_addresses=''", "start"],
                   check=True, capture_output=True, timeout=120)
    admin = create_engine(f"postgresql+psycopg://deskd@/postgres?host={data}&port={port}",
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("CREATE DATABASE deskd"))
    admin.dispose()
    yield f"postgresql+psycopg://deskd@/deskd?host={data}&port={port}"
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                   capture_output=True, timeout=120)
    shutil.rmtree(data, ignore_errors=True)


def test_migrations_on_postgres_match_the_models(pg_url):
    engine = open_store(pg_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_crash_and_restart_on_postgres_reproduce_the_uninterrupted_trades(cfg, pg_url):  # noqa: F811
    files = dict(cfg.data.files)
    bars = list(replay_bars(ReplayFeed(files, cfg.data.timezone, cfg.universe.timeframe_s)))[:9000]
    desk = paper_desk(cfg)
    for b in bars:
        desk.on_bar(b)
    close_out(desk)
    want = sorted(tuple(getattr(t, k) for k in KEY) for t in desk.ledger.closed)
    assert len(want) > 20
    for stop in (2500, 6000, None):
        runner = DeskRunner(cfg, pg_url)
        for i, b in enumerate(bars):
            if stop is not None and i == stop:
                break
            runner.feed(b)
        else:
            runner.end_of_data()
        runner.close()
    engine = create_engine(pg_url)
    with engine.connect() as c:
        rows = c.execute(select(trades).order_by(trades.c.trade_id)).mappings().all()
        n_decisions, n_counterfactuals = (c.execute(select(func.count()).select_from(t)).scalar()
                                          for t in (decisions, counterfactuals))
    engine.dispose()
    assert sorted(tuple(r[k] for k in KEY) for r in rows) == want
    # each decision's counterfactual stored once, those open at a restart followed again
    assert n_counterfactuals == n_decisions > 1000


def test_every_exit_reason_fits_its_column_on_postgres(pg_url):
    """VARCHAR(8) once refused MARGIN_CLOSEOUT on PostgreSQL (SQLite does not check lengths):
    every ExitReason must fit every exit_reason column, and a fill keeps its own time."""
    from deskd.core.events import ExitReason
    from deskd.persistence.store import fills, orders

    engine = open_store(pg_url)
    key = {"desk": "widths", "scenario": "A"}
    with engine.begin() as c:
        for i, reason in enumerate(ExitReason):
            c.execute(orders.insert(), [{**key, "client_order_id": f"o{i}", "bar_ts": 0, "symbol": "EURUSD",
                                         "strategy_id": "S1", "side": -1, "units": 1.0, "intent": "EXIT",
                                         "risk_usd": 0.0, "exit_reason": reason, "status": "FILLED",
                                         "notional_usd": 0.0, "regime": "", "why": ""}])
            c.execute(fills.insert(), [{**key, "client_order_id": f"o{i}", "bar_ts": 900, "fill_ts": 1337,
                                        "symbol": "EURUSD", "strategy_id": "S1", "side": -1, "units": 1.0,
                                        "intent": "EXIT", "ref_price": 1.1, "price": 1.1, "cost_pips": 0.0,
                                        "exit_reason": reason}])
    with engine.connect() as c:
        got = c.execute(select(fills.c.exit_reason, fills.c.fill_ts).filter_by(**key)).all()
    assert sorted(r for r, _ in got) == sorted(ExitReason) and {t for _, t in got} == {1337}
    engine.dispose()
