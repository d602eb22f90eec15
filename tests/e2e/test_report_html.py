"""report.html of the real `deskd backtest`, opened in headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium through /usr/bin/chromedriver; nothing is downloaded):
no console error, every plot drawn, and the numbers on the page are report.json's.

``python -m tests.e2e.test_report_html docs/report.png`` retakes the README's screenshot
(scenario A of the sample, 1400 x 2000).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.conftest import EXAMPLE, deskd_cmd, run
from tests.e2e.browser import chrome, open_report
from tests.research.report_helpers import tiny_bar_files

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def sample_a(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "a"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--out", str(out), "--quiet")
    return out


def test_the_sample_report_opens_without_errors_and_shows_report_json_numbers(driver, sample_a):
    assert open_report(driver, sample_a / "report.html") == []
    report = json.loads((sample_a / "report.json").read_text())["scenarios"]["A"]
    plots = driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
    assert len(plots) == 9
    for p in plots:
        assert p.find_elements(By.CSS_SELECTOR, "svg.main-svg"), p.get_attribute("id")
    for key in ("net_pnl_usd", "trades"):
        el = driver.find_element(By.CSS_SELECTOR, f'.kpis [data-scenario="A"][data-metric="{key}"]')
        assert json.loads(el.get_attribute("data-value")) == report["overall"][key]
        shown = float(el.text.split()[0].replace(",", ""))
        assert shown == report["overall"][key], el.text
    assert driver.find_element(By.CSS_SELECTOR, '.kpis [data-metric="net_pnl_usd"]').text.endswith(" USD")
    assert not driver.find_elements(By.CSS_SELECTOR, ".banner.wiped")
    # the drawdown the page draws is the one report.json quotes (measured at every bar close)
    drawn = driver.execute_script(
        "const t = document.getElementById('s0-equity')._fullData.find(t => t.name === 'drawdown (USD)');"
        "return Math.max(...Array.from(t.y, v => -v));")
    assert abs(drawn - report["overall"]["max_drawdown_usd"]) < 0.011
    # the breakdowns: report.json's payoff and longest drawdown, and expectancy by hour as it says
    b = report["breakdowns"]
    for key, want in (("breakdowns.payoff.payoff_ratio", b["payoff"]["payoff_ratio"]),
                      ("breakdowns.drawdown_duration.days", b["drawdown_duration"]["days"])):
        el = driver.find_element(By.CSS_SELECTOR, f'[data-scenario="A"][data-metric="{key}"]')
        assert json.loads(el.get_attribute("data-value")) == want
    hours = driver.execute_script("const t = document.getElementById('s0-time').data[0]; return [t.x, t.y];")
    assert hours[0] == list(b["by_hour_utc"]) and hours[1] == [v["expectancy_r"] for v in b["by_hour_utc"].values()]
    # the excursion boxes are report.json's percentiles of every decision's bracket, by outcome
    boxes = driver.execute_script("return document.getElementById('s0-excursions').data.map("
                                  "t => [t.xaxis, t.x[0], t.lowerfence[0], t.q1[0], t.median[0], t.q3[0], "
                                  "t.upperfence[0], t.mean[0]]);")
    panels = ("mae_pips", "mfe_pips", "mae_atr", "mfe_atr")
    want = [[f"x{i + 1}" if i else "x", outcome, *(b["mae_mfe_by_cf_result"][outcome][key][k]
                                                   for k in ("p10", "p25", "p50", "p75", "p90", "mean"))]
            for i, key in enumerate(panels) for outcome in ("WIN", "LOSS")]
    assert boxes == want
    regime_rows = driver.find_elements(By.CSS_SELECTOR, 'table[data-group="signals_by_regime"] tbody tr')
    assert [r.find_element(By.TAG_NAME, "th").text for r in regime_rows] == list(b["signals_by_regime"])
    skip_rows = driver.find_elements(By.CSS_SELECTOR, 'table[data-group="skips"] tbody tr')
    assert [r.find_element(By.TAG_NAME, "th").text for r in skip_rows] == list(b["skips"]["by_reason"])
    # the candles and this scenario's trades on them: entries, exits, both brackets
    legend = driver.find_element(By.ID, "s0-price").text
    for name in ("EURUSD", "stop-loss", "take-profit", "entry", "exit"):
        assert name in legend


def test_a_run_without_trades_opens_without_errors_and_says_so(driver, tmp_path):
    bars = tiny_bar_files(tmp_path / "bars")
    out = tmp_path / "out"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--data-timezone", "UTC",
        *[a for s, p in bars.items() for a in ("--data", f"{s}={p}")], "--out", str(out), "--quiet")
    assert open_report(driver, out / "report.html") == []
    assert "No closed trades in scenario A" in driver.find_element(By.ID, "scenario-A").text
    el = driver.find_element(By.CSS_SELECTOR, '.kpis [data-scenario="A"][data-metric="trades"]')
    assert el.text == "0"

    # the same run with its account wiped out (report.json flagged as the backtest flags it, page
    # rebuilt): a red banner
    report = json.loads((out / "report.json").read_text())
    report["scenarios"]["A"].update(wiped_out=True, min_equity_usd=9_000.0)
    (out / "report.json").write_text(json.dumps(report))
    subprocess.run([sys.executable, "-m", "deskd.research.report_html", str(out)], check=True,
                   capture_output=True, timeout=120)
    assert open_report(driver, out / "report.html") == []
    banner = driver.find_element(By.CSS_SELECTOR, '.banner.wiped[data-scenario="A"]')
    assert banner.is_displayed() and banner.text.startswith("Account wiped out")
    assert banner.value_of_css_property("background-color") == "rgba(198, 40, 40, 1)"


def test_a_run_without_a_decision_file_opens_without_errors_and_says_why(driver, tmp_path):
    out = tmp_path / "none"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--decisions", "none", "--out", str(out),
        "--quiet")
    assert not list(out.glob("decisions.*"))
    assert open_report(driver, out / "report.html") == []
    text = driver.find_element(By.ID, "scenario-A").text
    assert "the run wrote no decision file (deskd backtest --decisions none)" in text
    # the totals still draw, from report.json's counts
    totals = driver.find_element(By.ID, "s0-skips").text
    assert "position_open" in totals and "traded" in totals


def screenshot(dest: Path) -> None:
    """Run scenario A of the sample and save a 1400 x 2000 screenshot of its report.html."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a"
        subprocess.run([*deskd_cmd(), "backtest", "--config", str(EXAMPLE), "--scenarios", "A",
                        "--out", str(out), "--quiet"], check=True, timeout=600)
        d = chrome(shutil.which("chromium") or "chromium", shutil.which("chromedriver") or "chromedriver")
        try:
            errors = open_report(d, out / "report.html")
            if errors:
                raise SystemExit(f"console errors: {errors}")
            d.save_screenshot(str(dest))
        finally:
            d.quit()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
