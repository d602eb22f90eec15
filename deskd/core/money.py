"""The money model: pip sizes and the one place where quote currency becomes USD.

A pair's pip size comes only from :class:`Instrument` (price distance = pips x pip_size);
every conversion from a quote currency to the account currency (USD) goes through
:class:`QuoteConverter`, so a number can only be in one unit.
"""

from __future__ import annotations

from dataclasses import dataclass

ACCOUNT_CCY = "USD"


@dataclass(frozen=True, slots=True)
class Instrument:
    """An FX pair ``BASEQUOTE`` (e.g. EURUSD: base EUR, quote USD).

    ``pip_size`` is in quote currency per base unit: 0.01 when the quote is JPY, else 0.0001.
    """

    symbol: str
    base: str
    quote: str
    pip_size: float

    @classmethod
    def parse(cls, symbol: str) -> Instrument:
        """Build an instrument from a six-letter symbol such as ``EURUSD``.

        Raises ValueError when the symbol is not six ASCII letters.
        """
        if len(symbol) != 6 or not symbol.isascii() or not symbol.isalpha() or not symbol.isupper():
            raise ValueError(f"symbol {symbol!r} is not a six-letter upper-case FX pair like EURUSD")
        quote = symbol[3:]
        return cls(symbol, symbol[:3], quote, 0.01 if quote == "JPY" else 0.0001)

    @property
    def price_decimals(self) -> int:
        """Decimals of a quoted price: a tenth of a pip (5, or 3 for JPY-quoted pairs)."""
        return 3 if self.quote == "JPY" else 5

    def round_price(self, price: float) -> float:
        """``price`` on the quote grid (a tenth of a pip): where a broker puts a stop or target."""
        return round(price, self.price_decimals)


class QuoteConverter:
    """Value in USD of one unit of each instrument's quote currency, from the latest prices.

    For a pair quoted in USD (EURUSD) one quote unit is worth 1 USD. For a pair whose base is
    USD (USDJPY) one quote unit is worth ``1 / price`` USD, at that pair's own price. For a cross
    (EURGBP) the universe must hold a pair linking the quote to USD (GBPUSD or USDGBP); its last
    close is used. Raises ValueError at construction when no such pair is in the universe.
    """

    def __init__(self, instruments: dict[str, Instrument]):
        self._route: dict[str, tuple[str | None, bool]] = {}
        for sym, ins in instruments.items():
            if ins.quote == ACCOUNT_CCY:
                self._route[sym] = (None, False)
            elif ins.base == ACCOUNT_CCY:
                self._route[sym] = (sym, True)
            elif ins.quote + ACCOUNT_CCY in instruments:
                self._route[sym] = (ins.quote + ACCOUNT_CCY, False)
            elif ACCOUNT_CCY + ins.quote in instruments:
                self._route[sym] = (ACCOUNT_CCY + ins.quote, True)
            else:
                raise ValueError(
                    f"{sym}: no pair in the universe converts {ins.quote} to {ACCOUNT_CCY}; "
                    f"add {ins.quote}{ACCOUNT_CCY} or {ACCOUNT_CCY}{ins.quote}"
                )
        self.last_price: dict[str, float] = {}
        # pairs whose price converts another pair's quote: only these need their closes kept
        self.legs = frozenset(via for sym, (via, _) in self._route.items() if via not in (None, sym))

    def quote_usd(self, symbol: str, price: float | None = None) -> float:
        """USD value of one unit of ``symbol``'s quote currency.

        ``price`` is the pair's own price to use when the conversion runs through the pair
        itself (USDJPY converts at its exit price); otherwise the last close of the linking
        pair is used. Raises LookupError when that pair has no price yet.
        """
        via, invert = self._route[symbol]
        if via is None:
            return 1.0
        p = price if via == symbol and price is not None else self.last_price.get(via)
        if p is None:
            raise LookupError(f"{symbol}: no price yet for {via} to convert to {ACCOUNT_CCY}")
        return 1.0 / p if invert else p
