"""report.html of a real tune and a real walk-forward (small settings on the bundled sample),
opened in headless Chromium as tests/e2e/test_report_html.py opens the backtest's page: no
console error, every plot drawn, and the numbers shown are tune.json's, top_k.csv's,
walkforward.json's and splits.csv's.

``python -m tests.e2e.test_tune_report [TUNE_DIR WF_DIR]`` builds the two pages (of small real
runs when no folder is given) and saves 1400 x 2000 screenshots to /tmp/tune_report.png and
/tmp/wf_report.png.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from deskd.research.splits import calendar_splits, parse_span
from deskd.research.tuning.report import write_tune_html, write_walkforward_html
from deskd.research.tuning.tune import tune
from deskd.research.walkforward import WalkForwardOptions, walkforward
from tests.conftest import EXAMPLE
from tests.e2e.browser import chrome, open_report
from tests.research.test_tuning import S1, SMALL, s1_config, small_tune

pytestmark = pytest.mark.e2e

TUNE_PLOTS = {"t-hist", "t-parcoords", "t-surfaces", "t-splits", "t-equity"}
WF_PLOTS = {"w-equity", "w-isoos", "w-stability"}


def _ts(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp())


def run_tune(folder: Path) -> Path:
    """The small real grid tune of tests/research/test_tuning.py (5 valid S1 points, top 3
    under A, B, C) into ``folder``/t, its page built; returns the tune folder."""
    cfg, opts = small_tune(folder)
    tune(cfg, opts, quiet=True)
    write_tune_html(opts.out_dir)
    return opts.out_dir


def run_walkforward(folder: Path) -> Path:
    """A real walk-forward on the sample: 3 rolling splits (train 2 months, test 1, embargo
    1 day), the small S1 grid tuned on each, scenarios A and C; its page built."""
    cfg = s1_config(space=SMALL, top_k=2, min_trades_per_split=1, stage2_scenarios=["A", "C"])
    spans = {"train": "2M", "test": "1M", "embargo": "1D"}
    splits = calendar_splits(_ts(2026, 1, 16), _ts(2026, 7, 1), *(parse_span(f"--{k}", v) for k, v in spans.items()))
    out = folder / "wf"
    walkforward(cfg, WalkForwardOptions(S1, out, splits, {"unit": "calendar", **spans, "anchored": False},
                                        f"sqlite:///{folder}/wf.db", config_dir=EXAMPLE.parent), quiet=True)
    write_walkforward_html(out)
    return out


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    return run_tune(tmp_path_factory.mktemp("tune"))


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> Path:
    return run_walkforward(tmp_path_factory.mktemp("walkforward"))


def _plots_drawn(driver: webdriver.Chrome) -> set[str]:
    plots = driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
    for p in plots:
        assert p.find_elements(By.CSS_SELECTOR, "svg.main-svg"), p.get_attribute("id")
    return {p.get_attribute("id") for p in plots}


def _shown(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def _value(el) -> object:
    return json.loads(el.get_attribute("data-value"))


def test_a_real_tune_page_opens_without_errors_and_shows_tune_json_and_top_k_csv(driver, tuned):
    assert open_report(driver, tuned / "report.html") == []
    assert _plots_drawn(driver) == TUNE_PLOTS
    meta = json.loads((tuned / "tune.json").read_text())
    top = pd.read_csv(tuned / "top_k.csv")
    trials = pd.read_csv(tuned / "trials.csv")

    # the chosen point's worst-scenario score, as tune.json and top_k.csv give it
    el = driver.find_element(By.CSS_SELECTOR, '.kpis [data-metric="best_worst_score"]')
    assert _value(el) == meta["best"]["worst_score"] == top["worst_score"][0]
    assert el.text == f"{meta['best']['worst_score']:+.4f} R"
    # the Deflated Sharpe Ratio and the PBO, in the overfitting section
    dsr = driver.find_element(By.CSS_SELECTOR, '#overfitting [data-metric="dsr"]')
    assert _value(dsr) == meta["overfitting"]["dsr"]["value"]
    assert _shown(dsr.text) == round(meta["overfitting"]["dsr"]["value"], 4)
    n = driver.find_element(By.CSS_SELECTOR, '#overfitting [data-metric="dsr_n_trials"]')
    assert int(n.text) == meta["overfitting"]["dsr"]["n_trials"]
    pbo = driver.find_element(By.CSS_SELECTOR, '#overfitting [data-metric="pbo"]')
    assert _shown(pbo.text) == round(meta["overfitting"]["pbo"]["value"], 4)
    assert "DSR > 0.95" in driver.find_element(By.ID, "overfitting").text
    # the top-k table: one row per point of top_k.csv, its worst score and per-scenario scores
    rows = driver.find_elements(By.CSS_SELECTOR, "table.topk tbody tr")
    assert len(rows) == len(top)
    for r in top.to_dict("records"):
        cell = driver.find_element(By.CSS_SELECTOR, f'table.topk [data-rank="{r["rank"]}"][data-metric="worst_score"]')
        assert _shown(cell.text) == pytest.approx(r["worst_score"], abs=5e-5)
        c = driver.find_element(By.CSS_SELECTOR, f'table.topk [data-rank="{r["rank"]}"][data-scenario="C"]'
                                                 f'[data-metric="trades"]')
        assert int(c.text.replace(",", "")) == r["trades_C"]
    # parallel coordinates: every scored stage-1 trial, an axis per param plus the score
    pc = driver.execute_script("const t = document.getElementById('t-parcoords')._fullData[0];"
                               "return [t.dimensions.map(d => d.label), t.line.color.length];")
    assert pc == [["adx_th", "ema_fast", "ema_slow", "score (R)"], int(trials["score"].notna().sum())]
    # the equity curves: a subplot per stage-2 scenario, a line per top-k point in each
    eq = driver.execute_script("const g = document.getElementById('t-equity');"
                               "return [g._fullData.length, Object.keys(g._fullLayout).filter(k => /^yaxis\\d*$/.test(k))"
                               ".length];")
    assert eq == [len(top) * len(meta["stage2_scenarios"]), len(meta["stage2_scenarios"])]


def test_a_real_walkforward_page_opens_without_errors_shows_walkforward_json_and_links_each_split(driver, walked):
    assert open_report(driver, walked / "report.html") == []
    assert _plots_drawn(driver) == WF_PLOTS
    meta = json.loads((walked / "walkforward.json").read_text())
    splits = pd.read_csv(walked / "splits.csv")

    # a split's out-of-sample expectancy per scenario: walkforward.json's, and splits.csv's
    for row in meta["splits"]:
        for sc in meta["scenarios"]:
            el = driver.find_element(By.CSS_SELECTOR, f'table.splits [data-split="{row["split"]}"]'
                                                      f'[data-scenario="{sc}"][data-metric="oos_expectancy_r"]')
            assert _value(el) == row[f"oos_expectancy_r_{sc}"]
            assert _shown(el.text) == round(row[f"oos_expectancy_r_{sc}"], 4)
            csv = splits.loc[splits["split"] == row["split"], f"oos_expectancy_r_{sc}"].item()
            assert _value(el) == pytest.approx(csv, rel=1e-12)
    for sc, o in meta["out_of_sample"].items():
        el = driver.find_element(By.CSS_SELECTOR, f'[data-scenario="{sc}"][data-metric="oos_total_net_usd"]')
        assert _shown(el.text) == o["net_usd"]
        # the stitched curve ends at the final equity walkforward.json gives
        last = driver.execute_script(
            "const t = document.getElementById('w-equity')._fullData.find(t => t.name === arguments[0]);"
            "return t.y[t.y.length - 1];", f"scenario {sc}")
        assert last == pytest.approx(o["final_equity_usd"], abs=0.01)
    shaded = driver.execute_script("return document.getElementById('w-equity')._fullLayout.shapes"
                                   ".filter(s => s.type === 'rect').length;")
    assert shaded == len(meta["splits"])  # every test window
    # each split links its own tune page, which opens without errors too
    links = driver.find_elements(By.CSS_SELECTOR, "#tunes a")
    assert [a.get_attribute("href").split("/wf/")[1] for a in links] == [
        f"splits/{r['split']:02d}/report.html" for r in meta["splits"]]
    first = walked / "splits" / "01"
    assert open_report(driver, first / "report.html") == []
    assert _plots_drawn(driver) == TUNE_PLOTS
    assert driver.title == f"deskd tune: {S1} on EURUSD"
    train = meta["splits"][0]
    assert f"{train['train_from'][:10]} {train['train_from'][11:16]} to " in driver.find_element(
        By.CSS_SELECTOR, "dl.facts").text


def screenshot(page: Path, dest: Path) -> None:
    """Save a 1400 x 2000 screenshot of ``page`` (raises SystemExit on a console error)."""
    d = chrome(shutil.which("chromium") or "chromium", shutil.which("chromedriver") or "chromedriver")
    try:
        errors = open_report(d, page)
        if errors:
            raise SystemExit(f"{page}: console errors: {errors}")
        d.save_screenshot(str(dest))
    finally:
        d.quit()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) == 3:
            tuned_dir, wf_dir = Path(sys.argv[1]), Path(sys.argv[2])
            write_tune_html(tuned_dir)
            write_walkforward_html(wf_dir)
        else:
            tuned_dir, wf_dir = run_tune(Path(tmp)), run_walkforward(Path(tmp))
        screenshot(tuned_dir / "report.html", Path("/tmp/tune_report.png"))
        screenshot(wf_dir / "report.html", Path("/tmp/wf_report.png"))
