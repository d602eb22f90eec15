"""Pydantic v2 models of the whole desk config.

Every model forbids unknown keys, so a typo is an error that names its key path rather than a
setting silently ignored. Units are in the field names (``_pips``, ``_usd``, ``_frac``, ``_bars``).
"""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    """Base: unknown keys rejected, values checked on assignment, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_tz(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {name!r} (e.g. UTC, America/New_York, "
                         f"Europe/Athens)") from None
    return name


class AccountConfig(Strict):
    """The trading account. Only USD accounts are supported: every conversion targets USD."""

    currency: Literal["USD"] = "USD"
    starting_equity_usd: float = Field(100_000.0, gt=0)


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
    time is often Europe/Athens; HistData is America/New_York).
    """

    timezone: str = "UTC"
    files: dict[str, str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_tz(v)


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


class StrategyBase(Strict):
    enabled: bool = True
    symbols: list[str] | None = None  # None: every symbol of the universe
    max_hold_bars: int | None = Field(None, ge=1)  # None: risk.max_hold_bars
    stops: StopsConfig = StopsConfig()


class S1Params(Strict):
    ema_fast: int = Field(20, ge=1)
    ema_slow: int = Field(50, ge=2)
    adx_period: int = Field(14, ge=1)
    adx_th: float = Field(25.0, ge=0, le=100)
    atr_period: int = Field(14, ge=1)

    @model_validator(mode="after")
    def _fast_below_slow(self):
        if self.ema_fast >= self.ema_slow:
            raise ValueError("ema_fast must be shorter than ema_slow")
        return self


class S2Params(Strict):
    ema_regime: int = Field(200, ge=2)
    slope_window: int = Field(20, ge=2)
    slope_th_pips_per_bar: float = Field(0.5, gt=0)
    z_window: int = Field(30, ge=2)
    z_entry: float = Field(2.0, gt=0)
    adx_period: int = Field(14, ge=1)
    adx_max: float = Field(20.0, ge=0, le=100)
    atr_period: int = Field(14, ge=1)


class S3Params(Strict):
    atr_period: int = Field(14, ge=1)
    compression_window: int = Field(50, ge=2)
    compression_z_low: float = -0.5
    breakout_window: int = Field(20, ge=1)
    ema_trend: int = Field(200, ge=2)


class S1Config(StrategyBase):
    params: S1Params = S1Params()


class S2Config(StrategyBase):
    enabled: bool = False
    params: S2Params = S2Params()
    stops: StopsConfig = StopsConfig(k_sl=1.5, min_sl_pips=8.0, k_tp=1.5, min_tp_pips=8.0)


class S3Config(StrategyBase):
    enabled: bool = False
    params: S3Params = S3Params()
    stops: StopsConfig = StopsConfig(k_sl=1.5, min_sl_pips=10.0, k_tp=3.0, min_tp_pips=15.0)


class StrategiesConfig(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    S1_TREND_EMA_ATR_ADX: S1Config = S1Config()
    S2_MR_ZSCORE_EMA_REGIME: S2Config = S2Config()
    S3_BREAKOUT_ATR_REGIME_EMA200: S3Config = S3Config()

    def enabled(self) -> dict[str, StrategyBase]:
        """Enabled strategies by id, in declaration order (S1, S2, S3)."""
        return {sid: getattr(self, sid) for sid in STRATEGY_IDS if getattr(self, sid).enabled}


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
    priority: list[str] = Field(default_factory=lambda: list(STRATEGY_IDS))
    dd_day_limit_frac: float = Field(0.02, gt=0, lt=1)
    dd_week_limit_frac: float = Field(0.05, gt=0, lt=1)
    day_roll_time: str = "17:00"
    day_roll_timezone: str = "America/New_York"
    max_hold_bars: int = Field(96, ge=1)
    max_execution_errors: int = Field(3, ge=1)
    degraded_risk_scale: float = Field(0.5, gt=0, le=1)
    clean_executions_to_recover: int = Field(5, ge=1)

    @field_validator("day_roll_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_tz(v)

    @field_validator("day_roll_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hh, _, mm = v.partition(":")
        if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
            raise ValueError(f"day_roll_time {v!r} is not HH:MM")
        return v

    @field_validator("priority")
    @classmethod
    def _known_ids(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in STRATEGY_IDS]
        if unknown:
            raise ValueError(f"unknown strategy ids {unknown}; known: {list(STRATEGY_IDS)}")
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


class DeskConfig(Strict):
    """The whole desk config (one YAML file). ``desk`` names the desk in client order ids, so
    it is restricted to letters, digits, ``_ . -`` (as are scenario names)."""

    desk: str = Field("desk", pattern=NAME_PATTERN)
    account: AccountConfig = AccountConfig()
    universe: UniverseConfig
    data: DataConfig = DataConfig()
    bar_contract: BarContractConfig = BarContractConfig()
    regime: RegimeConfig = RegimeConfig()
    strategies: StrategiesConfig = StrategiesConfig()
    risk: RiskConfig = RiskConfig()
    costs: CostsConfig = CostsConfig()
    health: HealthConfig = HealthConfig()

    @model_validator(mode="after")
    def _cross_checks(self):
        universe = set(self.universe.symbols)
        for sid, st in self.strategies.enabled().items():
            for s in st.symbols or []:
                if s not in universe:
                    raise ValueError(f"strategies.{sid}.symbols: {s} is not in universe.symbols")
        for where, syms in (("data.files", self.data.files), ("costs.spread_pips", self.costs.spread_pips)):
            for s in syms:
                if s not in universe:
                    raise ValueError(f"{where}: {s} is not in universe.symbols")
        if not self.strategies.enabled():
            raise ValueError("strategies: no strategy is enabled")
        return self

    def strategy_symbols(self, sid: str) -> list[str]:
        st = getattr(self.strategies, sid)
        return list(st.symbols or self.universe.symbols)
