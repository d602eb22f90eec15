"""Hypothesis strategies for indicator tests: random OHLC series and value lists."""

import pandas as pd
from hypothesis import strategies as st


@st.composite
def ohlc(draw, min_size=1, max_size=250):
    """A random-walk OHLC series with consistent bars: low <= open, close <= high."""
    n = draw(st.integers(min_size, max_size))
    steps = draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
    wick_hi = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n))
    wick_lo = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n))
    gaps = draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n))
    o, h, l, c = [], [], [], []
    prev = 1.1
    for k in range(n):
        op = round(prev + gaps[k] * 1e-5, 5)
        cl = round(op + steps[k] * 1e-5, 5)
        o.append(op)
        c.append(cl)
        h.append(round(max(op, cl) + wick_hi[k] * 1e-5, 5))
        l.append(round(min(op, cl) - wick_lo[k] * 1e-5, 5))
        prev = cl
    return pd.DataFrame({"open": o, "high": h, "low": l, "close": c})


values = st.lists(st.integers(-1000, 1000).map(lambda i: i / 1000.0), min_size=1, max_size=300)
