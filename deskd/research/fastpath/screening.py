"""The fast path's driver: bars as arrays, parameter points, and :func:`screen`.

:func:`screen` runs one strategy on one symbol under one cost scenario for many parameter
points over one data load: each distinct indicator (kind, period, first bar) is computed once
per call and shared by the points that read it, the desk's calendar (trading-day rolls, halt
lift times) and the per-bar costs once per window. Its trades equal the event path's on
:func:`event_config` (the same desk holding only that strategy on that symbol), trade for
trade: ``tests/research/test_fastpath.py`` holds it to that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from deskd.adapters.bars import read_bars
from deskd.adapters.replay import Window
from deskd.configs.models import DeskConfig, StopsConfig, StrategyParams
from deskd.core.events import SIDE_NAME
from deskd.core.money import ACCOUNT_CCY, Instrument
from deskd.research.fastpath import kernels as k
from deskd.research.fastpath.filters import entry_mask, regime_parts
from deskd.research.fastpath.s1 import TrendKernel
from deskd.research.fastpath.s2 import MeanReversionKernel
from deskd.research.fastpath.s3 import BreakoutKernel
from deskd.research.fastpath.strategy import IndicatorKey, Indicators, StrategyKernel, compute_indicator
from deskd.risk.guard import TradingCalendar
from deskd.strategies.api import StrategyContext
from deskd.strategies.indicators import IndicatorBook
from deskd.strategies.regime import RegimeTagger

#: strategy class (``module:Class``) -> its kernel
KERNELS: dict[str, StrategyKernel] = {
    "deskd.strategies.trend:TrendEmaAtrAdx": TrendKernel(),
    "deskd.strategies.mean_reversion:MeanReversionZScore": MeanReversionKernel(),
    "deskd.strategies.breakout:BreakoutAtrCompression": BreakoutKernel(),
}

_POLICIES = {"sl_first": 0, "tp_first": 1, "open_proximity": 2}
_EXIT_REASONS = np.array(["SL", "TP", "TIME", "EOD"], dtype=object)
_POINT_KEYS = {"params", "stops", "max_hold_bars"}


def class_path(strategy_class: type) -> str:
    """``module:Class`` of a strategy class, the key of :data:`KERNELS`."""
    return f"{strategy_class.__module__}:{strategy_class.__qualname__}"


def has_kernel(strategy_class: type) -> bool:
    """Whether the fast path can run ``strategy_class`` (else tune it on the event path)."""
    return class_path(strategy_class) in KERNELS


# -- bars ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BarArrays:
    """One symbol's bars in file order: ``ts`` int64 UTC epoch seconds of each bar's open,
    ``open``/``high``/``low``/``close`` float64 prices (quote currency), shape (n,) each."""

    symbol: str
    timeframe_s: int
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


def load_bars(cfg: DeskConfig, symbol: str) -> BarArrays:
    """``symbol``'s bar file of ``cfg`` (data.files, read in data.timezone_of(symbol) at the
    universe's timeframe) through deskd's own reader, so validation and timezones are the
    event path's. Raises KeyError for a symbol without a file, BarFileError for a bad file."""
    if symbol not in cfg.data.files:
        raise KeyError(f"no bar file for {symbol}: add data.files.{symbol} to the config")
    chunks = list(read_bars(cfg.data.files[symbol], cfg.data.timezone_of(symbol), cfg.universe.timeframe_s))
    cat = lambda name: np.ascontiguousarray(np.concatenate([getattr(c, name) for c in chunks]))  # noqa: E731
    return BarArrays(symbol, cfg.universe.timeframe_s, cat("ts").astype(np.int64), cat("open"), cat("high"),
                     cat("low"), cat("close"))


# -- parameter points -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """A parameter point, validated: the strategy's ``params`` (its Params model), ``stops``
    and the time stop ``max_hold_bars`` (bars, the entry bar counting as 1)."""

    params: StrategyParams
    stops: StopsConfig
    max_hold_bars: int

    def as_dict(self) -> dict[str, Any]:
        """``{"params": {...}, "stops": {...}, "max_hold_bars": n}``, every value filled in."""
        return {"params": self.params.model_dump(mode="json"), "stops": self.stops.model_dump(mode="json"),
                "max_hold_bars": self.max_hold_bars}


def resolve_point(cfg: DeskConfig, strategy_id: str, point: Mapping[str, Any]) -> Point:
    """``point`` (``{"params": {...}, "stops": {...}, "max_hold_bars": n}``, each optional)
    over the config's own params, stops and time stop of ``strategy_id``, validated by the
    strategy's Params model and StopsConfig. Raises KeyError for an unknown strategy id,
    ValueError for an unknown key or a bad value, one line naming each (``params: ema_fast
    must be shorter than ema_slow``, ``stops.k_sl: ...``)."""
    spec = cfg.strategies[strategy_id]
    unknown = set(point) - _POINT_KEYS
    if unknown:
        raise ValueError(f"point keys {sorted(unknown)} unknown; a point has {sorted(_POINT_KEYS)}")
    params = _validated(spec.strategy_class.Params, "params",
                        {**spec.validated_params.model_dump(), **dict(point.get("params") or {})})
    stops = _validated(StopsConfig, "stops", {**spec.effective_stops.model_dump(), **dict(point.get("stops") or {})})
    hold = point.get("max_hold_bars") or spec.max_hold_bars or cfg.risk.max_hold_bars
    if not isinstance(hold, int) or hold < 1:
        raise ValueError(f"max_hold_bars must be an integer >= 1, got {hold!r}")
    return Point(params, stops, hold)


def _validated(model: Any, where: str, data: dict[str, Any]) -> Any:
    """``model`` validated from ``data``; a ValidationError becomes one ValueError line per
    problem, each naming its key (``params.ema_fast: ...``)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(x) for x in (where, *err["loc"]))
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(lines)) from None


def event_config(cfg: DeskConfig, strategy_id: str, symbol: str, point: Mapping[str, Any] | None = None
                 ) -> DeskConfig:
    """The desk config whose event-path run the fast path reproduces: ``cfg`` holding only
    ``strategy_id`` (enabled, with ``point`` applied) on only ``symbol``. For the tuner's
    stage 2 and the contract test. Raises KeyError, ValueError as :func:`resolve_point`."""
    p = resolve_point(cfg, strategy_id, point or {})
    d = cfg.model_dump(mode="json")
    spec = d["strategies"][strategy_id]
    spec.update(enabled=True, symbols=None, params=p.params.model_dump(mode="json"),
                stops=p.stops.model_dump(mode="json"), max_hold_bars=p.max_hold_bars)
    d["strategies"] = {strategy_id: spec}
    d["risk"]["priority"] = [s for s in d["risk"]["priority"] if s == strategy_id]
    d["universe"]["symbols"] = [symbol]
    d["data"]["files"] = {s: f for s, f in d["data"]["files"].items() if s == symbol}
    d["data"]["timezones"] = {s: z for s, z in d["data"].get("timezones", {}).items() if s == symbol}
    d["costs"]["spread_pips"] = {s: v for s, v in d["costs"]["spread_pips"].items() if s == symbol}
    return DeskConfig.model_validate(d)


def warmup_bars(cfg: DeskConfig, strategy_id: str, symbol: str, point: Point) -> int:
    """The bars a window's warm-up reads before its first bar for ``point``, as the event path
    counts them (:func:`deskd.research.backtest.warmup_bars_of`: the strategy's own warm-up,
    the regime tagger's ATR period + volatility z-score window, and its entry filters'
    indicators, :meth:`deskd.configs.models.FiltersConfig.warmup_bars`)."""
    spec = cfg.strategies[strategy_id]
    rg = cfg.regime
    book = IndicatorBook()
    regime = RegimeTagger(book, rg.atr_period, rg.vol_z_window, rg.vol_z_low, rg.vol_z_high, rg.spike_tr_atr_th)
    ctx = StrategyContext(strategy_id, symbol, Instrument.parse(symbol).pip_size, book, regime, point.stops)
    return max(spec.strategy_class(ctx, point.params).warmup_bars(), rg.atr_period + rg.vol_z_window,
               spec.filters.warmup_bars() if spec.filters is not None else 0)


# -- the desk's calendar --------------------------------------------------------------------------

@dataclass(frozen=True)
class Calendar:
    """The drawdown guard's trading-day rolls over bars [start, end) (see
    :func:`roll_schedule`): ``roll`` (int8, kernels.ROLL_*), ``day_end_ts``/``week_end_ts``
    (int64 UTC s: when a day / week halt decided at that bar lifts)."""

    roll: np.ndarray
    day_end_ts: np.ndarray
    week_end_ts: np.ndarray


def roll_schedule(cfg: DeskConfig, ts: np.ndarray, start: int, end: int) -> Calendar:
    """The rolls of :class:`deskd.risk.guard.DrawdownGuard` for a desk whose first bar is
    ``start``: it rolls at its first bar (a new week), then at the first bar at or after the
    next day's start (risk.day_roll_time in risk.day_roll_timezone), a new week when the
    trading day's ISO week changed. Computed with the guard's own TradingCalendar, once per
    trading day (the roll times do not depend on trading). Shapes (len(ts),)."""
    cal = TradingCalendar(cfg.risk.day_roll_time, cfg.risk.day_roll_timezone)
    n = len(ts)
    roll = np.zeros(n, np.int8)
    day_end = np.zeros(n, np.int64)
    week_end = np.zeros(n, np.int64)
    i = start
    week = None
    while i < end:
        t = int(ts[i])
        day = cal.trading_day(t)
        wk = cal.week_of(day)
        roll[i] = k.ROLL_WEEK if wk != week else k.ROLL_DAY
        week = wk
        nxt = cal.day_start_ts(day + timedelta(days=1))
        j = min(max(int(np.searchsorted(ts, nxt, side="left")), i + 1), end)
        day_end[i:j] = nxt
        week_end[i:j] = cal.next_week_roll_ts(t)
        i = j
    return Calendar(roll, day_end, week_end)


# -- runs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FastRun:
    """One point's run. ``trades``: one row per round trip in exit order, every column of
    trades.csv by its name (times as UTC epoch s: ``signal_ts``, ``fill_ts``, ``exit_ts``;
    ``side`` LONG/SHORT; ``tp_price`` NaN without a target; values unrounded), and the
    reference prices ``entry_ref_price``/``exit_ref_price`` (before costs). Money in USD, drawdowns marked at
    bar closes and fills as the ledger marks them; ``bars`` the bars traded;
    ``mark_ts``/``mark_equity_usd`` the equity at each trading-day roll and at the end (the
    ledger's DAY and END rows)."""

    point: dict[str, Any]
    trades: pd.DataFrame
    final_equity_usd: float
    max_dd_usd: float
    max_dd_frac: float
    min_equity_usd: float
    bars: int
    mark_ts: np.ndarray = field(repr=False)
    mark_equity_usd: np.ndarray = field(repr=False)


def _quote_inverted(inst: Instrument) -> bool:
    if inst.quote == ACCOUNT_CCY:
        return False
    if inst.base == ACCOUNT_CCY:
        return True
    raise ValueError(f"{inst.symbol}: the fast path runs one symbol, and {inst.quote} converts to "
                     f"{ACCOUNT_CCY} only through another pair; run it on the event path")


def _bounds(bars: BarArrays, window: Window | None) -> tuple[int, int]:
    if window is None:
        return 0, len(bars)
    ts = bars.ts
    start = 0 if window.start_ts is None else int(np.searchsorted(ts, window.start_ts, side="left"))
    end = len(ts) if window.end_ts is None else int(np.searchsorted(ts, window.end_ts, side="left"))
    return start, max(start, end)


_VOLS = ("UNKNOWN", "LOW", "MID", "HIGH")
_TAGS = np.array([f"VOL={vol}|SPIKE={spike}" for vol in _VOLS for spike in (0, 1)], dtype=object)


def regime_tags(cfg: DeskConfig, bars: BarArrays, atr: np.ndarray, atr_pct_z: np.ndarray, at: np.ndarray,
                w0: int) -> np.ndarray:
    """The regime tag (``VOL=MID|SPIKE=0``) at the close of each bar index in ``at``, as
    :attr:`deskd.strategies.regime.RegimeTagger.tag` reads it there: VOL from the z-score of
    ATR(regime.atr_period)% (``atr_pct_z``, UNKNOWN while undefined), SPIKE when the bar's true
    range exceeds spike_tr_atr_th x the ATR before it (``atr``: ATR(regime.atr_period); both
    fed from bar ``w0``). Shape (len(at),), str."""
    vol, spike = regime_parts(cfg, bars.high, bars.low, bars.close, atr, atr_pct_z, at, w0)
    return _TAGS[2 * vol + spike.astype(np.int64)]


def _trades_frame(rows: np.ndarray, scenario: str, symbol: str, strategy_id: str, pip: float,
                  extra: dict[str, Any]) -> pd.DataFrame:
    """trades.csv's columns from the kernel's rows, with the ledger's derived figures
    (:meth:`deskd.desk.ledger.Ledger._close`: gross, cost and net pips, R multiple) and
    ``extra`` (regime, reason_codes, client_order_id, the cost split per side)."""
    side = rows[:, k.T_SIDE]
    risk = rows[:, k.T_RISK_USD]
    pnl = rows[:, k.T_PNL_USD]
    with np.errstate(divide="ignore", invalid="ignore"):
        r_multiple = np.where(risk > 0, pnl / risk, 0.0)
    n = len(rows)
    return pd.DataFrame({
        "trade_id": np.arange(1, n + 1, dtype=np.int64),
        "scenario": scenario,
        "symbol": symbol,
        "strategy_id": strategy_id,
        "side": np.where(side > 0, SIDE_NAME[1], SIDE_NAME[-1]),
        "units": rows[:, k.T_UNITS].astype(np.int64),
        "signal_ts": rows[:, k.T_SIGNAL_TS].astype(np.int64),
        "fill_ts": rows[:, k.T_FILL_TS].astype(np.int64),
        "entry_price": rows[:, k.T_ENTRY_PRICE],
        "exit_ts": rows[:, k.T_EXIT_TS].astype(np.int64),
        "exit_price": rows[:, k.T_EXIT_PRICE],
        "exit_reason": _EXIT_REASONS[rows[:, k.T_EXIT_REASON].astype(np.int64)],
        "sl_price": rows[:, k.T_SL_PRICE],
        "tp_price": rows[:, k.T_TP_PRICE],
        "gross_pips": side * (rows[:, k.T_EXIT_REF] - rows[:, k.T_ENTRY_REF]) / pip,
        "cost_pips": rows[:, k.T_ENTRY_COST_PIPS] + rows[:, k.T_EXIT_COST_PIPS],
        "pnl_pips": side * (rows[:, k.T_EXIT_PRICE] - rows[:, k.T_ENTRY_PRICE]) / pip,
        "pnl_usd": pnl,
        "risk_usd": risk,
        "r_multiple": r_multiple,
        "mae_pips": rows[:, k.T_MAE_PIPS],
        "mfe_pips": rows[:, k.T_MFE_PIPS],
        "hold_bars": rows[:, k.T_HOLD_BARS].astype(np.int64),
        **extra,
        "entry_ref_price": rows[:, k.T_ENTRY_REF],
        "exit_ref_price": rows[:, k.T_EXIT_REF],
    })


def screen(cfg: DeskConfig, strategy_id: str, scenario: str, points: Iterable[Mapping[str, Any]],
           bars: BarArrays, window: Window | None = None) -> list[FastRun]:
    """Run ``strategy_id`` on ``bars`` (one symbol, :func:`load_bars`) under cost
    ``scenario`` once per point of ``points`` (see :func:`resolve_point`), as the event path
    runs :func:`event_config` of that point: the whole file, or ``window`` (its bars trade,
    its ``warmup_bars`` bars before it feed the indicators first, None meaning the
    strategy's own warm-up as :func:`warmup_bars` counts it; end-of-data close at its last
    bar). Returns one :class:`FastRun` per point, in order.

    Raises KeyError (unknown strategy id or scenario), ValueError (a point that does not
    validate, naming its index; a strategy without a kernel; a symbol whose quote currency
    converts to USD only through another pair)."""
    spec = cfg.strategies[strategy_id]
    kernel = KERNELS.get(class_path(spec.strategy_class))
    if kernel is None:
        raise ValueError(f"{strategy_id}: no fast-path kernel for {class_path(spec.strategy_class)}; "
                         f"run it on the event path")
    scn = cfg.costs.scenarios[scenario]
    resolved: list[Point] = []
    for n, pt in enumerate(points):
        try:
            resolved.append(resolve_point(cfg, strategy_id, pt))
        except ValueError as e:
            raise ValueError(f"point {n}: {e}") from e
    sym = bars.symbol
    inst = Instrument.parse(sym)
    inverted = _quote_inverted(inst)
    start, end = _bounds(bars, window)
    cal = roll_schedule(cfg, bars.ts, start, end)
    h, lo, c = bars.high, bars.low, bars.close

    cache: dict[IndicatorKey, np.ndarray] = {}

    def indicators(w0: int) -> Indicators:
        def get(key: IndicatorKey) -> np.ndarray:
            full = (*key, w0)
            arr = cache.get(full)
            if arr is None:
                arr = cache[full] = compute_indicator(key, h, lo, c, w0, end, get)
            return arr
        return get

    costs = cfg.costs
    slip = costs.slippage
    half_spread = costs.spread_pips.get(sym, costs.default_spread_pips) * scn.spread_mult / 2.0
    spike_mult = slip.spike_mult if scn.spikes else 1.0
    cost_by_w0: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    regime_by_w0: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    filters = spec.filters if spec.filters is not None and spec.filters.active else None
    mask_by_w0: dict[int, np.ndarray] = {}

    risk = cfg.risk
    base = np.zeros(k.N_PARAMS)
    base[k.P_TF_S] = bars.timeframe_s
    base[k.P_PIP] = inst.pip_size
    base[k.P_PRICE_SCALE] = 10.0 ** inst.price_decimals
    base[k.P_INV_QUOTE] = 1.0 if inverted else 0.0
    base[k.P_R_BASE] = risk.r_base
    base[k.P_CAP_STRATEGY_FRAC] = risk.max_open_risk_frac_per_strategy
    base[k.P_CAP_SYMBOL_FRAC] = risk.max_open_risk_frac_per_symbol
    base[k.P_MAX_NOTIONAL_USD] = risk.max_notional_usd
    base[k.P_DD_DAY_FRAC] = risk.dd_day_limit_frac
    base[k.P_DD_WEEK_FRAC] = risk.dd_week_limit_frac
    base[k.P_MAX_DD_FRAC] = math.nan if risk.max_drawdown_frac is None else risk.max_drawdown_frac
    base[k.P_EQUITY0_USD] = cfg.account.starting_equity_usd
    base[k.P_POLICY] = _POLICIES[cfg.bar_contract.intrabar_policy]

    # points sharing indicators run one after another; an array is released after its last
    # point, so memory holds what the current group reads, not every array of the grid
    first_bar = [0 if window is None else max(0, start - (
        window.warmup_bars if window.warmup_bars is not None else warmup_bars(cfg, strategy_id, sym, pt)))
        for pt in resolved]
    needs = [sorted((*key, w0) for key in kernel.indicators(pt.params))
             for pt, w0 in zip(resolved, first_bar)]
    order = sorted(range(len(resolved)), key=lambda n: (first_bar[n], needs[n]))
    last_use = {key: pos for pos, n in enumerate(order) for key in needs[n]}

    signal = np.zeros(len(bars), np.int8)
    runs: list[FastRun | None] = [None] * len(resolved)
    for pos, n in enumerate(order):
        point, w0 = resolved[n], first_bar[n]
        get = indicators(w0)
        parts = cost_by_w0.get(w0)
        if parts is None:
            slippage, spike = k.side_cost_parts(
                h, lo, c, get(("atr", slip.atr_period)), w0, end, slip.slip_base_pips, slip.slip_k_pips,
                scn.slippage_mult, scn.slippage_add_pips, slip.spike_tr_atr_th, spike_mult)
            parts = cost_by_w0[w0] = (half_spread + slippage, slippage, spike)  # cost = spread + slippage
        cost = parts[0]
        sig = kernel.signals(point.params, inst.pip_size, get, start, end, signal)
        if filters is not None:  # a signal the strategy's entry filters block is not traded
            mask = mask_by_w0.get(w0)
            if mask is None:
                mask = mask_by_w0[w0] = entry_mask(cfg, filters, bars.ts, h, lo, c, bars.timeframe_s, get, w0,
                                                   start, end)
            signal[start:end] *= mask
        regime = regime_by_w0.get(w0)
        if regime is None:
            rg = cfg.regime
            regime = regime_by_w0[w0] = (get(("atr", rg.atr_period)),
                                         get(("atr_pct_z", rg.atr_period, rg.vol_z_window)))
        p = base.copy()
        st = point.stops
        p[k.P_K_SL] = st.k_sl
        p[k.P_MIN_SL_PIPS] = st.min_sl_pips
        p[k.P_K_TP] = math.nan if st.k_tp is None else st.k_tp
        p[k.P_MIN_TP_PIPS] = st.min_tp_pips
        p[k.P_MAX_HOLD_BARS] = point.max_hold_bars
        rows, res, mark_ts, mark_eq = k.simulate(bars.ts, bars.open, h, lo, c, signal, sig.atr, cost, cal.roll,
                                                 cal.day_end_ts, cal.week_end_ts, start, end, p)
        at = rows[:, k.T_SIGNAL_BAR].astype(np.int64)
        entry_at = np.searchsorted(bars.ts, rows[:, k.T_FILL_TS].astype(np.int64))
        exit_at = np.where(rows[:, k.T_EXIT_REASON] == k.EXIT_EOD, end - 1,  # the last bar's ratio
                           np.searchsorted(bars.ts, rows[:, k.T_EXIT_TS].astype(np.int64)))
        extra = {"regime": regime_tags(cfg, bars, regime[0], regime[1], at, w0),
                 "reason_codes": [f"{sig.score_name}={v:.2f}" for v in sig.score[at].tolist()],
                 "client_order_id": [f"{cfg.desk}-{scenario}-{sym}-{ts}-ENTRY" for ts in bars.ts[at].tolist()],
                 "entry_spread_pips": np.full(len(rows), half_spread), "entry_slippage_pips": parts[1][entry_at],
                 "exit_spread_pips": np.full(len(rows), half_spread), "exit_slippage_pips": parts[1][exit_at],
                 "entry_spike": parts[2][entry_at] > 0, "exit_spike": parts[2][exit_at] > 0}
        equity = float(res[k.R_EQUITY_USD])
        runs[n] = FastRun(point.as_dict(), _trades_frame(rows, scenario, sym, strategy_id, inst.pip_size, extra),
                          equity, float(res[k.R_MAX_DD_USD]), float(res[k.R_MAX_DD_FRAC]),
                          min(float(res[k.R_MIN_EQUITY_USD]), equity), end - start, mark_ts, mark_eq)
        for key in [key for key in cache if last_use.get(key, -1) <= pos]:
            del cache[key]  # no later point reads it (an ADX's ATR went with the ADX's first use)
    return [r for r in runs if r is not None]

