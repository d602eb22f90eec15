"""Changing bars after t changes no decision taken at or before t (all three strategies)."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from deskd.adapters.paper import paper_desk
from deskd.configs.models import DeskConfig
from deskd.core.events import BarClosed, Decision

SAMPLE = Path(__file__).resolve().parents[2] / "deskd" / "data" / "sample" / "EURUSD_M15.csv.gz"


def decisions(df):
    cfg = DeskConfig.model_validate({
        "universe": {"timeframe": "M15", "symbols": ["EURUSD"]},
        "strategies": {"S1_TREND_EMA_ATR_ADX": {},
                       "S2_MR_ZSCORE_EMA_REGIME": {"enabled": True, "params": {"adx_max": 30, "z_entry": 1.5}},
                       "S3_BREAKOUT_ATR_REGIME_EMA200": {"enabled": True}},
        "risk": {"conflict_policy": "netting"},
    })
    desk = paper_desk(cfg)
    got = []
    desk.bus.subscribe(Decision, got.append)
    for i, r in enumerate(df.itertuples()):
        desk.on_bar(BarClosed("EURUSD", 900, 1_768_000_000 + i * 900, r.open, r.high, r.low, r.close, 0.0))
    return got


def test_decisions_at_or_before_t_ignore_every_later_bar():
    with gzip.open(SAMPLE, "rt") as fh:
        df = pd.read_csv(fh).iloc[:3000].reset_index(drop=True)
    t = 2000
    changed = df.copy()
    rng = np.random.default_rng(1)
    shock = 1 + rng.normal(0, 0.01, size=len(df) - t - 1)
    for col in ("open", "high", "low", "close"):
        changed.loc[t + 1:, col] = df.loc[t + 1:, col].to_numpy() * shock
    cut = 1_768_000_000 + t * 900
    a = [d for d in decisions(df) if d.bar_ts <= cut]
    b = [d for d in decisions(changed) if d.bar_ts <= cut]
    assert len(a) > 50 and {d.strategy_id for d in a} >= {"S1_TREND_EMA_ATR_ADX"}
    assert a == b
    assert decisions(df) != decisions(changed)  # the change did reach later decisions
