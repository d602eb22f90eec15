"""``deskd view`` as a user runs it: the real command on the sample's backtest, bound to
127.0.0.1 on a port the system picks (--port 0: tests run side by side), driven in headless
Chromium (Debian's chromium and chromium-driver through Selenium; nothing is downloaded). The
page loads with no console error, Next / Prev move through the decisions as the API pages them,
a filter narrows the trades table to the API's count, and the decision chart draws the bracket
the API gives. Bad input ends in one ``deskd: error:`` line and exit 2; Ctrl-C stops cleanly.

``python -m tests.e2e.test_view docs`` retakes the README's screenshots (docs/view_runs.png,
docs/view_decisions.png).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import EXAMPLE, deskd_cmd, run
from tests.e2e.browser import DRAWN_WITHIN_S, chrome
from tests.viewer.runs import write_walkforward

pytestmark = pytest.mark.e2e

STARTS_WITHIN_S = 60


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "sample"
    run("backtest", "--config", str(EXAMPLE), "--out", str(out), "--quiet")
    return out


@contextmanager
def viewer(*run_dirs: Path, stopped: list | None = None) -> Iterator[str]:
    """The real ``deskd view`` of ``run_dirs`` on a free loopback port; yields its URL, stops
    it with SIGINT (Ctrl-C) at the end and appends (exit code, stderr) to ``stopped``."""
    p = subprocess.Popen(deskd_cmd() + ["view", *map(str, run_dirs), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(STARTS_WITHIN_S, p.kill)
    timer.start()
    try:
        line = p.stdout.readline() if p.stdout else ""
        timer.cancel()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            p.kill()
            raise AssertionError(f"deskd view printed no URL: {line!r}\n{p.stderr.read() if p.stderr else ''}")
        yield found.group(0)
    finally:
        timer.cancel()
        p.send_signal(signal.SIGINT)
        try:
            rc = p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        if stopped is not None:
            stopped.append((rc, p.stderr.read() if p.stderr else ""))


def api(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path.lstrip("/"), timeout=60) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def url(sample) -> Iterator[str]:
    with viewer(sample) as u:
        yield u


def settled(driver) -> bool:
    """Every API call of the page has answered."""
    return driver.execute_script("return document.body.dataset.pending === '0';")


def wait(driver, condition, what: str) -> None:
    WebDriverWait(driver, DRAWN_WITHIN_S, poll_frequency=0.1).until(
        lambda d: settled(d) and condition(d), message=what)


def open_page(driver, url: str) -> None:
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(url)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr"), "the runs table")


def tab(driver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{name}"]').click()


def errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_loads_every_view_without_a_console_error(driver, url, sample):
    open_page(driver, url)
    rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
    assert len(rows) == 3  # one run, scenarios A, B, C
    net = json.loads((sample / "report.json").read_text())["scenarios"]["A"]["overall"]["net_pnl_usd"]
    assert f"{net:,.2f}".rstrip("0").rstrip(".") in rows[0].text
    assert driver.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
    tab(driver, "equity")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#equity-chart svg.main-svg"), "the equity chart")
    tab(driver, "trades")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#trades-table tbody tr"), "the trades table")
    tab(driver, "decisions")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#dec-chart svg.main-svg"), "the decision chart")
    assert errors(driver) == []


def shown_time(driver) -> str:
    return driver.find_element(By.ID, "dec-time").text


def test_next_and_prev_move_through_the_decisions_as_the_api_pages_them(driver, url):
    open_page(driver, url)
    tab(driver, "decisions")
    page = api(url, "/api/runs/0/decisions?scenario=A&offset=0&limit=3")
    times = [r["decision_time"] for r in page["rows"]]
    wait(driver, lambda d: d.find_elements(By.ID, "dec-time"), "the first decision")
    assert shown_time(driver) == times[0]
    assert driver.find_element(By.ID, "dec-pos").text == f"1 of {page['total']}"
    for k in (1, 2):
        driver.find_element(By.ID, "dec-next").click()
        wait(driver, lambda d, k=k: d.find_element(By.ID, "dec-pos").text.startswith(f"{k + 1} of"), f"decision {k + 1}")
        assert shown_time(driver) == times[k]
        assert driver.find_element(By.ID, "dec-detail").get_attribute("data-row") == str(page["rows"][k]["row"])
    driver.find_element(By.ID, "dec-prev").click()
    wait(driver, lambda d: d.find_element(By.ID, "dec-pos").text.startswith("2 of"), "back to decision 2")
    assert shown_time(driver) == times[1]
    # a filter pages through its own decisions
    Select(driver.find_element(By.ID, "d-action")).select_by_value("TRADED")
    traded = api(url, "/api/runs/0/decisions?scenario=A&action=TRADED&offset=0&limit=2")
    wait(driver, lambda d: d.find_element(By.ID, "dec-pos").text == f"1 of {traded['total']}", "traded only")
    assert shown_time(driver) == traded["rows"][0]["decision_time"]
    driver.find_element(By.ID, "dec-next").click()
    wait(driver, lambda d: d.find_element(By.ID, "dec-pos").text.startswith("2 of"), "the second traded decision")
    assert shown_time(driver) == traded["rows"][1]["decision_time"]
    assert errors(driver) == []


def test_a_filter_narrows_the_trades_table_to_the_api_s_count(driver, url):
    open_page(driver, url)
    tab(driver, "trades")
    every = api(url, "/api/runs/0/trades?scenario=A&limit=1")["total"]
    wait(driver, lambda d: d.find_element(By.ID, "trades-count").text == str(every), "every trade")
    Select(driver.find_element(By.ID, "f-symbol")).select_by_value("USDJPY")
    Select(driver.find_element(By.ID, "f-exit")).select_by_value("TP")
    want = api(url, "/api/runs/0/trades?scenario=A&symbol=USDJPY&exit_reason=TP&limit=1")["total"]
    assert 0 < want < every
    wait(driver, lambda d: d.find_element(By.ID, "trades-count").text == str(want), "the filtered count")
    rows = driver.find_elements(By.CSS_SELECTOR, "#trades-table tbody tr")
    assert len(rows) == min(want, 50)
    assert all("USDJPY" in r.text and " TP " in f" {r.text} " for r in rows)
    assert errors(driver) == []


def chart_levels(driver) -> dict[str, float]:
    shapes = driver.execute_script("return document.getElementById('dec-chart').layout.shapes;")
    return {s["name"]: s["y0"] for s in shapes if s.get("name") in ("entry", "stop", "target")}


def test_the_decision_chart_draws_the_api_s_bracket_and_the_real_trade(driver, url):
    open_page(driver, url)
    tab(driver, "decisions")
    Select(driver.find_element(By.ID, "d-action")).select_by_value("TRADED")
    (rec,) = api(url, "/api/runs/0/decisions?scenario=A&action=TRADED&limit=1")["rows"]
    wait(driver, lambda d: d.find_element(By.ID, "dec-detail").get_attribute("data-row") == str(rec["row"])
         and d.find_elements(By.CSS_SELECTOR, "#dec-chart svg.main-svg"), "the traded decision's chart")
    d = api(url, f"/api/runs/0/decisions/{rec['row']}")
    br = d["bracket"]
    assert chart_levels(driver) == pytest.approx({"entry": br["entry"], "stop": br["stop"], "target": br["target"]})
    names = driver.execute_script("return document.getElementById('dec-chart').data.map(t => t.name);")
    assert names[0] == rec["symbol"] and any(n.startswith(f"trade {d['trade']['trade_id']}") for n in names)
    candles = driver.execute_script("return document.getElementById('dec-chart').data[0].x.length;")
    assert candles == len(d["bars"]["time"])
    # the bracket is the counterfactual's, or where the decision's sl_pips put it from the next open
    if br["source"] == "counterfactual":
        cf = d["counterfactual"]
        assert (br["entry"], br["stop"]) == (cf["cf_entry_price"], cf["cf_sl_price"])
        assert any(n.startswith("counterfactual") for n in names)
    else:
        pip = 0.01 if rec["symbol"].endswith("JPY") else 0.0001
        sign = 1 if rec["side"] == "LONG" else -1
        assert br["stop"] == pytest.approx(br["entry"] - sign * rec["sl_pips"] * pip)
    assert errors(driver) == []


def test_bad_skips_only_pages_the_skips_whose_counterfactual_won(driver, url):
    if not api(url, "/api/runs/0/facets")["counterfactuals"]:
        pytest.skip("this deskd's backtest writes no counterfactuals.parquet")
    open_page(driver, url)
    tab(driver, "decisions")
    wait(driver, lambda d: d.find_elements(By.ID, "dec-time"), "the first decision")
    driver.find_element(By.ID, "d-bad").click()
    page = api(url, "/api/runs/0/decisions?scenario=A&bad_skips=1&limit=1")
    (rec,) = page["rows"]
    assert rec["action"] == "SKIPPED" and rec["cf_result"] == "WIN"
    wait(driver, lambda d: d.find_element(By.ID, "dec-pos").text == f"1 of {page['total']}", "bad skips only")
    wait(driver, lambda d: d.find_element(By.ID, "dec-detail").get_attribute("data-row") == str(rec["row"]),
         "the first bad skip")
    names = driver.execute_script("return document.getElementById('dec-chart').data.map(t => t.name);")
    assert any(n.startswith("counterfactual") for n in names) and not any(n.startswith("trade ") for n in names)
    d = api(url, f"/api/runs/0/decisions/{rec['row']}")
    assert d["bracket"]["source"] == "counterfactual"
    assert chart_levels(driver) == pytest.approx({k: d["bracket"][k] for k in ("entry", "stop", "target")})
    assert errors(driver) == []


def test_two_runs_side_by_side_and_a_walk_forward_s_splits_and_trials(driver, sample, tmp_path):
    wf = write_walkforward(tmp_path / "wf", sample)
    with viewer(sample, wf) as u:
        open_page(driver, u)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")) == 3 + 2
        Select(driver.find_element(By.ID, "cmp-scenario")).select_by_value("B")
        a = api(u, "/api/runs/0")["by_scenario"]["B"]["overall"]
        b = api(u, "/api/runs/1")["by_scenario"]["B"]["overall"]
        rows = {r.find_elements(By.TAG_NAME, "td")[0].text: [c.text for c in r.find_elements(By.TAG_NAME, "td")[1:]]
                for r in driver.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")}
        assert rows["trades"] == [f"{a['trades']:,}", f"{b['trades']:,}", f"{b['trades'] - a['trades']:,}"]
        Select(driver.find_element(By.ID, "run")).select_by_value("1")
        wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#tabs [data-tab="wf"]').is_enabled(), "the wf tab")
        assert not driver.find_element(By.CSS_SELECTOR, '#tabs [data-tab="decisions"]').is_enabled()
        tab(driver, "wf")
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#trials-table tbody tr"), "split 1's trials")
        splits = api(u, "/api/runs/1/splits")["splits"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#splits-table tbody tr")) == len(splits)
        trials = api(u, "/api/runs/1/splits/1/trials")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#trials-table tbody tr")) == len(trials["rows"])
        # split 2 has no tune folder: the page says so instead of asking for it
        driver.find_elements(By.CSS_SELECTOR, "#splits-table tbody tr")[1].click()
        wait(driver, lambda d: "no tune folder" in d.find_element(By.ID, "trials-title").text, "split 2")
        tab(driver, "trades")
        wait(driver, lambda d: d.find_element(By.ID, "f-split-label").is_displayed(), "the split filter")
        Select(driver.find_element(By.ID, "f-split")).select_by_value("2")
        want = api(u, "/api/runs/1/trades?split=2&limit=1")["total"]
        wait(driver, lambda d: d.find_element(By.ID, "trades-count").text == str(want), "split 2's trades")
        assert errors(driver) == []


def test_ctrl_c_stops_the_viewer_cleanly(sample):
    stopped: list = []
    with viewer(sample, stopped=stopped) as u:
        assert api(u, "/api/runs")["runs"][0]["id"] == "sample"
    ((rc, err),) = stopped
    assert rc == 0 and err.rstrip().endswith("deskd view: stopped") and "Traceback" not in err


def test_a_folder_that_is_not_a_run_is_one_error_line_and_exit_2(tmp_path, sample):
    p = run("view", str(sample), str(tmp_path), "--port", "0", check=False)
    assert p.returncode == 2 and p.stdout == ""
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("deskd: error:")]
    assert errs == [f"deskd: error: {tmp_path}: not a deskd run folder (no report.json of a backtest, "
                    f"no walkforward.json of a walk-forward)"]
    assert "Traceback" not in p.stderr


def test_a_port_in_use_is_one_error_line_and_exit_2(sample):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run("view", str(sample), "--port", str(port), check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.splitlines()[-1].startswith(f"deskd: error: cannot listen on 127.0.0.1:{port}")


def screenshots(docs: Path) -> None:
    """docs/view_runs.png (two runs side by side) and docs/view_decisions.png (a traded
    decision on its chart) of the sample, 1400 x 1000."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "apt-get install chromium chromium-driver"
    with tempfile.TemporaryDirectory() as tmp:
        full, late = Path(tmp) / "sample", Path(tmp) / "sample-from-april"
        run("backtest", "--config", str(EXAMPLE), "--out", str(full), "--quiet")
        run("backtest", "--config", str(EXAMPLE), "--from", "2026-04-01", "--out", str(late), "--quiet")
        d = chrome(chromium, chromedriver, 1400, 1000)
        try:
            with viewer(full, late) as u:
                open_page(d, u)
                d.save_screenshot(str(docs / "view_runs.png"))
                tab(d, "decisions")
                Select(d.find_element(By.ID, "d-action")).select_by_value("TRADED")
                wait(d, lambda x: x.find_element(By.ID, "dec-pos").text.startswith("1 of"), "traded decisions")
                for _ in range(4):
                    d.find_element(By.ID, "dec-next").click()
                    wait(d, lambda x: x.find_elements(By.CSS_SELECTOR, "#dec-chart svg.main-svg"), "the chart")
                d.save_screenshot(str(docs / "view_decisions.png"))
        finally:
            d.quit()


if __name__ == "__main__":
    screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
