"""Binance symbol rules: what ``pulse symbols add binance …`` accepts, and the names Binance uses.

Pulse's canonical symbol is ``BASE/QUOTE`` (``BTC/USDT``); Binance names the same market ``BTCUSDT`` on REST and
``btcusdt`` in stream names. Accepted spellings: ``BTC/USDT``, ``btc-usdt``, ``BTCUSDT``, ``btcusdt``. A name with
no separator is split at the longest known quote asset it ends with. Base and quote are 1-16 ASCII letters or
digits and the Binance name at most 20 characters (the REST ``symbol`` parameter's legal range), so a symbol can
inject nothing into a stream name, a URL query, a topic or SQL. Binance also lists symbols with non-ASCII names;
Pulse refuses them (its canonical symbols are ASCII).

Precisions come from exchangeInfo's filters: ``PRICE_FILTER.tickSize`` (0.01 → 2 decimals) and
``LOT_SIZE.stepSize`` (0.00001 → 5). A snapshot for the default symbols ships with the package
(``exchange_info.json``, the same shape as ``GET /api/v3/exchangeInfo``), so the rules work offline; the ingester
asks the venue's exchangeInfo for the symbols it streams and logs the live values. A symbol not in the snapshot
gets 8/8, the decimals Binance writes every price and quantity with.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from ingesters.binance.schemas import SymbolInfo, exchange_info_decoder
from pulse.errors import SymbolError

#: quote assets Binance spot lists markets against (longest match wins when splitting ``BTCUSDT``)
QUOTES = frozenset(
    {"USDT", "USDC", "FDUSD", "TUSD", "USD1", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL", "JPY",
     "AUD", "PLN", "RON", "ARS", "ZAR", "UAH", "IDR", "MXN", "COP", "CZK", "XRP", "DOGE", "TRX", "SOL", "PAX"}
)  # fmt: skip
_QUOTES_LONGEST_FIRST = sorted(QUOTES, key=len, reverse=True)
DEFAULT_PRECISION = (8, 8)

#: Pulse channels → the topic channels each publishes on
CHANNELS = ("trade", "quote", "book")
CHANNEL_TOPICS = {"trade": ("trade",), "quote": ("quote",), "book": ("book",)}

_PAIR = re.compile(r"^([A-Z0-9]{1,16})[/-]([A-Z0-9]{1,16})$")
_JOINED = re.compile(r"^[A-Z0-9]{2,20}$")
SNAPSHOT = Path(__file__).with_name("exchange_info.json")


@dataclass(frozen=True)
class BinanceSymbol:
    symbol: str  # canonical, e.g. BTC/USDT
    venue_symbol: str  # REST and event name, e.g. BTCUSDT
    price_precision: int
    size_precision: int

    @property
    def stream_name(self) -> str:
        """The lower-case name stream names start with (``btcusdt@trade``)."""
        return self.venue_symbol.lower()


def decimals(increment: Decimal) -> int:
    """The decimals an increment allows: ``0.01000000`` → 2, ``1.00000000`` → 0."""
    exp = increment.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def precisions_of(info: SymbolInfo) -> tuple[int, int]:
    """(price, size) decimals from a symbol's PRICE_FILTER tickSize and LOT_SIZE stepSize (the asset
    precisions when a filter is missing or disabled, tickSize/stepSize 0)."""
    price, size = info.quote_asset_precision, info.base_asset_precision
    for f in info.filters:
        if f.filter_type == "PRICE_FILTER" and f.tick_size:
            price = decimals(f.tick_size)
        elif f.filter_type == "LOT_SIZE" and f.step_size:
            size = decimals(f.step_size)
    return price, size


@functools.cache
def shipped_rules() -> dict[str, tuple[int, int]]:
    """Venue symbol → (price, size) decimals from the shipped exchangeInfo snapshot."""
    info = exchange_info_decoder.decode(SNAPSHOT.read_bytes())
    return {s.symbol: precisions_of(s) for s in info.symbols}


def _split(joined: str) -> tuple[str, str] | None:
    for q in _QUOTES_LONGEST_FIRST:
        if joined.endswith(q) and len(joined) > len(q):
            return joined[: -len(q)], q
    return None


def resolve(text: str) -> BinanceSymbol:
    """``BTC/USDT``, ``btc-usdt`` or ``BTCUSDT`` → the symbol; refuses malformed names and unknown quote assets."""
    if not isinstance(text, str):
        raise SymbolError(f"Binance symbol must be a string, got {type(text).__name__}")
    name = text.strip().upper()
    m = _PAIR.match(name)
    if m:
        base, quote = m[1], m[2]
    elif _JOINED.match(name) and (parts := _split(name)) is not None:
        base, quote = parts
    else:
        raise SymbolError(
            f"invalid Binance symbol {text!r}: expected BASE/QUOTE (letters or digits) or Binance's own name, "
            "e.g. BTC/USDT or BTCUSDT"
        )
    if quote not in QUOTES:
        raise SymbolError(
            f"invalid Binance symbol {text!r}: {quote} is not a Binance quote asset ({', '.join(sorted(QUOTES))})"
        )
    if base == quote:
        raise SymbolError(f"invalid Binance symbol {text!r}: base and quote are the same")
    venue = base + quote
    if len(venue) > 20:
        raise SymbolError(f"invalid Binance symbol {text!r}: Binance names are at most 20 characters")
    pp, sp = shipped_rules().get(venue, DEFAULT_PRECISION)
    return BinanceSymbol(f"{base}/{quote}", venue, pp, sp)
