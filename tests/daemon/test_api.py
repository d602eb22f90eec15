"""The control API: auth and validation errors as JSON, operator actions that persist, and a
drawdown halt that survives a restart and lifts at its anchor."""

import sqlite3

import pytest

from tests.daemon.helpers import T0, TF, TOKEN, bar, call, runner


def test_actions_need_the_bearer_token(tmp_path):
    r = runner(tmp_path)
    assert call(r, TOKEN, "POST", "/halt", {"reason": "x"}, auth=None) == (401, {"error": "missing or wrong bearer token"})
    assert call(r, TOKEN, "POST", "/halt", {"reason": "x"}, auth="guess")[0] == 401
    assert call(r, None, "POST", "/halt", {"reason": "x"})[0] == 403
    assert r.desk.state.state.value == "RUNNING"


@pytest.mark.parametrize("raw,body,msg", [
    (b"{not json", None, "the body must be a JSON object"),
    (None, {"reason": ""}, "reason: String should have at least 1 character"),
    (None, {"reason": "x", "lots": 3}, "lots: Extra inputs are not permitted"),
    (None, {"reason": "x", "force": "maybe"}, "force: Input should be a valid boolean"),
    (None, [1, 2], "body: Input should be a valid dictionary"),
    (None, {"reason": "a\x00b"}, "reason: Value error, must not contain control characters"),
    (None, {"reason": "x" * 191}, "reason: String should have at most 190 characters"),
    (b"[" * 50_000, None, "the body must be a JSON object"),
])
def test_malformed_requests_get_400_with_a_json_error(tmp_path, raw, body, msg):
    r = runner(tmp_path)
    status, got = call(r, TOKEN, "POST", "/resume", body, raw=raw)
    assert status == 400 and msg in got["error"]


def test_halt_and_resume_are_journaled_and_committed(tmp_path):
    r = runner(tmp_path, signals=(1,))
    r.feed(bar(0))
    assert call(r, TOKEN, "POST", "/halt", {"reason": "news"}) == (200, {"state": "HALTED"})
    r.feed(bar(1))  # S1 signals: skipped, the desk is halted
    assert r.desk.ledger.open == {} and call(r, None, "GET", "/status")[1]["state"] == "HALTED"
    with sqlite3.connect(tmp_path / "desk.db") as c:
        assert c.execute("select new, trigger, reason from state_transitions").fetchall() == [
            ("HALTED", "OPERATOR_HALT", "operator: news")]
        assert c.execute("select reason from decisions").fetchall() == [("state:HALTED",)]
    assert call(r, TOKEN, "POST", "/resume", {"reason": "all clear"}) == (200, {"state": "RUNNING"})


def test_flatten_closes_positions_at_the_next_open(tmp_path):
    r = runner(tmp_path)
    r.feed(bar(0))
    r.feed(bar(1))
    assert "EURUSD" in r.desk.ledger.open
    status, got = call(r, TOKEN, "POST", "/flatten", {"reason": "end of week"})
    assert (status, got) == (200, {"closing": ["EURUSD"], "fills_at": "next open of each symbol",
                                   "state": "HALTED"})  # flat stays flat until an operator resumes
    r.feed(bar(2, o=1.1010, h=1.1012, lo=1.1008, c=1.1010))
    (t,) = r.desk.ledger.closed
    assert t.exit_reason == "FLATTEN" and t.exit_price == 1.1010
    status, rows = call(r, None, "GET", "/trades?limit=5")
    assert status == 200 and rows[0]["exit_reason"] == "FLATTEN"
    assert call(r, None, "GET", "/trades?limit=zero")[0] == 400


def test_drawdown_halt_survives_a_restart_refuses_plain_resume_and_lifts_at_the_anchor(tmp_path):
    risk = {"r_base": 0.01, "dd_day_limit_frac": 0.005, "dd_week_limit_frac": 0.5}
    day = 86_400
    w0 = T0 + 3 * day  # Monday 2026-01-12 17:00 New York: Tuesday's trading day
    bars = [bar(0, ts=w0), bar(1, 1.1000, 1.1001, 1.0970, 1.0975, ts=w0 + TF),
            bar(2, 1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 2 * TF)]
    r = runner(tmp_path, signals=(0, 3), **risk)
    for b in bars:
        r.feed(b)
    assert r.desk.state.state.value == "HALTED"
    r.close()  # the process dies
    r = runner(tmp_path, signals=(0, 3), **risk)
    for b in bars:
        r.feed(b)  # warm-up: already processed
    r.feed(bar(3, 1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 3 * TF))
    assert r.desk.state.state.value == "HALTED" and r.desk.guard.halt.code == "day_dd"
    status, got = call(r, TOKEN, "POST", "/resume", {"reason": "try"})
    assert status == 409 and "lifts by itself" in got["error"]
    r.feed(bar(4, 1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + day))  # next trading day
    assert r.desk.state.state.value == "RUNNING"


def test_forced_resume_lifts_a_drawdown_halt_before_its_anchor(tmp_path):
    risk = {"r_base": 0.01, "dd_day_limit_frac": 0.005, "dd_week_limit_frac": 0.5}
    w0 = T0 + 3 * 86_400
    r = runner(tmp_path, signals=(0, 4), **risk)
    r.feed(bar(0, ts=w0))
    r.feed(bar(1, 1.1000, 1.1001, 1.0970, 1.0975, ts=w0 + TF))
    r.feed(bar(2, 1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 2 * TF))
    assert call(r, TOKEN, "POST", "/resume", {"reason": "risk manager", "force": True}) == (200, {"state": "RUNNING"})
    r.feed(bar(3, 1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 3 * TF))
    r.feed(bar(4, 1.0975, 1.0980, 1.0970, 1.0975, ts=w0 + 4 * TF))
    status, rows = call(r, None, "GET", "/decisions?limit=1")
    assert status == 200 and rows[0]["reason"] == "traded"  # entries allowed again the same day
