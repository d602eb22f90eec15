"""Start-up is restore, then serve: a restart with no new bar shows and keeps the store's desk;
nothing commits a desk the store has not restored; a store the daemon cannot hold (a symbol the
config no longer trades, an in-memory SQLite database) is refused when it is opened."""

import asyncio
import sqlite3

import pytest

from deskd.configs.models import DeskConfig
from deskd.core.events import BarClosed
from deskd.daemon.runner import DeskRunner, NotRestoredError, serve
from deskd.persistence.store import StoreError, sqlite_url
from tests.daemon.helpers import T0, TF, Scripted

S1 = "S1_TREND_EMA_ATR_ADX"


def config(symbols=("EURUSD", "USDJPY")) -> DeskConfig:
    return DeskConfig.model_validate({
        "universe": {"timeframe": "M15", "symbols": list(symbols)},
        "costs": {"spread_pips": {s: 0.0 for s in symbols},
                  "slippage": {"slip_base_pips": 0.0, "slip_k_pips": 0.0}},
    })


def runner(url: str, cfg: DeskConfig | None = None) -> DeskRunner:
    r = DeskRunner(cfg or config(), url)
    r.desk.set_strategies("EURUSD", [Scripted(S1, "EURUSD", on=(0,), sl_pips=20)])
    return r


BARS = [BarClosed("EURUSD", TF, T0 + i * TF, 1.1000, 1.1005, 1.0995, 1.1000 + i * 0.0002, 0.0) for i in range(3)]


def desk_view(r: DeskRunner) -> tuple:
    lg = r.desk.ledger
    return lg.balance_usd, round(lg.equity_usd, 6), lg.next_trade_id, sorted(lg.open)


@pytest.fixture
def store_with_a_position(tmp_path):
    """A store whose desk holds a EURUSD position after BARS, and that desk's view."""
    url = sqlite_url(tmp_path / "desk.db")
    r = runner(url)
    for b in BARS:
        r.feed(b)
    view = desk_view(r)
    assert view[3] == ["EURUSD"]
    r.close()
    return url, view, tmp_path / "desk.db"


class ListFeed:
    """A feed of fixed bars, released at once (the end of the bar files, nothing new)."""

    def __init__(self, bars):
        self._bars = bars

    def now(self) -> float:
        return float(self._bars[-1].close_ts)

    async def bars(self, skip_pacing, stop):
        for b in self._bars:
            yield b, float(b.close_ts)


@pytest.mark.asyncio
async def test_serve_restores_the_snapshot_before_ready_when_the_feed_has_nothing_new(store_with_a_position):
    url, before, _ = store_with_a_position
    r = runner(url)
    seen = []
    stop = asyncio.Event()
    task = asyncio.create_task(serve(r, ListFeed(BARS), exit_at_end=False,
                                     on_ready=lambda: (seen.append(desk_view(r)), stop.set()), stop=stop))
    assert await asyncio.wait_for(task, 10) == 0
    assert seen == [before]  # the API starts here: it sees the store's desk, never a bare one
    assert r.stats.warmed == len(BARS) and r.stats.live == 0
    r.close()


def test_a_commit_before_the_snapshot_is_restored_is_refused_and_the_store_kept(store_with_a_position):
    url, before, db = store_with_a_position
    r = runner(url)
    r.desk.operator_halt("operator, mid warm-up")
    with pytest.raises(NotRestoredError):
        r.writer.commit()  # what POST /halt does: it would write the bare desk over the store
    assert not r.restored
    r.close()
    with sqlite3.connect(db) as c:
        assert c.execute("select balance_usd, next_trade_id, state from desk_state").fetchone() == \
            (before[0], before[2], "RUNNING")
        assert c.execute("select symbol from positions").fetchall() == [("EURUSD",)]
    r = runner(url)
    for b in BARS:
        r.feed(b)
    r.ensure_restored()
    assert r.restored and desk_view(r) == before
    r.writer.commit()  # restored: commits again
    r.close()


def test_a_store_holding_a_symbol_the_config_no_longer_trades_is_refused_when_opened(store_with_a_position):
    url, _, db = store_with_a_position
    with pytest.raises(StoreError) as e:
        DeskRunner(config(("USDJPY",)), url)
    msg = str(e.value)
    assert "EURUSD" in msg and str(db) in msg and "\n" not in msg


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///file:d?mode=memory&uri=true"])
def test_an_in_memory_sqlite_store_is_refused(url):
    with pytest.raises(StoreError, match="is an in-memory SQLite database"):
        DeskRunner(config(), url)
