"""Alpaca's settings section (``[alpaca]`` in pulse.toml, ``PULSE_ALPACA__<KEY>`` in the environment): declared by
the venue itself and registered with it (``Venue.settings_model``), so the core settings never name a venue.

``key`` and ``secret`` are the venue's secret settings (``Venue.secret_settings``): each may be given as
``key_file``/``secret_file`` instead (a file holding only the value, e.g. a systemd credential). Neither is ever
logged, shown by ``pulse config show`` or written to a status file."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from pulse.settings import PosFloat, Section


class AlpacaSettings(Section):
    # the stream's base; the ingester connects to <url>/<feed>
    url: str = "wss://stream.data.alpaca.markets/v2"
    # iex (free plan), sip (all US exchanges: Algo Trader Plus) or delayed_sip (15 minutes late)
    feed: Literal["iex", "sip", "delayed_sip"] = "iex"
    key: str = ""  # secret: the API key id (APCA-API-KEY-ID)
    key_file: str = ""
    secret: str = ""  # secret: the API secret key
    secret_file: str = ""
    symbols: list[str] = msgspec.field(default_factory=lambda: ["AAPL", "TSLA"])
    channels: list[Literal["trade", "quote", "bar"]] = msgspec.field(default_factory=lambda: ["trade", "quote", "bar"])
    # "regular": connect 09:30-16:00 New York on NYSE sessions (13:00 on early closes); "extended": 04:00-20:00 on
    # session days (17:00 after an early close); "always": ignore market hours (a local venue streams around the clock)
    market_hours: Literal["regular", "extended", "always"] = "regular"
    stale_after_s: PosFloat = 300.0  # no data frame for this long while open → reconnect (IEX symbols can be quiet)
    # WebSocket pings of our own: a dead transport is found within ping_interval_s + ping_timeout_s
    ping_interval_s: PosFloat = 20.0
    ping_timeout_s: PosFloat = 20.0
    auth_timeout_s: PosFloat = 8.0  # Alpaca closes a connection not authenticated within 10 s
    # the historical data REST API (`pulse repair`'s source: GET /v2/stocks/{symbol}/trades)
    rest_url: str = "https://data.alpaca.markets"
    rest_max_attempts: Annotated[int, Meta(ge=1, le=10)] = 5  # per request: 429, 5xx, timeouts
    rest_timeout_s: PosFloat = 10.0
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    connect_timeout_s: PosFloat = 10.0
