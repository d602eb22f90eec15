"""Metrics on hand-computed trade sets."""

import math

import pytest

from deskd.core.events import Trade
from deskd.research.metrics import cvar, ratio_stats, trade_metrics


def trades(pnls):
    out = []
    for i, p in enumerate(pnls):
        t = Trade(i, "EURUSD", "S1", 1, 1000, 0, 0, 1.1, 1.1, 1.09, None, 100.0, 0.5, "VOL=MID|SPIKE=0", "", "")
        t.pnl_usd = p
        t.pnl_pips = p / 10
        t.r_multiple = p / 100
        out.append(t)
    return out


def test_win_rate_expectancy_profit_factor_and_streaks():
    m = trade_metrics(trades([100, 50, -30, -20, -10, 60]), 10_000, [])
    assert m["trades"] == 6 and m["win_rate"] == pytest.approx(0.5)
    assert m["expectancy_usd"] == pytest.approx(150 / 6, abs=0.01)
    assert m["profit_factor"] == pytest.approx(210 / 60)
    assert (m["longest_win_streak"], m["longest_loss_streak"]) == (2, 3)


def test_closed_trade_drawdown_from_running_peak():
    m = trade_metrics(trades([100, -30, -50, 20, -90]), 1000, [])
    # equity 1000 1100 1070 1020 1040 950: peak 1100, trough 950
    assert m["max_drawdown_usd"] == pytest.approx(150)
    assert m["max_drawdown_frac"] == pytest.approx(150 / 1100, rel=1e-5)


def test_cvar_95_is_the_mean_of_the_worst_5_percent():
    pnls = list(range(-20, 20))  # 40 trades -> worst 2
    assert cvar(pnls) == pytest.approx((-20 - 19) / 2)
    assert cvar([5.0]) == 5.0 and cvar([]) is None


def test_sharpe_and_sortino_of_daily_returns():
    r = [0.01, -0.02, 0.03, 0.0]
    mean = 0.005
    sd = math.sqrt(((0.005) ** 2 + 0.025 ** 2 + 0.025 ** 2 + 0.005 ** 2) / 3)
    down = math.sqrt(0.02 ** 2 / 4)
    sharpe, sortino = ratio_stats(r)
    assert sharpe == pytest.approx(mean / sd * math.sqrt(252))
    assert sortino == pytest.approx(mean / down * math.sqrt(252))
    assert ratio_stats([0.01]) == (None, None)


def test_no_losses_leaves_profit_factor_undefined_not_infinite():
    assert trade_metrics(trades([10, 20]), 1000, [])["profit_factor"] is None


def test_deepest_fraction_and_largest_usd_drawdown_are_tracked_independently():
    # 1000 -> 500 is -50 % (500 USD); later 3000 -> 2000 is -33 % but 1000 USD
    m = trade_metrics(trades([-500, 2500, -1000]), 1000, [])
    assert m["max_drawdown_usd"] == pytest.approx(1000)
    assert m["max_drawdown_frac"] == pytest.approx(0.5)
