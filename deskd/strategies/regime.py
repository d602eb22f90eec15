"""Regime tags of a symbol at a bar close: ``VOL=LOW|MID|HIGH|UNKNOWN`` and ``SPIKE=0|1``.

* VOL: z-score of ATR% (= ATR / close x 100) over the last ``vol_z_window`` bars; LOW below
  ``vol_z_low``, HIGH above ``vol_z_high``, MID between, UNKNOWN while undefined (warm-up).
* SPIKE: 1 when the bar's true range exceeds ``spike_tr_atr_th`` x the ATR before that bar
  (TR(t) / ATR(t-1), so a spike does not dilute its own yardstick).
"""

from __future__ import annotations

from deskd.strategies.indicators import IndicatorBook

_VOLS = ("UNKNOWN", "LOW", "MID", "HIGH")


class RegimeTagger:
    """Per-symbol regime read from the symbol's indicator book (ATR and ATR% z-score, which
    the book updates each bar); the tag is built only when asked for."""

    __slots__ = ("atr", "z", "z_low", "z_high", "spike_th")

    def __init__(self, book: IndicatorBook, atr_period: int, vol_z_window: int,
                 vol_z_low: float, vol_z_high: float, spike_tr_atr_th: float):
        self.atr = book.atr(atr_period)
        self.z = book.atr_pct_z(atr_period, vol_z_window)
        self.z_low = vol_z_low
        self.z_high = vol_z_high
        self.spike_th = spike_tr_atr_th

    @property
    def vol(self) -> str:
        """The VOL part of the tag: LOW, MID, HIGH, or UNKNOWN while the z-score is undefined."""
        z = self.z.value
        return _VOLS[0 if z != z else 1 if z < self.z_low else 3 if z > self.z_high else 2]

    @property
    def spike(self) -> bool:
        """The SPIKE part of the tag: TR(t) > spike_tr_atr_th x ATR(t-1) (False while undefined)."""
        atr = self.atr
        return atr.tr > self.spike_th * atr.prev_value

    @property
    def tag(self) -> str:
        """The current tag, e.g. ``VOL=MID|SPIKE=0`` (:attr:`vol` and :attr:`spike`)."""
        return f"VOL={self.vol}|SPIKE={int(self.spike)}"
