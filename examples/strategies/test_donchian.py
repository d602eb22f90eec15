"""Tests a user writes for a strategy: it signals where its rule says, and it cannot see the
future (deskd.testing's lookahead check, shown to catch a strategy that peeks)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from donchian import Donchian

from deskd.core.events import LONG, SHORT
from deskd.testing.lookahead import assert_no_lookahead, decisions_of

SAMPLE = Path(__file__).resolve().parents[2] / "deskd" / "data" / "sample" / "EURUSD_M15.csv.gz"


@pytest.fixture(scope="module")
def bars():
    return pd.read_csv(SAMPLE).iloc[:3000].reset_index(drop=True)


def test_it_signals_where_the_channel_breaks_and_adx_shows_a_trend(bars):
    got = {d.bar_ts: d.side for d in decisions_of(Donchian, bars, {"window": 20, "adx_min": 0})}
    prior_high = bars.high.shift(1).rolling(20).max()
    prior_low = bars.low.shift(1).rolling(20).min()
    want = np.where(bars.close > prior_high, LONG, np.where(bars.close < prior_low, SHORT, 0))
    sides = np.zeros(len(bars), dtype=int)
    t0 = min(got) - int(np.flatnonzero(want)[0]) * 900  # the first signal's row fixes the clock
    for ts, side in got.items():
        sides[(ts - t0) // 900] = side
    np.testing.assert_array_equal(sides[30:], want[30:])  # after ADX(14) is defined
    assert (sides == LONG).sum() > 20 and (sides == SHORT).sum() > 20


def test_it_does_not_look_ahead(bars):
    assert assert_no_lookahead(Donchian, bars, {"window": 20}) > 50


class Peeking(Donchian):
    """Reads the next bar's close from the frame being replayed (as a strategy that loads its
    data file whole and indexes it would): the bug the check exists for."""

    frame: pd.DataFrame

    def on_bar(self, bar):
        self.row = getattr(self, "row", -1) + 1
        closes = Peeking.frame.close.to_numpy()
        if self.row + 1 < len(closes) and closes[self.row + 1] > bar.close:
            return self.signal(bar, LONG, 0.001, "peek", 1.0)
        return None


def test_the_check_catches_a_strategy_that_reads_the_future(bars, monkeypatch):
    import deskd.testing.lookahead as la

    shock = la.shocked_after

    def replayed(frame, *a, **kw):  # the peeking strategy sees whichever frame is replayed
        Peeking.frame = shock(frame, *a, **kw)
        return Peeking.frame
    monkeypatch.setattr(la, "shocked_after", replayed)
    Peeking.frame = bars
    with pytest.raises(AssertionError, match="lookahead: changing the bars after row"):
        la.assert_no_lookahead(Peeking, bars, {"window": 20})
