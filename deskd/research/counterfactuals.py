"""Counterfactual outcomes: what each decision's bracket would have done, traded or skipped.

An observer of the journal (DESIGN.md, "The research side"): it subscribes to the desk's
Decision events and is handed each bar after the desk has finished it
(:meth:`CounterfactualObserver.end_bar`). It never calls into the desk, so turning it on or
off changes no decision, order or trade; and a decision's counterfactual starts with the bar
after the decision's own, so it never reads a bar at or before the decision.

Each decision gets the bracket the desk would have placed, simulated by the paper broker's
rules (:mod:`deskd.adapters.paper`: its cost model and :func:`~deskd.adapters.paper.bracket_exit`):

* entry at the OPEN of the symbol's next bar, plus the entry cost of the run's scenario
  (TR of that bar over the cost model's ATR at the decision's close);
* the stop and target ``sl_pips`` / ``tp_pips`` from that fill, in whole tenths of a pip as
  the desk sends them (:func:`bracket_pips`), rounded to the quote grid; the entry bar counts;
  gaps fill at the open; a bar touching both levels as ``bar_contract.intrabar_policy`` says;
* the time stop: at the close of the bar where the bracket has been open ``max_hold_bars``
  bars (the strategy's, else risk.max_hold_bars; the entry bar is 1) it exits at the next
  open (TIME); what is open at the end of the data closes at the symbol's last close (EOD);
  each exit pays the scenario's exit cost.

Fields (:class:`Counterfactual`) are those of the ledger's trades: P&L, MAE/MFE in pips from
the entry fill price (the bars the bracket was open at a close, and the exit level), hold_bars
counting bars as the ledger does. A TRADED decision's counterfactual is its real trade, except
when the real trade was closed otherwise (an operator's FLATTEN, a broker close in live
trading): those differ by design. A decision on a symbol's last bar has no next open: its
counterfactual has no entry (every cf_ field null).

A restarted daemon follows again the decisions its store holds without a counterfactual
(:meth:`CounterfactualObserver.rearm`): each joins when its own bar comes by in the warm-up
replay, so the bars after it give the counterfactual an uninterrupted run found.

Work per bar of a symbol is O(1) plus O(log n) per bracket that enters or exits: open
brackets rest in heaps keyed on their stop and target (the entries of closed brackets are
dropped when met, or compacted away) and in first-in first-out queues per time stop (they
enter in bar order, so they expire in it); MAE/MFE are read at the exit as the max/min over
the bar highs/lows kept since its entry.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deskd.adapters.paper import CostModel, bracket_exit
from deskd.core.events import SIDE_NAME, BarClosed, Decision, ExitReason
from deskd.core.time import iso
from deskd.desk.desk import Desk
from deskd.desk.orders import bracket_pips
from deskd.persistence.store import COUNTERFACTUAL_FIELDS
from deskd.research.outputs import append_ipc_part

if TYPE_CHECKING:
    import pyarrow as pa

#: counterfactuals.parquet's rows per record batch (one row group each), at most
CF_BATCH_ROWS = 100_000
#: the outcomes a counterfactual can have (cf_outcome); null: no entry (end of data)
CF_OUTCOMES = ("TP", "SL", "TIME", "EOD")

_SL, _TP, _TIME, _EOD = ExitReason.SL.value, ExitReason.TP.value, ExitReason.TIME.value, ExitReason.EOD.value


class Counterfactual:
    """One decision's counterfactual bracket, filled in as later bars arrive.

    ``decision`` is the journaled Decision; ``done`` is True once it resolved (an exit, or no
    entry at the end of data). Prices in quote currency, after costs where a fill's
    (``entry_price``, ``exit_price``); times UTC epoch seconds (``entry_ts`` the entry bar's
    open, ``exit_ts`` the fill's time as trades.csv gives it); pips as named; ``outcome`` one of
    CF_OUTCOMES, None without an entry.
    """

    __slots__ = ("decision", "side", "sl_pips", "tp_pips", "max_hold", "entry_i", "entry_ts",
                 "entry_price", "sl_price", "tp_price", "outcome", "exit_ts", "exit_price",
                 "hold_bars", "mae_pips", "mfe_pips", "pnl_pips", "done")
    entry_i: int
    entry_ts: int | None
    entry_price: float
    sl_price: float
    tp_price: float | None
    outcome: str | None
    exit_ts: int | None
    exit_price: float
    hold_bars: int | None
    mae_pips: float
    mfe_pips: float
    pnl_pips: float

    def __init__(self, decision: Decision, max_hold: int):
        # the fields of an entry and an exit are set when they happen (:meth:`no_entry` when
        # none comes): a decision costs a few assignments, 1.6M of them in a 3-year M1 run
        self.decision = decision
        self.side = decision.side
        self.sl_pips, self.tp_pips = bracket_pips(decision.sl_pips, decision.tp_pips)  # what the desk sends
        self.max_hold = max_hold
        self.done = False

    def no_entry(self) -> None:
        """Resolved without an entry: no bar followed the decision (end of data)."""
        self.entry_i = -1
        self.entry_ts = self.exit_ts = self.hold_bars = self.outcome = self.tp_price = None
        self.entry_price = self.sl_price = self.exit_price = math.nan
        self.mae_pips = self.mfe_pips = self.pnl_pips = math.nan
        self.done = True

    @property
    def result(self) -> str | None:
        """WIN when the P&L in pips is above 0, else LOSS; None without an entry."""
        if self.outcome is None:
            return None
        return "WIN" if self.pnl_pips > 0.0 else "LOSS"

    @property
    def pnl_r(self) -> float:
        """P&L in R: pnl_pips / the stop distance in pips (NaN without an entry)."""
        return self.pnl_pips / self.sl_pips

    def in_atr(self, pips: float) -> float:
        """``pips`` over the decision's ATR in pips (NaN when that ATR is not known or 0)."""
        atr = self.decision.atr_pips
        return pips / atr if atr > 0.0 else math.nan


class _Symbol:
    """One symbol's open brackets and the bar highs/lows since the oldest one entered."""

    __slots__ = ("pip", "round_price", "atr", "highs", "lows", "base", "n", "fresh", "pending",
                 "sl_long", "sl_short", "tp_long", "tp_short", "time", "open_n", "last_bar", "last_tr_atr",
                 "rearmed")

    def __init__(self, pip: float, round_price: Callable[[float], float], atr: Any):
        self.pip = pip
        self.round_price = round_price
        self.atr = atr
        self.highs: list[float] = []
        self.lows: list[float] = []
        self.base = 0          # the symbol bar index of highs[0]
        self.n = 0             # bars of this symbol seen
        self.fresh: list[Counterfactual] = []    # decided at the close of the bar in progress
        self.pending: list[Counterfactual] = []  # decided at the last close: enter at the next open
        # heaps of (key, seq, cf): long stops by -sl (hit when low <= sl), short stops by sl,
        # long targets by tp, short targets by -tp
        self.sl_long: list = []
        self.sl_short: list = []
        self.tp_long: list = []
        self.tp_short: list = []
        # time stops: max_hold -> the open brackets of that hold in entry order (a FIFO: they
        # enter in bar order, so they expire in it)
        self.time: dict[int, deque[Counterfactual]] = {}
        self.open_n = 0
        self.last_bar: BarClosed | None = None
        self.last_tr_atr = 0.0
        # decisions of an earlier process waiting for their own bar (:meth:`rearm`), by bar time
        self.rearmed: deque[Decision] = deque()


class CounterfactualObserver:
    """Counterfactuals of every Decision published on ``desk``'s bus (see module docstring).

    Call :meth:`end_bar` with each bar after ``desk.on_bar`` has finished it, and
    :meth:`finish` at the end of replayed data (EOD). Costs are those of ``desk.scenario``
    (``desk.cfg.costs``), read through the same shared Wilder ATR the paper broker reads.
    ``on_done(cf)`` is called as each counterfactual resolves; with ``sink`` (a
    ``pyarrow.parquet.ParquetWriter`` or IPC writer of :func:`counterfactual_schema`) the rows
    are written in decision order, in record batches of up to ``batch_rows``.
    Raises KeyError for a decision on a symbol outside the desk's universe.
    """

    def __init__(self, desk: Desk, sink: Any = None, on_done: Callable[[Counterfactual], None] | None = None,
                 batch_rows: int = CF_BATCH_ROWS):
        cfg = desk.cfg
        costs = cfg.costs
        self.scenario = desk.scenario
        self.tf_s = desk.tf_s
        self.cost = CostModel(costs, costs.scenarios[desk.scenario])
        self.policy = cfg.bar_contract.intrabar_policy
        self.max_hold = desk.max_hold_bars
        self.default_hold = cfg.risk.max_hold_bars
        self.books = {s: _Symbol(inst.pip_size, inst.round_price, desk.books[s].atr(costs.slippage.atr_period))
                      for s, inst in desk.instruments.items()}
        self.sink = sink
        self.on_done = on_done
        self.batch_rows = batch_rows
        self.rows: list[Counterfactual] = []  # in decision order, until written (with a sink)
        self._check_at = batch_rows
        self._seq = 0
        self.decisions = 0
        self.unreached = 0  # re-armed decisions whose bar never came (:meth:`rearm`)
        self.active = True  # False: decisions are no longer followed (:meth:`stop`)
        desk.bus.subscribe(Decision, self.on_decision)

    def stop(self) -> None:
        """Follow no new decision (the bus keeps calling :meth:`on_decision`, which returns)."""
        self.active = False

    def rearm(self, decisions: Iterable[Decision]) -> int:
        """Follow again decisions journaled before this process (a restarted daemon's, rebuilt
        from the store; in journal order). Each joins as if the desk had just published it when
        :meth:`end_bar` is handed its own bar (the same symbol and ``bar_ts``), so fed the bars
        an uninterrupted observer saw from there on, it resolves exactly as it would have; its
        ``on_done`` comes the same way. Only a decision within reach is followed: one whose bar
        this observer has already passed, or whose bar never comes (the feed starts later, or
        lacks it), never resolves (an outcome not seen is unknown, never assumed). Returns how
        many joined the wait. Raises KeyError for a symbol outside the desk's universe."""
        n = 0
        touched = set()
        for d in decisions:
            st = self.books[d.symbol]
            if st.last_bar is not None and d.bar_ts <= st.last_bar.bar_ts:
                continue
            st.rearmed.append(d)
            touched.add(d.symbol)
            n += 1
        for sym in touched:  # by bar time, journal order kept within a bar (a stable sort)
            st = self.books[sym]
            st.rearmed = deque(sorted(st.rearmed, key=lambda d: d.bar_ts))
        return n

    def following(self, symbol: str) -> bool:
        """Whether a bar of ``symbol`` matters to this observer now: a decision waits for its
        bar (:meth:`rearm`) or for its entry, or a bracket is open. A restarted daemon hands
        it only such warm-up bars. Raises KeyError for a symbol outside the desk's universe."""
        st = self.books[symbol]
        return bool(st.rearmed or st.fresh or st.pending or st.open_n)

    def _release(self, st: _Symbol, bar_ts: int) -> None:
        """Re-armed decisions of the bar ``bar_ts`` join (published at its close); those of an
        earlier bar, which never came, are dropped."""
        q = st.rearmed
        while q and q[0].bar_ts < bar_ts:
            q.popleft()
            self.unreached += 1
        while q and q[0].bar_ts == bar_ts:
            self.on_decision(q.popleft())

    # -- the journal ------------------------------------------------------------------------
    def on_decision(self, d: Decision) -> None:
        """A decision at the close of its bar: its bracket enters at the symbol's next open."""
        if not self.active:
            return
        cf = Counterfactual(d, self.max_hold.get(d.strategy_id, self.default_hold))
        self.books[d.symbol].fresh.append(cf)
        self.decisions += 1
        if self.sink is not None:
            rows = self.rows
            rows.append(cf)
            if len(rows) >= self._check_at:
                self._drain(False)

    # -- the market -------------------------------------------------------------------------
    def end_bar(self, bar: BarClosed) -> None:
        """``bar`` has been traded by the desk: time stops fill at its open, brackets inside
        it, the last close's decisions enter at its open (their entry bar counts)."""
        st = self.books[bar.symbol]
        if st.rearmed:
            self._release(st, bar.bar_ts)
        i = st.n
        st.n = i + 1
        st.highs.append(bar.high)
        st.lows.append(bar.low)
        atr = st.atr
        prev = atr.prev_value
        tr_atr = atr.tr / prev if prev > 0.0 else 0.0  # TR(bar) / ATR(close before), as the broker's
        st.last_bar = bar
        st.last_tr_atr = tr_atr
        if st.open_n:
            self._exits(st, bar, i, tr_atr)
        pending = st.pending
        if pending:
            cost_pips = self.cost.side_cost(bar.symbol, tr_atr).pips
            enter = self._enter
            for cf in pending:
                enter(st, cf, bar, i, cost_pips, tr_atr)
            st.pending = st.fresh
            st.fresh = []
        elif st.fresh:
            st.pending = st.fresh
            st.fresh = []
        elif not st.open_n and st.n - st.base > 4096:
            st.highs = []  # nothing open, nothing waiting: forget the bars
            st.lows = []
            st.base = st.n

    def _exits(self, st: _Symbol, bar: BarClosed, i: int, tr_atr: float) -> None:
        o, h, lo = bar.open, bar.high, bar.low
        exit_cost: list[float] = []  # this bar's exit cost, computed once if anything exits
        for q in st.time.values():  # time stops decided at the last close fill at this open
            while q and q[0].entry_i + q[0].max_hold <= i:
                cf = q.popleft()
                if not cf.done:
                    self._close(st, cf, _TIME, o, bar.bar_ts, i, i - cf.entry_i, tr_atr, exit_cost)
        hits = None
        heap = st.sl_long
        if heap and -heap[0][0] >= lo:
            hits = _pop_while(heap, lambda k: -k >= lo)
        heap = st.tp_short
        if heap and -heap[0][0] >= lo:
            hits = (hits or []) + _pop_while(heap, lambda k: -k >= lo)
        heap = st.sl_short
        if heap and heap[0][0] <= h:
            hits = (hits or []) + _pop_while(heap, lambda k: k <= h)
        heap = st.tp_long
        if heap and heap[0][0] <= h:
            hits = (hits or []) + _pop_while(heap, lambda k: k <= h)
        if hits is not None:
            policy = self.policy
            for cf in hits:
                if cf.done:  # closed earlier, or met in both of its heaps in this bar
                    continue
                hit = bracket_exit(cf.side, cf.sl_price, cf.tp_price, o, h, lo, policy)
                assert hit is not None  # the heap said this bar touches one of its levels
                self._close(st, cf, hit[0].value, hit[1], bar.bar_ts, i, i - cf.entry_i + 1, tr_atr, exit_cost)
        if not i & 255:  # now and then: drop what closed brackets left in the heaps
            stored = len(st.sl_long) + len(st.sl_short) + len(st.tp_long) + len(st.tp_short)
            if stored > 4 * st.open_n + 1024:
                self._compact(st)

    def _enter(self, st: _Symbol, cf: Counterfactual, bar: BarClosed, i: int, cost_pips: float,
               tr_atr: float) -> None:
        side = cf.side
        pip = st.pip
        price = bar.open + side * cost_pips * pip
        sl = st.round_price(price - side * cf.sl_pips * pip)
        tp = None if cf.tp_pips is None else st.round_price(price + side * cf.tp_pips * pip)
        cf.entry_i = i
        cf.entry_ts = bar.bar_ts
        cf.entry_price = price
        cf.sl_price = sl
        cf.tp_price = tp
        hit = bracket_exit(side, sl, tp, bar.open, bar.high, bar.low, self.policy)
        if hit is not None:
            self._close(st, cf, hit[0].value, hit[1], bar.bar_ts, i, 1, tr_atr, [], rested=False)
            return
        self._seq += 1
        seq = self._seq
        push = heapq.heappush
        if side > 0:
            push(st.sl_long, (-sl, seq, cf))
            if tp is not None:
                push(st.tp_long, (tp, seq, cf))
        else:
            push(st.sl_short, (sl, seq, cf))
            if tp is not None:
                push(st.tp_short, (-tp, seq, cf))
        q = st.time.get(cf.max_hold)
        if q is None:
            q = st.time[cf.max_hold] = deque()
        q.append(cf)
        st.open_n += 1

    def _close(self, st: _Symbol, cf: Counterfactual, outcome: str, ref: float, exit_ts: int, x: int,
               hold_bars: int, tr_atr: float, exit_cost: list[float], rested: bool = True) -> None:
        """Exit ``cf`` at ``ref`` (before costs) in bar ``x`` (the symbol's bar index); its
        MAE/MFE are over the bars it was open at a close (entry .. x - 1) and the exit level,
        from the entry fill price, as the ledger keeps them. ``exit_cost``: the bar's exit cost
        in pips once known (filled here the first time). ``rested``: it was in the heaps (not
        closed in its entry bar)."""
        side = cf.side
        pip = st.pip
        if not exit_cost:
            exit_cost.append(self.cost.side_cost(cf.decision.symbol, tr_atr).pips)
        price = ref - side * exit_cost[0] * pip
        p0 = cf.entry_price
        a, b = cf.entry_i - st.base, x - st.base
        mfe = mae = 0.0
        if b > a:
            hi = max(st.highs[a:b])
            low = min(st.lows[a:b])
            best, worst = ((hi - p0) / pip, (p0 - low) / pip) if side > 0 else ((p0 - low) / pip, (hi - p0) / pip)
            if best > mfe:
                mfe = best
            if worst > mae:
                mae = worst
        exc = side * (ref - p0) / pip
        if exc > mfe:
            mfe = exc
        if -exc > mae:
            mae = -exc
        cf.outcome = outcome
        cf.exit_ts = exit_ts
        cf.exit_price = price
        cf.hold_bars = hold_bars
        cf.mae_pips = mae
        cf.mfe_pips = mfe
        cf.pnl_pips = side * (price - p0) / pip
        if rested:
            st.open_n -= 1
        cf.done = True
        if self.on_done is not None:
            self.on_done(cf)

    def _compact(self, st: _Symbol) -> None:
        """Drop the heap entries of closed brackets (each leaves one behind), and forget the
        bars before the oldest open bracket's entry."""
        for name in ("sl_long", "sl_short", "tp_long", "tp_short"):
            heap = [e for e in getattr(st, name) if not e[2].done]
            heapq.heapify(heap)
            setattr(st, name, heap)
        for q in st.time.values():
            while q and q[0].done:
                q.popleft()
        heads = [q[0].entry_i for q in st.time.values() if q]
        # keep the current bar always: decisions waiting for their entry enter in it, after this
        first = min([*heads, st.n - 1])
        if first - st.base > 4096:
            cut = first - st.base
            del st.highs[:cut]
            del st.lows[:cut]
            st.base = first

    # -- the end ----------------------------------------------------------------------------
    def finish(self) -> None:
        """End of replayed data: open brackets close at their symbol's last close (EOD, with the
        exit cost of that bar); decisions still waiting for an entry have none. Then the rows
        left are written (with a sink)."""
        for st in self.books.values():
            self.unreached += len(st.rearmed)  # their bars never came
            st.rearmed.clear()
            bar = st.last_bar
            if bar is not None and st.open_n:
                x = st.n  # the last bar (n - 1) counts; every open bracket is in a time-stop queue
                still = sorted((cf for q in st.time.values() for cf in q if not cf.done), key=lambda c: c.entry_i)
                cost: list[float] = []
                for cf in still:
                    self._close(st, cf, _EOD, bar.close, bar.close_ts, x, x - cf.entry_i, st.last_tr_atr, cost)
            for cf in (*st.pending, *st.fresh):
                cf.no_entry()
                if self.on_done is not None:
                    self.on_done(cf)
            st.pending, st.fresh = [], []
        if self.sink is not None:
            self._drain(True)

    def _drain(self, final: bool) -> None:
        """Write the leading resolved rows (all of them when ``final``), in decision order."""
        rows = self.rows
        k = 0
        n = len(rows)
        while k < n and rows[k].done:
            k += 1
        size = self.batch_rows
        if not final:
            k -= k % size  # whole batches only: where a batch ends never depends on when this ran
        for start in range(0, k, size):
            self.sink.write_batch(counterfactual_batch(rows[start:min(k, start + size)], self.scenario, self.tf_s))
        del rows[:k]
        self._check_at = len(rows) + size


def _pop_while(heap: list, hit: Callable[[float], bool]) -> list[Counterfactual]:
    """Pop every entry of ``heap`` whose key ``hit`` accepts (they come first), their brackets."""
    out = []
    pop = heapq.heappop
    while heap and hit(heap[0][0]):
        out.append(pop(heap)[2])
    return out


#: counterfactuals.parquet's columns: the decision's (as decisions.parquet has them, so the two
#: join 1:1 in row order), then the counterfactual's
CF_DECISION_COLUMNS = ["scenario", "decision_time", "symbol", "strategy_id", "side", "action", "reason", "regime"]
CF_COLUMNS = [*CF_DECISION_COLUMNS, "cf_outcome", "cf_result", "cf_pnl_pips", "cf_pnl_r", "cf_mae_pips",
              "cf_mfe_pips", "cf_mae_atr", "cf_mfe_atr", "cf_hold_bars", "cf_entry_time", "cf_entry_price",
              "cf_sl_price", "cf_tp_price", "cf_exit_time", "cf_exit_price"]
CF_FILE = "counterfactuals.parquet"


def counterfactual_schema() -> pa.Schema:
    """counterfactuals.parquet's columns (CF_COLUMNS). Times are timestamp[ms, tz=UTC]
    (``decision_time`` the decision bar's close, as in decisions.parquet, ``regime`` its regime
    tag, as there; ``cf_entry_time``
    the entry bar's open; ``cf_exit_time`` the exit fill's time as trades.csv's exit_time);
    prices float64 to 6 decimals, pips to 2, R and ATR multiples to 4; ``cf_hold_bars`` int32;
    ``cf_outcome`` TP / SL / TIME / EOD and ``cf_result`` WIN / LOSS; every cf_ column null when
    the decision had no next open (end of data), ``cf_tp_price`` also without a target,
    ``cf_mae_atr`` / ``cf_mfe_atr`` also without a decision ATR."""
    import pyarrow as pa

    ts = pa.timestamp("ms", tz="UTC")
    types: dict[str, Any] = {"decision_time": ts, "cf_entry_time": ts, "cf_exit_time": ts,
                             "cf_hold_bars": pa.int32()}
    for c in CF_COLUMNS[CF_COLUMNS.index("cf_pnl_pips"):]:
        types.setdefault(c, pa.float64())
    return pa.schema([pa.field(c, types.get(c, pa.string()), nullable=c.startswith("cf_"))
                      for c in CF_COLUMNS])


def _floats(values: list[float] | np.ndarray, decimals: int) -> pa.Array:
    import pyarrow as pa

    a = np.round(np.asarray(values, dtype=np.float64), decimals)
    missing = np.isnan(a)
    return pa.array(a, pa.float64(), mask=missing if missing.any() else None)


def _times(values: list[int | None]) -> pa.Array:
    import pyarrow as pa

    return pa.array([None if v is None else v * 1000 for v in values], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def counterfactual_batch(rows: list[Counterfactual], scenario: str, timeframe_s: int) -> pa.RecordBatch:
    """``rows`` (resolved, in decision order) as one record batch of :func:`counterfactual_schema`
    (R, ATR multiples and WIN / LOSS computed over the batch's arrays, as :class:`Counterfactual`
    defines them)."""
    import pyarrow as pa

    ds = [cf.decision for cf in rows]
    side = SIDE_NAME
    outcome = [cf.outcome for cf in rows]
    pnl = np.asarray([cf.pnl_pips for cf in rows], dtype=np.float64)
    mae = np.asarray([cf.mae_pips for cf in rows], dtype=np.float64)
    mfe = np.asarray([cf.mfe_pips for cf in rows], dtype=np.float64)
    sl = np.asarray([cf.sl_pips for cf in rows], dtype=np.float64)
    atr = np.asarray([d.atr_pips for d in ds], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        atr = np.where(atr > 0.0, atr, np.nan)  # NaN and 0: no ATR multiple
        pnl_r, mae_atr, mfe_atr = pnl / sl, mae / atr, mfe / atr
    filled = np.asarray([o is not None for o in outcome], dtype=bool)
    result = [r if f else None for r, f in zip(np.where(pnl > 0.0, "WIN", "LOSS").tolist(), filled.tolist())]
    arrays = [
        pa.array([scenario] * len(rows), pa.string()),
        pa.array((np.asarray([d.bar_ts for d in ds], dtype=np.int64) + timeframe_s) * 1000,
                 pa.timestamp("ms", tz="UTC")),
        pa.array([d.symbol for d in ds], pa.string()), pa.array([d.strategy_id for d in ds], pa.string()),
        pa.array([side[d.side] for d in ds], pa.string()), pa.array([str(d.action) for d in ds], pa.string()),
        pa.array([d.reason for d in ds], pa.string()), pa.array([d.regime for d in ds], pa.string()),
        pa.array(outcome, pa.string()),
        pa.array(result, pa.string()),
        _floats(pnl, 2), _floats(pnl_r, 4), _floats(mae, 2), _floats(mfe, 2), _floats(mae_atr, 4),
        _floats(mfe_atr, 4),
        pa.array([cf.hold_bars for cf in rows], pa.int32()),
        _times([cf.entry_ts for cf in rows]), _floats([cf.entry_price for cf in rows], 6),
        _floats([cf.sl_price for cf in rows], 6),
        _floats([math.nan if cf.tp_price is None else cf.tp_price for cf in rows], 6),
        _times([cf.exit_ts for cf in rows]), _floats([cf.exit_price for cf in rows], 6),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=counterfactual_schema())


#: the counterfactual's own columns of counterfactuals.parquet (after the decision's)
CF_FIELDS = CF_COLUMNS[len(CF_DECISION_COLUMNS):]
#: its times: timestamps in Parquet, ISO 8601 UTC in JSON, UTC epoch seconds in the store
CF_TIMES = ("cf_entry_time", "cf_exit_time")


def cf_store_name(column: str) -> str:
    """The store's name of a counterfactuals.parquet column: a time (CF_TIMES, epoch seconds
    there) ends in ``_ts`` as the store's times do (``cf_entry_ts``); the others keep theirs."""
    return column.removesuffix("_time") + "_ts" if column in CF_TIMES else column


# the store keeps counterfactuals.parquet's fields: checked at import, so the two cannot drift apart
if tuple(cf_store_name(c) for c in CF_FIELDS) != COUNTERFACTUAL_FIELDS:
    raise RuntimeError(f"the store's counterfactuals columns {COUNTERFACTUAL_FIELDS} are not "
                       f"counterfactuals.parquet's {CF_FIELDS}")


def counterfactual_rows(rows: list[Counterfactual], timeframe_s: int) -> list[dict[str, Any]]:
    """``rows`` (resolved) as the store keeps them, one dict each: the decision's ``bar_ts``,
    ``symbol``, ``strategy_id`` (its natural key in the decisions table), ``side`` (+1 / -1),
    ``action``, ``reason`` and ``regime``, then the CF_FIELDS under their store names
    (:func:`cf_store_name`) with the values :func:`counterfactual_batch` writes to
    counterfactuals.parquet (rounded there, and only there), None where it writes null, times
    as UTC epoch seconds. ``timeframe_s`` is the desk's bar length in seconds."""
    import pyarrow as pa

    batch = counterfactual_batch(rows, "", timeframe_s)
    cols: dict[str, list] = {}
    for name in CF_FIELDS:
        col = batch.column(name)
        if name in CF_TIMES:
            cols[cf_store_name(name)] = [None if v is None else v // 1000 for v in col.cast(pa.int64()).to_pylist()]
        else:
            cols[name] = col.to_pylist()
    names = list(cols)
    out = []
    for i, cf in enumerate(rows):
        d = cf.decision
        row: dict[str, Any] = {"bar_ts": d.bar_ts, "symbol": d.symbol, "strategy_id": d.strategy_id,
                               "side": d.side, "action": str(d.action), "reason": d.reason, "regime": d.regime}
        for n in names:
            row[n] = cols[n][i]
        out.append(row)
    return out


def counterfactual_json(row: Mapping[str, Any], timeframe_s: int) -> dict[str, Any]:
    """A counterfactual as the store keeps it (:func:`counterfactual_rows`' dict, or a stored
    row joined with its decision: ``decision_id`` and ``scenario`` are passed on when present)
    as a JSON-able dict under counterfactuals.parquet's names: ``decision_time`` the decision
    bar's close (``bar_ts`` + ``timeframe_s``), side LONG / SHORT, times ISO 8601 UTC, null for
    what it lacks. The live daemon's log line and the control API's rows. Raises KeyError for a
    row without those fields."""
    out: dict[str, Any] = {k: row[k] for k in ("decision_id", "scenario") if k in row}
    out.update({"decision_time": iso(row["bar_ts"] + timeframe_s), "symbol": row["symbol"],
                "strategy_id": row["strategy_id"], "side": SIDE_NAME[row["side"]], "action": row["action"],
                "reason": row["reason"], "regime": row["regime"]})
    for name in CF_FIELDS:
        v = row[cf_store_name(name)]
        out[name] = iso(v) if name in CF_TIMES and v is not None else v
    return out


def counterfactual_record(cf: Counterfactual, timeframe_s: int) -> dict[str, Any]:
    """One resolved counterfactual as a JSON-able dict: :func:`counterfactual_json` of its
    :func:`counterfactual_rows` (counterfactuals.parquet's columns but the scenario, values
    as that file has them)."""
    return counterfactual_json(counterfactual_rows([cf], timeframe_s)[0], timeframe_s)


class CounterfactualJournal:
    """A run's counterfactuals.parquet in ``folder`` (zstd, as decisions.parquet), fed scenario
    after scenario like :class:`deskd.research.outputs.DecisionJournal`: by :meth:`sink` in this
    process, or by :meth:`append_part` with the part file :meth:`part_writer` wrote in a worker
    (Arrow IPC, its record batches becoming the same row groups). ``on`` False writes nothing
    (every sink None). Raises OSError."""

    def __init__(self, folder: Path, on: bool = True):
        from deskd.research.outputs import PARQUET_COMPRESSION

        self.on = on
        self.path = folder / CF_FILE if on else None
        self._parquet: Any = None
        if on:
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(str(self.path), counterfactual_schema(), compression=PARQUET_COMPRESSION)

    def sink(self) -> Any:
        """Where a :class:`CounterfactualObserver` in this process writes (None when off)."""
        return self._parquet

    @staticmethod
    @contextlib.contextmanager
    def part_writer(part: Path | None) -> Iterator[Any]:
        """A sink writing to the part file ``part`` (for :meth:`append_part`), closed on leaving
        the block; None (no file) when ``part`` is None (counterfactuals off)."""
        if part is None:
            yield None
            return
        import pyarrow.ipc as ipc

        with ipc.new_file(str(part), counterfactual_schema()) as sink:
            yield sink

    def append_part(self, part: Path) -> None:
        """Append a part file written by :meth:`part_writer`, then delete it."""
        if self._parquet is not None:
            append_ipc_part(self._parquet, part)
        part.unlink(missing_ok=True)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self._parquet = None
