"""Kraken's public REST ``Trades`` endpoint: the trade history ``pulse repair`` refills missed trades from.

The request and answer, as Kraken documents them ("Get Recent Trades", ``GET /0/public/Trades``)::

    GET https://api.kraken.com/0/public/Trades?pair=XBTUSD&since=1688669597827736900&count=1000
    {"error": [],
     "result": {"XXBTZUSD": [["30243.40000", "0.34507674", 1688669597.8277369, "b", "m", "", 61044952], …],
                "last": "1688671969993150842"}}

* ``pair``: the REST name, legacy asset codes concatenated (``BTC/USD`` → ``XBTUSD``, ``DOGE`` → ``XDG``). The
  answer keys the trades by Kraken's own pair name (``XXBTZUSD``): the one key that is not ``last``.
* each trade is ``[price, volume, time, side, order type, miscellaneous, trade_id]``: price and volume decimal
  strings, time in seconds as a JSON number with a fraction, side ``b``/``s`` (the taker's: buy/sell), order type
  ``m``/``l`` (market/limit), trade_id the same integer the WebSocket v2 ``trade`` channel sends — which is
  how a refilled trade is told apart from one already stored.
* ``since`` returns the trades after the given time; ``last`` (a string of nanoseconds since the epoch) is the
  cursor for the next page. ``count`` is 1 to 1000 (default 1000).
* errors come as ``{"error": ["EQuery:Unknown asset pair"]}``; ``EAPI:Rate limit exceeded``,
  ``EService:Unavailable``/``Busy``, ``EGeneral:Temporary lockout``, HTTP 5xx, timeouts and transport errors are
  retried with capped backoff (``kraken.rest_max_attempts``); anything else fails the fetch with Kraken's words.

Numbers are decoded exactly (the time too: ``Decimal`` from the JSON text, then integer nanoseconds).
Paging: the first request asks ``since`` = the range start minus 1 ns; each next one ``last`` minus 1 ns (so
trades sharing the boundary nanosecond are not skipped; duplicates are dropped by trade id), until a page is
short (fewer than ``count``: nothing more yet), reaches the range end, or the cursor stops moving. Requests are
``kraken.rest_interval_s`` apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from ingesters.base.rest import RetryingRest
from ingesters.kraken.symbols import ALIASES, resolve
from pulse.errors import ConfigError, PulseError
from pulse.models import Trade

_NS = 1_000_000_000
_LEGACY = {v: k for k, v in ALIASES.items()}
_SIDES = {"b": "buy", "s": "sell"}
_TYPES = {"m": "market", "l": "limit"}
_RETRYABLE = ("EAPI:Rate limit exceeded", "EService:Unavailable", "EService:Busy", "EGeneral:Temporary lockout")
MAX_PAGES = 10_000
PAGE = 1000

#: one trade of the answer: price, volume, time (s), side, order type, miscellaneous, trade id
RestTrade = tuple[Decimal, Decimal, Decimal, str, str, str, int]


class _Answer(msgspec.Struct):
    error: list[str] = []
    result: dict[str, list[RestTrade] | str] | None = None


_decoder = msgspec.json.Decoder(_Answer)


class KrakenRestError(PulseError):
    """A REST request failed; ``retryable`` when a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def rest_pair(symbol: str) -> str:
    """``BTC/USD`` → ``XBTUSD``: the name the REST API takes (legacy asset codes, no separator)."""
    base, quote = resolve(symbol).symbol.split("/")
    return f"{_LEGACY.get(base, base)}{_LEGACY.get(quote, quote)}"


def parse_trades(body: bytes, symbol: str, ts_recv: int) -> tuple[list[Trade], int]:
    """One answer → its trades (as :class:`Trade` events of ``symbol``) and the ``last`` cursor (ns).

    Raises :class:`KrakenRestError` for an error answer (retryable for rate limits and unavailability) or a
    malformed one, naming what was wrong."""
    try:
        ans = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise KrakenRestError(f"malformed Trades answer: {exc}; body {body[:200]!r}") from None
    if ans.error:
        text = "; ".join(ans.error)[:300]
        raise KrakenRestError(f"Kraken refused: {text}", retryable=any(e.startswith(_RETRYABLE) for e in ans.error))
    if ans.result is None:
        raise KrakenRestError("malformed Trades answer: no 'result'")
    last = ans.result.get("last")
    rows = [v for k, v in ans.result.items() if k != "last"]
    if not isinstance(last, str) or not last.isdigit() or len(rows) != 1 or not isinstance(rows[0], list):
        raise KrakenRestError(f"malformed Trades answer: expected one pair's trades and 'last', got {list(ans.result)}")
    trades = []
    for i, (price, size, when, side, otype, _misc, trade_id) in enumerate(rows[0]):
        if not (price.is_finite() and size.is_finite() and when.is_finite() and price > 0 and size > 0 and when > 0):
            raise KrakenRestError(f"malformed Trades answer: trade {i} has price {price}, volume {size}, time {when}")
        if side not in _SIDES or otype not in _TYPES or trade_id < 0:
            raise KrakenRestError(f"malformed Trades answer: trade {i}: side {side!r}, type {otype!r}, id {trade_id}")
        ts_event = int(when * _NS)
        trade = Trade(venue="kraken", symbol=symbol, ts_event=ts_event, ts_recv=ts_recv, seq=0, price=price,
                      size=size, side=_SIDES[side], trade_id=str(trade_id), ord_type=_TYPES[otype])  # type: ignore[arg-type]  # fmt: skip
        trades.append(trade)
    return trades, int(last)


class KrakenRest(RetryingRest):
    """A small client of the public REST API (one session; requests paced and retried)."""

    error = KrakenRestError

    def __init__(
        self,
        base_url: str,
        *,
        interval_s: float = 1.0,
        max_attempts: int = 5,
        timeout_s: float = 10.0,
        backoff_max_s: float = 30.0,
        clock: Callable[[], int] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"kraken.rest_url must be an http(s) URL, got {base_url[:80]!r}")
        import time

        super().__init__(base_url, max_attempts=max_attempts, backoff_max_s=backoff_max_s, timeout_s=timeout_s,
                         sleep=sleep)  # fmt: skip
        self.interval_s = interval_s
        self._clock = clock or time.time_ns
        self._last_request = 0.0

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_request + self.interval_s - loop.time()
        if self.requests and wait > 0:
            await self._sleep(wait)
        self._last_request = loop.time()

    async def _get_once(self, params: dict[str, str], symbol: str) -> tuple[list[Trade], int]:
        assert self._session is not None, "use KrakenRest as an async context manager"
        await self._pace()
        url = f"{self.base_url}/0/public/Trades"
        status, body = await self._fetch(url, params)
        if status != 200:
            try:
                return parse_trades(body, symbol, self._clock())  # an error answer says more than the status
            except KrakenRestError as exc:
                retry = status >= 500 or status == 429
                raise KrakenRestError(f"GET {url}: HTTP {status}: {exc}", retryable=retry) from None
        return parse_trades(body, symbol, self._clock())

    async def trades_page(self, symbol: str, since_ns: int, count: int = PAGE) -> tuple[list[Trade], int]:
        """One page of trades after ``since_ns`` and the next cursor, retried when Kraken says it may pass."""
        params = {"pair": rest_pair(symbol), "since": str(since_ns), "count": str(count)}
        return await self._retrying(lambda: self._get_once(params, symbol))

    async def trades(self, symbol: str, start_ns: int, end_ns: int) -> list[Trade]:
        """Every trade of ``symbol`` with ``start_ns <= ts_event < end_ns``, in time order, each id once."""
        since = max(0, start_ns - 1)
        found: dict[str, Trade] = {}
        for _ in range(MAX_PAGES):
            page, last = await self.trades_page(symbol, since)
            for t in page:
                if start_ns <= t.ts_event < end_ns:
                    found.setdefault(t.trade_id, t)
            if len(page) < PAGE or page[-1].ts_event >= end_ns:
                break  # a short page is the end of what Kraken has now
            nxt = last - 1 if last - 1 > since else last
            if nxt <= since:
                break  # the cursor does not move: nothing more
            since = nxt
        else:
            raise KrakenRestError(f"more than {MAX_PAGES} pages of trades for {symbol}: narrow the range")
        return sorted(found.values(), key=lambda t: (t.ts_event, int(t.trade_id)))


def _ns(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


async def fetch_history(settings: Any, symbol: str, start: datetime, end: datetime) -> list[Trade]:
    """The :class:`pulse.venues.HistorySource` fetch: Kraken's trades of ``symbol`` in ``[start, end)``."""
    k = settings.venue("kraken")
    start_ns, end_ns = _ns(start), _ns(end)
    async with KrakenRest(
        k.rest_url, interval_s=k.rest_interval_s, max_attempts=k.rest_max_attempts, timeout_s=k.rest_timeout_s,
        backoff_max_s=k.backoff_max_s,
    ) as rest:  # fmt: skip
        return await rest.trades(resolve(symbol).symbol, start_ns, end_ns)
