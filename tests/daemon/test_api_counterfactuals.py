"""GET /counterfactuals: the stored counterfactuals, paged and filtered as /decisions is (newest
decision first, ?limit=, ?symbol=), read without a token as every GET, in counterfactuals.parquet's
fields plus the decision's row id."""

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from deskd.daemon.api import ControlAPI
from deskd.daemon.runner import DeskRunner
from deskd.persistence.store import sqlite_url
from deskd.research.counterfactuals import CF_FIELDS
from tests.daemon.helpers import TOKEN, bar, call, config, runner

KEYS = ["decision_id", "scenario", "decision_time", "symbol", "strategy_id", "side", "action", "reason", "regime",
        *CF_FIELDS]


@pytest.fixture
def resolved(tmp_path):
    """A runner whose store holds five decisions (bars 0, 1, 3, 4, 6), the first four resolved
    (stops hit in bars 2 and 5), the last one waiting for its entry."""
    r = runner(tmp_path, signals=(0, 1, 3, 4, 6))
    for i in range(7):
        r.feed(bar(i, lo=1.0970 if i in (2, 5) else 1.0995))
    yield r
    r.close()


def test_counterfactuals_come_newest_decision_first_in_pages_of_limit(resolved):
    status, everything = call(resolved, TOKEN, "GET", "/counterfactuals?limit=10000", auth=None)
    assert status == 200 and [list(row) for row in everything] == [KEYS] * len(everything)
    _, decided = call(resolved, TOKEN, "GET", "/decisions?limit=10000", auth=None)
    ids = [row["decision_id"] for row in everything]
    assert len(decided) == 5 and len(ids) == 4 and ids == sorted(ids, reverse=True)
    journal = ["decision_time", "symbol", "strategy_id", "side", "action", "reason", "regime"]
    assert [[row[k] for k in journal] for row in everything] == [[d[k] for k in journal] for d in decided[1:]]
    assert [row["reason"] for row in everything] == ["position_open", "traded"] * 2
    newest = everything[0]
    assert newest["scenario"] == "A" and newest["side"] == "LONG" and newest["cf_outcome"] == "SL"
    assert newest["cf_entry_time"].endswith("Z") and newest["cf_tp_price"] is None
    assert call(resolved, None, "GET", "/counterfactuals?limit=1", auth=None) == (200, [newest])
    assert call(resolved, None, "GET", "/counterfactuals?limit=2", auth=None) == (200, everything[:2])
    assert call(resolved, None, "GET", "/counterfactuals", auth=None) == (200, everything)  # default 100
    # a decision's id joins the two: the resolved ones are the four oldest decisions
    assert [d["decision_id"] for d in decided[1:]] == ids and list(decided[0])[0] == "decision_id"


def test_status_says_whether_counterfactuals_are_followed(resolved, tmp_path):
    assert call(resolved, None, "GET", "/status", auth=None)[1]["counterfactuals"] == "on"
    off = DeskRunner(config(), sqlite_url(tmp_path / "off.db"), counterfactuals=False)
    try:
        assert call(off, None, "GET", "/status", auth=None)[1]["counterfactuals"] == "off"
    finally:
        off.close()


def test_counterfactuals_filter_by_symbol_as_decisions_do(resolved):
    _, everything = call(resolved, None, "GET", "/counterfactuals")
    assert call(resolved, None, "GET", "/counterfactuals?symbol=eurusd") == (200, everything)
    assert call(resolved, None, "GET", "/counterfactuals?symbol=USDJPY") == (200, [])


def test_an_empty_store_has_no_counterfactuals(tmp_path):
    r = runner(tmp_path)
    try:
        assert call(r, None, "GET", "/counterfactuals") == (200, [])
    finally:
        r.close()


@pytest.mark.parametrize(("query", "error"), [
    ("limit=abc", "limit must be an integer"),
    ("limit=0", "limit must be between 1 and 10000"),
    ("limit=10001", "limit must be between 1 and 10000"),
    ("limit=", "limit must be an integer"),
])
def test_a_bad_query_parameter_is_a_400_json_error(tmp_path, query, error):
    r = runner(tmp_path)
    try:
        assert call(r, TOKEN, "GET", f"/counterfactuals?{query}") == (400, {"error": error})
    finally:
        r.close()


def test_counterfactuals_answer_only_to_this_daemons_host(resolved):
    async def go():
        async with TestClient(TestServer(ControlAPI(resolved, TOKEN).app())) as client:
            resp = await client.get("/counterfactuals", headers={"Host": "attacker.example"})
            return resp.status, await resp.json()
    assert asyncio.run(go()) == (421, {"error": "this daemon does not answer to that Host"})
