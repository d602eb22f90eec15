"""The desk's state machine: RUNNING / DEGRADED / SAFE_MODE / HALTED, as data.

| state     | new entries           | how it is left                                          |
|-----------|-----------------------|---------------------------------------------------------|
| RUNNING   | yes                   | errors, reconciliation mismatch, drawdown breach, halt  |
| DEGRADED  | yes, risk scaled down | N clean executions, or operator resume                  |
| SAFE_MODE | no                    | operator resume after a clean reconciliation            |
| HALTED    | no                    | drawdown halts lift at the next anchor; else operator   |

Exits and protective orders are allowed in every state. A (state, trigger) pair missing from
TRANSITIONS changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from deskd.core.events import StateChanged


class DeskState(StrEnum):
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    SAFE_MODE = "SAFE_MODE"
    HALTED = "HALTED"


class Trigger(StrEnum):
    EXECUTION_ERROR = "EXECUTION_ERROR"
    ERROR_LIMIT = "ERROR_LIMIT"
    CLEAN_EXECUTIONS = "CLEAN_EXECUTIONS"
    RECONCILE_MISMATCH = "RECONCILE_MISMATCH"
    DD_BREACH = "DD_BREACH"
    DD_HALT_EXPIRED = "DD_HALT_EXPIRED"
    OPERATOR_HALT = "OPERATOR_HALT"
    OPERATOR_RESUME = "OPERATOR_RESUME"


S, T = DeskState, Trigger
TRANSITIONS: dict[tuple[DeskState, Trigger], DeskState] = {
    (S.RUNNING, T.EXECUTION_ERROR): S.DEGRADED,
    (S.RUNNING, T.ERROR_LIMIT): S.HALTED,
    (S.DEGRADED, T.ERROR_LIMIT): S.HALTED,
    (S.DEGRADED, T.CLEAN_EXECUTIONS): S.RUNNING,
    (S.RUNNING, T.RECONCILE_MISMATCH): S.SAFE_MODE,
    (S.DEGRADED, T.RECONCILE_MISMATCH): S.SAFE_MODE,
    (S.HALTED, T.RECONCILE_MISMATCH): S.SAFE_MODE,
    (S.RUNNING, T.DD_BREACH): S.HALTED,
    (S.DEGRADED, T.DD_BREACH): S.HALTED,
    (S.HALTED, T.DD_BREACH): S.HALTED,  # a deeper drawdown halt (day -> week -> from peak) takes over a drawdown halt
    (S.HALTED, T.DD_HALT_EXPIRED): S.RUNNING,
    (S.RUNNING, T.OPERATOR_HALT): S.HALTED,
    (S.DEGRADED, T.OPERATOR_HALT): S.HALTED,
    (S.HALTED, T.OPERATOR_HALT): S.HALTED,  # takes the halt over: only an operator lifts it now
    (S.DEGRADED, T.OPERATOR_RESUME): S.RUNNING,
    (S.HALTED, T.OPERATOR_RESUME): S.RUNNING,
    (S.SAFE_MODE, T.OPERATOR_RESUME): S.RUNNING,
}


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """The state machine's state and counters, for the store."""

    state: DeskState
    halt_cause: Trigger | None
    execution_errors: int
    clean_executions: int


class TransitionRefused(RuntimeError):
    """An operator asked for something the state machine's rules do not allow now."""


class StateMachine:
    """Holds the desk state, counts execution errors, and answers what the state allows.

    ``fire`` returns the StateChanged event of a transition (None when nothing changed); the
    caller publishes it. Entries are allowed in RUNNING and DEGRADED (risk x
    ``degraded_risk_scale``); a drawdown-caused HALTED lifts only by DD_HALT_EXPIRED or operator.
    """

    def __init__(self, max_execution_errors: int, clean_executions_to_recover: int,
                 degraded_risk_scale: float, state: DeskState = DeskState.RUNNING):
        self.state = state
        self.max_errors = max_execution_errors
        self.clean_to_recover = clean_executions_to_recover
        self.degraded_scale = degraded_risk_scale
        self.errors = 0          # execution errors since the last clean recovery
        self.clean = 0           # clean executions since the last error
        self.halt_cause: Trigger | None = None
        self.reconciled_clean = True

    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot(self.state, self.halt_cause, self.errors, self.clean)

    def restore(self, s: MachineSnapshot) -> None:
        """Put back a :meth:`snapshot` (a restart keeps a halt and its cause)."""
        self.state, self.halt_cause, self.errors, self.clean = \
            s.state, s.halt_cause, s.execution_errors, s.clean_executions

    @property
    def allows_entries(self) -> bool:
        return self.state is DeskState.RUNNING or self.state is DeskState.DEGRADED

    @property
    def risk_scale(self) -> float:
        return self.degraded_scale if self.state is DeskState.DEGRADED else 1.0

    def fire(self, trigger: Trigger, bar_ts: int, reason: str) -> StateChanged | None:
        """Apply ``trigger``. Raises TransitionRefused for an operator resume out of
        SAFE_MODE before a clean reconciliation."""
        if trigger is Trigger.DD_HALT_EXPIRED and self.halt_cause is not Trigger.DD_BREACH:
            return None  # a halt with another cause is not lifted by the calendar
        if (trigger is Trigger.OPERATOR_RESUME and self.state is DeskState.SAFE_MODE
                and not self.reconciled_clean):
            raise TransitionRefused("SAFE_MODE: the last reconciliation found differences; "
                                    "reconcile cleanly before resuming")
        new = TRANSITIONS.get((self.state, trigger))
        takes_over = new is DeskState.HALTED and (
            (trigger is Trigger.OPERATOR_HALT and self.halt_cause is not Trigger.OPERATOR_HALT)
            or (trigger is Trigger.DD_BREACH and self.state is DeskState.HALTED
                and self.halt_cause is Trigger.DD_BREACH))
        if new is None or (new is self.state and not takes_over):
            return None
        old = self.state
        self.state = new
        if new is DeskState.HALTED:
            self.halt_cause = trigger
        elif new is DeskState.RUNNING:
            self.halt_cause = None
            self.errors = 0
            self.clean = 0
        return StateChanged(bar_ts, old.value, new.value, trigger.value, reason)

    def execution_error(self, bar_ts: int, reason: str) -> StateChanged | None:
        """Count an execution error: DEGRADED, or HALTED at ``max_execution_errors``."""
        self.errors += 1
        self.clean = 0
        if self.errors >= self.max_errors:
            return self.fire(Trigger.ERROR_LIMIT, bar_ts, f"{self.errors} execution errors: {reason}")
        return self.fire(Trigger.EXECUTION_ERROR, bar_ts, reason)

    def execution_ok(self, bar_ts: int) -> StateChanged | None:
        """Count a clean execution; DEGRADED returns to RUNNING after enough of them."""
        if self.state is not DeskState.DEGRADED:
            return None
        self.clean += 1
        if self.clean >= self.clean_to_recover:
            return self.fire(Trigger.CLEAN_EXECUTIONS, bar_ts, f"{self.clean} clean executions")
        return None
