"""The fast path: numba kernels that screen many parameter points of one strategy on one
symbol, trade for trade equal to the event path (DESIGN.md, "The research side"). Kernels:
S1 (:mod:`.s1`, TrendEmaAtrAdx), S2 (:mod:`.s2`, MeanReversionZScore) and S3 (:mod:`.s3`,
BreakoutAtrCompression).

The event path (the real Desk on replayed bars) stays the truth for every figure a desk acts
on; the fast path only screens. Its contract, held by ``tests/research/test_fastpath.py``:
for the same config, point, scenario and window, its trades equal the event path's on
:func:`event_config` (entry and exit times, side, units, prices to 1e-9, exit reason,
pnl_usd to 1e-6). A strategy without a kernel (:func:`has_kernel`) is tuned on the event path.

    bars = load_bars(cfg, "EURUSD")                       # one data load
    runs = screen(cfg, "S1_TREND_EMA_ATR_ADX", "B",
                  [{"params": {"ema_fast": 10, "ema_slow": 60}, "stops": {"k_sl": 1.5}}, ...], bars)
    runs[0].trades                                          # trades.csv's columns, as a DataFrame
"""

from deskd.research.fastpath.screening import (
    KERNELS,
    BarArrays,
    FastRun,
    Point,
    event_config,
    has_kernel,
    load_bars,
    resolve_point,
    screen,
    warmup_bars,
)

__all__ = ["KERNELS", "BarArrays", "FastRun", "Point", "event_config", "has_kernel", "load_bars",
           "resolve_point", "screen", "warmup_bars"]
