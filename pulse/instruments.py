"""One instrument identifier: ``venue:SYMBOL`` (``kraken:BTC/USD``, ``oanda:EUR/USD``, ``dukascopy:EUR/USD``).

Every command, API field and config key that names an instrument accepts this form, and Pulse prints it. The
symbol part is the canonical ``BASE/QUOTE``; as input, each venue's own spellings are accepted too, because its
symbol rules (:attr:`pulse.venues.Venue.resolve`) say what they mean: ``oanda:EUR_USD``, ``dukascopy:EURUSD``,
``kraken:XBT/USD`` (→ ``kraken:BTC/USD``). Without a venue, a name is accepted when exactly one venue's rules
accept it, or exactly one rewrites it (it is that venue's own spelling) — ``EUR_USD`` (only OANDA spells it so),
``EURUSD`` and ``AUDCAD`` (Dukascopy codes), ``XBT/USD`` (Kraken's legacy code) — or when the caller supplies a
default venue; a name already canonical and listed by several venues (``EUR/USD``) is refused as ambiguous,
naming the choices. A six-letter name with no separator (``AUDCAD``) is also tried as
``AUD/CAD`` with a venue that does not spell it that way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pulse.errors import SymbolError
from pulse.venues import Resolved, Venue, get, venues

_VENUE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SIX = re.compile(r"^([A-Z]{3})([A-Z]{3})$")


@dataclass(frozen=True, order=True)
class InstrumentId:
    """A venue and a canonical symbol; ``str()`` is the canonical ``venue:SYMBOL``."""

    venue: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.venue}:{self.symbol}"


def _resolve(v: Venue, text: str) -> Resolved:
    """``text`` by the venue's rules, or else its ``BASE/QUOTE`` reading of a six-letter name."""
    try:
        return v.resolve(text)
    except SymbolError:
        m = _SIX.match(text.strip().upper())
        if m is None:
            raise
        try:
            return v.resolve(f"{m[1]}/{m[2]}")
        except SymbolError:
            pass
        raise


def resolve_instrument(text: str, venue: str | None = None) -> tuple[Venue, Resolved]:
    """Parse ``venue:SYMBOL`` (or a bare symbol with ``venue``, or one only a single venue accepts) into the
    venue and its symbol rules' answer (canonical symbol, the venue's own name, precisions).

    Raises :class:`SymbolError` naming what was wrong: an unknown venue, a symbol the venue refuses, a prefix
    that contradicts ``venue``, or an ambiguous or unknown bare symbol."""
    if not isinstance(text, str) or not text.strip():
        raise SymbolError(f"instrument must be a non-empty string, got {text!r}: expected VENUE:SYMBOL")
    raw = text.strip()
    head, sep, rest = raw.partition(":")
    if sep:
        name = head.strip().lower()
        if not _VENUE.match(name):
            raise SymbolError(f"invalid instrument {text!r}: expected VENUE:SYMBOL, e.g. kraken:BTC/USD")
        if venue is not None and name != venue.strip().lower():
            raise SymbolError(f"instrument {text!r} is not on {venue}")
        v = get(name)
        return v, _resolve(v, rest)
    if venue is not None:
        v = get(venue)
        return v, _resolve(v, raw)
    found: list[tuple[Venue, Resolved]] = []
    for v in venues().values():
        try:
            found.append((v, v.resolve(raw)))
        except SymbolError:
            continue
    if len(found) == 1:
        return found[0]
    # a venue-native spelling (EUR_USD, EURUSD, XBT/USD) means the venue whose rules rewrite it; a name already in
    # canonical form (EUR/USD) belongs to no venue in particular
    native = [(v, r) for v, r in found if r.symbol != raw.upper()]
    if len(native) == 1:
        return native[0]
    if found:
        choices = ", ".join(f"{v.name}:{r.symbol}" for v, r in found)
        raise SymbolError(f"instrument {text!r} is ambiguous: write VENUE:SYMBOL, one of {choices}")
    raise SymbolError(
        f"no venue knows instrument {text!r}: write VENUE:SYMBOL, e.g. kraken:BTC/USD (venues: {', '.join(venues())})"
    )


def parse_instrument(text: str, venue: str | None = None) -> InstrumentId:
    """The canonical :class:`InstrumentId` of ``text`` (see :func:`resolve_instrument`)."""
    v, r = resolve_instrument(text, venue)
    return InstrumentId(v.name, r.symbol)


def parse_instrument_list(text: str, venue: str | None = None) -> list[InstrumentId]:
    """A comma-separated list of instruments (empty items and duplicates refused)."""
    out: list[InstrumentId] = []
    for raw in text.split(","):
        if not raw.strip():
            raise SymbolError(f"empty instrument in list {text!r}")
        inst = parse_instrument(raw, venue)
        if inst in out:
            raise SymbolError(f"instrument {inst} listed twice")
        out.append(inst)
    if not out:
        raise SymbolError("no instruments given")
    return out
