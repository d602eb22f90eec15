"""The ledger: the desk's own book of positions, equity and closed trades, built from fills.

Equity (USD) = balance (realised) + unrealised P&L of open positions marked at each bar's
close, before exit costs. P&L is computed in quote currency and converted to USD once, through
:class:`deskd.core.money.QuoteConverter`, at the exit price (realised) or the close (marked).

MAE/MFE are the worst and best excursions from the entry fill price, in pips, over the bars
the position was open, the entry bar and the exit level included. ``hold_bars`` counts the
bars the position was open at the close, plus the exit bar for in-bar stop/target fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deskd.core.bus import Bus
from deskd.core.events import BarClosed, Fill, Intent, OrderIntent, PositionClosed, Trade
from deskd.core.money import Instrument, QuoteConverter

_Kept = tuple[int, int, float, float, int]  # (seq, ts, equity_usd, balance_usd, open_positions)


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """The ledger's balances (USD), drawdown so far, next trade id, and open positions with
    their unrealised P&L (USD) at the last close."""

    balance_usd: float
    equity_usd: float
    peak_usd: float
    max_dd_usd: float
    max_dd_frac: float
    next_trade_id: int
    open: tuple[tuple[Trade, float], ...] = ()


class Ledger:
    """Positions by symbol (one net position each), equity, drawdown from peak, trade log.

    ``equity_rows`` holds (ts, kind, equity_usd, balance_usd, open_positions) at every fill
    (kind FILL), at every trading-day roll (DAY) and at the end (END), and between two of those
    marks the few bar closes (kind BAR, ts the bar's close) that keep the curve's extremes: the
    first close at the span's highest new peak, its lowest equity, and its deepest drawdown from
    the running peak in USD and as a fraction. The drawdown of these rows therefore equals
    :attr:`max_dd_usd` and :attr:`max_dd_frac` (the peak of the deepest fall is the first
    highest close of its span, and the fall is the deepest of its span), while the list grows with
    trades and days (at most five rows per mark), not bars. Raises RuntimeError when a fill
    contradicts the book (an entry on an open symbol, an exit with nothing open).
    """

    def __init__(self, bus: Bus, instruments: dict[str, Instrument], conv: QuoteConverter,
                 starting_equity_usd: float, timeframe_s: int):
        self.bus = bus
        self.timeframe_s = timeframe_s
        self.instruments = instruments
        self.conv = conv
        self._legs = conv.legs
        self.balance_usd = starting_equity_usd
        self.equity_usd = starting_equity_usd
        self.peak_usd = starting_equity_usd
        self.max_dd_usd = 0.0
        self.max_dd_frac = 0.0
        self.min_equity_usd = starting_equity_usd  # lowest bar-close equity in this process (not persisted)
        self.open: dict[str, Trade] = {}
        self.unrealized_usd: dict[str, float] = {}
        self.closed: list[Trade] = []
        self.equity_rows: list[tuple[int, str, float, float, int]] = []
        self.next_trade_id = 1
        # the bar closes kept since the last mark: why -> (seq, ts, equity_usd, balance_usd, open)
        self._seq = 0
        self._keep: dict[str, _Kept | None] = {}
        self._peak_rec: _Kept | None = None  # the close that set the running peak
        self._reset_span()

    def _reset_span(self) -> None:
        self._span_seq = self._seq  # the kept closes come after this one
        self._span_peak = -math.inf
        self._span_low = math.inf
        self._span_dd = 0.0
        self._span_dd_frac = 0.0

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(self.balance_usd, self.equity_usd, self.peak_usd, self.max_dd_usd,
                              self.max_dd_frac, self.next_trade_id,
                              tuple((t, self.unrealized_usd[sym]) for sym, t in self.open.items()))

    def restore(self, s: LedgerSnapshot) -> None:
        """Put back a :meth:`snapshot`: balances, drawdown, trade ids, open positions."""
        self.balance_usd, self.equity_usd, self.peak_usd = s.balance_usd, s.equity_usd, s.peak_usd
        self.max_dd_usd, self.max_dd_frac, self.next_trade_id = s.max_dd_usd, s.max_dd_frac, s.next_trade_id
        for t, unrealized_usd in s.open:
            self.adopt(t, unrealized_usd)

    def adopt(self, trade: Trade, unrealized_usd: float) -> None:
        """Book an open position the ledger did not see fill (restored, or adopted from the
        broker)."""
        self.open[trade.symbol] = trade
        self.unrealized_usd[trade.symbol] = unrealized_usd

    # -- per bar --------------------------------------------------------------------------
    def on_bar(self, bar: BarClosed) -> None:
        sym = bar.symbol
        if sym in self._legs:
            self.conv.last_price[sym] = bar.close
        t = self.open.get(sym)
        if t is None:
            return
        t.hold_bars += 1
        pip = self.instruments[sym].pip_size
        side = t.side
        best = (bar.high - t.entry_price) / pip if side > 0 else (t.entry_price - bar.low) / pip
        worst = (t.entry_price - bar.low) / pip if side > 0 else (bar.high - t.entry_price) / pip
        if best > t.mfe_pips:
            t.mfe_pips = best
        if worst > t.mae_pips:
            t.mae_pips = worst
        u = side * (bar.close - t.entry_price) * t.units * self.conv.quote_usd(sym, bar.close)
        self.equity_usd += u - self.unrealized_usd[sym]
        self.unrealized_usd[sym] = u
        self._track_drawdown(bar.bar_ts + bar.timeframe_s)

    def _track_drawdown(self, ts: int) -> None:
        """Largest fall from a running peak, in USD and (independently) as a fraction: the
        deepest fraction can come from a lower peak than the largest USD fall. Also keeps the
        span's extreme closes for :attr:`equity_rows` (``ts``: when this equity was known)."""
        e = self.equity_usd
        peak = self.peak_usd
        self._seq += 1
        if e >= peak:
            self.peak_usd = e
            self._peak_rec = (self._seq, ts, e, self.balance_usd, len(self.open))
            if e > self._span_peak:
                self._span_peak = e
                self._keep["peak"] = self._peak_rec
            return
        keep = self._keep
        rec: _Kept | None = None
        if e < self.min_equity_usd:
            self.min_equity_usd = e
        if e < self._span_low:
            self._span_low = e
            rec = keep["low"] = (self._seq, ts, e, self.balance_usd, len(self.open))
        dd = peak - e
        if dd > self.max_dd_usd:
            self.max_dd_usd = dd
        if dd > self._span_dd:
            self._span_dd = dd
            rec = keep["dd"] = rec or (self._seq, ts, e, self.balance_usd, len(self.open))
            keep["dd_peak"] = self._peak_rec
        frac = dd / peak
        if frac > self.max_dd_frac:
            self.max_dd_frac = frac
        if frac > self._span_dd_frac:
            self._span_dd_frac = frac
            keep["dd_frac"] = rec or (self._seq, ts, e, self.balance_usd, len(self.open))
            keep["dd_frac_peak"] = self._peak_rec

    def mark(self, ts: int, kind: str = "DAY") -> None:
        """Record the equity now: at a trading-day roll (DAY, the daily series for
        Sharpe/Sortino and the drawdown anchors), a fill (FILL) or the end of a run (END),
        after the span's kept bar closes (BAR) in the order they happened. A peak set before
        the span is already a row (the first highest close of its own span); the latest close,
        when it is this very point (an exit fill's), is this row, not also a BAR."""
        if self._keep:
            rows = self.equity_rows
            for seq, t, e, bal, n_open in sorted(set(r for r in self._keep.values() if r is not None)):
                if seq > self._span_seq and not (seq == self._seq and t == ts and e == self.equity_usd):
                    rows.append((t, "BAR", e, bal, n_open))
            self._keep.clear()
        self._reset_span()
        self.equity_rows.append((ts, kind, self.equity_usd, self.balance_usd, len(self.open)))

    # -- fills ----------------------------------------------------------------------------
    def on_fill(self, f: Fill, order: OrderIntent | None) -> None:
        """Book a fill. ``order`` is the entry order an entry fill answers (its risk, regime
        and reason code go into the trade); exits need none. Raises RuntimeError for an entry
        fill without its order."""
        if f.intent is Intent.ENTRY:
            if order is None:
                raise RuntimeError(f"ledger: entry fill {f.client_order_id} answers no open order")
            self._open(f, order)
        else:
            self._close(f)
        self.mark(f.fill_ts, "FILL")

    def _open(self, f: Fill, order: OrderIntent) -> None:
        if f.symbol in self.open:
            raise RuntimeError(f"ledger: entry fill {f.client_order_id} on {f.symbol}, which "
                               f"already has a position")
        if f.sl_price is None:
            raise RuntimeError(f"ledger: entry fill {f.client_order_id} carries no stop-loss level")
        t = Trade(self.next_trade_id, f.symbol, f.strategy_id, f.side, f.units,
                  signal_ts=order.bar_ts + self.timeframe_s, fill_ts=f.fill_ts,
                  entry_price=f.price, entry_ref_price=f.ref_price,
                  sl_price=f.sl_price, tp_price=f.tp_price, risk_usd=order.risk_usd,
                  entry_cost_pips=f.cost_pips, regime=order.regime, why=order.why,
                  client_order_id=f.client_order_id, entry_spread_pips=f.spread_pips,
                  entry_slippage_pips=f.slippage_pips, entry_spike=f.spike)
        self.next_trade_id += 1
        self.open[f.symbol] = t
        self.unrealized_usd[f.symbol] = 0.0

    def _close(self, f: Fill) -> None:
        t = self.open.pop(f.symbol, None)
        if t is None:
            raise RuntimeError(f"ledger: exit fill {f.client_order_id} on {f.symbol}, which "
                               f"has no open position")
        pip = self.instruments[f.symbol].pip_size
        side = t.side
        t.exit_ts = f.fill_ts
        t.exit_price = f.price
        t.exit_ref_price = f.ref_price
        t.exit_reason = f.exit_reason or ""
        t.exit_cost_pips = f.cost_pips
        t.exit_spread_pips, t.exit_slippage_pips, t.exit_spike = f.spread_pips, f.slippage_pips, f.spike
        t.gross_pips = side * (f.ref_price - t.entry_ref_price) / pip
        t.cost_pips = t.entry_cost_pips + f.cost_pips
        t.pnl_pips = side * (f.price - t.entry_price) / pip
        t.pnl_usd = side * (f.price - t.entry_price) * t.units * self.conv.quote_usd(f.symbol, f.price)
        t.r_multiple = t.pnl_usd / t.risk_usd if t.risk_usd > 0 else 0.0
        if t.exit_reason in ("SL", "TP"):
            t.hold_bars += 1  # the exit bar was not yet counted at a close
        exc = side * (f.ref_price - t.entry_price) / pip
        if exc > t.mfe_pips:
            t.mfe_pips = exc
        if -exc > t.mae_pips:
            t.mae_pips = -exc
        self.balance_usd += t.pnl_usd
        self.equity_usd += t.pnl_usd - self.unrealized_usd.pop(f.symbol)
        self._track_drawdown(f.fill_ts)
        self.closed.append(t)
        self.bus.publish(PositionClosed(f.bar_ts, t))
