"""The viewer's JSON API over real run folders (aiohttp's test client): what each endpoint
answers, its paging bounds and filters, and its errors (400 naming the parameter, 404, 405,
421), all as JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest
from aiohttp.test_utils import TestClient, TestServer

from deskd.core.money import Instrument
from deskd.viewer.app import ViewerApp
from deskd.viewer.data import BARS_AFTER, BARS_BEFORE, MAX_PAGE, RunFolderError, open_runs
from tests.conftest import EXAMPLE, run
from tests.research.report_helpers import tiny_bar_files


def ask(paths: list[Path], *requests: str | tuple[str, str], headers: dict | None = None) -> list[tuple[int, dict]]:
    """(status, JSON body) of each request (a path, or (method, path)) to a viewer of ``paths``."""
    async def go():
        out = []
        async with TestClient(TestServer(ViewerApp(open_runs(paths)).app())) as client:
            for req in requests:
                method, path = req if isinstance(req, tuple) else ("GET", req)
                resp = await client.request(method, path, headers=headers)
                assert resp.content_type == "application/json", (path, resp.content_type)
                out.append((resp.status, await resp.json()))
        return out
    return asyncio.run(go())


def get(paths: list[Path], path: str) -> dict:
    ((status, body),) = ask(paths, path)
    assert status == 200, body
    return body


def report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def trades_csv(run: Path, scenario: str) -> pd.DataFrame:
    tr = pd.read_csv(run / "trades.csv")
    return tr[tr["scenario"] == scenario].reset_index(drop=True)


def test_runs_list_gives_each_run_with_report_json_headline_metrics(sample_run, wf_run):
    runs = get([sample_run, wf_run], "/api/runs")["runs"]
    assert [(r["index"], r["id"], r["kind"]) for r in runs] == [(0, "sample", "backtest"), (1, "wf", "walkforward")]
    rep = report(sample_run)["scenarios"]
    assert runs[0]["scenarios"] == ["A", "B"]
    for s in ("A", "B"):
        head = runs[0]["by_scenario"][s]["headline"]
        assert head["net_pnl_usd"] == rep[s]["overall"]["net_pnl_usd"]
        assert head["trades"] == rep[s]["overall"]["trades"]
        assert runs[0]["by_scenario"][s]["overall"] == rep[s]["overall"]
    assert runs[1]["by_scenario"]["B"]["headline"]["net_usd"] == -7.0
    assert runs[0]["files"]["decisions"] and not runs[0]["files"]["counterfactuals"]
    # a run is addressed by its index or its id, and by nothing else
    assert get([sample_run, wf_run], "/api/runs/wf")["index"] == 1
    assert get([sample_run, wf_run], "/api/runs/1")["id"] == "wf"


@pytest.mark.parametrize("path", ["/api/runs/2", "/api/runs/nope", "/api/runs/..%2F..%2Fetc/trades",
                                  "/api/runs/0/decisions/99999999", "/api/runs/0/splits", "/nothing"])
def test_unknown_runs_rows_and_views_are_404_json(sample_run, path):
    ((status, body),) = ask([sample_run], path)
    assert status == 404 and body["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_every_method_but_get_is_405(sample_run, method):
    for path in ("/api/runs", "/api/runs/0/trades", "/"):
        ((status, body),) = ask([sample_run], (method, path))
        assert status == 405 and "read-only" in body["error"]


def test_a_host_the_viewer_does_not_answer_to_is_421(sample_run):
    ((status, body),) = ask([sample_run], "/api/runs", headers={"Host": "evil.example:8050"})
    assert status == 421


def test_trades_pages_cover_the_scenario_once_in_file_order(sample_run):
    want = trades_csv(sample_run, "B")
    got, offset = [], 0
    while True:
        page = get([sample_run], f"/api/runs/0/trades?scenario=B&offset={offset}&limit=200")
        assert page["total"] == len(want) and len(page["rows"]) <= 200
        if not page["rows"]:
            break
        got += page["rows"]
        offset += 200
    assert [r["trade_id"] for r in got] == want["trade_id"].tolist()
    assert got[0]["fill_time"] == want["fill_time"][0] and got[0]["scenario"] == "B"
    # past the end: an empty page, not an error
    assert get([sample_run], f"/api/runs/0/trades?scenario=B&offset={len(want) + 5}")["rows"] == []


def test_trade_filters_count_what_trades_csv_holds(sample_run):
    tr = trades_csv(sample_run, "A")
    eur = get([sample_run], "/api/runs/0/trades?symbol=EURUSD&limit=1")
    assert eur["scenario"] == "A" and eur["total"] == (tr["symbol"] == "EURUSD").sum()
    wins = get([sample_run], "/api/runs/0/trades?outcome=WIN&exit_reason=TP")
    assert wins["total"] == ((tr["pnl_usd"] > 0) & (tr["exit_reason"] == "TP")).sum() > 0
    assert all(r["outcome"] == "WIN" and r["exit_reason"] == "TP" for r in wins["rows"])
    assert wins["wins"] == wins["total"]
    loss = get([sample_run], "/api/runs/0/trades?outcome=loss&strategy=S1_TREND_EMA_ATR_ADX")
    assert loss["total"] == (tr["pnl_usd"] <= 0).sum()
    assert loss["net_pnl_usd"] == pytest.approx(tr.loc[tr["pnl_usd"] <= 0, "pnl_usd"].sum(), abs=0.01)


@pytest.mark.parametrize("query, param", [
    ("limit=0", "limit"), (f"limit={MAX_PAGE + 1}", "limit"), ("offset=-1", "offset"), ("offset=x", "offset"),
    ("limit=1e3", "limit"), ("offset=--5", "offset"), ("limit=%EF%BC%91", "limit"), ("symbol=XAUUSD", "symbol"), ("outcome=DRAW", "outcome"), ("scenario=Z", "scenario"),
    ("exit_reason=..%2F", "exit_reason"), ("color=red", "'color'"), ("symbol=EURUSD&symbol=GBPUSD", "symbol"),
    ("strategy=S9", "strategy"), ("split=x", "split"), ("split=1", "split")])
def test_a_bad_trades_parameter_is_a_400_naming_it(sample_run, query, param):
    ((status, body),) = ask([sample_run], f"/api/runs/0/trades?{query}")
    assert status == 400 and body["param"] == param and body["error"].startswith(param)


def test_decisions_page_through_the_scenario_s_journal(sample_run):
    rep = report(sample_run)["scenarios"]["B"]["decisions"]
    first = get([sample_run], "/api/runs/0/decisions?scenario=B&limit=3")
    assert first["total"] == rep["signals"] and len(first["rows"]) == 3
    second = get([sample_run], "/api/runs/0/decisions?scenario=B&offset=1&limit=3")
    assert second["rows"][:2] == first["rows"][1:]
    assert all(r["scenario"] == "B" for r in first["rows"])
    times = [r["decision_time"] for r in first["rows"]]
    assert times == sorted(times) and times[0].endswith("Z")
    assert get([sample_run], "/api/runs/0/decisions?scenario=B&action=TRADED&limit=1")["total"] == rep["traded"]
    for reason, n in rep["skipped"].items():
        assert get([sample_run], f"/api/runs/0/decisions?scenario=B&reason={reason}&limit=1")["total"] == n


def test_the_hour_filter_splits_the_journal_by_utc_hour(sample_run):
    total = get([sample_run], "/api/runs/0/decisions?limit=1")["total"]
    per_hour = [get([sample_run], f"/api/runs/0/decisions?hour={h}&limit={MAX_PAGE}") for h in range(24)]
    assert sum(p["total"] for p in per_hour) == total
    for h, p in enumerate(per_hour):
        assert all(int(r["decision_time"][11:13]) == h for r in p["rows"])


@pytest.mark.parametrize("query, param", [
    ("hour=24", "hour"), ("hour=-1", "hour"), ("hour=noon", "hour"), ("action=MAYBE", "action"),
    ("reason=nope", "reason"), ("bad_skips=1", "bad_skips"), ("bad_skips=yes", "bad_skips"),
    ("symbol=EURGBP", "symbol"), ("limit=501", "limit"), ("exit_reason=TP", "'exit_reason'")])
def test_a_bad_decisions_parameter_is_a_400_naming_it(sample_run, query, param):
    ((status, body),) = ask([sample_run], f"/api/runs/0/decisions?{query}")
    assert status == 400 and body["param"] == param, body


def test_a_decision_comes_with_its_price_window_and_the_bracket_from_the_next_open(sample_run):
    page = get([sample_run], "/api/runs/0/decisions?action=SKIPPED&symbol=USDJPY&limit=1")
    (rec,) = page["rows"]
    d = get([sample_run], f"/api/runs/0/decisions/{rec['row']}")
    assert d["decision"] == rec and d["trade"] is None and d["counterfactual"] is None
    bars = d["bars"]
    assert len(bars["time"]) <= BARS_BEFORE + BARS_AFTER and bars["timeframe_s"] == 900
    nxt = next(i for i, t in enumerate(bars["time"]) if t >= rec["decision_time"])
    assert bars["time"][nxt] == rec["decision_time"]  # the bar after the decision opens at its close
    pip = Instrument.parse("USDJPY").pip_size
    sign = 1 if rec["side"] == "LONG" else -1
    br = d["bracket"]
    assert br["source"] == "decision" and br["entry"] == bars["open"][nxt]
    assert br["stop"] == pytest.approx(br["entry"] - sign * rec["sl_pips"] * pip)
    assert br["target"] == pytest.approx(br["entry"] + sign * rec["tp_pips"] * pip)


def test_a_traded_decision_comes_with_its_trade(sample_run):
    (rec,) = get([sample_run], "/api/runs/0/decisions?scenario=B&action=TRADED&offset=5&limit=1")["rows"]
    d = get([sample_run], f"/api/runs/0/decisions/{rec['row']}")
    tr = d["trade"]
    assert tr["client_order_id"] == rec["client_order_id"] and tr["signal_time"] == rec["decision_time"]
    assert tr["scenario"] == "B" and tr["fill_time"] in d["bars"]["time"]
    assert tr["exit_time"] <= d["bars"]["time"][-1]  # the window reaches the exit


@pytest.mark.parametrize("row", ["abc", "-1", "1.5"])
def test_a_decision_row_that_is_not_a_number_is_400(sample_run, row):
    ((status, body),) = ask([sample_run], f"/api/runs/0/decisions/{row}")
    assert status == 400 and body["param"] == "row"


def test_bad_skips_are_skipped_decisions_whose_counterfactual_wins(cf_run):
    dec = pd.read_parquet(cf_run / "decisions.parquet")
    cf = pd.read_parquet(cf_run / "counterfactuals.parquet")
    a = (dec["scenario"] == "A").to_numpy()
    want = ((dec["action"] == "SKIPPED") & (cf["cf_result"] == "WIN")).to_numpy() & a
    page = get([cf_run], f"/api/runs/0/decisions?bad_skips=1&limit={MAX_PAGE}")
    assert page["total"] == want.sum() > 0
    assert [r["row"] for r in page["rows"]] == [int(i) for i in want.nonzero()[0][:MAX_PAGE]]
    assert all(r["bad_skip"] and r["cf_result"] == "WIN" and r["action"] == "SKIPPED" for r in page["rows"])
    d = get([cf_run], f"/api/runs/0/decisions/{page['rows'][0]['row']}")
    c = d["counterfactual"]
    assert d["bracket"] == {"source": "counterfactual", "entry_time": c["cf_entry_time"], "entry": c["cf_entry_price"],
                            "stop": c["cf_sl_price"], "target": c["cf_tp_price"]}
    assert get([cf_run], "/api/runs/0/facets")["counterfactuals"] is True


def test_counterfactuals_that_do_not_match_the_journal_are_left_out_with_a_note(cf_run, tmp_path):
    run = tmp_path / "short-cf"
    run.mkdir()
    for f in cf_run.iterdir():
        (run / f.name).symlink_to(f)
    (run / "counterfactuals.parquet").unlink()
    pd.read_parquet(cf_run / "counterfactuals.parquet").head(10).to_parquet(run / "counterfactuals.parquet")
    facets = get([run], "/api/runs/0/facets")
    assert facets["counterfactuals"] is False and "10 rows" in facets["counterfactuals_note"]
    ((status, body),) = ask([run], "/api/runs/0/decisions?bad_skips=true")
    assert status == 400 and "10 rows" in body["error"]


def test_equity_curve_holds_report_json_s_drawdown(sample_run):
    e = get([sample_run], "/api/runs/0/equity?scenario=B")
    rep = report(sample_run)["scenarios"]["B"]["overall"]
    assert e["max_drawdown_usd"] == pytest.approx(rep["max_drawdown_usd"], abs=0.011)
    assert max(e["drawdown_usd"]) == pytest.approx(rep["max_drawdown_usd"], abs=0.011)
    assert len(e["time"]) == len(e["equity_usd"]) == e["points"] <= e["marks"]


def test_a_walk_forward_shows_its_splits_trials_and_out_of_sample_trades(wf_run):
    w = get([wf_run], "/api/runs/0/splits")
    assert [s["split"] for s in w["splits"]] == [1, 2] and w["tuned"] == [1]
    assert w["splits"][0]["oos_expectancy_r_A"] is None  # NaN in walkforward.json: null in JSON
    t = get([wf_run], "/api/runs/0/splits/1/trials?limit=2")
    assert [r["trial"] for r in t["rows"]] == [7, 3] and t["trials"] == 3 and t["dsr"] == 0.2 and t["pbo"] == 0.6
    assert ask([wf_run], "/api/runs/0/splits/2/trials")[0][0] == 404
    tr = get([wf_run], "/api/runs/0/trades?split=2&limit=1")
    oos = pd.read_csv(wf_run / "oos_trades.csv")
    assert tr["total"] == ((oos["split"] == 2) & (oos["scenario"] == "A")).sum()
    assert ask([wf_run], "/api/runs/0/decisions")[0][0] == 404  # a walk-forward writes no journal
    assert get([wf_run], "/api/runs/0/equity?scenario=A")["marks"] > 0


def test_the_page_and_plotly_are_served(sample_run):
    async def go():
        async with TestClient(TestServer(ViewerApp(open_runs([sample_run])).app())) as client:
            page = await client.get("/")
            js = await client.get("/static/plotly.min.js")
            return page.status, page.content_type, await page.text(), js.status, len(await js.read())
    status, ctype, text, js_status, js_len = asyncio.run(go())
    assert status == 200 and ctype == "text/html" and '<script src="/static/plotly.min.js">' in text
    assert js_status == 200 and js_len > 1_000_000


def test_a_folder_that_is_not_a_run_is_refused_naming_it(tmp_path, sample_run):
    with pytest.raises(RunFolderError, match="not a deskd run folder"):
        open_runs([tmp_path])
    with pytest.raises(RunFolderError, match="no such folder"):
        open_runs([tmp_path / "missing"])
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="report.json: not a JSON file"):
        open_runs([tmp_path])
    (tmp_path / "report.json").write_text("[]")
    with pytest.raises(RunFolderError, match="not a JSON object"):
        open_runs([tmp_path])
    with pytest.raises(RunFolderError, match="at least one"):
        open_runs([])


def test_two_folders_with_one_name_get_distinct_ids(sample_run, tmp_path):
    other = tmp_path / "sample"
    other.symlink_to(sample_run)
    runs = get([sample_run, other], "/api/runs")["runs"]
    assert [r["id"] for r in runs] == ["sample", "sample-2"]


def test_a_run_without_a_decision_journal_still_lists_trades_and_equity(sample_run, tmp_path):
    run = tmp_path / "nodec"
    run.mkdir()
    for name in ("report.json", "trades.csv", "equity.csv", "config.yaml"):
        (run / name).symlink_to(sample_run / name)
    assert get([run], "/api/runs/0/facets")["actions"] == []
    assert get([run], "/api/runs/0/trades?limit=1")["total"] > 0
    ((status, body),) = ask([run], "/api/runs/0/decisions")
    assert status == 404 and "no decision journal" in body["error"]


def test_a_csv_journal_pages_as_the_parquet_one(backtest_run, csv_run):
    # scenario A comes first in both journals, so its rows have the same numbers
    for query in ("limit=40", "action=TRADED&offset=7&limit=5", "hour=13&reason=position_open&limit=30"):
        csv, parquet = (get([run], f"/api/runs/0/decisions?scenario=A&{query}") for run in (csv_run, backtest_run))
        assert csv["total"] == parquet["total"] > 0
        assert csv["rows"] == parquet["rows"], query
    (rec,) = get([csv_run], "/api/runs/0/decisions?action=TRADED&limit=1")["rows"]
    assert (get([csv_run], f"/api/runs/0/decisions/{rec['row']}")
            == get([backtest_run], f"/api/runs/0/decisions/{rec['row']}"))


def test_trades_parquet_is_read_when_there_is_no_trades_csv(sample_run, tmp_path):
    if not (sample_run / "trades.parquet").exists():
        pytest.skip("this deskd writes no trades.parquet")
    run = tmp_path / "parquet-only"
    run.mkdir()
    for f in sample_run.iterdir():
        if f.name != "trades.csv":
            (run / f.name).symlink_to(f)
    for query in ("scenario=B&limit=30&offset=10", "symbol=USDJPY&outcome=WIN&limit=5"):
        from_csv, from_parquet = (get([r], f"/api/runs/0/trades?{query}") for r in (sample_run, run))
        assert from_parquet["total"] == from_csv["total"] > 0
        for a, b in zip(from_csv["rows"], from_parquet["rows"]):
            assert {k: b[k] for k in a} == pytest.approx(a), query


def linked_copy(run: Path, to: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """``to`` holding links to ``run``'s files, but for ``leave_out``."""
    to.mkdir()
    for f in run.iterdir():
        if f.name not in leave_out:
            (to / f.name).symlink_to(f)
    return to


def test_damaged_files_are_json_errors_naming_them_never_a_traceback(sample_run, tmp_path):
    run = linked_copy(sample_run, tmp_path / "damaged", ("decisions.parquet", "trades.csv", "equity.csv"))
    (run / "decisions.parquet").write_bytes(b"PAR1 not really")
    (run / "trades.csv").write_text("trade_id,scenario\n1,A\n")
    (run / "equity.csv").write_text("nothing here\n")
    for path, name in (("/api/runs/0/decisions", "decisions.parquet"), ("/api/runs/0/trades", "trades.csv"),
                       ("/api/runs/0/equity", "equity.csv"), ("/api/runs/0/facets", "trades.csv")):
        ((status, body),) = ask([run], path)
        assert status == 500 and f"damaged/{name}: cannot be read" in body["error"], (path, body)
    assert get([run], "/api/runs")["runs"][0]["id"] == "damaged"  # report.json is fine: the run is listed


def test_a_bar_file_that_is_gone_leaves_the_decision_without_a_chart_and_says_why(sample_run, tmp_path):
    run = linked_copy(sample_run, tmp_path / "nobars", ("config.yaml",))
    (run / "config.yaml").write_text((sample_run / "config.yaml").read_text().replace("USDJPY_M15", "USDJPY_gone"))
    (rec,) = get([run], "/api/runs/0/decisions?symbol=USDJPY&limit=1")["rows"]
    d = get([run], f"/api/runs/0/decisions/{rec['row']}")
    assert d["bars"] is None and d["bracket"] is None and "USDJPY_gone" in d["bars_note"]
    (eur,) = get([run], "/api/runs/0/decisions?symbol=EURUSD&limit=1")["rows"]
    assert get([run], f"/api/runs/0/decisions/{eur['row']}")["bars"] is not None


def test_a_report_json_of_an_odd_shape_lists_the_run_with_what_it_has(sample_run, tmp_path):
    run = linked_copy(sample_run, tmp_path / "odd", ("report.json",))
    (run / "report.json").write_text(json.dumps({"scenarios": {"A": [], "B": {"overall": 3}}}))
    (r,) = get([run], "/api/runs")["runs"]
    assert r["scenarios"] == ["A", "B"] and r["by_scenario"]["A"]["headline"]["trades"] is None


def test_a_run_without_trades_answers_empty_pages(tmp_path):
    bars = tiny_bar_files(tmp_path / "bars")
    out = tmp_path / "empty"
    run("backtest", "--config", str(EXAMPLE), "--scenarios", "A", "--out", str(out), "--quiet",
        *[a for sym, p in bars.items() for a in ("--data", f"{sym}={p}@UTC")])
    assert get([out], "/api/runs")["runs"][0]["by_scenario"]["A"]["headline"]["trades"] == 0
    assert get([out], "/api/runs/0/trades")["rows"] == [] and get([out], "/api/runs/0/trades")["total"] == 0
    assert get([out], "/api/runs/0/decisions")["total"] == 0
    assert get([out], "/api/runs/0/facets")["symbols"] == []
    assert get([out], "/api/runs/0/equity")["marks"] >= 1


@pytest.mark.parametrize("host, says", [("127.0.0.1", None), ("::1", None), ("localhost", None),
                                        ("0.0.0.0", "only requests naming a loopback host"),
                                        ("192.168.1.5", "anyone who can reach it")])
def test_listening_beyond_loopback_is_warned_about(host, says):
    from deskd.viewer.app import exposure_warning

    got = exposure_warning(host)
    assert got is None if says is None else says in (got or "")


def test_a_run_file_of_an_unforeseen_shape_is_a_json_500_naming_the_error(sample_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(sample_run, bad)
    (bad / "equity.csv").write_text("time,equity_usd\n2026-01-01T00:00:00Z,1\n")  # no scenario column
    ((status, body),) = ask([bad], "/api/runs/0/equity?scenario=A")
    assert status == 500 and body["error"]


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_port_outside_0_to_65535_is_a_usage_error(sample_run, port, capsys):
    from deskd.cli import main

    with pytest.raises(SystemExit) as e:
        main(["view", str(sample_run), "--port", port])
    assert e.value.code == 2 and "--port" in capsys.readouterr().err
