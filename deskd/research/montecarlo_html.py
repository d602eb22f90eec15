"""report.html of ``deskd montecarlo``: one self-contained, offline page, like the backtest's.

It reuses the backtest page's CSS and helpers (deskd.research.report_html) and embeds plotly.js
once in its head. Per bootstrap (trades, days): a fan chart of equity over the step (trade
or day index) with the 5-95 % and 25-75 % percentile bands across simulations, the median, a
few simulated paths and the observed path; histograms of the max drawdown (fraction of peak)
with the desk's limits marked and of the final equity with the starting equity and the floor
marked; the quantile table. Then the cost-noise distribution of total net P&L with the recorded
P&L and zero marked. Every headline number carries montecarlo.json's value in its
``data-value`` attribute (``data-metric`` is its path in the JSON). Two runs with the same
inputs and seed write byte-identical pages (fixed plot ids, no wall-clock time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

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
    from deskd.research.montecarlo import MonteCarlo, SimResult

HIST_BINS = 40
SHOWN_PATHS = 20
ORANGE, PURPLE = "#f28e2b", "#7b3294"
LIMIT_COLOURS = {"dd_day_limit_frac": ORANGE, "dd_week_limit_frac": RED, "max_drawdown_frac": PURPLE}

MC_CSS = """
section.mc{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 20px;margin:20px 0}
ul.notes{color:#555;font-size:12.5px;margin:6px 0 0 0;padding-left:18px}
"""


def _fmt(key: str, x: Any) -> str:
    if x is None:
        return "n/a"
    if key.endswith("_frac"):
        return _pct(x, 2)
    if key.endswith("_usd"):
        return _num(x, 0, "USD")
    if key.startswith(("dd_duration", "recovery")):
        return _num(x, 0)
    return _num(x, 3)


def _hist(values: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)] * scale
    if not len(v):
        return np.array([]), np.array([]), 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + (abs(lo) * 0.01 or 1.0)
    counts, edges = np.histogram(v, bins=HIST_BINS, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts, float(edges[1] - edges[0])


def _hist_fig(values: np.ndarray, scale: float, title: str, xtitle: str, colour: str,
              marks: list[tuple[float, str, str]], div_id: str, counted: str = "simulations") -> str:
    x, counts, width = _hist(values, scale)
    fig = go.Figure(go.Bar(x=x, y=counts, width=width, marker={"color": colour}, name=counted,
                           hovertemplate=f"%{{x}}: %{{y}} {counted}<extra></extra>"))
    for k, (at, label, c) in enumerate(marks):  # labels one under the other: limits may lie close together
        fig.add_vline(x=at, line={"color": c, "width": 2, "dash": "dash"})
        fig.add_annotation(x=at, y=1.0 - 0.08 * k, xref="x", yref="paper", text=label, showarrow=False,
                           xanchor="left", xshift=4, font={"color": c, "size": 11}, bgcolor="rgba(255,255,255,0.8)")
    ends = [*(x[[0, -1]] if len(x) else []), *(at for at, _, _ in marks)]
    pad = 0.04 * (max(ends) - min(ends) or 1.0)  # every mark inside the plot, off its edges
    fig.update_layout(title=title, xaxis_title=xtitle, yaxis_title=counted, bargap=0.02, showlegend=False,
                      xaxis_range=[min(ends) - pad - width / 2, max(ends) + pad + width / 2])
    return _fig_html(fig, div_id, 340)


def fan_figure(res: SimResult, floor_usd: float, start_usd: float, div_id: str) -> str:
    """Equity (USD) over the step: percentile bands across simulations, the median, a few
    simulated paths and the observed path."""
    x = res.steps
    q = np.percentile(res.grid, [5, 25, 50, 75, 95], axis=0)
    unit = "trade" if res.unit == "trades" else "day"
    fig = go.Figure()
    for k in range(min(SHOWN_PATHS, res.grid.shape[0])):
        fig.add_trace(go.Scatter(x=x, y=res.grid[k], mode="lines", line={"color": "rgba(120,120,120,0.25)",
                                 "width": 0.8}, name="simulated paths", legendgroup="paths",
                                 showlegend=k == 0, hoverinfo="skip"))
    band = "rgba(44,127,184,{a})"
    for lo, hi, a, name in ((0, 4, 0.15, "5-95 %"), (1, 3, 0.3, "25-75 %")):
        fig.add_trace(go.Scatter(x=x, y=q[hi], mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=q[lo], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=band.format(a=a), name=name, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=q[2], mode="lines", line={"color": BLUE, "width": 2}, name="median",
                             hovertemplate=f"{unit} %{{x}}: median %{{y:,.0f}} USD<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=res.observed_path, mode="lines", line={"color": "#222", "width": 1.5,
                             "dash": "dot"}, name="observed order",
                             hovertemplate=f"{unit} %{{x}}: %{{y:,.0f}} USD (observed)<extra></extra>"))
    fig.add_hline(y=start_usd, line={"color": GREY, "width": 1}, annotation_text="start",
                  annotation_position="bottom left")
    fig.add_hline(y=floor_usd, line={"color": RED, "width": 1.5, "dash": "dash"},
                  annotation_text=f"floor {_num(floor_usd, 0, 'USD')}", annotation_position="bottom left",
                  annotation_font={"color": RED})
    fig.update_layout(title=f"Equity over {res.unit}: {res.grid.shape[0]:,} block-bootstrap paths",
                      xaxis_title=f"{unit} index", yaxis_title="equity (USD)")
    return _fig_html(fig, div_id, 430)


def _quantile_table(r: dict[str, Any], unit: str) -> str:
    keys = ["max_dd_frac", "max_dd_usd", "final_equity_usd", "cagr_frac",
            "sharpe_r_per_trade" if unit == "trades" else "sharpe_daily_ann",
            f"dd_duration_{unit}", f"recovery_{unit}"]
    cols = ["worst_1pct", "worst_5pct", "p5", "p25", "p50", "p75", "p95", "mean"]
    labels = ["worst 1 %", "worst 5 %", "p5", "p25", "median", "p75", "p95", "mean"]
    head = "".join(f"<th>{_e(c)}</th>" for c in labels)
    rows = []
    for k in keys:
        s = r.get(k) or {}
        obs = (r.get("observed") or {}).get(k)
        tds = "".join(f"<td>{_e(_fmt(k, s.get(c)))}</td>" for c in cols)
        rows.append(f"<tr><th>{_e(k)}</th>{tds}<td>{_e(_fmt(k, obs))}</td></tr>")
    rec = (r.get(f"recovery_{unit}") or {}).get("unrecovered_frac")
    return (f'<div class="scroll"><table class="metrics"><thead><tr><th></th>{head}<th>observed order</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div><p class="note">Worst 1 % / 5 %: the 99th / '
            f"95th percentile where higher is worse (drawdowns, durations), the 1st / 5th where lower is. "
            f"recovery_{_e(unit)}: from the trough of the deepest drawdown back to its peak, over the paths that "
            f"recovered; {_e(_pct(rec, 1))} of paths never did.</p>")


def _kpi(key: str, label: str, value: Any, text: str, sub: str = "") -> str:
    s = f'<div class="sub">{_e(sub)}</div>' if sub else ""
    return (f'<div class="kpi"><div class="label">{_e(label)}</div>'
            f'{_metric("", key, value, text, "div", "value")}{s}</div>')


def sim_section(mc: MonteCarlo, res: SimResult | None, key: str, title: str, pid: str) -> str:
    """One bootstrap's section (``key``: "trades" or "daily" in montecarlo.json's results)."""
    r = mc.meta["results"][key]
    if res is None or r.get("skipped"):
        note = "; ".join(n for n in mc.meta["notes"] if n.startswith(key)) or "skipped"
        return f'<section class="mc" id="mc-{pid}"><h2>{_e(title)}</h2>{_empty(note)}</section>'
    inp = mc.meta["inputs"]
    start, floor = inp["starting_equity_usd"], inp["equity_floor_usd"]
    base = f"results.{key}"
    unit = res.unit
    dd = r["max_dd_frac"]
    kpis = [_kpi(f"{base}.p_ruin", "P(ruin)", r["p_ruin"], _pct(r["p_ruin"], 2),
                 f"equity below {_num(floor, 0, 'USD')}"),
            _kpi(f"{base}.max_dd_frac.p50", "max drawdown, median", dd["p50"], _pct(dd["p50"], 2), "of peak"),
            _kpi(f"{base}.max_dd_frac.worst_5pct", "max drawdown, worst 5 %", dd["worst_5pct"],
                 _pct(dd["worst_5pct"], 2)),
            _kpi(f"{base}.max_dd_frac.worst_1pct", "max drawdown, worst 1 %", dd["worst_1pct"],
                 _pct(dd["worst_1pct"], 2))]
    for name, v in r["p_max_dd_frac_above"].items():
        kpis.append(_kpi(f"{base}.p_max_dd_frac_above.{name}.probability",
                         f"P(max DD > {name.removesuffix('_frac').replace('_', ' ')})", v["probability"],
                         _pct(v["probability"], 1), f"limit {_pct(v['limit_frac'], 1)}"))
    wk = r.get("p_week_dd_above_week_limit")
    if wk is not None and wk.get("probability") is not None:
        kpis.append(_kpi(f"{base}.p_week_dd_above_week_limit.probability", "P(a week breaches its limit)",
                         wk["probability"], _pct(wk["probability"], 1),
                         f"of simulated weeks, limit {_pct(wk['limit_frac'], 1)} from the week's open"))
    fe = r["final_equity_usd"]
    kpis.append(_kpi(f"{base}.final_equity_usd.p50", "final equity, median", fe["p50"], _num(fe["p50"], 0, "USD")))
    marks = [(lim * 100, f"{name.removesuffix('_frac').replace('_', ' ')} {_pct(lim, 1)}",
              LIMIT_COLOURS.get(name, RED)) for name, lim in inp["limits_frac"].items()]
    dd_fig = _hist_fig(res.per_sim["max_dd_frac"], 100.0, "Max drawdown (% of peak)", "max drawdown (%)",
                       BLUE, marks, f"{pid}-dd")
    fe_fig = _hist_fig(res.per_sim["final_equity_usd"], 1.0, "Final equity (USD)", "final equity (USD)", GREEN,
                       [(start, "start", GREY), (floor, f"floor {_num(floor, 0, 'USD')}", RED)], f"{pid}-final")
    return f"""
<section class="mc" id="mc-{pid}" data-method="{_e(key)}">
<h2>{_e(title)}</h2>
<p class="note">{_e(f"{r[unit]:,}")} {_e(unit)}; block length {_e(r["block_length"])} ({_e(r["block_how"])}).</p>
<div class="kpis">{"".join(kpis)}</div>
{fan_figure(res, floor, start, f"{pid}-fan")}
<div class="grid2">{dd_fig}{fe_fig}</div>
<h3>Distributions</h3>
{_quantile_table(r, unit)}
</section>"""


def cost_section(mc: MonteCarlo) -> str:
    c = mc.meta["results"]["cost_noise"]
    if c.get("skipped") or mc.cost is None:
        return (f'<section class="mc" id="mc-cost"><h2>Cost noise</h2>'
                f'{_empty("; ".join(c.get("notes") or ["skipped"]))}</section>')
    ci = mc.meta["inputs"]["cost_noise"]
    rec = c["recorded"]["total_net_pnl_usd"]
    fig = _hist_fig(mc.cost.total_net_pnl_usd, 1.0, "Total net P&L under cost noise (USD)", "net P&L (USD)",
                    ORANGE, [(rec, "recorded", "#222"), (0.0, "0", RED)], "cost-pnl")
    t, er, eu = c["total_net_pnl_usd"], c["expectancy_r"], c["expectancy_usd"]
    kpis = [_kpi("results.cost_noise.p_net_expectancy_below_zero", "P(net expectancy < 0)",
                 c["p_net_expectancy_below_zero"], _pct(c["p_net_expectancy_below_zero"], 1)),
            _kpi("results.cost_noise.total_net_pnl_usd.p50", "net P&L, median", t["p50"], _num(t["p50"], 0, "USD"),
                 f"recorded {_num(rec, 0, 'USD')}"),
            _kpi("results.cost_noise.total_net_pnl_usd.worst_5pct", "net P&L, worst 5 %", t["worst_5pct"],
                 _num(t["worst_5pct"], 0, "USD")),
            _kpi("results.cost_noise.expectancy_r.p50", "expectancy, median", er["p50"], _num(er["p50"], 4, "R"),
                 f"recorded {_num(c['recorded']['expectancy_r'], 4, 'R')}"),
            _kpi("results.cost_noise.expectancy_usd.p50", "expectancy, median", eu["p50"], _num(eu["p50"], 2, "USD"))]
    notes = "".join(f"<li>{_e(n)}</li>" for n in c["notes"])
    return f"""
<section class="mc" id="mc-cost">
<h2>Cost noise</h2>
<p class="note">The trades as recorded; per trade a spread multiplier from U({_e(ci["spread_mult_range"][0])},
{_e(ci["spread_mult_range"][1])}) on both sides' spread and a slippage multiplier from
U({_e(ci["slippage_mult_range"][0])}, {_e(ci["slippage_mult_range"][1])}) on both sides' slippage; a fill without
the spike multiplier gets it (x{_e(ci["spike_mult"])}) with probability {_e(ci["spike_prob"])}.
{_e(c["trades_noised"])} trades noised, {_e(c["trades_skipped_cross"])} cross-pair trades kept their costs.</p>
<div class="kpis">{"".join(kpis)}</div>
{fig}
{f'<ul class="notes">{notes}</ul>' if notes else ""}
</section>"""


def render_html(mc: MonteCarlo) -> str:
    """The page, as one string (plotly.js embedded once in its head)."""
    meta, inp = mc.meta, mc.meta["inputs"]
    title = f"deskd Monte Carlo: {inp['kind']} scenario {inp['scenario']}"
    files = ", ".join(f"{name} <code>{_e(sha[:16])}</code>" for name, sha in inp["files_sha256"].items())
    notes = "".join(f"<li>{_e(n)}</li>" for n in meta["notes"])
    model = meta["model"]
    header = f"""<div class="meta">deskd {_e(meta["deskd_version"])}, run <code>{_e(inp["run_dir"])}</code>;
{_metric("", "inputs.sims", inp["sims"], f"{inp['sims']:,}")} simulations, seed
{_metric("", "inputs.seed", inp["seed"], str(inp["seed"]))}, {_e(model["bootstrap"])}; starting equity
{_metric("", "inputs.starting_equity_usd", inp["starting_equity_usd"], _num(inp["starting_equity_usd"], 2, "USD"))},
r_base {_e(inp["r_base"])}. Inputs (SHA-256): {files}.</div>
<nav><a href="#mc-trades">trade bootstrap</a><a href="#mc-days">daily bootstrap</a><a href="#mc-cost">cost noise</a></nav>
{f'<ul class="notes">{notes}</ul>' if notes else ""}"""
    body = f"""{sim_section(mc, mc.trades, "trades", "Trade bootstrap: R-multiples compounded at r_base", "trades")}
{sim_section(mc, mc.daily, "daily", "Daily bootstrap: day-on-day returns compounded", "days")}
{cost_section(mc)}
<section class="mc"><h2>Model</h2><ul class="notes">
<li>Trades: {_e(model["trades"])}. Durations in trades.</li>
<li>Daily: {_e(model["daily"])}. Durations in days; Sharpe annualised by sqrt(252).</li>
<li>P(max DD &gt; the day or week limit) compares each path's deepest fall from its peak with those limits, which
the desk applies within a day or a week: a conservative proxy.</li>
</ul></section>"""
    return page(title, header, body, MC_CSS)
