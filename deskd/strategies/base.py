"""What every strategy shares: the per-symbol contract and bracket sizing."""

from __future__ import annotations

from deskd.configs.models import StopsConfig
from deskd.core.events import BarClosed, SignalIntent
from deskd.strategies.regime import RegimeTagger

_new = tuple.__new__  # builds the NamedTuple without its Python-level __new__ (hot path)


class Strategy:
    """One strategy on one symbol. ``on_bar`` is called once per closed bar of that symbol,
    after the symbol's shared indicators were updated, and returns a SignalIntent or None.
    It may use only bars <= t: every input is an incremental indicator."""

    strategy_id: str = ""

    def __init__(self, symbol: str, pip_size: float, stops: StopsConfig, regime: RegimeTagger):
        self.symbol = symbol
        self.pip_size = pip_size
        self.regime = regime
        self.k_sl = stops.k_sl
        self.min_sl_pips = stops.min_sl_pips
        self.k_tp = stops.k_tp
        self.min_tp_pips = stops.min_tp_pips

    def on_bar(self, bar: BarClosed) -> SignalIntent | None:  # pragma: no cover - interface
        raise NotImplementedError

    def signal(self, bar: BarClosed, side: int, atr_price: float, score_name: str,
               score: float) -> SignalIntent:
        """Build the intent with its bracket: sl_pips = max(k_sl x ATR_pips, min_sl_pips),
        tp_pips = max(k_tp x ATR_pips, min_tp_pips) or None when k_tp is unset."""
        atr_pips = atr_price / self.pip_size
        sl = max(self.k_sl * atr_pips, self.min_sl_pips)
        tp = None if self.k_tp is None else max(self.k_tp * atr_pips, self.min_tp_pips)
        return _new(SignalIntent, (bar.bar_ts, self.symbol, self.strategy_id, side, sl, tp,
                                   atr_pips, self.regime.tag, score_name, score))
