"""The research chain as a desk runs it, with the real commands on the bundled sample:
walkforward -> montecarlo -> stress -> verdict; their outputs, exit codes, and the stress and
verdict pages in headless Chromium.

``python -m tests.e2e.test_stress_verdict_cli`` saves screenshots of both pages (of a fresh
chain) to /tmp/stress_report.png and /tmp/verdict_report.png.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from tests.conftest import EXAMPLE, run
from tests.e2e.browser import open_report
from tests.e2e.test_montecarlo_cli import _at

pytestmark = pytest.mark.e2e
S1 = "S1_TREND_EMA_ATR_ADX"


def chain(folder: Path) -> tuple[Path, dict[str, str]]:
    """Walk-forward of S1 on the sample's EURUSD, then Monte Carlo, stress and verdict on it;
    returns the walk-forward folder and each command's stdout."""
    wf = folder / "wf"
    out = {}
    run("walkforward", "--config", str(EXAMPLE), "--strategy", S1, "--symbols", "EURUSD", "--train", "2M",
        "--test", "1M", "--embargo", "1D", "--trials", "4", "--top-k", "2", "--workers", "1", "--out", str(wf),
        "--quiet")
    out["montecarlo"] = run("montecarlo", str(wf), "--sims", "500", "--seed", "3").stdout
    out["stress"] = run("stress", str(wf), "--neighbours", "12", "--workers", "1", "--seed", "9").stdout
    p = run("verdict", str(wf), check=False)
    assert p.returncode in (0, 1), p.stderr
    out["verdict"] = p.stdout
    out["verdict_rc"] = str(p.returncode)
    return wf, out


@pytest.fixture(scope="module")
def wf(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    return chain(tmp_path_factory.mktemp("chain"))


def test_stress_writes_its_outputs_and_an_80_column_summary(wf):
    folder, out = wf
    st = folder / "stress-A"
    assert {p.name for p in st.iterdir()} == {"stress.json", "cost.csv", "neighbours.csv", "report.html",
                                              "manifest.json"}
    meta = json.loads((st / "stress.json").read_text())
    assert [r["multiple"] for r in meta["cost"]["curve"]] == [1.0, 1.25, 1.5, 2.0, 2.5, 3.0]
    assert meta["params"]["neighbours_run"] == 12 and meta["inputs"]["path"] == "fast"
    assert "break-even cost multiple" in out["stress"]
    assert all(len(line) <= 80 for line in out["stress"].splitlines() if not line.startswith("outputs: "))


def test_every_folder_of_the_chain_verifies_and_a_changed_byte_fails_naming_it(wf, tmp_path):
    """walkforward (with each split's tune), montecarlo, stress and verdict folders each carry a
    manifest.json that deskd verify checks; the walk-forward's lists its splits' folders and
    leaves out the study and the later commands' folders (warnings, not failures)."""
    import shutil

    folder, _ = wf
    for sub, kind in (("", "walkforward"), ("splits/01", "tune"), ("montecarlo-A", "montecarlo"),
                      ("stress-A", "stress"), ("verdict", "verdict")):
        p = run("verify", str(folder / sub), "--json", check=False)
        got = json.loads(p.stdout)
        assert p.returncode == 0 and got["ok"] and got["kind"] == kind and got["files_checked"] >= 2, (sub, p.stdout)
    wf_manifest = json.loads((folder / "manifest.json").read_text())
    assert "splits/01/trials.parquet" in wf_manifest["files"] and "study.db" not in wf_manifest["files"]
    warned = {w["file"] for w in json.loads(run("verify", str(folder), "--json").stdout)["warnings"]}
    assert warned == {"montecarlo-A/", "stress-A/", "verdict/"}
    copy = shutil.copytree(folder, tmp_path / "wf")
    trades = copy / "oos_trades.csv"
    trades.write_text(trades.read_text().replace(",", ";", 1))
    p = run("verify", str(copy), check=False)
    assert p.returncode == 1 and "deskd verify: FAILED oos_trades.csv: SHA-256" in p.stderr, p.stderr


def test_the_same_seed_gives_the_same_stress(wf, tmp_path):
    folder, _ = wf
    p = run("stress", str(folder), "--neighbours", "12", "--workers", "2", "--seed", "9", "--out",
            str(tmp_path / "again"), "--json")
    again = json.loads(p.stdout)
    first = json.loads((folder / "stress-A" / "stress.json").read_text())
    assert again["cost"] == first["cost"] and again["params"] == first["params"]  # 2 processes or 1: same


def test_verdict_exit_code_matches_its_gates(wf):
    folder, out = wf
    doc = json.loads((folder / "verdict" / "verdict.json").read_text())
    gates = doc["runs"][0]["gates"]
    assert len(gates) == 6 and all(g["value"] is not None for g in gates)  # every piece of evidence was found
    assert out["verdict_rc"] == ("0" if all(g["passed"] for g in gates) else "1")
    assert doc["passed"] is (out["verdict_rc"] == "0")


@pytest.mark.parametrize("cmd, args, message", [
    ("stress", ["--multiples", "1,x"], "--multiples 1,x"),
    ("stress", ["--scenario", "Z"], "--scenario Z"),
    ("stress", ["--jitter-pct", "150"], "--jitter-pct 150"),
])
def test_bad_stress_options_exit_2_with_one_line_and_write_nothing(wf, tmp_path, cmd, args, message):
    folder, _ = wf
    target = tmp_path / "never"
    p = run(cmd, str(folder), "--out", str(target), *args, check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("deskd: error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert message in p.stderr and not target.exists()


def test_stress_page_draws_the_cost_curve_and_heatmap(wf, driver):
    folder, _ = wf
    st = folder / "stress-A"
    assert open_report(driver, st / "report.html") == []
    ids = {p.get_attribute("id") for p in driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")}
    assert ids == {"stress-cost", "stress-heatmap", "stress-neighbours"}
    meta = json.loads((st / "stress.json").read_text())
    shown = driver.find_elements(By.CSS_SELECTOR, "[data-metric]")
    assert len(shown) >= 4
    for el in shown:
        assert json.loads(el.get_attribute("data-value")) == _at(meta, el.get_attribute("data-metric"))
    # the curve holds one point per multiple, the heatmap one row per tuned param
    n = driver.execute_script("return document.getElementById('stress-cost').data[0].x.length")
    assert n == len(meta["cost"]["curve"])
    rows = driver.execute_script("return document.getElementById('stress-heatmap').data[0].y")
    assert sorted(rows) == sorted(meta["params"]["by_move"])


def test_verdict_page_shows_every_gate_and_the_evidence(wf, driver):
    folder, _ = wf
    assert open_report(driver, folder / "verdict" / "report.html") == []
    doc = json.loads((folder / "verdict" / "verdict.json").read_text())
    cells = driver.find_elements(By.CSS_SELECTOR, "#gates [data-metric]")
    assert len(cells) == 6
    for el, g in zip(cells, doc["runs"][0]["gates"]):
        assert el.get_attribute("data-metric") == f"gates.{g['key']}"
        assert json.loads(el.get_attribute("data-value")) == g["value"]
        assert el.text.endswith("PASS" if g["passed"] else "FAIL")
    banner = driver.find_element(By.ID, "verdict").text
    assert banner.startswith("PASS" if doc["passed"] else "FAIL")
    ids = {p.get_attribute("id") for p in driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")}
    assert ids == {"fan-0", "cost-0", "heat-0"}


def main(argv: list[str]) -> int:
    import shutil

    from tests.e2e.browser import chrome

    folder = Path(argv[0]) if argv else chain(Path(tempfile.mkdtemp()))[0]
    d = chrome(shutil.which("chromium") or "chromium", shutil.which("chromedriver") or "chromedriver", 1400, 2400)
    try:
        for page, png in ((folder / "stress-A" / "report.html", "/tmp/stress_report.png"),
                          (folder / "verdict" / "report.html", "/tmp/verdict_report.png")):
            print(open_report(d, page))
            d.save_screenshot(png)
            print(png)
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
