"""OANDA v20 REST client (aiohttp, async): the calls deskd needs, retried within a bound.

Timeouts, dropped connections and 5xx are retried with exponential backoff and full jitter
(``backoff_s`` x 2^attempt, capped at ``max_backoff_s``); 429 waits the server's Retry-After
(:func:`retry_after_s`: seconds or an HTTP-date, capped at ``max_retry_after_s``; a value that
is neither waits the backoff); after ``max_attempts`` a :class:`BrokerUnavailable` is raised,
which the daemon turns into an execution error for the state machine. 4xx other than 429 are not
retried: :class:`BrokerRejected`.

A market order carries the desk's client order id in clientExtensions. When its outcome is
unknown (timeout, dropped connection, 5xx after the order may have reached the broker), the
client asks the broker for the order by that id before sending again, so a retry after a
lost response finds the existing order instead of opening a second position.

Credentials come from :func:`credentials_from_env` (environment or files), never from the
desk config, and are never logged.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import structlog

from deskd.adapters.v20.naming import parse_time, price_str, quote_of, rfc3339, to_instrument
from deskd.configs.settings import Settings

log = structlog.get_logger("deskd.broker")


class BrokerError(RuntimeError):
    """A broker call failed."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or kept failing past the retry bound."""


class BrokerRejected(BrokerError):
    """The broker answered with a refusal (4xx other than 429); ``status`` and ``body`` say why."""

    def __init__(self, message: str, status: int, body: dict):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Credentials:
    base_url: str
    account_id: str
    token: str

    def __repr__(self) -> str:  # never print the token
        return f"Credentials(base_url={self.base_url!r}, account_id={self.account_id!r}, token=***)"


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials:
    """DESKD_V20_URL, DESKD_V20_ACCOUNT, and DESKD_V20_TOKEN or DESKD_V20_TOKEN_FILE, from
    ``env`` or the process environment (:class:`deskd.configs.settings.Settings`). Raises
    ValueError naming the missing variable, OSError for an unreadable token file."""
    s = Settings.from_env(env)
    token = s.v20_token.get_secret_value() if s.v20_token else None
    if not token and s.v20_token_file:
        token = s.v20_token_file.read_text().strip()
    for name, value in (("DESKD_V20_URL", s.v20_url), ("DESKD_V20_ACCOUNT", s.v20_account),
                        ("DESKD_V20_TOKEN or DESKD_V20_TOKEN_FILE", token)):
        if not value:
            raise ValueError(f"broker credentials: {name} is not set")
    assert s.v20_url is not None and s.v20_account is not None and token is not None
    return Credentials(s.v20_url.rstrip("/"), s.v20_account, token)


def retry_after_s(value: str | None, now: datetime, default_s: float, max_s: float) -> float:
    """Seconds to wait for a 429's ``Retry-After`` header, per RFC 9110 section 10.2.3: either
    delay-seconds (a non-negative integer) or an HTTP-date (the wait is that date minus ``now``,
    floored at 0). Anything else (missing, empty, "nan", "inf", negative, fractional, garbage)
    waits ``default_s``. The result is always within [0, ``max_s``]."""
    value = (value or "").strip()
    if re.fullmatch(r"[0-9]+", value):
        wait = max_s if len(value) > 9 else int(value)  # int() refuses more than 4300 digits
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        wait = default_s if when is None else (_utc(when) - _utc(now)).total_seconds()
    return float(min(max(wait, 0.0), max_s))


def _utc(t: datetime) -> datetime:
    """``t`` made timezone-aware: a naive time (an HTTP-date in "-0000") is taken as UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def endpoint_of(method: str, path: str) -> str:
    """A bounded label for a request: 'GET candles', 'POST orders', 'PUT trades/close', ..."""
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[1] == "instruments":
        return f"{method} {parts[-1]}"
    tail = parts[3:] if len(parts) > 3 and parts[1] == "accounts" else parts[1:]
    name = tail[0] if tail else "accounts"
    if len(tail) > 2 or (len(tail) == 2 and tail[1] in ("close", "sinceid")):
        name += "/" + tail[-1]
    return f"{method} {name}"


class V20Client:
    """One account at one v20 server. Use as ``async with V20Client(creds) as c: ...``."""

    def __init__(self, creds: Credentials, timeout_s: float = 5.0, max_attempts: int = 4,
                 backoff_s: float = 0.2, max_backoff_s: float = 5.0, max_retry_after_s: float = 30.0):
        self.creds = creds
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0
        # observer(endpoint, seconds, outcome) after every try: outcome ok, 429, 5xx, timeout, malformed,
        # connection or rejected (the daemon's metrics)
        self.observer = None

    async def __aenter__(self) -> V20Client:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.creds.token}", "Content-Type": "application/json",
                     "Accept-Datetime-Format": "RFC3339"}, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    def _acct(self, tail: str) -> str:
        return f"/v3/accounts/{self.creds.account_id}{tail}"

    async def _request(self, method: str, path: str, attempts: int | None = None, **kw) -> dict:
        """One call with up to ``attempts`` (default ``max_attempts``) tries; returns the JSON
        body of a 2xx reply. A 429 waits out its Retry-After and counts as a try."""
        last = "no attempt"
        attempts = attempts or self.max_attempts
        endpoint = endpoint_of(method, path)
        for attempt in range(attempts):
            if attempt:
                self.retries += 1
            self.requests += 1
            t0 = time.perf_counter()
            outcome = "ok"
            if self._session is None:
                raise RuntimeError("V20Client used outside `async with`")
            try:
                async with self._session.request(method, self.creds.base_url + path, **kw) as r:
                    body = await r.json(content_type=None) if r.content_length != 0 else {}
                    if r.status < 300:
                        return body or {}
                    if r.status == 429:
                        outcome = "429"
                        wait = retry_after_s(r.headers.get("Retry-After"), datetime.now(UTC),
                                             self._backoff(attempt), self.max_retry_after_s)
                        last = f"429, Retry-After {wait:g} s"
                        log.warning("broker rate limit", path=path, retry_after_s=wait, attempt=attempt + 1)
                        self._observe(endpoint, t0, outcome)
                        await asyncio.sleep(wait)
                        continue
                    if r.status >= 500:
                        outcome = "5xx"
                        last = f"HTTP {r.status}"
                    else:
                        outcome = "rejected"
                        msg = (body or {}).get("errorMessage", f"HTTP {r.status}")
                        raise BrokerRejected(f"{method} {path}: {msg}", r.status, body or {})
            except TimeoutError:
                outcome = last = "timeout"
            except ValueError:  # a body that is not JSON (a proxy's error page, a cut reply)
                outcome, last = "malformed", "reply is not JSON"
            except aiohttp.ClientError as e:
                outcome, last = "connection", type(e).__name__
            finally:
                if outcome != "429":
                    self._observe(endpoint, t0, outcome)
            log.warning("broker call failed", path=path, error=last, attempt=attempt + 1)
            await asyncio.sleep(self._backoff(attempt))
        raise BrokerUnavailable(f"{method} {path}: gave up after {attempts} attempts ({last})")

    def _backoff(self, attempt: int) -> float:
        """The wait before try ``attempt + 1``: full jitter up to ``backoff_s`` x 2^attempt,
        capped at ``max_backoff_s``."""
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** attempt))

    def _observe(self, endpoint: str, t0: float, outcome: str) -> None:
        if self.observer is not None:
            self.observer(endpoint, time.perf_counter() - t0, outcome)

    # -- reads ------------------------------------------------------------------------------
    async def summary(self) -> dict:
        return (await self._request("GET", self._acct("/summary")))["account"]

    async def open_trades(self) -> list[dict]:
        return (await self.open_trades_snapshot())[0]

    async def open_trades_snapshot(self) -> tuple[list[dict], int]:
        """Open trades and the id of the last transaction they reflect."""
        body = await self._request("GET", self._acct("/openTrades"))
        return body["trades"], int(body["lastTransactionID"])

    async def transactions_since(self, tx_id: int) -> tuple[list[dict], int]:
        body = await self._request("GET", self._acct("/transactions/sinceid"), params={"id": str(tx_id)})
        return body["transactions"], int(body["lastTransactionID"])

    async def candles(self, symbol: str, granularity: str, count: int = 500,
                      from_ts: int | None = None) -> list[dict]:
        """Completed mid candles: the latest ``count``, or the first ``count`` from ``from_ts``
        (UTC epoch seconds, inclusive)."""
        params = {"granularity": granularity, "count": str(count), "price": "M"}
        if from_ts is not None:
            params["from"] = rfc3339(from_ts)
        body = await self._request("GET", f"/v3/instruments/{to_instrument(symbol)}/candles", params=params)
        return [c for c in body["candles"] if c.get("complete")]

    async def order_by_client_id(self, client_id: str) -> dict | None:
        """The order with this client id, or None when the broker has never seen it."""
        return await self._get_or_none(self._acct(f"/orders/@{client_id}"), "order")

    async def trade(self, spec: str) -> dict | None:
        """One trade (open or closed) by id or ``@clientID``; None when it does not exist."""
        return await self._get_or_none(self._acct(f"/trades/{spec}"), "trade")

    async def transaction(self, tx_id: str) -> dict:
        return (await self._request("GET", self._acct(f"/transactions/{tx_id}")))["transaction"]

    async def _get_or_none(self, path: str, key: str) -> dict | None:
        try:
            return (await self._request("GET", path))[key]
        except BrokerRejected as e:
            if e.status == 404:
                return None
            raise

    # -- orders -----------------------------------------------------------------------------
    async def market_order(self, symbol: str, units: int, client_id: str,
                           sl_price: float | None = None, tp_price: float | None = None,
                           sl_distance: float | None = None, tp_distance: float | None = None) -> dict:
        """Send a market order (units signed: positive buys) with its bracket, given as prices
        or as distances (price units) from the fill; idempotent by ``client_id``, which names
        both the order and the trade it opens. Returns {"order_id", "trade_id", "price",
        "time"} of the fill (time in UTC epoch seconds). Raises BrokerRejected (refused, not
        filled, or never placed: every try failed and a last lookup finds no such order),
        BrokerUnavailable (unreachable past the bound, lookups included: the outcome is
        unknown, and the caller must treat the order as UNKNOWN)."""
        ext = {"id": client_id}
        order = {"type": "MARKET", "instrument": to_instrument(symbol), "units": str(int(units)),
                 "timeInForce": "FOK", "positionFill": "DEFAULT", "clientExtensions": ext,
                 "tradeClientExtensions": ext}
        for key, price, dist in (("stopLossOnFill", sl_price, sl_distance),
                                 ("takeProfitOnFill", tp_price, tp_distance)):
            if price is not None:
                order[key] = {"price": price_str(price, symbol)}
            elif dist is not None:
                order[key] = {"distance": price_str(dist, symbol)}
        for attempt in range(self.max_attempts):
            existing = await self.order_by_client_id(client_id) if attempt else None
            if existing is not None:
                log.info("order found by client id after a lost response", order_id=client_id)
                if existing.get("fillingTransactionID") is None:
                    raise BrokerRejected(f"market order {client_id}: {existing.get('state', 'not filled')}",
                                         201, existing)
                return _fill_info(existing["id"], await self.transaction(existing["fillingTransactionID"]))
            try:  # one try per round, never a blind resend: the lookup above comes first
                body = await self._request("POST", self._acct("/orders"), attempts=1, json={"order": order})
            except BrokerUnavailable:
                continue  # the outcome is unknown: look the order up before sending again
            except BrokerRejected as e:
                if e.body.get("errorCode") == "CLIENT_ORDER_ID_ALREADY_EXISTS" and attempt + 1 < self.max_attempts:
                    continue  # an earlier try got through after all: the lookup finds it
                raise
            fill = body.get("orderFillTransaction")
            if fill is None:
                reason = body.get("orderCancelTransaction", {}).get("reason", "not filled")
                raise BrokerRejected(f"market order {client_id}: {reason}", 201, body)
            return _fill_info(body["orderCreateTransaction"]["id"], fill)
        # every try failed: one more lookup decides between "never placed" and "unknown"
        existing = await self.order_by_client_id(client_id)  # BrokerUnavailable: unknown
        if existing is None:
            raise BrokerRejected(f"market order {client_id}: not placed after {self.max_attempts} "
                                 f"attempts (the broker has no order with this client id)", 404, {})
        if existing.get("fillingTransactionID") is None:
            raise BrokerRejected(f"market order {client_id}: {existing.get('state', 'not filled')}", 201, existing)
        return _fill_info(existing["id"], await self.transaction(existing["fillingTransactionID"]))

    async def close_trade(self, spec: str) -> dict:
        """Close a trade (id or ``@clientID``) at market; returns the ORDER_FILL transaction.
        Not blindly retried: after an unknown outcome the trade is looked up, and a trade
        found closed returns its closing transaction. Raises BrokerRejected (404 when the
        trade does not exist or is no longer open), BrokerUnavailable."""
        path = self._acct(f"/trades/{spec}/close")
        for attempt in range(self.max_attempts):
            if attempt:
                t = await self.trade(spec)
                if t is not None and t.get("state") == "CLOSED" and t.get("closingTransactionIDs"):
                    return await self.transaction(t["closingTransactionIDs"][-1])
            try:
                return (await self._request("PUT", path, attempts=1, json={"units": "ALL"}))["orderFillTransaction"]
            except BrokerUnavailable:
                continue
        raise BrokerUnavailable(f"close trade {spec}: outcome unknown after {self.max_attempts} attempts")


def _fill_info(order_id: str, fill: dict) -> dict:
    bid, ask = quote_of(fill)
    return {"order_id": order_id, "trade_id": (fill.get("tradeOpened") or {}).get("tradeID"),
            "price": float(fill["price"]), "time": parse_time(fill["time"]), "bid": bid, "ask": ask}
