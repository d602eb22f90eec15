"""Helpers of the report.html tests (unit and browser): tiny bar files that trade nothing, and
the numbers a page carries in its ``data-metric`` elements."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
_METRIC = re.compile(r'data-scenario="([^"]*)" data-metric="([^"]+)" data-value="([^"]*)"')


def tiny_bar_files(folder: Path, bars: int = 40) -> dict[str, Path]:
    """One M15 CSV per sample symbol, ``bars`` flat-ish bars from 2026-01-05 00:00 UTC: too few
    for any strategy to warm up, so a backtest on them trades nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, sym in enumerate(SYMBOLS):
        base = 150.0 if sym == "USDJPY" else 1.1 + 0.1 * k
        lines = ["time,open,high,low,close,volume"]
        for i in range(bars):
            h, m = divmod(15 * i, 60)
            p = base * (1 + 0.0001 * (i % 5))
            lines.append(f"2026-01-05 {h:02d}:{m:02d}:00,{p:.5f},{p * 1.0002:.5f},{p * 0.9998:.5f},{p:.5f},100")
        path = folder / f"{sym}_M15.csv"
        path.write_text("\n".join(lines) + "\n")
        out[sym] = path
    return out


def page_metrics(page: str) -> dict[tuple[str, str], object]:
    """{(scenario, metric): value} of every ``data-metric`` element of a report.html page
    (the value decoded from its JSON ``data-value``; scenario "" for run-wide numbers)."""
    return {(html.unescape(s), m): json.loads(html.unescape(v)) for s, m, v in _METRIC.findall(page)}
