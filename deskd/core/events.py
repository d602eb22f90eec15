"""The desk's events: small immutable records, each carrying the bar time it belongs to.

``bar_ts`` is always the OPEN time of the bar the event belongs to, in integer seconds since
the Unix epoch, UTC (files stamp bars at their open; a bar closes at ``bar_ts + timeframe_s``).
Prices are in quote currency, distances in pips, money in USD unless a name says otherwise.

``BarClosed``, ``SignalIntent`` and ``Decision`` are NamedTuples rather than frozen dataclasses
because they are built on the per-bar path (a trend strategy signals on a large share of bars):
they are just as immutable and cost a fifth as much to create.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import NamedTuple

NAN = float("nan")


class Side(IntEnum):
    """A position's or order's direction; the sign multiplies price moves into P&L."""

    LONG = 1
    SHORT = -1


LONG = Side.LONG
SHORT = Side.SHORT
SIDE_NAME: dict[int, str] = {LONG: "LONG", SHORT: "SHORT"}


class ExitReason(StrEnum):
    """Why a position closed, as trades.csv and the store write it."""

    SL = "SL"                          # the bracket's stop-loss
    TP = "TP"                          # the bracket's take-profit
    TIME = "TIME"                      # max_hold_bars reached
    EOD = "EOD"                        # end of replayed data
    FLATTEN = "FLATTEN"                # an operator's flatten
    MARKET = "MARKET"                  # a market exit without a more specific reason
    MARGIN_CLOSEOUT = "MARGIN_CLOSEOUT"  # the broker closed it for margin
    BROKER_CLOSE = "BROKER_CLOSE"      # closed at the broker by hand, booked by an operator


class DecisionAction(StrEnum):
    TRADED = "TRADED"
    SKIPPED = "SKIPPED"


class BarClosed(NamedTuple):
    """A bar has closed. Prices in quote currency; volume as the source gives it."""

    symbol: str
    timeframe_s: int
    bar_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def close_ts(self) -> int:
        return self.bar_ts + self.timeframe_s


class SignalIntent(NamedTuple):
    """A strategy wants a position: decided at the close of bar ``bar_ts``.

    ``side`` is LONG (+1) or SHORT (-1); ``tp_pips`` is None when the strategy sets no target.
    ``atr_pips`` is the strategy's ATR at the decision, ``regime`` the symbol's regime tag,
    ``score`` the value of the strategy's deciding metric named ``score_name`` (S1: adx).
    """

    bar_ts: int
    symbol: str
    strategy_id: str
    side: int
    sl_pips: float
    tp_pips: float | None
    atr_pips: float
    regime: str
    score_name: str
    score: float

    @property
    def why(self) -> str:
        """The reason code written to the trade log, e.g. ``adx=31.42``."""
        return f"{self.score_name}={self.score:.2f}"


class Intent(StrEnum):
    ENTRY = "ENTRY"
    EXIT = "EXIT"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A market order the desk sends, to fill at the open of the bar after ``bar_ts``.

    Entries carry the bracket (``sl_pips``, ``tp_pips``, distances from the fill price),
    ``risk_usd`` (the planned loss at the stop) and ``notional_usd`` booked against the caps,
    and the decision's ``regime`` tag and ``why`` reason code for the trade log. Exits carry
    ``exit_reason`` (TIME, EOD, FLATTEN).
    """

    client_order_id: str
    bar_ts: int
    symbol: str
    strategy_id: str
    side: int
    units: float
    intent: Intent
    sl_pips: float | None = None
    tp_pips: float | None = None
    risk_usd: float = 0.0
    exit_reason: ExitReason | None = None
    notional_usd: float = 0.0
    regime: str = ""
    why: str = ""

    def bracket_pips(self) -> tuple[float, float | None]:
        """(stop-loss, take-profit) distances of an entry from its fill, in pips; the target is
        None when the strategy set none. Raises ValueError for an order without a stop (an exit)."""
        if self.sl_pips is None:
            raise ValueError(f"order {self.client_order_id}: {self.intent} carries no bracket")
        return self.sl_pips, self.tp_pips


@dataclass(frozen=True, slots=True)
class OrderRejected:
    """The broker refused an order, or could not be reached about it (an execution error)."""

    bar_ts: int
    client_order_id: str
    reason: str
    symbol: str | None = None
    intent: Intent | None = None


@dataclass(frozen=True, slots=True)
class OrderUnknown:
    """The broker never confirmed what became of an order (every answer and lookup was lost):
    neither filled nor rejected, until a later lookup says which."""

    bar_ts: int
    client_order_id: str
    reason: str
    symbol: str
    intent: Intent


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """An order left unfilled was withdrawn (end of replayed data, operator)."""

    bar_ts: int
    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Fill:
    """An order (or a resting stop-loss / take-profit) filled during bar ``bar_ts`` (the open
    time of the bar it belongs to), at ``fill_ts`` (UTC epoch seconds: a paper fill is stamped
    at its bar's open, an end-of-data close at the last close, a broker fill at the broker's
    time).

    ``ref_price`` is the market level (bar open, stop or target level) before costs;
    ``price`` the fill price after ``cost_pips`` (per side) were charged against the trader.
    Its split, where known: ``spread_pips`` (the half spread paid) + ``slippage_pips`` (the
    rest) == ``cost_pips``, and ``spike`` whether the spike multiplier applied to the
    slippage. A paper fill always knows them; a broker fill only when the broker reports its
    bid and ask (None: not reported, never assumed).
    """

    bar_ts: int
    fill_ts: int
    client_order_id: str
    symbol: str
    strategy_id: str
    side: int
    units: float
    intent: Intent
    ref_price: float
    price: float
    cost_pips: float
    exit_reason: ExitReason | None = None
    sl_price: float | None = None
    tp_price: float | None = None
    spread_pips: float | None = None
    slippage_pips: float | None = None
    spike: bool | None = None


@dataclass(frozen=True, slots=True)
class PositionClosed:
    """A position closed; ``trade`` is the finished trade-log row."""

    bar_ts: int
    trade: Trade


@dataclass(frozen=True, slots=True)
class StateChanged:
    bar_ts: int
    old: str
    new: str
    trigger: str
    reason: str


class Decision(NamedTuple):
    """What the desk did with one signal: TRADED, or SKIPPED with ``reason`` (the gate that
    blocked it: ``position_open``, ``conflict:...``, ``guard:...``, ``filter:...``...).

    Its context, as the strategy decided (fields at the end, with defaults, so a Decision
    built positionally without them still is one): ``decision_price`` the decision bar's close
    (quote currency; NaN: not known; the store's decisions column and decisions.parquet's
    column have the same name), ``atr_pips`` the ATR the strategy sized its stops with
    (SignalIntent.atr_pips), ``score_name`` / ``score`` its deciding metric (SignalIntent's;
    :attr:`why` formats them as the trade log's reason code).
    """

    bar_ts: int
    symbol: str
    strategy_id: str
    side: int
    action: DecisionAction
    reason: str
    sl_pips: float
    tp_pips: float | None
    regime: str
    client_order_id: str | None = None
    decision_price: float = NAN
    atr_pips: float = NAN
    score_name: str = ""
    score: float = NAN

    @property
    def why(self) -> str:
        """The strategy's reason code, as trades.csv's ``reason_codes`` writes it
        (``adx=31.42``); "" without a score name."""
        return f"{self.score_name}={self.score:.2f}" if self.score_name else ""


@dataclass(slots=True)
class Trade:
    """One round trip, as written to trades.csv. Times are UTC epoch seconds; pips and USD
    as named. ``signal_ts`` is the close of the decision bar; ``fill_ts``/``exit_ts`` the time
    of the fill (bar open for market orders, the bar's open time for in-bar stops/targets)."""

    trade_id: int
    symbol: str
    strategy_id: str
    side: int
    units: float
    signal_ts: int
    fill_ts: int
    entry_price: float
    entry_ref_price: float
    sl_price: float
    tp_price: float | None
    risk_usd: float
    entry_cost_pips: float
    regime: str
    why: str
    client_order_id: str
    exit_ts: int = 0
    exit_price: float = 0.0
    exit_ref_price: float = 0.0
    exit_reason: str = ""
    exit_cost_pips: float = 0.0
    gross_pips: float = 0.0
    cost_pips: float = 0.0
    pnl_pips: float = 0.0
    pnl_usd: float = 0.0
    r_multiple: float = 0.0
    mae_pips: float = 0.0
    mfe_pips: float = 0.0
    hold_bars: int = 0
    entry_spread_pips: float | None = None    # the entry fill's cost split (Fill); None: not reported
    entry_slippage_pips: float | None = None
    entry_spike: bool | None = None
    exit_spread_pips: float | None = None     # the exit fill's
    exit_slippage_pips: float | None = None
    exit_spike: bool | None = None
