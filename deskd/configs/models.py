"""Pydantic v2 models of the whole desk config.

Every model forbids unknown keys, so a typo is an error that names its key path rather than a
setting silently ignored. Units are in the field names (``_pips``, ``_usd``, ``_frac``, ``_bars``).
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from deskd.core.money import Instrument

TIMEFRAME_SECONDS: dict[str, int] = {
    "M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400,
}

S1_ID = "S1_TREND_EMA_ATR_ADX"
S2_ID = "S2_MR_ZSCORE_EMA_REGIME"
S3_ID = "S3_BREAKOUT_ATR_REGIME_EMA200"
STRATEGY_IDS = (S1_ID, S2_ID, S3_ID)
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"  # desk and scenario names: safe in order ids and CSV


class Strict(BaseModel):
    """Base: unknown keys rejected, instances frozen, and no float may be NaN or infinite
    (``starting_equity_usd: .inf`` passed and overflowed in sizing)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: zone names that are fixed offsets all year, and the zone their users usually mean
_FIXED_OFFSET_ZONES = {"EST": "America/New_York", "MST": "America/Denver", "HST": "Pacific/Honolulu"}


def check_timezone(name: str) -> str:
    """``name`` when it is an IANA zone. Raises ValueError for an unknown one, and for the
    legacy abbreviations (``EST`` is UTC-5 all year, while HistData and most New York data
    follow daylight saving): say ``America/New_York``, or ``Etc/GMT+5`` for a true fixed offset."""
    if name in _FIXED_OFFSET_ZONES:
        raise ValueError(f"{name!r} is a fixed offset all year (no daylight saving); data that follows "
                         f"local time is {_FIXED_OFFSET_ZONES[name]!r} (HistData's New York time is "
                         f"America/New_York); a true fixed offset is written Etc/GMT+N, e.g. 'Etc/GMT+5' for UTC-5")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {name!r} (e.g. UTC, America/New_York, "
                         f"Europe/Athens)") from None
    return name


class AccountConfig(Strict):
    """The trading account. Only USD accounts are supported: every conversion targets USD.
    A backtest whose equity falls below ``equity_floor_frac`` x the starting equity at a bar
    close reports the account as wiped out (summary, report.json, report.html)."""

    currency: Literal["USD"] = "USD"
    starting_equity_usd: float = Field(100_000.0, gt=0)
    equity_floor_frac: float = Field(0.1, ge=0, lt=1)  # below this x starting equity: wiped out


class UniverseConfig(Strict):
    """What the desk trades: symbols (six-letter pairs) on one bar timeframe."""

    timeframe: Literal["M1", "M5", "M15", "M30", "H1", "H4"] = "M15"
    symbols: list[str] = Field(min_length=1)

    @field_validator("symbols")
    @classmethod
    def _symbols_are_pairs(cls, v: list[str]) -> list[str]:
        for s in v:
            Instrument.parse(s)
        if len(set(v)) != len(v):
            raise ValueError("symbols are listed twice")
        return v

    @property
    def timeframe_s(self) -> int:
        return TIMEFRAME_SECONDS[self.timeframe]


class DataConfig(Strict):
    """Bar files for replay. Paths are relative to the config file's folder.

    ``timezone`` is the IANA zone the files' ``time`` column is written in (MT4/MT5 server
    time is often Europe/Athens; HistData is America/New_York); ``timezones`` overrides it
    per symbol. A file may also be given as ``{path: ..., timezone: ...}``. A time with an
    explicit UTC offset (``Z``, ``+00:00``, a tz-aware Parquet column) wins over both.
    """

    timezone: str = "UTC"
    files: dict[str, str] = Field(default_factory=dict)
    timezones: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _per_file_zones(cls, data: Any) -> Any:
        """``files: {EURUSD: {path: p, timezone: tz}}`` -> ``files: {EURUSD: p}``, ``timezones: {EURUSD: tz}``."""
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            return data
        files, zones = {}, dict(data.get("timezones") or {})
        for sym, f in data["files"].items():
            if isinstance(f, dict):
                extra = set(f) - {"path", "timezone"}
                if "path" not in f or extra:
                    raise ValueError(f"files.{sym}: a path, or {{path: ..., timezone: ...}}"
                                     + (f" (unknown keys {sorted(extra)})" if extra else ""))
                files[sym] = f["path"]
                if f.get("timezone") is not None:
                    zones[sym] = f["timezone"]
            else:
                files[sym] = f
        return {**data, "files": files, "timezones": zones}

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("timezones")
    @classmethod
    def _tzs(cls, v: dict[str, str]) -> dict[str, str]:
        for zone in v.values():
            check_timezone(zone)
        return v

    def timezone_of(self, symbol: str) -> str:
        """The zone ``symbol``'s file is written in: its own, else ``timezone``."""
        return self.timezones.get(symbol, self.timezone)


class BarContractConfig(Strict):
    """The bar contract: decide on the close of bar t, fill market orders at the open of t+1.

    Only the contract deskd implements is accepted; ``intrabar_policy`` decides which level
    fills when one bar touches both the stop-loss and the take-profit.
    """

    signal_on: Literal["close"] = "close"
    fill_on: Literal["open_next"] = "open_next"
    allow_bar0: Literal[False] = False
    intrabar_policy: Literal["sl_first", "tp_first", "open_proximity"] = "sl_first"


class RegimeConfig(Strict):
    """Regime tags. VOL from the z-score of ATR% over ``vol_z_window`` bars; SPIKE when
    TR(t) / ATR(t-1) > ``spike_tr_atr_th``."""

    atr_period: int = Field(14, ge=1)
    vol_z_window: int = Field(100, ge=2)
    vol_z_low: float = -0.5
    vol_z_high: float = 0.5
    spike_tr_atr_th: float = Field(2.5, gt=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.vol_z_low >= self.vol_z_high:
            raise ValueError("vol_z_low must be below vol_z_high")
        return self


class StopsConfig(Strict):
    """Bracket distances: sl_pips = max(k_sl x ATR_pips, min_sl_pips); tp likewise, none when
    k_tp is null."""

    k_sl: float = Field(2.0, gt=0)
    min_sl_pips: float = Field(10.0, gt=0)
    k_tp: float | None = Field(None, gt=0)
    min_tp_pips: float = Field(0.0, ge=0)


#: the longest indicator window a param may ask for, in bars (a ring buffer per window: an
#: unbounded one lets a typo allocate gigabytes)
MAX_WINDOW_BARS = 10_000

#: a VOL regime of :class:`deskd.strategies.regime.RegimeTagger` an entry filter may allow
VolRegime = Literal["LOW", "MID", "HIGH"]


def _check_hours(v: list[int] | None) -> list[int] | None:
    if v is not None and len(set(v)) != len(v):
        raise ValueError("an hour is listed twice")
    return v


def _check_band(lo: float | None, hi: float | None, what: str) -> None:
    if lo is None and hi is None:
        raise ValueError(f"give {what} (or leave the whole filter out)")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"the lower bound ({lo}) is above the upper bound ({hi})")


class AdxFilterConfig(Strict):
    """Entries allowed while ``min`` <= ADX(``period``) <= ``max`` at the decision bar's close
    (Wilder's ADX, 0..100; a bound left null is open). While the ADX is undefined (warm-up)
    entries are blocked."""

    period: int = Field(14, ge=1, le=MAX_WINDOW_BARS)
    min: float | None = Field(None, ge=0, le=100)
    max: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _band(self):
        _check_band(self.min, self.max, "min or max")
        return self


class AtrPctFilterConfig(Strict):
    """Entries allowed while ``min_pct`` <= ATR(``period``) / close x 100 <= ``max_pct`` at the
    decision bar's close (ATR as a percent of the close; a bound left null is open). While the
    ATR is undefined (warm-up) entries are blocked."""

    period: int = Field(14, ge=1, le=MAX_WINDOW_BARS)
    min_pct: float | None = Field(None, ge=0)
    max_pct: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _band(self):
        _check_band(self.min_pct, self.max_pct, "min_pct or max_pct")
        return self


class FiltersConfig(Strict):
    """A strategy's own entry filters (every part optional; all given must allow): a signal
    they block is journaled SKIPPED with reason ``filter:adx``, ``filter:atr_pct``,
    ``filter:vol``, ``filter:spike`` or ``filter:hour`` (the first that blocks, in that order)
    and never traded. ``vol_regimes``: the VOL tags (:class:`RegimeConfig`) entries are allowed
    in (UNKNOWN, during warm-up, blocks); ``block_spike``: no entry at the close of a SPIKE bar;
    ``hours_utc``: the UTC hours (0..23) of the decision bar's CLOSE time entries are allowed in."""

    adx: AdxFilterConfig | None = None
    atr_pct: AtrPctFilterConfig | None = None
    vol_regimes: list[VolRegime] | None = Field(None, min_length=1)
    block_spike: bool = False
    hours_utc: list[Annotated[int, Field(ge=0, le=23)]] | None = Field(None, min_length=1)

    @field_validator("hours_utc")
    @classmethod
    def _hours_once(cls, v: list[int] | None) -> list[int] | None:
        return _check_hours(v)

    @field_validator("vol_regimes")
    @classmethod
    def _vol_once(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a regime is listed twice")
        return v

    @property
    def active(self) -> bool:
        """Whether any part can block (an empty ``filters: {}`` cannot)."""
        return (self.adx is not None or self.atr_pct is not None or self.vol_regimes is not None
                or self.block_spike or self.hours_utc is not None)

    def warmup_bars(self) -> int:
        """Bars the parts' own indicators need before they are defined: 2 x period for the
        ADX (Wilder 1978: a period of DX, then a period to average it), period + 1 for the ATR
        (the first bar has no true range); the VOL and SPIKE parts read the regime tagger,
        whose warm-up the desk counts already."""
        return max(2 * self.adx.period if self.adx is not None else 0,
                   self.atr_pct.period + 1 if self.atr_pct is not None else 0)


#: deskd's own strategies, by id, as import paths (the strategy API's ``module:Class``)
BUILTIN_STRATEGIES: dict[str, str] = {
    S1_ID: "deskd.strategies.trend:TrendEmaAtrAdx",
    S2_ID: "deskd.strategies.mean_reversion:MeanReversionZScore",
    S3_ID: "deskd.strategies.breakout:BreakoutAtrCompression",
}
#: the entry-point group packaged strategies register under (``class: NAME`` loads one)
ENTRY_POINT_GROUP = "deskd.strategies"
STRATEGY_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,40}$"  # in client order ids, CSV cells and VARCHAR(40) store columns


class Dimension(Strict):
    """One tunable param's range: ``low`` .. ``high`` (both included) by ``step``, or a list of
    ``choices``. Ints when ``low``, ``high`` and ``step`` are all ints (a period), else floats
    (a threshold); a float range needs a ``step`` for the grid sampler, and TPE samples it
    continuously without one. Raises ValueError (as a pydantic error) for a range that is empty
    or both a range and choices."""

    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = Field(None, gt=0)
    choices: list[int | float | str | bool] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("give either choices or low/high/step, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs low and high (or give choices)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.is_int and (self.high - self.low) // (self.step or 1) > MAX_GRID_VALUES:
            raise ValueError(f"more than {MAX_GRID_VALUES:,} values: widen the step")
        if not self.is_int and self.step is not None and (self.high - self.low) / self.step > MAX_GRID_VALUES:
            raise ValueError(f"more than {MAX_GRID_VALUES:,} values: widen the step")
        return self

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in (self.low, self.high, self.step or 1))

    def values(self) -> list[Any]:
        """The grid's values, ascending for a range (floats rounded to 10 decimals so 0.1 steps
        land on 0.3, not 0.30000000000000004). Raises ValueError for a float range without a step."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.is_int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError(f"a float range {self.low}..{self.high} needs a step for the grid")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 10) for i in range(n + 1)]


#: the most values one dimension may hold in a grid (a typo'd step must not enumerate millions)
MAX_GRID_VALUES = 10_000


class StrategyParams(Strict):
    """Base of every strategy's params model: unknown keys are errors, values frozen.
    ``space`` declares which params may be tuned and over what (:class:`Dimension`); the
    config's ``tune.space`` replaces or adds ranges per strategy id. A point the model's own
    validators refuse (``ema_fast >= ema_slow``) is skipped and counted by the tuner."""

    space: ClassVar[dict[str, Dimension]] = {}


def bar_count(default: int, low: int = 1) -> Any:
    """A bar-count param: ``low`` <= n <= MAX_WINDOW_BARS (pydantic Field)."""
    return Field(default, ge=low, le=MAX_WINDOW_BARS)


class StrategySpec(Strict):
    """One strategy of the desk, under its id in ``strategies``: which class (``class``:
    ``module:Class``, an entry-point name, or omitted for deskd's own S1-S3 ids), whether it
    runs, on which symbols (None: all the universe), its time stop (None: risk.max_hold_bars),
    its bracket (None: the class's default), its params, validated by the class's
    ``Params`` model, and its entry ``filters`` (None: none). ``strategy_class`` and ``validated_params`` are resolved at validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_path: str | None = Field(None, alias="class")
    enabled: bool = True
    symbols: list[str] | None = None
    max_hold_bars: int | None = Field(None, ge=1)
    stops: StopsConfig | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    filters: FiltersConfig | None = None  # the strategy's entry filters (deskd.strategies.filters)
    _class: Any = PrivateAttr(None)  # a deskd.strategies.api.Strategy subclass
    _ref: str | None = PrivateAttr(None)
    _params: StrategyParams | None = PrivateAttr(None)

    @property
    def strategy_class(self) -> Any:
        assert self._class is not None, "resolved by StrategiesConfig"
        return self._class

    @property
    def validated_params(self) -> StrategyParams:
        assert self._params is not None, "resolved by StrategiesConfig"
        return self._params

    @property
    def effective_stops(self) -> StopsConfig:
        """``stops``, else the class's ``default_stops``."""
        return self.stops if self.stops is not None else self.strategy_class.default_stops

    def resolve(self, sid: str, config_dir: Path | None) -> list[InitErrorDetails]:
        """Load the class and validate ``params`` with its ``Params``. Returns the errors, each
        located under ``sid`` (``S1.params.ema_fast``, ``donchian.class``); none when it resolved."""
        ref = self.class_path or BUILTIN_STRATEGIES.get(sid)
        try:
            if ref is None:
                raise ValueError(f"no class: give `class: module:Class` (or an entry-point name of group "
                                 f"{ENTRY_POINT_GROUP!r}); only {', '.join(BUILTIN_STRATEGIES)} need none")
            cls = load_strategy_class(ref, config_dir)
        except ValueError as e:
            return [InitErrorDetails(type="value_error", loc=(sid, "class"), input=ref, ctx={"error": e})]
        try:
            params = cls.Params.model_validate(self.params)
        except ValidationError as e:
            return [InitErrorDetails(type=err["type"], loc=(sid, "params", *err["loc"]), input=err["input"],
                                     ctx=err.get("ctx", {})) for err in e.errors()]
        self._class, self._params, self._ref = cls, params, ref
        return []

    @classmethod
    def bound(cls, strategy_class: Any, params: dict[str, Any] | None = None, **fields: Any) -> StrategySpec:
        """A spec bound to ``strategy_class`` itself rather than a path (tests, notebooks; see
        :mod:`deskd.testing.lookahead`). Raises ValidationError for bad ``params`` or fields."""
        spec = cls(params=params or {}, **fields)
        spec._class = strategy_class
        spec._params = strategy_class.Params.model_validate(spec.params)
        spec._ref = f"{strategy_class.__module__}:{strategy_class.__qualname__}"
        return spec

    @model_serializer(mode="wrap")
    def _resolved(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dumped as run: the class that was loaded, its stops and every param (defaults
        filled in), so config.yaml in a run's folder says exactly what traded."""
        d = handler(self)
        d.pop("class_path", None)
        if d.get("filters") is None:
            d.pop("filters", None)  # a config without filters dumps (and fingerprints) as before them
        if self._params is None:
            return {"class": self.class_path, **d}
        return {"class": self._ref, **d, "stops": self.effective_stops.model_dump(),
                "params": self._params.model_dump(mode="json")}


def load_strategy_class(ref: str, config_dir: Path | None = None) -> Any:
    """The strategy class ``ref`` names: ``package.module:Class`` (imported with
    ``config_dir`` first on the import path, then the environment's), or the name of an entry
    point in the ``deskd.strategies`` group. Raises ValueError when it cannot be loaded or is
    not shaped as a :class:`deskd.strategies.api.Strategy` (checked by shape: the API sits a
    layer above configs) with a ``StrategyParams`` model."""
    cls: Any
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        if not (module_name and attr.isidentifier()):
            raise ValueError(f"class {ref!r}: expected `package.module:Class`")
        added = config_dir is not None and str(config_dir) not in sys.path
        if added:
            sys.path.insert(0, str(config_dir))
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # the user's module: any error in it is a config error
            where = f" (looked in {config_dir} and the environment)" if config_dir else ""
            raise ValueError(f"class {ref!r}: cannot import {module_name!r}{where}: "
                             f"{type(e).__name__}: {e}") from None
        finally:
            if added:
                sys.path.remove(str(config_dir))
        cls = getattr(module, attr, None)
        if cls is None:
            raise ValueError(f"class {ref!r}: module {module_name!r} has no {attr!r}")
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref]
        if not found:
            raise ValueError(f"class {ref!r}: not `module:Class` and no entry point {ref!r} in group "
                             f"{ENTRY_POINT_GROUP!r}")
        try:
            cls = found[0].load()
        except Exception as e:
            raise ValueError(f"class {ref!r}: entry point failed to load: {type(e).__name__}: {e}") from None
    if not (isinstance(cls, type) and callable(getattr(cls, "on_bar", None))
            and isinstance(getattr(cls, "default_stops", None), StopsConfig)):
        raise ValueError(f"class {ref!r} is not a subclass of deskd.strategies.api.Strategy")
    params_model = getattr(cls, "Params", None)
    if not (isinstance(params_model, type) and issubclass(params_model, StrategyParams)):
        raise ValueError(f"class {ref!r}: its Params must subclass deskd.strategies.api.StrategyParams")
    return cls


def _default_strategies() -> dict[str, StrategySpec]:
    return {S1_ID: StrategySpec(), S2_ID: StrategySpec(enabled=False), S3_ID: StrategySpec(enabled=False)}


class StrategiesConfig(RootModel[dict[str, StrategySpec]]):
    """The desk's strategies by id, in the order given (the default conflict priority). The
    default runs S1 alone."""

    model_config = ConfigDict(frozen=True)
    root: dict[str, StrategySpec] = Field(default_factory=_default_strategies)

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo):
        bad = [sid for sid in self.root if not re.match(STRATEGY_ID_PATTERN, sid)]
        if bad:
            raise ValueError(f"strategy ids {bad} must be letters, digits, _ . - (at most 40)")
        config_dir = (info.context or {}).get("config_dir")
        errors = [err for sid, spec in self.root.items() for err in spec.resolve(sid, config_dir)]
        if errors:  # raised as a ValidationError, so each keeps its key path under strategies
            raise ValidationError.from_exception_data("StrategiesConfig", errors)
        return self

    def __getitem__(self, sid: str) -> StrategySpec:
        return self.root[sid]

    def __iter__(self):
        return iter(self.root)

    def items(self):
        return self.root.items()

    def enabled(self) -> dict[str, StrategySpec]:
        """Enabled strategies by id, in the order given."""
        return {sid: st for sid, st in self.root.items() if st.enabled}

    def enable(self, *sids: str) -> StrategiesConfig:
        """A copy with ``sids`` enabled (their classes and params stay resolved). Raises
        KeyError for an id the config does not have."""
        root = {sid: spec.model_copy(update={"enabled": True}) if sid in sids else spec
                for sid, spec in self.root.items()}
        missing = set(sids) - set(root)
        if missing:
            raise KeyError(f"no strategies {sorted(missing)} in this config")
        return StrategiesConfig.model_construct(root=root)


class RiskConfig(Strict):
    """Sizing, caps, conflict policy, drawdown guard and state-machine limits.

    Open-risk caps are fractions of current equity and bound the sum of the initial risk of
    open positions (plus the candidate order). ``max_notional_usd`` bounds the sum of open
    notional (base units valued in USD).
    """

    r_base: float = Field(0.005, gt=0, le=0.1)
    max_open_risk_frac_per_strategy: float = Field(0.02, gt=0, le=1)
    max_open_risk_frac_per_symbol: float = Field(0.01, gt=0, le=1)
    max_notional_usd: float = Field(5_000_000.0, gt=0)
    conflict_policy: Literal["priority", "netting"] = "priority"
    priority: list[str] = Field(default_factory=list)  # strategy ids, first wins; unlisted rank after, in config order
    dd_day_limit_frac: float = Field(0.02, gt=0, lt=1)
    dd_week_limit_frac: float = Field(0.05, gt=0, lt=1)
    max_drawdown_frac: float | None = Field(None, gt=0, lt=1)  # from the equity peak; halts until resumed
    day_roll_time: str = "17:00"
    day_roll_timezone: str = "America/New_York"
    max_hold_bars: int = Field(96, ge=1)
    max_execution_errors: int = Field(3, ge=1)
    degraded_risk_scale: float = Field(0.5, gt=0, le=1)
    clean_executions_to_recover: int = Field(5, ge=1)

    @field_validator("day_roll_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("day_roll_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hh, _, mm = v.partition(":")
        if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
            raise ValueError(f"day_roll_time {v!r} is not HH:MM")
        return v

    @field_validator("priority")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a strategy id is listed twice")
        return v


class SlippageConfig(Strict):
    """slippage_pips = slip_base_pips + slip_k_pips x TR(t+1) / ATR(t), x spike_mult when
    TR(t+1)/ATR(t) > spike_tr_atr_th in scenarios with spikes. ATR is Wilder's, atr_period bars."""

    slip_base_pips: float = Field(0.1, ge=0)
    slip_k_pips: float = Field(0.2, ge=0)
    atr_period: int = Field(14, ge=1)
    spike_tr_atr_th: float = Field(2.5, gt=0)
    spike_mult: float = Field(2.0, ge=1)


class ScenarioConfig(Strict):
    """A cost-stress level: spread x spread_mult; slippage x slippage_mult + slippage_add_pips."""

    spread_mult: float = Field(1.0, gt=0)
    slippage_mult: float = Field(1.0, ge=0)
    slippage_add_pips: float = Field(0.0, ge=0)
    spikes: bool = False

    def scaled(self, multiple: float) -> ScenarioConfig:
        """This scenario with its spread and slippage ``multiple`` times as large (spread_mult,
        slippage_mult and slippage_add_pips scaled; spikes as they are): the cost-stress axis of
        ``deskd stress``. ``multiple`` 1 is the scenario itself. Raises ValueError if
        ``multiple`` <= 0."""
        if not multiple > 0:
            raise ValueError(f"cost multiple must be > 0, got {multiple}")
        return self.model_copy(update={"spread_mult": self.spread_mult * multiple,
                                       "slippage_mult": self.slippage_mult * multiple,
                                       "slippage_add_pips": self.slippage_add_pips * multiple})


def _default_scenarios() -> dict[str, ScenarioConfig]:
    return {
        "A": ScenarioConfig(),
        "B": ScenarioConfig(spread_mult=1.3, slippage_add_pips=0.3),
        "C": ScenarioConfig(spread_mult=1.6, slippage_mult=1.8, spikes=True),
    }


class CostsConfig(Strict):
    """Per-side costs in pips: spread_pips / 2 + slippage_pips (both scaled by the scenario)."""

    spread_pips: dict[str, float] = Field(default_factory=dict)
    default_spread_pips: float = Field(1.0, ge=0)
    slippage: SlippageConfig = SlippageConfig()
    scenarios: dict[str, ScenarioConfig] = Field(default_factory=_default_scenarios)

    @field_validator("scenarios")
    @classmethod
    def _scenario_names(cls, v: dict[str, ScenarioConfig]) -> dict[str, ScenarioConfig]:
        bad = [k for k in v if not re.match(NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"scenario names {bad} must be letters, digits, _ . - (at most 32)")
        if not v:
            raise ValueError("at least one scenario is needed")
        return v

    @field_validator("spread_pips")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        for sym, pips in v.items():
            if pips < 0:
                raise ValueError(f"spread for {sym} is negative")
        return v


class HealthConfig(Strict):
    """Strategy health: each strategy's last ``window_trades`` closed trades against a
    reference profile (a backtest's report.json, or the strategy's own earlier trades).
    z-scores of the window's mean R-multiple and win rate against the profile: WEAKENING at
    z <= -weakening_z, OUT_OF_PROFILE at |z| >= out_of_profile_z (either side: a live
    strategy far better than its backtest is as suspect as one far worse)."""

    window_trades: int = Field(30, ge=5)
    min_trades: int = Field(10, ge=2)
    weakening_z: float = Field(1.0, gt=0)
    out_of_profile_z: float = Field(2.0, gt=0)
    reference_report: str | None = None   # report.json of a backtest; relative to the config file
    reference_scenario: str = "A"
    snapshot_every_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _order(self):
        if self.min_trades > self.window_trades:
            raise ValueError("min_trades must not exceed window_trades")
        if self.out_of_profile_z <= self.weakening_z:
            raise ValueError("out_of_profile_z must be larger than weakening_z")
        return self


TUNE_OBJECTIVES = ("expectancy_r", "sharpe_r", "profit_factor", "net_usd")


def _default_vol_sets() -> list[list[VolRegime] | None]:
    return [None, ["LOW", "MID"], ["MID", "HIGH"]]


class FilterTuneConfig(Strict):
    """``deskd tune --filters``: the candidate grid of entry filters and the weights of its
    penalised score (the command line gives the walk-forward splits).

    Candidates are the product of the lists (``null`` in a list: that part off). Thresholds are
    quantile levels (0..1), turned into absolute values per split over the TRAIN window's bars
    only: ``adx_min_q`` (ADX(``adx_period``) minimum), ``atr_pct_band_q`` ([q_lo, q_hi] of
    ATR(``atr_pct_period``) / close x 100); ``vol_regimes`` (subsets of LOW, MID, HIGH),
    ``block_spike`` and ``hours_utc`` (named sets of UTC hours, ``null``: every hour) are used
    as they are. Per split the candidate trades the test window on the event path, and
    split score = expectancy_r - ``lambda_dd`` x |max DD fraction| - ``mu_dd_days`` x longest
    drawdown (days) - ``nu_cost`` x cost sensitivity, where cost sensitivity (R per trade) =
    expectancy_r under the base scenario (tune.stage1_scenario) - expectancy_r under it scaled
    ``cost_stress_multiple`` times (:meth:`ScenarioConfig.scaled`). A split with fewer than
    ``min_trades_per_split`` trades makes the candidate ineligible. Candidate score = mean -
    std (ddof 1) of its split scores."""

    adx_period: int = Field(14, ge=1, le=MAX_WINDOW_BARS)
    adx_min_q: list[Annotated[float, Field(ge=0, le=1)] | None] = Field(
        default_factory=lambda: [None, 0.5, 0.75], min_length=1)
    atr_pct_period: int = Field(14, ge=1, le=MAX_WINDOW_BARS)
    atr_pct_band_q: list[tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] | None] = (
        Field(default_factory=lambda: [None, (0.1, 0.9)], min_length=1))
    vol_regimes: list[list[VolRegime] | None] = Field(default_factory=lambda: _default_vol_sets(), min_length=1)
    block_spike: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    hours_utc: dict[str, list[Annotated[int, Field(ge=0, le=23)]] | None] = Field(
        default_factory=lambda: {"all": None, "london_ny": list(range(7, 21))}, min_length=1)
    lambda_dd: float = Field(1.0, ge=0)        # R per unit of max drawdown fraction
    mu_dd_days: float = Field(0.005, ge=0)     # R per day of the longest drawdown
    nu_cost: float = Field(1.0, ge=0)          # R per R of cost sensitivity
    cost_stress_multiple: float = Field(2.0, gt=1)
    min_trades_per_split: int = Field(5, ge=1)

    @field_validator("atr_pct_band_q")
    @classmethod
    def _bands(cls, v: list[tuple[float, float] | None]) -> list[tuple[float, float] | None]:
        for band in v:
            if band is not None and band[0] >= band[1]:
                raise ValueError(f"band {list(band)}: q_lo must be below q_hi")
        return v

    @field_validator("vol_regimes")
    @classmethod
    def _vol_sets(cls, v: list[list[str] | None]) -> list[list[str] | None]:
        for regimes in v:  # each set becomes a FiltersConfig.vol_regimes: non-empty, no repeats
            if regimes is not None and (not regimes or len(set(regimes)) != len(regimes)):
                raise ValueError(f"regime set {regimes}: give each of LOW, MID, HIGH at most once, at least one "
                                 f"(null means every regime)")
        return v

    @field_validator("hours_utc")
    @classmethod
    def _hour_sets(cls, v: dict[str, list[int] | None]) -> dict[str, list[int] | None]:
        for name, hours in v.items():
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"hour set name {name!r}: letters, digits, _ . - (at most 32)")
            if hours is not None and not hours:
                raise ValueError(f"hour set {name!r} is empty (null means every hour)")
            _check_hours(hours)
        return v

    @property
    def size(self) -> int:
        """The number of candidates (the product of the lists' lengths)."""
        return (len(self.adx_min_q) * len(self.atr_pct_band_q) * len(self.vol_regimes)
                * len(self.block_spike) * len(self.hours_utc))


class TuneConfig(Strict):
    """``deskd tune``'s settings (the command line overrides each).

    The score of a parameter point is robust over time: the in-sample window is cut into
    ``splits`` consecutive segments of equal calendar length, ``objective`` is measured per
    segment on the trades entered in it, and score = mean - sample std (ddof 1) of the segment
    values - ``dd_penalty`` x the run's max drawdown (fraction of peak equity). A segment with
    fewer than ``min_trades_per_split`` trades makes the point ineligible (no score, ranked
    last, counted). Objectives and units: ``expectancy_r`` (R per trade), ``sharpe_r``
    (mean / std of the trades' R, per trade, not annualised), ``profit_factor`` (gross profit
    / gross loss, capped at ``pf_cap``; no losses counts as the cap), ``net_usd`` (USD).
    Stage 1 scores every point under ``stage1_scenario``; stage 2 re-runs the ``top_k`` best
    under each of ``stage2_scenarios`` through the event path and ranks by the worst. Left out,
    they are filled in from the config's ``costs.scenarios`` when it validates: B (the desk's
    usual screening costs) or the first scenario there is, and every scenario."""

    space: dict[str, dict[str, Dimension]] = Field(default_factory=dict)
    objective: Literal["expectancy_r", "sharpe_r", "profit_factor", "net_usd"] = "expectancy_r"
    splits: int = Field(4, ge=2, le=100)
    min_trades_per_split: int = Field(5, ge=0)
    dd_penalty: float = Field(0.0, ge=0)
    pf_cap: float = Field(5.0, gt=1)
    stage1_scenario: str = ""  # "": B when the config has it, else its first scenario
    stage2_scenarios: list[str] = Field(default_factory=list)  # []: every scenario of the config
    top_k: int = Field(10, ge=1, le=1000)
    seed: int = 42
    filters: FilterTuneConfig = FilterTuneConfig()


class VerdictConfig(Strict):
    """The gates ``deskd verdict`` holds a strategy's research to before it trades capital
    (every gate must pass):

    * ``oos_expectancy_r_min``: the walk-forward's out-of-sample expectancy (R per trade) under
      ``oos_scenario`` ("": the run's last stage-2 scenario, C by default: the costliest of
      the desk's usual three) must be above it;
    * ``dsr_min``: the Deflated Sharpe Ratio (Bailey & Lopez de Prado 2014) of the chosen point,
      the median over the walk-forward's splits, must be above it;
    * ``pbo_max``: the Probability of Backtest Overfitting (Bailey, Borwein, Lopez de Prado &
      Zhu 2017, CSCV), the median over splits, must be below it;
    * ``p_week_breach_max``: the Monte Carlo probability that a week's drawdown reaches
      ``risk.dd_week_limit_frac`` (daily bootstrap) must be below it;
    * ``break_even_cost_multiple_min``: ``deskd stress``'s break-even cost multiple must be at
      least it;
    * ``profitable_neighbours_min_frac``: the share of ``deskd stress``'s param neighbours with
      a positive expectancy must be at least it.

    The Monte Carlo and stress evidence counts when made under ``evidence_scenario`` ("": the
    run's first scenario, A by default: the desk's normal costs, which the break-even multiple
    scales). Thresholds are in each gate's unit: R per trade, a probability 0..1, a multiple."""

    oos_expectancy_r_min: float = 0.0
    oos_scenario: str = ""
    dsr_min: float = Field(0.95, ge=0, le=1)
    pbo_max: float = Field(0.5, ge=0, le=1)
    p_week_breach_max: float = Field(0.05, ge=0, le=1)
    break_even_cost_multiple_min: float = Field(1.5, gt=0)
    profitable_neighbours_min_frac: float = Field(0.6, ge=0, le=1)
    evidence_scenario: str = ""


class DeskConfig(Strict):
    """The whole desk config (one YAML file). ``desk`` names the desk in client order ids, so
    it is restricted to letters, digits, ``_ . -`` (as are scenario names)."""

    desk: str = Field("desk", pattern=NAME_PATTERN)
    account: AccountConfig = AccountConfig()
    universe: UniverseConfig
    data: DataConfig = DataConfig()
    bar_contract: BarContractConfig = BarContractConfig()
    regime: RegimeConfig = RegimeConfig()
    strategies: StrategiesConfig = Field(default_factory=StrategiesConfig)  # built lazily: it imports S1-S3
    risk: RiskConfig = RiskConfig()
    costs: CostsConfig = CostsConfig()
    health: HealthConfig = HealthConfig()
    tune: TuneConfig = TuneConfig()
    verdict: VerdictConfig = VerdictConfig()

    @model_validator(mode="after")
    def _cross_checks(self):
        universe = set(self.universe.symbols)
        for sid, st in self.strategies.enabled().items():
            for s in st.symbols or []:
                if s not in universe:
                    raise ValueError(f"strategies.{sid}.symbols: {s} is not in universe.symbols")
        for where, syms in (("data.files", self.data.files), ("data.timezones", self.data.timezones),
                            ("costs.spread_pips", self.costs.spread_pips)):
            for s in syms:
                if s not in universe:
                    raise ValueError(f"{where}: {s} is not in universe.symbols")
        if not self.strategies.enabled():
            raise ValueError("strategies: no strategy is enabled")
        unknown = [sid for sid in self.risk.priority if sid not in self.strategies.root]
        if unknown:
            raise ValueError(f"risk.priority: {unknown} are not strategy ids of this config "
                             f"({', '.join(self.strategies.root)})")
        self._check_tune()
        return self

    def _check_tune(self) -> None:
        names = list(self.costs.scenarios)
        if not self.tune.stage1_scenario or not self.tune.stage2_scenarios:
            filled = self.tune.model_copy(update={
                "stage1_scenario": self.tune.stage1_scenario or ("B" if "B" in names else names[0]),
                "stage2_scenarios": self.tune.stage2_scenarios or names})
            object.__setattr__(self, "tune", filled)  # the resolved config says what a tune will run
        t = self.tune
        for where, names in (("tune.stage1_scenario", [t.stage1_scenario]), ("tune.stage2_scenarios", t.stage2_scenarios)):
            for n in names:
                if n not in self.costs.scenarios:
                    raise ValueError(f"{where}: unknown scenario {n!r} (costs.scenarios: {', '.join(self.costs.scenarios)})")
        for sid, dims in t.space.items():
            if sid not in self.strategies.root:
                raise ValueError(f"tune.space.{sid}: not a strategy id of this config ({', '.join(self.strategies.root)})")
            params = self.strategies[sid].strategy_class.Params.model_fields
            for name in dims:
                group, _, field = name.rpartition(".")
                known = StopsConfig.model_fields if group == "stops" else params if not group else {}
                if field not in known:
                    raise ValueError(f"tune.space.{sid}.{name}: not a param of {sid} ({', '.join(params)}) "
                                     f"nor a bracket setting (stops.{', stops.'.join(StopsConfig.model_fields)})")

    def with_scaled_scenario(self, base: str, multiple: float) -> tuple[str, DeskConfig]:
        """(name, this config with one more cost scenario): ``base`` scaled ``multiple`` times
        (:meth:`ScenarioConfig.scaled`), named ``<base>x<multiple>`` (``Bx2``); ``multiple`` 1
        is ``base`` itself. Raises KeyError for an unknown ``base``, ValueError for a multiple
        <= 0 or a config that already has a different scenario of that name."""
        scn = self.costs.scenarios[base]
        if multiple == 1.0:
            return base, self
        name = f"{base}x{multiple:g}"
        scaled = scn.scaled(multiple)
        have = self.costs.scenarios.get(name)
        if have is not None and have != scaled:
            raise ValueError(f"costs.scenarios.{name} exists and is not {base} x {multiple:g}: rename it")
        costs = self.costs.model_copy(update={"scenarios": {**self.costs.scenarios, name: scaled}})
        return name, self.model_copy(update={"costs": costs})

    def strategy_symbols(self, sid: str) -> list[str]:
        return list(self.strategies[sid].symbols or self.universe.symbols)
