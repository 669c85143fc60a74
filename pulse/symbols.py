"""Canonical symbols and their topic-safe form.

A canonical symbol is ``BASE/QUOTE`` in upper case (``BTC/USD``, ``EUR/USD``). The topic form replaces the
slash with a dash (``BTC-USD``) because Pulsar V2 local names may not contain ``/``. Both directions are
validated against one strict pattern so no symbol can smuggle characters into a topic name or SQL.
"""

from __future__ import annotations

import re

from pulse.errors import SymbolError

_PART = r"[A-Z0-9]{1,16}"
_CANONICAL = re.compile(rf"^({_PART})/({_PART})$")
_TOPIC_FORM = re.compile(rf"^({_PART})-({_PART})$")


def canonical(symbol: str) -> str:
    """Return ``symbol`` in canonical ``BASE/QUOTE`` form, or raise :class:`SymbolError`.

    Accepts ``btc/usd`` (case is normalised) and the topic form ``BTC-USD``.
    """
    if not isinstance(symbol, str):
        raise SymbolError(f"symbol must be a string, got {type(symbol).__name__}")
    s = symbol.strip().upper()
    if _CANONICAL.match(s):
        return s
    m = _TOPIC_FORM.match(s)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    raise SymbolError(f"invalid symbol {symbol!r}: expected BASE/QUOTE with 1-16 letters or digits each, e.g. BTC/USD")


def to_topic_token(symbol: str) -> str:
    """``BTC/USD`` → ``BTC-USD`` (validated)."""
    return canonical(symbol).replace("/", "-")


def from_topic_token(token: str) -> str:
    """``BTC-USD`` → ``BTC/USD`` (validated)."""
    if not _TOPIC_FORM.match(token):
        raise SymbolError(f"invalid topic symbol token {token!r}: expected BASE-QUOTE, e.g. BTC-USD")
    return token.replace("-", "/")


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
