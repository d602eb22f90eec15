"""The daemon's counterfactual hook: the runner completes a decision's counterfactual when its
bracket resolves (stored, committed and logged), the same as the real trade for a TRADED one;
an error in the observer never stops the desk."""

from sqlalchemy import create_engine, select
from structlog.testing import capture_logs

from deskd.core.events import ExitReason
from deskd.persistence.store import counterfactuals, decisions
from deskd.research.counterfactuals import counterfactual_json
from tests.daemon.helpers import TF, bar, runner


def stored(url: str) -> list[dict]:
    """The store's counterfactuals as the control API gives them, in decision order (read on a
    connection of its own: only what is committed)."""
    d, c = decisions, counterfactuals
    q = (select(c.c.decision_id, c.c.scenario, d.c.bar_ts, d.c.symbol, d.c.strategy_id, d.c.side, d.c.action,
                d.c.reason, d.c.regime, *[col for col in c.c if col.name.startswith("cf_")])
         .join_from(c, d, d.c.id == c.c.decision_id).order_by(c.c.decision_id))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [counterfactual_json(row, TF) for row in conn.execute(q).mappings()]
    finally:
        engine.dispose()


def test_the_runner_completes_each_decisions_counterfactual_when_its_bracket_resolves(tmp_path):
    r = runner(tmp_path, signals=(0, 1))  # bar 0: traded; bar 1: skipped, its position open
    url = str(r.engine.url)
    try:
        r.feed(bar(0))
        r.feed(bar(1))
        assert stored(url) == []  # both brackets rest (stops 20 pips below 1.1000)
        with capture_logs() as logs:
            r.feed(bar(2, lo=1.0970))
        traded, skipped = stored(url)  # committed right after the bar that resolved them
        logged = [{k: v for k, v in e.items() if k not in ("event", "log_level")}
                  for e in logs if e["event"] == "counterfactual"]
        assert logged == [{k: v for k, v in row.items() if k not in ("decision_id", "scenario")}
                          for row in (traded, skipped)]  # and logged, one line each
        assert (traded["action"], skipped["action"], skipped["reason"]) == ("TRADED", "SKIPPED", "position_open")
        (t,) = r.desk.ledger.closed
        assert t.exit_reason == ExitReason.SL == traded["cf_outcome"] == skipped["cf_outcome"]
        assert traded["cf_exit_price"] == round(t.exit_price, 6) and traded["cf_pnl_pips"] == round(t.pnl_pips, 2)
        assert (traded["cf_hold_bars"], skipped["cf_hold_bars"]) == (t.hold_bars, 1) == (2, 1)
        assert traded["cf_result"] == "LOSS" and traded["cf_pnl_r"] == -1.0
    finally:
        r.close()


def test_an_error_in_the_observer_turns_it_off_and_the_desk_trades_on(tmp_path):
    r = runner(tmp_path, signals=(0, 3))
    try:
        def broken(b):
            raise RuntimeError("boom")

        assert r.cf_observer is not None
        observer = r.cf_observer
        observer.end_bar = broken  # type: ignore[method-assign]
        r.feed(bar(0))
        assert r.cf_observer is None and not observer.active
        for i in range(1, 8):
            r.feed(bar(i))
        assert [t.exit_reason for t in r.desk.ledger.closed] == ["TIME"] and r.stats.live == 8
    finally:
        r.close()
