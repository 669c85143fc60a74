"""Coinbase's public market data over REST (no authentication): product metadata,
``GET /api/v3/brokerage/market/products?product_ids=…`` (a product Coinbase does not list is simply absent from the
answer), and market trades, ``GET /api/v3/brokerage/market/products/{product_id}/ticker?limit=&start=&end=`` (newest
first, at most ``limit``, the interval in UNIX seconds). Products are validated symbols
(:mod:`ingesters.coinbase.symbols`) before they reach the URL."""

from __future__ import annotations

from typing import Any

from ingesters.base.rest import RestClient
from ingesters.coinbase.schemas import MarketTrade, Product, market_trades_decoder, parse_time, products_decoder
from pulse.errors import PulseError

PRODUCTS_PATH = "/api/v3/brokerage/market/products"
TRADES_PAGE = 1000  # the most trades one request may ask for
MAX_PAGES = 10_000


class RestFailure(PulseError):
    """A REST request failed (transport, timeout, an HTTP error, a malformed body)."""


class CoinbaseRest(RestClient):
    failure = RestFailure

    async def _get(self, path: str, params: list[tuple[str, str]], decoder: Any) -> Any:
        status, body = await self._fetch(path, params)
        if status != 200:
            self.failures += 1
            raise RestFailure(f"GET {path}: HTTP {status}: {body[:200]!r}")
        try:
            return decoder.decode(body)
        except Exception as exc:
            self.failures += 1
            raise RestFailure(f"GET {path}: malformed body: {exc}") from exc

    async def products(self, product_ids: list[str]) -> dict[str, Product]:
        """The listed products among ``product_ids`` (absent = not listed)."""
        answer = await self._get(PRODUCTS_PATH, [("product_ids", p) for p in product_ids], products_decoder)
        wanted = set(product_ids)
        return {p.product_id: p for p in answer.products if p.product_id in wanted}

    async def trades(self, product_id: str, start_ns: int, end_ns: int) -> list[tuple[int, MarketTrade]]:
        """Every market trade of ``product_id`` with ``start_ns <= time < end_ns`` as (time in ns, trade), oldest
        first. Pages back from ``end`` while a page is full (the next page ends at the oldest trade's second,
        inclusive: a trade seen twice is kept once, by id); more than a page of trades within one second cannot be
        paged and is refused (:class:`RestFailure`), as is a malformed trade."""
        path = f"{PRODUCTS_PATH}/{product_id}/ticker"
        start_s, end_s = start_ns // 1_000_000_000, -(-end_ns // 1_000_000_000)
        found: dict[str, tuple[int, MarketTrade]] = {}
        for _ in range(MAX_PAGES):
            params = [("limit", str(TRADES_PAGE)), ("start", str(start_s)), ("end", str(end_s))]
            page = (await self._get(path, params, market_trades_decoder)).trades
            times = []
            for t in page:
                try:
                    ns = parse_time(t.time)
                except ValueError as exc:
                    raise RestFailure(f"GET {path}: {exc}") from exc
                if t.product_id != product_id:
                    raise RestFailure(f"GET {path}: a trade of {t.product_id[:40]!r}")
                times.append(ns)
                if start_ns <= ns < end_ns:
                    found.setdefault(t.trade_id, (ns, t))
            if len(page) < TRADES_PAGE:
                break
            next_end = min(times) // 1_000_000_000 + 1
            if next_end >= end_s:
                raise RestFailure(f"GET {path}: more than {TRADES_PAGE} trades within one second; cannot page")
            end_s = next_end
        else:
            raise RestFailure(f"GET {path}: more than {MAX_PAGES} pages")
        return sorted(found.values(), key=lambda x: (x[0], x[1].trade_id))
