"""Alpaca symbol rules: what ``pulse symbols add alpaca …`` accepts, and the names Alpaca uses.

An equity has no quote currency, so Pulse's canonical symbol for it is the **ticker** (``AAPL``, ``BRK.B``), the
same name Alpaca's stream uses; the instrument is ``alpaca:AAPL`` and its topics
``persistent://<tenant>/equities/alpaca.AAPL.trade`` (a class ticker's dot becomes ``_`` in topics:
``alpaca.BRK_B.trade``; see :mod:`pulse.symbols`). Accepted: a root of 1-5 ASCII letters (NYSE roots have at most
4, Nasdaq's 5) and an optional share class of 1-2 letters after a dot, any case. Everything else is refused before
it reaches a subscribe message, a topic or SQL — in particular Alpaca's ``*`` wildcard (every symbol of the feed).

Precisions: prices to 4 decimals (US trades print in sub-pennies, e.g. midpoint executions), sizes in whole shares
(the stream's ``s``, ``bs``, ``as`` are integers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pulse.errors import SymbolError

#: Pulse channels → the topic channels each publishes on (a minute bar is a Candle)
CHANNELS = ("trade", "quote", "bar")
CHANNEL_TOPICS = {"trade": ("trade",), "quote": ("quote",), "bar": ("candle",)}
#: Pulse channel → the key of Alpaca's subscribe message
WIRE_CHANNELS = {"trade": "trades", "quote": "quotes", "bar": "bars"}

PRICE_PRECISION = 4
SIZE_PRECISION = 0

_TICKER = re.compile(r"^[A-Z]{1,5}(?:\.[A-Z]{1,2})?$")


@dataclass(frozen=True)
class AlpacaSymbol:
    symbol: str  # canonical ticker, e.g. BRK.B
    venue_symbol: str  # what Alpaca's messages carry (the same name)
    price_precision: int = PRICE_PRECISION
    size_precision: int = SIZE_PRECISION


def resolve(text: str) -> AlpacaSymbol:
    """``aapl``, ``AAPL`` or ``BRK.B`` → the symbol; refuses anything that is not a US ticker."""
    if not isinstance(text, str):
        raise SymbolError(f"Alpaca symbol must be a string, got {type(text).__name__}")
    name = text.strip().upper()
    if not _TICKER.match(name):
        raise SymbolError(
            f"invalid Alpaca symbol {text!r}: expected a US ticker of 1-5 letters with an optional .CLASS of 1-2 "
            "letters, e.g. AAPL or BRK.B"
        )
    return AlpacaSymbol(name, name)
