"""Binance combined-stream names, URLs and requests, and the pacing of our own messages.

Stream names are ``<symbol>@<kind>`` with the symbol in lower case: ``btcusdt@trade``, ``btcusdt@aggTrade``,
``btcusdt@bookTicker``, ``btcusdt@depth@100ms`` (``btcusdt@depth`` is the 1000 ms diff stream). One connection to
``/stream?streams=a/b/c`` delivers them all, each wrapped as ``{"stream": name, "data": event}``; more are added or
removed on the open connection with ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [names], "id": n}``,
answered ``{"result": null, "id": n}``.

Limits (web-socket-streams.md, "WebSocket Limits"): at most 5 incoming messages per second per connection — pings,
pongs and JSON requests all count — and at most 1024 streams per connection. :class:`Pacer` keeps our requests
under a configured rate; :data:`MAX_STREAMS` is enforced by the ingester.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from ingesters.binance.schemas import Request, encoder
from pulse.errors import ConfigError

MAX_STREAMS = 1024  # per connection
#: streams put in the connection URL; the rest follow as SUBSCRIBE requests (keeps the request line short)
URL_STREAMS = 200
#: stream names per SUBSCRIBE request
PARAMS_PER_REQUEST = 200

#: Pulse channel → the stream kind(s) it reads (the trade kind and the depth speed are settings)
STREAM_KINDS = {"quote": "bookTicker"}


def stream_kind(channel: str, *, trade_stream: str = "trade", depth_speed: str = "100ms") -> str:
    """The stream suffix of a Pulse channel: ``trade``/``aggTrade``, ``bookTicker``, ``depth@100ms``/``depth``."""
    if channel == "trade":
        if trade_stream not in ("trade", "aggTrade"):
            raise ConfigError(f"invalid Binance trade stream {trade_stream!r}: expected trade or aggTrade")
        return trade_stream
    if channel == "quote":
        return "bookTicker"
    if channel == "book":
        if depth_speed not in ("100ms", "1000ms"):
            raise ConfigError(f"invalid Binance depth speed {depth_speed!r}: expected 100ms or 1000ms")
        return "depth@100ms" if depth_speed == "100ms" else "depth"
    raise ConfigError(f"unknown Binance channel {channel!r}: expected trade, quote or book")


def stream_name(venue_symbol: str, kind: str) -> str:
    """``BTCUSDT``, ``trade`` → ``btcusdt@trade`` (the symbol must already be validated)."""
    return f"{venue_symbol.lower()}@{kind}"


def stream_url(base: str, streams: Iterable[str]) -> str:
    """``wss://host:9443`` + streams → ``wss://host:9443/stream?streams=a/b/c`` (``/stream`` alone for none)."""
    parts = urlsplit(base)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"invalid Binance WebSocket URL {base!r}: expected ws:// or wss://")
    root = base.rstrip("/")
    names = list(streams)
    return f"{root}/stream?streams={'/'.join(names)}" if names else f"{root}/stream"


def request(method: str, streams: list[str], req_id: int) -> str:
    """A SUBSCRIBE or UNSUBSCRIBE request for ``streams``."""
    if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        raise ConfigError(f"unsupported Binance method {method!r}")
    if not streams or len(streams) > PARAMS_PER_REQUEST:
        raise ConfigError(f"a {method} request carries 1 to {PARAMS_PER_REQUEST} streams, got {len(streams)}")
    if type(req_id) is not int or req_id < 0:
        raise ConfigError(f"request id must be a non-negative integer, got {req_id!r}")
    return encoder.encode(Request(method=method, params=streams, id=req_id)).decode()


def chunks(items: list[str], size: int = PARAMS_PER_REQUEST) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Pacer:
    """At most ``rate`` messages in any one-second window (a sliding window of send times): :meth:`delay` says
    how long to wait before the next message may go. Pure; the clock is injected."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.per_window = max(1, int(rate))
        self.window = self.per_window / rate  # e.g. 4/s → 4 per 1.0 s; 0.5/s → 1 per 2 s
        self._clock = clock
        self._sent: list[float] = []

    def delay(self) -> float:
        now = self._clock()
        self._sent = [t for t in self._sent if now - t < self.window]
        if len(self._sent) < self.per_window:
            return 0.0
        return self.window - (now - self._sent[0])

    def sent(self) -> None:
        self._sent.append(self._clock())
