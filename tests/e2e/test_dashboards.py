"""/metrics of real running daemons, parsed with prometheus-client's parser, against the
dashboard and the alert rules that ship in dashboards/: every metric they use is exported and
moves when the desk trades, halts, or finds a reconciliation difference; the rules pass
promtool's check and unit tests; every dashboard query is valid PromQL."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import deskd_cmd, require_tool
from tests.e2e.live_harness import API_TOKEN, Live, free_port, write_live_config

pytestmark = pytest.mark.e2e
DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
METRIC = re.compile(r"\bdeskd_[a-z0-9_]+\b")


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: dict, name: str, **labels) -> float:
    want = tuple(sorted(labels.items()))
    got = [v for (n, lab), v in samples.items() if n == name and set(want) <= set(lab)]
    assert got, f"{name}{labels} not exported"
    return sum(got)


def used_metrics() -> set[str]:
    exprs = [t["expr"] for p in json.loads((DASHBOARDS / "deskd.json").read_text())["panels"]
             for t in p.get("targets", [])]
    exprs.append((DASHBOARDS / "alerts.yml").read_text())
    return {m for e in exprs for m in METRIC.findall(e)}


@pytest.fixture(scope="module")
def paper_scrapes(tmp_path_factory):
    """A paper daemon on a paced replay: a scrape once it trades, one later, one after a halt."""
    tmp = tmp_path_factory.mktemp("metrics")
    cfg = write_live_config(tmp, 1500)  # wide drawdown limits: only the operator halts it
    port = free_port()
    env = {**os.environ, "DESKD_API_TOKEN": API_TOKEN}
    proc = subprocess.Popen(deskd_cmd() + ["run", "--config", str(cfg), "--scenario", "M", "--store",
                                           str(tmp / "d.db"), "--speed", "60000", "--api-port", str(port),
                                           "--log-level", "WARNING"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                s = scrape(port)
            except OSError:
                continue
            if first is None and value(s, "deskd_orders_filled_total", intent="EXIT") > 0:
                first = s
            elif first is not None and value(s, "deskd_orders_submitted_total") > \
                    value(first, "deskd_orders_submitted_total") + 3:
                later = s
                break
        else:
            raise AssertionError("the daemon did not trade")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/halt", data=b'{"reason": "test"}', method="POST",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
        urllib.request.urlopen(req, timeout=10).read()
        halted = scrape(port)
    finally:
        proc.terminate()
        proc.wait(30)
    return first, later, halted, tmp


@pytest.fixture(scope="module")
def live_scrapes(tmp_path_factory):
    """A daemon trading through the fake v20 broker: a scrape in sync, one after a broker
    error, one after a position was closed by hand on the broker."""
    d = tmp_path_factory.mktemp("live-metrics")
    cfg = write_live_config(d, 700)
    with Live(cfg, d, release=300) as live:
        live.start()
        live.advance_until(lambda st: st["open_positions"])
        in_sync = scrape(live.api_port)
        live.fault(kind="5xx", path="/candles", count=1)
        live.advance(1)
        t = live.open_broker_trades()[0]
        live.admin("close", {"tradeID": t.id})
        live.advance(1)
        found = scrape(live.api_port)
        live.stop()
    return in_sync, found, t.symbol


def test_metrics_move_when_the_desk_trades_and_halts(paper_scrapes):
    first, later, halted, tmp = paper_scrapes
    assert value(later, "deskd_orders_submitted_total", intent="ENTRY") > value(first, "deskd_orders_submitted_total",
                                                                               intent="ENTRY")
    assert value(later, "deskd_orders_filled_total") > value(first, "deskd_orders_filled_total")
    assert value(later, "deskd_bar_to_order_seconds_count") > value(first, "deskd_bar_to_order_seconds_count")
    assert value(later, "deskd_equity_usd") != value(first, "deskd_equity_usd")
    assert value(later, "deskd_last_bar_timestamp_seconds", symbol="EURUSD") > \
        value(first, "deskd_last_bar_timestamp_seconds", symbol="EURUSD")
    assert value(later, "deskd_strategy_window_trades", strategy="S1_TREND_EMA_ATR_ADX") > 0
    assert value(later, "deskd_desk_state", state="RUNNING") == 1
    assert value(halted, "deskd_desk_state", state="HALTED") == 1
    assert value(halted, "deskd_desk_state", state="RUNNING") == 0
    assert value(halted, "deskd_state_transitions_total", to="HALTED", trigger="OPERATOR_HALT") == 1
    risk = value(later, "deskd_open_risk_usd")
    positions = value(later, "deskd_open_positions")
    assert (risk > 0) == (positions > 0)
    health = json.loads((tmp / "deskd-health.json").read_text())
    assert health["strategies"]["S1_TREND_EMA_ATR_ADX"]["status"] in ("OK", "WEAKENING", "OUT_OF_PROFILE")


def test_metrics_move_when_reconciliation_finds_a_difference(live_scrapes):
    in_sync, found, sym = live_scrapes
    assert value(in_sync, "deskd_reconciliations_total", result="in_sync") >= 1
    assert value(in_sync, "deskd_reconcile_differences") == 0
    assert value(found, "deskd_reconcile_differences", symbol=sym) >= 1
    assert value(found, "deskd_reconciliations_total", result="differences") >= 1
    assert value(found, "deskd_desk_state", state="SAFE_MODE") == 1
    assert value(found, "deskd_broker_request_duration_seconds_count", endpoint="POST orders") >= 1
    assert value(found, "deskd_broker_request_errors_total", endpoint="GET candles", outcome="5xx") == 1


def test_every_metric_the_dashboard_and_rules_use_is_exported(paper_scrapes, live_scrapes):
    exported = {name for scrapes in (paper_scrapes[:3], live_scrapes[:2]) for s in scrapes for name, _ in s}
    used = used_metrics()
    assert {"deskd_desk_state", "deskd_bar_age_seconds", "deskd_strategy_health"} <= used
    assert used - exported == set()


def _promtool() -> str:
    return require_tool(shutil.which("promtool"), "promtool", "prometheus")


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    promtool = _promtool()
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"],
                 ["check", "config", "prometheus.yml"]):
        p = subprocess.run([promtool, *args], cwd=DASHBOARDS, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
    tested = set(re.findall(r"alertname: (\w+)", (DASHBOARDS / "alerts_test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", (DASHBOARDS / "alerts.yml").read_text()))
    assert len(defined) == 7 and tested == defined


def test_dashboard_is_provisioning_ready_and_its_queries_are_valid_promql(tmp_path):
    dash = json.loads((DASHBOARDS / "deskd.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert dash["uid"] and "id" not in dash
    targets = [(p["title"], t) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]
    assert all(t["datasource"]["uid"] == "${datasource}" for _, t in targets)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("state", "equity", "drawdown", "positions", "risk", "orders", "errors", "latency",
                  "last bar", "reconciliation", "health"):
        assert topic in titles, topic
    # promtool checks PromQL inside rule files: every query becomes a recording rule
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": t["expr"].replace("$instance", ".*")}
        for i, (_, t) in enumerate(targets)]}]}
    (tmp_path / "q.yml").write_text(json.dumps(rules))
    p = subprocess.run([_promtool(), "check", "rules", str(tmp_path / "q.yml")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
