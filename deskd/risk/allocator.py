"""Risk allocator: size an order from its stop and check it against the caps.

risk_usd = r_base x equity_usd x state_scale;
units = floor(risk_usd / (sl_pips x pip_size x quote_usd)), quote_usd being the USD value of
one unit of the quote currency (:mod:`deskd.core.money`); the booked risk_usd is recomputed
from the whole units. Notional (USD) = units x price x quote_usd.

Caps bound OPEN risk: the initial risk of open positions and pending entries plus the new
order, per strategy and per symbol as fractions of equity, and open notional in USD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deskd.configs.models import RiskConfig
from deskd.core.money import Instrument, QuoteConverter

# Caps are compared with this relative slack, so that an order sized to exactly the cap
# (r_base equal to a cap fraction) is not refused by floating-point rounding.
_CAP_RTOL = 1e-9


@dataclass(frozen=True, slots=True)
class Allocation:
    """``units`` > 0 and the planned ``risk_usd`` / ``notional_usd``, or ``skip`` naming the cap."""

    units: float
    risk_usd: float
    notional_usd: float
    skip: str | None = None


class Allocator:
    """Sizes entries and tracks open risk and notional until each position is closed."""

    def __init__(self, cfg: RiskConfig, instruments: dict[str, Instrument], conv: QuoteConverter):
        self.cfg = cfg
        self.instruments = instruments
        self.conv = conv
        self.risk_by_strategy: dict[str, float] = {}
        self.risk_by_symbol: dict[str, float] = {}
        self.notional_usd = 0.0
        self._open: dict[str, tuple[str, str, float, float]] = {}

    def size(self, symbol: str, strategy_id: str, sl_pips: float, price: float,
             equity_usd: float, scale: float = 1.0) -> Allocation:
        """Size an entry decided at ``price``; the caps use ``equity_usd`` (marked to market)."""
        ins = self.instruments[symbol]
        quote_usd = self.conv.quote_usd(symbol, price)
        per_unit_risk = sl_pips * ins.pip_size * quote_usd
        units = math.floor(self.cfg.r_base * equity_usd * scale / per_unit_risk)
        if units < 1:
            return Allocation(0, 0.0, 0.0, "size:zero_units")
        risk = units * per_unit_risk
        notional = units * price * quote_usd
        c = self.cfg
        slack = 1.0 + _CAP_RTOL
        if self.risk_by_strategy.get(strategy_id, 0.0) + risk > c.max_open_risk_frac_per_strategy * equity_usd * slack:
            return Allocation(units, risk, notional, "cap:strategy_open_risk")
        if self.risk_by_symbol.get(symbol, 0.0) + risk > c.max_open_risk_frac_per_symbol * equity_usd * slack:
            return Allocation(units, risk, notional, "cap:symbol_open_risk")
        if self.notional_usd + notional > c.max_notional_usd * slack:
            return Allocation(units, risk, notional, "cap:notional_usd")
        return Allocation(units, risk, notional)

    def book(self, order_id: str, symbol: str, strategy_id: str, risk_usd: float,
             notional_usd: float) -> None:
        """Count an accepted entry against the caps until :meth:`release`."""
        self._open[order_id] = (strategy_id, symbol, risk_usd, notional_usd)
        self.risk_by_strategy[strategy_id] = self.risk_by_strategy.get(strategy_id, 0.0) + risk_usd
        self.risk_by_symbol[symbol] = self.risk_by_symbol.get(symbol, 0.0) + risk_usd
        self.notional_usd += notional_usd

    def notional_by_order(self) -> dict[str, float]:
        """USD notional booked against the caps, by client order id (for the desk's snapshot)."""
        return {oid: booked[3] for oid, booked in self._open.items()}

    def release(self, order_id: str) -> None:
        """The position opened by ``order_id`` closed (or the order was cancelled)."""
        got = self._open.pop(order_id, None)
        if got is None:
            return
        sid, sym, risk, notional = got
        self.risk_by_strategy[sid] -= risk
        self.risk_by_symbol[sym] -= risk
        self.notional_usd -= notional
        if not self._open:  # no drift: an empty book is exactly zero
            self.risk_by_strategy.clear()
            self.risk_by_symbol.clear()
            self.notional_usd = 0.0
