"""Kraken, as Pulse's venue registry sees it (:class:`pulse.venues.Venue`; registered in ``pyproject.toml``)."""

from __future__ import annotations

from typing import Any

from ingesters.kraken.symbols import CHANNEL_TOPICS, CHANNELS, resolve
from pulse.venues import Resolved, Venue


def _resolve(text: str) -> Resolved:
    p = resolve(text)
    return Resolved(p.symbol, p.venue_symbol, "crypto", p.price_precision, p.size_precision)


def _commands() -> dict[str, Any]:
    from ingesters.kraken import commands

    return commands.COMMANDS


VENUE = Venue(
    name="kraken",
    namespace="crypto",
    channels=CHANNELS,
    default_channels=CHANNELS,
    live=True,
    resolve=_resolve,
    channel_topics=CHANNEL_TOPICS,
    settings_section="kraken",
    service="ingest-kraken",
    commands=_commands,
    description="Kraken WebSocket v2 (crypto): trades, tickers/quotes, checksummed books",
)
