"""Coinbase Advanced Trade WebSocket market-data wire formats, and the public products endpoint Pulse reads.

Sources: Coinbase Developer Platform docs, "Advanced Trade WebSocket Overview" (one ``subscribe`` per channel with
``product_ids``; unsubscribe has the same shape; a ``subscriptions`` message answers), "Advanced Trade WebSocket
Channels" (``heartbeats``, ``ticker``, ``level2`` — received as channel ``l2_data`` —, ``market_trades``) and the
AsyncAPI reference of each channel; ``GET /api/v3/brokerage/market/products`` (public product metadata) and
``GET /api/v3/brokerage/market/products/{product_id}/ticker`` (public market trades).

Every message is one envelope: ``{"channel", "client_id", "timestamp", "sequence_num", "events": […]}``; each
channel has its own event shape. Prices and sizes are JSON strings and decode straight into :class:`Decimal`.
Times are RFC 3339 strings with up to nanosecond fractions (``2023-02-09T20:32:50.714964855Z``). Unknown fields
are ignored (Coinbase adds fields over time); a missing required one is an error. Decoders are built once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import msgspec


class Envelope(msgspec.Struct, frozen=True):
    """Any message on the connection. Data messages carry ``channel``/``sequence_num``/``events``; an error is
    ``{"type": "error", "message": …}``. ``events`` stays raw until ``channel`` says what it holds."""

    channel: str | None = None  # l2_data, market_trades, ticker, ticker_batch, heartbeats, subscriptions, …
    client_id: str = ""
    timestamp: str = ""  # when Coinbase sent the message
    sequence_num: int | None = None  # per connection: +1 for every message Coinbase sends on it, from 0
    events: msgspec.Raw = msgspec.Raw()
    type: str | None = None  # "error" for an error message
    message: str | None = None


# -- level2 (received as l2_data) ---------------------------------------------------------------------------
class L2Update(msgspec.Struct, frozen=True):
    side: Literal["bid", "offer"]
    event_time: str
    price_level: Decimal
    new_quantity: Decimal  # the level's new size (not a delta); "0" removes it


class L2Event(msgspec.Struct, frozen=True):
    type: Literal["snapshot", "update"]
    product_id: str
    updates: list[L2Update]


# -- market_trades ------------------------------------------------------------------------------------------
class MarketTrade(msgspec.Struct, frozen=True):
    trade_id: str
    product_id: str
    price: Decimal
    size: Decimal
    side: Literal["BUY", "SELL"]  # the MAKER's side (the resting order): the aggressor is the other one
    time: str


class TradesEvent(msgspec.Struct, frozen=True):
    type: Literal["snapshot", "update"]
    trades: list[MarketTrade]


# -- ticker -------------------------------------------------------------------------------------------------
class TickerItem(msgspec.Struct, frozen=True):
    product_id: str
    price: Decimal  # last trade price
    volume_24_h: Decimal
    low_24_h: Decimal | None = None
    high_24_h: Decimal | None = None
    low_52_w: Decimal | None = None
    high_52_w: Decimal | None = None
    price_percent_chg_24_h: Decimal | None = None
    best_bid: Decimal | None = None
    best_bid_quantity: Decimal | None = None
    best_ask: Decimal | None = None
    best_ask_quantity: Decimal | None = None
    type: str = "ticker"


class TickerEvent(msgspec.Struct, frozen=True):
    type: Literal["snapshot", "update"]
    tickers: list[TickerItem]


# -- heartbeats, subscriptions --------------------------------------------------------------------------------
class HeartbeatEvent(msgspec.Struct, frozen=True):
    current_time: str
    heartbeat_counter: int | str  # the docs' example writes it as a string


class SubscriptionsEvent(msgspec.Struct, frozen=True):
    subscriptions: dict[str, list[str]]  # channel → product ids now subscribed on this connection


# -- REST: GET /api/v3/brokerage/market/products ----------------------------------------------------------------
class Product(msgspec.Struct, frozen=True):
    product_id: str
    base_increment: Decimal | None = None
    quote_increment: Decimal | None = None
    price_increment: Decimal | None = None
    base_currency_id: str = ""
    quote_currency_id: str = ""
    status: str = ""
    trading_disabled: bool = False
    product_type: str = ""


class MarketTradesResponse(msgspec.Struct, frozen=True):
    """``GET /api/v3/brokerage/market/products/{product_id}/ticker``: public market trades, newest first."""

    trades: list[MarketTrade]
    best_bid: str = ""
    best_ask: str = ""


class ProductsResponse(msgspec.Struct, frozen=True):
    products: list[Product]
    num_products: int = 0


envelope_decoder = msgspec.json.Decoder(Envelope)
l2_decoder = msgspec.json.Decoder(list[L2Event])
trades_decoder = msgspec.json.Decoder(list[TradesEvent])
ticker_decoder = msgspec.json.Decoder(list[TickerEvent])
heartbeat_decoder = msgspec.json.Decoder(list[HeartbeatEvent])
subscriptions_decoder = msgspec.json.Decoder(list[SubscriptionsEvent])
products_decoder = msgspec.json.Decoder(ProductsResponse)
market_trades_decoder = msgspec.json.Decoder(MarketTradesResponse)

_whole_seconds: dict[str, int] = {}


def parse_time(text: str) -> int:
    """An RFC 3339 UTC time with an optional fraction of up to 9 digits → ns since the epoch. Refuses anything else
    (another zone, a malformed date) with ValueError."""
    if len(text) < 20 or text[-1] != "Z" or text[10] != "T":
        raise ValueError(f"not an RFC 3339 UTC time: {text[:40]!r}")
    head = text[:19]
    secs = _whole_seconds.get(head)
    if secs is None:
        secs = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
        if len(_whole_seconds) > 4096:
            _whole_seconds.clear()
        _whole_seconds[head] = secs
    frac = text[19:-1]
    if not frac:
        return secs * 1_000_000_000
    digits = frac[1:]
    if frac[0] != "." or not (1 <= len(digits) <= 9) or not digits.isdigit() or not digits.isascii():
        raise ValueError(f"not an RFC 3339 UTC time: {text[:40]!r}")
    return secs * 1_000_000_000 + int(digits.ljust(9, "0"))


def format_time(ns: int) -> str:
    """ns since the epoch → Coinbase's RFC 3339 form with 9 fraction digits (the local venue writes it)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"
