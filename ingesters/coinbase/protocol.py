"""What Pulse sends to Coinbase: one ``subscribe`` (or ``unsubscribe``) message per channel, as the Advanced Trade
WebSocket requires ("You can only subscribe to one channel per subscription message"), carrying every product id of
that channel. The market-data channels used here need no ``jwt``; none is sent, so no credential ever travels or is
logged. Coinbase disconnects a client that has not subscribed within 5 seconds of connecting."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ingesters.coinbase.symbols import VENUE_CHANNELS

HEARTBEATS = "heartbeats"
_encoder = msgspec.json.Encoder()


def request(method: str, channel: str, product_ids: Iterable[str] = ()) -> bytes:
    """``{"type": "subscribe"|"unsubscribe", "product_ids": […], "channel": …}``; ``heartbeats`` without products."""
    if method not in ("subscribe", "unsubscribe"):
        raise ValueError(f"unknown request {method!r}")
    if channel != HEARTBEATS and channel not in VENUE_CHANNELS.values():
        raise ValueError(f"unknown Coinbase channel {channel!r}")
    ids = list(product_ids)
    if channel != HEARTBEATS and not ids:
        raise ValueError(f"{method} {channel}: no product ids")
    msg: dict[str, object] = {"type": method}
    if ids:
        msg["product_ids"] = ids
    msg["channel"] = channel
    return _encoder.encode(msg)


def subscribe(channel: str, product_ids: Iterable[str] = ()) -> bytes:
    return request("subscribe", channel, product_ids)


def unsubscribe(channel: str, product_ids: Iterable[str] = ()) -> bytes:
    return request("unsubscribe", channel, product_ids)
