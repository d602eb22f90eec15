"""report.html: built from the run's own outputs, every number report.json's, offline, small
for large runs, and valid for a run without trades or with an account wiped out."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from deskd.configs.loader import load_config
from deskd.research import report_html as rh
from deskd.research.backtest import run_backtest
from tests.conftest import EXAMPLE
from tests.research.report_helpers import page_metrics, tiny_bar_files


@pytest.fixture(scope="module")
def example():
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def sample_run(example, tmp_path_factory):
    """Scenario A of the bundled sample, run in-process: (folder, report)."""
    out = tmp_path_factory.mktemp("rh") / "a"
    return out, run_backtest(example, ["A"], out)


@pytest.fixture(scope="module")
def no_trade_run(example, tmp_path_factory):
    """The example desk on 40 bars per symbol: no strategy warms up, nothing trades."""
    tmp = tmp_path_factory.mktemp("rh0")
    files = {s: str(p) for s, p in tiny_bar_files(tmp / "bars").items()}
    cfg = example.model_copy(update={"data": example.data.model_copy(update={"files": files,
                                                                            "timezone": "UTC"})})
    out = tmp / "out"
    return out, run_backtest(cfg, ["A", "B"], out), cfg


def test_every_backtest_writes_report_html_whose_numbers_are_report_json(sample_run):
    out, report = sample_run
    page = (out / "report.html").read_text()
    shown = page_metrics(page)
    overall = report["scenarios"]["A"]["overall"]
    for key in ("net_pnl_usd", "trades", "win_rate", "profit_factor", "max_drawdown_usd",
                "max_drawdown_frac", "sharpe_daily_ann", "cvar_95_usd", "avg_r_multiple"):
        assert shown[("A", key)] == overall[key], key
    assert shown[("A", "final_equity_usd")] == report["scenarios"]["A"]["final_equity_usd"]
    assert shown[("", "starting_equity_usd")] == report["starting_equity_usd"]
    assert "-44,727.23 USD" in page  # units on money
    assert 'class="banner wiped"' not in page


def test_the_page_is_offline_with_plotly_js_embedded_once(sample_run):
    page = (sample_run[0] / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", page) and "<link" not in page
    assert page.count("<script") == 1 + page.count('class="plotly-graph-div"')
    assert len(re.findall(r"Plotly\.newPlot\(", page)) == page.count('class="plotly-graph-div"') == 9  # with hours, weekdays, excursions
    assert 5 <= len(page) / 1e6 < 8  # plotly.js is ~4.7 MB of it


def test_two_builds_of_the_same_run_are_byte_identical(sample_run, example):
    out, report = sample_run
    first = (out / "report.html").read_bytes()
    rh.write_report_html(out, example, report)
    assert (out / "report.html").read_bytes() == first


def test_a_run_without_trades_has_a_valid_page_with_empty_states(no_trade_run):
    out, report, _ = no_trade_run
    assert report["scenarios"]["A"]["overall"]["trades"] == 0
    page = (out / "report.html").read_text()
    shown = page_metrics(page)
    assert shown[("A", "trades")] == 0 and shown[("B", "trades")] == 0
    assert shown[("A", "net_pnl_usd")] == 0
    assert "No closed trades in scenario A" in page and "No strategy signal in scenario B" in page
    # the equity curve and the price chart still draw; each plot has its script
    assert page.count('class="plotly-graph-div"') == len(re.findall(r"Plotly\.newPlot\(", page)) == 4
    assert "Traceback" not in page and "nan" not in re.sub(r"<script.*?</script>", "", page, flags=re.S)


def test_an_account_below_a_tenth_of_its_start_gets_the_red_banner(no_trade_run, tmp_path):
    out, report, cfg = no_trade_run
    run = tmp_path / "run"
    run.mkdir()
    for name in ("trades.csv", "decisions.parquet", "config.yaml"):
        (run / name).write_bytes((out / name).read_bytes())
    (run / "equity.csv").write_bytes((out / "equity.csv").read_bytes())
    report = json.loads(json.dumps(report))
    report["scenarios"]["B"].update(wiped_out=True, min_equity_usd=9_999.99)  # as the backtest flags it
    (run / "report.json").write_text(json.dumps(report))
    page = rh.write_report_html(run, cfg).read_text()
    assert page.count('class="banner wiped"') == 1
    assert 'data-scenario="B" data-wiped-out="1"' in page
    assert ("equity fell to 9,999.99 USD, 10.00 % of the starting 100,000.00 USD, below the floor of "
            "10,000.00 USD") in page


def test_the_page_is_the_same_from_either_decision_file_and_says_when_there_is_none(example, tmp_path):
    pages = {}
    for fmt in ("parquet", "csv", "none"):
        out = tmp_path / fmt
        run_backtest(example, ["A"], out, decisions=fmt)
        pages[fmt] = (out / "report.html").read_text()
    assert pages["parquet"] == pages["csv"]
    note = "the run wrote no decision file (deskd backtest --decisions none)"
    assert note in pages["none"] and note not in pages["csv"]
    assert page_metrics(pages["none"]) == page_metrics(pages["csv"])  # the totals are report.json's
    assert "What became of the signals" in pages["csv"] and "What became of the signals" not in pages["none"]


def test_large_runs_are_cut_to_a_few_thousand_points_and_stay_small(example):
    """Three years of M1 marks and 20,000 trades: the page stays far under 20 MB."""
    rng = np.random.default_rng(1)
    n_marks, n_trades = 200_000, 20_000
    times = pd.date_range("2020-01-01", periods=n_marks, freq="5min")
    equity = 100_000 + np.cumsum(rng.normal(0, 50, n_marks))
    eq = pd.DataFrame({"scenario": "A", "time": times, "kind": "FILL", "equity_usd": equity,
                       "balance_usd": equity, "open_positions": 0})
    ft = times[rng.choice(n_marks - 10, n_trades, replace=False)].sort_values()
    trades = pd.DataFrame({
        "trade_id": np.arange(n_trades), "scenario": "A", "symbol": "EURUSD", "strategy_id": "S1",
        "side": np.where(rng.random(n_trades) < 0.5, "LONG", "SHORT"), "fill_time": ft,
        "exit_time": ft + pd.Timedelta(minutes=30), "entry_price": 1.1, "exit_price": 1.1, "sl_price": 1.09,
        "tp_price": 1.12, "pnl_usd": rng.normal(0, 100, n_trades), "r_multiple": rng.normal(0, 1.5, n_trades),
        "mae_pips": rng.gamma(2, 5, n_trades), "mfe_pips": rng.gamma(2, 5, n_trades), "exit_reason": "SL"})
    report = {"scenarios": {"A": {"overall": {"trades": n_trades, "avg_r_multiple": 0.0},
                                  "by_exit_reason": {"SL": {"trades": n_trades, "net_pnl_usd": 1.0}}}}}
    sc = rh.ScenarioData("A", report["scenarios"]["A"], trades, eq, None)
    run = rh.RunData(report, [sc], 100_000.0, None, "test")
    page = rh.render_report_html(run)
    assert len(page) < 12e6
    eq_div = page[page.index('id="s0-equity"'):page.index('id="s0-r"')]
    assert "3,002 of 200,000 marks" in eq_div or re.search(r"[0-9,]+ of 200,000 marks", eq_div)
    assert "5,000 of 20,000 trades" in page


def test_decimation_keeps_every_extreme_of_the_curve():
    rng = np.random.default_rng(7)
    y = 1e5 + np.cumsum(rng.normal(0, 30, 100_000))
    dd, _ = rh.drawdown(y)
    idx = rh.decimate(y, dd, buckets=500)
    assert len(idx) <= 3 * 500 + 2 and np.all(np.diff(idx) > 0)
    assert {0, len(y) - 1, int(np.argmin(y)), int(np.argmax(y)), int(np.argmax(dd))} <= set(idx.tolist())
    assert rh.decimate(y[:1000], dd[:1000], buckets=500).tolist() == list(range(1000))


def test_monthly_returns_chain_from_the_starting_equity_to_the_last_mark():
    t = pd.Series(pd.to_datetime(["2026-01-10 00:00", "2026-01-31 23:00", "2026-02-15 00:00", "2026-04-01 00:00"]))
    e = pd.Series([101_000.0, 110_000.0, 99_000.0, 121_000.0])
    m = rh.monthly_returns(t, e, 100_000.0)
    assert m[["year", "month"]].values.tolist() == [[2026, 1], [2026, 2], [2026, 4]]
    assert m["return_frac"].tolist() == pytest.approx([0.1, -0.1, 121 / 99 - 1])
    assert m["pnl_usd"].sum() == pytest.approx(21_000.0)


def test_r_histogram_counts_every_trade_and_folds_outliers_into_the_end_bins():
    r = np.array([-1.0, -1.02, 0.1, 1.5, 25.0, -8.0])
    edges, counts, folded = rh.r_histogram(r)
    assert counts.sum() == len(r) and folded == 2
    assert edges[0] == -5.0 and edges[-1] == 10.0 and np.allclose(np.diff(edges), 0.25)


def test_the_scatter_sample_is_capped_and_the_same_every_time():
    a = rh.sample_indices(20_000)
    assert len(a) == rh.SCATTER_MAX and np.array_equal(a, rh.sample_indices(20_000))
    assert np.array_equal(rh.sample_indices(10), np.arange(10))


def test_rebuilding_from_a_folder_that_is_not_a_run_is_one_error_line(tmp_path, capsys, sample_run):
    assert rh.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deskd: error: ") and "config.yaml" in err and "Traceback" not in err
    run = tmp_path / "half"
    run.mkdir()
    (run / "config.yaml").write_bytes((sample_run[0] / "config.yaml").read_bytes())
    assert rh.main([str(run)]) == 2
    assert "cannot read the run's outputs" in capsys.readouterr().err
    assert rh.main([]) == 2 and "usage:" in capsys.readouterr().err
