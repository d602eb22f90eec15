"""The live daemon's counterfactuals are durable: each is stored keyed to its decision's row,
once; a restart follows again the decisions stored without one and ends with exactly what an
uninterrupted run stores (only those whose bars the warm-up replays: an outcome not seen is
unknown); and turning counterfactuals off changes nothing else in the store."""

import itertools

import pytest
from sqlalchemy import create_engine, func, select

from deskd.adapters.replay import replay_bars, replay_feed
from deskd.core.events import Decision, DecisionAction
from deskd.daemon.runner import DeskRunner
from deskd.persistence.store import (
    COUNTERFACTUAL_FIELDS,
    counterfactuals,
    decisions,
    insert_counterfactuals,
    sqlite_url,
    trades,
)
from deskd.research.counterfactuals import CounterfactualObserver
from tests.daemon.helpers import bar, runner

BARS = 4500  # ~1,500 M15 bars per symbol of the sample: about 3 weeks, ~2,000 decisions
SCENARIO = "B"  # costs that read the ATR: the warm-up must rebuild it for the entry's cost


@pytest.fixture(scope="module")
def bars(cfg_all_strategies):
    return list(itertools.islice(replay_bars(replay_feed(cfg_all_strategies)), BARS))


def read(url: str, q) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q).all()]
    finally:
        engine.dispose()


def journal(url: str) -> list[tuple]:
    """Every decision with its counterfactual (None for each field when it has none), in
    journal order: (decision id, bar_ts, symbol, strategy_id, action, reason, cf fields...)."""
    d, c = decisions, counterfactuals
    q = (select(d.c.id, d.c.bar_ts, d.c.symbol, d.c.strategy_id, d.c.action, d.c.reason,
                *[c.c[f] for f in COUNTERFACTUAL_FIELDS])
         .select_from(d.outerjoin(c, c.c.decision_id == d.c.id)).order_by(d.c.id))
    return read(url, q)


def count(url: str, table) -> int:
    return read(url, select(func.count()).select_from(table))[0][0]


def without_counterfactual(url: str) -> int:
    """Decisions the store holds without a counterfactual (each stored one has its decision)."""
    return count(url, decisions) - count(url, counterfactuals)


def run(cfg, url: str, bars, live_bars: int | None = None, counterfactuals: bool = True) -> DeskRunner:
    """A runner on ``url`` fed ``bars`` from the first (those the store has processed are
    warm-up); with ``live_bars`` it stops after that many new bars and is returned unclosed
    (the caller kills it), else the data ends (EOD) and it is closed."""
    r = DeskRunner(cfg, url, SCENARIO, counterfactuals=counterfactuals)
    live = 0
    for b in bars:
        if live_bars is not None and live == live_bars and not r.is_warm_up(b):
            return r
        warm = r.is_warm_up(b)
        r.feed(b)
        live += 0 if warm else 1
    r.end_of_data()
    r.close()
    return r


def kill(r: DeskRunner) -> None:
    """The process dies: nothing more is committed (what the store holds is what it had)."""
    r.conn.close()
    r.engine.dispose()


@pytest.fixture(scope="module")
def uninterrupted(cfg_all_strategies, bars, tmp_path_factory):
    url = sqlite_url(tmp_path_factory.mktemp("uninterrupted") / "desk.db")
    run(cfg_all_strategies, url, bars)
    return url


def test_every_decision_of_an_uninterrupted_run_has_its_counterfactual_stored_once(uninterrupted):
    rows = journal(uninterrupted)
    assert len(rows) > 1000 and count(uninterrupted, counterfactuals) == len(rows)
    assert without_counterfactual(uninterrupted) == 0
    outcomes = {r[6] for r in rows}
    assert {"TP", "SL"} <= outcomes and None in outcomes  # decisions on the last bar: no next open


def test_a_killed_and_restarted_daemon_stores_the_counterfactuals_of_an_uninterrupted_run(
        cfg_all_strategies, bars, uninterrupted, tmp_path):
    url = sqlite_url(tmp_path / "desk.db")
    # killed between two bars, with brackets still open
    kill(run(cfg_all_strategies, url, bars, live_bars=1500))
    open_at_kill = without_counterfactual(url)
    assert open_at_kill > 0
    # restarted, then killed after a bar's commit, before the commit of the counterfactuals
    # that bar resolved
    r = DeskRunner(cfg_all_strategies, url, SCENARIO)
    store, lost = r._store_counterfactuals, []

    def dies():
        if r.stats.live >= 500 and r._cf_done:
            lost.extend(r._cf_done)
            raise SystemExit("killed")
        store()
    r._store_counterfactuals = dies  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        for b in bars:
            r.feed(b)
    kill(r)
    assert lost and r.stats.live >= 500  # resolved in a committed bar, never stored
    run(cfg_all_strategies, url, bars)  # to the end of the data
    assert journal(url) == journal(uninterrupted)  # row for row, ids included


def test_a_back_fill_is_stored_in_chunks_and_logged_in_one_line(cfg_all_strategies, bars, uninterrupted,
                                                                 tmp_path, monkeypatch):
    """A store whose decisions have no counterfactual (one written before the table existed):
    the restart derives them all over the replayed bars, commits them CF_COMMIT_ROWS at a time,
    and logs one line for them rather than one each."""
    import structlog

    import deskd.daemon.runner as runner_module

    url = sqlite_url(tmp_path / "desk.db")
    kill(run(cfg_all_strategies, url, bars, live_bars=1500))
    engine = create_engine(url)
    with engine.begin() as conn:  # as if stored before migration 0006
        conn.execute(counterfactuals.delete())
    engine.dispose()
    monkeypatch.setattr(runner_module, "CF_COMMIT_ROWS", 97)
    with structlog.testing.capture_logs() as logs:
        run(cfg_all_strategies, url, bars)
    assert journal(url) == journal(uninterrupted)
    (line,) = [e for e in logs if e["event"] == "counterfactuals stored"]
    assert line["count"] > 97 * 3  # several chunks
    # each stored counterfactual is logged once: in the back-fill's line, or alone as it resolves
    assert line["count"] + sum(e["event"] == "counterfactual" for e in logs) == count(url, counterfactuals)


def test_rearming_after_a_restart_writes_each_counterfactual_once(tmp_path):
    url = sqlite_url(tmp_path / "desk.db")
    r = runner(tmp_path, signals=(0, 1))  # bar 0 traded, bar 1 skipped: both brackets rest
    r.feed(bar(0))
    r.feed(bar(1))
    kill(r)
    assert count(url, decisions) == 2 and count(url, counterfactuals) == 0
    r = runner(tmp_path, signals=(0, 1))
    r.feed(bar(0))
    r.feed(bar(1))  # warm-up: both re-armed
    assert r.cf_observer is not None and r.cf_observer.decisions == 2
    r.feed(bar(2, lo=1.0970))  # a live bar through both stops
    first = journal(url)
    assert [row[6] for row in first] == ["SL", "SL"]
    r.close()
    r = runner(tmp_path, signals=(0, 1))  # again: nothing is stored without one, nothing re-armed
    for i in range(3):
        r.feed(bar(i, lo=1.0970 if i == 2 else 1.0995))
    assert r.cf_observer is not None and r.cf_observer.decisions == 0
    r.feed(bar(3))
    r.end_of_data()
    assert journal(url) == first
    # and the store itself never writes a second row for a decision, whoever asks
    rows = [dict(zip(["bar_ts", "symbol", "strategy_id"], row[1:4]), **dict(zip(COUNTERFACTUAL_FIELDS, row[6:])))
            for row in first]
    assert insert_counterfactuals(r.conn, r.cfg.desk, "A", [{**rows[0], "cf_outcome": "TP"}, *rows]) == 0
    r.conn.commit()
    assert journal(url) == first
    r.close()


def test_a_decision_whose_bars_the_restart_does_not_replay_stays_without_a_counterfactual(tmp_path):
    r = runner(tmp_path, signals=(0, 1))
    r.feed(bar(0))
    r.feed(bar(1))
    kill(r)
    r = runner(tmp_path, signals=())
    url = sqlite_url(tmp_path / "desk.db")
    r.feed(bar(1))  # the feed now starts at bar 1: bar 0's decision is out of reach
    r.feed(bar(2, lo=1.0970))
    assert [(row[5], row[6]) for row in journal(url)] == [("traded", None), ("position_open", "SL")]
    r.end_of_data()
    assert without_counterfactual(url) == 1  # bar 0's: never assumed, not even at the end of data
    r.close()


def test_a_rearmed_decision_whose_bar_has_passed_is_not_followed(tmp_path):
    r = runner(tmp_path, signals=())
    obs = r.cf_observer
    assert isinstance(obs, CounterfactualObserver)
    r.feed(bar(0))
    r.feed(bar(1))
    passed = Decision(bar(0).bar_ts, "EURUSD", "S1", 1, DecisionAction.SKIPPED, "position_open", 20.0, None, "R")
    coming = passed._replace(bar_ts=bar(3).bar_ts)
    assert obs.rearm([passed, coming]) == 1
    r.feed(bar(2))
    assert obs.decisions == 0 and obs.following("EURUSD")
    r.feed(bar(3))  # it joins at the close of its own bar
    assert obs.decisions == 1
    r.close()


def test_turning_counterfactuals_off_leaves_the_stores_trades_and_decisions_as_they_are(
        cfg_all_strategies, bars, uninterrupted, tmp_path):
    url = sqlite_url(tmp_path / "off.db")
    run(cfg_all_strategies, url, bars, counterfactuals=False)
    for table in (trades, decisions):
        assert read(url, select(table)) == read(uninterrupted, select(table))
    assert count(url, trades) > 100 and count(url, counterfactuals) == 0
