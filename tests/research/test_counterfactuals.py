"""Counterfactuals (deskd.research.counterfactuals): every decision's bracket simulated on the
bars after it. A TRADED decision's counterfactual is its real trade; a skipped one's is the
trade a desk that took it alone would have made; turning them on changes no output of the
desk; and a decision's counterfactual never reads the bars up to its own close (a leaking
variant that enters in the decision's own bar is shown to fail that test)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deskd.adapters.paper import paper_desk
from deskd.adapters.replay import replay, replay_feed
from deskd.configs.loader import load_config
from deskd.core.events import BarClosed, Decision, DecisionAction, SignalIntent, Trade
from deskd.research.backtest import run_backtest, run_scenario
from deskd.research.counterfactuals import (
    CF_COLUMNS,
    Counterfactual,
    CounterfactualObserver,
    bracket_pips,
)
from tests.conftest import EXAMPLE

#: how a real trade can close that a counterfactual cannot: an operator's flatten (also the
#: flatten that follows a halt), a close at the broker. No backtest closes a trade so; a test
#: that met one would exclude it by name, never silently.
NOT_COUNTERFACTUAL_EXITS = {"FLATTEN", "BROKER_CLOSE", "MARGIN_CLOSEOUT", "MARKET"}


def _cfg(policy: str = "sl_first", max_hold: int | None = None, **costs):
    c = load_config(EXAMPLE)
    c = c.model_copy(update={"strategies": c.strategies.enable("S2_MR_ZSCORE_EMA_REGIME",
                                                                "S3_BREAKOUT_ATR_REGIME_EMA200")})
    c = c.model_copy(update={"bar_contract": c.bar_contract.model_copy(update={"intrabar_policy": policy})})
    if max_hold is not None:
        c = c.model_copy(update={"risk": c.risk.model_copy(update={"max_hold_bars": max_hold})})
    if costs:
        slip = c.costs.slippage.model_copy(update=costs)
        c = c.model_copy(update={"costs": c.costs.model_copy(update={"slippage": slip})})
    return c


def _run(cfg, scenario: str) -> tuple[list[Trade], list[Counterfactual]]:
    """One scenario of ``cfg`` on the sample with an observer: the real trades and every
    decision's counterfactual, in decision order."""
    got: list[Counterfactual] = []
    desk = paper_desk(cfg, scenario)
    obs = CounterfactualObserver(desk, on_done=got.append)
    order: list[Decision] = []
    desk.bus.subscribe(Decision, order.append)
    replay(desk, replay_feed(cfg), end_bar=obs.end_bar)
    obs.finish()
    by_decision = {id(cf.decision): cf for cf in got}
    return desk.ledger.closed, [by_decision[id(d)] for d in order]


def _same_as_trade(cf: Counterfactual, t: Trade) -> None:
    assert (cf.entry_ts, cf.entry_price, cf.sl_price, cf.tp_price) == (t.fill_ts, t.entry_price, t.sl_price,
                                                                     t.tp_price), t
    assert (cf.outcome, cf.exit_ts, cf.exit_price) == (t.exit_reason, t.exit_ts, t.exit_price), t
    assert (cf.pnl_pips, cf.mae_pips, cf.mfe_pips, cf.hold_bars) == (t.pnl_pips, t.mae_pips, t.mfe_pips,
                                                                     t.hold_bars), t


@pytest.mark.parametrize("scenario,policy,max_hold", [("A", "sl_first", None), ("C", "tp_first", 12),
                                                      ("B", "open_proximity", 5)])
def test_a_traded_decisions_counterfactual_is_its_real_trade(scenario, policy, max_hold):
    cfg = _cfg(policy, max_hold)
    trades, cfs = _run(cfg, scenario)
    by_id = {t.client_order_id: t for t in trades}
    traded = [cf for cf in cfs if cf.decision.action == DecisionAction.TRADED]
    assert len(traded) == len(trades) > 50
    excluded = [t for t in trades if t.exit_reason in NOT_COUNTERFACTUAL_EXITS]
    assert excluded == []  # none in a backtest; they would differ by design
    for cf in traded:
        _same_as_trade(cf, by_id[cf.decision.client_order_id])
    assert {t.exit_reason for t in trades} >= {"SL", "TP", "TIME"}
    assert all(cf.done for cf in cfs)


class _Once:
    """A strategy that signals one given intent at its bar, and nothing else."""

    def __init__(self, intent: SignalIntent):
        self.intent = intent
        self.strategy_id = intent.strategy_id

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:
        return self.intent if bar.bar_ts == self.intent.bar_ts else None


def test_a_skipped_decisions_counterfactual_is_the_trade_a_desk_taking_it_alone_makes():
    cfg = _cfg()
    _, cfs = _run(cfg, "C")
    rng = random.Random(7)
    skipped = [cf for cf in cfs if cf.decision.action == DecisionAction.SKIPPED and cf.outcome is not None]
    assert len(skipped) > 500
    for cf in rng.sample(skipped, 8):
        d = cf.decision
        alone = paper_desk(cfg, "C")
        intent = SignalIntent(d.bar_ts, d.symbol, d.strategy_id, d.side, d.sl_pips, d.tp_pips, d.atr_pips,
                              d.regime, d.score_name, d.score)
        for sym in alone.instruments:
            alone.set_strategies(sym, [_Once(intent)] if sym == d.symbol else [])
        replay(alone, replay_feed(cfg))
        (t,) = alone.ledger.closed
        _same_as_trade(cf, t)


def test_turning_counterfactuals_on_or_off_changes_no_output_of_the_desk(tmp_path: Path):
    cfg = _cfg()
    run_backtest(cfg, ["A", "C"], tmp_path / "on", decisions="csv")
    run_backtest(cfg, ["A", "C"], tmp_path / "off", decisions="csv", counterfactuals=False)
    for name in ("trades.csv", "decisions.csv", "equity.csv"):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes(), name
    on, off = (json.loads((tmp_path / r / "report.json").read_text())["scenarios"] for r in ("on", "off"))
    for scn in on:  # what the desk did; breakdowns read from the counterfactuals differ by design
        for key in ("overall", "decisions", "by_strategy", "by_exit_reason", "final_equity_usd"):
            assert on[scn][key] == off[scn][key], (scn, key)
    assert (tmp_path / "on" / "counterfactuals.parquet").exists()
    assert not (tmp_path / "off" / "counterfactuals.parquet").exists()
    runs = {r: json.loads((tmp_path / r / "run.json").read_text()) for r in ("on", "off")}
    assert [runs[r]["outputs"]["counterfactuals"] for r in ("on", "off")] == ["on", "off"]
    assert runs["on"]["config_fingerprint"] == runs["off"]["config_fingerprint"]
    assert runs["on"]["run_id"] != runs["off"]["run_id"]  # the folders hold different files


def test_counterfactuals_parquet_has_one_row_per_decision_in_decisions_order(tmp_path: Path):
    cfg = _cfg()
    run_backtest(cfg, ["A", "B"], tmp_path / "run")
    dec = pq.read_table(tmp_path / "run" / "decisions.parquet")
    cf = pq.read_table(tmp_path / "run" / "counterfactuals.parquet")
    assert cf.column_names == CF_COLUMNS
    assert cf.num_rows == dec.num_rows
    for c in ("scenario", "decision_time", "symbol", "strategy_id", "side", "action", "reason"):
        assert cf.column(c).equals(dec.column(c)), c
    df = cf.to_pandas()
    filled = df[df.cf_outcome.notna()]
    assert set(filled.cf_outcome) <= {"TP", "SL", "TIME", "EOD"}
    clear = filled[filled.cf_pnl_pips.abs() >= 0.01]  # the file's pips are rounded; the sign is the exact P&L's
    assert (clear.cf_result == clear.cf_pnl_pips.gt(0).map({True: "WIN", False: "LOSS"})).all()
    assert (filled.cf_entry_time >= filled.decision_time).all() and (filled.cf_exit_time >= filled.cf_entry_time).all()
    assert (filled.cf_mae_pips >= 0).all() and (filled.cf_mfe_pips >= 0).all() and (filled.cf_hold_bars >= 1).all()
    assert len(df) - len(filled) <= 3 * 2  # only decisions on a symbol's last bar have no next open


def test_counterfactuals_parquet_is_the_same_bytes_from_worker_processes(tmp_path: Path):
    cfg = _cfg()
    run_backtest(cfg, ["A", "B"], tmp_path / "one", jobs=1)
    run_backtest(cfg, ["A", "B"], tmp_path / "two", jobs=2)
    name = "counterfactuals.parquet"
    assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_small_batches_write_the_same_rows_as_one(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from deskd.research.counterfactuals import counterfactual_schema

    cfg = _cfg()
    tables = []
    for rows in (100_000, 97):
        path = tmp_path / f"{rows}.arrow"
        with ipc.new_file(str(path), counterfactual_schema()) as sink:
            desk = paper_desk(cfg, "A")
            obs = CounterfactualObserver(desk, sink, batch_rows=rows)
            replay(desk, replay_feed(cfg), end_bar=obs.end_bar)
            obs.finish()
        with pa.memory_map(str(path)) as src:
            tables.append(ipc.open_file(src).read_all())
    assert tables[0].num_rows > 1000 and tables[0].equals(tables[1])


# -- never reads bars up to its own close ------------------------------------------------------

class _LeakyObserver(CounterfactualObserver):
    """The off-by-one a counterfactual must not have: a decision enters in its own bar (at that
    bar's open, its high/low checked), as if the desk could trade a bar it decided at the close of."""

    def end_bar(self, bar: BarClosed) -> None:
        st = self.books[bar.symbol]
        st.pending, st.fresh = st.pending + st.fresh, []
        super().end_bar(bar)


def _walk(n: int, seed: int, t0: int = 1_699_999_200) -> list[BarClosed]:
    rng = random.Random(seed)
    px, bars = 1.1, []
    for i in range(n):
        o = px
        c = round(o + rng.gauss(0, 0.0008), 5)
        h = round(max(o, c) + abs(rng.gauss(0, 0.0004)), 5)
        lo = round(min(o, c) - abs(rng.gauss(0, 0.0004)), 5)
        bars.append(BarClosed("EURUSD", 900, t0 + 900 * i, o, h, lo, c, 100.0))
        px = c
    return bars


def _resolve(observer: type[CounterfactualObserver], bars: list[BarClosed], d: Decision,
             **costs) -> Counterfactual:
    """``d``'s counterfactual on EURUSD ``bars`` alone (no strategy), under scenario A of
    :func:`_cfg` with ``costs``."""
    cfg = _cfg(**costs)
    cfg = cfg.model_copy(update={"universe": cfg.universe.model_copy(update={"symbols": ["EURUSD"]})})
    desk = paper_desk(cfg, "A")
    desk.set_strategies("EURUSD", [])
    got: list[Counterfactual] = []
    obs = observer(desk, on_done=got.append)
    for bar in bars:
        desk.on_bar(bar)
        if bar.bar_ts == d.bar_ts:
            desk.bus.publish(d)  # journaled at the close of its bar, as the desk does
        obs.end_bar(bar)
    obs.finish()
    (cf,) = got
    return cf


def _cf_of(observer: type[CounterfactualObserver], bars: list[BarClosed], d: Decision) -> tuple:
    # no slippage: the slippage's ATR reads history by definition (as a real fill's)
    cf = _resolve(observer, bars, d, slip_k_pips=0.0)
    return (cf.outcome, cf.entry_ts, cf.entry_price, cf.sl_price, cf.tp_price, cf.exit_ts, cf.exit_price,
            cf.pnl_pips, cf.mae_pips, cf.mfe_pips, cf.hold_bars)


def _decision(bars: list[BarClosed], k: int, side: int) -> Decision:
    return Decision(bars[k].bar_ts, "EURUSD", "S1_TREND_EMA_ATR_ADX", side, DecisionAction.SKIPPED,
                    "position_open", 12.0, 18.0, "VOL=MID|SPIKE=0", None, bars[k].close, 6.0, "adx", 30.0)


def _scrambled_up_to(bars: list[BarClosed], ts: int, seed: int) -> list[BarClosed]:
    """Every bar opening at or before ``ts`` (the decision's bar included) replaced by another."""
    rng = random.Random(seed)
    out = []
    for b in bars:
        if b.bar_ts <= ts:
            o = round(b.open + rng.uniform(-0.01, 0.01), 5)
            c = round(o + rng.uniform(-0.003, 0.003), 5)
            b = b._replace(open=o, close=c, high=max(o, c) + 0.002, low=min(o, c) - 0.002)
        out.append(b)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_a_counterfactual_reads_no_bar_up_to_its_decisions_close(seed):
    bars = _walk(400, seed)
    rng = random.Random(seed)
    d = _decision(bars, rng.randrange(50, 380), rng.choice([1, -1]))
    assert _cf_of(CounterfactualObserver, bars, d) == _cf_of(CounterfactualObserver,
                                                              _scrambled_up_to(bars, d.bar_ts, seed), d)


def test_the_leaking_variant_is_caught_by_that_test():
    caught = 0
    for seed in range(8):
        bars = _walk(400, seed)
        rng = random.Random(seed)
        d = _decision(bars, rng.randrange(50, 380), rng.choice([1, -1]))
        caught += _cf_of(_LeakyObserver, bars, d) != _cf_of(_LeakyObserver, _scrambled_up_to(bars, d.bar_ts, seed), d)
    assert caught == 8


# -- small pieces -------------------------------------------------------------------------------

def test_the_bracket_is_the_one_the_desk_sends():
    assert bracket_pips(12.345, 18.26) == (12.3, 18.3)
    assert bracket_pips(0.04, None) == (0.1, None)


def test_a_decision_on_the_last_bar_has_no_entry_and_null_fields():
    bars = _walk(60, 3)
    d = _decision(bars, 59, 1)
    cf = _resolve(CounterfactualObserver, bars, d)
    assert cf.done and cf.outcome is None and cf.result is None and cf.entry_ts is None and cf.hold_bars is None


def test_run_scenario_writes_a_row_for_every_decision_to_its_sink():
    cfg = _cfg()
    rows: list = []

    class Sink:
        def write_batch(self, batch):
            rows.append(batch.num_rows)

    res = run_scenario(cfg, "A", None, counterfactuals=Sink())
    assert sum(rows) == sum(res.decisions.values()) > 1000


# -- the heaps against one bracket at a time ----------------------------------------------------

def _one_at_a_time(bars: list[BarClosed], k: int, side: int, sl_pips: float, tp_pips: float | None,
                   max_hold: int, cost: float, policy: str) -> tuple:
    """The reference: one decision at bar ``k`` simulated alone, bar by bar, with the paper
    broker's bracket rule and a constant cost (pips per side)."""
    from deskd.adapters.paper import bracket_exit

    pip, e = 0.0001, k + 1
    if e >= len(bars):
        return (None,) * 11
    p0 = bars[e].open + side * cost * pip
    sl = round(p0 - side * sl_pips * pip, 5)
    tp = None if tp_pips is None else round(p0 + side * tp_pips * pip, 5)
    mae = mfe = 0.0
    for x in range(e, len(bars)):
        b = bars[x]
        if x - e >= max_hold:
            reason, ref, hold, ts = "TIME", b.open, x - e, b.bar_ts
            break
        hit = bracket_exit(side, sl, tp, b.open, b.high, b.low, policy)
        if hit is not None:
            reason, ref, hold, ts = hit[0].value, hit[1], x - e + 1, b.bar_ts
            break
        best, worst = ((b.high - p0) / pip, (p0 - b.low) / pip) if side > 0 else ((p0 - b.low) / pip, (b.high - p0) / pip)
        mfe, mae = max(mfe, best), max(mae, worst)
    else:
        reason, ref, hold, ts = "EOD", bars[-1].close, len(bars) - e, bars[-1].close_ts
    exc = side * (ref - p0) / pip
    mfe, mae = max(mfe, exc), max(mae, -exc)
    price = ref - side * cost * pip
    return (reason, bars[e].bar_ts, p0, sl, tp, ts, price, side * (price - p0) / pip, mae, mfe, hold)


@pytest.mark.parametrize("policy", ["sl_first", "tp_first", "open_proximity"])
def test_many_overlapping_brackets_resolve_as_each_would_alone(policy):
    bars = _walk(1500, 11)
    cfg = _cfg(policy, max_hold=7, slip_k_pips=0.0)  # EURUSD: 0.4 pips half spread + 0.1 slippage
    cfg = cfg.model_copy(update={"universe": cfg.universe.model_copy(update={"symbols": ["EURUSD"]})})
    desk = paper_desk(cfg, "A")
    desk.set_strategies("EURUSD", [])
    got: list[Counterfactual] = []
    obs = CounterfactualObserver(desk, on_done=got.append)
    rng = random.Random(5)
    want = {}
    for k, bar in enumerate(bars):
        desk.on_bar(bar)
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            side = rng.choice([1, -1])
            sl, tp = rng.uniform(2, 15), rng.choice([None, rng.uniform(2, 20)])
            d = Decision(bar.bar_ts, "EURUSD", "X", side, DecisionAction.SKIPPED, "position_open", sl, tp, "",
                         None, bar.close, 5.0, "x", 1.0)
            desk.bus.publish(d)
            want[id(d)] = _one_at_a_time(bars, k, side, *bracket_pips(sl, tp), 7, 0.5, policy)
        obs.end_bar(bar)
    obs.finish()
    assert len(got) == len(want) > 2000
    outcomes = set()
    for cf in got:
        have = (cf.outcome, cf.entry_ts, cf.entry_price, cf.sl_price, cf.tp_price, cf.exit_ts, cf.exit_price,
                cf.pnl_pips, cf.mae_pips, cf.mfe_pips, cf.hold_bars)
        if cf.outcome is None:
            have = (None,) * 11
        assert have == want[id(cf.decision)]
        outcomes.add(cf.outcome)
    assert outcomes == {"SL", "TP", "TIME", "EOD", None}


def test_brackets_entering_on_a_compaction_bar_keep_their_bars():
    """Every bracket closes in a bar where the observer compacts its bar history, while a
    decision waits to enter in that very bar: its MAE/MFE must still read its own bars (this
    crashed, or read only the last bar, when compaction dropped the current bar)."""
    from deskd.adapters.paper import paper_desk
    from deskd.configs.loader import load_config
    from deskd.core.events import BarClosed, Decision, DecisionAction
    from deskd.research.counterfactuals import CounterfactualObserver
    from tests.conftest import EXAMPLE

    obs = CounterfactualObserver(paper_desk(load_config(EXAMPLE), "A"))
    obs.default_hold = 100_000
    done: list = []
    obs.on_done = done.append
    tf, p = 900, 1.1
    n = 5125
    for i in range(n):
        ts = i * tf
        spike = i > 0 and i % 256 == 0  # every long's 2-pip target fills in these bars
        high = p + (0.0005 if spike else 0.00001) + (0.02 if i == 5123 else 0.0)
        if i == 5119:  # a short whose stop is 100 pips away: stopped by the 200-pip spike at bar 5123
            obs.on_decision(Decision(ts, "EURUSD", "X", -1, DecisionAction.SKIPPED, "r", 100.0, 100.0, "R"))
        elif i < 5119:
            obs.on_decision(Decision(ts, "EURUSD", "X", 1, DecisionAction.SKIPPED, "r", 100.0, 2.0, "R"))
        obs.end_bar(BarClosed("EURUSD", tf, ts, p, high, p - 0.00001, p, 0))
    obs.finish()
    short = done[-1]
    assert short.side == -1 and short.outcome == "SL" and short.exit_ts == 5123 * tf
    # its excursion is read over its own bars up to the stop (at least the 100 pips to it)
    assert short.mae_pips >= 100 and short.hold_bars == 5123 - 5120 + 1
