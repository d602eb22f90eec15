"""Bar-close scheduling for feeds that are polled (the HTTP broker's candles).

APScheduler fires a job ``settle_s`` seconds after every bar close of the timeframe (cron on
UTC minutes). The job asks the :class:`CandleSource` for each symbol's completed candles
since the last bar it has, and feeds them in time order to the runner, whose gate drops
duplicates and logs gaps and lateness. Misfires: runs coalesce, a run later than
``misfire_grace_time`` is skipped, and because every poll asks for everything since the last
bar, the next run catches up: nothing is lost, late bars are reported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from deskd.core.events import BarClosed

log = structlog.get_logger("deskd.scheduler")


class CandleSource(Protocol):
    """Where completed candles come from (the HTTP broker adapter implements this)."""

    async def completed_candles(self, symbol: str, since_ts: int | None) -> list[BarClosed]:
        """Completed bars of ``symbol`` opened after ``since_ts`` (all recent ones when None),
        oldest first."""
        ...


def bar_close_trigger(timeframe_s: int, settle_s: int = 2) -> CronTrigger:
    """A UTC cron trigger at every bar close plus ``settle_s`` seconds. Raises ValueError for a
    timeframe that does not divide the hour or the day."""
    divides_hour = timeframe_s <= 3600 and 3600 % timeframe_s == 0
    whole_hours_dividing_day = timeframe_s % 3600 == 0 and 86400 % timeframe_s == 0
    if timeframe_s % 60 or not (divides_hour or whole_hours_dividing_day):
        raise ValueError(f"timeframe of {timeframe_s} s does not divide the hour or the day")
    if timeframe_s < 3600:
        minutes = ",".join(str(m) for m in range(0, 60, timeframe_s // 60))
        return CronTrigger(minute=minutes, second=settle_s, timezone="UTC")
    hours = ",".join(str(h) for h in range(0, 24, timeframe_s // 3600))
    return CronTrigger(hour=hours, minute=0, second=settle_s, timezone="UTC")


SUPERSEDED = "feed:superseded_bar"


class CandlePoller:
    """Polls ``source`` and feeds new bars to ``runner`` (a DeskRunner).

    A poll that returns several bars of one symbol (start-up, a missed poll, a restart after
    downtime) feeds them all in time order, but only the newest of each symbol may open a
    position: a signal on a bar that a later bar has already superseded comes too late to
    trade, and is journaled as SKIPPED ``feed:superseded_bar``. With ``wall_clock`` the gate
    reports bars released long after their close as late; a broker whose clock is not the
    wall clock (the fake broker) runs without it.
    """

    def __init__(self, runner, source: CandleSource, symbols: list[str], timeframe_s: int,
                 settle_s: int = 2, wall_clock: bool = True):
        self.runner = runner
        self.source = source
        self.symbols = symbols
        self.tf = timeframe_s
        self.trigger = bar_close_trigger(timeframe_s, settle_s)  # ValueError now, not at start
        self.wall_clock = wall_clock
        self.scheduler: AsyncIOScheduler | None = None

    async def fetch(self, since_last: bool = True) -> list[BarClosed]:
        """Every completed bar since the last one fed (all the source's recent bars without
        ``since_last``: start-up warm-up), all symbols, in (time, universe) order."""
        got: list[BarClosed] = []
        for sym in self.symbols:
            since = self.runner.gate.last.get(sym) if since_last else None
            got.extend(await self.source.completed_candles(sym, since))
        order = {s: i for i, s in enumerate(self.symbols)}
        got.sort(key=lambda b: (b.bar_ts, order[b.symbol]))
        return got

    def feed(self, bars: list[BarClosed]) -> None:
        """Feed ``bars`` (from :meth:`fetch`) to the runner, superseded ones without entries."""
        newest = {b.symbol: b.bar_ts for b in bars}
        now = self.runner.clock() if self.wall_clock else None
        for bar in bars:
            self.runner.feed(bar, now, None if bar.bar_ts == newest[bar.symbol] else SUPERSEDED)

    def start(self, job: Callable[[], Awaitable[object]]) -> AsyncIOScheduler:
        """Schedule ``job`` (a coroutine function: the live session's tick) at every bar
        close plus ``settle_s``, on the running event loop."""
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.scheduler.add_job(job, self.trigger,
                               id="bar-close-poll", coalesce=True, max_instances=1,
                               misfire_grace_time=max(1, self.tf // 2))
        self.scheduler.start()
        log.info("bar-close polling scheduled", timeframe_s=self.tf,
                 next_run=str(self.scheduler.get_job("bar-close-poll").next_run_time))
        return self.scheduler
