"""Alpaca market data v2 stream wire formats (US stocks: ``wss://stream.data.alpaca.markets/v2/{feed}``).

Sources: Alpaca's "WebSocket Stream" page (connection, ``{"action": "auth", "key", "secret"}`` within 10 s,
``subscribe``/``unsubscribe`` with ``trades``/``quotes``/``bars`` lists, control messages ``success``, ``error``
and ``subscription``, the error codes) and "Real-time Stock Data" (the ``t``, ``q`` and ``b`` schemas).

Every server message is a JSON **array** of objects, each tagged by ``T``: ``[{"T": "success", "msg":
"connected"}]``, ``[{"T": "t", …}, {"T": "q", …}]``. Prices are JSON numbers: msgspec decodes them straight from
their text into :class:`Decimal` (``126.55`` stays ``126.55``; no float touches them). Times are RFC-3339 strings
with up to nanosecond precision (``"2021-02-22T15:51:45.335689322Z"``), decoded exactly by the parser. Unknown
fields are ignored (Alpaca adds fields over time); a missing required one is an error.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

#: error codes of the stream (Alpaca's table), and whether reconnecting can help
ERRORS: dict[int, str] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    500: "internal error",
}
#: errors that end the ingester: wrong credentials or a feed the account may not use (retrying cannot help)
FATAL_ERRORS = frozenset({402, 409})


class _Msg(msgspec.Struct, frozen=True, tag_field="T"):
    pass


class Success(_Msg, frozen=True, tag="success"):
    msg: str  # "connected" on connect, "authenticated" after a good auth


class Error(_Msg, frozen=True, tag="error"):
    code: int
    msg: str


class Subscription(_Msg, frozen=True, tag="subscription"):
    """The session's whole subscription after each subscribe/unsubscribe (not the change)."""

    trades: list[str] = []
    quotes: list[str] = []
    bars: list[str] = []
    updated_bars: list[str] = msgspec.field(name="updatedBars", default_factory=list)
    daily_bars: list[str] = msgspec.field(name="dailyBars", default_factory=list)
    statuses: list[str] = []
    lulds: list[str] = []
    corrections: list[str] = []
    cancel_errors: list[str] = msgspec.field(name="cancelErrors", default_factory=list)


class TradeMsg(_Msg, frozen=True, tag="t"):
    symbol: str = msgspec.field(name="S")
    trade_id: int = msgspec.field(name="i")  # the exchange's trade id
    exchange: str = msgspec.field(name="x")  # exchange code, e.g. "V" (IEX)
    price: Decimal = msgspec.field(name="p")
    size: Decimal = msgspec.field(name="s")  # shares
    timestamp: str = msgspec.field(name="t")  # RFC-3339, nanoseconds
    conditions: list[str] = msgspec.field(name="c", default_factory=list)
    tape: str = msgspec.field(name="z", default="")  # A (NYSE), B (other exchanges' listings), C (Nasdaq)


class QuoteMsg(_Msg, frozen=True, tag="q"):
    symbol: str = msgspec.field(name="S")
    bid_exchange: str = msgspec.field(name="bx")
    bid: Decimal = msgspec.field(name="bp")
    bid_size: Decimal = msgspec.field(name="bs")  # in round lots (Alpaca's schema), passed through as sent
    ask_exchange: str = msgspec.field(name="ax")
    ask: Decimal = msgspec.field(name="ap")
    ask_size: Decimal = msgspec.field(name="as")
    timestamp: str = msgspec.field(name="t")
    conditions: list[str] = msgspec.field(name="c", default_factory=list)
    tape: str = msgspec.field(name="z", default="")


class BarMsg(_Msg, frozen=True, tag="b"):
    """A minute bar, sent just after the minute it covers; ``t`` is the minute's start."""

    symbol: str = msgspec.field(name="S")
    open: Decimal = msgspec.field(name="o")
    high: Decimal = msgspec.field(name="h")
    low: Decimal = msgspec.field(name="l")
    close: Decimal = msgspec.field(name="c")
    volume: Decimal = msgspec.field(name="v")
    timestamp: str = msgspec.field(name="t")
    trades: int = msgspec.field(name="n", default=0)
    vwap: Decimal | None = msgspec.field(name="vw", default=None)


class CorrectionMsg(_Msg, frozen=True, tag="c"):
    """A trade sent earlier was wrong: the original (``oi``/``op``/``os``) and the corrected one (``ci``/``cp``/
    ``cs``). Sent automatically to a session subscribed to the symbol's trades."""

    symbol: str = msgspec.field(name="S")
    exchange: str = msgspec.field(name="x")
    original_id: int = msgspec.field(name="oi")
    original_price: Decimal = msgspec.field(name="op")
    original_size: Decimal = msgspec.field(name="os")
    corrected_id: int = msgspec.field(name="ci")
    corrected_price: Decimal = msgspec.field(name="cp")
    corrected_size: Decimal = msgspec.field(name="cs")
    timestamp: str = msgspec.field(name="t")
    tape: str = msgspec.field(name="z", default="")


class CancelMsg(_Msg, frozen=True, tag="x"):
    """A trade sent earlier was cancelled (``a`` = "C") or was an error ("E"). Automatic with trades, too."""

    symbol: str = msgspec.field(name="S")
    trade_id: int = msgspec.field(name="i")
    exchange: str = msgspec.field(name="x")
    price: Decimal = msgspec.field(name="p")
    size: Decimal = msgspec.field(name="s")
    action: str = msgspec.field(name="a")
    timestamp: str = msgspec.field(name="t")
    tape: str = msgspec.field(name="z", default="")


Message = Success | Error | Subscription | TradeMsg | QuoteMsg | BarMsg | CorrectionMsg | CancelMsg


class Auth(msgspec.Struct, frozen=True):
    action: str  # "auth"
    key: str
    secret: str


class SubscribeRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """``{"action": "subscribe"|"unsubscribe", "trades": [...], "quotes": [...], "bars": [...]}``."""

    action: str
    trades: list[str] = []
    quotes: list[str] = []
    bars: list[str] = []


frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])  # the array; each element decoded on its own
message_decoder = msgspec.json.Decoder(Message)
request_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
auth_decoder = msgspec.json.Decoder(Auth)
subscribe_decoder = msgspec.json.Decoder(SubscribeRequest)
encoder = msgspec.json.Encoder()
