"""Strategy health: is each strategy still trading like itself?

Per strategy, over its last ``window_trades`` closed trades (``health`` in the config):
win rate, average P&L (USD), and expectancy in R (mean R-multiple, R = P&L / planned risk).
The window is compared with a reference profile - the strategy's row of a backtest's
report.json (``reference_report``, scenario ``reference_scenario``), or, when none is given,
the strategy's own closed trades before the window - by two z-scores:

* z_R  = (mean R of the window - mean R of the profile) / (sd R of the profile / sqrt(n))
* z_WR = (win rate of the window - win rate of the profile) / sqrt(p (1 - p) / n)

(n the window's trades, p the profile's win rate: the standard errors of a mean and of a
proportion.) The lower of the two decides: WEAKENING when it is <= -weakening_z (default
1.0), OUT_OF_PROFILE when either is <= -out_of_profile_z or >= +out_of_profile_z (default
2.0; a strategy far better than its profile is as suspect as one far worse). Fewer than
``min_trades`` in the window, or no profile with at least ``min_trades`` trades: OK, with
the reason given.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from deskd.configs.models import HealthConfig
from deskd.core.bus import Bus
from deskd.core.events import PositionClosed
from deskd.core.text import shown

OK, WEAKENING, OUT_OF_PROFILE = "OK", "WEAKENING", "OUT_OF_PROFILE"
STATUSES = (OK, WEAKENING, OUT_OF_PROFILE)


@dataclass(frozen=True)
class Profile:
    """What a strategy's trades look like: count, win rate, mean and sd of R."""

    trades: int
    win_rate: float
    mean_r: float
    sd_r: float
    source: str


def profile_of(r_multiples: list[float], source: str) -> Profile | None:
    """The profile of a list of R-multiples (None for fewer than two)."""
    if len(r_multiples) < 2:
        return None
    wins = sum(1 for r in r_multiples if r > 0)
    return Profile(len(r_multiples), wins / len(r_multiples), statistics.fmean(r_multiples),
                   statistics.stdev(r_multiples), source)


class _ProfileRow(BaseModel):
    """The fields of a report.json ``by_strategy`` row a profile reads (others are ignored)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    trades: int = Field(ge=0)
    win_rate: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    avg_r_multiple: float | None = Field(None, allow_inf_nan=False)
    sd_r_multiple: float | None = Field(None, ge=0, allow_inf_nan=False)


_ROWS = TypeAdapter(dict[str, _ProfileRow])


def profiles_from_report(path: str, scenario: str) -> dict[str, Profile]:
    """Per-strategy profiles from a backtest's report.json (strategies with fewer than two
    trades have no spread and are left out). Raises ValueError naming the file and what is
    missing or malformed."""
    where = f"health.reference_report {path}"
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        raw = report["scenarios"][scenario]["by_strategy"]
    except OSError as e:
        raise ValueError(f"{where}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{where}: not a deskd report.json with scenario {shown(scenario)}") from None
    try:
        rows = _ROWS.validate_python(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: scenarios.{shown(scenario)}.by_strategy"
                         f"{'.' + shown(loc) if loc else ''}: {err['msg']}") from None
    return {sid: Profile(m.trades, m.win_rate, m.avg_r_multiple, m.sd_r_multiple,
                         f"{Path(path).name} scenario {scenario}")
            for sid, m in rows.items()
            if m.win_rate is not None and m.sd_r_multiple is not None and m.avg_r_multiple is not None}


@dataclass
class StrategyHealth:
    strategy: str
    status: str
    reason: str
    window_trades: int
    win_rate: float | None
    avg_pnl_usd: float | None
    expectancy_r: float | None
    z_r: float | None
    z_win_rate: float | None
    reference: dict | None


def load_history(conn, desk: str, scenario: str) -> list[tuple[str, float, float]]:
    """The desk's closed trades in the store, oldest first: (strategy, r_multiple, pnl_usd)."""
    from sqlalchemy import select

    from deskd.persistence.store import trades
    q = (select(trades.c.strategy_id, trades.c.r_multiple, trades.c.pnl_usd)
         .filter_by(desk=desk, scenario=scenario).order_by(trades.c.trade_id))
    return [tuple(r) for r in conn.execute(q).all()]


class HealthMonitor:
    """Keeps each strategy's closed trades (R-multiples and P&L) from PositionClosed events
    on ``bus``; ``history`` seeds them (oldest first: (strategy, r_multiple, pnl_usd)) from
    the store on restart. ``reference`` maps strategy -> Profile (None: own history)."""

    def __init__(self, cfg: HealthConfig, strategies: list[str], bus: Bus,
                 reference: dict[str, Profile] | None = None,
                 history: Iterable[tuple[str, float, float]] = ()):
        self.cfg = cfg
        self.strategies = list(strategies)
        self.reference = reference
        self.trades: dict[str, list[tuple[float, float]]] = {s: [] for s in self.strategies}
        for sid, r, pnl in history:
            self._add(sid, r, pnl)
        bus.subscribe(PositionClosed, self.on_closed)

    def _add(self, sid: str, r: float, pnl: float) -> None:
        self.trades.setdefault(sid, []).append((r, pnl))
        if sid not in self.strategies:
            self.strategies.append(sid)

    def on_closed(self, ev: PositionClosed) -> None:
        self._add(ev.trade.strategy_id, ev.trade.r_multiple, ev.trade.pnl_usd)

    def assess(self, sid: str) -> StrategyHealth:
        c = self.cfg
        all_trades = self.trades.get(sid, [])
        window = all_trades[-c.window_trades:]
        n = len(window)
        rs = [r for r, _ in window]
        wr = sum(1 for r in rs if r > 0) / n if n else None
        avg_pnl = statistics.fmean(p for _, p in window) if n else None
        exp_r = statistics.fmean(rs) if n else None
        if self.reference is not None:
            prof = self.reference.get(sid)
        else:
            prof = profile_of([r for r, _ in all_trades[:-c.window_trades]], "own history before the window")
        h = StrategyHealth(sid, OK, "", n, wr, avg_pnl, exp_r, None, None,
                           None if prof is None else asdict(prof))
        if n < c.min_trades:
            h.reason = f"{n} trade(s) in the window, fewer than min_trades {c.min_trades}"
            return h
        if prof is None or prof.trades < c.min_trades:
            h.reason = "no reference profile with min_trades trades yet"
            return h
        assert wr is not None and exp_r is not None  # n >= min_trades >= 1
        zs = []
        if prof.sd_r > 0:
            h.z_r = (exp_r - prof.mean_r) / (prof.sd_r / math.sqrt(n))
            zs.append(h.z_r)
        if 0 < prof.win_rate < 1:
            h.z_win_rate = (wr - prof.win_rate) / math.sqrt(prof.win_rate * (1 - prof.win_rate) / n)
            zs.append(h.z_win_rate)
        if not zs:
            h.reason = "the reference profile has no spread to compare against"
            return h
        if min(zs) <= -c.out_of_profile_z or max(zs) >= c.out_of_profile_z:
            h.status, h.reason = OUT_OF_PROFILE, f"|z| >= {c.out_of_profile_z:g}"
        elif min(zs) <= -c.weakening_z:
            h.status, h.reason = WEAKENING, f"z <= -{c.weakening_z:g}"
        else:
            h.reason = "within profile"
        return h

    def snapshot(self) -> dict[str, dict]:
        """Every strategy's health, as JSON-ready dicts keyed by strategy id."""
        return {sid: asdict(self.assess(sid)) for sid in self.strategies}

    def write(self, path: str | Path, now_iso: str) -> None:
        """Write the snapshot as JSON, atomically (a reader never sees half a file), readable
        by its owner and group only (mode 0640: it shows the desk's P&L). Raises OSError."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        text = json.dumps({"written_at": now_iso, "window_trades": self.cfg.window_trades,
                           "strategies": self.snapshot()}, indent=2)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o640)  # also when the file was left behind with other bits
            fh.write(text)
        os.replace(tmp, path)
