"""Drawdown guard: marked-to-market equity against the FX day and week anchors.

The FX trading day rolls at ``day_roll_time`` in ``day_roll_timezone`` (17:00 New York by
default): a bar opening at or after the roll belongs to the next trading day. The week rolls
with the first trading day of a new ISO week (Sunday 17:00 New York starts Monday's day).
At a roll the anchor is the equity marked at the last bar close before it.

A day breach, (anchor - equity) / anchor >= dd_day_limit_frac, halts new entries until the
next day roll; a week breach until the next week roll. With ``max_dd_frac`` set, a fall of that
fraction below the equity peak (marked to market, since the desk started or an operator last
resumed it) halts new entries until an operator resumes the desk: it never lifts by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """Whether new entries are allowed; ``until`` (UTC epoch s) is when a halt lifts by
    itself, None when there is no halt; ``code`` is ``day_dd`` or ``week_dd`` for a halt."""

    allow_entries: bool
    until: int | None
    reason: str
    code: str = ""


ALLOW = GuardVerdict(True, None, "")
#: ``until`` of the drawdown-from-peak halt: it lifts only when an operator resumes the desk
UNTIL_RESUMED = 2**62


@dataclass(frozen=True, slots=True)
class GuardSnapshot:
    """What a restart must not reset: the trading day, its anchors (USD), when the next roll
    is due and the halt in force (UTC epoch seconds; ``halt_until_ts`` None = no halt)."""

    trading_day: date | None
    day_anchor_usd: float
    week_anchor_usd: float
    next_roll_ts: int
    halt_until_ts: int | None
    halt_code: str
    halt_reason: str
    peak_equity_usd: float = 0.0


class TradingCalendar:
    """Maps UTC epoch seconds to FX trading days and their roll times."""

    def __init__(self, roll_time: str = "17:00", tz: str = "America/New_York"):
        hh, mm = (int(x) for x in roll_time.split(":"))
        self.roll = time(hh, mm)
        self.tz = ZoneInfo(tz)
        self._shift = timedelta(hours=24) - timedelta(hours=hh, minutes=mm)

    def trading_day(self, ts: int) -> date:
        """The trading day that UTC time ``ts`` belongs to."""
        local = datetime.fromtimestamp(ts, self.tz)
        return (local.replace(tzinfo=None) + self._shift).date()

    def day_start_ts(self, day: date) -> int:
        """UTC epoch seconds at which trading day ``day`` starts (the previous day's roll)."""
        prev = day - timedelta(days=1)
        return int(datetime.combine(prev, self.roll, tzinfo=self.tz).timestamp())

    def next_day_roll_ts(self, ts: int) -> int:
        return self.day_start_ts(self.trading_day(ts) + timedelta(days=1))

    def next_week_roll_ts(self, ts: int) -> int:
        day = self.trading_day(ts)
        monday = day + timedelta(days=7 - day.weekday())
        return self.day_start_ts(monday)

    @staticmethod
    def week_of(day: date) -> tuple[int, int]:
        iso = day.isocalendar()
        return iso.year, iso.week


class DrawdownGuard:
    """Keeps the day and week anchors and the drawdown halt.

    ``roll(ts, equity)`` is called with each bar's open time before the bar is processed and
    returns True when a day rolled; ``check(ts, equity)`` after each mark returns a new
    halting verdict on a breach (None otherwise); ``verdict()`` answers for new entries.
    """

    def __init__(self, calendar: TradingCalendar, dd_day_limit_frac: float,
                 dd_week_limit_frac: float, max_dd_frac: float | None = None, peak_equity_usd: float = 0.0):
        self.cal = calendar
        self.max_dd_frac = max_dd_frac
        self.peak_equity_usd = peak_equity_usd
        self.day_limit = dd_day_limit_frac
        self.week_limit = dd_week_limit_frac
        self.day_anchor_usd = 0.0
        self.week_anchor_usd = 0.0
        self.day: date | None = None
        self.next_roll_ts = -(2**62)
        self.halt_until: int | None = None
        self.halt: GuardVerdict = ALLOW

    def snapshot(self) -> GuardSnapshot:
        """The guard's state, for the store (before the first roll, ``next_roll_ts`` is 0)."""
        return GuardSnapshot(self.day, self.day_anchor_usd, self.week_anchor_usd,
                             max(self.next_roll_ts, 0), self.halt_until, self.halt.code, self.halt.reason,
                             self.peak_equity_usd)

    def restore(self, s: GuardSnapshot) -> None:
        """Put back a :meth:`snapshot` (a restart keeps the anchors and the halt)."""
        self.day = s.trading_day
        self.day_anchor_usd = s.day_anchor_usd
        self.week_anchor_usd = s.week_anchor_usd
        self.next_roll_ts = s.next_roll_ts
        self.halt_until = s.halt_until_ts
        self.halt = (GuardVerdict(False, s.halt_until_ts, s.halt_reason, s.halt_code)
                     if s.halt_until_ts is not None else ALLOW)
        self.peak_equity_usd = s.peak_equity_usd

    def roll(self, ts: int, equity_usd: float) -> bool:
        if ts < self.next_roll_ts:
            return False
        day = self.cal.trading_day(ts)
        new_week = self.day is None or self.cal.week_of(day) != self.cal.week_of(self.day)
        self.day = day
        self.day_anchor_usd = equity_usd
        if new_week:
            self.week_anchor_usd = equity_usd
        self.next_roll_ts = self.cal.day_start_ts(day + timedelta(days=1))
        return True

    def expired(self, ts: int) -> bool:
        """True (once) when a drawdown halt has reached its lift time at ``ts``."""
        if self.halt_until is not None and ts >= self.halt_until:
            self.halt_until = None
            self.halt = ALLOW
            return True
        return False

    def check(self, ts: int, equity_usd: float) -> GuardVerdict | None:
        """A new or extended halt when equity breaches a limit, else None."""
        if self.max_dd_frac is not None:
            if equity_usd > self.peak_equity_usd:
                self.peak_equity_usd = equity_usd
            elif self.peak_equity_usd > 0 and self.halt.code != "max_dd":
                dd = (self.peak_equity_usd - equity_usd) / self.peak_equity_usd
                if dd >= self.max_dd_frac:
                    return self._halt(UNTIL_RESUMED, "max_dd", f"drawdown from the equity peak {dd:.2%} "
                                      f">= {self.max_dd_frac:.2%}: halted until an operator resumes")
        if self.week_anchor_usd > 0:
            dd_week = (self.week_anchor_usd - equity_usd) / self.week_anchor_usd
            if dd_week >= self.week_limit:
                until = self.cal.next_week_roll_ts(ts)
                if self.halt_until is None or until > self.halt_until:
                    return self._halt(until, "week_dd",
                                      f"week drawdown {dd_week:.2%} >= {self.week_limit:.2%}")
        if self.day_anchor_usd > 0:
            dd_day = (self.day_anchor_usd - equity_usd) / self.day_anchor_usd
            if dd_day >= self.day_limit and self.halt_until is None:
                return self._halt(self.cal.next_day_roll_ts(ts), "day_dd",
                                  f"day drawdown {dd_day:.2%} >= {self.day_limit:.2%}")
        return None

    def lift(self, equity_usd: float) -> None:
        """An operator lifts the halt in force; the equity peak restarts at ``equity_usd``."""
        self.halt_until = None
        self.halt = ALLOW
        self.peak_equity_usd = equity_usd

    def _halt(self, until: int, code: str, reason: str) -> GuardVerdict:
        self.halt_until = until
        self.halt = GuardVerdict(False, until, reason, code)
        return self.halt

    def verdict(self) -> GuardVerdict:
        return self.halt
