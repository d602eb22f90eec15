"""OANDA v20 naming, in one place: symbols <-> instruments, and the RFC 3339 times and decimal
strings the v20 REST API speaks. The config's timeframes (M1 .. H4) are v20 granularities as
they are."""

from __future__ import annotations

from datetime import UTC, datetime

from deskd.core.money import Instrument


def to_instrument(symbol: str) -> str:
    """EURUSD -> EUR_USD. Raises ValueError for anything but a six-letter pair."""
    if len(symbol) != 6 or not symbol.isalpha():
        raise ValueError(f"{symbol!r} is not a six-letter FX pair")
    return f"{symbol[:3]}_{symbol[3:]}"


def to_symbol(instrument: str) -> str:
    """EUR_USD -> EURUSD. Raises ValueError for anything but BASE_QUOTE."""
    base, sep, quote = instrument.partition("_")
    if not sep or len(base) != 3 or len(quote) != 3:
        raise ValueError(f"{instrument!r} is not a v20 instrument like EUR_USD")
    return base + quote


def rfc3339(ts: int) -> str:
    """UTC epoch seconds -> '2026-01-15T14:15:00.000000000Z' (v20's RFC3339 format)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def parse_time(text: str) -> int:
    """v20 RFC 3339 (nanoseconds allowed) or UNIX seconds -> UTC epoch seconds.
    Raises ValueError for anything else."""
    if text.replace(".", "", 1).isdigit():
        return int(float(text))
    head = text.rstrip("Z").split(".")[0]
    return int(datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())


def price_str(price: float, symbol: str) -> str:
    """A price as v20 writes it: to a tenth of a pip (5 decimals, 3 for JPY-quoted pairs)."""
    return f"{price:.{Instrument.parse(symbol).price_decimals}f}"


def round_price(price: float, symbol: str) -> float:
    """A price rounded to what v20 quotes (bracket levels set by distance land on this)."""
    return Instrument.parse(symbol).round_price(price)


def quote_of(fill: dict) -> tuple[float | None, float | None]:
    """(bid, ask) an ORDER_FILL transaction reports in its ``fullPrice`` (the best of each
    side), or (None, None) when it reports none or a malformed one: the spread is then unknown,
    never assumed."""
    fp = fill.get("fullPrice")
    if not isinstance(fp, dict):
        return None, None
    try:
        bids, asks = fp.get("bids") or [], fp.get("asks") or []
        bid = float(bids[0]["price"]) if bids else float(fp["closeoutBid"])
        ask = float(asks[0]["price"]) if asks else float(fp["closeoutAsk"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None, None
    if not (0 < bid <= ask):
        return None, None
    return bid, ask
