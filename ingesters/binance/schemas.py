"""Binance spot wire formats (WebSocket market streams and the REST market-data endpoints Pulse reads), with
Binance's own field names mapped to readable attributes.

Sources: binance-spot-api-docs ``web-socket-streams.md`` (combined streams, live SUBSCRIBE/UNSUBSCRIBE, ``trade``,
``aggTrade``, ``bookTicker``, ``depthUpdate``, ``serverShutdown``, "How to manage a local order book correctly"),
``rest-api.md`` (``GET /api/v3/depth``, ``/api/v3/trades``, ``/api/v3/exchangeInfo``) and ``filters.md``
(``PRICE_FILTER.tickSize``, ``LOT_SIZE.stepSize``).

Prices and quantities are JSON strings on Binance ("0.00100000"): they decode straight into :class:`Decimal`, so
no float touches them. Times are integer milliseconds since the epoch. Unknown fields are ignored (Binance adds
fields over time); a missing required one is an error. Decoders are built once, at import.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

UpdateId = int  # Binance's order book update ids: unsigned 64-bit, increasing per symbol


class ErrorBody(msgspec.Struct, frozen=True):
    code: int  # e.g. 2 "Invalid request: invalid stream", 3 "Invalid JSON"
    msg: str


class Frame(msgspec.Struct, frozen=True):
    """Whatever arrives on a combined-stream connection: a stream event ``{"stream", "data"}``, a response to a
    request ``{"result", "id"}`` or an error ``{"error": {"code", "msg"}, "id"}`` (Binance has also been seen to
    put ``code``/``msg`` at the top level). ``data`` stays raw until the stream name says what it is."""

    stream: str | None = None  # "btcusdt@trade", "btcusdt@depth@100ms", "!serverShutdown", …
    data: msgspec.Raw = msgspec.Raw()  # the event (empty when absent), decoded by the stream's own decoder
    result: msgspec.Raw = msgspec.Raw()  # `null` on a successful SUBSCRIBE/UNSUBSCRIBE; empty when absent
    id: int | str | None = None  # our request id, echoed
    error: ErrorBody | None = None
    code: int | None = None
    msg: str | None = None


class TradeEvent(msgspec.Struct, frozen=True):
    """``<symbol>@trade``: one raw trade (each has a unique buyer and seller)."""

    symbol: str = msgspec.field(name="s")  # venue symbol, upper case, e.g. "BNBBTC"
    trade_id: int = msgspec.field(name="t")  # unique and increasing per symbol
    price: Decimal = msgspec.field(name="p")  # quote currency per unit of base
    qty: Decimal = msgspec.field(name="q")  # base currency
    trade_time: int = msgspec.field(name="T")  # ms since the epoch
    buyer_is_maker: bool = msgspec.field(name="m")  # true: the seller was the taker (aggressor)
    event_time: int = msgspec.field(name="E", default=0)  # ms; when the event was sent


class AggTradeEvent(msgspec.Struct, frozen=True):
    """``<symbol>@aggTrade``: the trades of one taker order at one price, aggregated."""

    symbol: str = msgspec.field(name="s")
    agg_id: int = msgspec.field(name="a")  # aggregate trade id, increasing per symbol
    price: Decimal = msgspec.field(name="p")
    qty: Decimal = msgspec.field(name="q")
    first_trade_id: int = msgspec.field(name="f")
    last_trade_id: int = msgspec.field(name="l")
    trade_time: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")
    event_time: int = msgspec.field(name="E", default=0)


class BookTickerEvent(msgspec.Struct, frozen=True):
    """``<symbol>@bookTicker``: the best bid and ask on every change. Spot sends no event time."""

    update_id: UpdateId = msgspec.field(name="u")  # the order book update id this top of book is at
    symbol: str = msgspec.field(name="s")
    bid: Decimal = msgspec.field(name="b")
    bid_qty: Decimal = msgspec.field(name="B")
    ask: Decimal = msgspec.field(name="a")
    ask_qty: Decimal = msgspec.field(name="A")


class DepthUpdateEvent(msgspec.Struct, frozen=True):
    """``<symbol>@depth@100ms`` (or ``@depth``, 1000 ms): the levels that changed in ``[first_id, final_id]``.
    Each level is ``[price, qty]`` with the level's NEW absolute quantity; 0 removes it."""

    symbol: str = msgspec.field(name="s")
    first_id: UpdateId = msgspec.field(name="U")
    final_id: UpdateId = msgspec.field(name="u")
    bids: list[tuple[Decimal, Decimal]] = msgspec.field(name="b")
    asks: list[tuple[Decimal, Decimal]] = msgspec.field(name="a")
    event_time: int = msgspec.field(name="E", default=0)


class ServerShutdownEvent(msgspec.Struct, frozen=True):
    """``!serverShutdown``: the server is about to close this connection; open a new one now."""

    event_time: int = msgspec.field(name="E", default=0)


# ------------------------------------------------------------------------------------------------ requests


class Request(msgspec.Struct, frozen=True, omit_defaults=True):
    method: str  # SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY
    params: list[str] | None = None  # stream names
    id: int | None = None  # echoed in the response


# ------------------------------------------------------------------------------------------------ REST


class DepthSnapshot(msgspec.Struct, frozen=True):
    """``GET /api/v3/depth?symbol=…&limit=…``: the book at ``last_update_id``, best first."""

    last_update_id: UpdateId = msgspec.field(name="lastUpdateId")
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


class RecentTrade(msgspec.Struct, frozen=True):
    """One element of ``GET /api/v3/trades``."""

    id: int
    price: Decimal
    qty: Decimal
    time: int  # ms
    is_buyer_maker: bool = msgspec.field(name="isBuyerMaker")
    quote_qty: Decimal | None = msgspec.field(name="quoteQty", default=None)
    is_best_match: bool | None = msgspec.field(name="isBestMatch", default=None)


class SymbolFilter(msgspec.Struct, frozen=True):
    """One of a symbol's ``filters``; only the fields Pulse reads are named."""

    filter_type: str = msgspec.field(name="filterType")  # PRICE_FILTER, LOT_SIZE, NOTIONAL, …
    tick_size: Decimal | None = msgspec.field(name="tickSize", default=None)  # PRICE_FILTER: price increment
    min_price: Decimal | None = msgspec.field(name="minPrice", default=None)
    max_price: Decimal | None = msgspec.field(name="maxPrice", default=None)
    step_size: Decimal | None = msgspec.field(name="stepSize", default=None)  # LOT_SIZE: quantity increment
    min_qty: Decimal | None = msgspec.field(name="minQty", default=None)
    max_qty: Decimal | None = msgspec.field(name="maxQty", default=None)


class SymbolInfo(msgspec.Struct, frozen=True):
    symbol: str  # "ETHBTC"
    status: str  # TRADING, HALT, BREAK
    base_asset: str = msgspec.field(name="baseAsset")
    quote_asset: str = msgspec.field(name="quoteAsset")
    base_asset_precision: int = msgspec.field(name="baseAssetPrecision", default=8)
    quote_asset_precision: int = msgspec.field(name="quoteAssetPrecision", default=8)
    filters: list[SymbolFilter] = []


class ExchangeInfo(msgspec.Struct, frozen=True):
    """``GET /api/v3/exchangeInfo`` (the parts Pulse reads)."""

    symbols: list[SymbolInfo]
    timezone: str = "UTC"
    server_time: int = msgspec.field(name="serverTime", default=0)


class RestError(msgspec.Struct, frozen=True):
    """Any endpoint's error body, e.g. ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int
    msg: str


frame_decoder = msgspec.json.Decoder(Frame)
trade_decoder = msgspec.json.Decoder(TradeEvent)
agg_trade_decoder = msgspec.json.Decoder(AggTradeEvent)
book_ticker_decoder = msgspec.json.Decoder(BookTickerEvent)
depth_decoder = msgspec.json.Decoder(DepthUpdateEvent)
shutdown_decoder = msgspec.json.Decoder(ServerShutdownEvent)
snapshot_decoder = msgspec.json.Decoder(DepthSnapshot)
trades_decoder = msgspec.json.Decoder(list[RecentTrade])
exchange_info_decoder = msgspec.json.Decoder(ExchangeInfo)
rest_error_decoder = msgspec.json.Decoder(RestError)
request_decoder = msgspec.json.Decoder(Request)
encoder = msgspec.json.Encoder()
