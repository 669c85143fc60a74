"""OANDA instrument names ↔ Pulse canonical symbols.

OANDA names an instrument ``BASE_QUOTE`` (``EUR_USD``, ``USD_JPY``, and for CFDs ``XAU_USD``, ``SPX500_USD``);
Pulse writes ``BASE/QUOTE``. Both directions are checked against one strict pattern — upper case, no spaces,
a base of 2-16 letters or digits starting with a letter and a three-letter quote currency — so nothing else can
reach a URL query string or a topic name. Anything else is refused with :class:`pulse.errors.SymbolError`.
"""

from __future__ import annotations

import re

from pulse.errors import SymbolError

_BASE = r"[A-Z][A-Z0-9]{1,15}"
_QUOTE = r"[A-Z]{3}"
_INSTRUMENT = re.compile(rf"^({_BASE})_({_QUOTE})$")
_SYMBOL = re.compile(rf"^({_BASE})/({_QUOTE})$")


def instrument_to_symbol(instrument: str) -> str:
    """``EUR_USD`` → ``EUR/USD``; refuses anything that is not exactly an OANDA instrument name."""
    if not isinstance(instrument, str) or not _INSTRUMENT.match(instrument):
        raise SymbolError(f"invalid OANDA instrument {instrument!r}: expected BASE_QUOTE in upper case, e.g. EUR_USD")
    return instrument.replace("_", "/")


def symbol_to_instrument(symbol: str) -> str:
    """``EUR/USD`` → ``EUR_USD``; refuses anything that is not exactly a canonical symbol OANDA could list."""
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise SymbolError(
            f"invalid symbol {symbol!r} for OANDA: expected BASE/QUOTE in upper case with a three-letter "
            "quote currency, e.g. EUR/USD"
        )
    return symbol.replace("/", "_")


def is_instrument(text: str) -> bool:
    """True when ``text`` is shaped like an OANDA instrument name (no exception)."""
    return isinstance(text, str) and _INSTRUMENT.match(text) is not None


def parse_instruments(text: str) -> list[str]:
    """Parse the CLI list ``EUR_USD,GBP_USD`` (spaces around items allowed), refusing empties and duplicates."""
    out: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            raise SymbolError(f"empty instrument in list {text!r}")
        instrument_to_symbol(name)
        if name in out:
            raise SymbolError(f"instrument {name} listed twice")
        out.append(name)
    return out
