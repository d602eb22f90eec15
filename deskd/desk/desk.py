"""The desk: the per-bar pipeline, as one explicit sequence.

:meth:`Desk.on_bar` runs, for a bar of symbol S, in this order:

1. trading-day roll - day/week anchors, daily equity mark, lift of an expired drawdown halt
                      (before anything of the new day happens);
2. broker.on_bar    - pending market orders fill at the open, resting brackets fill in the bar;
3. ledger.on_bar    - positions marked at the close, MAE/MFE, hold_bars;
4. close            - drawdown check; observe (S's indicators, regime, strategies); time stops
                      and flatten retries; then for any signals: the strategy's entry filters
                      (:mod:`deskd.strategies.filters`) -> position check -> conflict
                      resolution -> guard and state -> allocator and caps -> order to the
                      broker. Every signal becomes a Decision event: TRADED, or SKIPPED with
                      its reason.

Warm-up on start-up is step 4's observe alone (:meth:`Desk.warm_up`). The bus carries the
desk's outputs (Decision, OrderIntent, Fill, OrderCancelled, OrderRejected, PositionClosed,
StateChanged) to observers: journal, store, logs, metrics. The desk owns the order book
(:mod:`deskd.desk.orders`); the broker is injected through the port (:mod:`deskd.desk.broker`).

The same Desk runs a backtest (replay feed + paper broker), the paper daemon, and the live
daemon (broker candles + :class:`deskd.adapters.v20.book.V20Book`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deskd.configs.models import DeskConfig
from deskd.core.bus import Bus
from deskd.core.events import (
    BarClosed,
    Decision,
    DecisionAction,
    ExitReason,
    Fill,
    Intent,
    OrderCancelled,
    OrderIntent,
    OrderRejected,
    OrderUnknown,
    PositionClosed,
    SignalIntent,
    StateChanged,
    Trade,
)
from deskd.core.money import Instrument, QuoteConverter
from deskd.desk.broker import Broker, Position
from deskd.desk.ledger import Ledger, LedgerSnapshot
from deskd.desk.orders import OrderBook, OrderStatus, bracket_pips
from deskd.desk.state import MachineSnapshot, StateMachine, TransitionRefused, Trigger
from deskd.risk.allocator import Allocator
from deskd.risk.conflict import ConflictResolver
from deskd.risk.guard import DrawdownGuard, GuardSnapshot, TradingCalendar
from deskd.strategies.api import Strategy, StrategyContext
from deskd.strategies.filters import EntryFilter
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger

_NAN = float("nan")
_new = tuple.__new__  # builds a NamedTuple event without its Python-level __new__ (hot path)
TRADED = DecisionAction.TRADED
SKIPPED = DecisionAction.SKIPPED


@dataclass(frozen=True, slots=True)
class DeskSnapshot:
    """The desk's state as each component saves it; ``orders`` are the book's open orders
    with their status, ``notional_by_order`` the USD notional each booked against the caps."""

    ledger: LedgerSnapshot
    guard: GuardSnapshot
    machine: MachineSnapshot
    orders: tuple[tuple[OrderIntent, OrderStatus], ...]
    notional_by_order: dict[str, float]
    #: (symbol, bar_ts, client id) of exits already sent in each symbol's last bar, whatever
    #: became of them: a new exit in that bar (an operator's second flatten) takes another id
    exits_in_last_bar: tuple[tuple[str, int, str], ...] = ()

    def symbols(self) -> set[str]:
        """The symbols of its open positions and open orders."""
        return {t.symbol for t, _ in self.ledger.open} | {o.symbol for o, _ in self.orders}


class Desk:
    """One desk on one bus: strategies, risk, guard, state machine, order book, broker, ledger.

    ``make_broker(desk)`` builds the broker the desk trades through (it may read the desk's
    bus, instruments and indicator books, e.g. the ATR its cost model uses).
    ``scenario`` names the cost scenario (a key of ``cfg.costs.scenarios``); it is part of
    every client order id, so scenarios of one backtest never share ids.
    Raises KeyError for an unknown scenario, ValueError for a universe whose quote currencies
    cannot be converted to USD.
    """

    def __init__(self, cfg: DeskConfig, make_broker: Callable[[Desk], Broker], scenario: str = "A",
                 bus: Bus | None = None):
        self.cfg = cfg
        self.scenario = scenario
        self.bus = bus or Bus()
        self.tf_s = cfg.universe.timeframe_s
        syms = cfg.universe.symbols
        self.instruments = {s: Instrument.parse(s) for s in syms}
        self.conv = QuoteConverter(self.instruments)
        risk = cfg.risk
        cfg.costs.scenarios[scenario]  # KeyError now for an unknown scenario

        self.books = {s: IndicatorBook() for s in syms}
        rg = cfg.regime
        self.regimes = {s: RegimeTagger(self.books[s], rg.atr_period, rg.vol_z_window,
                                        rg.vol_z_low, rg.vol_z_high, rg.spike_tr_atr_th)
                        for s in syms}
        self.strategies: dict[str, list[Strategy]] = {s: [] for s in syms}
        self.max_hold_bars: dict[str, int] = {}  # per strategy id; others use risk.max_hold_bars
        self._default_hold = risk.max_hold_bars
        #: (strategy id, symbol) -> its entry filter; only strategies with filters have one
        self.filters: dict[tuple[str, str], EntryFilter] = {}
        for sid, spec in cfg.strategies.enabled().items():
            self.max_hold_bars[sid] = spec.max_hold_bars or risk.max_hold_bars
            for s in cfg.strategy_symbols(sid):
                ctx = StrategyContext(sid, s, self.instruments[s].pip_size, self.books[s], self.regimes[s],
                                      spec.effective_stops)
                self.strategies[s].append(spec.strategy_class(ctx, spec.validated_params))
                if spec.filters is not None and spec.filters.active:
                    self.filters[(sid, s)] = EntryFilter(spec.filters, self.books[s], self.regimes[s])

        self.state = StateMachine(risk.max_execution_errors, risk.clean_executions_to_recover,
                                  risk.degraded_risk_scale)
        self.guard = DrawdownGuard(TradingCalendar(risk.day_roll_time, risk.day_roll_timezone),
                                   risk.dd_day_limit_frac, risk.dd_week_limit_frac, risk.max_drawdown_frac,
                                   cfg.account.starting_equity_usd)
        self.allocator = Allocator(risk, self.instruments, self.conv)
        self.orders = OrderBook(self.allocator)
        # risk.priority first, then the config's other strategies in the order given
        priority = [*risk.priority, *(sid for sid in cfg.strategies if sid not in risk.priority)]
        self.resolve = ConflictResolver(risk.conflict_policy, priority)
        self.ledger = Ledger(self.bus, self.instruments, self.conv,
                             cfg.account.starting_equity_usd, self.tf_s)
        self.broker: Broker = make_broker(self)
        self._last_checked_equity = self.ledger.equity_usd
        # per symbol: (indicator book update, strategies)
        self._per_symbol = {s: (self.books[s].update, tuple(self.strategies[s])) for s in syms}
        self._open = self.ledger.open
        self._entry_on = self.orders.entry_on
        self._exit_on = self.orders.exit_on
        self._broker_on_bar = self.broker.on_bar
        self._ledger_on_bar = self.ledger.on_bar
        self.flattening: dict[str, str] = {}  # symbol -> operator's reason, until its position closes
        self._exit_ids: dict[str, tuple[int, set[str]]] = {}  # symbol -> (bar_ts, exit ids used in that bar)
        self.last_bar_ts: int | None = None
        self.execution_errors_total = 0  # for metrics; the state machine's count resets

        b = self.bus
        b.subscribe(Fill, self._on_fill)
        b.subscribe(PositionClosed, self._on_position_closed)
        b.subscribe(OrderRejected, self._on_rejected)
        b.subscribe(OrderCancelled, self._on_cancelled)
        b.subscribe(OrderUnknown, self._on_unknown)

    def set_strategies(self, symbol: str, strategies: list) -> None:
        """Replace the strategies run on ``symbol`` (objects with ``strategy_id`` and
        ``on_bar(bar) -> SignalIntent | None``); for research and tests."""
        self._per_symbol[symbol] = (self._per_symbol[symbol][0], tuple(strategies))
        self.strategies[symbol] = list(strategies)

    # -- per-bar path -----------------------------------------------------------------------
    def on_bar(self, bar: BarClosed, entries_blocked: str | None = None) -> None:
        """Trade one closed bar (the module docstring gives the sequence). ``entries_blocked``,
        when given, is the skip reason of every signal of this bar (a live feed catching up
        on bars a newer one has superseded): they are journaled, never traded."""
        ts = bar.bar_ts
        self.last_bar_ts = ts
        if ts >= self.guard.next_roll_ts:
            self._roll(ts)
        self._broker_on_bar(bar)
        self._ledger_on_bar(bar)
        eq = self.ledger.equity_usd
        if eq != self._last_checked_equity:
            self._last_checked_equity = eq
            v = self.guard.check(ts, eq)
            if v is not None:
                self._emit(self.state.fire(Trigger.DD_BREACH, ts, v.reason))
        sym = bar.symbol
        update, strategies = self._per_symbol[sym]  # observe (inlined: the hot path)
        update(bar.high, bar.low, bar.close)
        signals = None
        for st in strategies:
            sig = st.on_bar(bar)
            if sig is not None:
                if signals is None:
                    signals = [sig]
                else:
                    signals.append(sig)
        t = self._open.get(sym)
        if t is not None and sym not in self._exit_on:
            if t.hold_bars >= self.max_hold_bars.get(t.strategy_id, self._default_hold):
                self._exit(bar, t.strategy_id, t.side, t.units, ExitReason.TIME)
            elif sym in self.flattening:
                self._exit(bar, t.strategy_id, t.side, t.units, ExitReason.FLATTEN)
        if signals is not None:
            self._decide(bar, signals, entries_blocked)

    def _roll(self, ts: int) -> None:
        self.ledger.mark(ts)
        g = self.guard
        g.roll(ts, self.ledger.equity_usd)
        self._last_checked_equity = self.ledger.equity_usd
        if g.expired(ts):
            self._emit(self.state.fire(Trigger.DD_HALT_EXPIRED, ts, "drawdown halt reached its anchor"))

    def warm_up(self, bar: BarClosed) -> None:
        """Observe an already-processed bar (indicators and strategies; signals dropped):
        start-up rebuilds in-memory indicator state this way, bar for bar, before the store's
        snapshot restores positions, orders and the guard."""
        self.last_bar_ts = bar.bar_ts
        self.broker.warm_up(bar)
        if bar.symbol in self.conv.legs:
            self.conv.last_price[bar.symbol] = bar.close
        update, strategies = self._per_symbol[bar.symbol]
        update(bar.high, bar.low, bar.close)
        for st in strategies:
            st.on_bar(bar)  # its signal is dropped: this bar was traded before the restart

    def adopt_position(self, trade: Trade, unrealized_usd: float, notional_usd: float) -> None:
        """Take over an open position the desk did not open in this process (a broker trade
        adopted): the ledger's book, the caps, and the broker's resting bracket."""
        self.ledger.adopt(trade, unrealized_usd)
        self._rest_position(trade, notional_usd)

    def _rest_position(self, trade: Trade, notional_usd: float) -> None:
        self.allocator.book(trade.client_order_id, trade.symbol, trade.strategy_id,
                            trade.risk_usd, notional_usd)
        entry = OrderIntent(trade.client_order_id, trade.fill_ts, trade.symbol, trade.strategy_id,
                            trade.side, trade.units, Intent.ENTRY, risk_usd=trade.risk_usd,
                            regime=trade.regime, why=trade.why)
        self.broker.restore_position(trade.symbol, Position(entry, trade.side, trade.units,
                                                            trade.sl_price, trade.tp_price))

    def snapshot(self) -> DeskSnapshot:
        """Everything a restart must get back, component by component."""
        notional = self.allocator.notional_by_order()
        return DeskSnapshot(self.ledger.snapshot(), self.guard.snapshot(), self.state.snapshot(),
                            tuple(self.orders.orders.values()), notional,
                            tuple((sym, ts, oid) for sym, (ts, ids) in self._exit_ids.items() for oid in sorted(ids)))

    def restore(self, s: DeskSnapshot) -> None:
        """Put a :meth:`snapshot` back, after warm-up: each component restores its own part;
        open positions rest at the broker again and book their caps; open orders go back to
        the book (an entry's caps booked) and to the broker. Raises ValueError for a position
        or order on a symbol outside the universe."""
        unknown = sorted(s.symbols() - set(self.instruments))
        if unknown:
            raise ValueError(f"the store holds positions or orders on {unknown}, which the "
                             f"config's universe does not trade")
        self.ledger.restore(s.ledger)
        for t, _ in s.ledger.open:
            self._rest_position(t, s.notional_by_order.get(t.client_order_id, 0.0))
        for order, status in s.orders:
            self.orders.add(order, status)
            self.broker.restore_order(order)
        for sym, ts, oid in s.exits_in_last_bar:
            self._exit_ids.setdefault(sym, (ts, set()))[1].add(oid)
        self.guard.restore(s.guard)
        self.state.restore(s.machine)
        self._last_checked_equity = self.ledger.equity_usd

    # -- decisions --------------------------------------------------------------------------
    def _decide(self, bar: BarClosed, signals: list[SignalIntent], entries_blocked: str | None) -> None:
        sym = bar.symbol
        if self.filters:  # a strategy's own filters first: a blocked signal is not a candidate
            signals = self._filtered(bar, signals)
            if not signals:
                return
        if sym in self._open or sym in self._entry_on:
            why = "position_open"
            if sym not in self._open and self.orders.status(self._entry_on[sym]) is OrderStatus.UNKNOWN:
                why = "order_unknown"
            for s in signals:
                self._record(s, SKIPPED, why)
            return
        if entries_blocked is not None:
            for s in signals:
                self._record(s, SKIPPED, entries_blocked)
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
        sl_pips, tp_pips = bracket_pips(winner.sl_pips, winner.tp_pips)  # whole tenths of a pip
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
        self.orders.add(order)
        self._record(winner, TRADED, "traded", oid)

    def _filtered(self, bar: BarClosed, signals: list[SignalIntent]) -> list[SignalIntent]:
        """The signals their strategy's entry filter allows; each blocked one is journaled
        SKIPPED with the filter's reason (``filter:adx``...)."""
        kept = []
        for s in signals:
            f = self.filters.get((s.strategy_id, s.symbol))
            why = f.check(bar) if f is not None else None
            if why is None:
                kept.append(s)
            else:
                self._record(s, SKIPPED, why)
        return kept

    def _exit(self, bar: BarClosed, strategy_id: str, side: int, units: float, reason: ExitReason) -> None:
        oid = self._exit_id(bar.symbol, bar.bar_ts, reason)
        order = OrderIntent(oid, bar.bar_ts, bar.symbol, strategy_id, -side, units, Intent.EXIT,
                            exit_reason=reason)
        self.bus.publish(order)
        if self.broker.submit(order):
            self.orders.add(order)  # else retried at the next close

    def _exit_id(self, symbol: str, bar_ts: int, reason: ExitReason) -> str:
        """The client id of a new exit: :meth:`order_id`, with ``-2``, ``-3``... when an exit
        of this symbol in this bar already took it (an exit the broker refused, then sent
        again by an operator's flatten in the same bar): a client id names one order."""
        base = self.order_id(symbol, bar_ts, f"EXIT-{reason}")
        ts, used = self._exit_ids.get(symbol, (None, set()))
        if ts != bar_ts:
            used = set()
            self._exit_ids[symbol] = (bar_ts, used)
        oid, n = base, 1
        while oid in used:
            n += 1
            oid = f"{base}-{n}"
        used.add(oid)
        return oid

    def order_id(self, symbol: str, bar_ts: int, intent: str) -> str:
        """Client order id from (desk, scenario, symbol, bar time, intent): a bar decided twice
        yields the same id, so a retried submission cannot open a second position."""
        return f"{self.cfg.desk}-{self.scenario}-{symbol}-{bar_ts}-{intent}"

    def _record(self, s: SignalIntent, action: DecisionAction, reason: str, oid: str | None = None) -> None:
        """Journal one signal's Decision with its context: the decision bar's close (the bar
        the broker saw last: decisions are taken at its close), the ATR, regime and score the
        strategy decided with."""
        bar = self.broker.last_bar.get(s.symbol)
        self.bus.publish(_new(Decision, (s.bar_ts, s.symbol, s.strategy_id, s.side, action, reason,
                                         s.sl_pips, s.tp_pips, s.regime, oid,
                                         bar.close if bar is not None else _NAN, s.atr_pips,
                                         s.score_name, s.score)))

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
        """Back to RUNNING. A day or week drawdown halt lifts by itself at its anchor; ``force``
        lifts it now. The drawdown-from-peak halt (risk.max_drawdown_frac) lifts only so, and
        the peak restarts at the equity of the moment. Raises TransitionRefused (day/week halt
        without force; SAFE_MODE before a clean reconciliation)."""
        g = self.guard
        if g.halt_until is not None:
            if not force and g.halt.code != "max_dd":
                raise TransitionRefused(f"drawdown halt ({g.halt.reason}) lifts by itself at the "
                                        f"next anchor; resume with force to lift it now")
            g.lift(self.ledger.equity_usd)
        ev = self.state.fire(Trigger.OPERATOR_RESUME, self.last_bar_ts or 0, f"operator: {reason}")
        self._emit(ev)
        return ev

    def flatten(self, reason: str, keep_trading: bool = False) -> list[str]:
        """Withdraw unfilled entries and send a market exit (FLATTEN) for every open position,
        filled at each symbol's next open; an exit the broker refuses is sent again at every
        close until the position is closed. Returns the symbols being closed. Entries whose
        outcome is UNKNOWN cannot be withdrawn: they stay in the book until the broker answers.

        Flat stays flat: the desk also HALTS new entries (as an operator halt: exits and
        brackets keep working) until an operator resumes it, so a strategy whose signal still
        holds does not re-enter at the next close. ``keep_trading`` leaves the state as it is."""
        if not keep_trading:
            self._emit(self.state.fire(Trigger.OPERATOR_HALT, self.last_bar_ts or 0,
                                       f"operator: flatten: {reason}"))
        for order in self.orders.open_entries():
            if self.orders.status(order.client_order_id) is OrderStatus.SUBMITTED:
                self.broker.withdraw(order)
                self.cancel_order(order, f"flatten: {reason}")
        closing = []
        for sym, t in self.ledger.open.items():
            self.flattening[sym] = reason
            if sym not in self._exit_on:
                self._exit(self.broker.last_bar[sym], t.strategy_id, t.side, t.units, ExitReason.FLATTEN)
            closing.append(sym)
        return closing

    def cancel_order(self, order: OrderIntent, reason: str) -> None:
        """Withdraw an unfilled order the broker no longer holds: OrderCancelled is published
        (the book releases an entry's caps)."""
        self.bus.publish(OrderCancelled(self.last_bar_ts or 0, order.client_order_id, reason))

    def cancel_open_orders(self, reason: str) -> None:
        """Withdraw every order the broker holds unfilled (end of replayed data)."""
        end_ts = self.last_bar_ts + self.tf_s if self.last_bar_ts is not None else 0
        for order in self.broker.cancel_pending():
            self.bus.publish(OrderCancelled(end_ts, order.client_order_id, reason))

    # -- broker reports ---------------------------------------------------------------------
    def _on_fill(self, f: Fill) -> None:
        order = self.orders.move(f.client_order_id, OrderStatus.FILLED)
        self.ledger.on_fill(f, order)
        if f.intent is Intent.ENTRY:
            self._emit(self.state.execution_ok(f.bar_ts))

    def _on_cancelled(self, ev: OrderCancelled) -> None:
        self.orders.move(ev.client_order_id, OrderStatus.CANCELLED)

    def _on_unknown(self, ev: OrderUnknown) -> None:
        """The broker never confirmed an order's outcome: UNKNOWN, its symbol blocked and its
        caps kept, until a lookup answers. An execution error."""
        self.orders.move(ev.client_order_id, OrderStatus.UNKNOWN)
        self.execution_errors_total += 1
        self._emit(self.state.execution_error(ev.bar_ts, f"{ev.client_order_id}: outcome unknown: {ev.reason}"))

    def _on_rejected(self, ev: OrderRejected) -> None:
        """A rejected order is an execution error: DEGRADED, then HALTED at the limit. An
        entry refused after it was taken (a live broker answers after the bar) gives back its
        caps; a refused exit is sent again at the next close."""
        self.orders.move(ev.client_order_id, OrderStatus.REJECTED)
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

    def _on_position_closed(self, ev: PositionClosed) -> None:
        self.allocator.release(ev.trade.client_order_id)
        self.flattening.pop(ev.trade.symbol, None)
