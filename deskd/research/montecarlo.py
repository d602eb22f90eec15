"""``deskd montecarlo``: block-bootstrap Monte Carlo of a run's trades and days, and cost noise.

Input: a backtest folder (trades.csv, equity.csv, config.yaml) or a walk-forward folder
(oos_trades.csv, oos_equity.csv, config.yaml: its out-of-sample trades and equity), one cost
scenario of it. The desk's settings come from the folder's config.yaml: the starting equity,
``account.equity_floor_frac``, ``risk.dd_day_limit_frac`` / ``dd_week_limit_frac`` /
``max_drawdown_frac`` and ``risk.r_base``.

Three simulations, each seeded from one ``--seed`` (``numpy.random.SeedSequence(seed)`` spawns
one Generator per simulation, so each is reproducible on its own: same seed, same numbers):

* **trades**: the sequence of the trades' R-multiples (``r_multiple`` = pnl_usd / risk_usd, in
  exit order) is resampled with a block bootstrap and equity rebuilt by **compounding with the
  desk's sizing**: every trade risks ``r_base`` x the equity before it, so
  ``equity_k = equity_{k-1} x max(0, 1 + r_base x R_k)`` from the starting equity (an equity
  that reaches 0 stays there). The model's limits: it ignores the risk caps (open risk per
  strategy and symbol, notional), the drawdown halts (a path keeps trading through a breach of
  the day or week limit), concurrent positions (trades are applied one after another in exit
  order, each sized on the equity after the one before, where the desk sized overlapping
  trades on the same equity) and the strategies' risk weights; R keeps each trade's costs as
  recorded. Its steps are trades, so its durations are in trades.
* **daily**: day-on-day returns of the account, between consecutive DAY/END marks of
  equity.csv (a backtest) or oos_equity.csv within each split (a walk-forward: the step from
  one split's end to the next split's start is not a day), resampled in blocks and compounded
  from the starting equity. Its durations are in (FX trading) days.
* **cost noise**: the trades as recorded, with each trade's spread and slippage multipliers
  redrawn (see :func:`cost_noise`), from the per-side cost split the trades carry.

Block bootstraps (never hand-written): ``arch.bootstrap.StationaryBootstrap`` (Politis &
Romano 1994: blocks of geometric length, mean ``block``, wrapping around) or
``arch.bootstrap.CircularBlockBootstrap`` (Politis & Romano 1992: fixed-length blocks
wrapping around the end; the moving-block idea of Kunsch 1989). The block length is
``arch.bootstrap.optimal_block_length`` (Politis & White 2004, with the correction of Patton,
Politis & White 2009) of the resampled series, rounded up and kept in 1..n, unless given.

Per simulation and path: max drawdown (USD, and as a fraction of its peak; each maximised on
its own, as deskd.research.metrics does), final equity (USD), CAGR (over the input's calendar
span: first fill to last exit, or first to last equity mark), Sharpe (daily: mean / std
(ddof 1) x sqrt(252); trades: mean / std of the resampled R per trade, not annualised, named
``sharpe_r_per_trade``), the longest drawdown (the most consecutive steps closing below the
running peak), the time to recover from the deepest (fractional) drawdown (steps from its
trough until equity is back at the peak before it; NaN when it never is, counted as
``unrecovered_frac``), P(max drawdown fraction > each desk limit: the day and week limits as
given, a proxy since the desk measures those within a day or week, and max_drawdown_frac when
set) and the probability of ruin (equity ever below equity_floor_frac x the starting equity).
Each distribution is summarised by its mean, the 1/5/25/50/75/95/99th percentiles
(``numpy.percentile``, linear interpolation) and the worst 1 % and 5 % (the 99th and 95th
percentile when higher is worse, the 1st and 5th when lower is).

Outputs (:func:`write_outputs`, into ``RUN_DIR/montecarlo-<scenario>/`` or ``--out``, whole or
not at all): montecarlo.json, paths.parquet (percentile bands of equity per step) and
report.html (deskd.research.montecarlo_html).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskd import __version__
from deskd.configs.loader import ConfigError, load_config
from deskd.configs.models import DeskConfig
from deskd.core.money import Instrument, QuoteConverter
from deskd.research.backtest import file_sha256

ANNUALISATION_DAYS = 252
DAYS_PER_YEAR = 365.25
METHODS = ("stationary", "circular")
#: percentiles of every distribution; bands of the paths
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
BANDS = (5, 25, 50, 75, 95)
#: paths are kept at most at this many steps (the bands), and this many whole paths for the chart
PATH_POINTS = 400
SAMPLE_PATHS = 30
#: simulations per vectorised chunk (memory: chunk x steps x 8 bytes per array)
CHUNK_CELLS = 4_000_000
SPLIT_COLUMNS = ("entry_spread_pips", "entry_slippage_pips", "exit_spread_pips", "exit_slippage_pips",
                 "entry_spike", "exit_spike")
TRADE_NEEDS = ("scenario", "symbol", "units", "exit_time", "exit_price", "pnl_usd", "risk_usd", "r_multiple",
               "cost_pips")
DEFAULT_SPREAD_MULT = (0.8, 1.5)
DEFAULT_SLIPPAGE_MULT = (0.5, 2.0)


class MonteCarloInputError(ValueError):
    """A folder that is not a run, a scenario not in it, too few trades, bad options."""


# -------------------------------------------------------------------------------------- inputs

@dataclass
class RunInput:
    """One scenario of a run folder.

    ``trades``: its trades in exit order (a walk-forward's by split, then exit), with
    ``r_multiple`` (R), ``pnl_usd``, ``risk_usd`` (USD), ``units``, ``exit_price`` (quote
    currency) and the cost split columns when the file has them. ``daily_returns``: the
    account's day-on-day returns (fractions), ``daily_span_days``/``trade_span_days`` the
    calendar days the marks / trades cover. ``files``: SHA-256 of each input file by name.
    """

    run_dir: Path
    kind: str  # "backtest" or "walkforward"
    scenario: str
    scenarios: list[str]
    cfg: DeskConfig
    trades: pd.DataFrame
    daily_returns: np.ndarray
    daily_span_days: float
    trade_span_days: float
    files: dict[str, str]


def _days(a: pd.Timestamp, b: pd.Timestamp) -> float:
    return float((b - a).total_seconds()) / 86400.0


def read_run(run_dir: Path, scenario: str | None = None) -> RunInput:
    """Read one scenario of a backtest or walk-forward folder (the first scenario of its
    equity file when ``scenario`` is None). Raises MonteCarloInputError for a folder that is
    not a run, a scenario not in it, a trade file lacking a needed column or holding fewer
    than 2 trades of the scenario; ConfigError for an invalid config.yaml."""
    run_dir = Path(run_dir)
    kind, trades_name, equity_name = _locate(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    try:
        trades = pd.read_csv(run_dir / trades_name, dtype={"scenario": str, "symbol": str})
        equity = pd.read_csv(run_dir / equity_name, dtype={"scenario": str, "kind": str})
    except (ValueError, OSError) as e:
        raise MonteCarloInputError(f"{run_dir}: cannot read {trades_name} / {equity_name}: {e}") from None
    missing = [c for c in TRADE_NEEDS if c not in trades.columns]
    if missing:
        raise MonteCarloInputError(f"{run_dir / trades_name}: no column {', '.join(missing)}")
    if not {"scenario", "time", "kind", "equity_usd"} <= set(equity.columns):
        raise MonteCarloInputError(f"{run_dir / equity_name}: expected columns scenario, time, kind, equity_usd")
    scenarios = list(dict.fromkeys([*equity["scenario"].tolist(), *trades["scenario"].tolist()]))
    if not scenarios:
        raise MonteCarloInputError(f"{run_dir}: {equity_name} and {trades_name} hold no scenario")
    scenario = scenarios[0] if scenario is None else scenario
    if scenario not in scenarios:
        raise MonteCarloInputError(f"--scenario {scenario}: not in {run_dir} (it holds {', '.join(scenarios)})")
    tr = trades[trades["scenario"] == scenario].copy()
    if len(tr) < 2:
        raise MonteCarloInputError(f"{run_dir / trades_name}: scenario {scenario} has {len(tr)} trade"
                                   f"{'' if len(tr) == 1 else 's'}; a bootstrap needs at least 2")
    try:
        tr["exit_time"] = pd.to_datetime(tr["exit_time"], utc=True)
        for c in ("units", "exit_price", "pnl_usd", "risk_usd", "r_multiple", "cost_pips"):
            tr[c] = pd.to_numeric(tr[c]).astype(float)
        start_col = "fill_time" if "fill_time" in tr.columns else "exit_time"
        first = pd.to_datetime(tr[start_col], utc=True).min()
    except (ValueError, TypeError) as e:
        raise MonteCarloInputError(f"{run_dir / trades_name}: {e}") from None
    if not np.isfinite(tr["r_multiple"].to_numpy()).all():
        raise MonteCarloInputError(f"{run_dir / trades_name}: an r_multiple that is not a number")
    order = [c for c in ("split", "exit_time", "trade_id") if c in tr.columns]
    tr = tr.sort_values(order, kind="stable").reset_index(drop=True)
    trade_span = _days(first, tr["exit_time"].max())

    daily, daily_span = _daily_returns(equity, scenario)
    files = {name: file_sha256(str(run_dir / name)) for name in (trades_name, equity_name, "config.yaml")}
    return RunInput(run_dir, kind, scenario, scenarios, cfg, tr, daily, daily_span, trade_span, files)


def _locate(run_dir: Path) -> tuple[str, str, str]:
    """(kind, trade file, equity file) of a run folder. Raises MonteCarloInputError."""
    if not run_dir.is_dir():
        raise MonteCarloInputError(f"{run_dir}: not a folder")
    if (run_dir / "oos_trades.csv").exists():
        kind, trades_name, equity_name = "walkforward", "oos_trades.csv", "oos_equity.csv"
    elif (run_dir / "trades.csv").exists():
        kind, trades_name, equity_name = "backtest", "trades.csv", "equity.csv"
    else:
        raise MonteCarloInputError(f"{run_dir}: not a backtest or walk-forward run folder "
                                   f"(no trades.csv or oos_trades.csv)")
    for name in (equity_name, "config.yaml"):
        if not (run_dir / name).exists():
            raise MonteCarloInputError(f"{run_dir}: a {kind} folder without {name}")
    return kind, trades_name, equity_name


def _daily_returns(equity: pd.DataFrame, scenario: str) -> tuple[np.ndarray, float]:
    """(day-on-day returns between consecutive DAY/END marks of ``scenario``, within each
    split when the file has splits; the calendar days the marks span)."""
    eq = equity[(equity["scenario"] == scenario) & equity["kind"].isin(["DAY", "END"])].copy()
    eq["time"] = pd.to_datetime(eq["time"], utc=True)
    eq["equity_usd"] = pd.to_numeric(eq["equity_usd"]).astype(float)
    groups = [g for _, g in eq.groupby("split", sort=True)] if "split" in eq.columns else [eq]
    rets = []
    for g in groups:
        marks = g.sort_values("time", kind="stable")["equity_usd"].to_numpy(float)
        if len(marks) >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                rets.append(np.where(marks[:-1] > 0, marks[1:] / marks[:-1] - 1.0, 0.0))
    daily = np.concatenate(rets) if rets else np.array([])
    return daily, (_days(eq["time"].min(), eq["time"].max()) if len(eq) >= 2 else 0.0)


def parse_range(flag: str, value: str) -> tuple[float, float]:
    """``LOW,HIGH`` (two finite numbers, 0 <= LOW <= HIGH) as a pair. Raises
    MonteCarloInputError naming ``flag``."""
    parts = [p.strip() for p in str(value).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise MonteCarloInputError(f"{flag} {value!r}: expected LOW,HIGH, e.g. 0.8,1.5") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or lo > hi:
        raise MonteCarloInputError(f"{flag} {value!r}: give 0 <= LOW <= HIGH, both finite")
    return lo, hi


# ----------------------------------------------------------------------------------- bootstrap

def block_length(x: np.ndarray, method: str) -> tuple[int, str]:
    """(block length, how it was chosen) for a bootstrap of ``x`` (1-D, n >= 2): the
    ``method`` column ("stationary": the mean block of the stationary bootstrap, "circular":
    the fixed block) of ``arch.bootstrap.optimal_block_length`` (Politis & White 2004; Patton,
    Politis & White 2009), rounded up and kept in 1..n. Where the estimate is undefined (too
    few points, no dispersion) the block is 1 (an iid bootstrap) and ``how`` says so."""
    from arch.bootstrap import optimal_block_length  # arch loads scipy.stats: 1 s, paid only when simulating

    n = len(x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            b = float(optimal_block_length(np.asarray(x, float))[method].iloc[0])
    except (ValueError, np.linalg.LinAlgError):
        b = math.nan
    if not math.isfinite(b):
        return 1, "optimal_block_length undefined (too few points or no dispersion): 1"
    return int(min(max(math.ceil(b), 1), n)), (f"optimal_block_length {b:.3f} (Politis & White 2004; "
                                               f"Patton, Politis & White 2009), rounded up")


def bootstrap_indices(n: int, sims: int, block: int, method: str, rng: np.random.Generator,
                      chunk: int) -> Iterator[np.ndarray]:
    """Indices into a series of length ``n``, ``sims`` resamples in chunks of at most ``chunk``
    rows: int64 arrays of shape (rows, n), from arch's StationaryBootstrap (mean block
    ``block``) or CircularBlockBootstrap (block ``block``) driven by ``rng``. Raises
    ValueError for an unknown ``method``."""
    from arch.bootstrap import CircularBlockBootstrap, StationaryBootstrap

    if method not in METHODS:
        raise ValueError(f"method {method!r}: one of {', '.join(METHODS)}")
    cls = StationaryBootstrap if method == "stationary" else CircularBlockBootstrap
    bs = cls(block, np.arange(n), seed=rng)
    done = 0
    while done < sims:
        k = min(chunk, sims - done)
        yield np.stack([bs.update_indices() for _ in range(k)])
        done += k


def compound(returns: np.ndarray, start_usd: float) -> np.ndarray:
    """Equity paths (USD), shape (sims, n + 1), the starting equity first, of per-step returns
    ``returns`` (sims, n), fractions: ``e_k = e_{k-1} x max(0, 1 + r_k)`` (an equity that
    reaches 0 stays 0)."""
    growth = np.maximum(1.0 + returns, 0.0)
    eq = np.empty((returns.shape[0], returns.shape[1] + 1))
    eq[:, 0] = start_usd
    np.cumprod(growth, axis=1, out=eq[:, 1:])
    eq[:, 1:] *= start_usd
    return eq


def path_stats(eq: np.ndarray, floor_usd: float) -> dict[str, np.ndarray]:
    """Per path of ``eq`` (sims, steps + 1; USD, the starting equity first): ``max_dd_usd``,
    ``max_dd_frac`` (each the largest fall from the running peak, maximised on its own),
    ``final_equity_usd``, ``dd_duration_steps`` (the longest run of consecutive steps below
    the running peak), ``recovery_steps`` (from the trough of the deepest fractional drawdown
    to the first step back at the peak before it; 0 without a drawdown, NaN when never
    recovered) and ``ruined`` (equity ever below ``floor_usd``)."""
    rows, m = eq.shape
    peak = np.maximum.accumulate(eq, axis=1)
    dd = peak - eq
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(peak > 0, dd / peak, 0.0)
    idx = np.arange(m)
    last_at_peak = np.maximum.accumulate(np.where(eq < peak, 0, idx), axis=1)
    trough = frac.argmax(axis=1)
    max_frac = frac[np.arange(rows), trough]
    peak_at = peak[np.arange(rows), trough]
    back = (idx[None, :] > trough[:, None]) & (eq >= peak_at[:, None])
    recovered = back.any(axis=1)
    recovery = np.where(recovered, back.argmax(axis=1) - trough, np.nan)
    recovery = np.where(max_frac > 0, recovery, 0.0)
    return {"max_dd_usd": dd.max(axis=1), "max_dd_frac": max_frac, "final_equity_usd": eq[:, -1].copy(),
            "dd_duration_steps": (idx[None, :] - last_at_peak).max(axis=1).astype(float),
            "recovery_steps": recovery, "ruined": eq.min(axis=1) < floor_usd}


def week_breach_share(eq: np.ndarray, limit_frac: float, days_per_week: int = 5) -> np.ndarray:
    """Per path of ``eq`` (sims, days + 1; USD, daily closes, the start first): the share of
    its whole weeks (``days_per_week`` trading days each, from the start) whose lowest close
    falls ``limit_frac`` or more below the week's anchor (its opening equity), as the desk's
    week halt measures a week (deskd.risk.guard halts at >=). Daily closes miss a dip inside a day, so it
    is a lower bound of the desk's bar-close measure. NaN when the path is shorter than a week."""
    weeks = (eq.shape[1] - 1) // days_per_week
    if weeks == 0:
        return np.full(eq.shape[0], np.nan)
    anchor = eq[:, 0:weeks * days_per_week:days_per_week]
    lows = eq[:, 1:weeks * days_per_week + 1].reshape(eq.shape[0], weeks, days_per_week).min(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(anchor > 0, (anchor - lows) / anchor, 0.0)
    return (dd >= limit_frac).mean(axis=1)


def cagr(final_usd: np.ndarray, start_usd: float, span_days: float) -> np.ndarray:
    """Compound annual growth rate (fraction per year) of ending at ``final_usd`` from
    ``start_usd`` over ``span_days`` calendar days (365.25 a year): (final / start)^(1 /
    years) - 1; -1 for a path that ended at 0; NaN for no span."""
    if span_days <= 0:
        return np.full(len(final_usd), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(final_usd > 0, (np.maximum(final_usd, 0) / start_usd) ** (DAYS_PER_YEAR / span_days) - 1.0,
                        -1.0)


def sharpe(x: np.ndarray, annualise: float = 1.0) -> np.ndarray:
    """Per row of ``x`` (sims, n): mean / std (ddof 1) x ``annualise``; NaN without dispersion."""
    sd = x.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, x.mean(axis=1) / sd * annualise, np.nan)


def summarise(values: np.ndarray, higher_is_worse: bool) -> dict[str, Any]:
    """Summary of one distribution: ``mean``, ``p1`` .. ``p99`` (``numpy.percentile``,
    linear), ``worst_1pct``/``worst_5pct`` (p99/p95 when ``higher_is_worse``, else p1/p5) and
    ``n`` (the finite values summarised; NaN values, such as unrecovered drawdowns, are
    left out). Values are None when no value is finite."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        out: dict[str, Any] = {"n": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}}
    else:
        qs = np.percentile(v, PERCENTILES)
        out = {"n": int(len(v)), "mean": float(v.mean()), **{f"p{p}": float(q) for p, q in zip(PERCENTILES, qs)}}
    out["worst_1pct"] = out["p99"] if higher_is_worse else out["p1"]
    out["worst_5pct"] = out["p95"] if higher_is_worse else out["p5"]
    out["worse"] = "higher" if higher_is_worse else "lower"
    return out


def desk_limits(cfg: DeskConfig) -> dict[str, float]:
    """The desk's drawdown limits as fractions: the day and week limits, and max_drawdown_frac
    when the config sets it."""
    out = {"dd_day_limit_frac": cfg.risk.dd_day_limit_frac, "dd_week_limit_frac": cfg.risk.dd_week_limit_frac}
    if cfg.risk.max_drawdown_frac is not None:
        out["max_drawdown_frac"] = cfg.risk.max_drawdown_frac
    return out


@dataclass
class SimResult:
    """One bootstrap: per-simulation arrays (``per_sim``: name -> shape (sims,), units in the
    names), equity at ``steps`` (shape (G,)) for every path (``grid``: (sims, G), USD), the
    observed path at those steps, and how the block was chosen."""

    method: str
    unit: str  # "trades" or "days"
    block: int
    block_how: str
    n: int
    per_sim: dict[str, np.ndarray]
    steps: np.ndarray
    grid: np.ndarray
    observed: dict[str, float]
    observed_path: np.ndarray
    span_days: float


def _grid_steps(n: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n, min(n + 1, PATH_POINTS))).astype(np.int64))


def simulate(series: np.ndarray, step_return: float, start_usd: float, floor_usd: float, sims: int,
             block: int | None, method: str, rng: np.random.Generator, unit: str, span_days: float,
             sharpe_annualise: float, week_limit_frac: float | None = None) -> SimResult:
    """Block-bootstrap ``series`` (1-D, n >= 2: R-multiples with ``step_return`` = r_base, or
    daily returns with 1.0) ``sims`` times and compound each resample: step return =
    ``step_return`` x value, equity from ``start_usd`` (USD). ``block`` None: chosen by
    :func:`block_length`. Sharpe of each resample: mean / std x ``sharpe_annualise``. Returns
    a :class:`SimResult` whose arrays are named in ``unit`` ("trades" or "days"); daily paths
    given ``week_limit_frac`` also get ``week_breach_share`` (:func:`week_breach_share`). Raises
    ValueError for fewer than 2 values or sims < 1."""
    x = np.asarray(series, float)
    n = len(x)
    if n < 2 or sims < 1:
        raise ValueError("a bootstrap needs at least 2 values and 1 simulation")
    how = "given (--block)"
    if block is None:
        block, how = block_length(x, method)
    elif block > n:
        block, how = n, f"given (--block {block}), cut to the series' length"
    steps = _grid_steps(n)
    chunk = max(1, CHUNK_CELLS // (n + 1))
    parts: dict[str, list[np.ndarray]] = {}
    grids = []
    for idx in bootstrap_indices(n, sims, block, method, rng, chunk):
        draws = x[idx]
        eq = compound(step_return * draws, start_usd)
        st = path_stats(eq, floor_usd)
        st["sharpe"] = sharpe(draws, sharpe_annualise)
        if week_limit_frac is not None:
            st["week_breach_share"] = week_breach_share(eq, week_limit_frac)
        for k, v in st.items():
            parts.setdefault(k, []).append(v)
        grids.append(eq[:, steps])
    per = {k: np.concatenate(v) for k, v in parts.items()}
    obs_eq = compound(step_return * x[None, :], start_usd)
    obs = {k: float(v[0]) for k, v in path_stats(obs_eq, floor_usd).items()}
    obs["sharpe"] = float(sharpe(x[None, :], sharpe_annualise)[0])
    if week_limit_frac is not None:
        obs["week_breach_share"] = float(week_breach_share(obs_eq, week_limit_frac)[0])
    per_sim = _named(per, unit, span_days, start_usd, sharpe_annualise)
    observed = {k: float(v[0]) for k, v in _named({k: np.array([v]) for k, v in obs.items()}, unit, span_days,
                                                     start_usd, sharpe_annualise).items()}
    return SimResult(method, unit, int(block), how, n, per_sim, steps, np.concatenate(grids),
                     observed, obs_eq[0, steps], span_days)


def _named(st: dict[str, np.ndarray], unit: str, span_days: float, start_usd: float,
           sharpe_annualise: float) -> dict[str, np.ndarray]:
    sharpe_key = "sharpe_r_per_trade" if unit == "trades" else "sharpe_daily_ann"
    extra = {"week_breach_share": st["week_breach_share"]} if "week_breach_share" in st else {}
    return {**extra, "max_dd_usd": st["max_dd_usd"], "max_dd_frac": st["max_dd_frac"],
            "final_equity_usd": st["final_equity_usd"],
            "cagr_frac": cagr(st["final_equity_usd"], start_usd, span_days),
            sharpe_key: st["sharpe"], f"dd_duration_{unit}": st["dd_duration_steps"],
            f"recovery_{unit}": st["recovery_steps"], "ruined": st["ruined"].astype(bool)}


#: the direction of each distribution: True when a higher value is worse
HIGHER_IS_WORSE = {"max_dd_usd": True, "max_dd_frac": True, "final_equity_usd": False, "cagr_frac": False,
                   "sharpe_r_per_trade": False, "sharpe_daily_ann": False, "dd_duration_trades": True,
                   "dd_duration_days": True, "recovery_trades": True, "recovery_days": True}


def sim_json(res: SimResult, limits: dict[str, float], floor_usd: float) -> dict[str, Any]:
    """montecarlo.json's results of one bootstrap: block, observed path, each distribution
    (:func:`summarise`), P(max DD fraction > each limit), P(ruin)."""
    out: dict[str, Any] = {
        f"{res.unit}": res.n, "block_length": res.block, "block_how": res.block_how,
        "calendar_span_days": round(res.span_days, 4),
        "observed": {k: (None if not math.isfinite(v) else v) for k, v in res.observed.items() if k != "ruined"},
    }
    out["observed"]["ruined"] = bool(res.observed["ruined"])
    for k, v in res.per_sim.items():
        if k in HIGHER_IS_WORSE:
            out[k] = summarise(v, HIGHER_IS_WORSE[k])
    rec = res.per_sim[f"recovery_{res.unit}"]
    out[f"recovery_{res.unit}"]["unrecovered_frac"] = float(np.isnan(rec).mean())
    dd = res.per_sim["max_dd_frac"]
    out["p_max_dd_frac_above"] = {name: {"limit_frac": lim, "probability": float((dd > lim).mean())}
                                  for name, lim in limits.items()}
    if "week_breach_share" in res.per_sim:
        share = res.per_sim["week_breach_share"]
        out["p_week_dd_above_week_limit"] = {
            "limit_frac": limits["dd_week_limit_frac"], "days_per_week": 5,
            "probability": float(np.nanmean(share)) if np.isfinite(share).any() else None,
            "observed": res.observed.get("week_breach_share"),
            "meaning": "share of simulated weeks whose lowest daily close falls the week limit or more below "
                       "the week's opening equity (the desk's week halt firing); daily closes, so a lower bound"}
    out["equity_floor_usd"] = floor_usd
    out["p_ruin"] = float(res.per_sim["ruined"].mean())
    return out


# ------------------------------------------------------------------------------------ cost noise

@dataclass
class CostNoise:
    """Cost-noise draws: per simulation ``total_net_pnl_usd``, ``expectancy_usd`` and
    ``expectancy_r`` (shape (sims,)); the recorded figures; how many trades were noised and
    how many skipped (a cross pair whose quote converts through another pair's price)."""

    total_net_pnl_usd: np.ndarray
    expectancy_usd: np.ndarray
    expectancy_r: np.ndarray
    recorded: dict[str, float]
    trades_noised: int
    trades_skipped_cross: int
    split_mismatch_max_pips: float
    notes: list[str] = field(default_factory=list)


def usd_per_pip(trades: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(USD per pip of each trade, whether it could be valued): units x pip_size x the USD
    value of one quote unit at the exit price, by deskd.core.money's rules (quote USD: 1;
    base USD: 1 / price). A cross (neither leg USD) needs another pair's price, which a trade
    row lacks: NaN, not valued. Raises MonteCarloInputError for a symbol that is not a pair."""
    out = np.full(len(trades), np.nan)
    syms = trades["symbol"].to_numpy()
    units = np.abs(trades["units"].to_numpy(float))
    price = trades["exit_price"].to_numpy(float)
    for sym in pd.unique(syms):
        try:
            ins = Instrument.parse(str(sym))
        except ValueError as e:
            raise MonteCarloInputError(f"trades: {e}") from None
        try:
            conv = QuoteConverter({ins.symbol: ins})
        except ValueError:  # a cross: its quote converts only through another pair's price
            continue
        m = syms == sym
        q = np.array([conv.quote_usd(ins.symbol, p) for p in price[m].tolist()])
        out[m] = units[m] * ins.pip_size * q
    return out, np.isfinite(out)


def cost_noise(trades: pd.DataFrame, sims: int, rng: np.random.Generator, spread_mult: tuple[float, float],
               slippage_mult: tuple[float, float], spike_prob: float, spike_mult: float) -> CostNoise:
    """Redraw each trade's costs ``sims`` times and recompute its net P&L.

    Per trade and simulation: one spread multiplier ~ U(``spread_mult``) scales both sides'
    recorded spread (pips), one slippage multiplier ~ U(``slippage_mult``) both sides'
    recorded slippage, and each side whose fill did not already get the spike multiplier gets
    ``spike_mult`` (the config's costs.slippage.spike_mult) on its slippage with probability
    ``spike_prob``. Then ``new_pnl_usd = pnl_usd + (old_cost_pips - new_cost_pips) x
    usd_per_pip`` (:func:`usd_per_pip`), computed as ``pnl_usd + delta_pips x usd_per_pip``
    with ``delta_pips = spread x (1 - m_spread) + entry_slip x (1 - m_slip x k_entry) + exit_slip
    x (1 - m_slip x k_exit)``, so multipliers of exactly 1 leave the recorded P&L unchanged to
    the bit. Approximation: the USD value of a pip is taken at the recorded exit price (for a
    USD-based pair the new exit price would move it by a fraction of a pip's worth). Trades that
    cannot be valued keep their recorded P&L and are counted. R = net P&L / risk_usd (0 when
    the trade had no planned risk). ``trades`` must hold the cost split columns
    (:data:`SPLIT_COLUMNS`); raises KeyError otherwise."""
    es, xs = (trades[c].to_numpy(float) for c in ("entry_spread_pips", "exit_spread_pips"))
    esl, xsl = (trades[c].to_numpy(float) for c in ("entry_slippage_pips", "exit_slippage_pips"))
    espk, xspk = (trades[c].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
                  for c in ("entry_spike", "exit_spike"))
    pnl = trades["pnl_usd"].to_numpy(float)
    risk = trades["risk_usd"].to_numpy(float)
    upp, valued = usd_per_pip(trades)
    complete = np.isfinite(es) & np.isfinite(xs) & np.isfinite(esl) & np.isfinite(xsl)
    ok = valued & complete
    upp = np.where(ok, upp, 0.0)
    spread = np.where(ok, es + xs, 0.0)
    esl, xsl = np.where(ok, esl, 0.0), np.where(ok, xsl, 0.0)
    inv_risk = np.where(risk > 0, 1.0 / np.where(risk > 0, risk, 1.0), 0.0)
    n = len(trades)
    split_sum = es + esl + xs + xsl
    mismatch = np.abs(split_sum - trades["cost_pips"].to_numpy(float))
    chunk = max(1, CHUNK_CELLS // max(n, 1))

    def draw(rng_range: tuple[float, float], shape: tuple[int, int]) -> np.ndarray | float:
        lo, hi = rng_range
        return lo if lo == hi else rng.uniform(lo, hi, shape)

    totals, exp_r = [], []
    done = 0
    while done < sims:
        k = min(chunk, sims - done)
        shape = (k, n)
        ms, ml = draw(spread_mult, shape), draw(slippage_mult, shape)
        ke: np.ndarray | float = 1.0
        kx: np.ndarray | float = 1.0
        if spike_prob > 0 and spike_mult != 1.0:
            ke = np.where(~espk & (rng.random(shape) < spike_prob), spike_mult, 1.0)
            kx = np.where(~xspk & (rng.random(shape) < spike_prob), spike_mult, 1.0)
        delta = spread * (1.0 - ms) + esl * (1.0 - ml * ke) + xsl * (1.0 - ml * kx)
        new_pnl = pnl + np.broadcast_to(delta, shape) * upp
        totals.append(new_pnl.sum(axis=1))
        exp_r.append((new_pnl * inv_risk).mean(axis=1))
        done += k
    total = np.concatenate(totals)
    notes = []
    skipped_cross = int((~valued).sum())
    if skipped_cross:
        notes.append(f"{skipped_cross} trade(s) of a cross pair kept their recorded costs: the USD value of "
                     f"their pip needs another pair's price, which trades.csv does not hold")
    incomplete = int((valued & ~complete).sum())
    if incomplete:
        notes.append(f"{incomplete} trade(s) without a recorded cost split kept their recorded costs")
    recorded = {"total_net_pnl_usd": float(pnl.sum()), "expectancy_usd": float(pnl.mean()),
                "expectancy_r": float((pnl * inv_risk).mean())}
    return CostNoise(total, total / n, np.concatenate(exp_r), recorded, int(ok.sum()), skipped_cross,
                     float(np.nanmax(mismatch)) if np.isfinite(mismatch).any() else math.nan, notes)


def cost_json(cn: CostNoise) -> dict[str, Any]:
    """montecarlo.json's cost-noise results."""
    fin = cn.split_mismatch_max_pips
    return {
        "skipped": False, "trades_noised": cn.trades_noised, "trades_skipped_cross": cn.trades_skipped_cross,
        "notes": cn.notes, "recorded": cn.recorded,
        "cost_split_vs_cost_pips_max_abs_diff_pips": None if not math.isfinite(fin) else round(fin, 6),
        "total_net_pnl_usd": summarise(cn.total_net_pnl_usd, False),
        "expectancy_usd": summarise(cn.expectancy_usd, False),
        "expectancy_r": summarise(cn.expectancy_r, False),
        "p_net_expectancy_below_zero": float((cn.expectancy_usd < 0).mean()),
    }


# ---------------------------------------------------------------------------------------- a run

@dataclass
class Options:
    """``deskd montecarlo``'s options: ``block`` None = chosen by the data."""

    scenario: str | None = None
    sims: int = 5000
    seed: int = 42
    block: int | None = None
    method: str = "stationary"
    spread_mult: tuple[float, float] = DEFAULT_SPREAD_MULT
    slippage_mult: tuple[float, float] = DEFAULT_SLIPPAGE_MULT
    spike_prob: float = 0.0


@dataclass
class MonteCarlo:
    """Everything a run produced: the input, montecarlo.json's content (``meta``), the two
    bootstraps (``daily`` None with a note when the run has fewer than 2 daily returns) and
    the cost noise (None with a note when the trades carry no cost split)."""

    inp: RunInput
    meta: dict[str, Any]
    trades: SimResult
    daily: SimResult | None
    cost: CostNoise | None


def check_options(opts: Options) -> None:
    """Raises MonteCarloInputError for options outside their domain."""
    if opts.sims < 1:
        raise MonteCarloInputError(f"--sims {opts.sims}: give 1 or more")
    if opts.block is not None and opts.block < 1:
        raise MonteCarloInputError(f"--block {opts.block}: give 1 or more, or auto")
    if opts.method not in METHODS:
        raise MonteCarloInputError(f"--method {opts.method}: one of {', '.join(METHODS)}")
    if not (0.0 <= opts.spike_prob <= 1.0):
        raise MonteCarloInputError(f"--spike-prob {opts.spike_prob}: a probability, 0 to 1")
    for flag, (lo, hi) in (("--spread-mult", opts.spread_mult), ("--slippage-mult", opts.slippage_mult)):
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or lo > hi:
            raise MonteCarloInputError(f"{flag} {lo},{hi}: give 0 <= LOW <= HIGH")


def run_montecarlo(run_dir: Path, opts: Options, inp: RunInput | None = None) -> MonteCarlo:
    """Read ``run_dir`` (unless ``inp`` is its :func:`read_run` already) and run the trade and
    daily bootstraps and the cost noise. Raises MonteCarloInputError (and ConfigError) for bad
    input, before any simulation."""
    check_options(opts)
    if inp is None:
        inp = read_run(Path(run_dir), opts.scenario)
    cfg = inp.cfg
    start = cfg.account.starting_equity_usd
    floor = cfg.account.equity_floor_frac * start
    limits = desk_limits(cfg)
    g_trades, g_daily, g_cost = (np.random.default_rng(s) for s in np.random.SeedSequence(opts.seed).spawn(3))
    r = inp.trades["r_multiple"].to_numpy(float)
    tr = simulate(r, cfg.risk.r_base, start, floor, opts.sims, opts.block, opts.method, g_trades, "trades",
                  inp.trade_span_days, 1.0)
    notes: list[str] = []
    daily = None
    if len(inp.daily_returns) >= 2:
        daily = simulate(inp.daily_returns, 1.0, start, floor, opts.sims, opts.block, opts.method, g_daily, "days",
                         inp.daily_span_days, math.sqrt(ANNUALISATION_DAYS), limits["dd_week_limit_frac"])
    else:
        notes.append(f"daily bootstrap skipped: the equity file holds {len(inp.daily_returns)} daily return(s) of "
                     f"scenario {inp.scenario}, fewer than 2")
    missing = [c for c in SPLIT_COLUMNS if c not in inp.trades.columns]
    cost = None
    if missing:
        cost_out: dict[str, Any] = {"skipped": True, "notes": [
            f"cost noise skipped: the trades carry no per-side cost split ({', '.join(missing)} missing; "
            f"written by deskd versions that record the split)"]}
        notes += cost_out["notes"]
    else:
        cost = cost_noise(inp.trades, opts.sims, g_cost, opts.spread_mult, opts.slippage_mult, opts.spike_prob,
                          cfg.costs.slippage.spike_mult)
        cost_out = cost_json(cost)
    meta = {
        "deskd_version": __version__,
        "inputs": {
            "run_dir": str(inp.run_dir), "kind": inp.kind, "files_sha256": inp.files,
            "scenario": inp.scenario, "scenarios_in_run": inp.scenarios, "sims": opts.sims, "seed": opts.seed,
            "method": opts.method, "block_given": opts.block,
            "starting_equity_usd": start, "r_base": cfg.risk.r_base,
            "equity_floor_frac": cfg.account.equity_floor_frac, "equity_floor_usd": floor, "limits_frac": limits,
            "cost_noise": {"spread_mult_range": list(opts.spread_mult),
                           "slippage_mult_range": list(opts.slippage_mult), "spike_prob": opts.spike_prob,
                           "spike_mult": cfg.costs.slippage.spike_mult},
        },
        "model": {
            "trades": "equity_k = equity_{k-1} x max(0, 1 + r_base x R_k) over the resampled R-multiples in "
                      "exit order; ignores risk caps, drawdown halts and concurrent positions",
            "daily": "equity_d = equity_{d-1} x (1 + r_d) over resampled day-on-day returns of the account",
            "bootstrap": ("Politis & Romano (1994) stationary bootstrap (arch.bootstrap.StationaryBootstrap)"
                          if opts.method == "stationary" else
                          "circular block bootstrap (Politis & Romano 1992; arch.bootstrap.CircularBlockBootstrap)"),
        },
        "results": {"trades": sim_json(tr, limits, floor),
                    "daily": sim_json(daily, limits, floor) if daily is not None else {"skipped": True},
                    "cost_noise": cost_out},
        "notes": notes,
    }
    return MonteCarlo(inp, _clean(meta), tr, daily, cost)


def _clean(x: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


# -------------------------------------------------------------------------------------- outputs

def paths_frame(mc: MonteCarlo) -> pd.DataFrame:
    """paths.parquet: per bootstrap (``method`` trades or days) and step (trade or day index,
    0 = the start): the 5/25/50/75/95th percentiles of equity across simulations and the
    observed path (USD)."""
    frames = []
    for res in (mc.trades, mc.daily):
        if res is None:
            continue
        q = np.percentile(res.grid, BANDS, axis=0)
        d = {"method": res.unit, "step": res.steps}
        d.update({f"equity_p{p}_usd": q[i] for i, p in enumerate(BANDS)})
        d["observed_equity_usd"] = res.observed_path
        frames.append(pd.DataFrame(d))
    return pd.concat(frames, ignore_index=True)


def default_out(run_dir: Path, scenario: str) -> Path:
    return Path(run_dir) / f"montecarlo-{scenario}"


def check_out(out: Path) -> None:
    """Refuse an ``out`` that exists and is not empty and not an earlier Monte Carlo's folder
    (holding montecarlo.json), before anything runs. Raises MonteCarloInputError."""
    from deskd.research.outputs import check_result_folder

    try:
        check_result_folder(Path(out), "montecarlo.json", "deskd montecarlo")
    except FileExistsError as e:
        raise MonteCarloInputError(str(e)) from None


def write_outputs(mc: MonteCarlo, out: Path) -> Path:
    """Write montecarlo.json, paths.parquet and report.html into ``out``, whole or not at all
    (:func:`deskd.research.outputs.write_folder`; an earlier Monte Carlo's folder there is
    replaced). Raises MonteCarloInputError for an ``out`` :func:`check_out` refuses."""
    from deskd.research.montecarlo_html import render_html
    from deskd.research.outputs import write_folder

    check_out(out)
    return write_folder(Path(out), {
        "paths.parquet": lambda p: paths_frame(mc).to_parquet(p, index=False),
        "report.html": lambda p: p.write_text(render_html(mc), encoding="utf-8"),
        "montecarlo.json": lambda p: p.write_text(json.dumps(mc.meta, indent=2) + "\n", encoding="utf-8"),
    }, marker="montecarlo.json")


def _f(x: Any, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def summary(meta: dict[str, Any]) -> str:
    """The terminal summary, at most 80 columns a line."""
    inp, res = meta["inputs"], meta["results"]
    lines = [f"monte carlo {inp['kind']} scenario {inp['scenario']}: {inp['sims']:,} sims, seed {inp['seed']}, "
             f"{inp['method']} bootstrap"[:80]]
    for unit in ("trades", "daily"):
        r = res[unit]
        if r.get("skipped"):
            lines.append(f"{unit}: skipped")
            continue
        steps = "trades" if unit == "trades" else "days"
        lines.append(f"{unit}: {r[steps]:,} {steps}, block {r['block_length']}"[:80])
        lines.append(f"  {'':<24}{'p5':>12}{'median':>12}{'p95':>12}{'worst 1%':>12}")
        for key, fmt in (("max_dd_frac", ".2%"), ("max_dd_usd", ",.0f"), ("final_equity_usd", ",.0f"),
                         ("cagr_frac", ".2%"), (f"dd_duration_{steps}", ",.0f"), (f"recovery_{steps}", ",.0f")):
            s = r[key]
            lines.append(f"  {key:<24}" + "".join(f"{_f(s[k], fmt):>12}" for k in ("p5", "p50", "p95", "worst_1pct")))
        never = r[f"recovery_{steps}"].get("unrecovered_frac")
        if never:
            lines.append(f"  (recovery_{steps}: of the paths that recovered; {never:.1%} never did)")
        lims = ", ".join(f"{k.removesuffix('_frac')} {v['probability']:.1%}" for k, v in r["p_max_dd_frac_above"].items())
        lines.append(f"  P(max DD > {lims})"[:80])
        lines.append(f"  P(ruin: equity < {r['equity_floor_usd']:,.0f} USD) {r['p_ruin']:.2%}")
        wk = r.get("p_week_dd_above_week_limit") or {}
        if wk.get("probability") is not None:
            lines.append(f"  P(a week falls >= {wk['limit_frac']:.1%} from its open) {wk['probability']:.2%} of weeks")
    c = res["cost_noise"]
    if c.get("skipped"):
        lines.append("cost noise: skipped (the trades carry no cost split)")
    else:
        t = c["total_net_pnl_usd"]
        lines.append(f"cost noise: net P&L USD p5 {_f(t['p5'], ',.0f')}, median {_f(t['p50'], ',.0f')}, "
                     f"p95 {_f(t['p95'], ',.0f')}"[:80])
        lines.append(f"  recorded net P&L {c['recorded']['total_net_pnl_usd']:,.0f} USD"[:80])
        e = c["expectancy_r"]
        lines.append(f"  expectancy R median {_f(e['p50'], '.4f')}; P(net expectancy < 0) "
                     f"{c['p_net_expectancy_below_zero']:.1%}"[:80])
    return "\n".join(line[:80] for line in lines)


__all__ = ["ConfigError", "MonteCarloInputError", "Options", "parse_range", "run_montecarlo", "write_outputs",
           "summary", "default_out"]
