"""The real `deskd montecarlo` on a real backtest of the bundled sample (scenario A): outputs,
--json, exit codes of bad input, and its report.html in headless Chromium.

``python -m tests.e2e.test_montecarlo_cli [MC_DIR]`` saves a 1400 x 3000 screenshot of the
page (of a fresh run when no folder is given) to /tmp/montecarlo_report.png.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.conftest import EXAMPLE, run
from tests.e2e.browser import open_report
from tests.research.test_montecarlo import make_run

pytestmark = pytest.mark.e2e

PLOTS = {"trades-fan", "trades-dd", "trades-final", "days-fan", "days-dd", "days-final"}


def backtest_and_montecarlo(folder: Path) -> tuple[Path, str]:
    """A backtest of the sample (scenario A) into ``folder``/bt and its Monte Carlo (500 sims);
    returns the Monte Carlo folder and the command's stdout."""
    bt = folder / "bt"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--out", str(bt), "--quiet", "--decisions", "none")
    p = run("montecarlo", str(bt), "--sims", "500", "--seed", "5")
    return bt / "montecarlo-A", p.stdout


@pytest.fixture(scope="module")
def mc(tmp_path_factory) -> tuple[Path, str]:
    return backtest_and_montecarlo(tmp_path_factory.mktemp("mc"))


def test_montecarlo_writes_its_outputs_and_a_summary(mc):
    out, stdout = mc
    assert {p.name for p in out.iterdir()} == {"montecarlo.json", "paths.parquet", "report.html", "manifest.json"}
    meta = json.loads((out / "montecarlo.json").read_text())
    assert meta["inputs"]["scenario"] == "A" and meta["inputs"]["sims"] == 500
    assert meta["inputs"]["kind"] == "backtest"
    assert meta["results"]["trades"]["trades"] > 100
    assert meta["results"]["daily"]["days"] > 50
    assert "trades:" in stdout and "daily:" in stdout and "outputs:" in stdout
    assert all(len(line) <= 80 for line in stdout.splitlines() if not line.startswith("outputs: "))


def test_json_prints_montecarlo_json_and_the_same_seed_gives_the_same_file(mc, tmp_path):
    out, _ = mc
    p = run("montecarlo", str(out.parent), "--sims", "500", "--seed", "5", "--out", str(tmp_path / "again"),
            "--json")
    assert json.loads(p.stdout)["results"] == json.loads((out / "montecarlo.json").read_text())["results"]
    assert (tmp_path / "again" / "montecarlo.json").read_bytes() == (out / "montecarlo.json").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--scenario", "Z"], "--scenario Z: not in"),
    (["--spread-mult", "1.5,0.8"], "--spread-mult"),
    (["--block", "ten"], "--block ten"),
])
def test_bad_options_exit_2_with_one_error_line_and_write_nothing(mc, tmp_path, args, message):
    out, _ = mc
    target = tmp_path / "never"
    p = run("montecarlo", str(out.parent), "--out", str(target), *args, check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("deskd: error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert message in p.stderr
    assert not target.exists()


def test_not_a_run_and_too_few_trades_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    p = run("montecarlo", str(tmp_path / "empty"), check=False)
    assert p.returncode == 2 and "not a backtest or walk-forward" in p.stderr
    one = make_run(tmp_path / "one", [1.0])
    p = run("montecarlo", str(one), check=False)
    assert p.returncode == 2 and "at least 2" in p.stderr, p.stderr
    assert not (one / "montecarlo-A").exists()


def _plots_drawn(driver: webdriver.Chrome) -> set[str]:
    plots = driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
    for p in plots:
        assert p.find_elements(By.CSS_SELECTOR, "svg.main-svg"), p.get_attribute("id")
    return {p.get_attribute("id") for p in plots}


def _at(meta: dict, path: str):
    for part in path.split("."):
        meta = meta[part]
    return meta


def test_report_draws_every_plot_without_console_errors_and_shows_the_json(mc, driver):
    out, _ = mc
    errors = open_report(driver, out / "report.html")
    assert errors == []
    meta = json.loads((out / "montecarlo.json").read_text())
    # cost noise needs the per-side cost split in trades.csv (being added): its plot, or a note
    skipped = meta["results"]["cost_noise"]["skipped"]
    plots = PLOTS | (set() if skipped else {"cost-pnl"})
    assert _plots_drawn(driver) == plots
    shown = driver.find_elements(By.CSS_SELECTOR, "[data-metric]")
    assert len(shown) >= 15
    for el in shown:
        assert json.loads(el.get_attribute("data-value")) == _at(meta, el.get_attribute("data-metric"))
    p_ruin = driver.find_element(By.CSS_SELECTOR, '[data-metric="results.trades.p_ruin"]')
    assert p_ruin.text == f"{meta['results']['trades']['p_ruin'] * 100:.2f} %"
    median = driver.find_element(By.CSS_SELECTOR, '[data-metric="results.trades.max_dd_frac.p50"]')
    assert median.text == f"{meta['results']['trades']['max_dd_frac']['p50'] * 100:.2f} %"
    if skipped:
        assert "cost noise skipped" in driver.find_element(By.ID, "mc-cost").text
    else:
        shown_p = driver.find_element(By.CSS_SELECTOR, '[data-metric="results.cost_noise.p_net_expectancy_below_zero"]')
        assert shown_p.text == f"{meta['results']['cost_noise']['p_net_expectancy_below_zero'] * 100:.1f} %"
    assert driver.find_elements(By.CSS_SELECTOR, "script[src]") == []  # plotly.js embedded, nothing fetched
    assert driver.page_source.count("Plotly.newPlot") == len(plots)


def main(argv: list[str]) -> int:
    import shutil

    from tests.e2e.browser import chrome

    folder = Path(argv[0]) if argv else backtest_and_montecarlo(Path(tempfile.mkdtemp()))[0]
    d = chrome(shutil.which("chromium") or "chromium", shutil.which("chromedriver") or "chromedriver", 1400, 3000)
    try:
        print(open_report(d, folder / "report.html"))
        d.save_screenshot("/tmp/montecarlo_report.png")
    finally:
        d.quit()
    print("/tmp/montecarlo_report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
