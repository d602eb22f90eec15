"""numba kernels of the fast path: exact decimal rounding, the desk's indicators, the paper
broker's costs, and the desk's per-bar sequence for one strategy on one symbol.

Every kernel repeats the event path's floating-point operations in the event path's order
(LLVM keeps IEEE semantics without ``fastmath``, which is never set here), so its numbers are
the event path's bit for bit, not merely close. The event path is the reference:

* indicators: :mod:`deskd.strategies.indicators` (EMA seeded with the mean of its first n
  inputs; Wilder's ATR and ADX, Wilder 1978 ch. 2 and 4, seeded as TA-Lib does);
* costs: :class:`deskd.adapters.paper.CostModel` (DESIGN.md, "Costs and scenarios");
* the bar sequence: :meth:`deskd.desk.desk.Desk.on_bar` with
  :class:`deskd.adapters.paper.PaperBroker`, :class:`deskd.desk.ledger.Ledger`,
  :class:`deskd.risk.allocator.Allocator` and :class:`deskd.risk.guard.DrawdownGuard`.

Arrays are indexed by bar (the whole file); an indicator computed from bar ``w0`` on is NaN
before it is defined, as the incremental one is. Prices are in quote currency, times UTC
epoch seconds (int64), money USD.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

NAN = math.nan

# -- exact decimal rounding ---------------------------------------------------------------------

_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's splitter for doubles (Dekker 1971)


@njit(cache=True)
def round_decimal(x: float, scale: float) -> float:
    """``round(x, d)`` as CPython computes it, with ``scale`` = 10.0 ** d (d >= 0).

    CPython rounds the exact binary value of ``x`` to d decimals, ties to even (David Gay's
    correctly rounded dtoa), then reads that decimal back: the nearest double to k / 10**d.
    numba's own ``round(x, d)`` scales and rounds in floating point, which can differ by one
    unit in the last decimal near a tie. Here k comes from ``x * scale``; when that product is
    within 1e-6 of a tie, the exact product is rebuilt as an unevaluated sum ``p + e``
    (Dekker's TwoProduct, 1971) and compared with the tie exactly. k / scale is then the
    correctly rounded quotient of two exact doubles, which is the nearest double to k / 10**d.
    Units: those of ``x``."""
    y = x * scale
    if not abs(y) < 4503599627370496.0:  # 2**52: no fractional digits left (or NaN/inf)
        return x
    k = np.floor(y)
    frac = y - k  # exact: y and k are close and below 2**52
    if abs(frac - 0.5) > 1e-6:
        if frac > 0.5:
            k += 1.0
        return k / scale
    # near a tie: the exact product x * scale = p + e
    p = y
    a = _SPLIT * x
    ah = a - (a - x)
    al = x - ah
    b = _SPLIT * scale
    bh = b - (b - scale)
    bl = scale - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    d = (p - (k + 0.5)) + e  # p - (k + 0.5) is exact (Sterbenz); the sum keeps its sign
    if d > 0.0 or (d == 0.0 and k - 2.0 * np.floor(k / 2.0) != 0.0):
        k += 1.0
    return k / scale


# -- indicators (deskd.strategies.indicators, bar by bar) ----------------------------------------

@njit(cache=True)
def ema_close(close: np.ndarray, period: int, w0: int, end: int) -> np.ndarray:
    """EMA(period) of the close after each bar, fed from bar ``w0`` to ``end`` - 1:
    alpha = 2 / (period + 1), seeded with the mean of the first ``period`` closes
    (:class:`deskd.strategies.indicators.EMA`). Shape (len(close),); NaN where undefined."""
    out = np.full(close.shape[0], NAN)
    alpha = 2.0 / (period + 1)
    total = 0.0
    n = 0
    v = NAN
    for i in range(w0, end):
        x = close[i]
        if n >= period:
            v += alpha * (x - v)
        else:
            n += 1
            total += x
            if n == period:
                v = total / period
        out[i] = v
    return out


@njit(cache=True, inline="always")
def _true_range(h: float, lo: float, pc: float) -> float:
    """Wilder's true range of a bar (Wilder 1978, ch. 2): the largest of high - low,
    |high - previous close| and |low - previous close| (price units)."""
    tr = h - lo
    a = abs(h - pc)
    if a > tr:
        tr = a
    a = abs(lo - pc)
    if a > tr:
        tr = a
    return tr


@njit(cache=True)
def atr_wilder(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, w0: int,
               end: int) -> np.ndarray:
    """Wilder's ATR(period) after each bar (Wilder 1978, ch. 2), fed from bar ``w0``: the first
    bar has no true range; the mean of the first ``period`` true ranges, then
    atr = (atr x (period - 1) + tr) / period (:class:`deskd.strategies.indicators.ATR`).
    Units: price. Shape (len(close),); NaN where undefined."""
    out = np.full(close.shape[0], NAN)
    total = 0.0
    n = 0
    v = NAN
    k = period - 1
    for i in range(w0 + 1, end):
        tr = _true_range(high[i], low[i], close[i - 1])
        if n >= period:
            v = (v * k + tr) / period
        else:
            n += 1
            total += tr
            if n == period:
                v = total / period
        out[i] = v
    return out


@njit(cache=True)
def adx_wilder(high: np.ndarray, low: np.ndarray, atr: np.ndarray, period: int, w0: int,
               end: int) -> np.ndarray:
    """Wilder's ADX(period) after each bar (Wilder 1978, ch. 4), 0..100, fed from bar ``w0``;
    ``atr`` is ATR(period) fed from the same bar (:func:`atr_wilder`), Wilder's smoothed true
    range. +DM = up-move when it beats the down-move and is positive, -DM the mirror; both
    smoothed like the ATR; DI = 100 x DM / ATR; DX = 100 x |DI+ - DI-| / (DI+ + DI-) (0 when
    both are 0); ADX = mean of the first ``period`` DX, then Wilder-smoothed
    (:class:`deskd.strategies.indicators.ADX`). Shape (len(high),); NaN where undefined."""
    out = np.full(high.shape[0], NAN)
    n = period
    k = n - 1
    nmov = 0
    spdm = 0.0
    smdm = 0.0
    ndx = 0
    dxsum = 0.0
    v = NAN
    for i in range(w0 + 1, end):
        up = high[i] - high[i - 1]
        dn = low[i - 1] - low[i]
        pdm = up if (up > dn and up > 0.0) else 0.0
        mdm = dn if (dn > up and dn > 0.0) else 0.0
        if nmov >= n:
            spdm = (spdm * k + pdm) / n
            smdm = (smdm * k + mdm) / n
        else:
            nmov += 1
            spdm += pdm
            smdm += mdm
            if nmov < n:
                continue
            spdm = spdm / n
            smdm = smdm / n
        s_tr = atr[i]
        if s_tr > 0.0:
            pdi = 100.0 * spdm / s_tr
            mdi = 100.0 * smdm / s_tr
        else:
            pdi = 0.0
            mdi = 0.0
        tot = pdi + mdi
        dx = 100.0 * abs(pdi - mdi) / tot if tot > 0.0 else 0.0
        if ndx >= n:
            v = (v * k + dx) / n
        else:
            ndx += 1
            dxsum += dx
            if ndx == n:
                v = dxsum / n
        out[i] = v
    return out


# -- rolling statistics of S2 (RollingZScore, RollingSlope) ----------------------------------------

_EXACT_BELOW = 1e-4    # deskd.strategies.indicators._EXACT_BELOW
_FLAT_VAR = 1e-18      # deskd.strategies.indicators._FLAT_VAR
_RESYNC_WINDOWS = 64   # deskd.strategies.indicators._RESYNC_WINDOWS


@njit(cache=True)
def fsum(values: np.ndarray, partials: np.ndarray) -> float:
    """``math.fsum(values)``: the exact sum of ``values`` (float64, shape (n,)) rounded once to
    the nearest double, ties to even; Shewchuk's non-overlapping partials (1997) as CPython's
    mathmodule.c runs them, its half-even fix-up across partials included. ``partials`` is
    scratch space of at least 64 doubles (a finite double sum needs fewer than 40). Finite
    inputs only (no overflow or NaN handling)."""
    n = 0
    for v in values:
        x = v
        i = 0
        for j in range(n):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        n = i
        if x != 0.0:
            partials[n] = x
            n += 1
    hi = 0.0
    if n > 0:
        n -= 1
        hi = partials[n]
        lo = 0.0
        while n > 0:
            x = hi
            n -= 1
            y = partials[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@njit(cache=True)
def rolling_zscore(x: np.ndarray, window: int, w0: int, end: int) -> np.ndarray:
    """z-score of each value of ``x`` against the last ``window`` values (it included), fed
    with the values in [w0, end) that are not NaN (S2's close - EMA once the EMA is defined,
    S3's ATR% once the ATR is): population std from running sums of x and x^2; recomputed
    exactly (two-pass, fsum) from the window when var <= 1e-4 x mean square and every 64
    windows; NaN while the window fills or when std <= 1e-9 x RMS
    (:class:`deskd.strategies.indicators.RollingZScore`). Shape (len(x),)."""
    out = np.full(x.shape[0], NAN)
    buf = np.zeros(window)
    scratch = np.empty(window)
    partials = np.empty(64)
    inv_w = 1.0 / window
    i = 0
    warm = window
    left = _RESYNC_WINDOWS * window
    s1 = 0.0
    s2 = 0.0
    for t in range(w0, end):
        v = x[t]
        if v != v:
            continue
        old = buf[i]
        buf[i] = v
        i += 1
        if i == window:
            i = 0
        n1 = s1 + (v - old)
        n2 = s2 + (v * v - old * old)
        if warm:
            warm -= 1
            if warm:
                s1 = n1
                s2 = n2
                continue
        mean = n1 * inv_w
        msq = n2 * inv_w
        var = msq - mean * mean
        left -= 1
        if var <= _EXACT_BELOW * msq or not left:
            n1 = fsum(buf, partials)
            mean = n1 / window
            for j in range(window):
                d = buf[j] - mean
                scratch[j] = d * d
            var = fsum(scratch, partials) / window
            for j in range(window):
                scratch[j] = buf[j] * buf[j]
            n2 = fsum(scratch, partials)
            msq = n2 * inv_w
            left = _RESYNC_WINDOWS * window
        s1 = n1
        s2 = n2
        out[t] = NAN if var <= _FLAT_VAR * msq else (v - mean) / math.sqrt(var)
    return out


@njit(cache=True)
def ema_slope(ema: np.ndarray, window: int, w0: int, end: int) -> np.ndarray:
    """Least-squares slope of the last ``window`` EMA values against 0..window-1, in price
    per bar, fed from the first bar in [w0, end) where ``ema`` is defined (S2's slope):
    (n Sxy - Sx Sy) / (n Sxx - Sx^2) from running sums, recomputed exactly (fsum) every 64
    windows (:class:`deskd.strategies.indicators.RollingSlope`). NaN while the window fills.
    Shape (len(ema),)."""
    out = np.full(ema.shape[0], NAN)
    w = window
    buf = np.zeros(w)
    scratch = np.empty(w)
    partials = np.empty(64)
    sx = w * (w - 1) / 2.0
    den = w * ((w - 1) * w * (2 * w - 1) / 6.0) - sx * sx
    i = 0
    n = 0
    sy = 0.0
    sxy = 0.0
    since = 0
    for t in range(w0, end):
        y = ema[t]
        if y != y:
            continue
        if n < w:
            sxy += n * y
            sy += y
            n += 1
        else:
            old = buf[i]
            sxy += -(sy - old) + (w - 1) * y
            sy += y - old
            since += 1
        buf[i] = y
        i = i + 1 if i + 1 < w else 0
        if n < w:
            continue
        if since >= _RESYNC_WINDOWS * w:
            for m in range(w):  # oldest first: the oldest value sits at i
                scratch[m] = buf[(i + m) % w]
            sy = fsum(scratch, partials)
            for m in range(w):
                scratch[m] = m * scratch[m]
            sxy = fsum(scratch, partials)
            since = 0
        out[t] = (w * sxy - sx * sy) / den
    return out


@njit(cache=True)
def prior_max(values: np.ndarray, window: int, w0: int, end: int) -> np.ndarray:
    """The largest of the ``window`` values BEFORE each bar, fed from bar ``w0``: defined from
    bar w0 + window on (S3's breakout high; :class:`deskd.strategies.indicators.PriorRange`,
    whose low is ``-prior_max(-low)``, exactly). A monotonic deque of bar indices (Lemire
    2006), O(1) amortised per bar; a maximum is exact, so the level is the event path's.
    Units: those of ``values``. Shape (len(values),), NaN where undefined."""
    out = np.full(values.shape[0], NAN)
    q = np.empty(max(end - w0, 1), np.int64)  # q[head:tail]: indices, values decreasing
    head = 0
    tail = 0
    for i in range(w0, end):
        first = i - window
        if first >= w0:
            if q[head] < first:
                head += 1  # at most one expires per bar
            out[i] = values[q[head]]
        v = values[i]
        while tail > head and values[q[tail - 1]] <= v:
            tail -= 1
        q[tail] = i
        tail += 1
    return out


# -- costs (deskd.adapters.paper.CostModel) -------------------------------------------------------

@njit(cache=True)
def side_cost_parts(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, w0: int,
                    end: int, slip_base_pips: float, slip_k_pips: float, slip_mult: float,
                    slip_add_pips: float, spike_tr_atr_th: float, spike_mult: float) -> tuple[np.ndarray, np.ndarray]:
    """The slippage of one side of a fill during bar i, in pips, and whether the spike
    multiplier applied (1.0 / 0.0), for every bar i in [w0, end): (slip_base + slip_k x TR(i) /
    ATR(i-1)) x slip_mult (x spike_mult when the ratio exceeds spike_tr_atr_th) + slip_add
    (DESIGN.md, "Costs and scenarios"; :meth:`deskd.adapters.paper.CostModel.side_cost`).
    ``atr`` is the cost model's Wilder ATR fed from ``w0``; the ratio is 0 while it is
    undefined or no bar precedes (as :meth:`deskd.adapters.paper.PaperBroker._tr_atr`; the
    end-of-data close uses the same ratio of the last bar). ``spike_mult`` is 1.0 in a scenario
    without spikes (and no spike is then recorded). Shapes (len(close),); NaN outside [w0, end)."""
    slippage = np.full(close.shape[0], NAN)
    spike = np.zeros(close.shape[0])
    for i in range(w0, end):
        r = 0.0
        if i > w0:
            a = atr[i - 1]
            if a > 0.0:
                r = _true_range(high[i], low[i], close[i - 1]) / a
        slip = (slip_base_pips + slip_k_pips * r) * slip_mult
        if r > spike_tr_atr_th:
            slip *= spike_mult
            if spike_mult != 1.0:
                spike[i] = 1.0
        slippage[i] = slip + slip_add_pips
    return slippage, spike


# -- the desk, one strategy on one symbol ---------------------------------------------------------

# scalar inputs of simulate(), packed in one float64 array (index: meaning)
P_TF_S = 0             # timeframe, seconds
P_PIP = 1              # pip size, price per pip
P_PRICE_SCALE = 2      # 10 ** price decimals: the quote grid (a tenth of a pip)
P_INV_QUOTE = 3        # 1.0 when the base is USD (one quote unit = 1 / price USD), else 0.0 (quote USD)
P_K_SL = 4
P_MIN_SL_PIPS = 5
P_K_TP = 6             # NaN: no take-profit
P_MIN_TP_PIPS = 7
P_MAX_HOLD_BARS = 8
P_R_BASE = 9
P_CAP_STRATEGY_FRAC = 10
P_CAP_SYMBOL_FRAC = 11
P_MAX_NOTIONAL_USD = 12
P_DD_DAY_FRAC = 13
P_DD_WEEK_FRAC = 14
P_MAX_DD_FRAC = 15     # NaN: no drawdown-from-peak halt
P_EQUITY0_USD = 16
P_POLICY = 17          # intrabar policy: 0 sl_first, 1 tp_first, 2 open_proximity
N_PARAMS = 18

# columns of the trade rows simulate() returns
T_SIDE = 0
T_UNITS = 1
T_SIGNAL_TS = 2
T_FILL_TS = 3
T_ENTRY_PRICE = 4
T_ENTRY_REF = 5
T_SL_PRICE = 6
T_TP_PRICE = 7         # NaN: none
T_RISK_USD = 8
T_ENTRY_COST_PIPS = 9
T_EXIT_TS = 10
T_EXIT_PRICE = 11
T_EXIT_REF = 12
T_EXIT_REASON = 13     # EXIT_SL, EXIT_TP, EXIT_TIME, EXIT_EOD
T_EXIT_COST_PIPS = 14
T_PNL_USD = 15
T_MAE_PIPS = 16
T_MFE_PIPS = 17
T_HOLD_BARS = 18
T_SIGNAL_BAR = 19      # index of the bar at whose close the entry was decided
N_TRADE_COLS = 20

EXIT_SL = 0
EXIT_TP = 1
EXIT_TIME = 2
EXIT_EOD = 3

# results simulate() returns besides the trades
R_EQUITY_USD = 0
R_BALANCE_USD = 1
R_MAX_DD_USD = 2
R_MAX_DD_FRAC = 3
R_MIN_EQUITY_USD = 4   # lowest equity at a bar close or exit fill
N_RESULTS = 5

# roll[i]: what the guard's roll does at bar i
ROLL_NONE = 0
ROLL_DAY = 1
ROLL_WEEK = 2          # a day roll that starts a new ISO week

_CAP_SLACK = 1.0 + 1e-9  # deskd.risk.allocator._CAP_RTOL
_HALT_NONE = 0
_HALT_DAY = 1
_HALT_WEEK = 2
_HALT_MAX_DD = 3
_UNTIL_RESUMED = 2**62  # deskd.risk.guard.UNTIL_RESUMED
_NO_EXIT = -1

#: the desk's state during a run, one record: ledger (USD), drawdown guard, the open position
#: (side 0.0: flat) and the entry decided at the last close (pend_side 0.0: none)
STATE = np.dtype([
    ("equity", np.float64), ("balance", np.float64), ("peak", np.float64), ("min_equity", np.float64),
    ("max_dd_usd", np.float64), ("max_dd_frac", np.float64),
    ("g_peak", np.float64), ("day_anchor", np.float64), ("week_anchor", np.float64),
    ("halt_code", np.int64), ("halt_until", np.int64), ("last_checked", np.float64),
    ("side", np.float64), ("units", np.float64), ("entry_price", np.float64), ("sl_price", np.float64),
    ("tp_price", np.float64), ("hold", np.int64), ("mae", np.float64), ("mfe", np.float64),
    ("unreal", np.float64), ("exit_pending", np.bool_),
    ("pend_side", np.float64), ("pend_units", np.float64), ("pend_sl_pips", np.float64),
    ("pend_tp_pips", np.float64), ("pend_risk", np.float64), ("pend_signal_ts", np.int64),
    ("pend_bar", np.int64),
])


@njit(cache=True)
def _track_drawdown(s: Any) -> None:
    """Ledger._track_drawdown: the largest fall from the running peak, in USD and as a
    fraction of that peak (independently), and the lowest equity below a peak."""
    e = s.equity
    if e >= s.peak:
        s.peak = e
        return
    if e < s.min_equity:
        s.min_equity = e
    dd = s.peak - e
    if dd > s.max_dd_usd:
        s.max_dd_usd = dd
    frac = dd / s.peak
    if frac > s.max_dd_frac:
        s.max_dd_frac = frac


@njit(cache=True)
def _roll(s: Any, kind: int, ts: int) -> None:
    """DrawdownGuard.roll and .expired at a trading-day roll (``kind`` ROLL_DAY/ROLL_WEEK):
    anchors at the equity marked so far; a halt whose lift time has come lifts (the state
    machine's DD_HALT_EXPIRED)."""
    s.day_anchor = s.equity
    if kind == ROLL_WEEK:
        s.week_anchor = s.equity
    s.last_checked = s.equity
    if s.halt_code != _HALT_NONE and ts >= s.halt_until:
        s.halt_code = _HALT_NONE


@njit(cache=True)
def _enter(s: Any, row: np.ndarray, ts: int, ref: float, cost_pips: float, pip: float,
           price_scale: float) -> None:
    """PaperBroker._fill_market for the pending entry at the open ``ref``: fill price plus the
    cost against the trader, bracket from the fill on the quote grid; Ledger._open books it
    (writes the entry columns of ``row``)."""
    side = s.pend_side
    price = ref + side * cost_pips * pip
    s.side = side
    s.units = s.pend_units
    s.entry_price = price
    s.sl_price = round_decimal(price - side * s.pend_sl_pips * pip, price_scale)
    tp = s.pend_tp_pips
    s.tp_price = NAN if math.isnan(tp) else round_decimal(price + side * tp * pip, price_scale)
    s.hold = 0
    s.mae = 0.0
    s.mfe = 0.0
    s.unreal = 0.0
    s.pend_side = 0.0
    row[T_SIDE] = side
    row[T_UNITS] = s.units
    row[T_SIGNAL_TS] = s.pend_signal_ts
    row[T_FILL_TS] = ts
    row[T_ENTRY_PRICE] = price
    row[T_ENTRY_REF] = ref
    row[T_SL_PRICE] = s.sl_price
    row[T_TP_PRICE] = s.tp_price
    row[T_RISK_USD] = s.pend_risk
    row[T_ENTRY_COST_PIPS] = cost_pips
    row[T_SIGNAL_BAR] = s.pend_bar


@njit(cache=True)
def _exit(s: Any, row: np.ndarray, exit_ts: int, ref: float, cost_pips: float, reason: int,
          pip: float, inv_quote: bool) -> None:
    """PaperBroker._publish_exit at ``ref`` (minus the cost against the trader) and
    Ledger._close: P&L in quote currency converted at the exit price, balance and equity
    (the unrealised P&L marked so far replaced by the realised), hold_bars (+1 for an in-bar
    stop or target), MAE/MFE to the exit level. Writes the exit columns of ``row``."""
    side = s.side
    price = ref - side * cost_pips * pip
    q = 1.0 / price if inv_quote else 1.0
    pnl_usd = side * (price - s.entry_price) * s.units * q
    hold = s.hold + 1 if (reason == EXIT_SL or reason == EXIT_TP) else s.hold
    exc = side * (ref - s.entry_price) / pip
    row[T_EXIT_TS] = exit_ts
    row[T_EXIT_PRICE] = price
    row[T_EXIT_REF] = ref
    row[T_EXIT_REASON] = reason
    row[T_EXIT_COST_PIPS] = cost_pips
    row[T_PNL_USD] = pnl_usd
    row[T_MAE_PIPS] = -exc if -exc > s.mae else s.mae
    row[T_MFE_PIPS] = exc if exc > s.mfe else s.mfe
    row[T_HOLD_BARS] = hold
    s.side = 0.0
    s.exit_pending = False
    s.balance += pnl_usd
    s.equity += pnl_usd - s.unreal
    s.unreal = 0.0
    _track_drawdown(s)


@njit(cache=True)
def _bracket(s: Any, o: float, hi: float, lo: float, policy: int) -> tuple[int, float]:
    """PaperBroker._check_bracket: (exit reason, fill level) of the resting bracket in a bar,
    or (_NO_EXIT, 0.0). A bar opening through a level fills at the open; touching both, the
    stop (sl_first), the target (tp_first) or the level nearer the open (open_proximity,
    ties to the stop)."""
    side = s.side
    sl = s.sl_price
    tp = s.tp_price
    has_tp = not math.isnan(tp)
    if (o <= sl) if side > 0.0 else (o >= sl):
        return EXIT_SL, o
    if has_tp and ((o >= tp) if side > 0.0 else (o <= tp)):
        return EXIT_TP, o
    sl_hit = (lo <= sl) if side > 0.0 else (hi >= sl)
    tp_hit = has_tp and ((hi >= tp) if side > 0.0 else (lo <= tp))
    if sl_hit and tp_hit:
        if policy == 1 or (policy == 2 and abs(tp - o) < abs(o - sl)):
            return EXIT_TP, tp
        return EXIT_SL, sl
    if sl_hit:
        return EXIT_SL, sl
    if tp_hit:
        return EXIT_TP, tp
    return _NO_EXIT, 0.0


@njit(cache=True)
def _mark(s: Any, hi: float, lo: float, c: float, pip: float, inv_quote: bool) -> None:
    """Ledger.on_bar for the open position: hold_bars, MAE/MFE from the entry fill, equity
    marked at the close (quote -> USD at the close), drawdown."""
    s.hold += 1
    e = s.entry_price
    best = (hi - e) / pip if s.side > 0.0 else (e - lo) / pip
    worst = (e - lo) / pip if s.side > 0.0 else (hi - e) / pip
    if best > s.mfe:
        s.mfe = best
    if worst > s.mae:
        s.mae = worst
    q = 1.0 / c if inv_quote else 1.0
    u = s.side * (c - e) * s.units * q
    s.equity += u - s.unreal
    s.unreal = u
    _track_drawdown(s)


@njit(cache=True)
def _check(s: Any, day_end_ts: int, week_end_ts: int, p: np.ndarray) -> None:
    """DrawdownGuard.check of a changed equity: the fall from the equity peak (risk.max_drawdown_frac,
    until an operator resumes), then the week's from its anchor (until the next week roll,
    extending a shorter halt), then the day's (until the next day roll, when no halt holds)."""
    eq = s.equity
    max_dd = p[P_MAX_DD_FRAC]
    if not math.isnan(max_dd):
        if eq > s.g_peak:
            s.g_peak = eq
        elif s.g_peak > 0 and s.halt_code != _HALT_MAX_DD:
            if (s.g_peak - eq) / s.g_peak >= max_dd:
                s.halt_code = _HALT_MAX_DD
                s.halt_until = _UNTIL_RESUMED
                return
    if s.week_anchor > 0 and (s.week_anchor - eq) / s.week_anchor >= p[P_DD_WEEK_FRAC]:
        if s.halt_code == _HALT_NONE or week_end_ts > s.halt_until:
            s.halt_code = _HALT_WEEK
            s.halt_until = week_end_ts
            return
    if s.day_anchor > 0 and (s.day_anchor - eq) / s.day_anchor >= p[P_DD_DAY_FRAC]:
        if s.halt_code == _HALT_NONE:
            s.halt_code = _HALT_DAY
            s.halt_until = day_end_ts


@njit(cache=True)
def _decide(s: Any, bar: int, side: int, atr: float, c: float, signal_ts: int, p: np.ndarray,
            inv_quote: bool) -> None:
    """A signal at a close while flat and not halted: the bracket in pips from the ATR
    (Strategy.signal: max(k x ATR_pips, min); Desk._decide: to whole tenths of a pip, the stop
    at least 0.1), sized by Allocator.size (units = floor(r_base x equity / (sl_pips x pip x
    quote->USD at the close)), at least 1; open risk and notional within the caps), then
    pending until the next open. A skipped signal leaves no trace here."""
    pip = p[P_PIP]
    atr_pips = atr / pip
    sl = p[P_K_SL] * atr_pips
    if p[P_MIN_SL_PIPS] > sl:
        sl = p[P_MIN_SL_PIPS]
    sl_pips = round_decimal(sl, 10.0)
    if 0.1 > sl_pips:
        sl_pips = 0.1
    tp_pips = NAN
    if not math.isnan(p[P_K_TP]):
        tp = p[P_K_TP] * atr_pips
        if p[P_MIN_TP_PIPS] > tp:
            tp = p[P_MIN_TP_PIPS]
        tp_pips = round_decimal(tp, 10.0)
    q = 1.0 / c if inv_quote else 1.0
    per_unit_risk = sl_pips * pip * q
    units = math.floor(p[P_R_BASE] * s.equity * 1.0 / per_unit_risk)
    if units < 1:
        return
    risk = units * per_unit_risk
    notional = units * c * q
    eq = s.equity
    if (0.0 + risk > p[P_CAP_STRATEGY_FRAC] * eq * _CAP_SLACK or 0.0 + risk > p[P_CAP_SYMBOL_FRAC] * eq * _CAP_SLACK
            or 0.0 + notional > p[P_MAX_NOTIONAL_USD] * _CAP_SLACK):
        return
    s.pend_side = 1.0 if side > 0 else -1.0
    s.pend_units = float(units)
    s.pend_sl_pips = sl_pips
    s.pend_tp_pips = tp_pips
    s.pend_risk = risk
    s.pend_signal_ts = signal_ts
    s.pend_bar = bar


@njit(cache=True)
def _grown(trades: np.ndarray, n: int) -> np.ndarray:
    """``trades`` with room for row ``n`` (doubled when full)."""
    if n < trades.shape[0]:
        return trades
    out = np.empty((2 * trades.shape[0], trades.shape[1]))
    out[:n] = trades[:n]
    return out


@njit(cache=True)
def simulate(ts: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
             signal: np.ndarray, atr: np.ndarray, cost_pips: np.ndarray, roll: np.ndarray,
             day_end_ts: np.ndarray, week_end_ts: np.ndarray, start: int, end: int,
             p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The desk trading one strategy on one symbol over bars [start, end), then the close-out.

    Inputs per bar i: ``signal`` (int8: +1 LONG, -1 SHORT, 0 none: the strategy's signal at
    the close of bar i), ``atr`` (the ATR its bracket is sized from, price), ``cost_pips``
    (half spread + :func:`side_cost_parts`' slippage), ``roll`` (ROLL_*: the guard's trading-day roll before bar i),
    ``day_end_ts``/``week_end_ts`` (when a day / week drawdown halt decided during bar i
    lifts: the next day / week roll, UTC s). ``p``: the scalars (P_* indices).

    Per bar, in :meth:`deskd.desk.desk.Desk.on_bar`'s order: the day roll (:func:`_roll`);
    the pending market order fills at the open (:func:`_enter`, or a time-stop exit); the
    resting bracket is checked on the bar (:func:`_bracket`); the open position is marked at
    the close (:func:`_mark`); the guard checks a changed equity (:func:`_check`); the time
    stop is decided (filled at the next open); a signal while flat and not halted is sized
    (:func:`_decide`) and fills at the next open. At ``end`` the pending order is cancelled
    and an open position closes at the last close (EOD, :meth:`PaperBroker.close_at_last`).
    HALTED in the state machine is exactly a drawdown halt in force here: the paper broker
    never rejects an order, so no execution error can halt or degrade the desk.

    Returns (trades, results, mark_ts, mark_equity_usd): trades (n, N_TRADE_COLS) float64 rows
    in exit order (T_* columns), results (N_RESULTS,) (R_* indices), and the equity at every
    day roll then at the end (the ledger's DAY and END marks: times and USD)."""
    tf_s = int(p[P_TF_S])
    pip = p[P_PIP]
    price_scale = p[P_PRICE_SCALE]
    inv_quote = p[P_INV_QUOTE] != 0.0
    max_hold = int(p[P_MAX_HOLD_BARS])
    policy = int(p[P_POLICY])

    n_marks = 1 + np.count_nonzero(roll[start:end])
    mark_ts = np.zeros(n_marks, np.int64)
    mark_eq = np.zeros(n_marks)
    nm = 0
    trades = np.empty((256, N_TRADE_COLS))
    nt = 0
    s = np.zeros(1, STATE)[0]
    equity0 = p[P_EQUITY0_USD]
    s.equity = equity0
    s.balance = equity0
    s.peak = equity0
    s.min_equity = equity0
    s.g_peak = equity0
    s.last_checked = equity0
    s.tp_price = NAN

    for i in range(start, end):
        t = ts[i]
        if roll[i] != ROLL_NONE:
            mark_ts[nm] = t
            mark_eq[nm] = s.equity
            nm += 1
            _roll(s, roll[i], t)
        o = open_[i]
        if s.pend_side != 0.0:
            trades = _grown(trades, nt)
            _enter(s, trades[nt], t, o, cost_pips[i], pip, price_scale)
        elif s.exit_pending:
            _exit(s, trades[nt], t, o, cost_pips[i], EXIT_TIME, pip, inv_quote)
            nt += 1
        if s.side != 0.0:
            reason, ref = _bracket(s, o, high[i], low[i], policy)
            if reason != _NO_EXIT:
                _exit(s, trades[nt], t, ref, cost_pips[i], reason, pip, inv_quote)
                nt += 1
        if s.side != 0.0:
            _mark(s, high[i], low[i], close[i], pip, inv_quote)
        if s.equity != s.last_checked:
            s.last_checked = s.equity
            _check(s, day_end_ts[i], week_end_ts[i], p)
        if s.side != 0.0 and not s.exit_pending and s.hold >= max_hold:
            s.exit_pending = True
        if signal[i] != 0 and s.side == 0.0 and s.halt_code == _HALT_NONE:
            _decide(s, i, signal[i], atr[i], close[i], t + tf_s, p, inv_quote)

    if end > start:
        last = end - 1
        if s.side != 0.0:
            _exit(s, trades[nt], ts[last] + tf_s, close[last], cost_pips[last], EXIT_EOD, pip, inv_quote)
            nt += 1
        mark_ts[nm] = ts[last] + tf_s
        mark_eq[nm] = s.equity
        nm += 1
    results = np.empty(N_RESULTS)
    results[R_EQUITY_USD] = s.equity
    results[R_BALANCE_USD] = s.balance
    results[R_MAX_DD_USD] = s.max_dd_usd
    results[R_MAX_DD_FRAC] = s.max_dd_frac
    results[R_MIN_EQUITY_USD] = s.min_equity
    return trades[:nt].copy(), results, mark_ts[:nm].copy(), mark_eq[:nm].copy()
