"""Which venues the registry knows, and how each one's symbol rules resolve a name into an instrument.

Each venue's naming rules live in its own package (``ingesters/<venue>/``); this module only maps the venue
name to them and to where its streams go (namespace, channels). A name that its venue's rules refuse never
reaches the database, a topic name or a subscribe request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ingesters.kraken.symbols import CHANNEL_TOPICS as KRAKEN_CHANNEL_TOPICS
from ingesters.kraken.symbols import CHANNELS as KRAKEN_CHANNELS
from pulse.errors import SymbolError


@dataclass(frozen=True)
class Resolved:
    """A venue's answer for one name: canonical symbol, the venue's own name for it and its precisions."""

    symbol: str
    venue_symbol: str
    asset_class: str
    price_precision: int
    size_precision: int


@dataclass(frozen=True)
class Venue:
    name: str
    namespace: str  # where its streams are published
    channels: tuple[str, ...]  # channels an instrument may subscribe
    default_channels: tuple[str, ...]
    live: bool  # True: a running ingester subscribes on `symbols add`; False: backfill only
    resolve: Callable[[str], Resolved]
    channel_topics: Mapping[str, tuple[str, ...]]  # subscribed channel → the topic channels it publishes on


def _kraken(text: str) -> Resolved:
    from ingesters.kraken.symbols import resolve

    p = resolve(text)
    return Resolved(p.symbol, p.venue_symbol, "crypto", p.price_precision, p.size_precision)


def _oanda(text: str) -> Resolved:
    from ingesters.oanda.symbols import instrument_to_symbol, is_instrument, symbol_to_instrument

    name = text.strip().upper()
    symbol = instrument_to_symbol(name) if is_instrument(name) else None
    if symbol is None:
        instrument = symbol_to_instrument(name.replace("-", "/"))  # refuses anything malformed
        symbol = instrument_to_symbol(instrument)
    instrument = symbol_to_instrument(symbol)
    base, quote = symbol.split("/")
    # OANDA quotes FX to 5 decimals (3 for JPY crosses); units are whole numbers. CFDs (XAU_USD, SPX500_USD)
    # differ: the live stream's prices are the truth, this default is for validating paper orders.
    fx = len(base) == 3 and base.isalpha()
    price_precision = 3 if quote == "JPY" or (fx and base in {"XAU", "XPT"}) else 5
    return Resolved(symbol, instrument, "fx" if fx else "cfd", price_precision, 0)


def _dukascopy(text: str) -> Resolved:
    from ingesters.dukascopy.instruments import lookup

    inst = lookup(text)
    asset = "fx" if inst.weekly_close is not None and len(inst.code) == 6 else "other"
    return Resolved(inst.symbol, inst.code, asset, inst.decimals, 2)


VENUES: dict[str, Venue] = {
    "kraken": Venue("kraken", "crypto", KRAKEN_CHANNELS, KRAKEN_CHANNELS, True, _kraken, KRAKEN_CHANNEL_TOPICS),
    "oanda": Venue("oanda", "fx", ("quote",), ("quote",), True, _oanda, {"quote": ("quote",)}),
    "dukascopy": Venue(
        "dukascopy",
        "historical",
        ("quote", "candle"),
        ("quote",),
        False,
        _dukascopy,
        {"quote": ("quote", "quote_batch"), "candle": ("candle",)},  # backfills: QuoteBatch on its own topic
    ),
}


def expects_ticks(venue_name: str, now: datetime) -> bool:
    """Whether an instrument of this venue should be ticking at ``now`` (a live venue whose market is open).
    Unknown venues are assumed to trade around the clock."""
    if venue_name == "oanda":
        from ingesters.oanda.hours import is_open

        return is_open(now)
    v = VENUES.get(venue_name)
    return v is None or v.live


def venue(name: str) -> Venue:
    v = VENUES.get(name.strip().lower() if isinstance(name, str) else name)
    if v is None:
        raise SymbolError(f"unknown venue {name!r}: expected one of {', '.join(VENUES)}")
    return v


def resolve(venue_name: str, text: str) -> tuple[Venue, Resolved]:
    v = venue(venue_name)
    return v, v.resolve(text)


def check_channels(v: Venue, channels: list[str] | None) -> tuple[str, ...]:
    if not channels:
        return v.default_channels
    bad = [c for c in channels if c not in v.channels]
    if bad:
        raise SymbolError(f"{v.name} has no channel {', '.join(bad)}: choose from {', '.join(v.channels)}")
    return tuple(dict.fromkeys(channels))
