"""Canonical symbols and their topic-safe form.

Two canonical forms, both upper case:

* a **pair** ``BASE/QUOTE`` (``BTC/USD``, ``EUR/USD``): crypto and FX. The topic form replaces the slash with a
  dash (``BTC-USD``) because Pulsar V2 local names may not contain ``/``.
* a **ticker** (``AAPL``, ``BRK.B``): an equity has no quote currency. A root of 1-5 letters, optionally a share
  class of 1-2 letters after a dot (US listings: NYSE roots have at most 4 letters, Nasdaq's 5). The topic form
  replaces the dot with an underscore (``BRK_B``): a topic name's parts are separated by dots
  (``alpaca.BRK_B.trade``), and no pair contains ``_``, so the two forms never collide.

Both directions are validated against strict patterns so no symbol can smuggle characters into a topic name or
SQL. A venue's own rules (``pulse.venues.Venue.resolve``) decide which form and which names it lists.
"""

from __future__ import annotations

import re

from pulse.errors import SymbolError

_PART = r"[A-Z0-9]{1,16}"
_CANONICAL = re.compile(rf"^({_PART})/({_PART})$")
_TOPIC_FORM = re.compile(rf"^({_PART})-({_PART})$")
_TICKER = re.compile(r"^[A-Z]{1,5}(?:\.[A-Z]{1,2})?$")
_TICKER_TOPIC = re.compile(r"^[A-Z]{1,5}(?:_[A-Z]{1,2})?$")


def is_ticker(symbol: str) -> bool:
    """Whether ``symbol`` is a canonical ticker (``AAPL``, ``BRK.B``) rather than a pair."""
    return bool(_TICKER.match(symbol))


def canonical(symbol: str) -> str:
    """Return ``symbol`` in canonical form (``BASE/QUOTE`` or a ticker), or raise :class:`SymbolError`.

    Accepts ``btc/usd`` (case is normalised), the pair topic form ``BTC-USD`` and tickers (``aapl``, ``BRK.B``).
    """
    if not isinstance(symbol, str):
        raise SymbolError(f"symbol must be a string, got {type(symbol).__name__}")
    s = symbol.strip().upper()
    if _CANONICAL.match(s) or _TICKER.match(s):
        return s
    m = _TOPIC_FORM.match(s)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    raise SymbolError(
        f"invalid symbol {symbol!r}: expected BASE/QUOTE with 1-16 letters or digits each, e.g. BTC/USD, "
        "or a ticker of 1-5 letters with an optional .CLASS, e.g. AAPL or BRK.B"
    )


def to_topic_token(symbol: str) -> str:
    """``BTC/USD`` → ``BTC-USD``, ``BRK.B`` → ``BRK_B`` (validated)."""
    s = canonical(symbol)
    return s.replace(".", "_") if _TICKER.match(s) else s.replace("/", "-")


def from_topic_token(token: str) -> str:
    """``BTC-USD`` → ``BTC/USD``, ``BRK_B`` → ``BRK.B`` (validated)."""
    if _TOPIC_FORM.match(token):
        return token.replace("-", "/")
    if _TICKER_TOPIC.match(token):
        return token.replace("_", ".")
    raise SymbolError(
        f"invalid topic symbol token {token!r}: expected BASE-QUOTE, e.g. BTC-USD, or a ticker, e.g. BRK_B"
    )


def parse_symbol_list(text: str) -> list[str]:
    """Parse a comma-separated CLI list into canonical symbols, refusing empties and duplicates."""
    out: list[str] = []
    for raw in text.split(","):
        if not raw.strip():
            raise SymbolError(f"empty symbol in list {text!r}")
        sym = canonical(raw)
        if sym in out:
            raise SymbolError(f"symbol {sym} listed twice")
        out.append(sym)
    if not out:
        raise SymbolError("no symbols given")
    return out
