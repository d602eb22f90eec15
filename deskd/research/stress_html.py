"""report.html of ``deskd stress``: one self-contained, offline page, like the backtest's.

The cost-sensitivity curve (expectancy in R per trade and daily Sharpe against the cost
multiple, the break-even multiple and the verdict's gate marked), the cost table, the
perturbation heatmap (per tuned param and move: the mean expectancy of the neighbours that
moved it so, the share profitable in the hover) and the histogram of the neighbours'
expectancy with the chosen point marked. Every headline number carries stress.json's value in
``data-value`` (``data-metric`` is its path). Same inputs and seed, byte-identical page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from deskd.research.montecarlo_html import MC_CSS, _hist_fig
from deskd.research.report_html import (
    BLUE,
    GREEN,
    GREY,
    RED,
    _e,
    _empty,
    _fig_html,
    _metric,
    _num,
    _pct,
    page,
)

if TYPE_CHECKING:
    from deskd.research.stress import Stress


def cost_figure(meta: dict[str, Any], gate_multiple: float | None, div_id: str = "stress-cost") -> str:
    """Expectancy (R per trade, left axis) and daily Sharpe (right axis) against the cost
    multiple, zero and the break-even multiple marked, and the verdict's minimum multiple."""
    curve = meta["cost"]["curve"]
    k = [r["multiple"] for r in curve]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=k, y=[r["expectancy_r"] for r in curve], mode="lines+markers", name="expectancy (R)",
                             line={"color": BLUE, "width": 2},
                             hovertemplate="costs x%{x}: %{y:+.4f} R per trade<extra></extra>"), secondary_y=False)
    fig.add_trace(go.Scatter(x=k, y=[r["sharpe_daily_ann"] for r in curve], mode="lines+markers",
                             name="Sharpe (daily, annualised)", line={"color": GREEN, "width": 1.5, "dash": "dot"},
                             hovertemplate="costs x%{x}: Sharpe %{y:.2f}<extra></extra>"), secondary_y=True)
    fig.add_hline(y=0, line={"color": GREY, "width": 1})
    be, cens = meta["cost"]["break_even_cost_multiple"], meta["cost"]["break_even_censored"]
    if be is not None:
        sign = {"at_or_below": "<= ", "at_or_above": ">= "}.get(cens or "", "")
        fig.add_vline(x=be, line={"color": RED, "width": 2, "dash": "dash"})
        fig.add_annotation(x=be, y=1.0, xref="x", yref="paper", text=f"break-even {sign}x{be:.2f}", showarrow=False,
                           xanchor="left", xshift=4, font={"color": RED, "size": 11})
    if gate_multiple is not None:
        fig.add_vline(x=gate_multiple, line={"color": GREY, "width": 1.5, "dash": "dot"})
        fig.add_annotation(x=gate_multiple, y=0.9, xref="x", yref="paper", text=f"gate x{gate_multiple:g}",
                           showarrow=False, xanchor="left", xshift=4, font={"color": GREY, "size": 11})
    fig.update_layout(title="Cost sensitivity: spread and slippage scaled", xaxis_title="cost multiple (x base scenario)")
    fig.update_yaxes(title_text="expectancy (R per trade)", secondary_y=False)
    fig.update_yaxes(title_text="Sharpe", secondary_y=True, showgrid=False)
    return _fig_html(fig, div_id, 400)


def heatmap_figure(meta: dict[str, Any], div_id: str = "stress-heatmap") -> str:
    """Rows: tuned params; columns: moves (integer steps, or float factors); colour: the mean
    expectancy (R) of the neighbours that moved that param so (red below 0, green above)."""
    by_move = meta["params"]["by_move"]
    if not by_move:
        return _empty("no param was moved (the space holds only choices, or no neighbour was run)")
    names = list(by_move)
    ints = sorted({m for cells in by_move.values() for m in cells if not m.startswith("x")}, key=lambda s: int(s))
    floats = sorted({m for cells in by_move.values() for m in cells if m.startswith("x")}, key=lambda s: float(s[1:]))
    cols = ints + floats
    z = [[(by_move[n].get(c) or {}).get("mean_expectancy_r") for c in cols] for n in names]
    text = [[(f"n={cell['n']}, {cell['profitable_share'] * 100:.0f} % profitable" if cell else "")
             for cell in (by_move[n].get(c) for c in cols)] for n in names]
    finite = [abs(v) for row in z for v in row if v is not None]
    span = max(finite) if finite else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=names, text=text, zmin=-span, zmax=span, zmid=0,
                               colorscale=[[0, RED], [0.5, "#f7f7f7"], [1, GREEN]],
                               colorbar={"title": "mean R"},
                               hovertemplate="%{y} moved %{x}: mean %{z:+.4f} R<br>%{text}<extra></extra>"))
    fig.update_layout(title="Param perturbation: mean expectancy of the neighbours, by param and move",
                      xaxis_title="move (integer step, or float factor)", xaxis_type="category")
    return _fig_html(fig, div_id, 120 + 40 * len(names))


def render_html(st: Stress, gate_multiple: float | None = None) -> str:
    """The page, as one string (plotly.js embedded once in its head). ``gate_multiple``: the
    verdict's minimum break-even multiple (default: the run config's verdict gate)."""
    meta, inp = st.meta, st.meta["inputs"]
    if gate_multiple is None:
        gate_multiple = st.plan.cfg.verdict.break_even_cost_multiple_min
    cost, par = meta["cost"], meta["params"]
    title = f"deskd stress: {inp['strategy_id']}, scenario {inp['scenario']}"
    files = ", ".join(f"{name} <code>{_e(sha[:16])}</code>" for name, sha in inp["files_sha256"].items())
    be, cens = cost["break_even_cost_multiple"], cost["break_even_censored"]
    sign = {"at_or_below": "&le; ", "at_or_above": "&ge; "}.get(cens or "", "")
    rows = "".join(
        f"<tr><td>x{r['multiple']:g}</td><td>{r['trades']:,}</td><td>{_num(r['expectancy_r'], 4, sign=True)}</td>"
        f"<td>{_num(r['sharpe_daily_ann'], 2)}</td><td>{_num(r['net_usd'], 0)}</td><td>{_num(r['profit_factor'], 2)}</td>"
        f"<td>{_pct(r['max_dd_frac'], 1)}</td></tr>" for r in cost["curve"])
    exp = par["expectancy_r"]
    nb = st.neighbours
    hist = (_hist_fig(nb["expectancy_r"].to_numpy(float), 1.0, "Neighbours' expectancy", "expectancy (R per trade)",
                      BLUE, [(0.0, "0", GREY)] + ([(par["chosen"]["expectancy_r"], "chosen", RED)]
                                                  if par["chosen"]["expectancy_r"] is not None else []),
                      "stress-neighbours", counted="neighbours")
            if len(nb) else _empty("no neighbour was run (--neighbours 0)"))
    windows = "".join(f"<li>{_e(w['label'])}: {_e(w['from'] or 'start')} to {_e(w['to'] or 'end')}, "
                      f"<code>{_e(', '.join(f'{k}={v}' for k, v in w['point'].items()))}</code></li>"
                      for w in inp["windows"])
    share = par["profitable_share"]
    header = f"""<div class="meta">deskd {_e(meta["deskd_version"])}, {_e(inp["kind"])} <code>{_e(inp["run_dir"])}</code>, re-run on
the {_e(inp["path"])} path; seed {_metric("", "inputs.seed", inp["seed"], str(inp["seed"]))}.
Inputs (SHA-256): {files}.</div>
<nav><a href="#stress-cost-section">cost sensitivity</a><a href="#stress-params-section">param perturbation</a></nav>"""
    body = f"""<section class="mc" id="stress-cost-section"><h2>Cost sensitivity</h2>
<p>Break-even cost multiple: <b>{sign}{_metric("", "cost.break_even_cost_multiple", be, _num(be, 2))}</b>
(expectancy at x1: {_metric("", "cost.expectancy_r_at_1x", cost["expectancy_r_at_1x"],
                            _num(cost["expectancy_r_at_1x"], 4, "R", sign=True))}).</p>
{cost_figure(meta, gate_multiple)}
<table><thead><tr><th>costs</th><th>trades</th><th>expectancy (R)</th><th>Sharpe</th><th>net (USD)</th>
<th>profit factor</th><th>max DD</th></tr></thead><tbody>{rows}</tbody></table>
<ul class="notes"><li>{_e(cost["model"])}.</li></ul>
</section>
<section class="mc" id="stress-params-section"><h2>Param perturbation</h2>
<p>{_metric("", "params.neighbours_run", par["neighbours_run"], f"{par['neighbours_run']:,}")} neighbours
(integers moved +-1..{inp["int_steps"]}, floats x(1 +- {inp["jitter_frac"]:g}); {par["draws_refused"]} draws refused
by the strategy's rules): {_metric("", "params.profitable_share", share, _pct(share, 0))} profitable; expectancy
median {_num(exp.get("p50"), 4, "R", sign=True)} (5-95 %: {_num(exp.get("p5"), 4, sign=True)} to
{_num(exp.get("p95"), 4, sign=True)}).</p>
{heatmap_figure(meta)}
{hist}
<ul class="notes"><li>Windows and chosen points:</li>{windows}</ul>
</section>"""
    return page(title, header, body, MC_CSS)
