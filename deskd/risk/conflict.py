"""Signal conflict resolution among the strategies signalling one symbol at one bar close.

* ``priority``: the signal of the strategy earliest in the priority list trades; every other
  signal is skipped with reason ``conflict:<winner>``.
* ``netting``: the signals vote, LONG +1 and SHORT -1. A net of zero trades nothing (every
  signal skipped as ``conflict:netted``); otherwise the highest-priority signal on the
  winning side trades and the rest are skipped as ``conflict:<winner>``.
"""

from __future__ import annotations

from deskd.core.events import SignalIntent


class ConflictResolver:
    """Resolves one symbol's signals at one close under ``policy`` ('priority' or 'netting').

    Strategies missing from ``priority`` rank after the listed ones, in the order given.
    Raises ValueError for an unknown policy.
    """

    def __init__(self, policy: str, priority: list[str]):
        if policy not in ("priority", "netting"):
            raise ValueError(f"unknown conflict policy {policy!r}")
        self.policy = policy
        self._rank = {sid: i for i, sid in enumerate(priority)}

    def __call__(self, signals: list[SignalIntent]
                 ) -> tuple[SignalIntent | None, list[tuple[SignalIntent, str]]]:
        """(winner or None, [(loser, skip reason), ...])."""
        if len(signals) == 1:
            return signals[0], []
        return resolve(signals, self.policy, self._rank)


def resolve(signals: list[SignalIntent], policy: str, rank: dict[str, int]
            ) -> tuple[SignalIntent | None, list[tuple[SignalIntent, str]]]:
    """Return (winner or None, [(loser, skip reason), ...]) for one symbol's signals;
    ``rank`` maps strategy id to priority (0 first)."""
    if not signals:
        return None, []
    ordered = sorted(signals, key=lambda s: rank.get(s.strategy_id, len(rank)))
    if policy == "priority":
        pool = ordered
    elif policy == "netting":
        net = sum(s.side for s in ordered)
        if net == 0:
            return None, [(s, "conflict:netted") for s in ordered]
        pool = [s for s in ordered if (s.side > 0) == (net > 0)]
    else:
        raise ValueError(f"unknown conflict policy {policy!r}")
    winner = pool[0]
    return winner, [(s, f"conflict:{winner.strategy_id}") for s in ordered if s is not winner]
