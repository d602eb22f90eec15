"""The daemon's counterfactual hook: the runner completes a decision's counterfactual when its
bracket resolves (logged, and kept for the control API), the same as the real trade for a
TRADED one; an error in the observer never stops the desk."""

from deskd.core.events import ExitReason
from tests.daemon.helpers import bar, runner


def test_the_runner_completes_each_decisions_counterfactual_when_its_bracket_resolves(tmp_path):
    r = runner(tmp_path, signals=(0, 1))  # bar 0: traded; bar 1: skipped, its position open
    try:
        r.feed(bar(0))
        r.feed(bar(1))
        assert list(r.counterfactuals) == []  # both brackets rest (stops 20 pips below 1.1000)
        r.feed(bar(2, lo=1.0970))
        traded, skipped = r.counterfactuals
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
