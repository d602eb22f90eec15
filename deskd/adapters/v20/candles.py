"""The live feed from v20 candles: completed mid candles as BarClosed events."""

from __future__ import annotations

from deskd.adapters.v20.client import V20Client
from deskd.adapters.v20.naming import parse_time
from deskd.core.events import BarClosed


class V20CandleSource:
    """The daemon's live feed (a :class:`deskd.daemon.scheduler.CandleSource`): completed
    mid candles of one granularity from a :class:`V20Client`, as BarClosed events."""

    def __init__(self, client: V20Client, granularity: str, timeframe_s: int, count: int = 500):
        self.client = client
        self.granularity = granularity
        self.tf = timeframe_s
        self.count = count

    async def completed_candles(self, symbol: str, since_ts: int | None) -> list[BarClosed]:
        """The latest ``count`` completed bars (``since_ts`` None), or every completed bar
        opened after ``since_ts``, page by page. Raises BrokerError."""
        out: list[BarClosed] = []
        while True:
            from_ts = None if since_ts is None else since_ts + 1
            page = await self.client.candles(symbol, self.granularity, self.count, from_ts)
            for c in page:
                ts = parse_time(c["time"])
                if since_ts is not None and ts <= since_ts:
                    continue
                m = c["mid"]
                out.append(BarClosed(symbol, self.tf, ts, float(m["o"]), float(m["h"]), float(m["l"]),
                                     float(m["c"]), float(c.get("volume", 0))))
            if since_ts is None or len(page) < self.count or not out:
                return out
            since_ts = out[-1].bar_ts  # a full page: there may be more after it
