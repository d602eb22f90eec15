"""Bar-close scheduling for polled feeds: fire times, catch-up after a missed run, no
duplicates."""

from datetime import UTC, datetime

import pytest

from deskd.core.events import BarClosed
from deskd.daemon.scheduler import CandlePoller, bar_close_trigger
from tests.conftest import poll_once
from tests.daemon.helpers import T0, TF

UTC = UTC


def test_trigger_fires_just_after_each_bar_close():
    trig = bar_close_trigger(900, settle_s=2)
    t = trig.get_next_fire_time(None, datetime(2026, 1, 14, 10, 7, 30, tzinfo=UTC))
    assert t == datetime(2026, 1, 14, 10, 15, 2, tzinfo=UTC)
    h1 = bar_close_trigger(3600, settle_s=5).get_next_fire_time(None, datetime(2026, 1, 14, 10, 7, tzinfo=UTC))
    assert h1 == datetime(2026, 1, 14, 11, 0, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        bar_close_trigger(7 * 60)


class FakeBroker:
    """Completed candles appear as time passes; asked for bars after since_ts."""

    def __init__(self):
        self.bars = {"EURUSD": [], "USDJPY": []}

    def close_bar(self, i):
        for sym, px in (("EURUSD", 1.1), ("USDJPY", 150.0)):
            self.bars[sym].append(BarClosed(sym, TF, T0 + i * TF, px, px, px, px, 0.0))

    async def completed_candles(self, symbol, since_ts):
        return [b for b in self.bars[symbol] if since_ts is None or b.bar_ts > since_ts]


@pytest.mark.asyncio
async def test_poll_feeds_new_bars_in_time_then_symbol_order_and_catches_up_after_a_miss(desk_runner):
    runner = desk_runner
    broker = FakeBroker()
    poller = CandlePoller(runner, broker, ["EURUSD", "USDJPY"], TF)
    broker.close_bar(0)
    assert await poll_once(poller) == 2
    broker.close_bar(1)
    broker.close_bar(2)  # the run after bar 1 misfired: the next one catches up
    assert await poll_once(poller) == 4
    assert await poll_once(poller) == 0  # nothing new, nothing twice
    assert runner.gate.last == {"EURUSD": T0 + 2 * TF, "USDJPY": T0 + 2 * TF}
    assert runner.stats.live == 6 and runner.gate.duplicates == 0
