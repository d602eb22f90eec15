"""``deskd walkforward``: tune on each train window, trade the choice on the test window after it.

Per split (:mod:`deskd.research.splits`): :func:`deskd.research.tuning.tune.tune` on the train
window only (its trades enter and exit inside it: the replay stops at the window's end), the
stage-2 winner (best worst-scenario score) is the choice; then the choice runs on the test
window through the event path under every stage-2 scenario, its indicators warmed on the bars
just before the test window (observed, never traded). Test windows follow one another, so the
out-of-sample trades stitch into one record: each split's test run starts with the equity the
previous one ended with, per scenario.

Nothing chosen on a split reads a bar at or after its train window's end: the tune's replay
stops there (a test proves it by changing later bars).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deskd.adapters.replay import Window
from deskd.configs.loader import dump_config
from deskd.configs.models import DeskConfig
from deskd.core.time import iso
from deskd.research.backtest import inputs_fingerprint, run_scenario
from deskd.research.export import write_manifest
from deskd.research.outputs import TRADE_COLUMNS, trade_row
from deskd.research.splits import Split
from deskd.research.tuning.space import SearchSpace
from deskd.research.tuning.tune import TuneOptions, jsonable, tune


@dataclass
class WalkForwardOptions:
    """``splits`` as :mod:`deskd.research.splits` made them (``spec`` says how, for the
    record); ``sampler``, ``trials``, ``workers``, ``cluster`` as for ``deskd tune``; the
    studies of every split's tune live in ``storage`` (default --out/study.db)."""

    strategy_id: str
    out_dir: Path
    splits: list[Split]
    spec: dict[str, Any]
    storage: str
    sampler: str = "grid"
    trials: int | None = None
    workers: int = 1
    cluster: str | None = None
    config_dir: Path | None = None


def _metrics(trades: list[Any]) -> dict[str, float]:
    r = [t.r_multiple for t in trades]
    return {"trades": len(trades), "net_usd": math.fsum(t.pnl_usd for t in trades),
            "expectancy_r": statistics.fmean(r) if r else math.nan}


def walkforward(cfg: DeskConfig, opts: WalkForwardOptions, quiet: bool = False) -> dict[str, Any]:
    """Run every split and write the outputs; returns walkforward.json's content. Raises
    TuneError (as ``deskd tune`` does), KeyboardInterrupt (the studies keep what finished)."""
    import sys

    space = SearchSpace.of(cfg, opts.strategy_id)
    scenarios = list(cfg.tune.stage2_scenarios)
    start_eq = cfg.account.starting_equity_usd
    carry = {sc: start_eq for sc in scenarios}
    rows: list[dict[str, Any]] = []
    oos_trades: list[list[Any]] = []
    oos_equity: list[dict[str, Any]] = []
    chosen: list[dict[str, Any]] = []
    for sp in opts.splits:
        if not quiet:
            print(f"deskd walkforward: split {sp.number}/{len(opts.splits)}: tune on {iso(sp.train_start)} to "
                  f"{iso(sp.train_end)}, test {iso(sp.test_start)} to {iso(sp.test_end)}", file=sys.stderr, flush=True)
        res = tune(cfg, TuneOptions(
            strategy_id=opts.strategy_id, out_dir=opts.out_dir / "splits" / f"{sp.number:02d}", storage=opts.storage,
            sampler=opts.sampler, trials=opts.trials, workers=opts.workers, cluster=opts.cluster,
            start_ts=sp.train_start, end_ts=sp.train_end, config_dir=opts.config_dir), quiet=quiet)
        row: dict[str, Any] = sp.as_dict()
        if res.top.empty:
            row["note"] = "no eligible point in the train window: no test run"
            rows.append(row)
            continue
        best = res.top.iloc[0]
        point = next(r.point for r in res.stage1 if r.trial == int(best["trial"]))
        chosen.append(point)
        row.update({f"p.{k}": v for k, v in point.items()})
        row["is_score"] = float(best["worst_score"])
        is_runs = {r.scenario: r for r in res.stage2 if r.point == point}
        for sc in scenarios:
            pcfg = space.config_for(point, opts.config_dir)
            pcfg = pcfg.model_copy(update={"account": pcfg.account.model_copy(update={"starting_equity_usd": carry[sc]})})
            run = run_scenario(pcfg, sc, None, window=Window(sp.test_start, sp.test_end, warmup_bars=None))
            carry[sc] = run.final_equity_usd
            m = _metrics(run.trades)
            ins = is_runs.get(sc)
            is_exp = ins.expectancy_r if ins is not None else math.nan
            row.update({f"is_trades_{sc}": ins.trades if ins else 0, f"is_expectancy_r_{sc}": is_exp,
                        f"oos_trades_{sc}": m["trades"], f"oos_expectancy_r_{sc}": m["expectancy_r"],
                        f"oos_net_usd_{sc}": m["net_usd"],
                        f"oos_over_is_{sc}": (m["expectancy_r"] / is_exp
                                              if math.isfinite(is_exp) and is_exp != 0 and math.isfinite(m["expectancy_r"])
                                              else math.nan)})
            oos_trades += [[sp.number, *trade_row(t, sc)] for t in sorted(run.trades, key=lambda t: t.trade_id)]
            oos_equity += [{"scenario": sc, "split": sp.number, "time": iso(ts), "kind": kind, "equity_usd": round(eq, 2)}
                           for ts, kind, eq, _, _ in run.equity_rows if kind in ("DAY", "END")]
        rows.append(row)
    meta = _summary(cfg, opts, rows, chosen, oos_trades, scenarios, carry)
    _write(opts.out_dir, cfg, meta, rows, oos_trades, oos_equity)
    from deskd.research.tuning.report import write_walkforward_html

    write_walkforward_html(opts.out_dir)
    write_manifest(opts.out_dir, names=WALKFORWARD_FILES, kind="walkforward", state=("study.db",))
    return meta


def _stability(chosen: list[dict[str, Any]]) -> dict[str, Any]:
    """Per tuned param: the value chosen in each split, how many distinct, and (numbers)
    their mean and population std; a desk wants the same neighbourhood chosen each time."""
    out: dict[str, Any] = {}
    for name in sorted({k for p in chosen for k in p}):
        vals = [p.get(name) for p in chosen]
        d: dict[str, Any] = {"values": vals, "distinct": len({json.dumps(v) for v in vals})}
        nums = [float(v) for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(nums) == len(vals) and nums:
            d["mean"] = statistics.fmean(nums)
            d["std"] = statistics.pstdev(nums)
        out[name] = d
    return out


def _summary(cfg: DeskConfig, opts: WalkForwardOptions, rows: list[dict[str, Any]], chosen: list[dict[str, Any]],
             oos_trades: list[list[Any]], scenarios: list[str], carry: dict[str, float]) -> dict[str, Any]:
    from deskd import __version__

    col = {c: i + 1 for i, c in enumerate(TRADE_COLUMNS)}
    oos: dict[str, Any] = {}
    for sc in scenarios:
        mine = [t for t in oos_trades if t[col["scenario"]] == sc]
        r = [float(t[col["r_multiple"]]) for t in mine]
        pnl = [float(t[col["pnl_usd"]]) for t in mine]
        oos[sc] = {"trades": len(mine), "net_usd": round(math.fsum(pnl), 2),
                   "expectancy_r": round(statistics.fmean(r), 6) if r else None,
                   "final_equity_usd": round(carry[sc], 2)}
    return {
        "deskd_version": __version__,
        "strategy_id": opts.strategy_id,
        "splits_spec": opts.spec,
        "sampler": opts.sampler, "trials": opts.trials,
        "scenarios": scenarios,
        "splits": rows,
        "parameter_stability": _stability(chosen),
        "out_of_sample": oos,
        **inputs_fingerprint(cfg),
    }


#: the files a walk-forward writes, which its manifest.json lists: its own, and each split's tune
#: (splits/NN/, each with its own manifest), not the study a resumed walk-forward keeps changing
WALKFORWARD_FILES = ("splits.csv", "oos_trades.csv", "oos_equity.csv", "config.yaml", "walkforward.json",
                     "report.html", "splits")


def _write(out: Path, cfg: DeskConfig, meta: dict[str, Any], rows: list[dict[str, Any]],
           oos_trades: list[list[Any]], oos_equity: list[dict[str, Any]]) -> None:
    """splits.csv, oos_trades.csv, oos_equity.csv, config.yaml and (last) walkforward.json into
    ``out``, each written whole first in a temporary folder."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    try:
        pd.DataFrame(rows).to_csv(tmp / "splits.csv", index=False)
        pd.DataFrame(oos_trades, columns=["split", *TRADE_COLUMNS]).to_csv(tmp / "oos_trades.csv", index=False)
        pd.DataFrame(oos_equity, columns=["scenario", "split", "time", "kind", "equity_usd"]).to_csv(
            tmp / "oos_equity.csv", index=False)
        (tmp / "config.yaml").write_text(dump_config(cfg))
        (tmp / "walkforward.json").write_text(json.dumps(jsonable(meta), indent=2, allow_nan=False) + "\n")
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == "walkforward.json"):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bar_times(cfg: DeskConfig) -> np.ndarray:
    """The sorted unique bar open times (UTC epoch s) of ``cfg``'s files, for bar-count splits.
    Raises BarFileError."""
    from deskd.adapters.replay import replay_feed

    parts = [ch.ts for ch in replay_feed(cfg).chunks()]
    return np.unique(np.concatenate(parts)) if parts else np.array([], dtype=np.int64)


def _f(x: Any, nd: int = 3) -> str:
    return f"{x:+.{nd}f}" if isinstance(x, int | float) and math.isfinite(x) else "-"


def summary(meta: dict[str, Any]) -> str:
    """The terminal summary, 80 columns: one line per split (test window, in-sample score,
    out-of-sample expectancy in R per scenario), the params each split chose, then the
    stitched out-of-sample totals."""
    scen = meta["scenarios"]
    lines = [f"walk-forward {meta['strategy_id']}: {len(meta['splits'])} splits ({_spec(meta['splits_spec'])})",
             "", f"{'#':>2}  {'test from':<10} {'test to':<10} {'IS score':>8}"
             + "".join(f" {'OOS ' + s:>7}" for s in scen)]
    chosen = []
    for row in meta["splits"]:
        lines.append(f"{row['split']:>2}  {row['test_from'][:10]:<10} {row['test_to'][:10]:<10} "
                     f"{_f(row.get('is_score')):>8}" + "".join(f" {_f(row.get(f'oos_expectancy_r_{s}')):>7}" for s in scen))
        params = " ".join(f"{k[2:]}={v:g}" if isinstance(v, float) else f"{k[2:]}={v}"
                          for k, v in row.items() if k.startswith("p."))
        chosen.append(f"{row['split']:>2}  {params or row.get('note', '')}"[:80])
    lines += ["", "IS score: the tune's worst-scenario score; OOS: expectancy in R per trade", "",
              "chosen params:", *chosen, ""]
    for s in scen:
        o = meta["out_of_sample"][s]
        lines.append(f"OOS {s}: {o['trades']:,} trades, {_f(o['expectancy_r'])} R per trade, net "
                     f"{o['net_usd']:,.0f} USD, equity {o['final_equity_usd']:,.0f} USD"[:80])
    return "\n".join(lines)


def _spec(spec: dict[str, Any]) -> str:
    kind = "anchored" if spec.get("anchored") else "rolling"
    if spec["unit"] == "bars":
        return f"{kind}, train {spec['train_bars']:,} bars, test {spec['test_bars']:,}, embargo {spec['embargo_bars']:,}"
    return f"{kind}, train {spec['train']}, test {spec['test']}, embargo {spec['embargo']}"
