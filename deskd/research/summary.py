"""The terminal summary of a backtest, read from its report.json: 80 columns, every number whole.

One line of context (desk, timeframe, period, bars), then one row per scenario (trades,
return %, CAGR, max drawdown, Sharpe, profit factor, net USD), then one row per strategy of the
first scenario (trades, win rate, expectancy in R, profit factor, net USD). A scenario whose
equity fell below the floor (``account.equity_floor_frac`` of the starting equity) is named
under the table in red: the account was wiped out.

CAGR = (final / starting equity) ^ (1 / years) - 1, years = (last bar - first bar) / 365.25 days
(the compound annual growth rate); it is left out ("-") for periods under 30 days, where it
says nothing.
"""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_DAY_S = 86_400
_MIN_CAGR_DAYS = 30


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def period_of(report: dict) -> tuple[datetime, datetime] | None:
    """(first bar, last bar) over every data file of the report, within its trading window
    when it has one (``--from``/``--to``), or None when it has no bars."""
    firsts = [datetime.fromisoformat(d["first_bar"]) for d in report["data"].values() if d.get("first_bar")]
    lasts = [datetime.fromisoformat(d["last_bar"]) for d in report["data"].values() if d.get("last_bar")]
    if not firsts or not lasts:
        return None
    first, last = min(firsts), max(lasts)
    window = report.get("window") or {}
    if window.get("from"):
        first = max(first, datetime.fromisoformat(window["from"]))
    if window.get("to"):
        last = min(last, datetime.fromisoformat(window["to"]))
    return first, last


def cagr(start_usd: float, final_usd: float, days: float) -> float | None:
    """Compound annual growth rate over ``days`` calendar days; None under 30 days or when
    the account ended at or below zero (growth has no rate)."""
    if days < _MIN_CAGR_DAYS or start_usd <= 0 or final_usd <= 0:
        return None
    return (final_usd / start_usd) ** (365.25 / days) - 1


def summary(report: dict) -> RenderableType:
    """The summary of ``report`` (a parsed report.json), ready for a rich Console at 80
    columns or more. Raises KeyError for a report without the fields it reads."""
    span = period_of(report)
    days = (span[1] - span[0]).total_seconds() / _DAY_S if span else 0.0
    bars = next(iter(report["scenarios"].values()))["bars"] if report["scenarios"] else 0  # traded
    when = f"{span[0]:%Y-%m-%d} to {span[1]:%Y-%m-%d}" if span else "no bars"
    head = Text(f"{report['desk']} {report['timeframe']}  {when}  {bars:,} bars", style="bold")

    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, expand=False)
    for col in ("scenario", "trades", "return", "CAGR", "max DD", "Sharpe", "PF", "net USD"):
        t.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    start = report["starting_equity_usd"]
    wiped: list[str] = []
    for scn, r in report["scenarios"].items():
        o = r["overall"]
        t.add_row(scn, f"{o['trades']:,}", _num(r["return_frac"], "+.1%"),
                  _num(cagr(start, r["final_equity_usd"], days), "+.1%"), _num(o["max_drawdown_frac"], ".1%"),
                  _num(o["sharpe_daily_ann"], ".2f"), _num(o["profit_factor"], ".2f"), _num(o["net_pnl_usd"], ",.0f"))
        if r["wiped_out"]:
            wiped.append(f"scenario {scn}: account wiped out: equity fell to {r['min_equity_usd']:,.0f} USD, "
                         f"below the {r['equity_floor_usd']:,.0f} USD floor")

    first = next(iter(report["scenarios"]), None)
    parts: list[RenderableType] = [head, t]
    if first is not None and report["scenarios"][first]["by_strategy"]:
        s = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, title_justify="left",
                  title=f"by strategy, scenario {first}")
        s.add_column("strategy", justify="left", no_wrap=True, max_width=32, overflow="ellipsis")
        for col in ("trades", "win rate", "exp. R", "PF", "net USD"):
            s.add_column(col, justify="right", no_wrap=True)
        for sid, m in report["scenarios"][first]["by_strategy"].items():
            s.add_row(sid, f"{m['trades']:,}", _num(m["win_rate"], ".1%"), _num(m["avg_r_multiple"], "+.2f"),
                      _num(m["profit_factor"], ".2f"), _num(m["net_pnl_usd"], ",.0f"))
        parts.append(s)
    parts += [Text(w, style="bold red") for w in wiped]
    return Group(*parts)
