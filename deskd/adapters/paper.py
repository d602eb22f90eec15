"""Paper broker: simulated fills under the desk's bar and fill contract, with its cost model.

Fill rules (DESIGN.md, "The bar contract"):

* a market order decided at the close of bar t fills at the OPEN of the symbol's next bar;
* the bracket (stop-loss, take-profit) is set on the fill, ``sl_pips``/``tp_pips`` away from
  the fill price and rounded to the quote grid (a tenth of a pip) as a broker sets it, and rests: the entry bar counts (its high/low come after the open fill);
* a bar that opens through a level fills at the open (worse than the stop, better than the
  target), never at the level;
* a bar touching both levels fills the stop (``sl_first``, default), the target
  (``tp_first``), or the level nearer the bar's open (``open_proximity``, ties to the stop);
* :meth:`close_at_last` closes what is left at the last close (EOD).

Costs, per side, in pips (the trader always pays): spread_pips x spread_mult / 2 +
slippage_pips, where slippage_pips = (slip_base + slip_k x TR(t+1) / ATR(t)) x slippage_mult
(x spike_mult when the scenario has spikes and TR(t+1)/ATR(t) > spike_tr_atr_th) +
slippage_add_pips. TR(t+1) is the true range of the fill bar and ATR(t) Wilder's ATR at the
close before it; while ATR is undefined the ratio counts as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from deskd.configs.models import CostsConfig, DeskConfig, ScenarioConfig
from deskd.core.bus import Bus
from deskd.core.events import BarClosed, ExitReason, Fill, Intent, OrderCancelled, OrderIntent
from deskd.core.money import Instrument
from deskd.desk.broker import Position
from deskd.desk.desk import Desk
from deskd.strategies.indicators import ATR, true_range


class CostModel:
    """Per-side cost in pips for one scenario (see module docstring)."""

    def __init__(self, costs: CostsConfig, scenario: ScenarioConfig):
        s = costs.slippage
        m = scenario.spread_mult
        self.half_spread_pips = {sym: pips * m / 2.0 for sym, pips in costs.spread_pips.items()}
        self.default_half_spread_pips = costs.default_spread_pips * m / 2.0
        self.slip_base_pips = s.slip_base_pips
        self.slip_k_pips = s.slip_k_pips
        self.slip_mult = scenario.slippage_mult
        self.slip_add_pips = scenario.slippage_add_pips
        self.spike_tr_atr_th = s.spike_tr_atr_th
        self.spike_mult = s.spike_mult if scenario.spikes else 1.0

    def side_cost(self, symbol: str, tr_atr: float) -> SideCost:
        """Cost of one side of a fill, given TR(fill bar) / ATR(close before): the half spread
        and the slippage (pips), whose sum is the cost charged, and whether the spike
        multiplier applied."""
        half = self.half_spread_pips.get(symbol, self.default_half_spread_pips)
        slip = (self.slip_base_pips + self.slip_k_pips * tr_atr) * self.slip_mult
        spike = tr_atr > self.spike_tr_atr_th
        if spike:
            slip *= self.spike_mult
        slippage = slip + self.slip_add_pips
        return SideCost(half + slippage, half, slippage, spike and self.spike_mult != 1.0)

    def side_cost_pips(self, symbol: str, tr_atr: float) -> float:
        """:meth:`side_cost`'s total in pips."""
        return self.side_cost(symbol, tr_atr).pips


class SideCost(NamedTuple):
    """One side of a fill's cost, in pips: ``pips`` = ``spread_pips`` + ``slippage_pips``;
    ``spike``: the spike multiplier applied (a scenario with spikes, TR/ATR above the
    threshold)."""

    pips: float
    spread_pips: float
    slippage_pips: float
    spike: bool


class PaperBroker:
    """Simulated broker (the desk's :class:`deskd.desk.broker.Broker`). The desk calls
    :meth:`on_bar` before the indicators update: it reads each symbol's ATR as of the previous
    close.

    ``atr`` maps symbol -> the shared Wilder ATR the cost model uses. Fills and acceptances are
    published on ``bus``. Raises KeyError on an order for a symbol it does not know.
    """

    def __init__(self, bus: Bus, instruments: dict[str, Instrument], cost: CostModel,
                 atr: dict[str, ATR], intrabar_policy: str = "sl_first"):
        self.bus = bus
        self.instruments = instruments
        self.cost = cost
        self.atr = atr
        self.policy = intrabar_policy
        self.pending: dict[str, list[OrderIntent]] = {}
        self.positions: dict[str, Position] = {}
        self.last_bar: dict[str, BarClosed] = {}

    # -- orders -------------------------------------------------------------------------
    def submit(self, order: OrderIntent) -> bool:
        """Accept a market order: it fills at the open of the symbol's next bar. Always True."""
        if order.symbol not in self.instruments:
            raise KeyError(f"paper broker: unknown symbol {order.symbol}")
        self.pending.setdefault(order.symbol, []).append(order)
        return True

    def pending_entries(self) -> list[OrderIntent]:
        return [o for orders in self.pending.values() for o in orders if o.intent is Intent.ENTRY]

    def cancel_pending(self, symbol: str | None = None) -> list[OrderIntent]:
        """Drop unfilled orders (all symbols when ``symbol`` is None); returns them."""
        if symbol is None:
            out = [o for orders in self.pending.values() for o in orders]
            self.pending.clear()
        else:
            out = self.pending.pop(symbol, [])
        return out

    def withdraw(self, order: OrderIntent) -> None:
        orders = self.pending.get(order.symbol, [])
        if order in orders:
            orders.remove(order)

    def restore_position(self, symbol: str, position: Position) -> None:
        self.positions[symbol] = position

    def restore_order(self, order: OrderIntent) -> None:
        """An order taken before a restart fills at the symbol's next open."""
        self.pending.setdefault(order.symbol, []).append(order)

    def warm_up(self, bar: BarClosed) -> None:
        self.last_bar[bar.symbol] = bar

    # -- the market moves ---------------------------------------------------------------
    def on_bar(self, bar: BarClosed) -> None:
        sym = bar.symbol
        self.last_bar[sym] = bar
        if sym in self.pending:
            tr_atr = self._tr_atr(bar)
            for order in self.pending.pop(sym):
                self._fill_market(order, bar, bar.open, tr_atr, order.exit_reason)
        pos = self.positions.get(sym)
        if pos is not None:
            self._check_bracket(pos, bar)

    def _tr_atr(self, bar: BarClosed) -> float:
        """TR of ``bar`` over ATR at the previous close (0 while ATR is undefined)."""
        atr = self.atr[bar.symbol]
        a = atr.value
        pc = atr.prev_close
        if not a > 0.0 or pc != pc:
            return 0.0
        return true_range(bar.high, bar.low, pc) / a

    def _fill_market(self, order: OrderIntent, bar: BarClosed, ref: float, tr_atr: float,
                     exit_reason: ExitReason | None) -> None:
        sym = order.symbol
        inst = self.instruments[sym]
        pip = inst.pip_size
        cost = self.cost.side_cost(sym, tr_atr)
        if order.intent is Intent.ENTRY:
            side = order.side
            price = ref + side * cost.pips * pip
            sl_pips, tp_pips = order.bracket_pips()
            sl = inst.round_price(price - side * sl_pips * pip)
            tp = None if tp_pips is None else inst.round_price(price + side * tp_pips * pip)
            self.positions[sym] = Position(order, side, order.units, sl, tp)
            self.bus.publish(Fill(bar.bar_ts, bar.bar_ts, order.client_order_id, sym, order.strategy_id,
                                  side, order.units, Intent.ENTRY, ref, price, cost.pips,
                                  sl_price=sl, tp_price=tp, spread_pips=cost.spread_pips,
                                  slippage_pips=cost.slippage_pips, spike=cost.spike))
            return
        pos = self.positions.pop(sym, None)
        if pos is None:  # nothing to exit (cannot happen in a replay: exits fill before brackets)
            self.bus.publish(OrderCancelled(bar.bar_ts, order.client_order_id, "no position to exit"))
            return
        self._publish_exit(pos, bar, bar.bar_ts, ref, cost, exit_reason or ExitReason.MARKET, order.client_order_id)

    def _publish_exit(self, pos: Position, bar: BarClosed, fill_ts: int, ref: float, cost: SideCost,
                      reason: ExitReason, order_id: str) -> None:
        pip = self.instruments[pos.order.symbol].pip_size
        price = ref - pos.side * cost.pips * pip
        self.bus.publish(Fill(bar.bar_ts, fill_ts, order_id, pos.order.symbol, pos.order.strategy_id, -pos.side,
                              pos.units, Intent.EXIT, ref, price, cost.pips, exit_reason=reason,
                              spread_pips=cost.spread_pips, slippage_pips=cost.slippage_pips, spike=cost.spike))

    def _check_bracket(self, pos: Position, bar: BarClosed) -> None:
        hit = bracket_exit(pos.side, pos.sl_price, pos.tp_price, bar.open, bar.high, bar.low, self.policy)
        if hit is None:
            return
        reason, ref = hit
        del self.positions[pos.order.symbol]
        cost = self.cost.side_cost(pos.order.symbol, self._tr_atr(bar))
        self._publish_exit(pos, bar, bar.bar_ts, ref, cost, reason, f"{pos.order.client_order_id}:{reason}")

    def close_at_last(self, reason: ExitReason = ExitReason.EOD) -> None:
        """Close every open position at its symbol's last close (end of replayed data)."""
        for sym in list(self.positions):
            pos = self.positions.pop(sym)
            bar = self.last_bar[sym]
            atr = self.atr[sym]
            prev = atr.prev_value
            tr_atr = atr.tr / prev if prev > 0.0 else 0.0
            cost = self.cost.side_cost(sym, tr_atr)
            self._publish_exit(pos, bar, bar.close_ts, bar.close, cost, reason,
                               f"{pos.order.client_order_id}:{reason}")


def bracket_exit(side: int, sl: float, tp: float | None, o: float, h: float, l: float,
                 policy: str = "sl_first") -> tuple[ExitReason, float] | None:
    """Whether a resting bracket fills inside one bar, and how: (SL or TP, the level's fill
    price before costs), or None when the bar (open ``o``, high ``h``, low ``l``) touches
    neither level. A bar opening through a level fills at the open; a bar touching both
    fills the stop (``sl_first``), the target (``tp_first``), or the level nearer the open
    (``open_proximity``, ties to the stop). ``side`` +1 long / -1 short; ``tp`` None: no
    target. Prices in quote currency. The paper broker's rule, shared with the
    counterfactuals (:mod:`deskd.research.counterfactuals`)."""
    if side > 0:
        if o <= sl:
            return (ExitReason.SL, o)
        if tp is not None and o >= tp:
            return (ExitReason.TP, o)
        sl_hit = l <= sl
        tp_hit = tp is not None and h >= tp
    else:
        if o >= sl:
            return (ExitReason.SL, o)
        if tp is not None and o <= tp:
            return (ExitReason.TP, o)
        sl_hit = h >= sl
        tp_hit = tp is not None and l <= tp
    if sl_hit and tp_hit:
        if policy == "tp_first":
            return (ExitReason.TP, tp)  # type: ignore[return-value]
        if policy == "open_proximity" and tp is not None and abs(tp - o) < abs(o - sl):
            return (ExitReason.TP, tp)
        return (ExitReason.SL, sl)
    if sl_hit:
        return (ExitReason.SL, sl)
    if tp_hit:
        return (ExitReason.TP, tp)  # type: ignore[return-value]
    return None


def paper_broker(cfg: DeskConfig, scenario: str) -> Callable[[Desk], PaperBroker]:
    """The ``make_broker`` of a desk trading on paper with ``scenario``'s costs (its slippage
    reads the desk's shared Wilder ATR of ``costs.slippage.atr_period``)."""
    costs = cfg.costs

    def make(desk: Desk) -> PaperBroker:
        atr = {s: desk.books[s].atr(costs.slippage.atr_period) for s in desk.instruments}
        return PaperBroker(desk.bus, desk.instruments, CostModel(costs, costs.scenarios[scenario]),
                           atr, cfg.bar_contract.intrabar_policy)
    return make


def paper_desk(cfg: DeskConfig, scenario: str = "A", bus: Bus | None = None) -> Desk:
    """A Desk trading through the paper broker with ``scenario``'s costs."""
    return Desk(cfg, paper_broker(cfg, scenario), scenario, bus)
