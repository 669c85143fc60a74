"""The canonical event model every ingester produces and every consumer and sink reads.

All events are frozen msgspec structs tagged by ``type`` so one decoder reads any of them. Every event
carries the venue, the canonical symbol, two integer-nanosecond timestamps (``ts_event`` from the venue,
``ts_recv`` from our clock) and ``seq``, a per-(venue, symbol, channel) sequence number assigned by the
ingester (strictly increasing within one ingester run; a ``Status`` marker of kind ``gap`` says where it may
have lost data).

Prices and sizes are :class:`decimal.Decimal`, decoded straight from the venue's text: no float ever touches
them. On the wire they are decimal strings, which any JSON reader (Java, Flink, Pulsar IO) reads exactly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

SCHEMA_VERSION = 1

Side = Literal["buy", "sell"]


class Level(msgspec.Struct, frozen=True, array_like=True):
    """One price level: ``[price, size]`` on the wire. In a :class:`BookDelta` size 0 removes the level."""

    price: Decimal
    size: Decimal


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    venue: str
    symbol: str
    ts_event: int  # venue timestamp, ns since the epoch (UTC)
    ts_recv: int  # our receive timestamp, ns since the epoch (UTC)
    seq: int = 0  # per-(venue, symbol, channel) sequence assigned by the ingester


class Trade(_Event, frozen=True, tag="trade"):
    price: Decimal
    size: Decimal
    side: Side | None  # aggressor side, when the venue says
    trade_id: str  # venue trade id; with venue+symbol it is the trade's unique key
    ord_type: str | None = None  # "market" / "limit" when the venue says


class Quote(_Event, frozen=True, tag="quote"):
    """Best bid and offer, optionally with the venue's whole visible ladder (OANDA sends one)."""

    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()
    tradeable: bool = True


class Ticker(_Event, frozen=True, tag="ticker"):
    """The venue's rolling 24h summary plus its top of book."""

    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    last: Decimal
    volume: Decimal
    vwap: Decimal | None = None
    low: Decimal | None = None
    high: Decimal | None = None
    change: Decimal | None = None
    change_pct: Decimal | None = None


class BookSnapshot(_Event, frozen=True, tag="book_snapshot"):
    """A full book (truncated to ``depth`` levels per side), best first."""

    depth: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int | None = None


class BookDelta(_Event, frozen=True, tag="book_delta"):
    """Changed levels; a level of size 0 is removed. ``checksum`` is the venue's, verified before publish."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int | None = None
    # Top of book after applying this delta (what the sink stores as "book top").
    best_bid: Level | None = None
    best_ask: Level | None = None


class Candle(_Event, frozen=True, tag="candle"):
    """OHLCV over ``[ts_event, ts_event + interval_s)``; ``side`` says which price series it summarises."""

    interval_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    ticks: int = 0
    side: Literal["bid", "ask", "mid", "trade"] | None = None


StatusKind = Literal[
    "connected",  # transport up and subscriptions acknowledged
    "disconnected",  # transport lost; a gap follows if we reconnect
    "gap",  # data may be missing between the previous event and the next one
    "resync",  # book checksum failed; a fresh snapshot follows
    "stale",  # no data for longer than the watchdog allows
    "subscribed",
    "unsubscribed",
    "market_closed",
    "market_open",
]


class Status(_Event, frozen=True, tag="status"):
    kind: StatusKind
    detail: str = ""


Event = Trade | Quote | Ticker | BookSnapshot | BookDelta | Candle | Status

EVENT_TYPES: dict[str, type] = {
    "trade": Trade,
    "quote": Quote,
    "ticker": Ticker,
    "book_snapshot": BookSnapshot,
    "book_delta": BookDelta,
    "candle": Candle,
    "status": Status,
}
