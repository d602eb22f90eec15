"""The lookahead check deskd runs on its own strategies, for yours: changing the bars after t
never changes a decision taken at or before t.

    from deskd.testing.lookahead import assert_no_lookahead
    assert_no_lookahead(Donchian, bars, {"window": 20})

``bars`` is a DataFrame of one symbol's bars (``open``, ``high``, ``low``, ``close``, in
order; a ``time`` column is not needed). The strategy trades them through a paper desk (the
same Desk a backtest runs), alone; then, for each cut t, every bar after t is replaced by a
randomly shocked copy and the desk runs again. The decisions (signals with what the desk did
with them) at bars <= t must be identical. A strategy that reads anything but the bars it was
given up to now (a future row of a frame, a global it shares with a later bar) fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deskd.adapters.paper import paper_desk
from deskd.configs.models import TIMEFRAME_SECONDS, DeskConfig, StrategiesConfig, StrategySpec
from deskd.core.events import BarClosed, Decision

_T0 = 1_768_003_200  # a Saturday 00:00 UTC: a round start; only differences of times matter


def decisions_of(strategy: type, bars: pd.DataFrame, params: dict[str, Any] | None = None, *,
                 symbol: str = "EURUSD", timeframe: str = "M15", strategy_id: str = "candidate",
                 **spec: Any) -> list[Decision]:
    """Every Decision of ``strategy`` (a Strategy subclass, with ``params``) trading ``bars``
    alone on a paper desk, ``symbol`` on ``timeframe``. ``spec`` takes the config's other
    strategy keys (``stops``, ``max_hold_bars``). Raises ValidationError for bad params."""
    tf = TIMEFRAME_SECONDS[timeframe]
    cfg = DeskConfig.model_validate({"desk": "lookahead", "universe": {"timeframe": timeframe, "symbols": [symbol]}})
    bound = StrategySpec.bound(strategy, params, **spec)
    cfg = cfg.model_copy(update={"strategies": StrategiesConfig.model_construct(root={strategy_id: bound})})
    desk = paper_desk(cfg)
    got: list[Decision] = []
    desk.bus.subscribe(Decision, got.append)
    cols = [bars[c].to_numpy(float) for c in ("open", "high", "low", "close")]
    for i, (o, h, lo, c) in enumerate(zip(*cols)):
        desk.on_bar(BarClosed(symbol, tf, _T0 + i * tf, o, h, lo, c, 0.0))
    return got


def shocked_after(bars: pd.DataFrame, t: int, seed: int = 0, scale: float = 0.01) -> pd.DataFrame:
    """A copy of ``bars`` whose rows after position ``t`` are scaled by random factors
    1 + N(0, ``scale``), one per bar (a bar stays a consistent OHLC)."""
    changed = bars.copy()
    rng = np.random.default_rng(seed)
    shock = 1 + rng.normal(0.0, scale, size=len(bars) - t - 1)
    for col in ("open", "high", "low", "close"):
        changed.loc[changed.index[t + 1:], col] = bars[col].to_numpy(float)[t + 1:] * shock
    return changed


def assert_no_lookahead(strategy: type, bars: pd.DataFrame, params: dict[str, Any] | None = None, *,
                        cuts: Sequence[int] | None = None, seed: int = 0, symbol: str = "EURUSD",
                        timeframe: str = "M15", **spec: Any) -> int:
    """Raise AssertionError when a decision of ``strategy`` at or before a cut depends on a
    bar after it (see the module docstring). ``cuts`` are row positions (default: at a
    quarter, half and three quarters of ``bars``). Returns how many decisions at or before
    the cuts were compared, summed over the cuts (0 says the check saw nothing: give more
    bars or params that trade)."""
    n = len(bars)
    cuts = list(cuts) if cuts is not None else [n // 4, n // 2, 3 * n // 4]
    tf = TIMEFRAME_SECONDS[timeframe]
    base = decisions_of(strategy, bars, params, symbol=symbol, timeframe=timeframe, **spec)
    compared = 0
    for k, t in enumerate(cuts):
        if not 0 <= t < n - 1:
            raise ValueError(f"cut {t}: must be a row position in [0, {n - 2}]")
        cut_ts = _T0 + t * tf
        after = decisions_of(strategy, shocked_after(bars, t, seed + k), params, symbol=symbol,
                             timeframe=timeframe, **spec)
        a = [d for d in base if d.bar_ts <= cut_ts]
        b = [d for d in after if d.bar_ts <= cut_ts]
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise AssertionError(
                f"lookahead: changing the bars after row {t} changed decision {first} at or before it "
                f"({len(a)} decisions before the change, {len(b)} after): "
                f"{a[first] if first < len(a) else None} != {b[first] if first < len(b) else None}")
        compared += len(a)
    return compared
