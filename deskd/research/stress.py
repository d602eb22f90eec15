"""``deskd stress``: how a strategy's result holds up when costs rise and its params move.

Input: a walk-forward folder (walkforward.json, config.yaml: every split's chosen params run
again on its test window, equity carried from split to split as ``deskd walkforward`` does) or
a backtest folder (report.json, config.yaml: one strategy of it at the config's params over
the backtest's window). Every figure is a re-run of the desk, never an adjustment of recorded
trades: the fast path (:func:`deskd.research.fastpath.screen`) where the strategy has a kernel
and trades one symbol alone, the event path (the Desk with the paper broker) otherwise.

The strategy runs alone (the desk holding only it, on its symbols), as the tuner and the
walk-forward run it. At a cost multiple of 1 a walk-forward's re-run is therefore its
out-of-sample record itself (a test holds it to that); for a backtest of several strategies
the figures are the strategy's own, not its share of that backtest, where the others'
positions and caps changed its trades (stress.json says so).

Two stresses, from one ``--scenario`` (the base costs, default the run's first):

* **costs**: the base scenario with spread and slippage ``k`` times as large
  (:meth:`deskd.configs.models.ScenarioConfig.scaled`: spread_mult, slippage_mult and
  slippage_add_pips times k), for each k of ``multiples`` (default 1.0 .. 3.0). Per k:
  trades, expectancy (R per trade), Sharpe (daily, annualised by sqrt(252)), net P&L (USD),
  profit factor and max drawdown. The **break-even cost multiple** is where expectancy
  crosses zero, linearly interpolated between the two multiples around the first crossing
  (expectancy falls about linearly in k: each trade pays k x its cost in R). Censored at the
  grid's ends: ``at_or_below`` the lowest multiple when expectancy is not positive there,
  ``at_or_above`` the highest when it never falls to zero.
* **params**: ``neighbours`` random neighbours of the chosen point, each moving every tuned
  param at once (the strategy's search space, :class:`deskd.research.tuning.space.
  SearchSpace`): an integer by +-1 .. ``int_steps`` (a uniform step and sign), a float by a
  factor uniform in 1 +- ``jitter_frac``, each clipped to its dimension's bounds and to the
  param's own minimum (never a period of 0); a choice stays. A neighbour the strategy's
  rules refuse (``ema_fast >= ema_slow``) is drawn again (counted). On a walk-forward one
  neighbour applies the same moves to every split's point. Reported: the share of neighbours
  with a positive expectancy, and the spread (percentiles) of their metrics; per param and
  move, the mean expectancy of the neighbours that moved it so (the heatmap).

Seeded (``numpy.random.default_rng(seed)``): same seed, same neighbours, same numbers.
Outputs (:func:`write_outputs`, into ``RUN_DIR/stress-<scenario>/`` or ``--out``, whole or
not at all): stress.json, cost.csv, neighbours.csv and report.html
(:mod:`deskd.research.stress_html`).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskd import __version__
from deskd.adapters.replay import MemoryFeed, Window, replay_feed
from deskd.configs.loader import load_config
from deskd.configs.models import DeskConfig, StopsConfig
from deskd.core.time import iso, parse_iso
from deskd.research.backtest import file_sha256, inputs_fingerprint
from deskd.research.metrics import ratio_stats
from deskd.research.outputs import write_folder
from deskd.research.progress import RunProgress
from deskd.research.tuning.space import InvalidPoint, SearchSpace
from deskd.research.tuning.tune import _ignore_sigint, jsonable

DEFAULT_MULTIPLES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
PF_CAP = 100.0  # profit factor with no losing trade (JSON has no infinity)
PERCENTILES = (5, 25, 50, 75, 95)


class StressInputError(ValueError):
    """A folder that is not a run, a strategy or scenario not in it, options out of range."""


@dataclass(frozen=True)
class Leg:
    """One window the strategy trades with its own ``point`` (a walk-forward split's test
    window, or a backtest's window; ``window`` None = the whole data)."""

    label: str
    point: dict[str, Any]
    window: Window | None


@dataclass
class Plan:
    """What a stress re-runs: ``cfg`` (the run's config.yaml), the strategy, its search space,
    the ``legs`` in time order and the base ``scenario``."""

    run_dir: Path
    kind: str  # "walkforward" or "backtest"
    cfg: DeskConfig
    strategy_id: str
    space: SearchSpace
    legs: list[Leg]
    scenario: str
    files: dict[str, str]

    @property
    def fast(self) -> bool:
        """Whether the fast path runs it: a kernel for the class, one symbol, and
        $DESKD_FAST_PATH not 0 (the switch the tuner honours)."""
        from deskd.research.fastpath import has_kernel

        sid = self.strategy_id
        return (os.environ.get("DESKD_FAST_PATH", "1") != "0"
                and has_kernel(self.cfg.strategies[sid].strategy_class)
                and len(self.cfg.universe.symbols) == 1 and len(self.cfg.strategy_symbols(sid)) == 1)


@dataclass(frozen=True)
class Options:
    """``deskd stress``'s options (see the module docstring)."""

    scenario: str | None = None
    strategy_id: str | None = None
    multiples: tuple[float, ...] = DEFAULT_MULTIPLES
    neighbours: int = 50
    jitter_frac: float = 0.10
    int_steps: int = 2
    seed: int = 42
    workers: int = 1


def check_options(opts: Options) -> None:
    """Raises StressInputError for options outside their domain."""
    if not opts.multiples or any(not (math.isfinite(k) and k > 0) for k in opts.multiples):
        raise StressInputError(f"--multiples {','.join(map(str, opts.multiples))}: give numbers > 0")
    if not 0 <= opts.neighbours <= 10_000:
        raise StressInputError(f"--neighbours {opts.neighbours}: give 0 to 10000")
    if not 0 < opts.jitter_frac < 1:
        raise StressInputError(f"--jitter-pct {opts.jitter_frac * 100:g}: give more than 0 and less than 100")
    if not 1 <= opts.int_steps <= 1000:
        raise StressInputError(f"--int-steps {opts.int_steps}: give 1 or more")
    if opts.workers < 1:
        raise StressInputError(f"--workers {opts.workers}: give 1 or more")


# ------------------------------------------------------------------------------------- inputs

def read_plan(run_dir: Path, opts: Options) -> Plan:
    """The legs, strategy and scenario of ``run_dir``. Raises StressInputError (not a run, a
    strategy or scenario not in it, nothing tuned), ConfigError (a bad config.yaml)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StressInputError(f"{run_dir}: not a folder")
    if not (run_dir / "config.yaml").exists():
        raise StressInputError(f"{run_dir}: not a deskd run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    if (run_dir / "walkforward.json").exists():
        kind, meta_name = "walkforward", "walkforward.json"
    elif (run_dir / "report.json").exists():
        kind, meta_name = "backtest", "report.json"
    else:
        raise StressInputError(f"{run_dir}: not a backtest or walk-forward folder (no report.json or walkforward.json)")
    try:
        meta = json.loads((run_dir / meta_name).read_text())
    except (OSError, ValueError) as e:
        raise StressInputError(f"{run_dir / meta_name}: cannot read it: {e}") from None
    if not isinstance(meta, dict):
        raise StressInputError(f"{run_dir / meta_name}: not a JSON object")
    if kind == "walkforward":
        sid = str(meta.get("strategy_id", ""))
        if opts.strategy_id not in (None, sid):
            raise StressInputError(f"--strategy {opts.strategy_id}: this walk-forward tuned {sid}")
        legs = _walkforward_legs(run_dir / meta_name, meta)
        scenarios = _names(run_dir / meta_name, meta.get("scenarios", []))
    else:
        enabled = list(cfg.strategies.enabled())
        sid = opts.strategy_id or (enabled[0] if len(enabled) == 1 else "")
        if not sid:
            raise StressInputError(f"{run_dir}: the backtest ran {', '.join(enabled)}: say which with --strategy")
        legs = [Leg("backtest", {}, _backtest_window(run_dir / meta_name, meta))]
        scenarios = _names(run_dir / meta_name, meta.get("scenarios", list(cfg.costs.scenarios)))
    if sid not in cfg.strategies.root:
        raise StressInputError(f"{run_dir}: strategy {sid!r} is not in its config.yaml "
                               f"({', '.join(cfg.strategies.root)})")
    try:
        space = SearchSpace.of(cfg, sid)
    except ValueError as e:
        raise StressInputError(str(e)) from None
    if kind == "backtest":  # the config's own values of the tuned params
        params, stops = space.resolve({})
        legs = [Leg(legs[0].label, {n: (stops if n.startswith("stops.") else params)[n.rpartition(".")[2]]
                                    for n in space.dims}, legs[0].window)]
    if not legs:
        raise StressInputError(f"{run_dir}: no split chose params (every train window lacked an eligible point)")
    _check_points(space, legs, run_dir / meta_name)
    scenario = opts.scenario or (scenarios[0] if scenarios else next(iter(cfg.costs.scenarios)))
    if scenario not in cfg.costs.scenarios:
        raise StressInputError(f"--scenario {scenario}: not a scenario of {run_dir}/config.yaml "
                               f"({', '.join(cfg.costs.scenarios)})")
    files = {name: file_sha256(str(run_dir / name)) for name in ("config.yaml", meta_name)}
    return Plan(run_dir, kind, cfg, sid, space, legs, scenario, files)


def _check_points(space: SearchSpace, legs: list[Leg], where: Path) -> None:
    """Raises StressInputError for a leg whose point names a param outside the search space or
    breaks the strategy's rules: a damaged run folder, said before any work."""
    for leg in legs:
        unknown = sorted(set(leg.point) - set(space.dims))
        try:
            if unknown:
                raise InvalidPoint(f"{', '.join(unknown)} not in the search space ({', '.join(space.dims)})")
            space.resolve(leg.point)
        except (InvalidPoint, TypeError, ValueError) as e:
            raise StressInputError(f"{where}: {leg.label}: params {leg.point}: {e}") from None


def _names(where: Path, value: Any) -> list[str]:
    """The scenario names of walkforward.json (a list) or report.json (an object by name)."""
    if not isinstance(value, list | dict):
        raise StressInputError(f"{where}: scenarios is not a list or an object")
    return [str(s) for s in value]


def _walkforward_legs(where: Path, meta: dict[str, Any]) -> list[Leg]:
    rows = meta.get("splits", [])
    if not isinstance(rows, list):
        raise StressInputError(f"{where}: splits is not a list")
    legs = []
    for row in rows:
        if not isinstance(row, dict):
            raise StressInputError(f"{where}: a split that is not an object")
        point = {k[2:]: v for k, v in row.items() if k.startswith("p.")}
        if not point:
            continue  # the split chose nothing and traded nothing
        try:
            window = Window(parse_iso(str(row["test_from"])), parse_iso(str(row["test_to"])), warmup_bars=None)
        except (KeyError, ValueError) as e:
            raise StressInputError(f"{where}: split {row.get('split')}: bad test window ({e})") from None
        legs.append(Leg(f"split {row.get('split')}", point, window))
    return legs


def _backtest_window(where: Path, meta: dict[str, Any]) -> Window | None:
    w = meta.get("window")
    if not w:
        return None
    if not isinstance(w, dict):
        raise StressInputError(f"{where}: window is not an object")
    warmup = w.get("warmup_bars")
    if warmup is not None and not (isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= 0):
        raise StressInputError(f"{where}: window.warmup_bars {warmup!r}: a whole number of bars, 0 or more")
    try:
        return Window(parse_iso(str(w["from"])) if w.get("from") else None,
                      parse_iso(str(w["to"])) if w.get("to") else None, warmup_bars=warmup)
    except (KeyError, ValueError, TypeError) as e:
        raise StressInputError(f"{where}: bad window ({e})") from None


# ------------------------------------------------------------------------------------ neighbours

def _minimum(model: Any, field_name: str) -> float | None:
    """The lower bound (ge / gt) a pydantic field declares, or None."""
    info = model.model_fields.get(field_name)
    if info is None:
        return None
    for m in info.metadata:
        for attr in ("ge", "gt"):
            v = getattr(m, attr, None)
            if v is not None:
                return float(v)
    return None


def draw_moves(space: SearchSpace, rng: np.random.Generator, jitter_frac: float, int_steps: int) -> dict[str, float]:
    """One neighbour's moves: per tuned name, an integer step in +-1..``int_steps`` (ints) or
    a factor in 1 +- ``jitter_frac`` (floats); choices are left out (they stay)."""
    moves: dict[str, float] = {}
    for name, d in space.dims.items():
        if d.choices is not None:
            continue
        if d.is_int:
            moves[name] = float(int(rng.integers(1, int_steps + 1)) * (1 if rng.random() < 0.5 else -1))
        else:
            moves[name] = float(1.0 + rng.uniform(-jitter_frac, jitter_frac))
    return moves


def apply_moves(space: SearchSpace, point: dict[str, Any], moves: dict[str, float]) -> dict[str, Any]:
    """``point`` moved by ``moves`` (:func:`draw_moves`), each value clipped into its dimension's
    [low, high] and to the param's own minimum. Raises InvalidPoint when the strategy's rules
    refuse the result."""
    spec = space.cfg.strategies[space.strategy_id]
    out = dict(point)
    for name, mv in moves.items():
        if name not in point:
            continue
        d = space.dims[name]
        group, _, fld = name.rpartition(".")
        floor = _minimum(StopsConfig if group == "stops" else spec.strategy_class.Params, fld)
        lo = max(x for x in (d.low, floor, -math.inf) if x is not None)
        hi = d.high if d.high is not None else math.inf
        if d.is_int:
            out[name] = int(min(max(int(point[name]) + int(mv), math.ceil(lo)), math.floor(hi)))
        else:
            out[name] = float(min(max(float(point[name]) * mv, lo), hi))
    space.resolve(out)  # InvalidPoint when a rule across params breaks
    return out


def neighbours(space: SearchSpace, points: list[dict[str, Any]], n: int, rng: np.random.Generator,
               jitter_frac: float, int_steps: int, max_draws: int = 100) -> tuple[list[dict[str, float]],
                                                                                list[list[dict[str, Any]]], int]:
    """``n`` neighbours of the legs' ``points``: (each neighbour's moves, its point per leg,
    draws refused). A draw that any leg's rules refuse is drawn again, up to ``max_draws``
    per neighbour; a neighbour that cannot be drawn is left out (fewer than ``n``)."""
    moves_out: list[dict[str, float]] = []
    points_out: list[list[dict[str, Any]]] = []
    refused = 0
    for _ in range(n):
        for _ in range(max_draws):
            mv = draw_moves(space, rng, jitter_frac, int_steps)
            try:
                moved = [apply_moves(space, p, mv) for p in points]
            except InvalidPoint:
                refused += 1
                continue
            moves_out.append(mv)
            points_out.append(moved)
            break
    return moves_out, points_out, refused


# ---------------------------------------------------------------------------------------- runs

@dataclass
class Outcome:
    """One variant's run over every leg: trades (R, USD), the equity at each day roll and the
    end (stitched over legs), and the max drawdown (fraction of peak: the deepest of the legs'
    bar-close drawdowns and of the stitched day marks)."""

    r: np.ndarray
    pnl_usd: np.ndarray
    marks_usd: np.ndarray
    max_dd_frac: float
    final_equity_usd: float

    def metrics(self) -> dict[str, float]:
        """trades, expectancy_r (R per trade), net_usd, profit_factor (capped at PF_CAP),
        sharpe_daily_ann (:func:`deskd.research.metrics.ratio_stats` of the day-on-day returns), max_dd_frac,
        final_equity_usd. NaN where undefined."""
        r, pnl, m = self.r, self.pnl_usd, self.marks_usd
        wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
        pf = (min(wins / losses, PF_CAP) if losses > 0 else (PF_CAP if wins > 0 else math.nan))
        sharpe = ratio_stats((m[1:] / m[:-1] - 1.0).tolist() if len(m) >= 2 else [])[0]
        return {"trades": int(len(r)), "expectancy_r": float(r.mean()) if len(r) else math.nan,
                "net_usd": float(pnl.sum()), "profit_factor": float(pf),
                "sharpe_daily_ann": math.nan if sharpe is None else sharpe,
                "max_dd_frac": self.max_dd_frac, "final_equity_usd": self.final_equity_usd}


def _dd_frac(curve: np.ndarray) -> float:
    if len(curve) == 0:
        return 0.0
    peak = np.maximum.accumulate(curve)
    return float(np.max(np.where(peak > 0, (peak - curve) / peak, 0.0)))


class Runner:
    """Runs variants of a plan in one process: the bars are read once (a MemoryFeed, or the
    fast path's arrays) and every variant re-uses them."""

    def __init__(self, cfg_json: dict[str, Any], strategy_id: str, fast: bool):
        self.cfg = DeskConfig.model_validate(cfg_json)
        self.space = SearchSpace.of(self.cfg, strategy_id)
        self.fast = fast
        self._feed: MemoryFeed | None = None
        self._bars: Any = None

    def run(self, legs: list[tuple[dict[str, Any], Window | None]], scenario: str, multiple: float) -> Outcome:
        """The strategy at each leg's point over its window, under ``scenario`` scaled by
        ``multiple``, equity carried from leg to leg."""
        equity = self.cfg.account.starting_equity_usd
        rs, pnls, marks, dds = [], [], [equity], []
        for point, window in legs:
            name, cfg = self.space.config_for(point, None).with_scaled_scenario(scenario, multiple)
            cfg = cfg.model_copy(update={"account": cfg.account.model_copy(update={"starting_equity_usd": equity})})
            if self.fast:
                r, pnl, m, dd, equity = self._fast(cfg, point, name, window)
            else:
                r, pnl, m, dd, equity = self._event(cfg, name, window)
            rs.append(r)
            pnls.append(pnl)
            marks.extend(m)
            dds.append(dd)
        curve = np.array(marks, dtype=float)
        return Outcome(np.concatenate(rs), np.concatenate(pnls), curve, max([*dds, _dd_frac(curve)]), equity)

    def _event(self, cfg: DeskConfig, scenario: str, window: Window | None) -> tuple:
        from deskd.research.backtest import run_scenario

        if self._feed is None:
            self._feed = MemoryFeed.read(replay_feed(self.cfg))
        res = run_scenario(cfg, scenario, None, window=window, feed=self._feed)
        tr = sorted(res.trades, key=lambda t: (t.exit_ts, t.trade_id))
        return (np.array([t.r_multiple for t in tr], dtype=float), np.array([t.pnl_usd for t in tr], dtype=float),
                [eq for _, kind, eq, _, _ in res.equity_rows if kind in ("DAY", "END")], res.max_dd[1],
                res.final_equity_usd)

    def _fast(self, cfg: DeskConfig, point: dict[str, Any], scenario: str, window: Window | None) -> tuple:
        from deskd.research.fastpath import load_bars, screen
        from deskd.research.tuning.evaluate import fast_point

        sid = self.space.strategy_id
        if self._bars is None:
            self._bars = load_bars(self.cfg, self.cfg.strategy_symbols(sid)[0])
        run = screen(cfg, sid, scenario, [fast_point(point)], self._bars, window)[0]
        tr = run.trades
        return (tr["r_multiple"].to_numpy(float), tr["pnl_usd"].to_numpy(float),
                run.mark_equity_usd.tolist(), run.max_dd_frac, run.final_equity_usd)


_RUNNERS: dict[str, Runner] = {}


def _run_variant(key: str, cfg_json: dict[str, Any], strategy_id: str, fast: bool,
                 legs: list[tuple[dict[str, Any], Window | None]], scenario: str, multiple: float) -> Outcome:
    """A worker's task: this process's Runner for ``key`` (built once) runs one variant."""
    runner = _RUNNERS.get(key)
    if runner is None:
        _RUNNERS.clear()
        runner = _RUNNERS[key] = Runner(cfg_json, strategy_id, fast)
    return runner.run(legs, scenario, multiple)


def _run_all(plan: Plan, variants: list[tuple[list[dict[str, Any]], float]], workers: int,
             quiet: bool) -> Iterator[Outcome]:
    """Each variant (points per leg, cost multiple) run, in order, in ``workers`` processes."""
    cfg_json = plan.cfg.model_dump(mode="json", by_alias=True)
    key = json.dumps([cfg_json, plan.strategy_id, plan.fast], sort_keys=True)
    windows = [leg.window for leg in plan.legs]
    tasks = [(key, cfg_json, plan.strategy_id, plan.fast, list(zip(points, windows)), plan.scenario, k)
             for points, k in variants]
    prog = RunProgress("deskd stress", len(tasks), quiet=quiet)
    if workers == 1 or len(tasks) <= 1:
        for t in tasks:
            out = _run_variant(*t)
            prog.tick()
            yield out
        return
    with cf.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                                initializer=_ignore_sigint) as pool:
        futures = [pool.submit(_run_variant, *t) for t in tasks]
        try:
            for f in futures:
                out = f.result()
                prog.tick()
                yield out
        except BaseException:
            for f in futures:
                f.cancel()
            raise


# ---------------------------------------------------------------------------------------- stress

def break_even(multiples: list[float], expectancy_r: list[float]) -> tuple[float, str | None]:
    """(the cost multiple where expectancy crosses zero, censoring): linear interpolation
    between the two multiples around the first fall from > 0 to <= 0, over ``multiples``
    sorted ascending. ``("at_or_below")`` with the lowest multiple when expectancy is not
    positive there (or undefined), ``("at_or_above")`` with the highest when it stays
    positive; None when exact."""
    ks, es = list(multiples), list(expectancy_r)
    if not es or not (math.isfinite(es[0]) and es[0] > 0):
        return ks[0], "at_or_below"
    for i in range(1, len(ks)):
        if not (math.isfinite(es[i]) and es[i] > 0):
            if not math.isfinite(es[i]):
                return ks[i - 1], "at_or_above"
            k0, k1, e0, e1 = ks[i - 1], ks[i], es[i - 1], es[i]
            return k0 + (k1 - k0) * e0 / (e0 - e1), None
    return ks[-1], "at_or_above"


def _summary_stats(values: list[float]) -> dict[str, Any]:
    x = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"n": 0}
    q = np.percentile(x, PERCENTILES)
    return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, q)}}


@dataclass
class Stress:
    """A stress's results: stress.json's content and its two tables."""

    plan: Plan
    meta: dict[str, Any]
    cost: pd.DataFrame
    neighbours: pd.DataFrame


def run_stress(plan: Plan, opts: Options, quiet: bool = False) -> Stress:
    """Run the cost curve and the neighbours of ``plan`` (see the module docstring)."""
    check_options(opts)
    multiples = sorted(set(opts.multiples) | {1.0})
    base_points = [leg.point for leg in plan.legs]
    rng = np.random.default_rng(opts.seed)
    moves, points, refused = neighbours(plan.space, base_points, opts.neighbours, rng, opts.jitter_frac,
                                        opts.int_steps)
    variants = [(base_points, k) for k in multiples] + [(p, 1.0) for p in points]
    if not quiet:
        path = "fast path" if plan.fast else "event path"
        print(f"deskd stress: {plan.strategy_id}, {len(plan.legs)} window(s), {len(multiples)} cost multiples and "
              f"{len(points)} neighbours on the {path}", file=sys.stderr, flush=True)
    outcomes = list(_run_all(plan, variants, opts.workers, quiet))
    cost_rows = [{"multiple": k, **outcomes[i].metrics()} for i, k in enumerate(multiples)]
    cost = pd.DataFrame(cost_rows)
    k_be, censored = break_even(multiples, [r["expectancy_r"] for r in cost_rows])
    base = cost_rows[multiples.index(1.0)]
    nb_rows = []
    for j, (mv, outc) in enumerate(zip(moves, outcomes[len(multiples):]), start=1):
        m = outc.metrics()
        nb_rows.append({"neighbour": j, **{f"move.{n}": v for n, v in mv.items()}, **m,
                        "profitable": bool(math.isfinite(m["expectancy_r"]) and m["expectancy_r"] > 0)})
    nb = pd.DataFrame(nb_rows)
    exp = [r["expectancy_r"] for r in nb_rows]
    scn = plan.cfg.costs.scenarios[plan.scenario]
    meta = {
        "deskd_version": __version__,
        "inputs": {"run_dir": str(plan.run_dir), "kind": plan.kind, "files_sha256": plan.files,
                   "strategy_id": plan.strategy_id, "scenario": plan.scenario,
                   "runs": "the strategy alone on the desk (its symbols, the config's risk and costs)",
                   "scenario_costs": scn.model_dump(), "path": "fast" if plan.fast else "event",
                   "windows": [{"label": leg.label, "from": iso(leg.window.start_ts) if leg.window and leg.window.start_ts else None,
                                "to": iso(leg.window.end_ts) if leg.window and leg.window.end_ts else None,
                                "point": leg.point} for leg in plan.legs],
                   "multiples": multiples, "neighbours": opts.neighbours, "jitter_frac": opts.jitter_frac,
                   "int_steps": opts.int_steps, "seed": opts.seed,
                   **inputs_fingerprint(plan.cfg)},
        "cost": {
            "curve": cost_rows,
            "break_even_cost_multiple": k_be, "break_even_censored": censored,
            "expectancy_r_at_1x": base["expectancy_r"],
            "model": "each multiple k runs the desk again with spread_mult, slippage_mult and slippage_add_pips "
                     "of the base scenario times k; break-even is interpolated linearly between multiples",
        },
        "params": {
            "dims": plan.space.describe(),
            "neighbours_run": len(nb_rows), "draws_refused": refused,
            "profitable_share": (sum(r["profitable"] for r in nb_rows) / len(nb_rows)) if nb_rows else None,
            "expectancy_r": _summary_stats(exp),
            "sharpe_daily_ann": _summary_stats([r["sharpe_daily_ann"] for r in nb_rows]),
            "net_usd": _summary_stats([r["net_usd"] for r in nb_rows]),
            "max_dd_frac": _summary_stats([r["max_dd_frac"] for r in nb_rows]),
            "chosen": base,
            "by_move": by_move(nb),
        },
    }
    return Stress(plan, jsonable(meta), cost, nb)


def by_move(nb: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The heatmap's cells: per param and move (an integer step, or the float factor's band
    of width 0.04 around its centre, e.g. ``0.92``), the neighbours that moved so, their mean
    expectancy (R) and their share profitable."""
    out: dict[str, dict[str, Any]] = {}
    for col in [c for c in nb.columns if c.startswith("move.")]:
        mv = nb[col].to_numpy(float)
        name = col[5:]
        ints = bool(np.all(mv == np.round(mv)) and np.any(np.abs(mv) >= 1))
        keys = mv if ints else np.round((mv - 1.0) / 0.04) * 0.04 + 1.0
        cells: dict[str, Any] = {}
        for key in sorted(set(keys.tolist())):
            sel = keys == key
            e = nb.loc[sel, "expectancy_r"].to_numpy(float)
            label = f"{int(key):+d}" if ints else f"x{key:.2f}"
            cells[label] = {"n": int(sel.sum()), "mean_expectancy_r": float(np.nanmean(e)) if np.isfinite(e).any() else None,
                            "profitable_share": float(nb.loc[sel, "profitable"].mean())}
        out[name] = cells
    return out


# -------------------------------------------------------------------------------------- outputs

def default_out(run_dir: Path, scenario: str) -> Path:
    """``RUN_DIR/stress-<scenario>``: where a stress of ``scenario`` goes unless --out."""
    return Path(run_dir) / f"stress-{scenario}"


def write_outputs(st: Stress, out: Path) -> Path:
    """stress.json, cost.csv, neighbours.csv and report.html into ``out``, whole or not at all
    (:func:`deskd.research.outputs.write_folder`: an earlier stress there is replaced, any other
    non-empty folder refused with StressInputError)."""
    from deskd.research.stress_html import render_html

    files: dict[str, Callable[[Path], object]] = {
        "cost.csv": lambda p: st.cost.to_csv(p, index=False),
        "neighbours.csv": lambda p: st.neighbours.to_csv(p, index=False),
        "report.html": lambda p: p.write_text(render_html(st), encoding="utf-8"),
        "stress.json": lambda p: p.write_text(json.dumps(st.meta, indent=2) + "\n", encoding="utf-8"),
    }
    try:
        return write_folder(Path(out), files, marker="stress.json")
    except FileExistsError as e:
        raise StressInputError(str(e)) from None


def _f(x: Any, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, int | float) and math.isfinite(x) else "-"


def summary(meta: dict[str, Any]) -> str:
    """The terminal summary, 80 columns: the cost curve with its break-even multiple, then the
    neighbours' share profitable and the spread of their expectancy."""
    inp, cost, par = meta["inputs"], meta["cost"], meta["params"]
    lines = [f"stress {inp['strategy_id']} ({inp['kind']}, scenario {inp['scenario']}, {inp['path']} path, "
             f"{len(inp['windows'])} window(s))"[:80], "",
             f"{'costs x':>7} {'trades':>7} {'exp R':>8} {'Sharpe':>7} {'net USD':>12} {'max DD':>7}"]
    for r in cost["curve"]:
        lines.append(f"{r['multiple']:>7.2f} {r['trades']:>7,} {_f(r['expectancy_r'], '+.4f'):>8} "
                     f"{_f(r['sharpe_daily_ann'], '+.2f'):>7} {_f(r['net_usd'], ',.0f'):>12} "
                     f"{_f(r['max_dd_frac'], '.1%'):>7}")
    k, cens = cost["break_even_cost_multiple"], cost["break_even_censored"]
    sign = {"at_or_below": "<= ", "at_or_above": ">= "}.get(cens or "", "")
    lines += ["", f"break-even cost multiple: {sign}{_f(k, '.2f')} (expectancy crosses 0 R)"]
    e = par["expectancy_r"]
    if par["neighbours_run"]:
        lines += [f"neighbours: {par['neighbours_run']} run ({par['draws_refused']} draws refused by the rules), "
                  f"{_f(par['profitable_share'], '.0%')} profitable"[:80],
                  f"  expectancy R: p5 {_f(e.get('p5'), '+.4f')}, median {_f(e.get('p50'), '+.4f')}, "
                  f"p95 {_f(e.get('p95'), '+.4f')}; chosen {_f(par['chosen']['expectancy_r'], '+.4f')}"[:80]]
    return "\n".join(lines)
