"""Every transition of the state machine, and its effects on entries and risk."""

import pytest

from deskd.desk.state import TRANSITIONS, DeskState, StateMachine, TransitionRefused, Trigger

S, T = DeskState, Trigger


def machine(state=S.RUNNING, **kw):
    sm = StateMachine(kw.get("max_errors", 3), kw.get("clean", 2), 0.5, state)
    if state is S.HALTED:
        sm.halt_cause = kw.get("cause", T.OPERATOR_HALT)
    return sm


@pytest.mark.parametrize("start,trigger", sorted(TRANSITIONS, key=str))
def test_every_listed_transition_moves_to_its_target_and_emits_an_event(start, trigger):
    sm = machine(start, cause=T.DD_BREACH)
    ev = sm.fire(trigger, 42, "why")
    assert sm.state is TRANSITIONS[(start, trigger)]
    assert ev.old == start.value and ev.new == sm.state.value and ev.trigger == trigger.value
    assert ev.bar_ts == 42 and ev.reason == "why"


UNLISTED = [(s, t) for s in S for t in T if (s, t) not in TRANSITIONS]


@pytest.mark.parametrize("start,trigger", UNLISTED)
def test_unlisted_pairs_change_nothing(start, trigger):
    sm = machine(start)
    sm.reconciled_clean = True
    assert sm.fire(trigger, 0, "") is None and sm.state is start


@pytest.mark.parametrize("state,entries,scale", [(S.RUNNING, True, 1.0), (S.DEGRADED, True, 0.5),
                                                  (S.SAFE_MODE, False, 1.0), (S.HALTED, False, 1.0)])
def test_state_effects_on_entries_and_risk(state, entries, scale):
    sm = machine(state)
    assert sm.allows_entries is entries and sm.risk_scale == scale


def test_execution_errors_degrade_then_halt_at_the_limit():
    sm = machine(max_errors=3)
    assert sm.execution_error(1, "timeout").new == "DEGRADED"
    assert sm.execution_error(2, "timeout") is None
    ev = sm.execution_error(3, "timeout")
    assert ev.new == "HALTED" and ev.trigger == "ERROR_LIMIT"


def test_clean_executions_recover_from_degraded():
    sm = machine(clean=2)
    sm.execution_error(1, "5xx")
    assert sm.execution_ok(2) is None
    assert sm.execution_ok(3).new == "RUNNING" and sm.errors == 0


def test_calendar_does_not_lift_a_halt_the_operator_or_errors_caused():
    sm = machine(S.HALTED, cause=T.ERROR_LIMIT)
    assert sm.fire(T.DD_HALT_EXPIRED, 0, "") is None and sm.state is S.HALTED


def test_safe_mode_resume_is_refused_until_reconciliation_is_clean():
    sm = machine()
    sm.fire(T.RECONCILE_MISMATCH, 0, "EURUSD units differ")
    sm.reconciled_clean = False
    with pytest.raises(TransitionRefused):
        sm.fire(T.OPERATOR_RESUME, 1, "")
    sm.reconciled_clean = True
    assert sm.fire(T.OPERATOR_RESUME, 2, "ok").new == "RUNNING"


def test_an_operator_halt_during_a_drawdown_halt_takes_it_over_so_the_calendar_cannot_lift_it():
    sm = machine(S.HALTED, cause=T.DD_BREACH)
    ev = sm.fire(T.OPERATOR_HALT, 10, "operator: news")
    assert ev is not None and (ev.old, ev.new, ev.trigger) == ("HALTED", "HALTED", "OPERATOR_HALT")
    assert sm.halt_cause is T.OPERATOR_HALT
    assert sm.fire(T.DD_HALT_EXPIRED, 20, "anchor") is None and sm.state is S.HALTED
    assert sm.fire(T.OPERATOR_HALT, 30, "again") is None  # already the operator's: nothing new
    assert sm.fire(T.OPERATOR_RESUME, 40, "clear").new == "RUNNING"


def test_a_deeper_drawdown_halt_during_a_drawdown_halt_is_journaled_and_takes_it_over():
    """A week breach or the fall from the peak during a day halt used to change the guard's
    halt silently: the journal kept saying "day drawdown"."""
    sm = machine(S.HALTED, cause=T.DD_BREACH)
    ev = sm.fire(T.DD_BREACH, 10, "drawdown from the equity peak 30.00% >= 25.00%")
    assert ev is not None and (ev.old, ev.new, ev.trigger) == ("HALTED", "HALTED", "DD_BREACH")
    assert "equity peak" in ev.reason and sm.halt_cause is T.DD_BREACH
    for cause in (T.OPERATOR_HALT, T.ERROR_LIMIT):  # never over a halt of another cause
        other = machine(S.HALTED, cause=cause)
        assert other.fire(T.DD_BREACH, 10, "week") is None and other.halt_cause is cause
