"""Kraken Spot WebSocket v2 wire formats, with Kraken's own field names.

Source: https://docs.kraken.com/api/docs/websocket-v2/ (channels ``trade``, ``ticker``, ``book``, ``instrument``,
``heartbeat``, ``status``; methods ``subscribe``, ``unsubscribe``, ``ping``) and the book checksum guide.

Every price and quantity is :class:`decimal.Decimal`: Kraken sends JSON numbers, and msgspec decodes the number's
text exactly into a Decimal, so no float ever touches a price. Timestamps stay RFC 3339 strings here and are
converted to integer nanoseconds by :func:`ingesters.kraken.protocol.parse_rfc3339_ns` (a ``datetime`` would
drop the nanoseconds the level3 channel sends).

Market-data messages carry ``channel`` (and ``type``); responses to requests carry ``method`` instead, so two
decoders exist: a tagged union on ``channel`` and one struct for every method response. Both are built once,
at import. Unknown fields are ignored (Kraken adds fields over time); missing required ones are errors.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

MessageType = Literal["snapshot", "update"]
Checksum = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]  # unsigned 32-bit CRC


# --------------------------------------------------------------------------------------------- market data


class BookLevel(msgspec.Struct, frozen=True):
    price: Decimal  # price level, quote currency per unit of base
    qty: Decimal  # aggregated quantity at the level, base currency; 0 in an update removes the level


class TradeData(msgspec.Struct, frozen=True):
    symbol: str  # currency pair, e.g. "BTC/USD"
    side: Literal["buy", "sell"]  # side of the taker (aggressor) order
    price: Decimal  # average price of the trade, quote currency
    qty: Decimal  # traded quantity, base currency
    ord_type: str  # order type of the taker order: "limit" or "market"
    trade_id: int  # sequence number unique per book (per pair)
    timestamp: str  # RFC 3339 time of the trade, e.g. "2023-09-25T07:49:37.708706Z"


class TickerData(msgspec.Struct, frozen=True):
    symbol: str  # currency pair
    bid: Decimal  # best bid price, quote currency
    bid_qty: Decimal  # quantity at the best bid, base currency
    ask: Decimal  # best ask price, quote currency
    ask_qty: Decimal  # quantity at the best ask, base currency
    last: Decimal  # last traded price (guaranteed only if traded in the past 24 h)
    volume: Decimal  # 24 h traded volume, base currency
    vwap: Decimal | None = None  # 24 h volume-weighted average price
    low: Decimal | None = None  # 24 h lowest trade price
    high: Decimal | None = None  # 24 h highest trade price
    change: Decimal | None = None  # 24 h price change, quote currency
    change_pct: Decimal | None = None  # 24 h price change, percentage points
    timestamp: str | None = None  # RFC 3339 time of the ticker data (absent in older feeds)


class BookData(msgspec.Struct, frozen=True):
    symbol: str  # currency pair
    checksum: Checksum  # CRC32 (unsigned) of the top 10 levels per side after applying this message
    bids: list[BookLevel] = []  # snapshot: best first; update: changed levels in the order to apply them
    asks: list[BookLevel] = []  # same, for the ask side
    timestamp: str | None = None  # RFC 3339 time of the book event (always on updates)


class InstrumentAsset(msgspec.Struct, frozen=True):
    id: str  # asset code, e.g. "BTC"
    status: str | None = None  # "enabled", "disabled", …
    precision: int | None = None  # decimals for balances/funding in this asset
    precision_display: int | None = None  # decimals recommended for display
    borrowable: bool | None = None  # available for margin borrowing
    collateral_value: Decimal | None = None  # collateral valuation multiplier (0..1)
    margin_rate: Decimal | None = None  # hourly margin borrowing rate


class InstrumentPair(msgspec.Struct, frozen=True):
    symbol: str  # currency pair, e.g. "BTC/USD" (the name to subscribe with)
    price_precision: int  # decimals of prices; used to format prices for the book checksum
    qty_precision: int  # decimals of quantities; used to format quantities for the book checksum
    base: str | None = None  # base asset code
    quote: str | None = None  # quote asset code
    status: str | None = None  # "online", "cancel_only", "post_only", "limit_only", "reduce_only", …
    price_increment: Decimal | None = None  # minimum price increment (tick), quote currency
    qty_increment: Decimal | None = None  # minimum quantity increment, base currency
    qty_min: Decimal | None = None  # minimum order quantity, base currency
    cost_min: Decimal | None = None  # minimum order cost, quote currency
    cost_precision: int | None = None  # decimals of order cost
    marginable: bool | None = None  # margin trading allowed
    has_index: bool | None = None  # an index price exists for the pair
    tick_size: Decimal | None = None  # deprecated alias of price_increment


class InstrumentData(msgspec.Struct, frozen=True):
    assets: list[InstrumentAsset] = []  # asset reference data
    pairs: list[InstrumentPair] = []  # tradeable pairs; an update may list only changed pairs


class StatusData(msgspec.Struct, frozen=True):
    system: str | None = None  # "online", "maintenance", "cancel_only", "post_only"
    api_version: str | None = None  # "v2"
    connection_id: int | None = None  # Kraken's id of this connection (may exceed int64)
    version: str | None = None  # engine version, e.g. "2.0.0"


class _Channel(msgspec.Struct, frozen=True, tag_field="channel"):
    pass


class TradeMessage(_Channel, frozen=True, tag="trade"):
    type: MessageType  # snapshot = the most recent trades on subscribe; update = new trades
    data: list[TradeData]  # one or more trades (a batch is not necessarily one taker order)


class TickerMessage(_Channel, frozen=True, tag="ticker"):
    type: MessageType
    data: list[TickerData]  # always exactly one element per Kraken


class BookMessage(_Channel, frozen=True, tag="book"):
    type: MessageType  # snapshot = full book to the subscribed depth; update = changed levels
    data: list[BookData]  # one element per symbol


class InstrumentMessage(_Channel, frozen=True, tag="instrument"):
    type: MessageType
    data: InstrumentData  # an object, not a list, unlike the other channels


class HeartbeatMessage(_Channel, frozen=True, tag="heartbeat"):
    """About once a second when nothing else was sent; carries no data."""


class StatusMessage(_Channel, frozen=True, tag="status"):
    type: MessageType | None = None
    data: list[StatusData] = []  # engine status, sent on connect and on every change


ChannelMessage = TradeMessage | TickerMessage | BookMessage | InstrumentMessage | HeartbeatMessage | StatusMessage


# ----------------------------------------------------------------------------------------- method responses


class SubscriptionResult(msgspec.Struct, frozen=True):
    channel: str  # the channel (un)subscribed
    symbol: str | None = None  # one ack per symbol; absent for "instrument"
    depth: int | None = None  # book only: levels per side
    snapshot: bool | None = None  # whether a snapshot follows
    event_trigger: str | None = None  # ticker only: "trades" or "bbo"
    warnings: list[str] | None = None  # deprecation notices


class MethodResponse(msgspec.Struct, frozen=True):
    """A response to ``subscribe``, ``unsubscribe`` or ``ping`` (``method`` is then ``"pong"``)."""

    method: str  # "subscribe", "unsubscribe", "pong", …
    success: bool | None = None  # absent on pong
    result: SubscriptionResult | None = None  # present on success
    error: str | None = None  # present when success is false, e.g. "Currency pair not supported XBT/USD"
    symbol: str | None = None  # on a failed subscribe: the rejected pair (there is no result then)
    req_id: int | None = None  # echoed client request id
    time_in: str | None = None  # RFC 3339: request received on the wire
    time_out: str | None = None  # RFC 3339: response sent on the wire
    warnings: list[str] | None = None  # deprecation notices


class Envelope(msgspec.Struct, frozen=True):
    """Just enough to route a frame whose first key is not ``channel``."""

    channel: str | None = None
    method: str | None = None


# ------------------------------------------------------------------------------------------------ requests


class SubscriptionParams(msgspec.Struct, frozen=True, omit_defaults=True):
    channel: str  # "trade", "ticker", "book", "instrument", …
    symbol: list[str] | None = None  # pairs; omitted for "instrument"
    depth: int | None = None  # book only: 10, 25, 100, 500 or 1000 (Kraken's default is 10)
    snapshot: bool | None = None  # request a snapshot after subscribing (Kraken's default is true)
    event_trigger: str | None = None  # ticker only: "trades" (default) or "bbo"


class Request(msgspec.Struct, frozen=True, omit_defaults=True):
    method: str  # "subscribe", "unsubscribe", "ping"
    params: SubscriptionParams | None = None  # absent for ping
    req_id: int | None = None  # optional client request id, echoed in the response


# ------------------------------------------------------------------------------------------------ decoders

channel_decoder = msgspec.json.Decoder(ChannelMessage)
method_decoder = msgspec.json.Decoder(MethodResponse)
envelope_decoder = msgspec.json.Decoder(Envelope)
request_decoder = msgspec.json.Decoder(Request)
# Kraken sends prices and quantities as JSON numbers; encode ours the same way.
encoder = msgspec.json.Encoder(decimal_format="number")
