"""The store: a durable record of what the desk did, in SQL (SQLite file by default,
PostgreSQL by URL), with Alembic migrations applied on open.

Every row carries (desk, scenario): a live desk writes one pair, a backtest one per cost
scenario, so several runs can share a store. Tables:

* append-only: ``orders`` (status as :mod:`deskd.desk.orders` says: SUBMITTED -> FILLED | CANCELLED
  | REJECTED | UNKNOWN, UNKNOWN -> FILLED | CANCELLED | REJECTED), ``fills``, ``trades``,
  ``decisions``, ``state_transitions``, ``counterfactuals`` (at most one per decision, keyed to
  its row: :func:`insert_counterfactuals`);
* snapshots, replaced whole at each commit: ``positions`` (open positions with hold_bars and
  MAE/MFE so far), ``dd_guard`` (trading day, anchors, halt), ``desk_state`` (state machine,
  balance, equity, peak, drawdown, next trade id), ``bar_cursor`` (last bar processed per
  symbol).

:class:`StoreWriter` collects the rows of each bar from the bus and commits them in one
transaction at a bar boundary, so after a crash the store holds whole bars or none.
Times are UTC epoch seconds (bar open times, as on the bus).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    exists,
    select,
)

from deskd.core.events import (
    Decision,
    Fill,
    OrderCancelled,
    OrderIntent,
    OrderRejected,
    OrderUnknown,
    PositionClosed,
    StateChanged,
    Trade,
)
from deskd.desk.desk import Desk
from deskd.desk.ledger import LedgerSnapshot
from deskd.desk.state import MachineSnapshot
from deskd.risk.guard import GuardSnapshot

log = structlog.get_logger("deskd.store")

metadata = MetaData()


def _keys() -> list[Column]:
    return [Column("desk", String(32), primary_key=True, nullable=False),
            Column("scenario", String(32), primary_key=True, nullable=False)]


def _serial() -> list[Column]:
    return [Column("id", Integer, primary_key=True, autoincrement=True),
            Column("desk", String(32), nullable=False, index=True),
            Column("scenario", String(32), nullable=False)]


orders = Table(
    "orders", metadata, *_keys(),
    Column("client_order_id", String(128), primary_key=True),
    Column("bar_ts", BigInteger, nullable=False),
    Column("symbol", String(6), nullable=False),
    Column("strategy_id", String(40), nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("units", Float, nullable=False),
    Column("intent", String(5), nullable=False),
    Column("sl_pips", Float),
    Column("tp_pips", Float),
    Column("risk_usd", Float, nullable=False),
    Column("exit_reason", String(16)),
    Column("status", String(10), nullable=False),
    Column("notional_usd", Float, nullable=False),
    Column("regime", String(24), nullable=False),
    Column("why", String(40), nullable=False),
)

fills = Table(
    "fills", metadata, *_serial(),
    Column("client_order_id", String(140), nullable=False),
    Column("bar_ts", BigInteger, nullable=False),
    Column("fill_ts", BigInteger),  # NULL only in rows written before migration 0002
    Column("symbol", String(6), nullable=False),
    Column("strategy_id", String(40), nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("units", Float, nullable=False),
    Column("intent", String(5), nullable=False),
    Column("ref_price", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("cost_pips", Float, nullable=False),
    Column("exit_reason", String(16)),
    Column("sl_price", Float),
    Column("tp_price", Float),
    Column("spread_pips", Float),      # the cost split (migration 0004); NULL: not reported
    Column("slippage_pips", Float),
    Column("spike", Boolean),
)

_TRADE_COLUMNS: list[Column] = [  # shared by trades and positions (symbol is keyed differently in each)
    Column("strategy_id", String(40), nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("units", Float, nullable=False),
    Column("signal_ts", BigInteger, nullable=False),
    Column("fill_ts", BigInteger, nullable=False),
    Column("entry_price", Float, nullable=False),
    Column("entry_ref_price", Float, nullable=False),
    Column("sl_price", Float, nullable=False),
    Column("tp_price", Float),
    Column("risk_usd", Float, nullable=False),
    Column("entry_cost_pips", Float, nullable=False),
    Column("regime", String(24), nullable=False),
    Column("why", String(40), nullable=False),
    Column("client_order_id", String(128), nullable=False),
    Column("hold_bars", Integer, nullable=False),
    Column("mae_pips", Float, nullable=False),
    Column("mfe_pips", Float, nullable=False),
    Column("entry_spread_pips", Float),  # the entry fill's cost split (migration 0004)
    Column("entry_slippage_pips", Float),
    Column("entry_spike", Boolean),
]

trades = Table(
    "trades", metadata, *_keys(),
    Column("trade_id", Integer, primary_key=True, autoincrement=False),
    Column("symbol", String(6), nullable=False),
    *[c._copy() for c in _TRADE_COLUMNS],
    Column("exit_ts", BigInteger, nullable=False),
    Column("exit_price", Float, nullable=False),
    Column("exit_ref_price", Float, nullable=False),
    Column("exit_reason", String(16), nullable=False),
    Column("exit_cost_pips", Float, nullable=False),
    Column("gross_pips", Float, nullable=False),
    Column("cost_pips", Float, nullable=False),
    Column("pnl_pips", Float, nullable=False),
    Column("pnl_usd", Float, nullable=False),
    Column("r_multiple", Float, nullable=False),
    Column("exit_spread_pips", Float),  # the exit fill's cost split (migration 0004)
    Column("exit_slippage_pips", Float),
    Column("exit_spike", Boolean),
)

positions = Table(
    "positions", metadata, *_keys(),
    Column("symbol", String(6), primary_key=True),
    Column("trade_id", Integer, nullable=False),
    *[c._copy() for c in _TRADE_COLUMNS],
    Column("unrealized_usd", Float, nullable=False),
)

decisions = Table(
    "decisions", metadata, *_serial(),
    Column("bar_ts", BigInteger, nullable=False, index=True),
    Column("symbol", String(6), nullable=False),
    Column("strategy_id", String(40), nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("action", String(8), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("sl_pips", Float, nullable=False),
    Column("tp_pips", Float),
    Column("regime", String(24), nullable=False),
    Column("client_order_id", String(128)),
    # the decision's context (migration 0005; price renamed decision_price in 0006); NULL in
    # rows written before it
    Column("decision_price", Float),
    Column("atr_pips", Float),
    Column("score_name", String(64)),
    Column("score", Float),
)

#: what each decision's bracket would have done (deskd.research.counterfactuals), written by the
#: daemon when it resolves: one row per decision at most, keyed to the decision's row
#: (``decision_id`` = decisions.id; no FOREIGN KEY, as nowhere in this schema: SQLite's batch
#: migrations rebuild a table by dropping it, which a key would refuse or cascade). The
#: values are counterfactuals.parquet's (rounded as there), under the same names but the
#: times: ``cf_entry_ts`` / ``cf_exit_ts`` are UTC epoch seconds, as every time here. NULL
#: where that file has null (every cf_ field when the decision had no next open).
counterfactuals = Table(
    "counterfactuals", metadata, *_keys(),
    Column("decision_id", Integer, primary_key=True, autoincrement=False),
    Column("cf_outcome", String(4)),
    Column("cf_result", String(4)),
    Column("cf_pnl_pips", Float),
    Column("cf_pnl_r", Float),
    Column("cf_mae_pips", Float),
    Column("cf_mfe_pips", Float),
    Column("cf_mae_atr", Float),
    Column("cf_mfe_atr", Float),
    Column("cf_hold_bars", Integer),
    Column("cf_entry_ts", BigInteger),
    Column("cf_entry_price", Float),
    Column("cf_sl_price", Float),
    Column("cf_tp_price", Float),
    Column("cf_exit_ts", BigInteger),
    Column("cf_exit_price", Float),
)
#: the counterfactuals columns a row of :func:`insert_counterfactuals` gives
COUNTERFACTUAL_FIELDS = tuple(c.name for c in counterfactuals.columns
                              if c.name not in ("desk", "scenario", "decision_id"))

state_transitions = Table(
    "state_transitions", metadata, *_serial(),
    Column("bar_ts", BigInteger, nullable=False),
    Column("old", String(10), nullable=False),
    Column("new", String(10), nullable=False),
    Column("trigger", String(24), nullable=False),
    Column("reason", String(200), nullable=False),
)

dd_guard = Table(
    "dd_guard", metadata, *_keys(),
    Column("trading_day", String(10)),
    Column("day_anchor_usd", Float, nullable=False),
    Column("week_anchor_usd", Float, nullable=False),
    Column("next_roll_ts", BigInteger, nullable=False),
    Column("halt_until_ts", BigInteger),
    Column("halt_code", String(16), nullable=False),
    Column("halt_reason", String(200), nullable=False),
    Column("peak_equity_usd", Float, nullable=False, server_default="0"),
)

desk_state = Table(
    "desk_state", metadata, *_keys(),
    Column("state", String(10), nullable=False),
    Column("halt_cause", String(24)),
    Column("execution_errors", Integer, nullable=False),
    Column("clean_executions", Integer, nullable=False),
    Column("balance_usd", Float, nullable=False),
    Column("equity_usd", Float, nullable=False),
    Column("peak_usd", Float, nullable=False),
    Column("max_dd_usd", Float, nullable=False),
    Column("max_dd_frac", Float, nullable=False),
    Column("next_trade_id", Integer, nullable=False),
)

bar_cursor = Table(
    "bar_cursor", metadata, *_keys(),
    Column("symbol", String(6), primary_key=True),
    Column("last_bar_ts", BigInteger, nullable=False),
)


class StoreError(RuntimeError):
    """The store cannot be opened or migrated; the message names the URL (without secrets)."""


class WalCheckpoint:
    """Keeps SQLite's WAL checkpoints out of the bar commits: automatic checkpoints are turned
    off on the writer's connection, and :meth:`checkpoint` (called every few seconds off the
    event loop: the daemon's node schedules it with its other jobs) runs a PASSIVE checkpoint,
    which never blocks the writer, on a connection of its own. Without it a commit that
    crosses the WAL's 1000-page mark checkpoints and fsyncs in line (0.3-0.6 s on this VM;
    bench/RESULTS.md, daemon latency). Only for SQLite engines."""

    def __init__(self, engine, writer_conn):
        writer_conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        writer_conn.commit()
        self.engine = engine
        self._conn = None

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint; a failure is logged and the next call tries again."""
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            self._conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as e:
            log.warning("WAL checkpoint failed", error=str(e))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def open_store(url: str, create: bool = True) -> Engine:
    """Connect to ``url`` (``sqlite:///path.db`` or ``postgresql+psycopg://...``) and bring its
    schema to the newest migration. SQLite runs in WAL mode with synchronous=NORMAL; a new
    SQLite store is created whole or not at all (:func:`_create_sqlite`), with its folder
    (0700) and its file 0600. With ``create`` False (a read-only verb such as ``deskd
    reconcile``) a SQLite file that does not exist is an error, never a new empty store.
    Raises StoreError when the database cannot be reached or migrated, or its driver is not
    installed (the message says which package)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except ImportError as e:
        raise StoreError(f"store {_safe(url)}: {_driver_hint(url, e)}") from None
    except (SQLAlchemyError, ValueError) as e:
        raise StoreError(f"store {_safe(url)}: {e}") from None
    try:
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if _is_file(database):
                assert database is not None
                if not Path(database).exists():
                    if not create:
                        raise StoreError(f"no store at {database} (give --store PATH or URL of an existing store)")
                    _create_sqlite(database)
            event.listen(engine, "connect", _sqlite_pragmas)
        _upgrade(engine)
    except SQLAlchemyError as e:
        raise StoreError(f"store {_safe(url)}: cannot open or migrate: {e.__class__.__name__}: "
                         f"{getattr(e, 'orig', None) or e}") from None
    return engine


def _upgrade(engine: Engine) -> None:
    """Apply the Alembic migrations up to head, in one transaction. Raises SQLAlchemyError."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "deskd.persistence:migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _driver_hint(url: str, e: ImportError) -> str:
    """Why a store URL's driver cannot load, and what to install."""
    missing = getattr(e, "name", None) or str(e)
    if url.startswith("postgresql"):
        return (f"the PostgreSQL driver is not installed ({missing}): pip install -e '.[postgres]' "
                f"(psycopg 3), and write the URL as postgresql+psycopg://user@host/db")
    return f"its database driver is not installed: {e}"


def _is_file(database: str | None) -> bool:
    """True for an SQLite database that is a file path (not in memory, not a file: URI)."""
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


def _create_sqlite(database: str) -> None:
    """Create a new SQLite store at ``database``, whole or not at all: the schema is migrated
    in a temporary file beside it, then linked into place. pysqlite runs DDL outside the
    transaction, so a store migrated in place and killed half-way (SIGKILL, power) kept some
    tables without their Alembic version and failed every later start ("table ... already
    exists"). The file is readable by its owner only (0600: it holds positions and P&L;
    SQLite gives its -wal and -shm files the same mode), its folder created 0700 when missing.
    A store another process created meanwhile is kept. Raises StoreError naming a folder
    that cannot be made, SQLAlchemyError when the schema cannot be written."""
    folder = Path(database).parent
    if not folder.is_dir():
        try:
            folder.mkdir(mode=0o700, parents=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"store {database}: {_not_a_folder(folder)} is not a folder") from None
        except OSError as e:
            raise StoreError(f"store {database}: cannot create its folder {folder}: "
                             f"{e.strerror or e}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(database).name}.new-", dir=folder)  # 0600
    except OSError:
        return  # the first connection to ``database`` names the problem
    os.close(fd)
    try:
        new = create_engine(f"sqlite:///{tmp}")
        try:
            _upgrade(new)
        finally:
            new.dispose()
        try:
            os.link(tmp, database)  # atomic, and never over a store that appeared meanwhile
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not Path(database).exists():
                os.replace(tmp, database)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _not_a_folder(folder: Path) -> Path:
    """The nearest part of ``folder``'s path that exists (a file, where a folder should be)."""
    for p in (folder, *folder.parents):
        if p.exists():
            return p
    return folder


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _safe(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password to hide worth the risk
        return "<unparsable URL>"


class StoreWriter:
    """Records one desk's events in the store through ``conn``, a connection its caller owns.

    Subscribes to the desk's bus. Rows are kept until :meth:`flush` executes them on the
    connection's open transaction (so memory stays bounded) and :meth:`commit` adds the
    snapshots (positions, guard, state, balances, bar cursor) and commits. With
    ``commit_every_bars=1`` (the live daemon) each bar commits on its own. With 0 (a backtest)
    nothing commits here: the caller calls :meth:`write_snapshots` after the run and commits
    the connection once, so a failed run leaves nothing.

    ``on_existing`` says what to do when the store already holds (desk, scenario): ``refuse``
    (raise StoreError), ``replace`` (delete those rows in the same transaction) or ``resume``
    (append: the daemon restarting).
    """

    def __init__(self, conn: Connection, desk: Desk, commit_every_bars: int = 1,
                 flush_every_bars: int = 50_000, on_existing: str = "refuse"):
        self.desk = desk
        self.key = {"desk": desk.cfg.desk, "scenario": desk.scenario}
        self.commit_every = commit_every_bars
        self.flush_every = flush_every_bars
        self._conn = conn
        if on_existing == "replace":
            for table in metadata.sorted_tables:
                conn.execute(table.delete().filter_by(**self.key))
        elif on_existing == "refuse" and \
                conn.execute(desk_state.select().filter_by(**self.key)).first() is not None:
            raise StoreError(f"the store already holds desk {self.key['desk']!r} scenario "
                             f"{self.key['scenario']!r}; replace it explicitly (--force)")
        self._orders: list = []
        self._status: dict[str, str] = {}
        self._fills: list = []
        self._trades: list = []
        self._decisions: list = []
        self._transitions: list = []
        self._cursor: dict[str, int] = {}
        self._bars = 0
        b = desk.bus
        b.subscribe(OrderIntent, self._orders.append)
        b.subscribe(OrderCancelled, self._on_cancel)
        b.subscribe(OrderRejected, self._on_rejected)
        b.subscribe(Fill, self._on_fill)
        b.subscribe(PositionClosed, self._on_closed)
        b.subscribe(Decision, self._decisions.append)
        b.subscribe(StateChanged, self._transitions.append)
        b.subscribe(OrderUnknown, self._on_unknown)

    def _on_cancel(self, e) -> None:
        self._status[e.client_order_id] = "CANCELLED"

    def _on_rejected(self, e) -> None:
        self._status[e.client_order_id] = "REJECTED"

    def _on_unknown(self, e) -> None:
        self._status[e.client_order_id] = "UNKNOWN"

    def _on_fill(self, f) -> None:
        self._fills.append(f)
        self._status[f.client_order_id] = "FILLED"

    def _on_closed(self, e) -> None:
        self._trades.append(e.trade)

    def end_bar(self, bar) -> None:
        """The desk has finished ``bar``: advance the symbol's cursor, and commit (or flush)
        when the schedule says so. The runner calls it after every bar it trades."""
        self._cursor[bar.symbol] = bar.bar_ts
        self._bars += 1
        if self.commit_every and self._bars % self.commit_every == 0:
            self.commit()
        elif self._bars % self.flush_every == 0:
            self.flush()

    # -- writing --------------------------------------------------------------------------
    def flush(self) -> None:
        """Execute the pending rows on the open transaction (not yet committed)."""
        k = self.key
        x = self._conn.execute
        if self._orders:
            status = self._status
            x(orders.insert(), [{**k, **row_of(o, ORDER_FIELDS),
                                 "status": status.pop(o.client_order_id, "SUBMITTED")} for o in self._orders])
            self._orders.clear()
        if self._status:
            x(orders.update().where(orders.c.desk == k["desk"], orders.c.scenario == k["scenario"],
                                    orders.c.client_order_id == bindparam("oid")).values(status=bindparam("st")),
              [{"oid": oid, "st": st} for oid, st in self._status.items()])
            self._status.clear()
        if self._fills:
            x(fills.insert(), [{**k, **row_of(f, FILL_FIELDS)} for f in self._fills])
            self._fills.clear()
        if self._trades:
            x(trades.insert(), [{**k, **row_of(t, TRADE_FIELDS)} for t in self._trades])
            self._trades.clear()
        if self._decisions:
            x(decisions.insert(), [{**k, **dict(zip(DECISION_FIELDS, d))} for d in self._decisions])
            self._decisions.clear()
        if self._transitions:
            x(state_transitions.insert(), [{**k, **row_of(e, TRANSITION_FIELDS)} for e in self._transitions])
            self._transitions.clear()

    def commit(self) -> None:
        """Write everything since the last commit, snapshots included, and commit."""
        self.write_snapshots()
        self._conn.commit()

    def write_snapshots(self) -> None:
        """Flush, then replace the snapshot rows with the desk's :meth:`Desk.snapshot`
        (still uncommitted)."""
        self.flush()
        k = self.key
        snap = self.desk.snapshot()
        x = self._conn.execute
        for table in (positions, dd_guard, desk_state):
            x(table.delete().filter_by(**k))
        if snap.ledger.open:
            x(positions.insert(), [{**k, **row_of(t, POSITION_FIELDS), "unrealized_usd": u}
                                   for t, u in snap.ledger.open])
        g = snap.guard
        x(dd_guard.insert(), [{**k, **row_of(g, GUARD_FIELDS),
                               "trading_day": g.trading_day.isoformat() if g.trading_day else None}])
        x(desk_state.insert(), [{**k, **row_of(snap.machine, MACHINE_FIELDS),
                                 **row_of(snap.ledger, LEDGER_FIELDS)}])
        if self._cursor:
            x(bar_cursor.delete().filter_by(**k).where(bar_cursor.c.symbol.in_(list(self._cursor))))
            x(bar_cursor.insert(), [{**k, "symbol": s, "last_bar_ts": ts} for s, ts in self._cursor.items()])


#: decisions' natural key in a row of :func:`insert_counterfactuals` (a strategy signals at most
#: once per symbol and bar, so it names one decision of a (desk, scenario))
DECISION_KEY = ("symbol", "bar_ts", "strategy_id")
_IN_CHUNK = 500  # bar times per IN (...) list of :func:`insert_counterfactuals`


def lacks_counterfactual():
    """A WHERE clause on ``decisions``: the decision's counterfactual is not in the store."""
    c, d = counterfactuals, decisions
    return ~exists().where(c.c.desk == d.c.desk, c.c.scenario == d.c.scenario, c.c.decision_id == d.c.id)


def insert_counterfactuals(conn: Connection, desk: str, scenario: str, rows: Sequence[Mapping]) -> int:
    """Store resolved counterfactuals of (``desk``, ``scenario``) on ``conn``'s open transaction
    (the caller commits), each keyed to its decision's row. A row is a mapping with the
    decision's natural key (DECISION_KEY: symbol, bar_ts in UTC epoch seconds of the bar's
    open, strategy_id) and COUNTERFACTUAL_FIELDS (extra keys are ignored). Idempotent: a
    decision whose counterfactual the store holds already is left as it is (a replay after
    a restart writes nothing twice), as is a row whose decision the store does not hold.
    Returns how many rows were written. Raises SQLAlchemyError, KeyError for a row without
    those fields."""
    d = decisions
    wanted: dict[tuple, Mapping] = {}
    for r in rows:
        wanted.setdefault(tuple(r[k] for k in DECISION_KEY), r)
    if not wanted:
        return 0
    times = sorted({k[1] for k in wanted})
    found: list = []
    for i in range(0, len(times), _IN_CHUNK):
        q = (select(d.c.id, d.c.symbol, d.c.bar_ts, d.c.strategy_id)
             .where(d.c.desk == desk, d.c.scenario == scenario, d.c.bar_ts.in_(times[i:i + _IN_CHUNK]))
             .where(lacks_counterfactual())
             .order_by(d.c.id))
        found += conn.execute(q).all()
    new = [{"desk": desk, "scenario": scenario, "decision_id": i, **{f: row[f] for f in COUNTERFACTUAL_FIELDS}}
           for i, *key in found if (row := wanted.get(tuple(key))) is not None]
    if new:
        conn.execute(counterfactuals.insert(), new)
    return len(new)


def fields_of(record: type) -> tuple[str, ...]:
    """The field names of a dataclass or NamedTuple, in order."""
    named = getattr(record, "_fields", None)
    return tuple(named) if named is not None else tuple(f.name for f in dataclasses.fields(record))


def row_of(obj: object, names: tuple[str, ...]) -> dict:
    """``obj``'s values of ``names`` as a row dict."""
    return {n: getattr(obj, n) for n in names}


def _stored(table: Table, record: type, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The fields of ``record`` that ``table`` stores. Raises RuntimeError at import when the
    table has a column that is neither a key, a field of ``record``, nor in ``extra``: a
    record and its table cannot drift apart unnoticed."""
    names = fields_of(record)
    cols = [c.name for c in table.columns if c.name not in ("desk", "scenario", "id")]
    stray = [c for c in cols if c not in names and c not in extra]
    if stray:
        raise RuntimeError(f"table {table.name}: columns {stray} are not fields of {record.__name__}")
    return tuple(c for c in cols if c in names)


# Each record is defined once, as its event or snapshot dataclass; these say which of its
# fields each table keeps (the row dicts above and recovery's records are built from them).
ORDER_FIELDS = _stored(orders, OrderIntent, extra=("status",))
FILL_FIELDS = _stored(fills, Fill)
TRADE_FIELDS = _stored(trades, Trade)
POSITION_FIELDS = _stored(positions, Trade, extra=("unrealized_usd",))
DECISION_FIELDS = fields_of(Decision)
TRANSITION_FIELDS = _stored(state_transitions, StateChanged)
GUARD_FIELDS = _stored(dd_guard, GuardSnapshot)
MACHINE_FIELDS = _stored(desk_state, MachineSnapshot, extra=fields_of(LedgerSnapshot))
LEDGER_FIELDS = _stored(desk_state, LedgerSnapshot, extra=MACHINE_FIELDS)
