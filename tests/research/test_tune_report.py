"""report.html of tune and walk-forward folders, at the level of the page's text: built from
small synthetic folders written here (every expected number computed here, from the rows this
file writes) and from a tiny real tune; the browser tests are tests/e2e/test_tune_report.py."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from html.parser import HTMLParser
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deskd.research import report_html
from deskd.research.tuning import report
from deskd.research.tuning.report import (
    PARCOORDS_BEST,
    PARCOORDS_MAX,
    SURFACE_BINS,
    ReportInputError,
    surface_grid,
    write_tune_html,
    write_walkforward_html,
)
from deskd.research.tuning.tune import tune
from tests.research.test_tuning import small_tune

SCEN = ["A", "B", "C"]
SPACE = {"a": {"low": 1, "high": 4, "step": 1}, "b": {"low": 10, "high": 30, "step": 10},
         "mode": {"choices": ["fast", "slow"]}}
EDGES = ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z",
         "2026-05-01T00:00:00Z"]
SHA = "0123456789abcdef" + "f" * 48
#: scenario -> what stage 2 adds to a point's stage-1 score (C is the worst)
SHIFT = {"A": 0.01, "B": 0.0, "C": -0.02}


def score_of(a: int, b: int, mode: str) -> float:
    """The synthetic stage-1 score (R): best at a = 4, b = 10, mode fast."""
    return round(0.1 * a - b / 100 + (0.05 if mode == "fast" else 0.0), 10)


def _iso(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_tune_folder(folder: Path, points: list[dict] | None = None, top_k: int = 3, ineligible=(),
                      failed=(), window: tuple[str | None, str | None] = (None, None)) -> dict:
    """A tune folder as `deskd tune` writes it, over ``points`` (default: the 24 of SPACE); the
    points in ``ineligible`` / ``failed`` (indices) have no score. Returns tune.json's content."""
    folder.mkdir(parents=True, exist_ok=True)
    points = points if points is not None else [{"a": a, "b": b, "mode": m} for a, b, m in
                                                product([1, 2, 3, 4], [10, 20, 30], ["fast", "slow"])]
    rows = []
    for i, p in enumerate(points):
        s = score_of(**p)
        status, reason = "ok", ""
        if i in ineligible:
            s, reason = math.nan, "fewer than 5 trades in split(s) 2"
        if i in failed:
            s, status, reason = math.nan, "error", "ValueError: boom"
        rows.append({"trial": i + 1, "stage": 1, "scenario": "B", "status": status, "score": s, "trades": 40 + i,
                     "net_usd": 100.0 * s, "expectancy_r": s, "max_dd_usd": 1000.0, "max_dd_frac": 0.01,
                     "final_equity_usd": 100_000 + 100 * s, "bars": 5000, "duration_s": 0.1, "path": "event",
                     "reason": reason, **{f"split_{k}": s + 0.01 * (k - 2) for k in range(1, 5)},
                     **{f"trades_split_{k}": 10 for k in range(1, 5)}, **{f"p.{n}": v for n, v in p.items()}})
    trials = pd.DataFrame(rows)
    scored = trials[np.isfinite(trials["score"])].sort_values(["score", "trial"], ascending=[False, True])
    trials = pd.concat([scored, trials[~np.isfinite(trials["score"])]]).reset_index(drop=True)
    trials.insert(0, "rank", range(1, len(trials) + 1))
    best = scored.head(top_k)
    s2 = []
    for _, r in best.iterrows():
        for sc in SCEN:
            s2.append({**r.to_dict(), "stage": 2, "scenario": sc, "score": r["score"] + SHIFT[sc],
                       **{f"split_{k}": r[f"split_{k}"] + SHIFT[sc] for k in range(1, 5)}})
    stage2 = pd.DataFrame(s2, columns=trials.columns.drop("rank"))
    top = []
    for k, (_, r) in enumerate(best.iterrows()):
        row = {"rank": k + 1, "trial": r["trial"], "stage1_score": r["score"]}
        for sc in SCEN:
            row |= {f"score_{sc}": r["score"] + SHIFT[sc], f"trades_{sc}": 50 + k, f"net_usd_{sc}": -10.5 * (k + 1),
                    f"max_dd_frac_{sc}": 0.05 + 0.01 * k}
        row["worst_score"] = r["score"] + SHIFT["C"]
        top.append(row | {f"p.{n}": r[f"p.{n}"] for n in points[0]})
    top_df = pd.DataFrame(top)
    days = pd.date_range("2026-01-01", periods=5, freq="D")
    eq = [{"rank": t["rank"], "trial": t["trial"], "scenario": sc, "time": _iso(d),
           "equity_usd": 100_000.0 + 100 * i * (t["rank"] + 1)}
          for t in top for sc in SCEN for i, d in enumerate(days)]
    for name, df in (("trials", trials), ("stage2", stage2)):
        df.to_csv(folder / f"{name}.csv", index=False)
        df.to_parquet(folder / f"{name}.parquet", index=False)
    if top:
        top_df.to_csv(folder / "top_k.csv", index=False)
    else:  # what `deskd tune` writes when no point was eligible: an empty frame
        pd.DataFrame().to_csv(folder / "top_k.csv", index=False)
    pd.DataFrame(eq, columns=["rank", "trial", "scenario", "time", "equity_usd"]).to_csv(
        folder / "equity_top_k.csv", index=False)
    pd.DataFrame([{"point": json.dumps({"a": 1, "b": 10, "mode": "odd"}), "reason": "mode must be fast or slow"},
                  {"point": json.dumps({"a": 0, "b": 10, "mode": "fast"}), "reason": "a must be >= 1"}],
                 columns=["point", "reason"]).to_csv(folder / "invalid.csv", index=False)
    meta = {
        "deskd_version": "0.1.0", "optuna_version": "5.0.0", "strategy_id": "S_TEST", "symbols": ["EURUSD"],
        "sampler": "grid", "seed": 7, "space": SPACE, "space_size": 24, "trials_stage1": len(points),
        "invalid_points_skipped": 2,
        "objective": {"name": "expectancy_r", "units": "R per trade (mean of pnl_usd / planned risk_usd)",
                      "splits": 4, "min_trades_per_split": 5, "dd_penalty": 0.0, "pf_cap": 5.0,
                      "score": "mean - std (ddof 1) of the per-split values - dd_penalty x max_dd_frac"},
        "window": {"from": window[0], "to": window[1]}, "split_edges": EDGES, "stage1_scenario": "B",
        "stage2_scenarios": SCEN, "top_k": top_k, "study": {"name": "S_TEST-grid-x", "storage": "sqlite:///x.db"},
        "data": {"EURUSD": {"path": "/x/EURUSD.csv", "sha256": SHA}}, "config_sha256": "c" * 64,
        "overfitting": {"returns": "daily", "trials": len(scored), "days": 100,
                        "dsr": {"value": 0.9731234567, "psr": 0.99, "sharpe_daily": 0.21, "sr0_daily": 0.1,
                                "n_trials": len(scored), "n_days": 100, "skew": 0.1, "kurtosis": 3.2},
                        "pbo": {"value": 0.3125, "prob_loss": 0.2, "n_splits": 8, "combinations": 70,
                                "degradation_slope": -0.5, "dropped_days": 4}},
        "best": {k: (float(v) if isinstance(v, int | float | np.number) else v) for k, v in top[0].items()}
        if top else None,
    }
    (folder / "tune.json").write_text(json.dumps(meta, indent=2))
    return meta


class Tagged(HTMLParser):
    """Every element carrying ``data-value``: its data-* attributes, value (JSON-decoded) and text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-value" in a:
            self._open = {"tag": tag, **{k[5:]: v for k, v in a.items() if k.startswith("data-")}, "text": ""}
            self._open["value"] = json.loads(a["data-value"])

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if self._open is not None and tag == self._open["tag"]:
            self.found.append(self._open)
            self._open = None


def tagged(page: str, **attrs) -> list[dict]:
    """The page's numbers whose data-* attributes include ``attrs`` (values as strings)."""
    p = Tagged()
    p.feed(page)
    return [f for f in p.found if all(f.get(k) == str(v) for k, v in attrs.items())]


def one(page: str, **attrs) -> dict:
    found = tagged(page, **attrs)
    assert len(found) == 1, (attrs, found)
    return found[0]


def shown(text: str) -> float:
    """The number a cell shows (thousands separators and a unit dropped)."""
    return float(text.split()[0].replace(",", ""))


def _arrays(x):
    """Plotly's typed arrays ({"dtype", "bdata" base64, "shape"}) as lists, everywhere in ``x``."""
    if isinstance(x, dict) and "bdata" in x and "dtype" in x:
        a = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]).newbyteorder("<"))
        if "shape" in x:
            a = a.reshape([int(n) for n in str(x["shape"]).split(",")])
        return a.tolist()
    if isinstance(x, dict):
        return {k: _arrays(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_arrays(v) for v in x]
    return x


def plot_data(page: str, div_id: str) -> list[dict]:
    """The traces a plot of the page draws (its Plotly.newPlot call's data, arrays as lists)."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', page)
    assert m, div_id
    data, _ = json.JSONDecoder().raw_decode(page, m.end())
    return _arrays(data)


# ------------------------------------------------------------------------------------ tune page

def test_the_tune_page_quotes_tune_json_and_top_k_csv(tmp_path):
    meta = write_tune_folder(tmp_path / "t")
    page = write_tune_html(tmp_path / "t").read_text()
    top = pd.read_csv(tmp_path / "t" / "top_k.csv")
    # the chosen point: best score 0.1 x 4 - 10/100 + 0.05 = 0.35 in stage 1, -0.02 under C
    assert one(page, metric="best_worst_score")["value"] == meta["best"]["worst_score"] == pytest.approx(0.33)
    assert one(page, metric="best_worst_score")["text"] == "+0.3300 R"
    assert one(page, metric="best_stage1_score")["value"] == pytest.approx(0.35)
    dsr = tagged(page, metric="dsr")  # the headline and the overfitting section
    assert [f["value"] for f in dsr] == [0.9731234567] * 2 and [f["text"] for f in dsr] == ["0.9731"] * 2
    assert [f["value"] for f in tagged(page, metric="pbo")] == [0.3125, 0.3125]
    assert one(page, metric="dsr_n_trials")["value"] == 24 and one(page, metric="pbo_combinations")["value"] == 70
    for r in top.to_dict("records"):
        cell = one(page, rank=r["rank"], metric="worst_score")
        assert cell["value"] == r["worst_score"] and shown(cell["text"]) == pytest.approx(r["worst_score"], abs=5e-5)
        for sc in SCEN:
            assert one(page, rank=r["rank"], scenario=sc, metric="score")["value"] == r[f"score_{sc}"]
            assert one(page, rank=r["rank"], scenario=sc, metric="trades")["value"] == r[f"trades_{sc}"]
        assert one(page, rank=r["rank"], metric="p.mode")["text"] == r["p.mode"]
    assert len(tagged(page, metric="worst_score")) == 3
    # the header: what was searched and how it was scored
    for text in ("S_TEST", "EURUSD", "grid, seed 7", "24 points", "expectancy_r: R per trade (mean of pnl_usd / "
                 "planned risk_usd)", "mean - std (ddof 1) of the per-split values - dd_penalty x max_dd_frac",
                 SHA[:16], "at least 5 trades in every split", "2026-01-01 00:00 to 2026-05-01 00:00 UTC"):
        assert html.escape(text, quote=True) in page, text
    assert SHA not in page.replace(f'title="{SHA}"', "")  # a prefix shown, the whole hash only on hover
    assert one(page, metric="trials_stage1")["value"] == 24
    assert one(page, metric="invalid_points_skipped")["value"] == 2
    # overfitting: said in words, the desk's thresholds, the sources
    assert "DSR &gt; 0.95" in page and "PBO &lt; 0.5" in page
    assert 'class="verdict pass">above 0.95' in page and 'class="verdict pass">below 0.5' in page
    assert "Bailey &amp; Lopez de Prado (2014)" in page and "J. Portfolio Management 40(5)" in page
    assert "Bailey, Borwein, Lopez de Prado &amp; Zhu" in page and "J. Computational Finance 20(4)" in page
    # every plot, plotly.js once and nothing from the network
    for div in ("t-hist", "t-parcoords", "t-surfaces", "t-splits", "t-equity"):
        assert plot_data(page, div)
    assert page.count(report_html.get_plotlyjs()) == 1
    assert not re.search(r'<script[^>]+src=|<link[^>]+href="http', page)


def test_a_desk_sees_a_failing_dsr_and_pbo_flagged(tmp_path):
    meta = write_tune_folder(tmp_path / "t")
    meta["overfitting"]["dsr"]["value"] = 0.95  # not above
    meta["overfitting"]["pbo"]["value"] = 0.5  # not below
    (tmp_path / "t" / "tune.json").write_text(json.dumps(meta))
    page = write_tune_html(tmp_path / "t").read_text()
    assert 'class="verdict fail">not above 0.95' in page and 'class="verdict fail">not below 0.5' in page
    meta["overfitting"] = {"returns": "daily", "trials": 1, "days": 3, "dsr": None, "pbo": None,
                           "note": "needs a chosen point and at least 2 trials over 4 or more days"}
    (tmp_path / "t" / "tune.json").write_text(json.dumps(meta))
    page = write_tune_html(tmp_path / "t").read_text()
    assert page.count("needs a chosen point and at least 2 trials over 4 or more days") == 2
    assert [(f["value"], f["text"]) for f in tagged(page, metric="dsr")] == [(None, "n/a")] * 2
    assert 'class="verdict none"' in page


def test_parallel_coordinates_draw_every_scored_trial_and_count_the_others(tmp_path):
    write_tune_folder(tmp_path / "t", ineligible=(3, 5), failed=(7,))
    page = write_tune_html(tmp_path / "t").read_text()
    pc = plot_data(page, "t-parcoords")[0]
    labels = [d["label"] for d in pc["dimensions"]]
    assert labels == ["a", "b", "mode", "score (R)"]  # tune.json's space order, then the score
    trials = pd.read_csv(tmp_path / "t" / "trials.csv")
    scored = trials[np.isfinite(trials["score"])]
    assert len(pc["dimensions"][-1]["values"]) == len(scored) == 21
    assert sorted(pc["dimensions"][-1]["values"]) == sorted(scored["score"])
    assert pc["line"]["color"] == pc["dimensions"][-1]["values"]  # coloured by the score
    mode = pc["dimensions"][2]
    assert mode["ticktext"] == ["fast", "slow"] and set(mode["values"]) == {0, 1}
    assert pc["dimensions"][0]["range"] == [1, 4]  # the searched range
    assert "3 ineligible or failed left out" in page
    assert one(page, metric="ineligible")["value"] == 3 and one(page, metric="scored")["value"] == 21
    assert "fewer than 5 trades in split(s) 2" in page and "ValueError: boom" in page


def test_a_large_tune_draws_a_capped_sample_that_keeps_the_best(tmp_path):
    pts = [{"a": a, "b": b, "mode": m} for a in range(1, 201) for b in range(10, 310, 10) for m in ("fast", "slow")]
    write_tune_folder(tmp_path / "t", points=pts)  # 12,000 trials
    page = write_tune_html(tmp_path / "t").read_text()
    pc = plot_data(page, "t-parcoords")[0]
    drawn = pc["dimensions"][-1]["values"]
    assert len(drawn) == PARCOORDS_MAX < len(pts)
    best = sorted((score_of(**p) for p in pts), reverse=True)[:PARCOORDS_BEST]
    assert sorted(drawn, reverse=True)[:PARCOORDS_BEST] == best
    assert f"{PARCOORDS_MAX:,} of {len(pts):,} scored trials drawn" in page
    # the surfaces are binned: a (200 values) into SURFACE_BINS cells
    heat = plot_data(page, "t-surfaces")
    assert len(heat[0]["x"]) == SURFACE_BINS and len(heat[0]["y"]) == 30  # b: 30 values, kept as they are
    assert len(page) - len(report_html.get_plotlyjs()) < 2_500_000


def test_a_score_surface_cell_is_the_best_score_over_the_other_params():
    rng = np.random.default_rng(3)
    s = pd.DataFrame({"p.x": rng.integers(0, 5, 300), "p.y": rng.choice([0.5, 1.5, 4.0], 300),
                      "p.z": rng.integers(0, 100, 300), "score": rng.normal(size=300)})
    s = s.drop_duplicates(["p.x", "p.y"]).iloc[:-2]  # some cells never tried
    xs, ys, z, n, note = surface_grid(s, "x", "y")
    assert xs == sorted(set(s["p.x"])) and ys == [0.5, 1.5, 4.0] and note == ""
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            cell = s[(s["p.x"] == x) & (s["p.y"] == y)]["score"]
            assert n[i, j] == len(cell)
            assert (math.isnan(z[i, j]) and cell.empty) or z[i, j] == cell.max()
    # many distinct values: equal bins over the range, each cell still the best of its trials
    wide = pd.DataFrame({"p.x": np.arange(1000) * 0.5, "p.y": np.zeros(1000), "score": np.arange(1000) % 7})
    xs, ys, z, n, note = surface_grid(wide, "x", "y")
    assert len(xs) == SURFACE_BINS and n.sum() == 1000 and "bins" in note
    width = 499.5 / SURFACE_BINS
    assert xs[0] == pytest.approx(width / 2) and z[0, 0] == (wide["score"][wide["p.x"] < width]).max()


def test_a_tune_without_an_eligible_point_says_so(tmp_path):
    meta = write_tune_folder(tmp_path / "t", top_k=0, ineligible=range(24))
    assert meta["best"] is None
    page = write_tune_html(tmp_path / "t").read_text()
    assert "No point was eligible: nothing went to stage 2." in page
    assert "top_k.csv holds no point" in page and "No stage-1 trial got a score" in page
    assert "equity_top_k.csv holds no mark" in page
    assert one(page, metric="best_worst_score")["value"] is None


def test_a_folder_without_parquet_reads_the_csv_and_the_page_is_the_same(tmp_path):
    write_tune_folder(tmp_path / "t")
    first = write_tune_html(tmp_path / "t").read_bytes()
    for f in ("trials.parquet", "stage2.parquet"):
        (tmp_path / "t" / f).unlink()
    assert write_tune_html(tmp_path / "t").read_bytes() == first  # and two builds are byte-identical
    assert sorted(p.name for p in (tmp_path / "t").iterdir() if p.name.startswith(".")) == []  # no temp file left
    assert oct((tmp_path / "t" / "report.html").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("name", ["tune.json", "trials.csv", "stage2.csv", "top_k.csv", "equity_top_k.csv",
                                  "invalid.csv"])
def test_a_folder_missing_a_file_is_refused_naming_it_and_no_page_is_written(tmp_path, name):
    folder = tmp_path / "t"
    write_tune_folder(folder)
    for f in folder.glob("*.parquet"):
        f.unlink()
    (folder / name).unlink()
    with pytest.raises(ReportInputError, match=re.escape(str(folder / name)) + ": missing"):
        write_tune_html(folder)
    assert not (folder / "report.html").exists()


def test_an_unreadable_file_is_refused_naming_it_and_an_old_page_stays_whole(tmp_path):
    folder = tmp_path / "t"
    write_tune_folder(folder)
    old = write_tune_html(folder).read_bytes()
    (folder / "tune.json").write_text("{not json")
    with pytest.raises(ReportInputError, match=re.escape(str(folder / "tune.json")) + ": cannot read it"):
        write_tune_html(folder)
    write_tune_folder(folder)
    (folder / "trials.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(ReportInputError, match=re.escape(str(folder / "trials.parquet"))):
        write_tune_html(folder)
    (folder / "trials.parquet").unlink()
    pd.DataFrame({"rank": [1], "trial": [1], "scenario": ["A"], "time": ["yesterday"], "equity_usd": [1.0]}).to_csv(
        folder / "equity_top_k.csv", index=False)
    with pytest.raises(ReportInputError, match="equity_top_k.csv: column time"):
        write_tune_html(folder)
    assert (folder / "report.html").read_bytes() == old
    assert isinstance(ReportInputError("x"), report_html.ReportInputError)


def test_the_command_line_rebuilds_either_page_and_refuses_other_folders(tmp_path, capsys):
    write_tune_folder(tmp_path / "t")
    assert report.main([str(tmp_path / "t")]) == 0 and (tmp_path / "t" / "report.html").exists()
    assert report.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deskd: error: ") and "tune.json: missing" in err


def test_a_real_tune_page_quotes_its_outputs(tmp_path):
    cfg, opts = small_tune(tmp_path)
    tune(cfg, opts, quiet=True)
    page = write_tune_html(opts.out_dir).read_text()
    meta = json.loads((opts.out_dir / "tune.json").read_text())
    top = pd.read_csv(opts.out_dir / "top_k.csv")
    assert one(page, metric="best_worst_score")["value"] == meta["best"]["worst_score"] == top["worst_score"][0]
    assert {f["value"] for f in tagged(page, metric="dsr")} == {meta["overfitting"]["dsr"]["value"]}
    assert [f["value"] for f in tagged(page, metric="worst_score")] == top["worst_score"].tolist()
    eq = plot_data(page, "t-equity")
    assert len(eq) == len(top) * 3 and {t["yaxis"] for t in eq} == {"y", "y2", "y3"}  # a subplot per scenario
    surfaces = plot_data(page, "t-surfaces")
    assert len(surfaces) == 1  # ema_fast and ema_slow vary; adx_th has one value


# ---------------------------------------------------------------------------- walk-forward page

def write_walkforward_folder(folder: Path) -> dict:
    """Three splits: 1 and 3 chose a point and traded their test window; 2 found none."""
    folder.mkdir(parents=True)
    months = pd.date_range("2026-01-01", periods=7, freq="MS")
    splits, eq = [], []
    equity = {sc: 100_000.0 for sc in SCEN}
    for n in (1, 2, 3):
        write_tune_folder(folder / "splits" / f"{n:02d}", top_k=0 if n == 2 else 3,
                          ineligible=range(24) if n == 2 else (),
                          window=(_iso(months[n - 1]), _iso(months[n + 1])))
        test_from, test_to = months[n + 1] + pd.Timedelta(days=1), months[n + 2] + pd.Timedelta(days=1)
        row = {"split": n, "train_from": _iso(months[n - 1]), "train_to": _iso(months[n + 1]),
               "test_from": _iso(test_from), "test_to": _iso(test_to), "embargo_s": 86_400}
        if n == 2:
            row["note"] = "no eligible point in the train window: no test run"
        else:
            row |= {"p.a": 4, "p.b": 10 * n, "p.mode": "fast", "is_score": 0.33 - 0.01 * n}
            for k, sc in enumerate(SCEN):
                oos = 0.1 * n - 0.05 * k
                row |= {f"is_trades_{sc}": 50, f"is_expectancy_r_{sc}": 0.2, f"oos_trades_{sc}": 10 + n,
                        f"oos_expectancy_r_{sc}": oos, f"oos_net_usd_{sc}": 1000.0 * oos,
                        f"oos_over_is_{sc}": oos / 0.2}
                for i, t in enumerate(pd.date_range(test_from, test_to, freq="7D")):
                    eq.append({"scenario": sc, "split": n, "time": _iso(t), "kind": "DAY",
                               "equity_usd": equity[sc] + 100 * oos * i})
                equity[sc] += 1000 * oos
                eq.append({"scenario": sc, "split": n, "time": _iso(test_to), "kind": "END", "equity_usd": equity[sc]})
        splits.append(row)
    meta = {"deskd_version": "0.1.0", "strategy_id": "S_TEST",
            "splits_spec": {"unit": "calendar", "train": "2M", "test": "1M", "embargo": "1D", "anchored": False},
            "sampler": "grid", "trials": None, "scenarios": SCEN, "splits": splits,
            "parameter_stability": {"a": {"values": [4, 4], "distinct": 1, "mean": 4.0, "std": 0.0},
                                    "b": {"values": [10, 30], "distinct": 2, "mean": 20.0, "std": 10.0},
                                    "mode": {"values": ["fast", "fast"], "distinct": 1}},
            "out_of_sample": {sc: {"trades": 24, "net_usd": round(equity[sc] - 100_000, 2),
                                   "expectancy_r": 0.2 - 0.05 * k, "final_equity_usd": equity[sc]}
                              for k, sc in enumerate(SCEN)},
            "data": {"EURUSD": {"path": "/x/EURUSD.csv", "sha256": SHA}}, "config_sha256": "c" * 64}
    (folder / "walkforward.json").write_text(json.dumps(meta, indent=2))
    pd.DataFrame(eq).to_csv(folder / "oos_equity.csv", index=False)
    pd.DataFrame(splits).to_csv(folder / "splits.csv", index=False)
    return meta


def test_the_walkforward_page_quotes_walkforward_json_and_links_each_split_page(tmp_path):
    meta = write_walkforward_folder(tmp_path / "wf")
    page = write_walkforward_html(tmp_path / "wf").read_text()
    for n in (1, 2, 3):
        assert (tmp_path / "wf" / "splits" / f"{n:02d}" / "report.html").exists()
        assert f'href="splits/{n:02d}/report.html"' in page
    for row in meta["splits"]:
        n = row["split"]
        if "note" in row:
            assert not tagged(page, split=n)
            continue
        assert one(page, split=n, metric="is_score")["value"] == row["is_score"]
        assert one(page, split=n, metric="p.b")["text"] == str(row["p.b"])
        for sc in SCEN:
            cell = one(page, split=n, scenario=sc, metric="oos_expectancy_r")
            assert cell["value"] == row[f"oos_expectancy_r_{sc}"]
            assert shown(cell["text"]) == pytest.approx(row[f"oos_expectancy_r_{sc}"], abs=5e-5)
            assert one(page, split=n, scenario=sc, metric="oos_over_is")["value"] == row[f"oos_over_is_{sc}"]
            assert one(page, split=n, scenario=sc, metric="oos_trades")["value"] == row[f"oos_trades_{sc}"]
    assert "no eligible point in the train window: no test run" in page
    for sc, o in meta["out_of_sample"].items():
        for key in ("trades", "expectancy_r", "net_usd", "final_equity_usd"):
            assert one(page, scenario=sc, metric=f"oos_total_{key}")["value"] == o[key]
        assert shown(one(page, scenario=sc, metric="oos_total_net_usd")["text"]) == o["net_usd"]
    assert "train 2 months, test 1 month, embargo 1 day" in page and "rolling" in page
    assert one(page, metric="distinct", param="b")["value"] == 2
    # the stitched curve: one line per scenario through every mark, the test windows shaded
    eq = pd.read_csv(tmp_path / "wf" / "oos_equity.csv")
    lines = plot_data(page, "w-equity")
    assert [t["name"] for t in lines] == [f"scenario {sc}" for sc in SCEN]
    assert lines[0]["y"] == eq[eq["scenario"] == "A"]["equity_usd"].tolist()
    layout = re.search(r'Plotly\.newPlot\(\s*"w-equity",', page)
    assert layout and page.count('"text":"split 2"', layout.end(), layout.end() + 200_000) == 1
    stab = plot_data(page, "w-stability")
    assert [t["name"] for t in stab] == ["a", "b", "mode"] and stab[1]["y"] == [10, 30]


def test_split_pages_are_built_when_missing_or_stale_and_a_broken_split_is_listed_without_a_link(tmp_path):
    wf = tmp_path / "wf"
    write_walkforward_folder(wf)
    kept = wf / "splits" / "01" / "report.html"
    kept.write_text("<html>already built</html>")
    stale = wf / "splits" / "03" / "report.html"
    stale.write_text("<html>stale</html>")
    t = (wf / "splits" / "03" / "tune.json").stat().st_mtime
    os.utime(stale, (t - 60, t - 60))
    os.utime(kept, (t + 60, t + 60))
    (wf / "splits" / "02" / "tune.json").unlink()
    page = write_walkforward_html(wf).read_text()
    assert kept.read_text() == "<html>already built</html>"
    assert "deskd tune: S_TEST" in stale.read_text()
    assert not (wf / "splits" / "02" / "report.html").exists()
    assert 'href="splits/02/report.html"' not in page and "split 2: no tune page" in page
    assert "tune.json: missing" in page


@pytest.mark.parametrize("name", ["walkforward.json", "oos_equity.csv"])
def test_a_walkforward_folder_missing_a_file_is_refused_naming_it(tmp_path, name):
    wf = tmp_path / "wf"
    write_walkforward_folder(wf)
    (wf / name).unlink()
    with pytest.raises(ReportInputError, match=re.escape(str(wf / name)) + ": missing"):
        write_walkforward_html(wf)
    assert not (wf / "report.html").exists()
