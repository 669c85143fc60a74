"""Alpaca's historical stock trades endpoint: the trade history ``pulse repair`` refills missed trades from.

As Alpaca's Market Data API reference gives it (single symbol)::

    GET https://data.alpaca.markets/v2/stocks/AAPL/trades?start=…&end=…&limit=10000&feed=iex&page_token=…
    APCA-API-KEY-ID: <key>            APCA-API-SECRET-KEY: <secret>
    {"trades": [{"t": "2021-02-22T15:51:44.208Z", "x": "V", "p": 126.55, "s": 1, "c": ["@"], "i": 96921,
                 "z": "C"}, …],
     "symbol": "AAPL", "next_page_token": "…" | null}

Trades carry the stream's fields and ids, so a refilled trade gets the same ``trade_id`` (``<x>-<i>``) the live
stream stored and is told apart from it. ``start`` and ``end`` are RFC-3339 times; ``limit`` 1-10000; results
are in time order; ``next_page_token`` pages on until null. Errors are HTTP statuses with ``{"message": …}``:
429 and 5xx (and transport errors, timeouts) are retried with capped backoff (``alpaca.rest_max_attempts``);
401/403 (credentials or a feed the plan lacks), 400/404/422 fail the fetch with Alpaca's words — never the key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from ingesters.alpaca.parser import parse_rfc3339_ns
from ingesters.alpaca.symbols import resolve
from ingesters.base.rest import RetryingRest
from pulse.errors import ConfigError, PulseError
from pulse.log import register_secret
from pulse.models import Trade

PAGE = 10_000
MAX_PAGES = 1_000


class _Row(msgspec.Struct, frozen=True):
    t: str  # RFC-3339, nanoseconds
    x: str  # exchange code
    p: Decimal  # a JSON number, decoded from its text
    s: Decimal
    i: int


class _Answer(msgspec.Struct, frozen=True):
    trades: list[_Row] | None = None  # null when the range has none
    next_page_token: str | None = None


class _Message(msgspec.Struct, frozen=True):
    message: str = ""


_answer = msgspec.json.Decoder(_Answer)
_message = msgspec.json.Decoder(_Message)


class AlpacaRestError(PulseError):
    """A REST request failed; ``retryable`` when a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def parse_page(body: bytes, symbol: str, ts_recv: int) -> tuple[list[Trade], str | None]:
    """One answer → its trades as :class:`Trade` events of ``symbol`` and the next page token. Raises
    :class:`AlpacaRestError` for a malformed answer, naming what was wrong."""
    try:
        ans = _answer.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise AlpacaRestError(f"malformed trades answer: {exc}; body {body[:200]!r}") from None
    out = []
    for n, r in enumerate(ans.trades or ()):
        if not (r.p.is_finite() and r.s.is_finite() and r.p > 0 and r.s > 0 and r.i >= 0):
            raise AlpacaRestError(f"malformed trades answer: trade {n} has price {r.p}, size {r.s}, id {r.i}")
        try:
            ts = parse_rfc3339_ns(r.t)
        except ValueError as exc:
            raise AlpacaRestError(f"malformed trades answer: trade {n}: {exc}") from None
        out.append(Trade(venue="alpaca", symbol=symbol, ts_event=ts, ts_recv=ts_recv, seq=0, price=r.p, size=r.s,
                         side=None, trade_id=f"{r.x}-{r.i}"))  # fmt: skip
    return out, ans.next_page_token or None


def _rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class AlpacaRest(RetryingRest):
    """A small client of the historical trades endpoint (one session; requests retried with capped backoff)."""

    error = AlpacaRestError

    def __init__(self, base_url: str, *, key: str, secret: str, feed: str, max_attempts: int = 5,
                 timeout_s: float = 10.0, backoff_max_s: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:  # fmt: skip
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"alpaca.rest_url must be an http(s) URL, got {base_url[:80]!r}")
        if not key or not secret:
            raise ConfigError("Alpaca credentials missing: set alpaca.key and alpaca.secret (or their *_file forms)")
        register_secret(key)
        register_secret(secret)
        super().__init__(base_url, max_attempts=max_attempts, backoff_max_s=backoff_max_s, timeout_s=timeout_s,
                         sleep=sleep, headers={"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret})  # fmt: skip
        self.feed = feed

    async def _get_once(self, url: str, params: dict[str, str], symbol: str) -> tuple[list[Trade], str | None]:
        status, body = await self._fetch(url, params)
        if status != 200:
            try:
                why = _message.decode(body).message or body[:200].decode("utf-8", "replace")
            except (msgspec.DecodeError, msgspec.ValidationError):
                why = body[:200].decode("utf-8", "replace")
            hint = " (check alpaca.key / alpaca.secret and alpaca.feed)" if status in (401, 403) else ""
            raise AlpacaRestError(f"GET {url}: HTTP {status}: {why}{hint}", retryable=status >= 500 or status == 429)
        return parse_page(body, symbol, time.time_ns())

    async def page(self, symbol: str, params: dict[str, str]) -> tuple[list[Trade], str | None]:
        url = f"{self.base_url}/v2/stocks/{resolve(symbol).venue_symbol}/trades"
        return await self._retrying(lambda: self._get_once(url, params, symbol))

    async def trades(self, symbol: str, start_ns: int, end_ns: int) -> list[Trade]:
        """Every trade of ``symbol`` with ``start_ns <= ts_event < end_ns``, in time order, each id once."""
        params = {"start": _rfc3339(start_ns), "end": _rfc3339(end_ns), "limit": str(PAGE), "feed": self.feed,
                  "sort": "asc"}  # fmt: skip
        found: dict[str, Trade] = {}
        for _ in range(MAX_PAGES):
            page, token = await self.page(symbol, params)
            for t in page:
                if start_ns <= t.ts_event < end_ns:  # the endpoint's end is inclusive
                    found.setdefault(t.trade_id, t)
            if not token:
                break
            params = {**params, "page_token": token}
        else:
            raise AlpacaRestError(f"more than {MAX_PAGES} pages of trades for {symbol}: narrow the range")
        return sorted(found.values(), key=lambda t: t.ts_event)


def _ns(t: datetime) -> int:
    return int(t.astimezone(UTC).timestamp()) * 1_000_000_000 + t.microsecond * 1000


async def fetch_history(settings: Any, symbol: str, start: datetime, end: datetime) -> list[Trade]:
    """The :class:`pulse.venues.HistorySource` fetch: Alpaca's trades of ``symbol`` in ``[start, end)``."""
    a = settings.venue("alpaca")
    key, secret = settings.venue_secret("alpaca", "key"), settings.venue_secret("alpaca", "secret")
    async with AlpacaRest(a.rest_url, key=key, secret=secret, feed=a.feed, max_attempts=a.rest_max_attempts,
                          timeout_s=a.rest_timeout_s, backoff_max_s=a.backoff_max_s) as rest:  # fmt: skip
        return await rest.trades(resolve(symbol).symbol, _ns(start), _ns(end))
