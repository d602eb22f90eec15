"""Incremental indicators: O(1) state updates per closed bar, the same objects live and in replay.

Each indicator exposes ``value`` (NaN until defined) and an ``update`` taking the newest
observation. Bar-based ones (ATR, ADX, prior range) take ``update(high, low, close)``.
The vectorised pandas versions used as oracles live in ``tests/strategies/oracles.py``.

Conventions (they decide the warm-up and must match the oracles):

* EMA(n): alpha = 2 / (n + 1), seeded with the simple mean of the first n inputs (defined
  from the n-th input on), then ``ema += alpha * (x - ema)``.
* True range needs the previous close, so the first bar has none. Wilder's ATR(n) is the mean
  of the first n true ranges, then ``atr = (atr * (n - 1) + tr) / n`` (Wilder 1978, ch. 2;
  the seeding TA-Lib uses). Units: price.
* ADX(n), Wilder 1978 ch. 4: +DM = up-move when it beats the down-move and is positive, -DM
  the mirror; TR, +DM and -DM smoothed like the ATR; DI = 100 x smoothed DM / smoothed TR;
  DX = 100 x |DI+ - DI-| / (DI+ + DI-) (0 when both are 0); ADX = mean of the first n DX,
  then Wilder-smoothed. Defined after 2n bars.
* Rolling z-score over w values including the newest, population std (ddof=0); NaN while
  the window is short or flat (std <= 1e-9 x the window's RMS).
* Rolling least-squares slope of the last w values against 0..w-1, in input units per step.
* Prior range over w bars: the highest high / lowest low of the w bars BEFORE the newest one
  (``high.shift(1).rolling(w).max()``), via monotonic deques.
"""

from __future__ import annotations

import math
from collections import deque

NAN = math.nan
_sqrt = math.sqrt
# z-score flatness: std <= 1e-9 x RMS  <=>  var <= 1e-18 x mean square
_FLAT_VAR = 1e-18
# below this variance / mean square the running sums are recomputed exactly from the window
_EXACT_BELOW = 1e-4
# Running sums are recomputed exactly from the ring buffer every this many windows, so
# floating-point drift cannot build up over millions of bars.
_RESYNC_WINDOWS = 64


def _check_period(period: int, name: str = "period") -> None:
    if not isinstance(period, int) or period < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {period!r}")


def true_range(h: float, l: float, prev_close: float) -> float:
    """Wilder's true range: max(high - low, |high - prev close|, |low - prev close|). Price."""
    return max(h - l, abs(h - prev_close), abs(l - prev_close))


class EMA:
    """Exponential moving average (see module conventions). Units: those of the input."""

    __slots__ = ("period", "alpha", "value", "_n", "_sum")

    def __init__(self, period: int):
        _check_period(period)
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self.value = NAN
        self._n = 0
        self._sum = 0.0

    def update(self, x: float) -> None:
        if self._n >= self.period:
            self.value += self.alpha * (x - self.value)
            return
        self._n += 1
        self._sum += x
        if self._n == self.period:
            self.value = self._sum / self.period

    def update_hlc(self, h: float, l: float, c: float) -> None:
        """EMA of the close."""
        if self._n >= self.period:
            self.value += self.alpha * (c - self.value)
        else:
            self.update(c)


class ATR:
    """Wilder's Average True Range (Wilder 1978, ch. 2). Units: price.

    Also exposes ``tr`` (true range of the newest bar, NaN on the first) and ``prev_value``
    (the ATR before the newest bar), which the cost model and the SPIKE tag need.
    """

    __slots__ = ("period", "value", "prev_value", "tr", "prev_close", "_n", "_sum")

    def __init__(self, period: int):
        _check_period(period)
        self.period = period
        self.value = NAN
        self.prev_value = NAN
        self.tr = NAN
        self.prev_close = NAN
        self._n = 0
        self._sum = 0.0

    def update_hlc(self, h: float, l: float, c: float) -> None:
        pc = self.prev_close
        self.prev_close = c
        if pc != pc:  # first bar: no previous close, no true range
            return
        # true_range(h, l, pc), inlined: this runs on every bar
        tr = h - l
        a = h - pc if h > pc else pc - h
        if a > tr:
            tr = a
        a = pc - l if l < pc else l - pc
        if a > tr:
            tr = a
        self.tr = tr
        v = self.value
        self.prev_value = v
        if self._n >= self.period:
            self.value = (v * (self.period - 1) + tr) / self.period
            return
        self._n += 1
        self._sum += tr
        if self._n == self.period:
            self.value = self._sum / self.period


class ADX:
    """Wilder's Average Directional Index (Wilder 1978, ch. 4), 0..100. See module conventions.

    Wilder's smoothed true range, seeded the same way, IS the ATR: the ADX reads the true range
    and smoothed TR from an ATR(period). Given ``atr`` (shared, and updated before this ADX on
    every bar by its owner) it uses that one; otherwise it keeps and updates its own.
    """

    __slots__ = ("period", "value", "plus_di", "minus_di", "atr", "_own_atr",
                 "_ph", "_pl", "_n", "_pdm", "_mdm", "_ndx", "_dxsum")

    def __init__(self, period: int, atr: ATR | None = None):
        _check_period(period)
        if atr is not None and atr.period != period:
            raise ValueError(f"ADX({period}) cannot share ATR({atr.period})")
        self._own_atr = atr is None
        self.atr = ATR(period) if atr is None else atr
        self.period = period
        self.value = NAN
        self.plus_di = NAN
        self.minus_di = NAN
        self._ph = NAN
        self._pl = NAN
        self._n = 0
        self._pdm = 0.0
        self._mdm = 0.0
        self._ndx = 0
        self._dxsum = 0.0

    def update_hlc(self, h: float, l: float, c: float) -> None:
        atr = self.atr
        if self._own_atr:
            atr.update_hlc(h, l, c)
        ph = self._ph
        pl = self._pl
        self._ph = h
        self._pl = l
        if ph != ph:  # first bar: no previous bar to move from
            return
        up = h - ph
        dn = pl - l
        pdm = up if (up > dn and up > 0.0) else 0.0
        mdm = dn if (dn > up and dn > 0.0) else 0.0
        n = self.period
        if self._n >= n:
            k = n - 1
            s_p = self._pdm = (self._pdm * k + pdm) / n
            s_m = self._mdm = (self._mdm * k + mdm) / n
        else:
            self._n += 1
            self._pdm += pdm
            self._mdm += mdm
            if self._n < n:
                return
            s_p = self._pdm = self._pdm / n
            s_m = self._mdm = self._mdm / n
        s_tr = atr.value
        if s_tr > 0.0:
            pdi = 100.0 * s_p / s_tr
            mdi = 100.0 * s_m / s_tr
        else:
            pdi = mdi = 0.0
        self.plus_di = pdi
        self.minus_di = mdi
        tot = pdi + mdi
        dx = 100.0 * abs(pdi - mdi) / tot if tot > 0.0 else 0.0
        if self._ndx >= n:
            self.value = (self.value * (n - 1) + dx) / n
            return
        self._ndx += 1
        self._dxsum += dx
        if self._ndx == n:
            self.value = self._dxsum / n


class RollingZScore:
    """z-score of the newest value against the last ``window`` values (it included), population
    std, from running sums of x and x^2 (O(1) per update). Where the window's variance is
    below 1e-4 x its mean square (std under 1 % of the RMS: running sums would lose digits)
    mean and variance are recomputed exactly, two-pass, from the window; a window whose std is
    at most 1e-9 x its RMS is flat and has no z-score (NaN). The sums are also recomputed
    exactly every 64 windows, so rounding cannot drift."""

    __slots__ = ("window", "value", "_buf", "_i", "_warm", "_left", "_s1", "_s2", "_inv_w")

    def __init__(self, window: int):
        _check_period(window, "window")
        if window < 2:
            raise ValueError("window must be >= 2 for a z-score")
        self.window = window
        self.value = NAN
        self._buf = [0.0] * window  # zeros: the running sums are exact during warm-up
        self._i = 0
        self._warm = window          # values still missing from the first full window
        self._left = _RESYNC_WINDOWS * window  # updates until the next exact recompute
        self._s1 = 0.0
        self._s2 = 0.0
        self._inv_w = 1.0 / window

    def update(self, x: float) -> None:
        buf = self._buf
        i = self._i
        old = buf[i]
        buf[i] = x
        i += 1
        self._i = 0 if i == self.window else i
        s1 = self._s1 + (x - old)
        s2 = self._s2 + (x * x - old * old)
        if self._warm:
            self._warm -= 1
            if self._warm:
                self._s1 = s1
                self._s2 = s2
                return
        inv_w = self._inv_w
        mean = s1 * inv_w
        msq = s2 * inv_w
        var = msq - mean * mean
        left = self._left - 1
        if var <= _EXACT_BELOW * msq or not left:
            s1, s2, mean, var = self._exact()
            msq = s2 * inv_w
            left = _RESYNC_WINDOWS * self.window
        self._left = left
        self._s1 = s1
        self._s2 = s2
        self.value = NAN if var <= _FLAT_VAR * msq else (x - mean) / _sqrt(var)

    def _exact(self) -> tuple[float, float, float, float]:
        buf = self._buf
        w = self.window
        s1 = math.fsum(buf)
        mean = s1 / w
        var = math.fsum((v - mean) * (v - mean) for v in buf) / w
        return s1, math.fsum(v * v for v in buf), mean, var


class AtrPctZScore(RollingZScore):
    """z-score of ATR% (= ATR / close x 100) over ``window`` bars, fed by a shared ATR that is
    updated before it each bar; NaN until the ATR and the window are defined. Volatility
    compression for S3, the VOL regime tag."""

    __slots__ = ("atr",)

    def __init__(self, atr: ATR, window: int):
        super().__init__(window)
        self.atr = atr

    def update_hlc(self, h: float, l: float, c: float) -> None:
        a = self.atr.value
        if a == a:
            self.update(a / c * 100.0)


class RollingSlope:
    """Least-squares slope of the last ``window`` values against x = 0..window-1, in input
    units per step (standard OLS: (n Sxy - Sx Sy) / (n Sxx - Sx^2)). Running sums in O(1)."""

    __slots__ = ("window", "value", "_buf", "_i", "_n", "_sy", "_sxy", "_den", "_sx", "_since")

    def __init__(self, window: int):
        _check_period(window, "window")
        if window < 2:
            raise ValueError("window must be >= 2 for a slope")
        self.window = window
        self.value = NAN
        self._buf = [0.0] * window
        self._i = 0
        self._n = 0
        self._sy = 0.0
        self._sxy = 0.0
        n = window
        self._sx = n * (n - 1) / 2.0
        self._den = n * ((n - 1) * n * (2 * n - 1) / 6.0) - self._sx * self._sx
        self._since = 0

    def update(self, y: float) -> None:
        w = self.window
        buf = self._buf
        i = self._i
        if self._n < w:
            self._sxy += self._n * y
            self._sy += y
            self._n += 1
        else:
            old = buf[i]
            # drop x=0 (old), shift every x down by one, append y at x = w-1
            self._sxy += -(self._sy - old) + (w - 1) * y
            self._sy += y - old
            self._since += 1
        buf[i] = y
        self._i = i + 1 if i + 1 < w else 0
        if self._n < w:
            return
        if self._since >= _RESYNC_WINDOWS * w:
            self._resync()
        self.value = (w * self._sxy - self._sx * self._sy) / self._den

    def _resync(self) -> None:
        w, buf, start = self.window, self._buf, self._i  # oldest value sits at _i
        ordered = [buf[(start + k) % w] for k in range(w)]
        self._sy = math.fsum(ordered)
        self._sxy = math.fsum(k * v for k, v in enumerate(ordered))
        self._since = 0


class PriorRange:
    """Highest high and lowest low of the ``window`` bars BEFORE the newest one (breakout
    levels), ``high`` and ``low``, NaN until ``window`` bars precede. Units: price.

    Two monotonic deques of bar indices (Lemire 2006, "Streaming maximum-minimum filter"):
    O(1) amortised per bar. Indices advance by one per bar, so at most one expires per bar.
    """

    __slots__ = ("window", "high", "low", "_hi_i", "_hi_v", "_lo_i", "_lo_v", "_i")

    def __init__(self, window: int):
        _check_period(window, "window")
        self.window = window
        self.high = NAN
        self.low = NAN
        self._hi_i: deque[int] = deque()
        self._hi_v: deque[float] = deque()
        self._lo_i: deque[int] = deque()
        self._lo_v: deque[float] = deque()
        self._i = 0

    def update_hlc(self, h: float, l: float, c: float) -> None:
        i = self._i
        self._i = i + 1
        hi_i, hi_v, lo_i, lo_v = self._hi_i, self._hi_v, self._lo_i, self._lo_v
        lo = i - self.window
        if lo >= 0:  # the levels of bars i-window .. i-1
            if hi_i[0] < lo:
                hi_i.popleft()
                hi_v.popleft()
            if lo_i[0] < lo:
                lo_i.popleft()
                lo_v.popleft()
            self.high = hi_v[0]
            self.low = lo_v[0]
        while hi_v and hi_v[-1] <= h:
            hi_v.pop()
            hi_i.pop()
        hi_i.append(i)
        hi_v.append(h)
        while lo_v and lo_v[-1] >= l:
            lo_v.pop()
            lo_i.pop()
        lo_i.append(i)
        lo_v.append(l)


class IndicatorBook:
    """The bar-driven indicators of one symbol, shared by every strategy that asks for the
    same one (``book.atr(14)`` twice returns the same object). ``update`` runs each once per
    bar, in the order they were first asked for."""

    def __init__(self) -> None:
        self._by_key: dict[tuple, object] = {}
        self._updaters: list = []

    def _get(self, key: tuple, factory):
        ind = self._by_key.get(key)
        if ind is None:
            ind = self._by_key[key] = factory()
            self._updaters.append(ind.update_hlc)
        return ind

    def ema(self, period: int) -> EMA:
        return self._get(("ema", period), lambda: EMA(period))

    def atr(self, period: int) -> ATR:
        return self._get(("atr", period), lambda: ATR(period))

    def adx(self, period: int) -> ADX:
        """ADX(period), sharing the book's ATR(period) (registered first, so updated first)."""
        return self._get(("adx", period), lambda: ADX(period, self.atr(period)))

    def atr_pct_z(self, atr_period: int, window: int) -> AtrPctZScore:
        """z-score of ATR(atr_period)% over ``window`` bars, sharing the book's ATR."""
        return self._get(("atr_pct_z", atr_period, window),
                         lambda: AtrPctZScore(self.atr(atr_period), window))

    def prior_range(self, window: int) -> PriorRange:
        return self._get(("prior_range", window), lambda: PriorRange(window))

    def __len__(self) -> int:
        return len(self._updaters)

    def update(self, h: float, l: float, c: float) -> None:
        for f in self._updaters:
            f(h, l, c)
