"""Performance metrics of a set of closed trades.

Definitions (money in USD, distances in pips):

* win_rate: share of trades with pnl_usd > 0.
* expectancy_pips / expectancy_usd: mean pnl per trade (net of costs).
* profit_factor: gross profit / |gross loss| (None when there is no losing trade).
* max_drawdown_usd / _frac: largest fall from a running peak of equity, in USD, and deepest
  fall as a fraction of its peak; each is maximised on its own (they can come from
  different peaks). For a whole scenario
  it is measured on equity marked to market at every bar close (``drawdown_basis``
  ``mtm_bar_close``); for a subset of trades (a strategy, symbol or regime) on the equity curve
  of its closed trades alone, starting from the starting equity (``closed_trades``).
* cvar_95_usd: expected shortfall at 95 %, the mean pnl_usd of the worst ceil(5 % x n) trades
  (Rockafellar & Uryasev 2000, discrete form); negative is a loss.
* longest_win_streak / longest_loss_streak: consecutive trades with pnl_usd > 0 / < 0 in exit
  order.
* sharpe / sortino: of daily returns over FX trading days, annualised by sqrt(252); Sharpe
  uses the sample std (ddof=1), Sortino the downside deviation sqrt(mean(min(r, 0)^2))
  (Sortino & Price 1994) with a 0 target. A subset's daily return is its P&L realised that
  day over the account equity at the day's start. None when there are fewer than 2 days or
  no dispersion.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

from deskd.core.events import Trade

ANNUALISATION_DAYS = 252


def _r(x: float | None, nd: int) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x, nd)


def _streaks(pnls: Iterable[float]) -> tuple[int, int]:
    best_w = best_l = w = l = 0
    for p in pnls:
        if p > 0:
            w, l = w + 1, 0
        elif p < 0:
            w, l = 0, l + 1
        else:
            w = l = 0
        best_w = max(best_w, w)
        best_l = max(best_l, l)
    return best_w, best_l


def _max_drawdown(curve: Sequence[float]) -> tuple[float, float]:
    """(largest fall from a running peak in USD, deepest fall as a fraction of its peak),
    each maximised on its own."""
    peak = curve[0] if curve else 0.0
    dd_usd = dd_frac = 0.0
    for e in curve:
        if e >= peak:
            peak = e
            continue
        dd_usd = max(dd_usd, peak - e)
        if peak > 0:
            dd_frac = max(dd_frac, (peak - e) / peak)
    return dd_usd, dd_frac


def ratio_stats(daily_returns: Sequence[float]) -> tuple[float | None, float | None]:
    """(Sharpe, Sortino) of daily returns, annualised by sqrt(252); None where undefined."""
    n = len(daily_returns)
    if n < 2:
        return None, None
    mean = math.fsum(daily_returns) / n
    var = math.fsum((r - mean) ** 2 for r in daily_returns) / (n - 1)
    sharpe = mean / math.sqrt(var) * math.sqrt(ANNUALISATION_DAYS) if var > 0 else None
    down = math.fsum(min(r, 0.0) ** 2 for r in daily_returns) / n
    sortino = mean / math.sqrt(down) * math.sqrt(ANNUALISATION_DAYS) if down > 0 else None
    return sharpe, sortino


def cvar(pnls: Sequence[float], level: float = 0.95) -> float | None:
    """Mean of the worst ceil((1 - level) x n) values; None for no values."""
    if not pnls:
        return None
    k = max(1, math.ceil((1.0 - level) * len(pnls) - 1e-12))
    worst = sorted(pnls)[:k]
    return math.fsum(worst) / k


def trade_metrics(trades: Sequence[Trade], starting_equity_usd: float,
                  daily_returns: Sequence[float],
                  drawdown: tuple[float, float] | None = None) -> dict:
    """Metrics of ``trades`` (in exit order). ``drawdown`` (usd, frac) overrides the
    closed-trade drawdown with a marked-to-market one (whole scenario)."""
    pnls = [t.pnl_usd for t in trades]
    n = len(trades)
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit = math.fsum(wins)
    gross_loss = math.fsum(losses)
    if drawdown is None:
        curve = [starting_equity_usd]
        for p in pnls:
            curve.append(curve[-1] + p)
        dd_usd, dd_frac = _max_drawdown(curve)
        basis = "closed_trades"
    else:
        dd_usd, dd_frac = drawdown
        basis = "mtm_bar_close"
    win_streak, loss_streak = _streaks(pnls)
    sharpe, sortino = ratio_stats(daily_returns)
    mean = lambda xs: math.fsum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "trades": n,
        "win_rate": _r(len(wins) / n, 6) if n else None,
        "expectancy_pips": _r(mean([t.pnl_pips for t in trades]), 4),
        "expectancy_usd": _r(mean(pnls), 2),
        "net_pnl_usd": _r(math.fsum(pnls), 2),
        "gross_profit_usd": _r(gross_profit, 2),
        "gross_loss_usd": _r(gross_loss, 2),
        "profit_factor": _r(gross_profit / -gross_loss, 4) if losses else None,
        "avg_r_multiple": _r(mean([t.r_multiple for t in trades]), 4),
        "sd_r_multiple": _r(statistics.stdev([t.r_multiple for t in trades]), 4) if n > 1 else None,
        "cost_pips": _r(math.fsum(t.cost_pips for t in trades), 2),
        "max_drawdown_usd": _r(dd_usd, 2),
        "max_drawdown_frac": _r(dd_frac, 6),
        "drawdown_basis": basis,
        "cvar_95_usd": _r(cvar(pnls), 2),
        "longest_win_streak": win_streak,
        "longest_loss_streak": loss_streak,
        "sharpe_daily_ann": _r(sharpe, 4),
        "sortino_daily_ann": _r(sortino, 4),
        "avg_hold_bars": _r(mean([t.hold_bars for t in trades]), 2),
        "avg_mae_pips": _r(mean([t.mae_pips for t in trades]), 2),
        "avg_mfe_pips": _r(mean([t.mfe_pips for t in trades]), 2),
    }
