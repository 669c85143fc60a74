"""Coinbase symbol rules: what ``pulse symbols add coinbase …`` accepts, and the names Coinbase uses.

Pulse's canonical symbol is ``BASE/QUOTE`` (``BTC/USD``); Coinbase names the same product ``BTC-USD`` (its
``product_id``). Accepted spellings: ``BTC/USD``, ``BTC-USD``, any case. Base and quote are 1-12 ASCII letters or
digits (Coinbase lists ``1INCH-USD``, ``00-USD``); the quote must be a currency Coinbase lists spot products against,
and the base may not be a fiat currency (Coinbase has no fiat/fiat product), so ``EUR/USD`` stays the FX venues'. No
symbol can inject anything into a subscribe message, a URL query, a topic or SQL.

``BTC/USD`` is also a Kraken symbol: a bare ``BTC/USD`` on the command line is refused as ambiguous, naming
``coinbase:BTC/USD`` and ``kraken:BTC/USD`` (:mod:`pulse.instruments`); ``coinbase:BTC/USD`` (or ``--symbols`` of
``pulse ingest coinbase``) says which.

Precisions come from the product metadata of ``GET /api/v3/brokerage/market/products``: ``price_increment`` (or
``quote_increment``) 0.01 → 2 price decimals, ``base_increment`` 0.00000001 → 8 size decimals. A snapshot of that
answer for the default products ships with the package (``products.json``), so the rules work offline; the ingester
asks the venue for the products it streams (an unlisted one is refused) and logs the live values. A product not in
the snapshot gets 8/8.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from ingesters.coinbase.schemas import Product, products_decoder
from pulse.errors import SymbolError

#: quote currencies of Coinbase spot products
QUOTES = frozenset({"USD", "USDC", "USDT", "EUR", "GBP", "BTC", "ETH", "DAI", "SGD"})
#: fiat currencies: never a Coinbase base (a fiat/fiat pair is the FX venues')
FIAT = frozenset({"USD", "EUR", "GBP", "SGD", "JPY", "CHF", "CAD", "AUD", "NZD", "CNH", "HKD", "SEK", "NOK", "PLN"})
DEFAULT_PRECISION = (8, 8)

#: Pulse channels (what an instrument subscribes) → the Coinbase channel each subscribes
VENUE_CHANNELS = {"trade": "market_trades", "ticker": "ticker", "book": "level2"}
CHANNELS = tuple(VENUE_CHANNELS)
#: Pulse channels → the topic channels each publishes on (a ticker yields a Ticker and a Quote)
CHANNEL_TOPICS = {"trade": ("trade",), "ticker": ("ticker", "quote"), "book": ("book",)}

_PAIR = re.compile(r"^([A-Z0-9]{1,12})[/-]([A-Z0-9]{1,12})$")
SNAPSHOT = Path(__file__).with_name("products.json")


@dataclass(frozen=True)
class CoinbaseSymbol:
    symbol: str  # canonical, e.g. BTC/USD
    venue_symbol: str  # Coinbase's product_id, e.g. BTC-USD
    price_precision: int
    size_precision: int


def decimals(increment: Decimal) -> int:
    """The decimals an increment allows: ``0.01`` → 2, ``1`` → 0, ``0.00000001`` → 8."""
    exp = increment.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def precisions_of(p: Product) -> tuple[int, int]:
    """(price, size) decimals of a product from its increments."""
    price = p.price_increment or p.quote_increment
    return (decimals(price) if price else DEFAULT_PRECISION[0]), (
        decimals(p.base_increment) if p.base_increment else DEFAULT_PRECISION[1]
    )


@functools.cache
def shipped_rules() -> dict[str, tuple[int, int]]:
    """product_id → (price, size) decimals from the shipped products snapshot."""
    return {p.product_id: precisions_of(p) for p in products_decoder.decode(SNAPSHOT.read_bytes()).products}


def resolve(text: str) -> CoinbaseSymbol:
    """``BTC/USD``, ``btc-usd`` → the symbol; refuses malformed names, unknown quotes and fiat bases."""
    if not isinstance(text, str):
        raise SymbolError(f"Coinbase symbol must be a string, got {type(text).__name__}")
    m = _PAIR.match(text.strip().upper())
    if not m:
        raise SymbolError(
            f"invalid Coinbase symbol {text!r}: expected BASE/QUOTE or Coinbase's product id BASE-QUOTE "
            "(1-12 letters or digits each), e.g. BTC/USD or BTC-USD"
        )
    base, quote = m[1], m[2]
    if quote not in QUOTES:
        raise SymbolError(
            f"invalid Coinbase symbol {text!r}: {quote} is not a Coinbase quote currency ({', '.join(sorted(QUOTES))})"
        )
    if base in FIAT:
        raise SymbolError(f"invalid Coinbase symbol {text!r}: Coinbase lists no product with the fiat base {base}")
    if base == quote:
        raise SymbolError(f"invalid Coinbase symbol {text!r}: base and quote are the same")
    product = f"{base}-{quote}"
    pp, sp = shipped_rules().get(product, DEFAULT_PRECISION)
    return CoinbaseSymbol(f"{base}/{quote}", product, pp, sp)
