"""Kraken's settings section (``[kraken]`` in pulse.toml, ``PULSE_KRAKEN__<KEY>`` in the environment): declared by
the venue itself and registered with it (``Venue.settings_model``), so the core settings never name a venue."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pulse.settings import NonNegFloat, PosFloat, Section


class KrakenSettings(Section):
    url: str = "wss://ws.kraken.com/v2"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTC/USD", "ETH/USD"])
    channels: list[Literal["trade", "ticker", "book"]] = msgspec.field(
        default_factory=lambda: ["trade", "ticker", "book"]
    )
    depth: Literal[10, 25, 100, 500, 1000] = 10  # the depths Kraken's book channel accepts
    stale_after_s: PosFloat = 15.0  # no message (data or heartbeat) for this long → reconnect
    ping_interval_s: PosFloat = 10.0  # application-level {"method": "ping"}
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    connect_timeout_s: PosFloat = 10.0
    # the public REST API: `pulse repair` refills missed trades from GET /0/public/Trades
    rest_url: str = "https://api.kraken.com"
    rest_interval_s: NonNegFloat = 1.0  # between two REST requests (Kraken's public rate limit is about 1/s)
    rest_max_attempts: Annotated[int, Meta(ge=1, le=10)] = 5  # per request: rate limits, 5xx, timeouts
    rest_timeout_s: PosFloat = 10.0
