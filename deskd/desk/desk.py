"""The desk: every handler of the bar-close pipeline, wired on one bus.

Per bar of symbol S (handlers of BarClosed, in this order):

1. ``on_bar_open``  - trading-day roll: day/week anchors, daily equity mark, lift of an expired
                      drawdown halt (before anything of the new day happens);
2. broker.on_bar    - pending market orders fill at the open, resting brackets fill in the bar;
3. ledger.on_bar    - positions marked at the close, MAE/MFE, hold_bars;
4. ``on_bar_close`` - drawdown check, S's indicators and regime, strategies, time stops, then
                      for any signals: position check -> conflict resolution -> guard and
                      state -> allocator and caps -> order to the broker. Every signal becomes
                      a Decision event: TRADED, or SKIPPED with its reason.

The same Desk runs a backtest (replay feed + paper broker), the paper daemon, and the live
daemon (broker candles + :class:`deskd.adapters.v20.broker.HttpBroker`).
"""

from __future__ import annotations

from collections.abc import Callable

from deskd.adapters.paper import CostModel, PaperBroker, Position
from deskd.adapters.replay import ReplayFeed
from deskd.configs.models import DeskConfig
from deskd.core.bus import Bus
from deskd.core.events import (
    BarClosed,
    Decision,
    Fill,
    Intent,
    OrderCancelled,
    OrderIntent,
    OrderRejected,
    PositionClosed,
    SignalIntent,
    StateChanged,
    Trade,
)
from deskd.core.money import Instrument, QuoteConverter
from deskd.desk.ledger import Ledger
from deskd.desk.state import StateMachine, TransitionRefused, Trigger
from deskd.risk.allocator import Allocator
from deskd.risk.conflict import ConflictResolver
from deskd.risk.guard import ALLOW, DrawdownGuard, TradingCalendar
from deskd.strategies import STRATEGY_CLASSES
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger

_new = tuple.__new__  # builds a NamedTuple event without its Python-level __new__ (hot path)
TRADED = "TRADED"
SKIPPED = "SKIPPED"


class Desk:
    """One desk on one bus: strategies, risk, guard, state machine, broker and ledger.

    ``scenario`` names the cost scenario (a key of ``cfg.costs.scenarios``); it is part of
    every client order id, so scenarios of one backtest never share ids. ``broker`` replaces
    the paper broker (the live HTTP broker, :class:`deskd.adapters.v20.broker.HttpBroker`, built on
    the same ``bus``); it answers ``submit``, ``on_bar``, ``pending``, ``positions``,
    ``last_bar``, ``cancel_pending`` and ``close_at_last`` as the paper broker does.
    Raises KeyError for an unknown scenario, ValueError for a universe whose quote currencies
    cannot be converted to USD.
    """

    def __init__(self, cfg: DeskConfig, scenario: str = "A", bus: Bus | None = None, broker=None):
        self.cfg = cfg
        self.scenario = scenario
        self.bus = bus or Bus()
        self.tf_s = cfg.universe.timeframe_s
        syms = cfg.universe.symbols
        self.instruments = {s: Instrument.parse(s) for s in syms}
        self.conv = QuoteConverter(self.instruments)
        risk = cfg.risk

        self.books = {s: IndicatorBook() for s in syms}
        rg = cfg.regime
        self.regimes = {s: RegimeTagger(self.books[s], rg.atr_period, rg.vol_z_window,
                                        rg.vol_z_low, rg.vol_z_high, rg.spike_tr_atr_th)
                        for s in syms}
        self.strategies: dict[str, list] = {s: [] for s in syms}
        self.max_hold_bars: dict[str, int] = {}  # per strategy id; others use risk.max_hold_bars
        self._default_hold = risk.max_hold_bars
        for sid, scfg in cfg.strategies.enabled().items():
            self.max_hold_bars[sid] = scfg.max_hold_bars or risk.max_hold_bars
            for s in cfg.strategy_symbols(sid):
                self.strategies[s].append(STRATEGY_CLASSES[sid](
                    s, self.instruments[s].pip_size, scfg, self.books[s], self.regimes[s]))
        cost_atr = {s: self.books[s].atr(cfg.costs.slippage.atr_period) for s in syms}

        self.state = StateMachine(risk.max_execution_errors, risk.clean_executions_to_recover,
                                  risk.degraded_risk_scale)
        self.guard = DrawdownGuard(TradingCalendar(risk.day_roll_time, risk.day_roll_timezone),
                                   risk.dd_day_limit_frac, risk.dd_week_limit_frac)
        self.allocator = Allocator(risk, self.instruments, self.conv)
        self.resolve = ConflictResolver(risk.conflict_policy, risk.priority)
        self.broker = broker or PaperBroker(self.bus, self.instruments,
                                            CostModel(cfg.costs, cfg.costs.scenarios[scenario]),
                                            cost_atr, cfg.bar_contract.intrabar_policy)
        self.ledger = Ledger(self.bus, self.instruments, self.conv,
                             cfg.account.starting_equity_usd, self.tf_s)
        self._entry_pending: dict[str, str] = {}
        self._exit_pending: set[str] = set()
        self._last_checked_equity = self.ledger.equity_usd
        # per symbol: (indicator book update, strategies)
        self._per_symbol = {s: (self.books[s].update, tuple(self.strategies[s])) for s in syms}
        self._open = self.ledger.open
        self.last_bar_ts: int | None = None
        # set by a live feed while it catches up on bars a newer bar has already superseded:
        # their signals are journaled but never traded
        self.entries_blocked: str | None = None
        self.execution_errors_total = 0  # for metrics; the state machine's count resets

        b = self.bus
        b.subscribe(BarClosed, self.on_bar_open)
        b.subscribe(BarClosed, self.broker.on_bar)
        b.subscribe(BarClosed, self.ledger.on_bar)
        b.subscribe(BarClosed, self.on_bar_close)
        b.subscribe(Fill, self.ledger.on_fill)
        b.subscribe(Fill, self.on_fill)
        b.subscribe(PositionClosed, self.on_position_closed)
        b.subscribe(OrderRejected, self.on_rejected)

    def set_strategies(self, symbol: str, strategies: list) -> None:
        """Replace the strategies run on ``symbol`` (objects with ``strategy_id`` and
        ``on_bar(bar) -> SignalIntent | None``); for research and tests."""
        self._per_symbol[symbol] = (self._per_symbol[symbol][0], tuple(strategies))
        self.strategies[symbol] = list(strategies)

    # -- per-bar path -----------------------------------------------------------------------
    def on_bar_open(self, bar: BarClosed) -> None:
        ts = bar.bar_ts
        self.last_bar_ts = ts
        g = self.guard
        if ts < g.next_roll_ts:
            return
        self.ledger.mark(ts)
        g.roll(ts, self.ledger.equity_usd)
        self._last_checked_equity = self.ledger.equity_usd
        if g.expired(ts):
            self._emit(self.state.fire(Trigger.DD_HALT_EXPIRED, ts, "drawdown halt reached its anchor"))

    def on_bar_close(self, bar: BarClosed) -> None:
        eq = self.ledger.equity_usd
        if eq != self._last_checked_equity:
            self._last_checked_equity = eq
            v = self.guard.check(bar.bar_ts, eq)
            if v is not None:
                self._emit(self.state.fire(Trigger.DD_BREACH, bar.bar_ts, v.reason))
        sym = bar.symbol
        update, strategies = self._per_symbol[sym]
        update(bar.high, bar.low, bar.close)
        signals = None
        for st in strategies:
            s = st.on_bar(bar)
            if s is not None:
                if signals is None:
                    signals = [s]
                else:
                    signals.append(s)
        t = self._open.get(sym)
        if t is not None and t.hold_bars >= self.max_hold_bars.get(t.strategy_id, self._default_hold) \
                and sym not in self._exit_pending:
            self._exit(bar, t.strategy_id, t.side, t.units, "TIME")
        if signals is not None:
            self._decide(bar, signals)

    def warm_up(self, bar: BarClosed) -> None:
        """Feed an already-processed bar to the indicators and strategies only (their signals
        are dropped): restart rebuilds in-memory indicator state this way, bar for bar, before
        the store's snapshot restores positions, orders and the guard."""
        sym = bar.symbol
        self.last_bar_ts = bar.bar_ts
        self.broker.last_bar[sym] = bar
        if sym in self.conv.legs:
            self.conv.last_price[sym] = bar.close
        update, strategies = self._per_symbol[sym]
        update(bar.high, bar.low, bar.close)
        for st in strategies:
            st.on_bar(bar)

    def adopt_position(self, trade: Trade, unrealized_usd: float, notional_usd: float) -> None:
        """Take back an open position from the store on restart: the ledger's book, the caps,
        and the paper broker's resting bracket."""
        self.ledger.open[trade.symbol] = trade
        self.ledger.unrealized_usd[trade.symbol] = unrealized_usd
        self.allocator.book(trade.client_order_id, trade.symbol, trade.strategy_id,
                            trade.risk_usd, notional_usd)
        entry = OrderIntent(trade.client_order_id, trade.fill_ts, trade.symbol, trade.strategy_id,
                            trade.side, trade.units, Intent.ENTRY, risk_usd=trade.risk_usd,
                            regime=trade.regime, why=trade.why)
        self.broker.positions[trade.symbol] = Position(entry, trade.side, trade.units,
                                                       trade.sl_price, trade.tp_price)

    def adopt_order(self, order: OrderIntent) -> None:
        """Take back an unfilled order from the store on restart: it fills at the next open."""
        self.broker.pending.setdefault(order.symbol, []).append(order)
        if order.intent is Intent.ENTRY:
            self.allocator.book(order.client_order_id, order.symbol, order.strategy_id,
                                order.risk_usd, order.notional_usd)
            self.ledger.expect(order)
            self._entry_pending[order.symbol] = order.client_order_id
        else:
            self._exit_pending.add(order.symbol)

    def equity_restored(self) -> None:
        """The ledger's equity was set from the store: the drawdown check starts from it."""
        self._last_checked_equity = self.ledger.equity_usd

    # -- decisions --------------------------------------------------------------------------
    def _decide(self, bar: BarClosed, signals: list[SignalIntent]) -> None:
        sym = bar.symbol
        if sym in self._open or sym in self._entry_pending:
            for s in signals:
                self._record(s, SKIPPED, "position_open")
            return
        if self.entries_blocked is not None:
            for s in signals:
                self._record(s, SKIPPED, self.entries_blocked)
            return
        winner, losers = self.resolve(signals)
        for s, why in losers:
            self._record(s, SKIPPED, why)
        if winner is None:
            return
        verdict = self.guard.verdict()
        if not verdict.allow_entries:
            self._record(winner, SKIPPED, f"guard:{verdict.code}_halt")
            return
        if not self.state.allows_entries:
            self._record(winner, SKIPPED, f"state:{self.state.state.value}")
            return
        # stops go to the broker as whole tenths of a pip
        sl_pips = max(round(winner.sl_pips, 1), 0.1)
        tp_pips = None if winner.tp_pips is None else round(winner.tp_pips, 1)
        alloc = self.allocator.size(sym, winner.strategy_id, sl_pips, bar.close,
                                    self.ledger.equity_usd, self.state.risk_scale)
        if alloc.skip is not None:
            self._record(winner, SKIPPED, alloc.skip)
            return
        oid = self.order_id(sym, bar.bar_ts, "ENTRY")
        order = OrderIntent(oid, bar.bar_ts, sym, winner.strategy_id, winner.side, alloc.units,
                            Intent.ENTRY, sl_pips, tp_pips, alloc.risk_usd,
                            notional_usd=alloc.notional_usd, regime=winner.regime, why=winner.why)
        self.bus.publish(order)
        if not self.broker.submit(order):
            self._record(winner, SKIPPED, "broker:rejected", oid)
            return
        self.allocator.book(oid, sym, winner.strategy_id, alloc.risk_usd, alloc.notional_usd)
        self.ledger.expect(order)
        self._entry_pending[sym] = oid
        self._record(winner, TRADED, "traded", oid)

    def _exit(self, bar: BarClosed, strategy_id: str, side: int, units: float, reason: str) -> None:
        oid = self.order_id(bar.symbol, bar.bar_ts, f"EXIT-{reason}")
        order = OrderIntent(oid, bar.bar_ts, bar.symbol, strategy_id, -side, units, Intent.EXIT,
                            exit_reason=reason)
        self.bus.publish(order)
        if self.broker.submit(order):
            self._exit_pending.add(bar.symbol)  # else retried at the next close

    def order_id(self, symbol: str, bar_ts: int, intent: str) -> str:
        """Client order id from (desk, scenario, symbol, bar time, intent): a bar decided twice
        yields the same id, so a retried submission cannot open a second position."""
        return f"{self.cfg.desk}-{self.scenario}-{symbol}-{bar_ts}-{intent}"

    def _record(self, s: SignalIntent, action: str, reason: str, oid: str | None = None) -> None:
        self.bus.publish(_new(Decision, (s.bar_ts, s.symbol, s.strategy_id, s.side, action, reason,
                                         s.sl_pips, s.tp_pips, s.regime, oid)))

    def _emit(self, ev: StateChanged | None) -> None:
        if ev is not None:
            self.bus.publish(ev)

    # -- operator ---------------------------------------------------------------------------
    def operator_halt(self, reason: str) -> StateChanged | None:
        """Stop new entries until an operator resumes (exits and brackets keep working)."""
        ev = self.state.fire(Trigger.OPERATOR_HALT, self.last_bar_ts or 0, f"operator: {reason}")
        self._emit(ev)
        return ev

    def operator_resume(self, reason: str, force: bool = False) -> StateChanged | None:
        """Back to RUNNING. A drawdown halt lifts by itself at its anchor; ``force`` lifts it
        now. Raises TransitionRefused (drawdown halt without force; SAFE_MODE before a clean
        reconciliation)."""
        g = self.guard
        if g.halt_until is not None:
            if not force:
                raise TransitionRefused(f"drawdown halt ({g.halt.reason}) lifts by itself at the "
                                        f"next anchor; resume with force to lift it now")
            g.halt_until = None
            g.halt = ALLOW
        ev = self.state.fire(Trigger.OPERATOR_RESUME, self.last_bar_ts or 0, f"operator: {reason}")
        self._emit(ev)
        return ev

    def flatten(self, reason: str) -> list[str]:
        """Cancel unfilled entries and send a market exit (FLATTEN) for every open position,
        filled at each symbol's next open. Returns the symbols being closed."""
        for order in [o for orders in self.broker.pending.values() for o in orders
                      if o.intent is Intent.ENTRY]:
            self.broker.pending[order.symbol].remove(order)
            self.cancel_entry(order, f"flatten: {reason}")
        closing = []
        for sym, t in self.ledger.open.items():
            if sym not in self._exit_pending:
                self._exit(self.broker.last_bar[sym], t.strategy_id, t.side, t.units, "FLATTEN")
            closing.append(sym)
        return closing

    def cancel_entry(self, order: OrderIntent, reason: str) -> None:
        """Withdraw an unfilled entry the broker no longer holds: caps and the ledger's
        expectation are released, OrderCancelled is published."""
        self.allocator.release(order.client_order_id)
        self.ledger.forget(order.client_order_id)
        if self._entry_pending.get(order.symbol) == order.client_order_id:
            del self._entry_pending[order.symbol]
        self.bus.publish(OrderCancelled(self.last_bar_ts or 0, order.client_order_id, reason))

    # -- broker reports ---------------------------------------------------------------------
    def on_fill(self, f: Fill) -> None:
        if f.intent is Intent.ENTRY:
            self._entry_pending.pop(f.symbol, None)
            self._emit(self.state.execution_ok(f.bar_ts))
        else:
            self._exit_pending.discard(f.symbol)

    def on_rejected(self, ev: OrderRejected) -> None:
        """A rejected order is an execution error: DEGRADED, then HALTED at the limit. An
        entry refused after it was booked (a live broker answers after the bar) gives back its
        caps; a refused exit is sent again at the next close."""
        sym = ev.symbol
        if sym is not None:
            if self._entry_pending.get(sym) == ev.client_order_id:
                del self._entry_pending[sym]
                self.allocator.release(ev.client_order_id)
                self.ledger.forget(ev.client_order_id)
            elif ev.intent is Intent.EXIT:
                self._exit_pending.discard(sym)
        self.execution_errors_total += 1
        self._emit(self.state.execution_error(ev.bar_ts, f"{ev.client_order_id}: {ev.reason}"))

    def broker_error(self, reason: str) -> None:
        """The broker could not be reached past the retry bound (not about one order): an
        execution error all the same."""
        self.execution_errors_total += 1
        self._emit(self.state.execution_error(self.last_bar_ts or 0, reason))

    def reconcile_mismatch(self, reason: str) -> None:
        """Reconciliation (or a broker report) found an unexplained difference: SAFE_MODE
        until a clean reconciliation and an operator's resume."""
        self.state.reconciled_clean = False
        self._emit(self.state.fire(Trigger.RECONCILE_MISMATCH, self.last_bar_ts or 0, reason))

    def on_position_closed(self, ev: PositionClosed) -> None:
        self.allocator.release(ev.trade.client_order_id)

    # -- replay -----------------------------------------------------------------------------
    def replay(self, feed: ReplayFeed, progress: Callable[[int], None] | None = None) -> int:
        """Publish every bar of ``feed`` (its symbols must be the universe's, in order), then
        close out as at the end of data. Returns the number of bars. Raises BarFileError."""
        if feed.symbols != list(self.cfg.universe.symbols):
            raise ValueError(f"feed symbols {feed.symbols} differ from the universe "
                             f"{self.cfg.universe.symbols}")
        handlers = tuple(self.bus.handlers(BarClosed))
        syms = feed.symbols
        tf = self.tf_s
        n = 0
        for ch in feed.chunks():
            for k, ts, o, h, l, c, v in zip(ch.sym.tolist(), ch.ts.tolist(), ch.open.tolist(),
                                            ch.high.tolist(), ch.low.tolist(), ch.close.tolist(),
                                            ch.volume.tolist()):
                bar = _new(BarClosed, (syms[k], tf, ts, o, h, l, c, v))
                for f in handlers:
                    f(bar)
            n += len(ch)
            if progress is not None:
                progress(len(ch))
        self.finish()
        return n

    def finish(self) -> None:
        """End of data: cancel unfilled orders, close open positions at the last close (EOD)."""
        end_ts = self.last_bar_ts + self.tf_s if self.last_bar_ts is not None else 0
        for order in self.broker.cancel_pending():
            self.bus.publish(OrderCancelled(end_ts, order.client_order_id, "end of data"))
            if order.intent is Intent.ENTRY:
                self.allocator.release(order.client_order_id)
                self.ledger.forget(order.client_order_id)
                self._entry_pending.pop(order.symbol, None)
        self._exit_pending.clear()
        self.broker.close_at_last("EOD")
        if self.last_bar_ts is not None:
            self.ledger.mark(end_ts, "END")
