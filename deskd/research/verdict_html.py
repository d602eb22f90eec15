"""report.html of ``deskd verdict``: the gates side by side, and the evidence behind them.

One self-contained, offline page (plotly.js embedded once). The gate table (a column per
run: value, PASS or FAIL, each carrying its value in ``data-value``); then per run its Monte
Carlo fan chart (equity percentile bands over trades, from paths.parquet), its cost-sensitivity
curve and perturbation heatmap (from stress.json), and links to the full Monte Carlo and
stress pages (histograms of max drawdown and final equity with the limits marked).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from deskd.research.montecarlo_html import MC_CSS
from deskd.research.report_html import BLUE, GREY, _e, _empty, _fig_html, _metric, page
from deskd.research.stress_html import cost_figure, heatmap_figure
from deskd.research.verdict import RunVerdict, VerdictInputError, _fmt, _read_json

VERDICT_CSS = """
td.pass{color:#1a7f37;font-weight:600} td.fail{color:#c62828;font-weight:600}
.banner.pass{background:#e6f4ea;border:1px solid #1a7f37;padding:8px 12px;border-radius:4px}
.banner.fail{background:#fdecea;border:1px solid #c62828;padding:8px 12px;border-radius:4px}
"""


def fan_from_paths(paths: pd.DataFrame, method: str, div_id: str) -> str:
    """Equity (USD) percentile bands (5-95 %, 25-75 %), median and the observed order, over the
    step of one bootstrap of paths.parquet (``method`` trades or days)."""
    p = paths[paths["method"] == method]
    if p.empty:
        return _empty(f"no {method} bootstrap in paths.parquet")
    x = p["step"].to_numpy()
    fig = go.Figure()
    for lo, hi, a, name in (("p5", "p95", 0.15, "5-95 %"), ("p25", "p75", 0.3, "25-75 %")):
        fig.add_trace(go.Scatter(x=x, y=p[f"equity_{hi}_usd"], mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=p[f"equity_{lo}_usd"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=f"rgba(44,127,184,{a})", name=name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=p["equity_p50_usd"], mode="lines", line={"color": BLUE, "width": 2},
                             name="median"))
    fig.add_trace(go.Scatter(x=x, y=p["observed_equity_usd"], mode="lines", name="observed order",
                             line={"color": "#222", "width": 1.5, "dash": "dot"}))
    unit = "trade" if method == "trades" else "day"
    fig.update_layout(title=f"Monte Carlo equity over {method} (percentile bands)", xaxis_title=f"{unit} index",
                      yaxis_title="equity (USD)")
    fig.add_hline(y=float(p["observed_equity_usd"].iloc[0]), line={"color": GREY, "width": 1})
    return _fig_html(fig, div_id, 380)


def _evidence(v: RunVerdict, k: int, out: Path) -> str:
    """A run's section: links to its pages, and the figures of the evidence its gates counted
    (the Monte Carlo and stress folders of the evidence scenario; nothing of stale files)."""
    run = Path(v.run_dir)
    mc_gate, st_gate = v.gate("p_week_breach"), v.gate("break_even_cost_multiple")
    mc_dir, st_dir = run / Path(mc_gate.source).parent, run / Path(st_gate.source).parent
    links = [f'<a href="{_e(os.path.relpath(d / "report.html", out))}">{_e(d.name)}</a>'
             for d in (mc_dir, st_dir) if (d / "report.html").is_file()]
    links.append(f'<a href="{_e(os.path.relpath(run / "report.html", out))}">walk-forward</a>')
    parts = [f'<section class="mc" id="run-{k}"><h2>{_e(v.strategy_id)}: evidence</h2>', f'<nav>{"".join(links)}</nav>']
    if mc_gate.value is None:
        parts.append(_empty(f"Monte Carlo: {mc_gate.note}"))
    else:
        try:
            parts.append(fan_from_paths(pd.read_parquet(mc_dir / "paths.parquet"), "days", f"fan-{k}"))
        except (OSError, ValueError, KeyError) as e:  # a damaged or foreign file: said, not drawn
            parts.append(_empty(f"{mc_dir / 'paths.parquet'}: cannot draw it ({type(e).__name__}: {e})"))
    if st_gate.value is None:
        parts.append(_empty(f"stress: {st_gate.note}"))
    else:
        try:
            meta = _read_json(st_dir / "stress.json")
            parts += [cost_figure(meta, st_gate.threshold, f"cost-{k}"), heatmap_figure(meta, f"heat-{k}")]
        except (VerdictInputError, KeyError, TypeError, ValueError) as e:
            parts.append(_empty(f"{st_dir / 'stress.json'}: cannot draw it ({type(e).__name__}: {e})"))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(verdicts: list[RunVerdict], out: Path) -> str:
    """The page for ``verdicts``, its links relative to ``out`` (the folder it is written to)."""
    passed = all(v.passed for v in verdicts)
    head = "".join(f"<th>{_e(v.strategy_id)}</th>" for v in verdicts)
    rows = []
    for i, g0 in enumerate(verdicts[0].gates):
        cells = []
        for k, v in enumerate(verdicts):
            g = v.gates[i]
            text = f"{_fmt(g.key, g.value)} {'PASS' if g.passed else 'FAIL'}"
            title = f' title="{_e(g.note)}"' if g.note else ""
            cells.append(f'<td class="{"pass" if g.passed else "fail"}"{title}>'
                         f'{_metric(str(k), f"gates.{g.key}", g.value, text)}</td>')
        rows.append(f"<tr><td>{_e(g0.label)}</td><td>{_e(g0.op)} {g0.threshold:g}</td>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{_e(v.strategy_id)}: {_e(g.key)}: {_e(g.note)}</li>" for v in verdicts for g in v.gates if g.note)
    verdict_line = ("every gate passes" if passed else
                    f"{sum(not g.passed for v in verdicts for g in v.gates)} gate(s) fail")
    evidence = "\n".join(_evidence(v, k, out) for k, v in enumerate(verdicts))
    header = f"""<div class="banner {"pass" if passed else "fail"}" id="verdict">{"PASS" if passed else "FAIL"}: {_e(verdict_line)}</div>"""
    body = f"""<section class="mc"><h2>Gates</h2>
<table id="gates"><thead><tr><th>gate</th><th>threshold</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
{f'<ul class="notes">{notes}</ul>' if notes else ""}
</section>
{evidence}"""
    return page("deskd verdict", header, body, MC_CSS + VERDICT_CSS)
