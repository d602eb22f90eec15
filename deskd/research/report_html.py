"""report.html: one self-contained, offline page of a backtest's outputs.

Built only from what the run wrote (trades.csv, equity.csv, decisions.parquet or
decisions.csv when it wrote one, report.json) and the config it ran (starting equity, the
bar file of the first symbol for the price chart): every number shown is either read from
report.json as it is, or drawn from the rows of those files. The
page embeds plotly.js once, in its head, and loads nothing from the network (desks run
air-gapped). Times are UTC; money in USD, distances in pips, trade outcomes in R (P&L over
the planned risk at the stop).

Per scenario: headline numbers; the equity curve (equity.csv: a mark at every fill, FX-day
roll and the end, and the bar closes between them at each span's peak, low and deepest fall) with its drawdown from the running peak and the desk state over time
(report.json's state transitions); monthly returns; metrics overall and by strategy, symbol,
regime and exit reason (report.json); the distribution of R-multiples; MAE against MFE;
exit reasons; skip reasons (totals from report.json, over time from the decision file); and a
price chart of the first symbol over its last ``PRICE_WINDOW_BARS`` bars up to its last
trade, with entries, exits and stop-loss / take-profit brackets. A scenario whose final
equity is below ``WIPED_OUT_FRAC`` of the starting equity gets a red banner.

Large runs stay fast to open: the equity curve is cut to at most ``EQUITY_BUCKETS`` buckets
(each keeping its lowest and highest equity and deepest drawdown, so no dip disappears), the
R histogram is binned here, the MAE/MFE scatter shows at most ``SCATTER_MAX`` trades sampled
with a fixed seed, and decisions are counted per day or week. Two runs on the same outputs
write byte-identical pages (fixed plot ids, no wall-clock time).

``python -m deskd.research.report_html RUN_DIR`` rebuilds RUN_DIR/report.html from a run
folder (its config.yaml, report.json, CSVs and decision file).
"""

from __future__ import annotations

import functools
import html
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from deskd.adapters.bars import BarChunk, BarFileError, read_bars
from deskd.configs.loader import ConfigError, load_config
from deskd.configs.models import DeskConfig

#: the equity curve is cut into at most this many buckets of consecutive marks (<= 3 points each)
EQUITY_BUCKETS = 1500
#: at most this many trades in the MAE/MFE scatter (a seeded sample when there are more)
SCATTER_MAX = 5000
#: the price chart shows this many bars of the first symbol
PRICE_WINDOW_BARS = 500
#: ... ending this many bars after the symbol's last exit (or at the end of the data)
PRICE_WINDOW_MARGIN_BARS = 20
#: R-multiple histogram: bin width and the range outside which trades fold into the end bins
R_BIN = 0.25
R_RANGE = (-5.0, 10.0)
#: decisions are counted per day when the run spans at most this many days, else per week
DAILY_SKIPS_MAX_DAYS = 120

GREEN, RED, GREY, BLUE = "#1a9850", "#d73027", "#888888", "#2c7fb8"
STATES = ["RUNNING", "DEGRADED", "SAFE_MODE", "HALTED"]
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
TEMPLATE = "plotly_white"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class ReportInputError(ValueError):
    """A run folder the page cannot be built from; the message names the file."""


@dataclass
class PriceWindow:
    """Bars of one symbol: ``ts`` datetime64[s] UTC bar open times, prices in quote currency,
    bars ``timeframe_s`` seconds long."""

    symbol: str
    timeframe_s: int
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


@dataclass
class ScenarioData:
    """One scenario's outputs.

    ``report``: report.json's ``scenarios[name]``. ``trades``: its trades.csv rows in the file's
    order (one row per round trip; times datetime64, naive UTC; prices in quote currency,
    pnl_usd in USD, mae/mfe in pips, r_multiple in R). ``equity``: its equity.csv rows (time, kind,
    equity_usd, balance_usd, open_positions). ``decisions``: signals counted per period
    (columns ``period`` datetime64, ``reason``, ``n``; ``decisions_unit`` "day" or "week"),
    None when the scenario has no decision or, ``decisions_written`` False, the run wrote no
    decision file.
    """

    name: str
    report: dict
    trades: pd.DataFrame
    equity: pd.DataFrame
    decisions: pd.DataFrame | None
    decisions_unit: str = "day"
    decisions_written: bool = True  # False: the run wrote no decision file (--decisions none)


@dataclass
class RunData:
    """Everything the page shows: report.json, each scenario's rows, the price window (None
    with ``price_note`` saying why when there is none) and the starting equity (USD)."""

    report: dict
    scenarios: list[ScenarioData]
    starting_equity_usd: float
    price: PriceWindow | None
    price_note: str = ""


# ---------------------------------------------------------------------------------------- reading

def _times(col: pd.Series) -> pd.Series:
    """ISO 8601 UTC strings (``2026-01-15T14:30:00Z``) -> datetime64[ns], naive UTC."""
    return pd.to_datetime(col, format=TIME_FORMAT)


def read_trades(path: Path) -> pd.DataFrame:
    """trades.csv with times parsed and numbers as floats (tp_price NaN when there is none)."""
    df = pd.read_csv(path, keep_default_na=False, na_values={"tp_price": [""]},
                     dtype={"scenario": str, "symbol": str, "strategy_id": str, "side": str,
                            "exit_reason": str, "regime": str})
    for c in ("signal_time", "fill_time", "exit_time"):
        df[c] = _times(df[c])
    for c in ("entry_price", "exit_price", "sl_price", "tp_price", "pnl_usd", "pnl_pips",
              "r_multiple", "mae_pips", "mfe_pips"):
        df[c] = pd.to_numeric(df[c]).astype(float)
    return df


def read_equity(path: Path) -> pd.DataFrame:
    """equity.csv with ``time`` parsed (datetime64, naive UTC) and equity as float (USD)."""
    df = pd.read_csv(path, dtype={"scenario": str, "kind": str})
    df["time"] = _times(df["time"])
    df["equity_usd"] = df["equity_usd"].astype(float)
    return df


def decisions_file(run_dir: Path) -> Path | None:
    """The run's decision journal: decisions.parquet, else decisions.csv, else None (a run
    with ``--decisions none``)."""
    for name in ("decisions.parquet", "decisions.csv"):
        if (run_dir / name).exists():
            return run_dir / name
    return None


def count_decisions(path: Path) -> dict[str, pd.DataFrame]:
    """decisions.parquet or decisions.csv counted per (scenario, UTC day, reason): {scenario:
    frame with columns ``day`` (datetime64), ``reason``, ``n``}, the same from either file.
    Reads only three columns (pyarrow; the CSV with a streaming parse), so a run with millions
    of signals costs a few seconds, not its size in memory."""
    cols = ["scenario", "decision_time", "reason"]
    if path.suffix == ".parquet":
        table = pq.read_table(path, columns=cols)
        day = pc.cast(pc.cast(table["decision_time"], pa.date32()), pa.string())  # its UTC date
    else:
        opts = pacsv.ConvertOptions(include_columns=cols, column_types={c: pa.string() for c in cols})
        table = pacsv.read_csv(path, convert_options=opts)
        day = pc.utf8_slice_codeunits(table["decision_time"], 0, 10)
    grouped = (pa.table({"scenario": table["scenario"], "day": day, "reason": table["reason"]})
               .group_by(["scenario", "day", "reason"]).aggregate([([], "count_all")]).to_pandas())
    grouped = grouped.rename(columns={"count_all": "n"})
    grouped["day"] = pd.to_datetime(grouped["day"], format="%Y-%m-%d")
    return {str(s): g.drop(columns="scenario").sort_values(["day", "reason"]).reset_index(drop=True)
            for s, g in grouped.groupby("scenario")}


def _per_period(days: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Daily counts (``day``, ``reason``, ``n``) -> (counts per ``period``, "day" or "week"):
    per day for runs up to DAILY_SKIPS_MAX_DAYS long, else per week (stamped on its Monday)."""
    span = (days["day"].max() - days["day"].min()).days if len(days) else 0
    period, unit = days["day"], "day"
    if span > DAILY_SKIPS_MAX_DAYS:
        period, unit = period - pd.to_timedelta(period.dt.day_of_week, unit="D"), "week"
    out = days.assign(period=period).groupby(["period", "reason"], as_index=False)["n"].sum()
    return out.sort_values(["period", "reason"]).reset_index(drop=True), unit


def read_price_window(path: str, timezone: str, timeframe_s: int, symbol: str,
                      end_ts: int | None, bars: int = PRICE_WINDOW_BARS) -> PriceWindow:
    """The last ``bars`` bars of ``path`` opening at or before ``end_ts`` (UTC epoch s; None:
    the end of the file). Streams the file, keeping only the chunks it needs.
    Raises BarFileError."""
    kept: deque[BarChunk] = deque()
    held = 0
    for ch in read_bars(path, timezone, timeframe_s):
        if end_ts is not None and int(ch.ts[0]) > end_ts:
            break
        if end_ts is not None and int(ch.ts[-1]) > end_ts:
            n = int(np.searchsorted(ch.ts, end_ts, side="right"))
            ch = BarChunk(ch.ts[:n], ch.open[:n], ch.high[:n], ch.low[:n], ch.close[:n], ch.volume[:n])
        kept.append(ch)
        held += len(ch)
        while kept and held - len(kept[0]) >= bars:
            held -= len(kept.popleft())
    cols = {c: np.concatenate([getattr(ch, c) for ch in kept])[-bars:] if kept else np.array([])
            for c in ("ts", "open", "high", "low", "close")}
    return PriceWindow(symbol, timeframe_s, cols["ts"].astype("datetime64[s]"), cols["open"], cols["high"],
                       cols["low"], cols["close"])


def _price_end(trades: pd.DataFrame, symbol: str, timeframe_s: int) -> int | None:
    """UTC epoch seconds at which the price window ends: a margin after the symbol's last exit
    over all scenarios (None when it never traded: the end of the data)."""
    exits = trades.loc[trades["symbol"] == symbol, "exit_time"]
    if exits.empty:
        return None
    last = int(exits.max().value // 1_000_000_000)
    return last + PRICE_WINDOW_MARGIN_BARS * timeframe_s


def load_run(run_dir: Path, cfg: DeskConfig, report: dict | None = None) -> RunData:
    """Read the outputs in ``run_dir`` (``report``: report.json already in memory).
    Raises ReportInputError when a file is missing or unreadable; a bar file that cannot be
    read only leaves the price chart out (``price_note`` says why)."""
    try:
        if report is None:
            report = json.loads((run_dir / "report.json").read_text())
        trades = read_trades(run_dir / "trades.csv")
        equity = read_equity(run_dir / "equity.csv")
        dec_file = decisions_file(run_dir)
        decisions = count_decisions(dec_file) if dec_file is not None else None
    except (OSError, ValueError, KeyError, pa.ArrowException) as e:
        raise ReportInputError(f"{run_dir}: cannot read the run's outputs: {e}") from None
    if not isinstance(report, dict) or not isinstance(report.get("scenarios"), dict):
        raise ReportInputError(f"{run_dir / 'report.json'}: no 'scenarios' in it")
    scenarios = []
    for name, rep in report["scenarios"].items():
        per, unit = _per_period(decisions[name]) if decisions and name in decisions else (None, "day")
        scenarios.append(ScenarioData(name, rep, trades[trades["scenario"] == name].reset_index(drop=True),
                                      equity[equity["scenario"] == name].reset_index(drop=True), per, unit,
                                      decisions_written=decisions is not None))
    price, note = None, ""
    symbol = cfg.universe.symbols[0] if cfg.universe.symbols else None
    if symbol is None or symbol not in cfg.data.files:
        note = "no bar file in the config"
    else:
        tf = cfg.universe.timeframe_s
        try:
            price = read_price_window(cfg.data.files[symbol], cfg.data.timezone, tf, symbol,
                                      _price_end(trades, symbol, tf))
        except BarFileError as e:
            note = f"cannot read the bar file: {e}"
    return RunData(report, scenarios, cfg.account.starting_equity_usd, price, note)


# ------------------------------------------------------------------------------------ computation

def drawdown(equity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fall from the running peak in USD, the same as a fraction of the peak) per point."""
    if len(equity) == 0:
        return np.array([]), np.array([])
    peak = np.maximum.accumulate(equity)
    dd = peak - equity
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(peak > 0, dd / peak, 0.0)
    return dd, frac


def decimate(equity: np.ndarray, dd: np.ndarray, buckets: int = EQUITY_BUCKETS) -> np.ndarray:
    """Indices of the points to plot, in order: all of them when there are at most
    3 x ``buckets``; else, per bucket of consecutive points, its lowest and highest equity and
    deepest drawdown, plus the first and last point, so the curve's extremes all remain."""
    n = len(equity)
    if n <= 3 * buckets:
        return np.arange(n)
    keep = [np.array([0, n - 1])]
    for idx in np.array_split(np.arange(n), buckets):
        seg, dseg = equity[idx], dd[idx]
        keep.append(idx[[int(np.argmin(seg)), int(np.argmax(seg)), int(np.argmax(dseg))]])
    return np.unique(np.concatenate(keep))


def monthly_returns(times: pd.Series, equity: pd.Series, starting_equity_usd: float) -> pd.DataFrame:
    """One row per calendar month (UTC) with a mark: ``year``, ``month``, ``end_equity_usd``
    (the month's last mark), ``pnl_usd`` and ``return_frac`` against the previous month's end
    (the starting equity for the first month)."""
    if len(times) == 0:
        return pd.DataFrame(columns=["year", "month", "end_equity_usd", "pnl_usd", "return_frac"])
    df = pd.DataFrame({"year": times.dt.year.to_numpy(), "month": times.dt.month.to_numpy(),
                       "equity": equity.to_numpy()})
    ends = df.groupby(["year", "month"], sort=True)["equity"].last().reset_index()
    prev = ends["equity"].shift(1).fillna(starting_equity_usd)
    ends["pnl_usd"] = ends["equity"] - prev
    ends["return_frac"] = np.where(prev > 0, ends["equity"] / prev - 1.0, np.nan)
    return ends.rename(columns={"equity": "end_equity_usd"})


def r_histogram(r: np.ndarray, width: float = R_BIN,
                bounds: tuple[float, float] = R_RANGE) -> tuple[np.ndarray, np.ndarray, int]:
    """(bin edges in R, trades per bin, trades folded into the end bins): bins of ``width``
    over the data's range clipped to ``bounds``; trades beyond count in the end bins."""
    lo = max(math.floor(float(r.min()) / width) * width, bounds[0])
    hi = min(math.ceil(float(r.max()) / width) * width, bounds[1])
    if hi <= lo:
        hi = lo + width
    edges = np.arange(lo, hi + width / 2, width)
    folded = int(np.count_nonzero((r < lo) | (r > hi)))
    counts, _ = np.histogram(np.clip(r, lo, hi), edges)
    return edges, counts, folded


def sample_indices(n: int, cap: int = SCATTER_MAX, seed: int = 0) -> np.ndarray:
    """All of range(n) when n <= cap, else ``cap`` of them drawn with a fixed seed, sorted."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def final_equity(sc: ScenarioData) -> float:
    """The scenario's final equity in USD: its last equity.csv mark (the END row), else
    report.json's final_equity_usd."""
    if len(sc.equity):
        return float(sc.equity["equity_usd"].iloc[-1])
    return float(sc.report.get("final_equity_usd", 0.0))


def wiped_out(sc: ScenarioData, starting_equity_usd: float) -> bool:
    """report.json says the equity fell below the account's floor at a bar close
    (``account.equity_floor_frac``); a report written before it had the flag: the final
    equity is below 10 % of the starting equity."""
    if "wiped_out" in sc.report:
        return bool(sc.report["wiped_out"])
    return final_equity(sc) < 0.10 * starting_equity_usd


# --------------------------------------------------------------------------------------- formats

def _num(x, nd: int = 2, unit: str = "", sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    s = f"{x:+,.{nd}f}" if sign else f"{x:,.{nd}f}"
    return f"{s} {unit}".rstrip()


def _pct(x, nd: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x * 100:+.{nd}f} %" if sign else f"{x * 100:.{nd}f} %"


def _int(x) -> str:
    return "n/a" if x is None else f"{int(x):,}"


#: report.json metric -> (label, formatter); the units are in the formatted value
METRICS: list[tuple[str, str, Callable]] = [
    ("trades", "trades", _int),
    ("win_rate", "win rate", _pct),
    ("net_pnl_usd", "net P&L", lambda x: _num(x, 2, "USD", True)),
    ("gross_profit_usd", "gross profit", lambda x: _num(x, 2, "USD")),
    ("gross_loss_usd", "gross loss", lambda x: _num(x, 2, "USD")),
    ("expectancy_usd", "expectancy", lambda x: _num(x, 2, "USD/trade", True)),
    ("expectancy_pips", "expectancy (pips)", lambda x: _num(x, 2, "pips/trade", True)),
    ("profit_factor", "profit factor", lambda x: _num(x, 3)),
    ("avg_r_multiple", "average R", lambda x: _num(x, 3, "R", True)),
    ("sd_r_multiple", "sd of R", lambda x: _num(x, 3, "R")),
    ("cost_pips", "costs paid", lambda x: _num(x, 1, "pips")),
    ("max_drawdown_usd", "max drawdown", lambda x: _num(x, 2, "USD")),
    ("max_drawdown_frac", "max drawdown (of peak)", _pct),
    ("drawdown_basis", "drawdown measured on", lambda x: str(x)),
    ("cvar_95_usd", "CVaR 95 % per trade", lambda x: _num(x, 2, "USD", True)),
    ("longest_win_streak", "longest win streak", lambda x: f"{_int(x)} trades"),
    ("longest_loss_streak", "longest loss streak", lambda x: f"{_int(x)} trades"),
    ("sharpe_daily_ann", "Sharpe (daily, annualised)", lambda x: _num(x, 2)),
    ("sortino_daily_ann", "Sortino (daily, annualised)", lambda x: _num(x, 2)),
    ("avg_hold_bars", "average hold", lambda x: _num(x, 1, "bars")),
    ("avg_mae_pips", "average MAE", lambda x: _num(x, 1, "pips")),
    ("avg_mfe_pips", "average MFE", lambda x: _num(x, 1, "pips")),
]
_FORMAT = {k: f for k, _, f in METRICS}
#: the columns of the by-strategy / symbol / regime / exit reason tables
GROUP_COLUMNS = [
    ("trades", "trades"), ("win_rate", "win rate"), ("net_pnl_usd", "net P&L (USD)"),
    ("expectancy_usd", "expectancy (USD/trade)"), ("expectancy_pips", "expectancy (pips/trade)"),
    ("profit_factor", "profit factor"), ("avg_r_multiple", "avg R"),
    ("max_drawdown_usd", "max DD (USD, closed trades)"), ("sharpe_daily_ann", "Sharpe"),
    ("cvar_95_usd", "CVaR 95 % (USD)"), ("avg_hold_bars", "avg hold (bars)"),
]


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _metric(scn: str, key: str, value, text: str, tag: str = "span", cls: str = "") -> str:
    """An element carrying report.json's value as ``data-value`` (JSON), for tests and scripts."""
    c = f' class="{cls}"' if cls else ""
    return (f'<{tag}{c} data-scenario="{_e(scn)}" data-metric="{_e(key)}" '
            f'data-value="{_e(json.dumps(value))}">{_e(text)}</{tag}>')


def _sign_class(x) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x) or x == 0:
        return ""
    return "pos" if x > 0 else "neg"


# ---------------------------------------------------------------------------------------- figures

@functools.cache
def _template() -> dict:
    """plotly_white as a plain dict: set on the figure's dict, not through the figure object,
    which would deep-copy and validate it again for every figure (10x the page's build time)."""
    return pio.templates[TEMPLATE].to_plotly_json()


def _fig_html(fig: go.Figure, div_id: str, height: int) -> str:
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 60, "b": 40},
                      font={"size": 12}, legend={"orientation": "h", "y": -0.15})
    spec = fig.to_dict()
    spec["layout"]["template"] = _template()
    body = pio.to_html(spec, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=PLOT_CONFIG, default_height=f"{height}px", validate=False)
    return f'<div class="plot">{body}</div>'


def page(title: str, header: str, body: str, css: str = "") -> str:
    """A whole self-contained page as one string: the head (``CSS`` and ``css``, plotly.js
    embedded once: it opens offline), a header with ``title`` and the ``header`` HTML under it,
    then ``body``. Every deskd research page is one of these."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}{css}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body><main>
<header><h1>{_e(title)}</h1>
{header}
</header>
{body}
</main></body></html>
"""


def _empty(text: str) -> str:
    return f'<div class="empty">{_e(text)}</div>'


def _ts(x: pd.Series | np.ndarray) -> np.ndarray:
    """Times as datetime64[s] (plotly writes them as ISO strings, UTC)."""
    return np.asarray(x, dtype="datetime64[s]")


def equity_figure(sc: ScenarioData, div_id: str) -> str:
    """Equity (USD), drawdown from its running peak (USD) and the desk state, sharing time."""
    eq = sc.equity
    if eq.empty:
        return _empty(f"Scenario {sc.name}: equity.csv holds no marks.")
    y = eq["equity_usd"].to_numpy(float)
    dd, dd_frac = drawdown(y)
    idx = decimate(y, dd)
    t = _ts(eq["time"].to_numpy()[idx])
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.55, 0.3, 0.15])
    fig.add_trace(go.Scatter(x=t, y=y[idx], name="equity (USD)", line={"color": BLUE, "width": 1.5},
                             hovertemplate="%{x}<br>%{y:,.2f} USD<extra>equity</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=-dd[idx], name="drawdown (USD)", fill="tozeroy",
                             line={"color": RED, "width": 1}, customdata=dd_frac[idx] * 100,
                             hovertemplate="%{x}<br>%{y:,.2f} USD (%{customdata:.2f} % of peak)"
                                           "<extra>drawdown</extra>"), row=2, col=1)
    st_t, st_y = _state_steps(sc.report.get("state_transitions") or [], eq["time"].iloc[0],
                              eq["time"].iloc[-1])
    fig.add_trace(go.Scatter(x=st_t, y=st_y, name="desk state", line={"shape": "hv", "color": GREY},
                             mode="lines", hovertemplate="%{x}<br>%{y}<extra>state</extra>"), row=3, col=1)
    fig.update_yaxes(title_text="equity (USD)", tickformat=",.0f", row=1, col=1)
    fig.update_yaxes(title_text="drawdown (USD)", tickformat=",.0f", row=2, col=1)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=STATES, row=3, col=1)
    shown = "every mark" if len(idx) == len(y) else f"{len(idx):,} of {len(y):,} marks (min/max per bucket)"
    fig.update_layout(title=f"Equity, drawdown and desk state, scenario {sc.name} ({shown}, UTC)",
                      showlegend=False)
    return _fig_html(fig, div_id, 620)


def _state_steps(transitions: list[dict], start, end) -> tuple[np.ndarray, list[str]]:
    """The desk's state as a step line from ``start`` to ``end`` (transitions: report.json's)."""
    first = transitions[0]["from"] if transitions else "RUNNING"
    times, states = [pd.Timestamp(start)], [first]
    for tr in transitions:
        times.append(pd.Timestamp(tr["time"]).tz_convert(None))
        states.append(tr["to"])
    times.append(pd.Timestamp(end))
    states.append(states[-1])
    return _ts(np.array(times, dtype="datetime64[ns]")), states


def r_figure(sc: ScenarioData, div_id: str) -> str:
    """Histogram of the trades' R-multiples (binned here: one bar per bin)."""
    if sc.trades.empty:
        return _empty(f"No closed trades in scenario {sc.name}: no R-multiples to show.")
    r = sc.trades["r_multiple"].to_numpy(float)
    edges, counts, folded = r_histogram(r)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, width=R_BIN * 0.95,
                           marker_color=[RED if c < 0 else GREEN for c in centers],
                           customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                           hovertemplate="%{customdata[0]:.2f} R to %{customdata[1]:.2f} R: "
                                         "%{y} trades<extra></extra>"))
    avg = sc.report.get("overall", {}).get("avg_r_multiple")
    if avg is not None:
        fig.add_vline(x=avg, line_dash="dash", line_color=GREY,
                      annotation_text=f"average {avg:+.3f} R", annotation_position="top")
    note = f"; {folded} beyond [{edges[0]:g}, {edges[-1]:g}] R counted in the end bins" if folded else ""
    fig.update_layout(title=f"R-multiples, {len(r):,} trades<br><sup>{R_BIN:g} R bins{note}</sup>",
                      xaxis_title="R (P&L / planned risk)", yaxis_title="trades", bargap=0)
    return _fig_html(fig, div_id, 400)


def mae_mfe_figure(sc: ScenarioData, div_id: str) -> str:
    """MAE against MFE per trade (pips), winners and losers apart; at most SCATTER_MAX points."""
    tr = sc.trades
    if tr.empty:
        return _empty(f"No closed trades in scenario {sc.name}: no MAE/MFE to show.")
    idx = sample_indices(len(tr))
    s = tr.iloc[idx]
    fig = go.Figure()
    for name, mask, color in (("winners", s["pnl_usd"] > 0, GREEN), ("losers / flat", s["pnl_usd"] <= 0, RED)):
        part = s[mask]
        fig.add_trace(go.Scatter(
            x=part["mae_pips"].to_numpy(float), y=part["mfe_pips"].to_numpy(float), mode="markers",
            name=name, marker={"color": color, "size": 5, "opacity": 0.6},
            customdata=np.stack([part["trade_id"].to_numpy(), part["r_multiple"].to_numpy(float)], axis=1),
            text=part["symbol"] + " " + part["exit_reason"],
            hovertemplate="trade %{customdata[0]} %{text}<br>MAE %{x:.1f} pips, MFE %{y:.1f} pips"
                          "<br>%{customdata[1]:+.2f} R<extra></extra>"))
    shown = "every trade" if len(s) == len(tr) else f"{len(s):,} of {len(tr):,} trades (a seeded sample)"
    fig.update_layout(title=f"MAE vs MFE, {len(tr):,} trades<br><sup>{shown}; MAE: worst excursion "
                            f"against the trade, MFE: best in its favour</sup>", xaxis_title="MAE (pips)", yaxis_title="MFE (pips)")
    return _fig_html(fig, div_id, 400)


def exit_figure(sc: ScenarioData, div_id: str) -> str:
    """Trades and net P&L (USD) by exit reason, from report.json's by_exit_reason."""
    by = sc.report.get("by_exit_reason") or {}
    if not by:
        return _empty(f"No closed trades in scenario {sc.name}: no exit reasons to show.")
    reasons = list(by)
    net = [by[k].get("net_pnl_usd") or 0.0 for k in reasons]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("trades", "net P&L (USD)"))
    fig.add_trace(go.Bar(x=reasons, y=[by[k]["trades"] for k in reasons], marker_color=BLUE,
                         hovertemplate="%{x}: %{y:,} trades<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=reasons, y=net, marker_color=[GREEN if v > 0 else RED for v in net],
                         hovertemplate="%{x}: %{y:,.2f} USD<extra></extra>"), row=1, col=2)
    fig.update_yaxes(tickformat=",.0f", row=1, col=2)
    fig.update_layout(title="Exit reasons", showlegend=False)
    return _fig_html(fig, div_id, 400)


def time_figure(sc: ScenarioData, div_id: str) -> str:
    """Expectancy (R per trade) and trades by hour of the decision close, UTC and New York, and
    by weekday: report.json's breakdowns."""
    b = sc.report.get("breakdowns") or {}
    if not b.get("by_hour_utc"):
        return _empty(f"No closed trades in scenario {sc.name}: no hours to show.")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("by hour, UTC", "by hour, New York", "by weekday (UTC)"),
                        column_widths=[0.4, 0.4, 0.2])
    for col, key in enumerate(("by_hour_utc", "by_hour_new_york", "by_weekday"), start=1):
        by = b.get(key) or {}
        keys = list(by)
        exp = [by[k].get("expectancy_r") or 0.0 for k in keys]
        fig.add_trace(go.Bar(x=keys, y=exp, marker_color=[GREEN if v > 0 else RED for v in exp],
                             customdata=[[by[k]["trades"], (by[k].get("win_rate") or 0) * 100] for k in keys],
                             hovertemplate="%{x}: %{y:+.3f} R per trade, %{customdata[0]:,} trades, "
                                           "%{customdata[1]:.0f} % won<extra></extra>"), row=1, col=col)
        fig.update_xaxes(type="category", row=1, col=col)
    fig.update_yaxes(title_text="expectancy (R per trade)", row=1, col=1)
    fig.update_layout(title="When it works: expectancy by the decision's hour and weekday", showlegend=False)
    return _fig_html(fig, div_id, 360)


def excursion_figure(sc: ScenarioData, div_id: str) -> str:
    """MAE and MFE by outcome (WIN / LOSS) as boxes (10th, 25th, 50th, 75th, 90th percentile and
    the mean), in pips and in ATR units: of every decision's counterfactual bracket when the run
    has counterfactuals (report.json's breakdowns.mae_mfe_by_cf_result), else of the trades, in
    pips (breakdowns.mae_mfe_by_outcome). Where a winner's MAE stops tells where a stop could go;
    a loser's MFE, what a target left on the table."""
    b = sc.report.get("breakdowns") or {}
    by, what = b.get("mae_mfe_by_cf_result"), "every decision's bracket (counterfactual)"
    if not by or not any((v.get("mae_pips") or {}).get("n") for v in by.values()):
        by, what = b.get("mae_mfe_by_outcome"), "the trades"
    if not by or not any((v.get("mae_pips") or {}).get("n") for v in by.values()):
        return _empty(f"No closed trade or resolved bracket in scenario {sc.name}: no excursions to show.")
    panels = [k for k in ("mae_pips", "mfe_pips", "mae_atr", "mfe_atr")
              if any((v.get(k) or {}).get("n") for v in by.values())]
    titles = {"mae_pips": "MAE (pips)", "mfe_pips": "MFE (pips)", "mae_atr": "MAE (ATR)", "mfe_atr": "MFE (ATR)"}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[titles[k] for k in panels])
    for col, key in enumerate(panels, start=1):
        for outcome, color in (("WIN", GREEN), ("LOSS", RED)):
            q = (by.get(outcome) or {}).get(key) or {}
            if not q.get("n"):
                continue
            fig.add_trace(go.Box(
                x=[outcome], q1=[q["p25"]], median=[q["p50"]], q3=[q["p75"]], lowerfence=[q["p10"]],
                upperfence=[q["p90"]], mean=[q["mean"]], name=outcome, marker_color=color, showlegend=False,
                hovertemplate=f"{outcome}: %{{y}} ({q['n']:,})<extra>{titles[key]}</extra>"), row=1, col=col)
    fig.update_layout(title=f"Excursions by outcome: {what}")
    return (_fig_html(fig, div_id, 380) + '<p class="note">Box: 25th to 75th percentile and the median; '
            'dashed: the mean; whiskers: 10th to 90th percentile. ATR: the decision\'s ATR.</p>')


def _regime_signals_table(sc: ScenarioData) -> str:
    """Every signal by the decision's regime (report.json's breakdowns.signals_by_regime)."""
    by = (sc.report.get("breakdowns") or {}).get("signals_by_regime")
    if not by:
        return ""
    rows = "".join(
        f'<tr><th>{_e(regime)}</th><td>{_int(v["signals"])}</td><td>{_int(v["traded"])}</td>'
        f'<td>{_int(v["resolved"])}</td><td>{_pct(v["cf_win_rate"], 1)}</td>'
        f'<td class="{_sign_class(v["cf_expectancy_r"])}">{_num(v["cf_expectancy_r"], 3)}</td>'
        f'<td>{_int(v["good_skips"])}</td><td>{_int(v["bad_skips"])}</td></tr>' for regime, v in by.items())
    return ('<h4>Signals by regime</h4><div class="scroll"><table class="metrics group" data-group="signals_by_regime">'
            '<thead><tr><th>regime</th><th>signals</th><th>traded</th><th>resolved</th><th>win rate</th>'
            '<th>expectancy (R)</th><th>good skips</th><th>bad skips</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div><p class="note">Every signal\'s bracket, traded or not '
            '(counterfactuals), by the regime at the decision: where the strategy\'s signals pay before '
            'the desk\'s gates. The trades\' own figures by regime are in the metrics below.</p>')


def _breakdown_kpis(sc: ScenarioData) -> str:
    b = sc.report.get("breakdowns") or {}
    p, dd = b.get("payoff") or {}, b.get("drawdown_duration") or {}
    if not p:
        return ""
    key = "breakdowns"
    items = [("payoff.payoff_ratio", "payoff ratio", p.get("payoff_ratio"), _num(p.get("payoff_ratio"), 2),
              "average win / average loss, in R"),
             ("payoff.avg_win_usd", "average win", p.get("avg_win_usd"), _num(p.get("avg_win_usd"), 0, "USD"),
              f"{_num(p.get('avg_win_r'), 2)} R"),
             ("payoff.avg_loss_usd", "average loss", p.get("avg_loss_usd"), _num(p.get("avg_loss_usd"), 0, "USD"),
              f"{_num(p.get('avg_loss_r'), 2)} R"),
             ("drawdown_duration.days", "longest drawdown", dd.get("days"), _num(dd.get("days"), 1, "days"),
              ("from " + str(dd.get("from") or "")[:10] + (" (not recovered)" if dd.get("recovered") is False else ""))
              if dd.get("from") else "")]
    cells = "".join(f'<div class="kpi"><div class="label">{_e(label)}</div>'
                    f'{_metric(sc.name, f"{key}.{path}", value, text, "div", "value")}'
                    f'<div class="sub">{_e(sub)}</div></div>' for path, label, value, text, sub in items)
    return f'<div class="kpis">{cells}</div>'


def _skips_table(sc: ScenarioData) -> str:
    """Good and bad skips by reason, from report.json's breakdowns.skips (counterfactuals)."""
    sk = (sc.report.get("breakdowns") or {}).get("skips")
    if not sk:
        return '<p class="note">No counterfactuals in this run: good and bad skips are not known.</p>'
    rows = []
    for reason, v in sk["by_reason"].items():
        rows.append(f'<tr><th>{_e(reason)}</th><td>{_int(v["signals"])}</td><td>{_int(v["good"])}</td>'
                    f'<td>{_int(v["bad"])}</td><td>{_int(v["unresolved"])}</td><td>{_num(v["saved_r"], 2)}</td>'
                    f'<td>{_num(v["cost_r"], 2)}</td><td class="{_sign_class(v["net_r"])}">{_num(v["net_r"], 2)}</td></tr>')
    return ('<div class="scroll"><table class="metrics group" data-group="skips"><thead><tr><th>skip reason</th>'
            '<th>signals</th><th>good skips</th><th>bad skips</th><th>unresolved</th><th>R saved</th><th>R cost</th>'
            f'<th>net R</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            '<p class="note">A good skip: its counterfactual bracket lost, so skipping saved its R; a bad skip: '
            'it won. Net R &gt; 0: skipping for that reason paid.</p>')


def skip_totals_figure(sc: ScenarioData, div_id: str) -> str:
    """Signals traded and skipped by reason, from report.json's decision counts."""
    dec = sc.report.get("decisions") or {}
    items = [("traded", dec.get("traded", 0)), *sorted((dec.get("skipped") or {}).items(),
                                                       key=lambda kv: kv[1])]
    if not dec.get("signals"):
        return _empty(f"No strategy signal in scenario {sc.name}: nothing traded or skipped.")
    fig = go.Figure(go.Bar(y=[k for k, _ in items], x=[v for _, v in items], orientation="h",
                           marker_color=[GREEN if k == "traded" else GREY for k, _ in items],
                           hovertemplate="%{y}: %{x:,} signals<extra></extra>"))
    fig.update_layout(title=f"Signals: {dec['signals']:,}, traded {dec.get('traded', 0):,}",
                      xaxis_title="signals", yaxis={"automargin": True})
    return _fig_html(fig, div_id, 400)


def skip_timeline_figure(sc: ScenarioData, div_id: str) -> str:
    """Signals per day or week (the decision file), stacked by what became of them."""
    d = sc.decisions
    if not sc.decisions_written:
        return _empty(f"Scenario {sc.name}: the run wrote no decision file (deskd backtest --decisions none), "
                      f"so no signals over time; the totals are report.json's.")
    if d is None or d.empty:
        return _empty(f"No strategy signal in scenario {sc.name}: no decisions over time.")
    unit = sc.decisions_unit
    fig = go.Figure()
    for reason, g in d.groupby("reason", sort=True):
        color = GREEN if reason == "traded" else None
        fig.add_trace(go.Bar(x=_ts(g["period"].to_numpy()), y=g["n"].to_numpy(), name=str(reason),
                             marker_color=color,
                             hovertemplate=f"%{{x}}: %{{y:,}} {reason}<extra></extra>"))
    fig.update_layout(barmode="stack", title=f"What became of the signals, per {unit} (UTC)",
                      yaxis_title=f"signals per {unit}", bargap=0.05)
    return _fig_html(fig, div_id, 380)


def price_figure(run: RunData, sc: ScenarioData, div_id: str) -> str:
    """Candles of the price window with this scenario's trades of that symbol: entries
    (triangles up LONG / down SHORT), exits (coloured by outcome), the stop-loss (red dashed)
    and take-profit (green dashed) levels from fill to exit."""
    pw = run.price
    if pw is None or len(pw.ts) == 0:
        return _empty(f"No price chart: {run.price_note or 'no bars'}.")
    fig = go.Figure(go.Candlestick(x=pw.ts, open=pw.open, high=pw.high, low=pw.low, close=pw.close,
                                   name=pw.symbol, increasing_line_color="#5b8f5b",
                                   decreasing_line_color="#a05050"))
    w0, w1 = pw.ts[0], pw.ts[-1]
    tr = sc.trades
    tr = tr[(tr["symbol"] == pw.symbol) & (_ts(tr["fill_time"].to_numpy()) <= w1)
            & (_ts(tr["exit_time"].to_numpy()) >= w0)]
    if not tr.empty:
        _add_trades(fig, tr, w0)
    fig.update_layout(title=f"{pw.symbol}, {len(pw.ts):,} bars from {_hm(w0)} to {_hm(w1)} UTC, "
                            f"{len(tr):,} trades of scenario {sc.name}",
                      xaxis={"rangeslider": {"visible": False}, "rangebreaks": _gaps(pw)},
                      yaxis_title="price (quote currency)")
    return _fig_html(fig, div_id, 560)


def _hm(t: np.datetime64) -> str:
    return str(t)[:16].replace("T", " ")


def _gaps(pw: PriceWindow, min_gap_s: int = 6 * 3600) -> list[dict]:
    """Axis breaks hiding the market's closes (weekends, holidays: gaps of ``min_gap_s`` or
    more between bars), so the candles sit side by side."""
    ts = pw.ts.astype("int64")
    at = np.flatnonzero(np.diff(ts) >= min_gap_s)
    return [{"bounds": [str(np.datetime64(int(ts[i]) + pw.timeframe_s, "s")), str(pw.ts[i + 1])]}
            for i in at]


def _segments(x0: np.ndarray, x1: np.ndarray, y: np.ndarray) -> tuple[list, list]:
    """Horizontal segments (x0 -> x1 at y) as one line trace's points, None between them."""
    xs: list = []
    ys: list = []
    for a, b, v in zip(x0, x1, y):
        if not np.isfinite(v):
            continue
        xs += [str(a), str(b), None]
        ys += [float(v), float(v), None]
    return xs, ys


def _add_trades(fig: go.Figure, tr: pd.DataFrame, w0: np.datetime64) -> None:
    fill = _ts(tr["fill_time"].to_numpy())
    exit_ = _ts(tr["exit_time"].to_numpy())
    start = np.maximum(fill, w0)
    for name, col, color in (("stop-loss", "sl_price", RED), ("take-profit", "tp_price", GREEN)):
        xs, ys = _segments(start, exit_, tr[col].to_numpy(float))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                                 line={"color": color, "dash": "dash", "width": 1}))
    xs, ys = [], []
    for a, b, p, q in zip(fill, exit_, tr["entry_price"], tr["exit_price"]):
        xs += [str(a), str(b), None]
        ys += [float(p), float(q), None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="entry to exit", hoverinfo="skip",
                             line={"color": GREY, "dash": "dot", "width": 1}))
    info = np.stack([tr["trade_id"].to_numpy(), tr["side"].to_numpy(), tr["exit_reason"].to_numpy(),
                     tr["r_multiple"].to_numpy(float).round(2), tr["pnl_usd"].to_numpy(float).round(2)],
                    axis=1)
    long_ = (tr["side"] == "LONG").to_numpy()
    fig.add_trace(go.Scatter(
        x=fill, y=tr["entry_price"].to_numpy(float), mode="markers", name="entry",
        marker={"symbol": np.where(long_, "triangle-up", "triangle-down"), "size": 10,
                "color": np.where(long_, GREEN, RED), "line": {"width": 1, "color": "#333"}},
        customdata=info, hovertemplate="trade %{customdata[0]} %{customdata[1]} entry %{y}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=exit_, y=tr["exit_price"].to_numpy(float), mode="markers", name="exit",
        marker={"symbol": "x", "size": 9,
                "color": np.where(tr["pnl_usd"].to_numpy(float) > 0, GREEN, RED)},
        customdata=info, hovertemplate="trade %{customdata[0]} exit %{y} (%{customdata[2]}): "
                                       "%{customdata[3]} R, %{customdata[4]} USD<extra></extra>"))


# ------------------------------------------------------------------------------------------ HTML

def _kpis(sc: ScenarioData) -> str:
    """The headline numbers, report.json's, each carrying its value in ``data-value``."""
    rep, ov = sc.report, sc.report.get("overall", {})
    cards = [
        ("net_pnl_usd", "net P&L", ov.get("net_pnl_usd"), _num(ov.get("net_pnl_usd"), 2, "USD", True)),
        ("return_frac", "return", rep.get("return_frac"), _pct(rep.get("return_frac"), 2, True)),
        ("final_equity_usd", "final equity", rep.get("final_equity_usd"),
         _num(rep.get("final_equity_usd"), 2, "USD")),
        ("trades", "trades", ov.get("trades"), _int(ov.get("trades"))),
        ("win_rate", "win rate", ov.get("win_rate"), _pct(ov.get("win_rate"))),
        ("profit_factor", "profit factor", ov.get("profit_factor"), _num(ov.get("profit_factor"), 3)),
        ("max_drawdown_usd", "max drawdown", ov.get("max_drawdown_usd"),
         _num(ov.get("max_drawdown_usd"), 2, "USD")),
        ("sharpe_daily_ann", "Sharpe (daily, ann.)", ov.get("sharpe_daily_ann"),
         _num(ov.get("sharpe_daily_ann"), 2)),
    ]
    out = []
    for key, label, value, text in cards:
        cls = _sign_class(value) if key in ("net_pnl_usd", "return_frac") else ""
        sub = ""
        if key == "max_drawdown_usd":
            frac = ov.get("max_drawdown_frac")
            sub = _metric(sc.name, "max_drawdown_frac", frac, f"{_pct(frac, 2)} of peak", "div", "sub")
        out.append(f'<div class="kpi"><div class="label">{_e(label)}</div>'
                   f'{_metric(sc.name, key, value, text, "div", ("value " + cls).strip())}{sub}</div>')
    return f'<div class="kpis">{"".join(out)}</div>'


def _banner(sc: ScenarioData, start_eq: float) -> str:
    if not wiped_out(sc, start_eq):
        return ""
    low = float(sc.report.get("min_equity_usd", final_equity(sc)))
    floor = float(sc.report.get("equity_floor_usd", 0.10 * start_eq))
    return (f'<div class="banner wiped" role="alert" data-scenario="{_e(sc.name)}" data-wiped-out="1">'
            f'Account wiped out: equity fell to {_e(_num(low, 2, "USD"))}, {_e(_pct(low / start_eq, 2))} '
            f'of the starting {_e(_num(start_eq, 2, "USD"))}, below the floor of {_e(_num(floor, 2, "USD"))}.</div>')


def _dd_note(sc: ScenarioData) -> str:
    ov = sc.report.get("overall", {})
    eq = sc.equity["equity_usd"].to_numpy(float)
    if not len(eq) or ov.get("max_drawdown_usd") is None:
        return ""
    dd, frac = drawdown(eq)
    curve = float(dd.max())
    text = (f"Max drawdown (report.json, marked to market at every bar close): "
            f"{_num(ov['max_drawdown_usd'], 2, 'USD')} ({_pct(ov.get('max_drawdown_frac'))} of peak). "
            f"The curve above is equity.csv: marks at fills, FX-day rolls and the end, and "
            f"between them the bar closes at each span's new peak, lowest equity and deepest fall")
    if curve + 0.005 < ov["max_drawdown_usd"]:
        text += (f", so its deepest drawdown ({_num(curve, 2, 'USD')}, {_pct(float(frac.max()))}) "
                 f"is shallower: the worst point fell between two marks")
    return f'<p class="note">{_e(text)}.</p>'


def _monthly_table(sc: ScenarioData, start_eq: float) -> str:
    m = monthly_returns(sc.equity["time"], sc.equity["equity_usd"], start_eq)
    if m.empty:
        return _empty("No equity marks: no monthly returns.")
    head = "".join(f"<th>{pd.Timestamp(2000, k, 1):%b}</th>" for k in range(1, 13))
    rows = []
    for year, g in m.groupby("year", sort=True):
        cells = {int(r.month): r for r in g.itertuples()}
        tds = []
        for k in range(1, 13):
            r = cells.get(k)
            if r is None:
                tds.append("<td></td>")
                continue
            tds.append(f'<td class="{_sign_class(r.return_frac)}" title="{_e(_num(r.pnl_usd, 2, "USD", True))}, '
                       f'month-end equity {_e(_num(r.end_equity_usd, 2, "USD"))}">'
                       f'{_e(_pct(r.return_frac, 2, True))}</td>')
        prev = m.loc[m["year"] < year, "end_equity_usd"]
        base = float(prev.iloc[-1]) if len(prev) else start_eq
        end = float(g["end_equity_usd"].iloc[-1])
        yr = end / base - 1.0 if base > 0 else float("nan")
        tds.append(f'<td class="{_sign_class(yr)} year" title="{_e(_num(end - base, 2, "USD", True))}">'
                   f'{_e(_pct(yr, 2, True))}</td>')
        rows.append(f"<tr><th>{year}</th>{''.join(tds)}</tr>")
    return (f'<table class="monthly"><thead><tr><th>UTC</th>{head}<th>year</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table><p class="note">Return of each month from the '
            f"previous month's last equity mark (the starting equity for the first); hover a cell "
            f"for its P&amp;L in USD.</p>")


def _overall_table(sc: ScenarioData) -> str:
    ov = sc.report.get("overall", {})
    items = "".join(f'<div><span class="label">{_e(label)}</span>'
                    f'{_metric(sc.name, key, ov.get(key), fmt(ov.get(key)), "span", "value")}</div>'
                    for key, label, fmt in METRICS if key in ov)
    return f'<div class="overall">{items}</div>'


def _group_table(sc: ScenarioData, group: str, title: str) -> str:
    by = sc.report.get(group) or {}
    if not by:
        return f"<h4>{_e(title)}</h4>" + _empty("No closed trades.")
    head = "".join(f"<th>{_e(label)}</th>" for _, label in GROUP_COLUMNS)
    rows = []
    for name, m in by.items():
        tds = "".join(f'<td class="{_sign_class(m.get(k)) if k == "net_pnl_usd" else ""}">'
                      f'{_e(_group_cell(k, m.get(k)))}</td>' for k, _ in GROUP_COLUMNS)
        rows.append(f"<tr><th>{_e(name)}</th>{tds}</tr>")
    return (f'<h4>{_e(title)}</h4><div class="scroll"><table class="metrics group" data-group="{_e(group)}">'
            f'<thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _group_cell(key: str, v) -> str:
    if key == "trades":
        return _int(v)
    if key == "win_rate":
        return _pct(v, 1)
    if key in ("profit_factor", "avg_r_multiple"):
        return _num(v, 3)
    if key == "avg_hold_bars":
        return _num(v, 1)
    return _num(v, 2)


def _transitions_table(sc: ScenarioData) -> str:
    trs = sc.report.get("state_transitions") or []
    if not trs:
        return '<p class="note">No state transition: the desk stayed RUNNING.</p>'
    counts: dict[tuple[str, str, str], int] = {}
    for t in trs:
        k = (t["from"], t["to"], t["trigger"])
        counts[k] = counts.get(k, 0) + 1
    rows = "".join(f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td>{_e(c)}</td><td>{n:,}</td></tr>"
                   for (a, b, c), n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f'<table class="metrics"><thead><tr><th>from</th><th>to</th><th>trigger</th><th>times</th>'
            f'</tr></thead><tbody>{rows}</tbody></table><p class="note">{len(trs):,} transitions '
            f'(report.json); the state over time is the bottom strip of the equity chart.</p>')


def scenario_section(run: RunData, sc: ScenarioData, k: int) -> str:
    """The HTML of one scenario (``k``: its position, for unique plot ids)."""
    start_eq = run.starting_equity_usd
    pid = f"s{k}"
    groups = "".join(_group_table(sc, g, t) for g, t in (
        ("by_strategy", "By strategy"), ("by_symbol", "By symbol"), ("by_regime", "By regime"),
        ("by_exit_reason", "By exit reason")))
    return f"""
<section class="scenario" id="scenario-{_e(sc.name)}" data-scenario="{_e(sc.name)}">
<h2>Scenario {_e(sc.name)}</h2>
{_banner(sc, start_eq)}
{_kpis(sc)}
{equity_figure(sc, f"{pid}-equity")}
{_dd_note(sc)}
<h3>Monthly returns</h3>
{_monthly_table(sc, start_eq)}
<h3>Trades</h3>
<div class="grid2">{r_figure(sc, f"{pid}-r")}{mae_mfe_figure(sc, f"{pid}-maemfe")}</div>
<div class="grid2">{exit_figure(sc, f"{pid}-exits")}{skip_totals_figure(sc, f"{pid}-skips")}</div>
{skip_timeline_figure(sc, f"{pid}-skiptime")}
<h3>When it works, and were the skips right</h3>
{_breakdown_kpis(sc)}
{time_figure(sc, f"{pid}-time")}
{excursion_figure(sc, f"{pid}-excursions")}
{_skips_table(sc)}
{_regime_signals_table(sc)}
<h3>Price and trades</h3>
{price_figure(run, sc, f"{pid}-price")}
<h3>Metrics</h3>
<h4>Overall</h4>
{_overall_table(sc)}
{groups}
<h4>State transitions</h4>
{_transitions_table(sc)}
</section>"""


def _summary(run: RunData) -> str:
    rows = []
    for sc in run.scenarios:
        rep, ov = sc.report, sc.report.get("overall", {})
        flag = ' <span class="flag">wiped out</span>' if wiped_out(sc, run.starting_equity_usd) else ""
        rows.append(
            f'<tr><th><a href="#scenario-{_e(sc.name)}">{_e(sc.name)}</a>{flag}</th>'
            f'<td>{_int(ov.get("trades"))}</td>'
            f'<td class="{_sign_class(ov.get("net_pnl_usd"))}">{_e(_FORMAT["net_pnl_usd"](ov.get("net_pnl_usd")))}</td>'
            f'<td>{_e(_pct(rep.get("return_frac"), 2, True))}</td>'
            f'<td>{_e(_num(rep.get("final_equity_usd"), 2, "USD"))}</td>'
            f'<td>{_e(_num(ov.get("max_drawdown_usd"), 2, "USD"))} ({_e(_pct(ov.get("max_drawdown_frac"), 1))})</td>'
            f'<td>{_e(_num(ov.get("profit_factor"), 3))}</td><td>{_e(_num(ov.get("sharpe_daily_ann"), 2))}</td></tr>')
    return ('<table class="metrics summary"><thead><tr><th>scenario</th><th>trades</th><th>net P&amp;L</th>'
            '<th>return</th><th>final equity</th><th>max drawdown</th><th>profit factor</th><th>Sharpe</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _data_table(report: dict) -> str:
    rows = "".join(
        f"<tr><th>{_e(sym)}</th><td>{_int(d.get('bars'))}</td><td>{_e(d.get('first_bar'))}</td>"
        f"<td>{_e(d.get('last_bar'))}</td><td>{_e(d.get('timezone'))}</td>"
        f"<td><code>{_e(str(d.get('sha256', ''))[:16])}</code></td></tr>"
        for sym, d in (report.get("data") or {}).items())
    return ('<table class="metrics"><thead><tr><th>symbol</th><th>bars</th><th>first bar (UTC)</th>'
            '<th>last bar (UTC)</th><th>file timezone</th><th>SHA-256</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>')


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1360px;margin:0 auto;padding:16px 24px 48px}
header h1{margin:8px 0 4px;font-size:24px} .meta{color:#555;font-size:13px}
nav{margin:10px 0} nav a{margin-right:12px}
section.scenario{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 20px;margin:20px 0}
h2{margin:6px 0 10px} h3{margin:22px 0 8px;border-bottom:1px solid #eee} h4{margin:14px 0 6px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(145px,1fr));gap:8px;margin:8px 0 12px}
.kpi{background:#f3f5f8;border-radius:4px;padding:6px 10px} .kpi .label{font-size:12px;color:#666}
.kpi .value{font-size:16px;font-weight:600;white-space:nowrap} .kpi .sub{font-size:11px;color:#666}
.pos{color:#1a7f37} .neg{color:#c62828} td.pos,td.neg{font-weight:500}
.banner.wiped{background:#c62828;color:#fff;font-weight:700;padding:10px 14px;border-radius:4px;margin:8px 0}
.flag{background:#c62828;color:#fff;font-size:11px;padding:1px 6px;border-radius:3px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px;align-items:start}
table{border-collapse:collapse;font-size:12.5px} .scroll{overflow-x:auto}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
tbody th{text-align:left;font-weight:500} thead th{background:#f3f5f8;white-space:normal;vertical-align:bottom}
table.monthly td{min-width:58px} table.monthly td.year{font-weight:700;border-left:1px solid #ccc}
.note{color:#666;font-size:12px;margin:4px 0}
.empty{color:#777;font-style:italic;padding:24px;border:1px dashed #ccc;border-radius:4px;margin:8px 0;
text-align:center}
.plot{min-width:0}
.overall{display:grid;grid-template-columns:repeat(3,1fr);gap:0 28px;font-size:12.5px}
.overall>div{display:flex;justify-content:space-between;border-bottom:1px solid #eee;padding:3px 4px}
.overall .label{color:#444}
"""


def render_report_html(run: RunData) -> str:
    """The page, as one string (plotly.js embedded once in its head)."""
    rep = run.report
    nav = "".join(f'<a href="#scenario-{_e(sc.name)}">scenario {_e(sc.name)}</a>' for sc in run.scenarios)
    body = "".join(scenario_section(run, sc, k) for k, sc in enumerate(run.scenarios))
    if not run.scenarios:
        body = _empty("report.json holds no scenario.")
    title = f"deskd backtest: {rep.get('desk', '')} {rep.get('timeframe', '')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body><main>
<header><h1>{_e(title)}</h1>
<div class="meta">deskd {_e(rep.get("deskd_version", ""))}, starting equity
{_metric("", "starting_equity_usd", run.starting_equity_usd, _num(run.starting_equity_usd, 2, "USD"))},
config SHA-256 <code>{_e(str(rep.get("config_sha256", ""))[:16])}</code>. Times UTC; money in USD,
distances in pips, outcomes in R (P&amp;L over the planned risk at the stop). Every metric is
report.json's.</div>
<nav>{nav}</nav></header>
{_summary(run)}
<h3>Data</h3>
{_data_table(rep)}
{body}
</main></body></html>
"""


def write_report_html(run_dir: Path, cfg: DeskConfig, report: dict | None = None) -> Path:
    """Build ``run_dir/report.html`` from the outputs in ``run_dir`` and return its path.
    Raises ReportInputError when an output is missing or unreadable."""
    page = render_report_html(load_run(run_dir, cfg, report))
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deskd.research.report_html RUN_DIR``: (re)build RUN_DIR/report.html.
    Exit 0 done, 2 a folder that is not a run's (one ``deskd: error:`` line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m deskd.research.report_html RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    try:
        cfg = load_config(run_dir / "config.yaml")
        path = write_report_html(run_dir, cfg)
    except (ConfigError, ReportInputError) as e:
        print(f"deskd: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
