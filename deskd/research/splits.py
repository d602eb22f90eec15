"""Walk-forward splits with explicit units: calendar spans or bar counts, never ambiguous.

A split is a train window, an embargo, and a test window, each [start, end) in UTC epoch
seconds. Rolling: the train window slides by the test length; anchored: it always starts at
the first bar and grows. The embargo (a gap between the last train bar and the first test bar)
keeps a position or an indicator state opened on the last train bars from being scored as out-of-
sample (Lopez de Prado 2018, "Advances in Financial Machine Learning", sec. 7.4.2). The last
split's test window ends at or before the data's end: a test window is never cut short.

Spans: a number and a unit, ``12M`` (months), ``3M``, ``2W`` (weeks), ``1D`` (days), ``6H``
(hours), ``1Y`` (years); calendar arithmetic in UTC (``2019-01-31 + 1M`` is ``2019-02-28``).
Bar counts: whole bars of the data as read (a gap in the data is not a bar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deskd.core.time import iso

_SPAN = re.compile(r"^\s*(\d{1,4})\s*([YMWDH])\s*$")
_UNITS = {"Y": "years", "M": "months", "W": "weeks", "D": "days", "H": "hours"}


@dataclass(frozen=True)
class Split:
    """One walk-forward split (UTC epoch seconds, each window [start, end)); ``number`` from 1."""

    number: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def as_dict(self) -> dict[str, object]:
        return {"split": self.number, "train_from": iso(self.train_start), "train_to": iso(self.train_end),
                "test_from": iso(self.test_start), "test_to": iso(self.test_end),
                "embargo_s": self.test_start - self.train_end}


def parse_span(flag: str, text: str) -> pd.DateOffset:
    """``12M`` -> a calendar offset of 12 months. Raises ValueError naming ``flag``."""
    m = _SPAN.match(text or "")
    if not m or int(m.group(1)) == 0 and flag != "--embargo":
        raise ValueError(f"{flag} {text!r}: expected a count and a unit, e.g. 12M, 3M, 2W, 1D, 6H or 1Y "
                         f"(Y years, M months, W weeks, D days, H hours)")
    return pd.DateOffset(**{_UNITS[m.group(2)]: int(m.group(1))})


def _add(ts: int, span: pd.DateOffset) -> int:
    return int((pd.Timestamp(ts, unit="s", tz="UTC") + span).timestamp())


def calendar_splits(first_ts: int, end_ts: int, train: pd.DateOffset, test: pd.DateOffset,
                    embargo: pd.DateOffset, anchored: bool = False) -> list[Split]:
    """Splits over [first_ts, end_ts) (UTC epoch s) by calendar spans. Raises ValueError when
    not even one split fits."""
    out: list[Split] = []
    start = first_ts
    while True:
        train_end = _add(start, train)
        test_start = _add(train_end, embargo)
        test_end = _add(test_start, test)
        if test_end > end_ts:
            break
        out.append(Split(len(out) + 1, first_ts if anchored else start, train_end, test_start, test_end))
        start = _add(start, test)
    if not out:
        raise ValueError(f"the data ({iso(first_ts)} to {iso(end_ts)}) is shorter than one train + embargo + "
                         f"test window: shorten --train or --test")
    return out


def bar_splits(bar_ts: np.ndarray, train_bars: int, test_bars: int, embargo_bars: int,
               anchored: bool = False, timeframe_s: int = 60) -> list[Split]:
    """Splits by bar counts over the sorted unique bar open times ``bar_ts`` (UTC epoch s):
    windows hold exactly that many bars; a window's end is the open time of the bar after it
    (or the last bar's close). Raises ValueError when not even one split fits or a count < 1."""
    if train_bars < 1 or test_bars < 1 or embargo_bars < 0:
        raise ValueError("--train-bars and --test-bars must be 1 or more, --embargo-bars 0 or more")
    n = len(bar_ts)

    def edge(i: int) -> int:
        return int(bar_ts[i]) if i < n else int(bar_ts[-1]) + timeframe_s

    out: list[Split] = []
    i = 0
    while i + train_bars + embargo_bars + test_bars <= n:
        a, b = i, i + train_bars
        c = b + embargo_bars
        d = c + test_bars
        out.append(Split(len(out) + 1, edge(0) if anchored else edge(a), edge(b), edge(c), edge(d)))
        i += test_bars
    if not out:
        raise ValueError(f"{n:,} bars hold no split of {train_bars:,} train + {embargo_bars:,} embargo + "
                         f"{test_bars:,} test bars")
    return out
