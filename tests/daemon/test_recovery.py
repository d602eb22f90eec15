"""Crash and restart at any bar leave the store with exactly the trades of an uninterrupted
run: nothing lost, nothing doubled."""

import pytest
from sqlalchemy import select

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import ReplayFeed, replay, replay_bars
from deskd.daemon.runner import DeskRunner
from deskd.persistence.store import sqlite_url, trades
from tests.conftest import TRADE_KEY

KEY = TRADE_KEY


@pytest.fixture(scope="module")
def cfg(cfg_all_strategies):
    return cfg_all_strategies


def feed(cfg):
    return ReplayFeed(dict(cfg.data.files), cfg.data.timezone, cfg.universe.timeframe_s)


@pytest.fixture(scope="module")
def uninterrupted(cfg):
    desk = paper_desk(cfg)
    replay(desk, feed(cfg))
    return sorted(tuple(getattr(t, k) for k in KEY) for t in desk.ledger.closed)


def run_until(cfg, url, crash_after_live: int | None, mid_bar: bool = False) -> bool:
    runner = DeskRunner(cfg, url)
    live = 0
    for bar in replay_bars(feed(cfg)):
        warm = runner.is_warm_up(bar)
        if not warm and crash_after_live is not None and live == crash_after_live:
            if mid_bar:  # the bar runs, but the process dies before its commit
                runner.writer.commit = lambda: (_ for _ in ()).throw(SystemExit("killed"))
                with pytest.raises(SystemExit):
                    runner.feed(bar)
            runner.conn.close()
            return False
        runner.feed(bar)
        live += 0 if warm else 1
    runner.end_of_data()
    runner.close()
    return True


def stored_trades(url):
    from sqlalchemy import create_engine
    with create_engine(url).connect() as c:
        rows = c.execute(select(trades).order_by(trades.c.trade_id)).mappings().all()
    return [tuple(r[k] for k in KEY) for r in rows]


def test_restarts_between_and_inside_bars_reproduce_the_uninterrupted_trades(cfg, uninterrupted, tmp_path):
    url = sqlite_url(tmp_path / "desk.db")
    assert len(uninterrupted) > 100
    # live bars per run before each crash; cumulative 22,701 of ~36,000
    crashes = [(700, False), (3000, True), (5000, False), (8000, True), (1, False), (6000, True)]
    for live_bars, mid_bar in crashes:
        assert run_until(cfg, url, live_bars, mid_bar) is False
    assert run_until(cfg, url, None) is True
    assert stored_trades(url) == uninterrupted
