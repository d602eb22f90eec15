"""``deskd tune``'s terminal summary: what was searched, and the stage-2 ranking, in 80 columns."""

from __future__ import annotations

import math
from typing import Any

from deskd.research.tuning.tune import TuneOutcome

WIDTH = 80


def signed(x: Any, nd: int = 3) -> str:
    """``x`` with its sign and ``nd`` decimals (``+0.123``), or ``-`` for what is not a finite number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return f"{v:+.{nd}f}" if math.isfinite(v) else "-"


def _point(row: dict[str, Any]) -> str:
    return " ".join(f"{k[2:]}={v:g}" if isinstance(v, float) else f"{k[2:]}={v}"
                    for k, v in row.items() if k.startswith("p."))


def tune_summary(res: TuneOutcome) -> str:
    """The header (strategy, window, space, trials, objective and its units) and one line per
    stage-2 point: rank, params, stage-1 score, score per stage-2 scenario, the worst."""
    m = res.meta
    obj = m["objective"]
    w = m["window"]
    lines = [
        f"tune {m['strategy_id']} on {','.join(m['symbols'])}, {w['from'] or 'first bar'} to {w['to'] or 'last bar'}",
        f"  sampler {m['sampler']}" + (f", space {m['space_size']:,} points" if m.get("space_size") else "")
        + f", {m['trials_stage1']:,} scored ({res.ran_now:,} run now), {m['invalid_points_skipped']:,} invalid skipped",
        f"  score = mean - std of {obj['name']} over {obj['splits']} splits"
        + (f" - {obj['dd_penalty']:g} x max DD fraction" if obj["dd_penalty"] else ""),
        f"  {obj['name']}: {obj['units']}",
    ]
    of = m.get("overfitting") or {}
    dsr, pbo = of.get("dsr"), of.get("pbo")
    if dsr or pbo:
        lines.append("  overfitting: " + ", ".join(
            x for x in (f"Deflated Sharpe {dsr['value']:.2f} ({dsr['n_trials']} trials)" if dsr else "",
                        f"PBO {pbo['value']:.2f} ({pbo['combinations']:,} CSCV splits)" if pbo else "") if x))
    top = res.top
    if top.empty:
        lines.append("  no point was eligible (see trials.csv, column reason): nothing went to stage 2")
        return "\n".join(line[:WIDTH] for line in lines)
    scen = m["stage2_scenarios"]
    head = f"{'#':>2}  {'stage 1':>7}" + "".join(f" {s:>7}" for s in scen) + f" {'worst':>7}  params"
    lines += ["", head]
    for row in top.to_dict("records"):
        cells = f"{row['rank']:>2}  {signed(row['stage1_score']):>7}" + "".join(
            f" {signed(row[f'score_{s}']):>7}" for s in scen) + f" {signed(row['worst_score']):>7}  "
        lines.append((cells + _point(row))[:WIDTH])
    return "\n".join(lines)
