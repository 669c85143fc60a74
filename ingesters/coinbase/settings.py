"""Coinbase's settings section (``[coinbase]`` in pulse.toml, ``PULSE_COINBASE__<KEY>`` in the environment): declared by
the venue itself and registered with it (``Venue.settings_model``), so the core settings never name a venue.

The market-data channels Pulse uses (``level2``, ``market_trades``, ``ticker``, ``heartbeats``) need no
authentication on ``wss://advanced-trade-ws.coinbase.com`` (only ``user`` and ``futures_balance_summary`` do), so the
section holds no credential and the venue declares no secret."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pulse.settings import PosFloat, Section


class CoinbaseSettings(Section):
    url: str = "wss://advanced-trade-ws.coinbase.com"  # the market-data WebSocket
    rest_url: str = "https://api.coinbase.com"  # public REST base: /api/v3/brokerage/market/products
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTC/USD", "ETH/USD"])
    channels: list[Literal["trade", "ticker", "book"]] = msgspec.field(
        default_factory=lambda: ["trade", "ticker", "book"]
    )
    # levels per side a published BookSnapshot carries (Coinbase's level2 snapshot is the whole book; the local book
    # is kept whole, deltas carry every changed level)
    depth: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    heartbeats: bool = True  # subscribe the heartbeats channel (Coinbase closes quiet subscriptions in 60-90 s)
    stale_after_s: PosFloat = 10.0  # no message for this long (heartbeats arrive every second) → reconnect
    resync_timeout_s: PosFloat = 10.0  # a resubscribed book without a fresh snapshot by then → reconnect
    validate_products: bool = True  # check the symbols against the public products endpoint before subscribing
    rest_timeout_s: PosFloat = 10.0
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    connect_timeout_s: PosFloat = 10.0
