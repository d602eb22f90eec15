"""equity.csv's rows (Ledger.equity_rows) show the drawdown the report quotes.

The ledger marks equity at fills, day rolls and the end, plus a few bar closes per span; the
deepest fall of those rows must equal the deepest fall over every bar close (max_dd_usd and
max_dd_frac, checked here against a brute force over all closes), and the lowest row the lowest
close, while the rows stay few.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deskd.core.bus import Bus
from deskd.core.events import BarClosed, Fill, Intent, Trade
from deskd.core.money import Instrument, QuoteConverter
from deskd.desk.ledger import Ledger
from deskd.research.report_html import drawdown

TF = 300
SYMBOLS = ("EURUSD", "GBPUSD")
START_USD = 10_000.0


def _trade(sym: str, side: int, price: float, n: int) -> Trade:
    return Trade(n, sym, "S1", side, 100_000.0, 0, 0, price, price, price - side * 0.01, None,
                 100.0, 0.0, "TREND", "test", f"o{n}")


# one step: (symbol index, close move in pips, what happens after the close)
STEP = st.tuples(st.integers(0, 1), st.integers(-40, 40), st.sampled_from(["", "", "", "day", "exit"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=120), st.sampled_from([1, -1]))
def test_marked_rows_hold_the_deepest_drawdown_and_the_lowest_close(steps, side):
    ins = {s: Instrument.parse(s) for s in SYMBOLS}
    lg = Ledger(Bus(), ins, QuoteConverter(ins), START_USD, TF)
    price = {s: 1.2 for s in SYMBOLS}
    n = 0
    for s in SYMBOLS:
        n += 1
        lg.adopt(_trade(s, side, price[s], n), 0.0)
    closes = [START_USD]  # every equity the ledger tracks, in order
    ts = 1_700_000_000
    lg.mark(ts, "DAY")
    for k, move, then in steps:
        sym = SYMBOLS[k]
        price[sym] = round(price[sym] + move * 0.0001, 5)
        if sym not in lg.open:
            n += 1
            lg.adopt(_trade(sym, side, price[sym], n), 0.0)
        lg.on_bar(BarClosed(sym, TF, ts, price[sym], price[sym], price[sym], price[sym], 0.0))
        closes.append(lg.equity_usd)
        ts += TF
        if then == "day":
            lg.mark(ts, "DAY")
        elif then == "exit":
            exit_px = round(price[sym] - side * 0.0003, 5)  # fills worse than the close
            lg.on_fill(Fill(ts, ts, f"x{n}", sym, "S1", -side, 100_000.0, Intent.EXIT,
                            exit_px, exit_px, 0.0), None)
            closes.append(lg.equity_usd)
    lg.mark(ts, "END")

    every = np.array(closes)
    dd_all, frac_all = drawdown(every)
    assert lg.max_dd_usd == (dd_all.max())
    assert abs(lg.max_dd_frac - frac_all.max()) < 1e-15

    rows = lg.equity_rows
    times = [r[0] for r in rows]
    assert times == sorted(times), "rows out of time order"
    marked = np.array([r[2] for r in rows])
    dd_rows, frac_rows = drawdown(marked)
    assert dd_rows.max() == lg.max_dd_usd
    assert abs(frac_rows.max() - lg.max_dd_frac) < 1e-15
    assert marked.min() == min(every.min(), START_USD)
    marks = sum(r[1] != "BAR" for r in rows)
    assert len(rows) - marks <= 6 * marks  # a handful of closes per span, never one per bar


def test_an_intraday_fall_between_two_marks_is_a_row():
    """The case the marks alone missed: up, down and back within one day."""
    ins = {"EURUSD": Instrument.parse("EURUSD")}
    lg = Ledger(Bus(), ins, QuoteConverter(ins), START_USD, TF)
    lg.adopt(_trade("EURUSD", 1, 1.2, 1), 0.0)
    lg.mark(0, "DAY")
    for i, px in enumerate((1.2050, 1.1900, 1.2000)):  # +500, then -1000 from that peak
        lg.on_bar(BarClosed("EURUSD", TF, i * TF, px, px, px, px, 0.0))
    lg.mark(3 * TF, "DAY")
    kinds = [(r[1], round(r[2], 2)) for r in lg.equity_rows]
    assert kinds == [("DAY", 10_000.0), ("BAR", 10_500.0), ("BAR", 9_000.0), ("DAY", 10_000.0)]
    assert abs(lg.max_dd_usd - 1_500.0) < 1e-6
