"""Binance's REST market-data endpoints the ingester reads: the depth snapshot and exchangeInfo.

Errors are mapped at this boundary: :class:`UnknownSymbol` for ``-1121 Invalid symbol.`` (the symbol is refused,
never retried), :class:`RestFailure` for anything else (rate limits 429/418, 5xx, transport errors, timeouts: the
caller retries with backoff). Symbols are validated before they reach a URL, and go in as query parameters.
"""

from __future__ import annotations

import json

from ingesters.base.rest import RestClient
from ingesters.binance.schemas import ExchangeInfo, exchange_info_decoder, rest_error_decoder
from pulse.errors import PulseError

INVALID_SYMBOL = -1121


class RestFailure(PulseError):
    """A REST request failed in a way a later retry may fix."""


class UnknownSymbol(PulseError):
    """Binance does not list the symbol (``-1121 Invalid symbol.``)."""


class BinanceRest(RestClient):
    failure = RestFailure

    async def _get(self, path: str, params: dict[str, str]) -> bytes:
        status, body = await self._fetch(path, params)
        if status == 200:
            return body
        self.failures += 1
        try:
            err = rest_error_decoder.decode(body)
        except Exception:
            raise RestFailure(f"GET {path}: HTTP {status}: {body[:200]!r}") from None
        if err.code == INVALID_SYMBOL:
            raise UnknownSymbol(f"{params.get('symbol') or params.get('symbols')}: {err.msg}")
        raise RestFailure(f"GET {path}: HTTP {status}: {err.code} {err.msg}")

    async def depth(self, venue_symbol: str, limit: int) -> bytes:
        """``GET /api/v3/depth``: the raw body (the parser decodes and checks it)."""
        return await self._get("/api/v3/depth", {"symbol": venue_symbol, "limit": str(limit)})

    async def exchange_info(self, venue_symbols: list[str]) -> ExchangeInfo:
        """``GET /api/v3/exchangeInfo?symbols=[…]``; :class:`UnknownSymbol` if any is not listed."""
        body = await self._get("/api/v3/exchangeInfo", {"symbols": json.dumps(venue_symbols, separators=(",", ":"))})
        try:
            return exchange_info_decoder.decode(body)
        except Exception as exc:
            raise RestFailure(f"GET /api/v3/exchangeInfo: malformed body: {exc}") from exc
