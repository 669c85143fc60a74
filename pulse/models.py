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

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Annotated, Literal

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


Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


# gc=False: a tick holds no containers, so the garbage collector need not track the many a batch decodes to.
class QuoteTick(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One tick of a :class:`QuoteBatch`: ``[ts_event, seq, bid, bid_size, ask, ask_size]`` on the wire."""

    ts_event: Int64
    seq: Int64
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None


class QuoteBatch(_Event, frozen=True, tag="quote_batch"):
    """Many best-bid/offer quotes of ONE instrument, in order, in one message: the historical (backfill) path.

    Equivalent to the :class:`Quote` events :meth:`quotes` returns (same venue, symbol, ``ts_recv`` and
    ``tradeable``; no ladder). ``ts_event`` and ``seq`` repeat the first tick's, so the envelope orders and
    keys like a single quote. It travels on the instrument's ``quote`` topic, so per-instrument order holds
    between batches and single quotes. Live namespaces keep one event per message (latency); a backfill
    carries ~1,000 ticks per message, which is what lets the sink get near the database's COPY ceiling (the
    per-message receive + ack + decode cost in Python is paid once per batch instead of once per tick).
    """

    ticks: tuple[QuoteTick, ...]
    tradeable: bool = True

    def quotes(self) -> list[Quote]:
        v, s, r, t = self.venue, self.symbol, self.ts_recv, self.tradeable
        return [
            Quote(venue=v, symbol=s, ts_event=k.ts_event, ts_recv=r, seq=k.seq, bid=k.bid, bid_size=k.bid_size,
                  ask=k.ask, ask_size=k.ask_size, tradeable=t)
            for k in self.ticks
        ]  # fmt: skip

    @classmethod
    def chunks(cls, quotes: Iterable[Quote], size: int = 1000) -> Iterator[QuoteBatch]:
        """Pack ``quotes`` (in order) into batches of at most ``size``; a new batch starts whenever venue,
        symbol, ``ts_recv`` or ``tradeable`` changes. A quote carrying a ladder cannot be batched (ValueError)."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        ticks: list[QuoteTick] = []
        head: tuple[str, str, int, bool] | None = None
        for q in quotes:
            if q.bids or q.asks:
                raise ValueError("a Quote with a ladder (bids/asks) cannot be carried in a QuoteBatch")
            h = (q.venue, q.symbol, q.ts_recv, q.tradeable)
            if ticks and (h != head or len(ticks) >= size):
                yield cls._of(head, ticks)  # type: ignore[arg-type]
                ticks = []
            head = h
            ticks.append(QuoteTick(q.ts_event, q.seq, q.bid, q.bid_size, q.ask, q.ask_size))
        if ticks:
            yield cls._of(head, ticks)  # type: ignore[arg-type]

    @classmethod
    def _of(cls, head: tuple[str, str, int, bool], ticks: list[QuoteTick]) -> QuoteBatch:
        venue, symbol, ts_recv, tradeable = head
        first = ticks[0]
        return cls(venue=venue, symbol=symbol, ts_event=first.ts_event, ts_recv=ts_recv, seq=first.seq,
                   ticks=tuple(ticks), tradeable=tradeable)  # fmt: skip


Event = Trade | Quote | Ticker | BookSnapshot | BookDelta | Candle | Status | QuoteBatch


def unbatched(event: Event) -> list[Event]:
    """The single events a message carries: a :class:`QuoteBatch`'s quotes, else ``[event]``."""
    return event.quotes() if isinstance(event, QuoteBatch) else [event]  # type: ignore[return-value]


EVENT_TYPES: dict[str, type] = {
    "trade": Trade,
    "quote": Quote,
    "ticker": Ticker,
    "book_snapshot": BookSnapshot,
    "book_delta": BookDelta,
    "candle": Candle,
    "status": Status,
    "quote_batch": QuoteBatch,
}
