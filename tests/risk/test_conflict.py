import pytest

from deskd.core.events import LONG, SHORT, SignalIntent
from deskd.risk.conflict import ConflictResolver

PRIO = ["S1_TREND_EMA_ATR_ADX", "S3_BREAKOUT_ATR_REGIME_EMA200", "S2_MR_ZSCORE_EMA_REGIME"]


def resolve(signals, policy, priority):
    return ConflictResolver(policy, priority)(signals)


def sig(sid, side):
    return SignalIntent(0, "EURUSD", sid, side, 10.0, None, 5.0, "VOL=MID|SPIKE=0", "test", 0.0)


def test_priority_policy_trades_the_highest_priority_signal():
    s2, s3 = sig(PRIO[2], LONG), sig(PRIO[1], SHORT)
    winner, losers = resolve([s2, s3], "priority", PRIO)
    assert winner is s3 and losers == [(s2, "conflict:S3_BREAKOUT_ATR_REGIME_EMA200")]


def test_netting_policy_opposite_signals_cancel_to_no_trade():
    a, b = sig(PRIO[0], LONG), sig(PRIO[2], SHORT)
    winner, losers = resolve([a, b], "netting", PRIO)
    assert winner is None and {r for _, r in losers} == {"conflict:netted"} and len(losers) == 2


def test_netting_policy_majority_side_trades_its_highest_priority_signal():
    a, b, c = sig(PRIO[0], SHORT), sig(PRIO[1], LONG), sig(PRIO[2], LONG)
    winner, losers = resolve([a, b, c], "netting", PRIO)
    assert winner is b and len(losers) == 2


def test_a_lone_signal_wins_under_both_policies():
    a = sig(PRIO[2], LONG)
    assert resolve([a], "priority", PRIO) == (a, [])
    assert resolve([a], "netting", PRIO) == (a, [])


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown conflict policy"):
        ConflictResolver("coin_flip", PRIO)
