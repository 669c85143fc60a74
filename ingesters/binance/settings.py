"""Binance's settings section (``[binance]`` in pulse.toml, ``PULSE_BINANCE__<KEY>`` in the environment): declared by
the venue itself and registered with it (``Venue.settings_model``), so the core settings never name a venue.

Market data needs no credentials, so the section has no secret."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pulse.settings import PosFloat, Section


class BinanceSettings(Section):
    url: str = "wss://stream.binance.com:9443"  # WebSocket base; the ingester connects to <url>/stream?streams=…
    rest_url: str = "https://api.binance.com"  # REST base: /api/v3/depth, /api/v3/exchangeInfo
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"])
    channels: list[Literal["trade", "quote", "book"]] = msgspec.field(
        default_factory=lambda: ["trade", "quote", "book"]
    )
    trade_stream: Literal["trade", "aggTrade"] = "trade"  # raw trades, or one aggregate per taker order
    depth_speed: Literal["100ms", "1000ms"] = "100ms"  # <symbol>@depth@100ms or <symbol>@depth
    depth_limit: Literal[5, 10, 20, 50, 100, 500, 1000, 5000] = 1000  # levels per side of the REST snapshot
    # Binance ends every connection at 24 h: a new one is opened, overlapped and switched to before that
    renew_after_s: PosFloat = 23 * 3600.0
    renew_overlap_max_s: PosFloat = 10.0  # longest wait for the new connection to deliver every stream
    # our own JSON messages per second on one connection (Binance allows 5 incoming messages/s, pongs included)
    max_messages_per_s: Annotated[float, Meta(gt=0, le=5)] = 4.0
    stale_after_s: PosFloat = 60.0  # no data frame for this long → reconnect (quiet markets need a long one)
    # WebSocket pings of our own (Binance answers them; it pings us every 20 s and we pong): a dead transport is
    # found within ping_interval_s + ping_timeout_s even while streams are quiet
    ping_interval_s: PosFloat = 30.0
    ping_timeout_s: PosFloat = 20.0
    snapshot_retry_s: PosFloat = 1.0  # wait before re-asking for a depth snapshot that predates the buffered diffs
    rest_timeout_s: PosFloat = 10.0
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    connect_timeout_s: PosFloat = 10.0
