"""Entry filters: each part blocks on one side of its threshold and allows on the other, with
its own skip reason, ahead of the desk's other checks; a desk without filters decides exactly as
before; bad filter settings are config errors naming their key."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from deskd.adapters.paper import paper_broker
from deskd.configs.loader import load_config
from deskd.configs.models import DeskConfig, FiltersConfig
from deskd.core.events import BarClosed, Decision
from deskd.desk.desk import Desk
from deskd.research.backtest import run_backtest, run_scenario
from deskd.strategies.filters import EntryFilter
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger
from tests.conftest import EXAMPLE
from tests.daemon.helpers import T0, TF, Scripted

S1 = "S1_TREND_EMA_ATR_ADX"
N = 40  # bars fed; the signal comes at the last one
REGIME = {"atr_period": 3, "vol_z_window": 5, "spike_tr_atr_th": 2.5}


def bars(n: int = N, spike_last: bool = False, seed: int = 7) -> list[BarClosed]:
    """A seeded random walk of EURUSD M15 bars from T0; the last one a 60-pip range when
    ``spike_last``."""
    rng = np.random.default_rng(seed)
    out, price = [], 1.1
    for i in range(n):
        o = price
        c = round(o + rng.normal(0, 0.0004) + 0.0001, 5)
        h, lo = max(o, c) + abs(rng.normal(0, 0.0002)), min(o, c) - abs(rng.normal(0, 0.0002))
        if spike_last and i == n - 1:
            h, lo = max(o, c) + 0.003, min(o, c) - 0.003
        out.append(BarClosed("EURUSD", TF, T0 + i * TF, o, round(h, 5), round(lo, 5), c, 0.0))
        price = c
    return out


def desk_config(filters: dict | None) -> DeskConfig:
    spec: dict = {} if filters is None else {"filters": filters}
    return DeskConfig.model_validate({
        "universe": {"timeframe": "M15", "symbols": ["EURUSD"]},
        "regime": REGIME,
        "strategies": {S1: spec},
        "costs": {"spread_pips": {"EURUSD": 0.0}, "slippage": {"slip_base_pips": 0.0, "slip_k_pips": 0.0}},
    })


def decisions(filters: dict | None, feed: list[BarClosed], on: list[int], others: list[int] = ()) -> list[Decision]:
    """The decisions of a desk whose S1 (scripted) signals on the bar indices ``on`` (and a
    second strategy without filters, OTHER, on ``others``)."""
    cfg = desk_config(filters)
    desk = Desk(cfg, paper_broker(cfg, "A"), "A")
    desk.set_strategies("EURUSD", [Scripted(S1, "EURUSD", on=on), Scripted("OTHER", "EURUSD", on=others)])
    out: list[Decision] = []
    desk.bus.subscribe(Decision, out.append)
    for b in feed:
        desk.on_bar(b)
    return out


def last_reason(filters: dict | None, feed: list[BarClosed] | None = None) -> str:
    feed = feed or bars()
    (d,) = decisions(filters, feed, on=[len(feed) - 1])
    return d.reason


def book_values(feed: list[BarClosed]) -> tuple[float, float, RegimeTagger]:
    """ADX(3) and ATR(3)% of the close after the last bar, and the regime tagger there."""
    book = IndicatorBook()
    regime = RegimeTagger(book, REGIME["atr_period"], REGIME["vol_z_window"], -0.5, 0.5, REGIME["spike_tr_atr_th"])
    adx, atr = book.adx(3), book.atr(3)
    for b in feed:
        book.update(b.high, b.low, b.close)
    return adx.value, atr.value / feed[-1].close * 100.0, regime


def test_an_adx_band_blocks_outside_it_and_allows_inside_with_its_reason():
    adx, _, _ = book_values(bars())
    assert 0 < adx < 100
    assert last_reason({"adx": {"period": 3, "min": adx - 0.01}}) == "traded"
    assert last_reason({"adx": {"period": 3, "min": adx + 0.01}}) == "filter:adx"
    assert last_reason({"adx": {"period": 3, "max": adx + 0.01}}) == "traded"
    assert last_reason({"adx": {"period": 3, "max": adx - 0.01}}) == "filter:adx"
    assert last_reason({"adx": {"period": 3, "min": adx, "max": adx}}) == "traded"  # bounds included


def test_an_atr_pct_band_blocks_outside_it_and_allows_inside_with_its_reason():
    _, pct, _ = book_values(bars())
    assert 0 < pct < 1
    assert last_reason({"atr_pct": {"period": 3, "min_pct": pct * 0.99}}) == "traded"
    assert last_reason({"atr_pct": {"period": 3, "min_pct": pct * 1.01}}) == "filter:atr_pct"
    assert last_reason({"atr_pct": {"period": 3, "max_pct": pct * 1.01}}) == "traded"
    assert last_reason({"atr_pct": {"period": 3, "max_pct": pct * 0.99}}) == "filter:atr_pct"


def test_vol_regimes_allow_only_the_listed_tags():
    _, _, regime = book_values(bars())
    vol = regime.vol
    assert vol in ("LOW", "MID", "HIGH")
    assert last_reason({"vol_regimes": [vol]}) == "traded"
    assert last_reason({"vol_regimes": [v for v in ("LOW", "MID", "HIGH") if v != vol]}) == "filter:vol"


def test_a_spike_bar_is_blocked_only_when_asked():
    spiky = bars(spike_last=True)
    assert book_values(spiky)[2].spike and not book_values(bars())[2].spike
    assert last_reason({"block_spike": True}, spiky) == "filter:spike"
    assert last_reason({"block_spike": False, "hours_utc": list(range(24))}, spiky) == "traded"
    assert last_reason({"block_spike": True}, bars()) == "traded"


def test_hours_are_the_utc_hour_of_the_decision_bars_close():
    feed = bars()
    hour = (feed[-1].bar_ts + TF) // 3600 % 24  # the close, not the open
    assert (feed[-1].bar_ts // 3600 % 24) != hour or (feed[-1].bar_ts + TF) % 3600 != 0
    assert last_reason({"hours_utc": [hour]}) == "traded"
    assert last_reason({"hours_utc": [(hour + 1) % 24, (hour + 23) % 24]}) == "filter:hour"


def test_an_undefined_indicator_blocks_during_warm_up():
    early = bars(n=4)  # ADX(3) needs 6 bars
    assert math.isnan(book_values(early)[0])
    assert last_reason({"adx": {"period": 3, "min": 0}}, early) == "filter:adx"
    assert last_reason({"vol_regimes": ["LOW", "MID", "HIGH"]}, early) == "filter:vol"


def test_the_filter_comes_before_the_position_check_and_leaves_other_strategies_alone():
    feed = bars()
    hour = (feed[-1].bar_ts + TF) // 3600 % 24
    out = decisions({"hours_utc": [(hour + 12) % 24]}, feed, on=[N - 1], others=[N - 3, N - 1])
    mine = {(d.strategy_id, d.bar_ts): d.reason for d in out}
    assert mine[("OTHER", feed[N - 3].bar_ts)] == "traded"  # no filter of its own
    assert mine[(S1, feed[-1].bar_ts)] == "filter:hour"  # not position_open: its own rule first
    assert mine[("OTHER", feed[-1].bar_ts)] == "position_open"


def test_a_filter_builds_its_indicators_in_the_shared_book_and_none_without_parts():
    book = IndicatorBook()
    regime = RegimeTagger(book, 14, 100, -0.5, 0.5, 2.5)
    n = len(book)
    f = EntryFilter(FiltersConfig(adx={"period": 14, "min": 20}), book, regime)
    assert f._adx is book.adx(14) and len(book) == n + 1  # ADX(14) shares the tagger's ATR(14)
    assert f.warmup_bars() == 28
    with pytest.raises(ValueError, match="no part"):
        EntryFilter(FiltersConfig(), book, regime)
    cfg = desk_config({})
    assert Desk(cfg, paper_broker(cfg, "A"), "A").filters == {}


@pytest.mark.parametrize("filters, where", [
    ({"hours_utc": [24]}, "strategies.S1_TREND_EMA_ATR_ADX.filters.hours_utc.0"),
    ({"hours_utc": []}, "strategies.S1_TREND_EMA_ATR_ADX.filters.hours_utc"),
    ({"hours_utc": [3, 3]}, "strategies.S1_TREND_EMA_ATR_ADX.filters.hours_utc"),
    ({"adx": {"min": 30, "max": 20}}, "strategies.S1_TREND_EMA_ATR_ADX.filters.adx"),
    ({"adx": {"period": 14}}, "strategies.S1_TREND_EMA_ATR_ADX.filters.adx"),
    ({"adx": {"min": 120}}, "strategies.S1_TREND_EMA_ATR_ADX.filters.adx.min"),
    ({"atr_pct": {"min_pct": -1}}, "strategies.S1_TREND_EMA_ATR_ADX.filters.atr_pct.min_pct"),
    ({"vol_regimes": ["CALM"]}, "strategies.S1_TREND_EMA_ATR_ADX.filters.vol_regimes.0"),
    ({"adx_min": 20}, "strategies.S1_TREND_EMA_ATR_ADX.filters.adx_min"),
])
def test_bad_filter_settings_are_config_errors_naming_their_key(tmp_path, filters, where):
    from deskd.configs.loader import ConfigError

    text = EXAMPLE.read_text().replace(
        "    stops: {k_sl: 2.0, min_sl_pips: 10, k_tp: 3.0, min_tp_pips: 15}\n",
        "    stops: {k_sl: 2.0, min_sl_pips: 10, k_tp: 3.0, min_tp_pips: 15}\n"
        f"    filters: {json.dumps(filters)}\n", 1)
    path = tmp_path / "desk.yaml"
    path.write_text(text.replace("../../data/sample/", str(EXAMPLE.parent.parent.parent / "data" / "sample") + "/"))
    with pytest.raises((ConfigError, ValidationError)) as e:
        load_config(path)
    assert where in str(e.value), str(e.value)


# -- on the bundled sample ------------------------------------------------------------------------

def with_filters(filters: object, drop: bool = False) -> DeskConfig:
    d = load_config(EXAMPLE).model_dump(mode="json", by_alias=True)
    if drop:
        d["strategies"][S1].pop("filters", None)
    else:
        d["strategies"][S1]["filters"] = filters
    return DeskConfig.model_validate(d, context={"config_dir": EXAMPLE.parent})


def test_without_filters_the_sample_decides_and_trades_exactly_as_before(tmp_path):
    plain = load_config(EXAMPLE)
    assert "filters" not in plain.model_dump(mode="json", by_alias=True)["strategies"][S1]
    files = ("trades.csv", "decisions.csv", "equity.csv")
    out = {}
    for name, cfg in (("plain", plain), ("null", with_filters(None)), ("empty", with_filters({}))):
        run_backtest(cfg, ["B"], tmp_path / name, decisions="csv")
        out[name] = [(tmp_path / name / f).read_bytes() for f in files]
    assert out["plain"] == out["null"] == out["empty"]
    assert (tmp_path / "plain" / "config.yaml").read_bytes() == (tmp_path / "null" / "config.yaml").read_bytes()


def test_a_backtest_journals_filter_skips_in_decisions_csv_and_counts_them_in_report_json(tmp_path):
    cfg = with_filters({"adx": {"min": 30}, "hours_utc": list(range(7, 21)), "block_spike": True})
    report = run_backtest(cfg, ["A"], tmp_path / "run", decisions="csv")
    counts = report["scenarios"]["A"]["decisions"]
    skipped = counts["skipped"]
    assert skipped["filter:adx"] > 0 and skipped["filter:hour"] > 0 and skipped["filter:spike"] > 0
    with open(tmp_path / "run" / "decisions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r: n for r, n in Counter(r["reason"] for r in rows).items() if r.startswith("filter:")} == {
        r: n for r, n in skipped.items() if r.startswith("filter:")}
    for r in rows:  # a filtered signal never trades, and is journaled with its strategy
        if r["reason"].startswith("filter:"):
            assert r["action"] == "SKIPPED" and r["strategy_id"] == S1
    assert json.loads((tmp_path / "run" / "report.json").read_text())["scenarios"]["A"]["decisions"] == counts
    plain = run_scenario(load_config(EXAMPLE), "A", None)
    assert report["scenarios"]["A"]["overall"]["trades"] < len(plain.trades)


def test_the_readme_filters_block_is_a_valid_config():
    import re

    import yaml

    from tests.conftest import ROOT

    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
                if "hours_utc:" in b and "atr_pct:" in b]
    d = load_config(EXAMPLE).model_dump(mode="json", by_alias=True)
    d["strategies"][S1]["filters"] = yaml.safe_load(block)["strategies"][S1]["filters"]
    cfg = DeskConfig.model_validate(d, context={"config_dir": EXAMPLE.parent})
    f = cfg.strategies[S1].filters
    assert f is not None and f.adx is not None and f.atr_pct is not None and f.block_spike and len(f.hours_utc or []) == 14
