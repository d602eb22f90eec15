"""report.html of a ``deskd tune`` or ``deskd walkforward`` output folder: one self-contained,
offline page each, drawn only from the files the command wrote.

Tune folder (:func:`write_tune_html`): tune.json (the metadata and the overfitting statistics),
trials.parquet or trials.csv (stage 1, ranked), stage2.parquet or stage2.csv, top_k.csv,
equity_top_k.csv and invalid.csv. The page: what was searched and how it was scored; the
Deflated Sharpe Ratio and the Probability of Backtest Overfitting, said in words with the
thresholds a desk wants; the stage-2 ranking (score per scenario, the worst, the params); the
distribution of the stage-1 scores; a parallel-coordinates plot of every scored stage-1 trial;
score surfaces for the pairs of the first params that vary (each cell the best score over the
other params); each top-k point's score per split; the top k's equity curves per scenario.

Walk-forward folder (:func:`write_walkforward_html`): walkforward.json (the split spec, every
split's windows, choice and in-/out-of-sample numbers, parameter stability, the out-of-sample
totals), oos_equity.csv, and each split's tune folder splits/NN/ (its tune.json for the
objective and the search ranges; its own report.html is built there when missing or older than
its tune.json, and linked).

Units: scores in the objective's units (tune.json's ``objective.units``), expectancy in R per
trade, money in USD, drawdown as a fraction of the peak, times UTC. Every number the pages quote
is the file's value as it is (carried in ``data-value`` as JSON, for tests and scripts); plots
of many trials are aggregated or capped (``PARCOORDS_MAX`` lines, surfaces binned to at most
``SURFACE_BINS`` cells a side), so a tune of thousands of trials opens as quickly as a small
one. The page embeds plotly.js once and loads nothing from the network; the CSS, the figure
embedding and the formats are :mod:`deskd.research.report_html`'s. Two builds from the same
folder are byte-identical (fixed plot ids, no wall-clock time).

``python -m deskd.research.tuning.report DIR`` (re)builds DIR/report.html of either folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
from plotly.subplots import make_subplots

from deskd.research import report_html as rh
from deskd.research.report_html import (
    BLUE,
    GREEN,
    GREY,
    RED,
    _e,
    _empty,
    _fig_html,
    _int,
    _num,
    _pct,
    page,
)

#: the parallel-coordinates plot draws at most this many trials: the best PARCOORDS_BEST
#: always, the rest a sample with a fixed seed
PARCOORDS_MAX = 2000
PARCOORDS_BEST = 500
#: a score-surface axis with more distinct values than this is cut into SURFACE_BINS equal bins
SURFACE_MAX_VALUES = 40
SURFACE_BINS = 30
#: score surfaces for every pair of the first this many params that vary
SURFACE_PARAMS = 3
#: stage-1 score histogram: bins
SCORE_BINS = 40
#: what a desk wants of the chosen point (Bailey & Lopez de Prado 2014; Bailey et al. 2015)
DSR_WANTED = 0.95
PBO_WANTED = 0.5
#: invalid points listed by name (the rest counted per reason)
INVALID_LISTED = 20
#: a colour per top-k rank (cycled) and per scenario (cycled)
RANK_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
SCENARIO_COLORS = [BLUE, "#f28e2b", RED, GREEN, "#b07aa1", "#76b7b2"]
SCORE_SCALE = "RdYlGn"  # red: low score, green: high

TUNE_FILES = "tune.json, trials.parquet or trials.csv, stage2.parquet or stage2.csv, top_k.csv, " \
             "equity_top_k.csv, invalid.csv"
WALKFORWARD_FILES = "walkforward.json, oos_equity.csv, splits/NN/"

#: the short unit of each objective, after a score (tune.json's objective.units says it in full)
_SHORT_UNIT = {"expectancy_r": "R", "net_usd": "USD", "sharpe_r": "", "profit_factor": ""}
_SPAN_UNITS = {"Y": "year", "M": "month", "W": "week", "D": "day", "H": "hour"}

EXTRA_CSS = """
section.block{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px 20px;margin:20px 0}
.grid3{display:grid;grid-template-columns:repeat(3,1fr);gap:12px;align-items:start}
.stat{background:#f3f5f8;border-radius:4px;padding:10px 14px}
.stat .big{font-size:26px;font-weight:700} .stat dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;
font-size:12.5px;margin:8px 0} .stat dt{color:#555} .stat dd{margin:0;text-align:right}
.verdict{display:inline-block;font-size:12px;font-weight:600;padding:2px 8px;border-radius:3px;margin-left:10px;
vertical-align:middle} .verdict.pass{background:#e6f4ea;color:#1a7f37} .verdict.fail{background:#fdecea;color:#c62828}
.verdict.none{background:#eee;color:#555}
.cite{color:#555;font-size:11.5px} tr.best td,tr.best th{font-weight:700;background:#fbfbe9}
td.worst{border-left:1px solid #ccc;border-right:1px solid #ccc} table.wide thead th{text-align:center}
td.left,th.left{text-align:left} .meta code{font-size:12px} details{margin:6px 0;font-size:12.5px}
.stat p{font-size:13px;margin:6px 0} tr.split-start>*{border-top:2px solid #ccd} .stat h3{margin-top:4px}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr) max-content minmax(0,1fr);gap:3px 16px;
font-size:12.5px;margin:10px 0;background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 16px}
dl.facts dt{color:#555} dl.facts dd{margin:0}
"""


class ReportInputError(rh.ReportInputError):
    """A folder the page cannot be built from (not a tune's or a walk-forward's output, or one
    of its files unreadable); the message names the file."""


# ---------------------------------------------------------------------------------------- reading

def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportInputError(f"{path}: missing: not a {what} output folder") from None
    except (OSError, ValueError) as e:
        raise ReportInputError(f"{path}: cannot read it: {e}") from None
    if not isinstance(d, dict):
        raise ReportInputError(f"{path}: not a JSON object")
    return d


def _read_table(folder: Path, name: str, what: str, files: str, parquet: bool = False,
                need: Sequence[str] = ()) -> pd.DataFrame:
    """``name``.parquet when ``parquet`` and it exists, else ``name``.csv; a file without a row
    (an empty tune's) is an empty frame. Raises ReportInputError naming the file when it is
    missing, unreadable, or lacks a column of ``need`` (while it has rows)."""
    path = folder / f"{name}.parquet" if parquet and (folder / f"{name}.parquet").exists() else folder / f"{name}.csv"
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except FileNotFoundError:
        raise ReportInputError(f"{path}: missing: not a {what} output folder (it holds {files})") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(need))
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ReportInputError(f"{path}: cannot read it: {e}") from None
    missing = [c for c in need if c not in df.columns]
    if missing and len(df):
        raise ReportInputError(f"{path}: no column {', '.join(missing)}")
    return df


def _parse_times(df: pd.DataFrame, path: Path, col: str = "time") -> pd.DataFrame:
    try:
        df[col] = pd.to_datetime(df[col], format=rh.TIME_FORMAT)
    except (ValueError, TypeError) as e:
        raise ReportInputError(f"{path}: column {col}: not ISO 8601 UTC times: {e}") from None
    return df


@dataclass
class TuneData:
    """A tune folder's outputs. ``meta``: tune.json. ``trials``: stage 1, one row per trial in
    the file's (ranked) order: rank, trial, status, score (objective units, NaN: ineligible),
    split_1..n, trades_split_1..n, trades, net_usd (USD), max_dd_frac (fraction), reason,
    p.<param>. ``stage2``: the same columns, one row per top-k point and scenario. ``top``:
    top_k.csv. ``equity``: equity_top_k.csv (rank, trial, scenario, time datetime64 naive
    UTC, equity_usd). ``invalid``: invalid.csv (point as JSON, reason)."""

    folder: Path
    meta: dict[str, Any]
    trials: pd.DataFrame
    stage2: pd.DataFrame
    top: pd.DataFrame
    equity: pd.DataFrame
    invalid: pd.DataFrame

    @property
    def params(self) -> list[str]:
        """The tuned params: tune.json's space order, then any other p.<name> column."""
        cols = [c[2:] for c in self.trials.columns if c.startswith("p.")]
        return [p for p in (self.meta.get("space") or {}) if p in cols] + [
            p for p in cols if p not in (self.meta.get("space") or {})]

    @property
    def scenarios(self) -> list[str]:
        """Stage 2's scenarios, in tune.json's order."""
        sc = self.meta.get("stage2_scenarios")
        if isinstance(sc, list) and sc:
            return [str(s) for s in sc]
        return [c[6:] for c in self.top.columns if c.startswith("score_")]

    @property
    def objective(self) -> dict[str, Any]:
        return self.meta.get("objective") or {}

    @property
    def unit(self) -> str:
        """The score's short unit (R, USD, or empty)."""
        return _SHORT_UNIT.get(str(self.objective.get("name")), "")

    def scored(self) -> pd.DataFrame:
        """The stage-1 trials that ran and got a score, in rank order."""
        t = self.trials
        if t.empty:
            return t
        score = pd.to_numeric(t["score"], errors="coerce")
        return t[np.isfinite(score.to_numpy(float)) & (t["status"].astype(str) == "ok")]


def load_tune(folder: Path) -> TuneData:
    """Read a ``deskd tune`` output folder. Raises ReportInputError (naming the file) when a
    file is missing or unreadable."""
    what, files = "deskd tune", TUNE_FILES
    meta = _read_json(folder / "tune.json", what)
    trials = _read_table(folder, "trials", what, files, parquet=True, need=("trial", "status", "score"))
    stage2 = _read_table(folder, "stage2", what, files, parquet=True, need=("trial", "scenario", "score"))
    top = _read_table(folder, "top_k", what, files, need=("rank", "trial", "worst_score"))
    equity = _read_table(folder, "equity_top_k", what, files,
                         need=("rank", "trial", "scenario", "time", "equity_usd"))
    invalid = _read_table(folder, "invalid", what, files, need=("point", "reason"))
    if len(equity):
        equity = _parse_times(equity, folder / "equity_top_k.csv")
    for df in (trials, stage2):
        if "score" in df:
            df["score"] = pd.to_numeric(df["score"], errors="coerce").astype(float)
    return TuneData(folder, meta, trials, stage2, top, equity, invalid)


@dataclass
class SplitTune:
    """One walk-forward split's tune folder: its tune.json (None when unreadable, with
    ``note``) and its page (``page``: the path relative to the walk-forward folder, None when
    there is none)."""

    number: int
    folder: Path
    meta: dict[str, Any] | None = None
    page: str | None = None
    note: str = ""


@dataclass
class WalkForwardData:
    """A walk-forward folder's outputs. ``meta``: walkforward.json. ``equity``: oos_equity.csv
    (scenario, split, time datetime64 naive UTC, kind DAY/END, equity_usd). ``tunes``: each
    split's tune folder, by split number."""

    folder: Path
    meta: dict[str, Any]
    equity: pd.DataFrame
    tunes: dict[int, SplitTune] = field(default_factory=dict)

    @property
    def splits(self) -> list[dict[str, Any]]:
        return [s for s in self.meta.get("splits") or [] if isinstance(s, dict)]

    @property
    def scenarios(self) -> list[str]:
        return [str(s) for s in self.meta.get("scenarios") or []]

    @property
    def params(self) -> list[str]:
        names: list[str] = []
        for s in self.splits:
            names += [k[2:] for k in s if k.startswith("p.") and k[2:] not in names]
        stab = list(self.meta.get("parameter_stability") or {})
        return [p for p in stab if p in names] + [p for p in names if p not in stab]

    def objective(self) -> dict[str, Any]:
        """The objective of the splits' tunes (the first readable tune.json's)."""
        for t in self.tunes.values():
            if t.meta and t.meta.get("objective"):
                return dict(t.meta["objective"])
        return {}

    def space(self) -> dict[str, Any]:
        for t in self.tunes.values():
            if t.meta and t.meta.get("space"):
                return dict(t.meta["space"])
        return {}


def load_walkforward(folder: Path) -> WalkForwardData:
    """Read a ``deskd walkforward`` output folder (walkforward.json, oos_equity.csv, each
    split's tune.json). Raises ReportInputError (naming the file) when walkforward.json or
    oos_equity.csv is missing or unreadable; a split's unreadable tune.json only leaves its
    link out (``SplitTune.note`` says why)."""
    what = "deskd walkforward"
    meta = _read_json(folder / "walkforward.json", what)
    if not isinstance(meta.get("splits"), list):
        raise ReportInputError(f"{folder / 'walkforward.json'}: no 'splits' list in it")
    equity = _read_table(folder, "oos_equity", what, WALKFORWARD_FILES,
                         need=("scenario", "split", "time", "kind", "equity_usd"))
    if len(equity):
        equity = _parse_times(equity, folder / "oos_equity.csv")
        equity["scenario"] = equity["scenario"].astype(str)
    data = WalkForwardData(folder, meta, equity)
    for s in data.splits:
        n = int(s.get("split", 0))
        t = SplitTune(n, folder / "splits" / f"{n:02d}")
        try:
            t.meta = _read_json(t.folder / "tune.json", "deskd tune")
        except ReportInputError as e:
            t.note = str(e)
        data.tunes[n] = t
    return data


# ------------------------------------------------------------------------------------- formatting

def _py(v: Any) -> Any:
    """A JSON-ready scalar: numpy scalars as Python numbers, NaN/inf as None."""
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _tagged(tag: str, text: str, value: Any = None, cls: str = "", rowspan: int = 1, **data: Any) -> str:
    """``<tag data-<k>="v" ... data-value="JSON">text</tag>``: a number the page shows with the
    file's value beside it, for tests and scripts (``data`` keys: metric, rank, split, scenario)."""
    attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in data.items())
    c = f' class="{cls}"' if cls else ""
    r = f' rowspan="{rowspan}"' if rowspan > 1 else ""
    return f'<{tag}{c}{r}{attrs} data-value="{_e(json.dumps(_py(value)))}">{_e(text)}</{tag}>'


def _sign(x: Any) -> str:
    return rh._sign_class(_py(x))


def _score(x: Any, unit: str = "") -> str:
    return _num(_py(x), 4, unit, True)


def _param(v: Any) -> str:
    v = _py(v)
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _hm(iso: Any) -> str:
    """``2026-01-15T12:15:00Z`` -> ``2026-01-15 12:15``."""
    return str(iso)[:16].replace("T", " ") if iso else "n/a"


def _span_s(s: Any) -> str:
    """A duration in seconds in words: days, hours, minutes or seconds."""
    if not isinstance(s, int | float) or not math.isfinite(s):
        return "n/a"
    s = int(s)
    for unit, n in (("day", 86_400), ("h", 3600), ("min", 60)):
        if s and s % n == 0:
            k = s // n
            return f"{k:,} {unit}s" if unit == "day" and k != 1 else f"{k:,} {unit}"
    return f"{s:,} s"


def _span(text: Any) -> str:
    """A walk-forward span (``12M``, ``1D``) in words."""
    m = re.fullmatch(r"\s*(\d+)\s*([YMWDH])\s*", str(text))
    if not m:
        return str(text)
    k, unit = int(m.group(1)), _SPAN_UNITS[m.group(2)]
    return f"{k} {unit}{'' if k == 1 else 's'}"


def _space_text(d: Any) -> str:
    """One dimension of tune.json's space: ``5 to 40 step 5`` or ``one of 3, 5``."""
    if not isinstance(d, dict):
        return str(d)
    if "choices" in d:
        return "one of " + ", ".join(_param(v) for v in d["choices"])
    step = f" step {_param(d['step'])}" if d.get("step") is not None else ""
    return f"{_param(d.get('low'))} to {_param(d.get('high'))}{step}"


def _space_count(d: Any) -> int | None:
    if not isinstance(d, dict):
        return None
    if "choices" in d:
        return len(d["choices"])
    try:
        return int(math.floor((float(d["high"]) - float(d["low"])) / float(d["step"]) + 1e-9)) + 1
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _verdict(ok: bool | None, yes: str, no: str) -> str:
    if ok is None:
        return '<span class="verdict none">not computed</span>'
    return f'<span class="verdict {"pass" if ok else "fail"}">{_e(yes if ok else no)}</span>'


def _is_numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


def _page(title: str, meta_html: str, nav: list[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t in nav)
    return page(title, f'<div class="meta">{meta_html}</div>\n<nav>{links}</nav>', body, EXTRA_CSS)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section class="block" id="{_e(anchor)}"><h2>{_e(title)}</h2>{body}</section>'


def _facts(rows: list[tuple[str, str]]) -> str:
    """Label / value pairs, two to a line (values already HTML)."""
    return '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it (created with
    the usual permissions), renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------------ tune: HTML

def _tune_window(m: dict[str, Any]) -> str:
    w = m.get("window") or {}
    edges = m.get("split_edges") or []
    a = w.get("from") or (edges[0] if edges else None)
    b = w.get("to") or (edges[-1] if edges else None)
    src = "" if w.get("from") or w.get("to") else " (the data's first bar to past its last)"
    return f"{_hm(a)} to {_hm(b)} UTC{src}"


def _tune_header(d: TuneData) -> tuple[str, str]:
    m = d.meta
    syms = ", ".join(m.get("symbols") or [])
    title = f"deskd tune: {m.get('strategy_id', '')} on {syms}"
    cls = f"; {m['strategy_class']}" if m.get("strategy_class") else ""
    meta = (f"deskd {_e(m.get('deskd_version', ''))}, Optuna {_e(m.get('optuna_version', ''))}{_e(cls)}. "
            f"Times UTC; scores in the objective's units "
            f"({_e(d.objective.get('units', ''))}), money in USD, drawdown as a fraction of peak equity. "
            f"Drawn from this folder's tune.json, trials, stage2, top_k.csv, equity_top_k.csv and invalid.csv.")
    return title, meta


def _counts(d: TuneData) -> dict[str, int]:
    t = d.trials
    status = t["status"].astype(str) if len(t) else pd.Series([], dtype=str)
    scored = len(d.scored())
    return {"rows": len(t), "scored": scored, "errors": int((status == "error").sum()),
            "ineligible": int(((status == "ok").sum()) - scored)}


def _tune_facts(d: TuneData) -> str:
    """The header's facts: what was tuned, on what, how it was scored, the data's hashes."""
    m, obj, c = d.meta, d.objective, _counts(d)
    size = m.get("space_size")
    edges = m.get("split_edges") or []
    splits = "<br>".join(_e(f"{i + 1}: {_hm(a)} to {_hm(b)}") for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])))
    data = "<br>".join(f'{_e(s)} <code title="{_e(v.get("sha256", ""))}">{_e(str(v.get("sha256", ""))[:16])}</code>'
                       for s, v in (m.get("data") or {}).items() if isinstance(v, dict))
    penalty = (f" - {_num(obj.get('dd_penalty'), 2)} x max_dd_frac" if obj.get("dd_penalty") else "")
    rows = [
        ("strategy", _e(m.get("strategy_id", ""))),
        ("symbols", _e(", ".join(m.get("symbols") or []))),
        ("window", _e(_tune_window(m))),
        ("sampler", _e(f"{m.get('sampler', '')}, seed {m.get('seed', 'n/a')}")),
        ("space size", _tagged("span", f"{size:,} points" if isinstance(size, int) else
                               "n/a (TPE samples the ranges)", size, metric="space_size")),
        ("trials scored (stage 1)", _tagged("span", f"{_int(m.get('trials_stage1'))}", m.get("trials_stage1"),
                                            metric="trials_stage1")),
        ("of which", _e(f"{c['scored']:,} with a score, {c['ineligible']:,} ineligible, {c['errors']:,} failed")),
        ("invalid points skipped", _tagged("span", _int(m.get("invalid_points_skipped")),
                                           m.get("invalid_points_skipped"), metric="invalid_points_skipped")),
        ("objective", _e(f"{obj.get('name', '')}: {obj.get('units', '')}")),
        ("score", _e(f"mean - std (ddof 1) of the {obj.get('splits', '?')} per-split values{penalty}")),
        ("score formula (tune.json)", _e(obj.get("score", ""))),
        ("eligible when", _e(f"at least {obj.get('min_trades_per_split', '?')} trades in every split")),
        ("drawdown penalty", _e(f"{_num(obj.get('dd_penalty'), 2)} x max drawdown (fraction of peak)")),
        ("profit factor cap", _e(_num(obj.get("pf_cap"), 2))),
        ("stage 1", _e(f"every point under scenario {m.get('stage1_scenario', '?')}")),
        ("stage 2", _e(f"top {m.get('top_k', '?')} under {', '.join(d.scenarios)}, event path, "
                       f"ranked by the worst scenario")),
        ("splits (UTC)", splits or "n/a"),
        ("data SHA-256", data or "n/a"),
        ("config SHA-256", f'<code>{_e(str(m.get("config_sha256", ""))[:16])}</code>'),
        ("study", _e((m.get("study") or {}).get("name", ""))),
    ]
    return _facts(rows)


def _search_block(d: TuneData) -> str:
    m = d.meta
    space_rows = "".join(
        f"<tr><th>{_e(p)}</th><td class=\"left\">{_e(_space_text(v))}</td><td>{_int(_space_count(v))}</td>"
        f"<td>{_int(d.trials[f'p.{p}'].nunique()) if f'p.{p}' in d.trials else 'n/a'}</td></tr>"
        for p, v in (m.get("space") or {}).items())
    space = (f'<h3>Search space</h3><table class="metrics"><thead><tr><th>param</th><th class="left">values</th>'
             f'<th>values in the space</th><th>values tried (stage 1)</th></tr></thead><tbody>{space_rows}'
             f'</tbody></table>')
    return _section("search", "Search space, and the points left out", space + _invalid_block(d))


def _invalid_block(d: TuneData) -> str:
    inv = d.invalid
    parts = []
    if len(inv):
        counts = inv["reason"].astype(str).value_counts()
        rows = "".join(f'<tr><td class="left">{_e(r)}</td><td>{n:,}</td></tr>' for r, n in counts.items())
        listed = "".join(f"<li><code>{_e(p)}</code>: {_e(r)}</li>"
                         for p, r in zip(inv["point"].head(INVALID_LISTED), inv["reason"].head(INVALID_LISTED)))
        more = f" (the first {INVALID_LISTED} of {len(inv):,})" if len(inv) > INVALID_LISTED else ""
        parts.append(f'<h4>Invalid points: skipped, never run (invalid.csv)</h4><table class="metrics"><thead><tr>'
                     f'<th class="left">reason</th><th>points</th></tr></thead><tbody>{rows}</tbody></table>'
                     f"<details><summary>the points{more}</summary><ul>{listed}</ul></details>")
    t = d.trials
    if len(t):
        bad = t[~t.index.isin(d.scored().index)]
        if len(bad):
            why = (bad["status"].astype(str) + ": " + bad.get("reason", pd.Series("", index=bad.index))
                   .fillna("").astype(str)).value_counts()
            rows = "".join(f'<tr><td class="left">{_e(r)}</td><td>{n:,}</td></tr>' for r, n in why.items())
            parts.append(f'<h4>Ran without a score (ranked last in trials.csv)</h4><table class="metrics"><thead>'
                         f'<tr><th class="left">status: reason</th><th>trials</th></tr></thead><tbody>{rows}'
                         f"</tbody></table>")
    return "".join(parts)


def _kpis(d: TuneData) -> str:
    best = d.meta.get("best") or {}
    of = d.meta.get("overfitting") or {}
    dsr, pbo = of.get("dsr") or {}, of.get("pbo") or {}
    c = _counts(d)
    cards = [
        ("best_worst_score", "best point: worst-scenario score", best.get("worst_score"),
         _score(best.get("worst_score"), d.unit)),
        ("best_stage1_score", "best point: stage-1 score", best.get("stage1_score"),
         _score(best.get("stage1_score"), d.unit)),
        ("dsr", "Deflated Sharpe Ratio", dsr.get("value"), _num(dsr.get("value"), 4)),
        ("pbo", "PBO", pbo.get("value"), _num(pbo.get("value"), 4)),
        ("scored", "stage-1 trials with a score", c["scored"], _int(c["scored"])),
        ("ineligible", "ineligible or failed", c["ineligible"] + c["errors"], _int(c["ineligible"] + c["errors"])),
    ]
    out = "".join(f'<div class="kpi"><div class="label">{_e(label)}</div>'
                  f'{_tagged("div", text, v, "value " + _sign(v) if k.startswith("best") else "value", metric=k)}'
                  f"</div>" for k, label, v, text in cards)
    params = ", ".join(f"{k[2:]} = {_param(v)}" for k, v in best.items() if k.startswith("p."))
    line = (f'<p class="note">The chosen point: rank 1 of stage 2, trial {_int(_py(best.get("trial")))}: '
            f"{_e(params)}.</p>" if best else '<p class="note">No point was eligible: nothing went to stage 2.</p>')
    return f'<div class="kpis">{out}</div>{line}'


def _dsr_card(of: dict[str, Any]) -> str:
    dsr = of.get("dsr")
    cite = ('Bailey &amp; Lopez de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias, '
            'Backtest Overfitting and Non-Normality", J. Portfolio Management 40(5), 94-107; the PSR of Bailey '
            '&amp; Lopez de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. Risk 15(2), sec. 3.')
    words = (f"The probability that the chosen point's true Sharpe ratio is above the Sharpe ratio the best of "
             f"the trials would show by luck alone (SR0, the expected maximum of that many skill-less trials, "
             f"from the variance of their Sharpe ratios), given the track record's length, skew and kurtosis. "
             f"A desk wants DSR &gt; {DSR_WANTED:g}: below it, the best backtest is not distinguishable from "
             f"the luck of trying many points.")
    if not dsr:
        note = of.get("dsr_note") or of.get("note") or "not computed"
        return (f'<div class="stat"><h3>Deflated Sharpe Ratio {_verdict(None, "", "")}</h3>'
                f'{_tagged("div", "n/a", None, "big", metric="dsr")}<p class="note">{_e(note)}</p>'
                f'<p>{words}</p><p class="cite">{cite}</p></div>')
    v = dsr.get("value")
    ok = v > DSR_WANTED if isinstance(v, int | float) else None
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{x}</dd>" for k, x in (
        ("trials (N)", _tagged("span", _int(dsr.get("n_trials")), dsr.get("n_trials"), metric="dsr_n_trials")),
        ("days of returns (T)", _e(_int(dsr.get("n_days")))),
        ("chosen point's daily Sharpe", _e(_num(dsr.get("sharpe_daily"), 4))),
        ("SR0 (best of N by luck), daily", _e(_num(dsr.get("sr0_daily"), 4))),
        ("PSR against 0", _e(_num(dsr.get("psr"), 4))),
        ("skew, kurtosis (not excess)", _e(f"{_num(dsr.get('skew'), 3)}, {_num(dsr.get('kurtosis'), 3)}"))))
    return (f'<div class="stat"><h3>Deflated Sharpe Ratio '
            f'{_verdict(ok, f"above {DSR_WANTED:g}", f"not above {DSR_WANTED:g}")}</h3>'
            f'{_tagged("div", _num(v, 4), v, "big", metric="dsr")}<dl>{dl}</dl><p>{words}</p>'
            f'<p class="note">Returns: {_e(of.get("returns", "daily"))}; Sharpe ratios per day, not annualised.</p>'
            f'<p class="cite">{cite}</p></div>')


def _pbo_card(of: dict[str, Any]) -> str:
    pbo = of.get("pbo")
    cite = ('Bailey, Borwein, Lopez de Prado &amp; Zhu, "The Probability of Backtest Overfitting", '
            "J. Computational Finance 20(4) (SSRN 2326253, revised 2015), sec. 2.")
    words = (f"Combinatorially symmetric cross-validation: the days are cut into S blocks and every choice of half "
             f"of them is an in-sample set, the other half its out-of-sample. PBO is the share of those splits "
             f"in which the trial best in-sample ranks at or below the median out-of-sample. A desk wants "
             f"PBO &lt; {PBO_WANTED:g}, the lower the better: at 0.5 or above, picking the best backtest does no "
             f"better than picking at random.")
    if not pbo:
        note = of.get("pbo_note") or of.get("note") or "not computed"
        return (f'<div class="stat"><h3>Probability of Backtest Overfitting {_verdict(None, "", "")}</h3>'
                f'{_tagged("div", "n/a", None, "big", metric="pbo")}<p class="note">{_e(note)}</p>'
                f'<p>{words}</p><p class="cite">{cite}</p></div>')
    v = pbo.get("value")
    ok = v < PBO_WANTED if isinstance(v, int | float) else None
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{x}</dd>" for k, x in (
        ("combinations C(S, S/2)", _tagged("span", _int(pbo.get("combinations")), pbo.get("combinations"),
                                           metric="pbo_combinations")),
        ("blocks (S)", _e(_int(pbo.get("n_splits")))),
        ("probability the IS best loses OOS", _e(_num(pbo.get("prob_loss"), 4))),
        ("degradation slope (OOS on IS Sharpe)", _e(_num(pbo.get("degradation_slope"), 4))),
        ("days dropped (remainder)", _e(_int(pbo.get("dropped_days"))))))
    return (f'<div class="stat"><h3>Probability of Backtest Overfitting '
            f'{_verdict(ok, f"below {PBO_WANTED:g}", f"not below {PBO_WANTED:g}")}</h3>'
            f'{_tagged("div", _num(v, 4), v, "big", metric="pbo")}<dl>{dl}</dl><p>{words}</p>'
            f'<p class="note">Over {_int(of.get("trials"))} stage-1 trials x {_int(of.get("days"))} days of daily '
            f"returns.</p><p class=\"cite\">{cite}</p></div>")


def _overfitting_block(d: TuneData) -> str:
    of = d.meta.get("overfitting") or {}
    return _section("overfitting", "Is the best point luck?",
                    f'<div class="grid2">{_dsr_card(of)}{_pbo_card(of)}</div>')


def _topk_table(d: TuneData) -> str:
    top = d.top
    if top.empty:
        return _empty("top_k.csv holds no point: no stage-1 point was eligible, nothing went to stage 2.")
    params, scen, u = [p for p in d.params if f"p.{p}" in top], d.scenarios, d.unit
    head1 = ('<th rowspan="2">rank</th><th rowspan="2">trial</th>'
             + (f'<th colspan="{len(params)}">params</th>' if params else "")
             + f'<th rowspan="2">stage-1 score ({_e(u or "score")})</th>'
             + "".join(f'<th colspan="4">scenario {_e(s)}</th>' for s in scen)
             + f'<th rowspan="2">worst score ({_e(u or "score")})</th>')
    head2 = "".join(f"<th>{_e(p)}</th>" for p in params) + "".join(
        f"<th>score ({_e(u or 'score')})</th><th>trades</th><th>net (USD)</th><th>max DD (of peak)</th>"
        for _ in scen)
    rows = []
    for r in top.to_dict("records"):
        rank = _py(r["rank"])
        cells = [_tagged("td", _param(r[f"p.{p}"]), r[f"p.{p}"], rank=rank, metric=f"p.{p}") for p in params]
        cells.append(_tagged("td", _score(r.get("stage1_score")), r.get("stage1_score"),
                             _sign(r.get("stage1_score")), rank=rank, metric="stage1_score"))
        for s in scen:
            v = r.get(f"score_{s}")
            cells += [_tagged("td", _score(v), v, _sign(v), rank=rank, scenario=s, metric="score"),
                      _tagged("td", _int(_py(r.get(f"trades_{s}"))), r.get(f"trades_{s}"), rank=rank, scenario=s,
                              metric="trades"),
                      _tagged("td", _num(_py(r.get(f"net_usd_{s}")), 2), r.get(f"net_usd_{s}"),
                              _sign(r.get(f"net_usd_{s}")), rank=rank, scenario=s, metric="net_usd"),
                      _tagged("td", _pct(_py(r.get(f"max_dd_frac_{s}")), 1), r.get(f"max_dd_frac_{s}"),
                              rank=rank, scenario=s, metric="max_dd_frac")]
        w = r.get("worst_score")
        cells.append(_tagged("td", _score(w), w, f"worst {_sign(w)}".strip(), rank=rank, metric="worst_score"))
        cls = ' class="best"' if rank == 1 else ""
        rows.append(f"<tr{cls}><th>{_int(rank)}</th><td>{_int(_py(r['trial']))}</td>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="metrics wide topk"><thead><tr>{head1}</tr><tr>{head2}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div><p class="note">Stage 2 re-ran the stage-1 top '
            f"{len(top)} through the event path under each scenario and ranks them by the worst scenario's "
            f"score (top_k.csv); rank 1 is the chosen point. Scores in {_e(d.objective.get('units', ''))}.</p>")


# --------------------------------------------------------------------------------- tune: figures

def score_histogram_figure(d: TuneData, div_id: str) -> str:
    """The stage-1 scores of every scored trial (binned here: one bar per bin), the chosen
    point's stage-1 score marked."""
    s = d.scored()
    if s.empty:
        return _empty("No stage-1 trial got a score: no score distribution.")
    v = s["score"].to_numpy(float)
    lo, hi = float(v.min()), float(v.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, SCORE_BINS + 1)
    counts, _ = np.histogram(v, edges)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=counts, width=(edges[1] - edges[0]) * 0.95, marker_color=BLUE,
                           customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                           hovertemplate="%{customdata[0]:.4f} to %{customdata[1]:.4f}: %{y} trials<extra></extra>"))
    best = (d.meta.get("best") or {}).get("stage1_score")
    if isinstance(best, int | float) and math.isfinite(best):
        fig.add_vline(x=best, line_dash="dash", line_color=RED, annotation_text="chosen point",
                      annotation_position="top")
    fig.update_layout(title=f"Stage-1 scores, {len(v):,} trials (scenario {d.meta.get('stage1_scenario', '?')})",
                      xaxis_title=f"score ({d.unit or d.objective.get('name', '')})", yaxis_title="trials",
                      bargap=0, showlegend=False)
    return _fig_html(fig, div_id, 340)


def _drawn(s: pd.DataFrame, cap: int = PARCOORDS_MAX, best: int = PARCOORDS_BEST) -> pd.DataFrame:
    """All of ``s`` (ranked best first) when it has at most ``cap`` rows, else its first
    ``best`` and a seeded sample of the rest, ``cap`` in all, in rank order."""
    if len(s) <= cap:
        return s
    rest = np.random.default_rng(0).choice(np.arange(best, len(s)), cap - best, replace=False)
    return s.iloc[np.concatenate([np.arange(best), np.sort(rest)])]


def _pc_dimension(name: str, col: pd.Series, space: Any) -> dict[str, Any]:
    if not _is_numeric(col):
        labels = sorted({str(x) for x in col})
        codes = col.astype(str).map({x: i for i, x in enumerate(labels)}).to_numpy(float)
        return {"label": name, "values": codes, "tickvals": list(range(len(labels))), "ticktext": labels}
    vals = col.to_numpy(float)
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    if isinstance(space, dict) and isinstance(space.get("low"), int | float) and isinstance(space.get("high"),
                                                                                         int | float):
        lo, hi = min(lo, float(space["low"])), max(hi, float(space["high"]))
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    return {"label": name, "values": vals, "range": [lo, hi]}


def parcoords_figure(d: TuneData, div_id: str) -> str:
    """Every scored stage-1 trial as a line through one axis per param and the score, coloured
    by the score; ineligible and failed trials are left out and counted (at most
    PARCOORDS_MAX lines: the best PARCOORDS_BEST and a seeded sample of the rest)."""
    s = d.scored()
    params = [p for p in d.params if f"p.{p}" in s]
    c = _counts(d)
    if s.empty or not params:
        return _empty("No stage-1 trial got a score: no parallel coordinates.")
    shown = _drawn(s).iloc[::-1]  # the best drawn last, on top
    space = d.meta.get("space") or {}
    score = shown["score"].to_numpy(float)
    dims = [_pc_dimension(p, shown[f"p.{p}"], space.get(p)) for p in params]
    dims.append({"label": f"score ({d.unit or 'score'})", "values": score})
    fig = go.Figure(go.Parcoords(
        line={"color": score, "colorscale": SCORE_SCALE, "showscale": True,
              "colorbar": {"title": {"text": f"score ({d.unit})" if d.unit else "score"}}},
        dimensions=dims, labelangle=0))
    sample = (f"{len(shown):,} of {len(s):,} scored trials drawn (the best {PARCOORDS_BEST:,} and a seeded sample)"
              if len(shown) < len(s) else f"all {len(s):,} scored trials")
    left = c["ineligible"] + c["errors"]
    note = (f"{sample}; {left:,} ineligible or failed left out (counted by reason under Search space)" if left
            else sample)
    fig.update_layout(margin={"t": 80})
    html = _fig_html(fig, div_id, 460)
    return (f'<h3>Stage-1 trials, parallel coordinates</h3>{html}<p class="note">{_e(note)}. One line per '
            f"trial, one axis per param and the score, colour by score (red low, green high); drag along an "
            f"axis to keep only the lines through that range.</p>")


def _surface_axis(col: pd.Series) -> tuple[np.ndarray, list[Any], str]:
    """(cell index per trial, the cells' positions, a note): the distinct values when at most
    SURFACE_MAX_VALUES, else SURFACE_BINS equal bins (positions their centres); strings as
    categories."""
    if not _is_numeric(col):
        labels = sorted({str(x) for x in col})
        return col.astype(str).map({x: i for i, x in enumerate(labels)}).to_numpy(int), labels, ""
    v = col.to_numpy(float)
    uniq = np.unique(v)
    if len(uniq) <= SURFACE_MAX_VALUES:
        return np.searchsorted(uniq, v), [_py(x) for x in uniq], ""
    edges = np.linspace(uniq[0], uniq[-1], SURFACE_BINS + 1)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, SURFACE_BINS - 1)
    width = float(edges[1] - edges[0])
    return idx, [float(x) for x in (edges[:-1] + edges[1:]) / 2], f"{str(col.name)[2:]} in {SURFACE_BINS} bins " \
                                                                   f"{width:.4g} wide"


def surface_grid(s: pd.DataFrame, a: str, b: str) -> tuple[list[Any], list[Any], np.ndarray, np.ndarray, str]:
    """The score surface of params ``a`` (x) and ``b`` (y) over the scored trials ``s``:
    (x positions, y positions, z[y, x] the best score among the trials in that cell (NaN:
    none), n[y, x] the trials in the cell, a note on binning)."""
    ix, xs, nx = _surface_axis(s[f"p.{a}"])
    iy, ys, ny = _surface_axis(s[f"p.{b}"])
    z = np.full((len(ys), len(xs)), -np.inf)
    n = np.zeros((len(ys), len(xs)), dtype=int)
    np.maximum.at(z, (iy, ix), s["score"].to_numpy(float))
    np.add.at(n, (iy, ix), 1)
    z[n == 0] = np.nan
    return xs, ys, z, n, "; ".join(x for x in (nx, ny) if x)


def surfaces_figure(d: TuneData, div_id: str) -> str:
    """Heatmaps of the best stage-1 score over the other params, for each pair of the first
    SURFACE_PARAMS params that took more than one value among the scored trials."""
    s = d.scored()
    varying = [p for p in d.params if f"p.{p}" in s and s[f"p.{p}"].nunique() > 1]
    if s.empty or len(varying) < 2:
        return _empty("Score surfaces need two params that took more than one value among the scored trials "
                      f"({len(varying)} did).")
    chosen = varying[:SURFACE_PARAMS]
    pairs = list(combinations(chosen, 2))
    fig = make_subplots(rows=1, cols=len(pairs), subplot_titles=[f"{b} against {a}" for a, b in pairs],
                        horizontal_spacing=0.08)
    notes = []
    for k, (a, b) in enumerate(pairs):
        xs, ys, z, n, note = surface_grid(s, a, b)
        notes += [x for x in note.split("; ") if x and x not in notes]
        others = ", ".join(p for p in d.params if p not in (a, b)) or "no other param"
        fig.add_trace(go.Heatmap(
            x=xs, y=ys, z=z, customdata=n, coloraxis="coloraxis", hoverongaps=False, name=f"{b} / {a}",
            hovertemplate=(f"{a} %{{x}}, {b} %{{y}}<br>best score over the other params ({others}): "
                           f"%{{z:.4f}} {d.unit}<br>%{{customdata}} trials in this cell<extra></extra>")),
            row=1, col=k + 1)
        fig.update_xaxes(title_text=a, type="category" if isinstance(xs[0], str) else None, row=1, col=k + 1)
        fig.update_yaxes(title_text=b, type="category" if isinstance(ys[0], str) else None, row=1, col=k + 1)
    v = s["score"].to_numpy(float)
    fig.update_layout(coloraxis={"colorscale": SCORE_SCALE, "cmin": float(v.min()), "cmax": float(v.max()),
                                 "colorbar": {"title": {"text": f"best score ({d.unit})" if d.unit else "best score"}}},
                      title="Score surfaces: each cell the best stage-1 score over the other params")
    left = [p for p in d.params if p not in chosen]
    text = ("Blank cells: no scored trial there (never tried, invalid or ineligible). "
            + (f"Params not drawn as an axis: {', '.join(left)} (the cells take the best over them). " if left else "")
            + ("; ".join(notes) + "." if notes else ""))
    return f'{_fig_html(fig, div_id, 440)}<p class="note">{_e(text)}</p>'


def _split_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if re.fullmatch(r"split_\d+", c)]
    return sorted(cols, key=lambda c: int(c[6:]))


def split_scores_figure(d: TuneData, div_id: str) -> str:
    """Each top-k point's per-split value of the objective under each stage-2 scenario
    (stage2's split_1..n; one subplot per scenario, one bar colour per rank)."""
    s2, top = d.stage2, d.top
    cols = _split_columns(s2)
    if top.empty or s2.empty or not cols:
        return _empty("No stage-2 run: no per-split scores of the top k.")
    edges = d.meta.get("split_edges") or []
    labels = [f"split {c[6:]}" for c in cols]
    windows = [f"{_hm(edges[i])} to {_hm(edges[i + 1])} UTC" if i + 1 < len(edges) else "" for i in range(len(cols))]
    scen = d.scenarios
    fig = make_subplots(rows=1, cols=len(scen), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"scenario {s}" for s in scen])
    by = {(int(t), str(sc)): g for (t, sc), g in s2.groupby(["trial", "scenario"], sort=False)}
    for rank, trial in zip(top["rank"].astype(int), top["trial"].astype(int)):
        color = RANK_COLORS[(rank - 1) % len(RANK_COLORS)]
        for j, sc in enumerate(scen):
            g = by.get((trial, sc))
            if g is None:
                continue
            row = g.iloc[0]
            info = [[_py(row.get(f"trades_{c}")), w] for c, w in zip(cols, windows)]
            fig.add_trace(go.Bar(x=labels, y=[_py(row[c]) for c in cols], name=f"#{rank} trial {trial}",
                                 legendgroup=f"r{rank}", showlegend=j == 0, marker_color=color, customdata=info,
                                 hovertemplate=f"#{rank} (trial {trial}), scenario {sc}<br>%{{x}} "
                                               f"(%{{customdata[1]}}): %{{y:.4f}} {d.unit}, "
                                               f"%{{customdata[0]}} trades<extra></extra>"),
                          row=1, col=j + 1)
    fig.update_yaxes(title_text=f"{d.objective.get('name', 'score')} per split ({d.unit or 'objective units'})",
                     row=1, col=1)
    fig.update_layout(title="The top k's value of the objective in each split (the score is their mean - std)",
                      barmode="group", legend={"y": -0.12})
    spans = "; ".join(f"{lab} {w}" for lab, w in zip(labels, windows) if w)
    return (f'{_fig_html(fig, div_id, 420)}<p class="note">{_e(spans)}. A missing bar: no trade in that '
            f"split (the objective is undefined there).</p>")


def equity_topk_figure(d: TuneData, div_id: str) -> str:
    """The top k's equity (USD) at the FX day rolls, one subplot per stage-2 scenario, one
    colour per rank (equity_top_k.csv)."""
    eq = d.equity
    if eq.empty:
        return _empty("equity_top_k.csv holds no mark: no equity curves of the top k.")
    scen = [s for s in d.scenarios if s in set(eq["scenario"].astype(str))] or sorted(set(eq["scenario"].astype(str)))
    fig = make_subplots(rows=len(scen), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"scenario {s}" for s in scen])
    eq = eq.assign(scenario=eq["scenario"].astype(str))
    for (rank, trial, sc), g in eq.sort_values(["rank", "time"], kind="stable").groupby(
            ["rank", "trial", "scenario"], sort=True):
        if sc not in scen:
            continue
        rank = int(rank)
        fig.add_trace(go.Scatter(
            x=rh._ts(g["time"].to_numpy()), y=g["equity_usd"].to_numpy(float), mode="lines",
            name=f"#{rank} trial {int(trial)}", legendgroup=f"r{rank}", showlegend=sc == scen[0],
            line={"color": RANK_COLORS[(rank - 1) % len(RANK_COLORS)], "width": 2.5 if rank == 1 else 1.2},
            hovertemplate=f"#{rank} (trial {int(trial)}), scenario {sc}<br>%{{x}}<br>%{{y:,.2f}} USD<extra></extra>"),
            row=scen.index(sc) + 1, col=1)
    for i in range(len(scen)):
        fig.update_yaxes(title_text="equity (USD)", tickformat=",.0f", row=i + 1, col=1)
    fig.update_layout(title="Equity of the top k, per stage-2 scenario (USD at FX day rolls, UTC; rank 1 thick)",
                      legend={"y": -0.05})
    return _fig_html(fig, div_id, 150 + 260 * len(scen))


def render_tune_html(d: TuneData) -> str:
    """The tune page, as one string (plotly.js embedded once in its head)."""
    title, meta = _tune_header(d)
    body = "".join([
        _tune_facts(d),
        _kpis(d),
        _overfitting_block(d),
        _section("topk", "Stage 2: the top k under every scenario", _topk_table(d)),
        _section("trials", "Stage 1: every trial",
                 score_histogram_figure(d, "t-hist") + parcoords_figure(d, "t-parcoords")
                 + "<h3>Score surfaces</h3>" + surfaces_figure(d, "t-surfaces")),
        _section("splits", "The top k split by split", split_scores_figure(d, "t-splits")),
        _section("equity", "Equity of the top k", equity_topk_figure(d, "t-equity")),
        _search_block(d),
    ])
    nav = [("overfitting", "overfitting"), ("topk", "top k"), ("trials", "stage-1 trials"),
           ("splits", "per split"), ("equity", "equity"), ("search", "search space")]
    return _page(title, meta, nav, body)


def write_tune_html(out_dir: Path) -> Path:
    """Build ``out_dir/report.html`` from a ``deskd tune`` output folder (tune.json, trials,
    stage2, top_k.csv, equity_top_k.csv, invalid.csv) and return its path; the page is
    written whole or not at all (a temporary file renamed over it). Raises ReportInputError,
    naming the file, when one is missing or unreadable."""
    out_dir = Path(out_dir)
    return _write_atomically(out_dir / "report.html", render_tune_html(load_tune(out_dir)))


# ---------------------------------------------------------------------------- walk-forward: HTML

def _spec_text(spec: dict[str, Any]) -> str:
    kind = "anchored (every train window starts at the first bar)" if spec.get("anchored") else "rolling"
    if spec.get("unit") == "bars":
        return (f"{kind}; train {_int(spec.get('train_bars'))} bars, test {_int(spec.get('test_bars'))} bars, "
                f"embargo {_int(spec.get('embargo_bars'))} bars (counted in bars as read)")
    return (f"{kind}; train {_span(spec.get('train'))}, test {_span(spec.get('test'))}, embargo "
            f"{_span(spec.get('embargo'))} (calendar spans, UTC calendar arithmetic)")


def _wf_header(d: WalkForwardData) -> tuple[str, str]:
    m = d.meta
    syms = ", ".join(m.get("data") or {})
    title = f"deskd walk-forward: {m.get('strategy_id', '')} on {syms}"
    obj = d.objective()
    sha = ", ".join(f'{_e(s)} <code title="{_e(v.get("sha256", ""))}">{_e(str(v.get("sha256", ""))[:16])}</code>'
                    for s, v in (m.get("data") or {}).items() if isinstance(v, dict))
    meta = (f"deskd {_e(m.get('deskd_version', ''))}. Splits: <b>{_e(_spec_text(m.get('splits_spec') or {}))}</b>; "
            f"each train window tuned with the {_e(m.get('sampler', ''))} sampler"
            + (f" ({_int(m.get('trials'))} stage-1 trials)" if m.get("trials") else "")
            + f", objective {_e(obj.get('name', '?'))} ({_e(obj.get('units', ''))}); the stage-2 winner traded "
            f"on the test window after it under scenarios {_e(', '.join(d.scenarios))}, through the event path, "
            f"each split starting from the equity the previous ended with. Data SHA-256: {sha or 'n/a'}; config "
            f"SHA-256 <code>{_e(str(m.get('config_sha256', ''))[:16])}</code>. Times UTC; expectancy in R per "
            f"trade, money in USD. Outputs: <a href=\"splits.csv\">splits.csv</a>, "
            f"<a href=\"oos_trades.csv\">oos_trades.csv</a>, <a href=\"oos_equity.csv\">oos_equity.csv</a>.")
    return title, meta


def _curve_drawdowns(d: WalkForwardData) -> dict[str, tuple[float, float]]:
    """Per scenario: the stitched curve's deepest fall from its running peak (USD, fraction)."""
    out = {}
    for sc, g in d.equity.groupby("scenario", sort=False):
        dd, frac = rh.drawdown(g.sort_values("time", kind="stable")["equity_usd"].to_numpy(float))
        out[str(sc)] = (float(dd.max()), float(frac.max())) if len(dd) else (math.nan, math.nan)
    return out


def _oos_totals(d: WalkForwardData) -> str:
    oos = d.meta.get("out_of_sample") or {}
    if not oos:
        return _empty("walkforward.json holds no out-of-sample totals.")
    dds = _curve_drawdowns(d)
    rows = []
    for sc in d.scenarios or list(oos):
        o = oos.get(sc) or {}
        dd = dds.get(sc, (math.nan, math.nan))
        rows.append(
            f"<tr><th>{_e(sc)}</th>"
            + _tagged("td", _int(o.get("trades")), o.get("trades"), scenario=sc, metric="oos_total_trades")
            + _tagged("td", _num(o.get("expectancy_r"), 4, "R", True), o.get("expectancy_r"), _sign(o.get("expectancy_r")),
                      scenario=sc, metric="oos_total_expectancy_r")
            + _tagged("td", _num(o.get("net_usd"), 2, "USD", True), o.get("net_usd"), _sign(o.get("net_usd")),
                      scenario=sc, metric="oos_total_net_usd")
            + _tagged("td", _num(o.get("final_equity_usd"), 2, "USD"), o.get("final_equity_usd"), scenario=sc,
                      metric="oos_total_final_equity_usd")
            + f"<td>{_e(_num(dd[0], 2, 'USD'))} ({_e(_pct(dd[1], 1))})</td></tr>")
    return ('<table class="metrics"><thead><tr><th>scenario</th><th>trades</th><th>expectancy (R per trade)</th>'
            '<th>net P&amp;L (USD)</th><th>final equity (USD)</th><th>max drawdown of the stitched curve '
            f'(USD, of peak)</th></tr></thead><tbody>{"".join(rows)}</tbody></table><p class="note">The '
            "out-of-sample record: every test window's trades stitched (walkforward.json); the drawdown is "
            "measured on oos_equity.csv's day-roll marks, so a dip between two marks can be deeper.</p>")


def _split_link(d: WalkForwardData, n: int) -> str:
    t = d.tunes.get(n)
    if t is not None and t.page:
        return f'<a href="{_e(t.page)}" title="the tune of this train window">split {n}</a>'
    return f"split {n}"


def _scenario_cells(s: dict[str, Any], n: int, sc: str) -> str:
    """One split's numbers under one scenario: IS and OOS expectancy (R), their ratio, OOS
    trades and net P&L (USD)."""
    def cell(key: str, metric: str, text: str, signed: bool = True) -> str:
        v = s.get(key)
        return _tagged("td", text, v, _sign(v) if signed else "", split=n, scenario=sc, metric=metric)

    return (f"<td>{_e(sc)}</td>"
            + cell(f"is_expectancy_r_{sc}", "is_expectancy_r", _num(_py(s.get(f"is_expectancy_r_{sc}")), 4, "", True))
            + cell(f"oos_expectancy_r_{sc}", "oos_expectancy_r",
                   _num(_py(s.get(f"oos_expectancy_r_{sc}")), 4, "", True))
            + cell(f"oos_over_is_{sc}", "oos_over_is", _num(_py(s.get(f"oos_over_is_{sc}")), 2), False)
            + cell(f"oos_trades_{sc}", "oos_trades", _int(_py(s.get(f"oos_trades_{sc}"))), False)
            + cell(f"oos_net_usd_{sc}", "oos_net_usd", _num(_py(s.get(f"oos_net_usd_{sc}")), 2, "", True)))


def _splits_table(d: WalkForwardData) -> str:
    """One block of rows per split (its windows, choice and in-sample score spanning them),
    one row per scenario."""
    splits, scen, params = d.splits, d.scenarios, d.params
    if not splits:
        return _empty("walkforward.json holds no split.")
    unit = _SHORT_UNIT.get(str(d.objective().get("name")), "")
    head1 = ('<th rowspan="2">split</th><th rowspan="2">train (UTC)</th><th rowspan="2">embargo</th>'
             '<th rowspan="2">test (UTC)</th>' + (f'<th colspan="{len(params)}">params chosen</th>' if params else "")
             + f'<th rowspan="2">IS score ({_e(unit or "score")}, worst scenario)</th><th rowspan="2">scenario</th>'
             '<th colspan="2">expectancy (R per trade)</th><th rowspan="2">OOS / IS</th>'
             '<th rowspan="2">OOS trades</th><th rowspan="2">OOS net P&amp;L (USD)</th>')
    head2 = "".join(f"<th>{_e(p)}</th>" for p in params) + "<th>IS</th><th>OOS</th>"
    rows = []
    for s in splits:
        n = int(s.get("split", 0))
        ran = "is_score" in s
        span = f' rowspan="{len(scen)}"' if ran and len(scen) > 1 else ""
        lead = (f"<th{span}>{_split_link(d, n)}</th><td{span}>{_e(_hm(s.get('train_from')))}<br>"
                f"to {_e(_hm(s.get('train_to')))}</td><td{span}>{_e(_span_s(s.get('embargo_s')))}</td>"
                f"<td{span}>{_e(_hm(s.get('test_from')))}<br>to {_e(_hm(s.get('test_to')))}</td>")
        if not ran:
            rows.append(f'<tr class="split-start">{lead}<td class="left" colspan="{len(params) + 7}">'
                        f'{_e(s.get("note", "no choice in this split"))}</td></tr>')
            continue
        rs = len(scen)
        chosen = "".join(_tagged("td", _param(s.get(f"p.{p}")), s.get(f"p.{p}"), rowspan=rs, split=n,
                                 metric=f"p.{p}") for p in params)
        chosen += _tagged("td", _score(s.get("is_score"), unit), s.get("is_score"), _sign(s.get("is_score")),
                          rowspan=rs, split=n, metric="is_score")
        for k, sc in enumerate(scen):
            first = lead + chosen if k == 0 else ""
            cls = ' class="split-start"' if k == 0 else ""
            rows.append(f"<tr{cls}>{first}{_scenario_cells(s, n, sc)}</tr>")
    return (f'<div class="scroll"><table class="metrics wide splits"><thead><tr>{head1}</tr><tr>{head2}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div><p class="note">IS: in-sample, the train '
            f"window (the chosen point's stage-2 run there); OOS: out-of-sample, the test window. OOS / IS is the "
            f"ratio of the two expectancies: near 1 the edge held, near 0 or below it did not; with both "
            f"negative a ratio above 0 is no good news. Each split's number links to its own tune page.</p>")


def _split_bands(fig: go.Figure, splits: list[dict[str, Any]]) -> None:
    for k, s in enumerate(splits):
        a, b = s.get("test_from"), s.get("test_to")
        if not a or not b:
            continue
        x0, x1 = _hm(a), _hm(b)
        fig.add_vrect(x0=x0, x1=x1, fillcolor="#2c7fb8" if k % 2 == 0 else "#9ecae1", opacity=0.08, line_width=0,
                      layer="below", annotation_text=f"split {s.get('split')}", annotation_position="top left",
                      annotation_font_size=11)
        fig.add_vline(x=x0, line_width=1, line_dash="dot", line_color=GREY)


def oos_equity_figure(d: WalkForwardData, div_id: str) -> str:
    """The stitched out-of-sample equity (USD) of each scenario over time (oos_equity.csv's
    day-roll and end marks), each split's test window shaded and its start marked."""
    eq = d.equity
    if eq.empty:
        return _empty("oos_equity.csv holds no mark: no out-of-sample equity.")
    fig = go.Figure()
    scen = [s for s in d.scenarios if s in set(eq["scenario"])] or sorted(set(eq["scenario"]))
    groups = dict(tuple(eq.groupby("scenario", sort=False)))
    for k, sc in enumerate(scen):
        g = groups[sc].sort_values(["split", "time"], kind="stable")
        fig.add_trace(go.Scatter(
            x=rh._ts(g["time"].to_numpy()), y=g["equity_usd"].to_numpy(float), mode="lines", name=f"scenario {sc}",
            line={"color": SCENARIO_COLORS[k % len(SCENARIO_COLORS)], "width": 1.6}, customdata=g["split"].to_numpy(),
            hovertemplate=f"scenario {sc}, split %{{customdata}}<br>%{{x}}<br>%{{y:,.2f}} USD<extra></extra>"))
    _split_bands(fig, d.splits)
    fig.update_yaxes(title_text="equity (USD)", tickformat=",.0f")
    fig.update_layout(title="Stitched out-of-sample equity (USD at FX day rolls, UTC); shaded: each split's "
                            "test window")
    return _fig_html(fig, div_id, 460)


def is_oos_figure(d: WalkForwardData, div_id: str) -> str:
    """In-sample against out-of-sample expectancy (R per trade) per split, one subplot per
    scenario."""
    splits = [s for s in d.splits if "is_score" in s]
    scen = d.scenarios
    if not splits or not scen:
        return _empty("No split chose a point: no in-sample / out-of-sample comparison.")
    x = [f"split {s.get('split')}" for s in splits]
    fig = make_subplots(rows=1, cols=len(scen), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"scenario {s}" for s in scen])
    for j, sc in enumerate(scen):
        for key, name, color in (("is", "in-sample (train)", GREY), ("oos", "out-of-sample (test)", BLUE)):
            fig.add_trace(go.Bar(x=x, y=[_py(s.get(f"{key}_expectancy_r_{sc}")) for s in splits], name=name,
                                 legendgroup=key, showlegend=j == 0, marker_color=color,
                                 hovertemplate=f"scenario {sc}, %{{x}}: {name} %{{y:+.4f}} R<extra></extra>"),
                          row=1, col=j + 1)
    fig.update_yaxes(title_text="expectancy (R per trade)", row=1, col=1)
    fig.update_layout(title="Expectancy in the train window against the test window after it", barmode="group")
    return _fig_html(fig, div_id, 380)


def stability_figure(d: WalkForwardData, div_id: str) -> str:
    """The value each split chose for each tuned param (one subplot per param; the y axis spans
    the searched range when the splits' tune.json gives it)."""
    params = d.params
    splits = [s for s in d.splits if any(k.startswith("p.") for k in s)]
    if not params or not splits:
        return _empty("No split chose a point: no parameter stability.")
    space = d.space()
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=params, vertical_spacing=0.18, horizontal_spacing=0.07)
    x = [int(s.get("split", 0)) for s in splits]
    for k, p in enumerate(params):
        r, c = k // cols + 1, k % cols + 1
        y = [_py(s.get(f"p.{p}")) for s in splits]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=p, showlegend=False,
                                 line={"color": BLUE}, marker={"size": 9},
                                 hovertemplate=f"split %{{x}}: {p} = %{{y}}<extra></extra>"), row=r, col=c)
        dim = space.get(p) or {}
        if isinstance(dim.get("low"), int | float) and isinstance(dim.get("high"), int | float):
            pad = (float(dim["high"]) - float(dim["low"])) * 0.05 or 1.0
            fig.update_yaxes(range=[float(dim["low"]) - pad, float(dim["high"]) + pad], row=r, col=c)
        fig.update_xaxes(title_text="split", dtick=1, row=r, col=c)
    fig.update_layout(title="Parameter stability: the value each split chose (y axis: the searched range)")
    return _fig_html(fig, div_id, 120 + 280 * rows)


def _stability_table(d: WalkForwardData) -> str:
    stab = d.meta.get("parameter_stability") or {}
    if not stab:
        return ""
    space = d.space()
    rows = "".join(
        f"<tr><th>{_e(p)}</th><td class=\"left\">{_e(', '.join(_param(v) for v in s.get('values') or []))}</td>"
        + _tagged("td", _int(s.get("distinct")), s.get("distinct"), metric="distinct", param=p)
        + f"<td>{_e(_num(s.get('mean'), 3))}</td><td>{_e(_num(s.get('std'), 3))}</td>"
        f"<td class=\"left\">{_e(_space_text(space[p]) if p in space else 'n/a')}</td></tr>"
        for p, s in stab.items() if isinstance(s, dict))
    return ('<table class="metrics"><thead><tr><th>param</th><th class="left">chosen, split by split</th>'
            '<th>distinct</th><th>mean</th><th>std (population)</th><th class="left">searched</th></tr></thead>'
            f'<tbody>{rows}</tbody></table><p class="note">A desk wants the same neighbourhood chosen every '
            "time: a choice that jumps across the range is the luck of each train window.</p>")


def render_walkforward_html(d: WalkForwardData) -> str:
    """The walk-forward page, as one string (plotly.js embedded once in its head)."""
    title, meta = _wf_header(d)
    links = "".join(f'<li><a href="{_e(t.page)}">split {n}: the tune of its train window</a></li>' if t.page
                    else f"<li>split {n}: no tune page ({_e(t.note or 'no tune folder')})</li>"
                    for n, t in sorted(d.tunes.items()))
    body = "".join([
        _section("oos", "Out of sample, stitched", _oos_totals(d) + oos_equity_figure(d, "w-equity")),
        _section("splits", "Split by split", _splits_table(d) + is_oos_figure(d, "w-isoos")),
        _section("stability", "Parameter stability", stability_figure(d, "w-stability") + _stability_table(d)),
        _section("tunes", "Each split's tune", f"<ul>{links}</ul>" if links else _empty("No split.")),
    ])
    nav = [("oos", "out of sample"), ("splits", "splits"), ("stability", "parameter stability"),
           ("tunes", "tune pages")]
    return _page(title, meta, nav, body)


def _split_pages(d: WalkForwardData) -> None:
    """Build each split's tune page when it is missing or older than its tune.json; record
    the link (or why there is none)."""
    for t in d.tunes.values():
        if t.meta is None:
            continue
        page = t.folder / "report.html"
        try:
            if not page.exists() or page.stat().st_mtime < (t.folder / "tune.json").stat().st_mtime:
                write_tune_html(t.folder)
            t.page = page.relative_to(d.folder).as_posix()
        except (ReportInputError, OSError) as e:
            t.note = str(e)


def write_walkforward_html(out_dir: Path) -> Path:
    """Build ``out_dir/report.html`` from a ``deskd walkforward`` output folder
    (walkforward.json, oos_equity.csv, splits/NN/tune.json) and return its path; first each
    split's own tune page splits/NN/report.html when missing or older than its tune.json
    (:func:`write_tune_html`; a split whose page cannot be built is listed without a link and
    why). Each page is written whole or not at all. Raises ReportInputError, naming the file,
    when walkforward.json or oos_equity.csv is missing or unreadable."""
    out_dir = Path(out_dir)
    d = load_walkforward(out_dir)
    _split_pages(d)
    return _write_atomically(out_dir / "report.html", render_walkforward_html(d))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deskd.research.tuning.report DIR``: (re)build DIR/report.html of a tune or a
    walk-forward folder. Exit 0 done, 2 a folder that is neither (one ``deskd: error:`` line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m deskd.research.tuning.report DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    try:
        path = (write_walkforward_html(folder) if (folder / "walkforward.json").exists()
                else write_tune_html(folder))
    except ReportInputError as e:
        print(f"deskd: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
