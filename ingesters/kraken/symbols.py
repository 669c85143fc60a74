"""Kraken symbol rules: what ``pulse symbols add kraken …`` accepts, and the name Kraken's WebSocket v2 uses.

Kraken's WebSocket v2 names pairs ``BASE/QUOTE`` with ISO-style asset codes (``BTC/USD``, ``DOGE/USD``), while
its REST API and older feeds use the legacy codes ``XBT`` and ``XDG`` (and ``XXBTZUSD``-style pair names).
Pulse's canonical symbol is the v2 name, so ``XBT/USD`` is accepted and stored as ``BTC/USD``. The quote
currency must be one Kraken lists spot pairs against; anything else is refused before it reaches a topic.

Precisions: the live ``instrument`` channel is the truth (the ingester reads it for checksums); the registry
keeps a default per base asset for validating paper orders, overridable on the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pulse.errors import SymbolError

#: legacy Kraken asset codes → the codes WebSocket v2 (and Pulse) use
ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
#: quote currencies of Kraken spot pairs
QUOTES = frozenset({"USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "USDT", "USDC", "DAI", "PYUSD", "BTC", "ETH"})
#: (price decimals, size decimals) by base asset, for USD/EUR quotes; the instrument channel says the truth
PRECISIONS = {"BTC": (1, 8), "ETH": (2, 8), "SOL": (2, 8), "XRP": (5, 8), "ADA": (6, 8), "DOGE": (7, 8), "LTC": (2, 8)}
DEFAULT_PRECISION = (5, 8)

CHANNELS = ("trade", "ticker", "book")
#: topics each subscribed channel publishes on (ticker yields Ticker and Quote events)
CHANNEL_TOPICS = {"trade": ("trade",), "ticker": ("ticker", "quote"), "book": ("book",)}

_PAIR = re.compile(r"^([A-Z0-9]{2,10})[/-]([A-Z0-9]{2,10})$")


@dataclass(frozen=True)
class KrakenPair:
    symbol: str  # canonical, e.g. BTC/USD
    venue_symbol: str  # what the v2 subscribe request carries (the same name)
    rest_name: str  # the legacy REST/v1 name, e.g. XBT/USD
    price_precision: int
    size_precision: int


def resolve(text: str) -> KrakenPair:
    """``btc/usd``, ``XBT/USD`` or ``XBT-USD`` → the pair; refuses malformed names and unknown quote currencies."""
    if not isinstance(text, str):
        raise SymbolError(f"Kraken symbol must be a string, got {type(text).__name__}")
    m = _PAIR.match(text.strip().upper())
    if not m:
        raise SymbolError(
            f"invalid Kraken symbol {text!r}: expected BASE/QUOTE (2-10 letters or digits each), e.g. BTC/USD"
        )
    base, quote = ALIASES.get(m[1], m[1]), ALIASES.get(m[2], m[2])
    if quote not in QUOTES:
        raise SymbolError(
            f"invalid Kraken symbol {text!r}: {quote} is not a Kraken quote currency ({', '.join(sorted(QUOTES))})"
        )
    if base == quote:
        raise SymbolError(f"invalid Kraken symbol {text!r}: base and quote are the same")
    legacy = {v: k for k, v in ALIASES.items()}
    pp, sp = PRECISIONS.get(base, DEFAULT_PRECISION)
    symbol = f"{base}/{quote}"
    return KrakenPair(symbol, symbol, f"{legacy.get(base, base)}/{legacy.get(quote, quote)}", pp, sp)
