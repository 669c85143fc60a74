"""OANDA, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from typing import Any

from ingesters.oanda.symbols import instrument_to_symbol, is_instrument, symbol_to_instrument
from pulse.calendars import OANDA_FX
from pulse.venues import Resolved, Venue


def _resolve(text: str) -> Resolved:
    name = text.strip().upper()
    symbol = instrument_to_symbol(name) if is_instrument(name) else None
    if symbol is None:
        instrument = symbol_to_instrument(name.replace("-", "/"))  # refuses anything malformed
        symbol = instrument_to_symbol(instrument)
    base, quote = symbol.split("/")
    # OANDA quotes FX to 5 decimals (3 for JPY crosses); units are whole numbers. CFDs (XAU_USD, SPX500_USD)
    # differ: the live stream's prices are the truth, this default is for validating paper orders.
    fx = len(base) == 3 and base.isalpha()
    price_precision = 3 if quote == "JPY" or (fx and base in {"XAU", "XPT"}) else 5
    return Resolved(symbol, symbol_to_instrument(symbol), "fx" if fx else "cfd", price_precision, 0)


def _commands() -> dict[str, Any]:
    from ingesters.oanda import commands

    return commands.COMMANDS


VENUE = Venue(
    name="oanda",
    namespace="fx",
    channels=("quote",),
    default_channels=("quote",),
    live=True,
    resolve=_resolve,
    channel_topics={"quote": ("quote",)},
    calendar=OANDA_FX,
    settings_section="oanda",
    service="ingest-oanda",
    commands=_commands,
    description="OANDA v20 pricing stream (FX): quotes with the full ladder; sleeps while the market is closed",
)
