"""Run folders as the viewer reads them: opened at start-up, their big files read on first use.

A **backtest** folder holds report.json (its marker), trades.csv, equity.csv, decisions.parquet
or decisions.csv, config.yaml; a **walk-forward** folder walkforward.json (its marker),
splits.csv, oos_trades.csv, oos_equity.csv, config.yaml and splits/NN/ (tune.json,
trials.csv). Either may also hold run.json (its ``run_id`` is shown), trades.parquet
(read when there is no trades.csv) and counterfactuals.parquet (one row per decision, in the
journal's order: the counterfactual of each). A file that is missing or unreadable leaves its
view out with a note; only a folder with neither marker, or a marker that is not a JSON object
of the expected shape, is refused (:class:`RunFolderError`).

Opening a folder reads its marker only. The trades, the decision journal and the
counterfactuals are each read whole into one pandas frame per run on first use (strings as
categories: 1.6 million decisions of a 3-year M1 run take about 100 MB and a few seconds,
bench/RESULTS.md), and every later page, filter or count is a numpy mask over that frame:
a request never reads a file again and never returns more than a page of rows. Bar files
are read once per file (:class:`BarCache`), shared by every run that names them.

Times in every record are ISO 8601 UTC strings (``2026-01-15T23:15:00Z``), as in the CSV
files; prices in quote currency, distances in pips, money in USD.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from deskd.adapters.bars import BarFileError, read_bars
from deskd.configs.loader import ConfigError, load_config
from deskd.configs.models import DeskConfig
from deskd.core.money import Instrument
from deskd.core.text import shown
from deskd.core.time import iso
from deskd.research.report_html import decimate, drawdown, read_equity, read_trades

BACKTEST, WALKFORWARD = "backtest", "walkforward"
#: the file that makes a folder a run of each kind
MARKERS = {BACKTEST: "report.json", WALKFORWARD: "walkforward.json"}
#: a decision's chart: bars up to and including the decision bar, and after it
BARS_BEFORE, BARS_AFTER = 60, 120
#: ... stretched to show the real or counterfactual exit, but never past this many bars after
BARS_AFTER_MAX = 2000
#: ... and this many bars past that exit
BARS_PAST_EXIT = 10
#: rows a page may hold
MAX_PAGE = 500
#: filtered row sets kept per run (paging through one filter reuses its mask)
FILTER_CACHE = 16
#: the headline metrics of the runs list, from report.json's ``overall``
HEADLINE = ("trades", "win_rate", "net_pnl_usd", "expectancy_pips", "profit_factor", "max_drawdown_frac",
            "sharpe_daily_ann")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
OUTCOMES = ("WIN", "LOSS")
_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

T = TypeVar("T")


class RunFolderError(ValueError):
    """A RUN_DIR that is not a deskd run folder, or whose marker file cannot be read; the
    message names the folder or file."""


class QueryError(ValueError):
    """A query parameter the data cannot answer: ``param`` names it, the message says why."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


class Unreadable(RuntimeError):
    """A file of the run that exists but cannot be read; the message names it."""


class NotAvailable(LookupError):
    """What was asked for is not in this run (no decision file, not a walk-forward, an
    unknown split or decision row); the message says which."""


# ------------------------------------------------------------------------------------ JSON

def jsonable(x: Any) -> Any:
    """``x`` with every float that is not finite as None, numpy scalars as Python's and
    timestamps as ISO strings, recursively (JSON has no NaN: a browser refuses it)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, pd.Timestamp):
        return None if pd.isna(x) else _iso_ts(x)
    if x is pd.NaT:
        return None
    return x


def _iso_ts(t: pd.Timestamp) -> str:
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t.strftime(TIME_FORMAT)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as JSON-ready dicts: times ISO 8601 UTC strings, missing values None."""
    out = {}
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        if pd.api.types.is_datetime64_any_dtype(s):
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            s = s.dt.strftime(TIME_FORMAT)
        s = s.astype(object)
        out[c] = s.where(s.notna(), None).tolist()
    cols = list(out)
    return [jsonable(dict(zip(cols, vals))) for vals in zip(*out.values())] if cols else []


# ------------------------------------------------------------------------------------ bars

@dataclass(frozen=True)
class Bars:
    """One bar file whole: ``ts`` int64 UTC epoch seconds of each bar's open, prices float64."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


class BarCache:
    """Bar files read whole, once each, keyed by (path, timezone, timeframe); shared by the
    runs. :meth:`get` raises NotAvailable naming the file when it cannot be read (and keeps
    that answer: a file is not read twice)."""

    def __init__(self) -> None:
        self._bars: dict[tuple[str, str, int], Bars | str] = {}
        self._lock = threading.Lock()

    def get(self, path: str, timezone: str, timeframe_s: int) -> Bars:
        key = (path, timezone, timeframe_s)
        with self._lock:
            if key not in self._bars:
                try:
                    chunks = list(read_bars(path, timezone, timeframe_s))
                    self._bars[key] = Bars(*(np.concatenate([getattr(ch, c) for ch in chunks])
                                             for c in ("ts", "open", "high", "low", "close")))
                except BarFileError as e:
                    self._bars[key] = f"cannot read the bar file: {e}"
            got = self._bars[key]
        if isinstance(got, str):
            raise NotAvailable(got)
        return got


# ------------------------------------------------------------------------------- filters

@dataclass(frozen=True)
class TradeFilter:
    """Which trades: of ``scenario``, and where given the ``symbol``, ``strategy_id``,
    ``exit_reason`` (SL, TP, TIME, EOD, ...) and ``outcome`` (WIN: pnl_usd > 0, else LOSS);
    of one walk-forward ``split``."""

    scenario: str
    symbol: str | None = None
    strategy_id: str | None = None
    exit_reason: str | None = None
    outcome: str | None = None
    split: int | None = None


@dataclass(frozen=True)
class DecisionFilter:
    """Which decisions: of ``scenario``, and where given the ``action`` (TRADED, SKIPPED), the
    exact ``reason`` (``position_open``, ``guard:day_dd_halt``, ...), the UTC ``hour`` (0-23)
    of the decision time, the ``symbol``, the ``strategy_id``; ``bad_skips`` keeps only the
    SKIPPED decisions whose counterfactual is a WIN (needs counterfactuals.parquet)."""

    scenario: str
    action: str | None = None
    reason: str | None = None
    hour: int | None = None
    symbol: str | None = None
    strategy_id: str | None = None
    bad_skips: bool = False


def _check_value(param: str, value: str | None, allowed: Iterable[str]) -> None:
    allowed = sorted(set(allowed))
    if value is not None and value not in allowed:
        some = ", ".join(allowed[:20]) + (", ..." if len(allowed) > 20 else "")
        raise QueryError(param, f"{shown(value)} is not in this run ({some or 'none'})")


def _eq(df: pd.DataFrame, col: str, value: object) -> np.ndarray:
    return (df[col] == value).to_numpy(dtype=bool)


def _page(total: int, offset: int, limit: int) -> tuple[int, int]:
    """The row positions [lo, hi) of the page at ``offset`` of ``limit`` rows, clipped to
    ``total`` (an offset past the end gives an empty page)."""
    lo = min(offset, total)
    return lo, min(lo + limit, total)


# ----------------------------------------------------------------------------- readers

def read_decision_journal(path: Path) -> pd.DataFrame:
    """decisions.parquet or decisions.csv as one frame: every column of the file, strings as
    categories, ``decision_time`` replaced by ``ts`` (int64 UTC epoch seconds, the close of
    the decision bar). Raises OSError, ValueError or pyarrow's ArrowException when unreadable."""
    if path.suffix == ".parquet":
        table = pq.read_table(path, read_dictionary=_string_columns(path))  # no string materialised
        col = table["decision_time"].combine_chunks()
        per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[col.type.unit]
        ts = np.asarray(pc.cast(col, pa.int64()), dtype=np.int64) // per_s
    else:
        opts = pacsv.ConvertOptions(column_types={"decision_time": pa.string(), "client_order_id": pa.string(),
                                                  "sl_pips": pa.float64(), "tp_pips": pa.float64()},
                                    strings_can_be_null=False)
        table = pacsv.read_csv(path, convert_options=opts)
        parsed = pc.strptime(table["decision_time"], format=TIME_FORMAT, unit="s")
        ts = np.asarray(pc.cast(parsed, pa.int64()), dtype=np.int64)
    df = table.drop_columns(["decision_time"]).to_pandas(strings_to_categorical=True)
    del table
    pa.default_memory_pool().release_unused()  # the Arrow buffers: the frame holds its own copy
    df.insert(1, "ts", ts)
    return df


def _string_columns(path: Path) -> list[str]:
    """The string columns of a Parquet file (read as dictionaries: categories in pandas)."""
    return [f.name for f in pq.read_schema(path) if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def _read_trades(run_dir: Path, name: str) -> pd.DataFrame:
    """trades.csv (or oos_trades.csv), else trades.parquet, with times as datetime64 (naive
    UTC) and an ``outcome`` column (WIN: pnl_usd > 0, else LOSS); an empty frame when the run
    has neither file."""
    if (run_dir / name).exists():
        df = read_trades(run_dir / name)
    elif (run_dir / "trades.parquet").exists():
        df = pd.read_parquet(run_dir / "trades.parquet")
        for c in ("signal_time", "fill_time", "exit_time"):
            if c not in df:
                continue
            s = df[c]
            if not pd.api.types.is_datetime64_any_dtype(s):
                s = pd.to_datetime(s, format=TIME_FORMAT, utc=True)
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            df[c] = s
    else:
        return pd.DataFrame(columns=["scenario", "symbol", "strategy_id", "exit_reason", "pnl_usd", "outcome"])
    df["outcome"] = np.where(df["pnl_usd"].to_numpy(float) > 0, "WIN", "LOSS")
    for c in ("scenario", "symbol", "strategy_id", "exit_reason", "side", "outcome"):
        if c in df:
            df[c] = df[c].astype(str).astype("category")
    return df


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RunFolderError(f"{path}: cannot read: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON
        raise RunFolderError(f"{path}: not a JSON file deskd wrote: {e}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: not a JSON object")
    return data


# ------------------------------------------------------------------------------------ runs

class Run:
    """One run folder. Construct with :func:`open_run`; the big files load on first use
    (thread-safe: one load per file however many requests wait for it)."""

    def __init__(self, index: int, run_id: str, path: Path, kind: str, meta: dict, run_json: dict | None,
                 bars: BarCache):
        self.index = index
        self.id = run_id
        self.path = path
        self.kind = kind
        self.meta = meta  # report.json or walkforward.json
        self.run_json = run_json
        self._bars = bars
        self._lock = threading.RLock()
        self._loaded: dict[str, Any] = {}
        self._filters: OrderedDict[object, np.ndarray] = OrderedDict()
        splits_dir = path / "splits"
        self.split_dirs: dict[int, Path] = {}
        if kind == WALKFORWARD and splits_dir.is_dir():
            self.split_dirs = {int(p.name): p for p in sorted(splits_dir.iterdir())
                               if p.is_dir() and p.name.isdigit() and p.name.isascii()}

    # -- lazy loads ---------------------------------------------------------------------
    def _once(self, name: str, load: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load()
            return self._loaded[name]

    @property
    def scenarios(self) -> list[str]:
        """The run's cost scenarios, in the run's order."""
        if self.kind == BACKTEST:
            return [str(s) for s in self.meta["scenarios"]]
        listed = self.meta.get("scenarios")
        return [str(s) for s in listed] if isinstance(listed, list) else []

    def decision_file(self) -> Path | None:
        """decisions.parquet, else decisions.csv, else None."""
        for name in ("decisions.parquet", "decisions.csv"):
            if (self.path / name).is_file():
                return self.path / name
        return None

    def trades(self) -> pd.DataFrame:
        """Every trade of the run (out-of-sample trades of a walk-forward), in file order."""
        name = "trades.csv" if self.kind == BACKTEST else "oos_trades.csv"
        return self._once("trades", lambda: self._read(name, lambda: _read_trades(self.path, name)))

    def decisions(self) -> pd.DataFrame:
        """The decision journal (:func:`read_decision_journal`); raises NotAvailable when the
        run wrote none."""
        path = self.decision_file()
        if path is None:
            raise NotAvailable("this run has no decision journal (decisions.parquet or decisions.csv)")
        return self._once("decisions", lambda: self._read(path.name, lambda: read_decision_journal(path)))

    def _hours(self) -> np.ndarray:
        return self._once("hours", lambda: ((self.decisions()["ts"].to_numpy() // 3600) % 24).astype(np.int8))

    def counterfactuals(self) -> pd.DataFrame | None:
        """counterfactuals.parquet, row i the counterfactual of decision i; None when there is
        none, or when it does not have one row per decision (``cf_note`` says so)."""
        return self._once("cf", self._load_cf)

    def _load_cf(self) -> pd.DataFrame | None:
        path = self.path / "counterfactuals.parquet"
        if not path.is_file() or self.decision_file() is None:
            return None
        try:  # the cf_ columns only: the decision's own are the journal's, row for row
            names = [c for c in pq.read_schema(path).names if c.startswith("cf_")]
            strings = [c for c in _string_columns(path) if c in names]
            cf = pq.read_table(path, columns=names, read_dictionary=strings).to_pandas(strings_to_categorical=True)
            pa.default_memory_pool().release_unused()
        except (OSError, ValueError, pa.ArrowException) as e:
            self._loaded["cf_note"] = f"{path.name} cannot be read: {e}"
            return None
        n = len(self.decisions())
        if len(cf) != n or "cf_result" not in cf:
            self._loaded["cf_note"] = (f"{path.name} has {len(cf):,} rows for {n:,} decisions"
                                       if len(cf) != n else f"{path.name} has no cf_result column")
            return None
        return cf.reset_index(drop=True)

    def _read(self, what: str, load: Callable[[], T]) -> T:
        try:
            return load()
        except (OSError, ValueError, KeyError, pa.ArrowException) as e:
            raise Unreadable(f"{self.path.name}/{what}: cannot be read: {e}") from None

    def config(self) -> DeskConfig:
        """The run's config.yaml (data paths absolute); raises NotAvailable saying why not."""
        def load() -> DeskConfig | str:
            try:
                return load_config(self.path / "config.yaml")
            except ConfigError as e:
                return str(e)
        got = self._once("config", load)
        if isinstance(got, str):
            raise NotAvailable(got)
        return got

    # -- the runs list ------------------------------------------------------------------
    def files(self) -> dict[str, bool]:
        """Which optional views the run has: decisions, counterfactuals, walk-forward splits."""
        return {"decisions": self.decision_file() is not None,
                "counterfactuals": (self.path / "counterfactuals.parquet").is_file()
                and self.decision_file() is not None,
                "equity": (self.path / ("equity.csv" if self.kind == BACKTEST else "oos_equity.csv")).is_file(),
                "splits": self.kind == WALKFORWARD, "run_json": self.run_json is not None}

    def summary(self) -> dict[str, Any]:
        """The run in the runs list: index, id, folder, kind, scenarios, per scenario its
        headline (:data:`HEADLINE`, final equity USD, return fraction) and every overall metric
        of report.json (a walk-forward: its out-of-sample totals), which files it has, and
        run.json's ``run_id`` and ``config_fingerprint`` (None without run.json)."""
        per: dict[str, dict] = {}
        for s in self.scenarios:
            if self.kind == BACKTEST:
                rep = _dict(self.meta["scenarios"].get(s))
                overall = _dict(rep.get("overall"))
                head = {k: overall.get(k) for k in HEADLINE}
                head.update(final_equity_usd=rep.get("final_equity_usd"), return_frac=rep.get("return_frac"))
                per[s] = {"headline": head, "overall": overall, "decisions": rep.get("decisions")}
            else:
                oos = _dict(_dict(self.meta.get("out_of_sample")).get(s))
                per[s] = {"headline": dict(oos), "overall": dict(oos), "decisions": None}
        out = {"index": self.index, "id": self.id, "path": str(self.path), "name": self.path.name,
               "kind": self.kind, "scenarios": self.scenarios, "by_scenario": per, "files": self.files(),
               "desk": self.meta.get("desk"), "timeframe": self.meta.get("timeframe"),
               "strategy_id": self.meta.get("strategy_id")}
        rj = self.run_json or {}
        out.update(run_id=rj.get("run_id"), config_fingerprint=rj.get("config_fingerprint"))
        return jsonable(out)

    def check_scenario(self, scenario: str | None) -> str:
        """``scenario``, or the run's first when None; raises QueryError for one the run lacks."""
        if scenario is None:
            if not self.scenarios:
                raise NotAvailable("this run has no scenario")
            return self.scenarios[0]
        _check_value("scenario", scenario, self.scenarios)
        return scenario

    def facets(self) -> dict[str, Any]:
        """The values each filter takes in this run (for the page's menus): scenarios;
        symbols, strategies, exit reasons, outcomes and splits of the trades
        (:meth:`trade_facets`); actions, reasons, symbols and strategies of the decisions and
        whether bad skips can be asked for (:meth:`decision_facets`)."""
        return {"scenarios": self.scenarios, **self.trade_facets(), **self.decision_facets()}

    def trade_facets(self) -> dict[str, Any]:
        """``symbols``, ``strategies``, ``exit_reasons``, ``outcomes``, ``splits`` (sorted) of
        the trades."""
        def load() -> dict[str, Any]:
            tr = self.trades()
            out: dict[str, Any] = {"outcomes": list(OUTCOMES)}
            for key, col in (("symbols", "symbol"), ("strategies", "strategy_id"), ("exit_reasons", "exit_reason")):
                out[key] = sorted(str(v) for v in tr[col].unique()) if col in tr and len(tr) else []
            out["splits"] = sorted(int(v) for v in tr["split"].unique()) if "split" in tr and len(tr) else []
            return out
        return self._once("trade_facets", load)

    def decision_facets(self) -> dict[str, Any]:
        """``actions``, ``reasons``, ``decision_symbols``, ``decision_strategies`` (most
        frequent first; empty without a journal), ``counterfactuals`` (bool) and, when
        counterfactuals.parquet is there but unusable, ``counterfactuals_note``."""
        def load() -> dict[str, Any]:
            out: dict[str, Any] = {"actions": [], "reasons": [], "decision_symbols": [],
                                   "decision_strategies": [], "counterfactuals": False}
            if self.decision_file() is None:
                return out
            d = self.decisions()
            out.update(actions=_levels(d["action"]), reasons=_levels(d["reason"]),
                       decision_symbols=_levels(d["symbol"]), decision_strategies=_levels(d["strategy_id"]),
                       counterfactuals=self.counterfactuals() is not None)
            if self._loaded.get("cf_note"):
                out["counterfactuals_note"] = self._loaded["cf_note"]
            return out
        return self._once("decision_facets", load)

    # -- equity -------------------------------------------------------------------------
    def equity(self, scenario: str) -> dict[str, Any]:
        """The scenario's equity curve: ``time`` (ISO), ``equity_usd``, ``drawdown_usd`` (fall
        from the running peak, >= 0) and ``drawdown_frac``, cut to at most a few thousand
        points keeping every bucket's extremes (report.html's rule); ``max_drawdown_usd`` over
        every mark. Raises NotAvailable without an equity file."""
        name = "equity.csv" if self.kind == BACKTEST else "oos_equity.csv"
        if not (self.path / name).is_file():
            raise NotAvailable(f"this run has no {name}")
        eq_all = self._once("equity", lambda: self._read(name, lambda: read_equity(self.path / name)))
        eq = eq_all[eq_all["scenario"].astype(str) == scenario]
        values = eq["equity_usd"].to_numpy(float)
        dd, frac = drawdown(values)
        keep = decimate(values, dd)
        times = eq["time"].to_numpy("datetime64[s]")[keep]
        return jsonable({"scenario": scenario, "marks": int(len(values)), "points": int(len(keep)),
                         "time": [f"{t}Z" for t in times.astype(str)],
                         "equity_usd": values[keep].round(2).tolist(), "drawdown_usd": dd[keep].round(2).tolist(),
                         "drawdown_frac": frac[keep].round(6).tolist(),
                         "max_drawdown_usd": round(float(dd.max()), 2) if len(dd) else 0.0})

    # -- trades -------------------------------------------------------------------------
    def check_trade_filter(self, f: TradeFilter) -> None:
        """Raises QueryError naming the parameter whose value the run's trades never take."""
        fac = self.trade_facets()
        _check_value("symbol", f.symbol, fac["symbols"])
        _check_value("strategy", f.strategy_id, fac["strategies"])
        _check_value("exit_reason", f.exit_reason, fac["exit_reasons"])
        _check_value("outcome", f.outcome, OUTCOMES)
        if f.split is not None and self.kind != WALKFORWARD:
            raise QueryError("split", "only a walk-forward's trades have splits")

    def trade_rows(self, f: TradeFilter) -> np.ndarray:
        """Positions in :meth:`trades` of the trades ``f`` selects, in file order."""
        def mask() -> np.ndarray:
            tr = self.trades()
            m = _eq(tr, "scenario", f.scenario) if len(tr) else np.zeros(0, bool)
            for col, v in (("symbol", f.symbol), ("strategy_id", f.strategy_id),
                           ("exit_reason", f.exit_reason), ("outcome", f.outcome), ("split", f.split)):
                if v is not None and col in tr:
                    m = m & _eq(tr, col, v)
            return np.flatnonzero(m)
        return self._filtered(("trades", f), mask)

    def trades_page(self, f: TradeFilter, offset: int, limit: int) -> dict[str, Any]:
        """One page of the filtered trades: ``total`` (how many ``f`` selects), ``offset``,
        ``limit``, ``rows`` (trades.csv's columns and ``outcome``; at most ``limit``), and
        ``net_pnl_usd`` and ``wins`` of all ``total``."""
        self.check_trade_filter(f)
        idx = self.trade_rows(f)
        lo, hi = _page(len(idx), offset, limit)
        tr = self.trades()
        sel = tr.iloc[idx]
        return {"scenario": f.scenario, "total": int(len(idx)), "offset": offset, "limit": limit,
                "net_pnl_usd": round(float(sel["pnl_usd"].sum()), 2) if len(idx) else 0.0,
                "wins": int((sel["outcome"] == "WIN").sum()) if len(idx) else 0,
                "rows": records(tr.iloc[idx[lo:hi]])}

    # -- decisions ----------------------------------------------------------------------
    def check_decision_filter(self, f: DecisionFilter) -> None:
        """Raises QueryError naming the parameter whose value the journal never takes (or
        ``bad_skips`` without counterfactuals), NotAvailable without a journal."""
        if self.decision_file() is None:
            raise NotAvailable("this run has no decision journal (decisions.parquet or decisions.csv)")
        fac = self.decision_facets()
        _check_value("action", f.action, fac["actions"])
        _check_value("reason", f.reason, fac["reasons"])
        _check_value("symbol", f.symbol, fac["decision_symbols"])
        _check_value("strategy", f.strategy_id, fac["decision_strategies"])
        if f.bad_skips and not fac["counterfactuals"]:
            raise QueryError("bad_skips", fac.get("counterfactuals_note")
                             or "this run has no counterfactuals.parquet: which skip was bad is unknown")

    def decision_rows(self, f: DecisionFilter) -> np.ndarray:
        """Positions in the journal (its row numbers) of the decisions ``f`` selects, in
        journal order (by scenario, then time)."""
        def mask() -> np.ndarray:
            d = self.decisions()
            m = _eq(d, "scenario", f.scenario)
            for col, v in (("action", f.action), ("reason", f.reason), ("symbol", f.symbol),
                           ("strategy_id", f.strategy_id)):
                if v is not None:
                    m = m & _eq(d, col, v)
            if f.hour is not None:
                m = m & (self._hours() == f.hour)
            if f.bad_skips:
                cf = self.counterfactuals()
                assert cf is not None  # check_decision_filter refused it otherwise
                m = m & _eq(d, "action", "SKIPPED") & _eq(cf, "cf_result", "WIN")
            return np.flatnonzero(m)
        return self._filtered(("decisions", f), mask)

    def _filtered(self, key: object, mask: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._filters:
                self._filters.move_to_end(key)
                return self._filters[key]
            idx = mask()
            self._filters[key] = idx
            while len(self._filters) > FILTER_CACHE:
                self._filters.popitem(last=False)
            return idx

    def _decision_records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        d = self.decisions()
        page = d.iloc[rows].drop(columns=["ts"])
        page.insert(1, "decision_time", [iso(int(t)) for t in d["ts"].to_numpy()[rows]])
        page.insert(0, "row", rows.astype(np.int64))
        cf = self.counterfactuals()
        if cf is not None:
            page = pd.concat([page.reset_index(drop=True), cf.iloc[rows].reset_index(drop=True)], axis=1)
            page["bad_skip"] = ((page["action"].astype(str) == "SKIPPED")
                                & (page["cf_result"].astype(str) == "WIN")).to_numpy()
        return records(page)

    def decisions_page(self, f: DecisionFilter, offset: int, limit: int) -> dict[str, Any]:
        """One page of the filtered decisions: ``total``, ``offset``, ``limit`` and ``rows``
        (the journal's columns, ``row`` its row number, and the counterfactual's columns and
        ``bad_skip`` when there are counterfactuals)."""
        self.check_decision_filter(f)
        idx = self.decision_rows(f)
        lo, hi = _page(len(idx), offset, limit)
        return {"scenario": f.scenario, "total": int(len(idx)), "offset": offset, "limit": limit,
                "rows": self._decision_records(idx[lo:hi])}

    def decision(self, row: int) -> dict[str, Any]:
        """Decision ``row`` of the journal with what the chart draws: ``bars`` (the price
        window: :data:`BARS_BEFORE` bars to the decision bar and :data:`BARS_AFTER` after,
        stretched to the exit; ``time`` bar opens, open/high/low/close) or None and
        ``bars_note``; ``bracket`` (entry, stop, target prices and the entry time: the
        counterfactual's when there is one, else the next bar's open and the decision's
        sl_pips / tp_pips; None without a next bar); ``trade`` (the real trade of a TRADED
        decision, trades.csv's columns, or None); ``counterfactual`` (its columns or None).
        Raises NotAvailable for a row the journal lacks."""
        d = self.decisions()
        if not 0 <= row < len(d):
            raise NotAvailable(f"decision {row}: the journal has rows 0 to {len(d) - 1}")
        (rec,) = self._decision_records(np.array([row]))
        cf = self.counterfactuals()
        cf_rec = records(cf.iloc[[row]])[0] if cf is not None else None
        trade = self._trade_of(rec)
        out: dict[str, Any] = {"decision": rec, "trade": trade, "counterfactual": cf_rec, "bars": None,
                               "bars_note": "", "bracket": None, "gaps": []}
        try:
            bars, lo, nxt, hi = self._window(rec, trade, cf_rec)
        except NotAvailable as e:
            out["bars_note"] = str(e)
            return out
        tf = self.config().universe.timeframe_s
        ts = bars.ts[lo:hi]
        out["bars"] = {"time": [iso(int(t)) for t in ts], "open": bars.open[lo:hi].tolist(),
                       "high": bars.high[lo:hi].tolist(), "low": bars.low[lo:hi].tolist(),
                       "close": bars.close[lo:hi].tolist(), "timeframe_s": tf}
        out["gaps"] = _gaps(ts, tf)
        out["bracket"] = self._bracket(rec, cf_rec, bars, nxt)
        return jsonable(out)

    def _trade_of(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        if rec.get("action") != "TRADED":
            return None
        tr = self.trades()
        if not len(tr):
            return None
        coid = rec.get("client_order_id") or ""
        if coid and "client_order_id" in tr:
            m = (tr["client_order_id"].astype(str) == coid).to_numpy(bool)
        else:
            m = (_eq(tr, "scenario", rec["scenario"]) & _eq(tr, "symbol", rec["symbol"])
                 & _eq(tr, "strategy_id", rec["strategy_id"])
                 & (tr["signal_time"] == pd.Timestamp(rec["decision_time"]).tz_localize(None)).to_numpy(bool))
        hits = np.flatnonzero(m)
        return records(tr.iloc[hits[:1]])[0] if len(hits) else None

    def _window(self, rec: dict, trade: dict | None, cf: dict | None) -> tuple[Bars, int, int, int]:
        """(bars of the decision's symbol, first index shown, index of the bar after the
        decision, end index). Raises NotAvailable when the bars cannot be read."""
        cfg = self.config()
        sym = rec["symbol"]
        if sym not in cfg.data.files:
            raise NotAvailable(f"config.yaml names no bar file for {sym}")
        bars = self._bars.get(cfg.data.files[sym], cfg.data.timezone_of(sym), cfg.universe.timeframe_s)
        t = _epoch(rec["decision_time"])
        nxt = int(np.searchsorted(bars.ts, t, side="left"))  # the first bar opening at or after the close
        lo, hi = max(0, nxt - BARS_BEFORE), min(len(bars.ts), nxt + BARS_AFTER)
        exits = [x.get(k) for x, k in ((trade, "exit_time"), (cf, "cf_exit_time")) if x is not None]
        for e in exits:
            if e:
                end = int(np.searchsorted(bars.ts, _epoch(e), side="right")) + BARS_PAST_EXIT
                hi = min(len(bars.ts), max(hi, min(end, nxt + BARS_AFTER_MAX)))
        if hi <= lo:
            raise NotAvailable(f"the bar file of {sym} has no bar near {rec['decision_time']}")
        return bars, lo, nxt, hi

    def _bracket(self, rec: dict, cf: dict | None, bars: Bars, nxt: int) -> dict[str, Any] | None:
        if cf is not None and cf.get("cf_entry_price") is not None:
            return {"source": "counterfactual", "entry_time": cf.get("cf_entry_time"),
                    "entry": cf.get("cf_entry_price"), "stop": cf.get("cf_sl_price"), "target": cf.get("cf_tp_price")}
        if nxt >= len(bars.ts) or rec.get("sl_pips") is None:
            return None
        try:
            pip = Instrument.parse(rec["symbol"]).pip_size
        except ValueError:
            return None
        sign = 1.0 if rec.get("side") == "LONG" else -1.0
        entry = float(bars.open[nxt])
        tp = rec.get("tp_pips")
        return {"source": "decision", "entry_time": iso(int(bars.ts[nxt])), "entry": entry,
                "stop": round(entry - sign * rec["sl_pips"] * pip, 6),
                "target": None if tp is None else round(entry + sign * tp * pip, 6)}

    # -- walk-forward -------------------------------------------------------------------
    def splits(self) -> dict[str, Any]:
        """A walk-forward's splits (walkforward.json's rows: windows, chosen ``p.<param>``,
        in-sample score, IS/OOS expectancy and trades per scenario), its split spec, parameter
        stability and out-of-sample totals, and which splits have a tune folder. Raises
        NotAvailable for a backtest."""
        if self.kind != WALKFORWARD:
            raise NotAvailable("this run is a backtest: it has no walk-forward splits")
        m = self.meta
        return jsonable({"strategy_id": m.get("strategy_id"), "spec": _dict(m.get("splits_spec")),
                         "scenarios": self.scenarios, "splits": [_dict(x) for x in m.get("splits") or []],
                         "parameter_stability": m.get("parameter_stability"),
                         "out_of_sample": m.get("out_of_sample"), "tuned": sorted(self.split_dirs)})

    def trials(self, split: int, limit: int) -> dict[str, Any]:
        """The best ``limit`` stage-1 trials of split ``split``'s tune (trials.csv, best first)
        and its tune.json's objective, best point, DSR and PBO. Raises NotAvailable for a split
        without a tune folder, or files that cannot be read."""
        folder = self.split_dirs.get(split)
        if folder is None:
            raise NotAvailable(f"split {split}: this run has no splits/{split:02d}/ folder")
        tune = self._read(f"splits/{folder.name}/tune.json", lambda: _json_object(folder / "tune.json"))
        trials = self._read(f"splits/{folder.name}/trials.csv", lambda: pd.read_csv(folder / "trials.csv"))
        keep = [c for c in ("rank", "trial", "status", "score", "trades", "net_usd", "expectancy_r", "max_dd_frac")
                if c in trials] + [c for c in trials.columns if str(c).startswith("p.")]
        over = _dict(tune.get("overfitting"))
        return jsonable({"split": split, "trials": len(trials), "rows": records(trials[keep].head(limit)),
                         "objective": _dict(tune.get("objective")), "best": tune.get("best"),
                         "dsr": _dict(over.get("dsr")).get("value"), "pbo": _dict(over.get("pbo")).get("value"),
                         "space_size": tune.get("space_size")})


def _dict(x: object) -> dict:
    """``x`` when it is a dict, else {} (a damaged JSON file shows as missing values)."""
    return x if isinstance(x, dict) else {}


def _levels(s: pd.Series) -> list[str]:
    """The values a categorical column takes, most frequent first."""
    counts = s.value_counts()
    return [str(v) for v, n in counts.items() if n > 0]


def _epoch(text: str) -> int:
    return int(pd.Timestamp(text).timestamp())


def _gaps(ts: np.ndarray, timeframe_s: int, min_gap_s: int = 6 * 3600) -> list[list[str]]:
    """[from, to] pairs (ISO) of the market's closes between consecutive bars (weekends,
    holidays: ``min_gap_s`` or more without a bar), for the chart's axis breaks."""
    at = np.flatnonzero(np.diff(ts) >= min_gap_s)
    return [[iso(int(ts[i]) + timeframe_s), iso(int(ts[i + 1]))] for i in at]


def _run_id(path: Path, taken: set[str]) -> str:
    """The folder's name as the user knows it (run.json's run_id, a hash, is shown beside it):
    letters, digits, '.', '_', '-' only, never all digits (an index), made unique with ``-2``,
    ``-3``..."""
    base = _ID_CHARS.sub("-", path.name).strip("-.") or "run"
    if base.isdigit():
        base = f"run-{base}"
    rid, k = base, 2
    while rid in taken:
        rid, k = f"{base}-{k}", k + 1
    return rid


def open_run(path: Path, index: int, bars: BarCache, taken: set[str] | None = None) -> Run:
    """Open the run folder ``path`` as run ``index``: read its marker (report.json or
    walkforward.json) and run.json when present. Raises RunFolderError when the folder is
    missing, not a run folder, or its marker is not of the expected shape."""
    if not path.is_dir():
        raise RunFolderError(f"{path}: no such folder" if not path.exists() else f"{path}: not a folder")
    kind = next((k for k, marker in MARKERS.items() if (path / marker).is_file()), None)
    if kind is None:
        raise RunFolderError(f"{path}: not a deskd run folder (no report.json of a backtest, "
                             f"no walkforward.json of a walk-forward)")
    meta = _json_object(path / MARKERS[kind])
    if kind == BACKTEST and not (isinstance(meta.get("scenarios"), dict) and meta["scenarios"]):
        raise RunFolderError(f"{path / 'report.json'}: no scenarios in it: not a deskd backtest report")
    if kind == WALKFORWARD and not isinstance(meta.get("splits"), list):
        raise RunFolderError(f"{path / 'walkforward.json'}: no splits in it: not a deskd walk-forward")
    run_json = None
    if (path / "run.json").is_file():
        try:
            run_json = _json_object(path / "run.json")
        except RunFolderError:
            run_json = None  # damaged: the run is still readable, it just has no id of its own
    taken = set() if taken is None else taken
    rid = _run_id(path.resolve(), taken)
    taken.add(rid)
    return Run(index, rid, path.resolve(), kind, meta, run_json, bars)


def open_runs(paths: list[Path]) -> list[Run]:
    """:func:`open_run` for each of ``paths`` (index = position), sharing one bar cache.
    Raises RunFolderError for the first that is not a run folder, or when there is none."""
    if not paths:
        raise RunFolderError("name at least one run folder (RUN_DIR): a deskd backtest or walkforward output")
    bars, taken = BarCache(), set[str]()
    return [open_run(p, i, bars, taken) for i, p in enumerate(paths)]
