"""Walk-forward: splits with explicit units, out-of-sample trades inside their test windows, and
no choice that reads a bar after its train window (shown to catch a leaking variant)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from deskd.configs.models import DeskConfig
from deskd.research.splits import Split, bar_splits, calendar_splits, parse_span
from deskd.research.tuning.tune import TuneOptions, tune
from deskd.research.walkforward import WalkForwardOptions, walkforward
from tests.conftest import EXAMPLE
from tests.research.test_tuning import S1, SMALL, s1_config


def ts(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp())


def test_calendar_splits_roll_by_the_test_span_with_the_embargo_between():
    sp = calendar_splits(ts(2019, 1, 1), ts(2020, 2, 1), parse_span("--train", "6M"), parse_span("--test", "3M"),
                         parse_span("--embargo", "1D"))
    assert sp == [Split(1, ts(2019, 1, 1), ts(2019, 7, 1), ts(2019, 7, 2), ts(2019, 10, 2)),
                  Split(2, ts(2019, 4, 1), ts(2019, 10, 1), ts(2019, 10, 2), ts(2020, 1, 2))]
    anchored = calendar_splits(ts(2019, 1, 1), ts(2020, 2, 1), parse_span("--train", "6M"),
                               parse_span("--test", "3M"), parse_span("--embargo", "0D"), anchored=True)
    assert [s.train_start for s in anchored] == [ts(2019, 1, 1)] * 2
    assert [s.test_start - s.train_end for s in anchored] == [0, 0]
    with pytest.raises(ValueError, match="shorter than one train"):
        calendar_splits(ts(2019, 1, 1), ts(2019, 6, 1), parse_span("--train", "6M"), parse_span("--test", "3M"),
                        parse_span("--embargo", "1D"))


@pytest.mark.parametrize("text", ["12", "12X", "M", "0M", "-1M", "12 months"])
def test_a_span_without_a_unit_or_count_is_refused(text):
    with pytest.raises(ValueError, match="--train"):
        parse_span("--train", text)


def test_bar_splits_hold_exactly_the_bars_asked_for():
    bars = np.arange(100, dtype=np.int64) * 60 + 1_000_000
    bars[50:] += 86_400  # a weekend gap: counted in bars, not time
    sp = bar_splits(bars, train_bars=50, test_bars=10, embargo_bars=5, timeframe_s=60)
    assert len(sp) == 4
    for s in sp:
        inside = lambda a, b: int(((bars >= a) & (bars < b)).sum())  # noqa: E731
        assert inside(s.train_start, s.train_end) == 50
        assert inside(s.train_end, s.test_start) == 5
        assert inside(s.test_start, s.test_end) == 10
    assert sp[-1].test_end == bars[95]  # the next bar's open: the last 5 bars make no whole test window
    exact = bar_splits(bars, train_bars=50, test_bars=10, embargo_bars=0, timeframe_s=60)
    assert len(exact) == 5 and exact[-1].test_end == bars[-1] + 60  # ends at the last bar's close
    with pytest.raises(ValueError, match="hold no split"):
        bar_splits(bars, 90, 20, 0)


def epoch_s(times: pd.Series) -> pd.Series:
    """Aware times as UTC epoch seconds (whatever resolution pandas parsed them at)."""
    return (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def tampered_config(tmp_path, after_ts: int) -> DeskConfig:
    """The sample S1 config reading a copy of EURUSD whose bars from ``after_ts`` on are
    mirrored around their first close (a different future)."""
    cfg = s1_config(space=SMALL, top_k=2, min_trades_per_split=1)
    src = cfg.data.files["EURUSD"]
    df = pd.read_csv(src)
    t = epoch_s(pd.to_datetime(df["time"]).dt.tz_localize("Europe/Athens"))
    late = t >= after_ts
    pivot = df.loc[late, "close"].iloc[0]
    for c in ("open", "close"):
        df.loc[late, c] = 2 * pivot - df.loc[late, c]
    hi, lo = 2 * pivot - df.loc[late, "low"], 2 * pivot - df.loc[late, "high"]
    df.loc[late, "high"], df.loc[late, "low"] = hi, lo
    path = tmp_path / "EURUSD_tampered.csv.gz"
    with gzip.open(path, "wt") as fh:
        df.to_csv(fh, index=False, float_format="%.5f")
    d = cfg.model_dump(mode="json", by_alias=True)
    d["data"]["files"]["EURUSD"] = str(path)
    return DeskConfig.model_validate(d, context={"config_dir": EXAMPLE.parent})


def _scores(cfg: DeskConfig, tmp_path, name: str, start: int, end: int) -> list[tuple[str, float]]:
    res = tune(cfg, TuneOptions(strategy_id=S1, out_dir=tmp_path / name, storage=f"sqlite:///{tmp_path / name}.db",
                                start_ts=start, end_ts=end, config_dir=EXAMPLE.parent), quiet=True)
    return sorted((str(sorted(r.point.items())), r.score) for r in res.stage1 + res.stage2)


def test_a_choice_never_reads_a_bar_after_its_train_window(tmp_path):
    train_start, train_end, test_end = ts(2026, 1, 16), ts(2026, 3, 1), ts(2026, 4, 1)
    honest = s1_config(space=SMALL, top_k=2, min_trades_per_split=1)
    changed = tampered_config(tmp_path, after_ts=train_end)
    assert _scores(honest, tmp_path, "a", train_start, train_end) == _scores(changed, tmp_path, "b", train_start, train_end)
    # the check can fail: a leaking variant that tunes through the test window sees the change
    assert (_scores(honest, tmp_path, "c", train_start, test_end)
            != _scores(changed, tmp_path, "d", train_start, test_end))


def test_a_walkforward_stitches_out_of_sample_trades_inside_their_test_windows(tmp_path):
    cfg = s1_config(space=SMALL, top_k=2, min_trades_per_split=1, stage2_scenarios=["A", "C"])
    first = ts(2026, 1, 16)
    splits = calendar_splits(first, ts(2026, 7, 1), parse_span("--train", "2M"), parse_span("--test", "1M"),
                             parse_span("--embargo", "1D"))
    out = tmp_path / "wf"
    meta = walkforward(cfg, WalkForwardOptions(S1, out, splits, {"unit": "calendar"}, f"sqlite:///{tmp_path}/wf.db",
                                               config_dir=EXAMPLE.parent), quiet=True)
    assert len(meta["splits"]) == len(splits) >= 3
    trades = pd.read_csv(out / "oos_trades.csv")
    assert set(trades["scenario"]) == {"A", "C"} and len(trades) > 0
    for sp in splits:
        mine = trades[trades["split"] == sp.number]
        fill = epoch_s(pd.to_datetime(mine["fill_time"]))
        exit_ = epoch_s(pd.to_datetime(mine["exit_time"]))
        assert ((fill >= sp.test_start) & (fill < sp.test_end) & (exit_ <= sp.test_end)).all()
    # equity carries over: each split's test run starts where the previous one ended
    eq = pd.read_csv(out / "oos_equity.csv")
    for sc in ("A", "C"):
        e = eq[eq["scenario"] == sc]
        ends = e[e["kind"] == "END"]["equity_usd"].tolist()
        assert ends[-1] == pytest.approx(meta["out_of_sample"][sc]["final_equity_usd"], abs=0.01)
        pnl = trades[trades["scenario"] == sc]["pnl_usd"]  # each rounded to the cent in the CSV
        assert ends[-1] == pytest.approx(cfg.account.starting_equity_usd + pnl.sum(), abs=0.005 * len(pnl) + 0.01)
    stab = meta["parameter_stability"]
    assert set(stab) == {"adx_th", "ema_fast", "ema_slow"} and len(stab["ema_fast"]["values"]) == len(splits)
