"""The ``/ws`` protocol: control messages a client sends, the acks and errors it gets back, close codes.

Client → server (one JSON object per text frame; ``req_id`` is optional and echoed, as Kraken v2 echoes
``req_id`` and Binance's combined streams echo ``id``)::

    {"op": "subscribe",   "venue": "kraken", "symbol": "BTC/USD", "channels": ["trade", "quote"], "req_id": 1}
    {"op": "unsubscribe", "venue": "kraken", "symbol": "BTC/USD", "channels": ["quote"], "req_id": 2}
    {"op": "subscribe",   "channels": ["alerts", "fills"]}          # service streams: no venue/symbol
    {"op": "ping", "req_id": 3}

Server → client: market events exactly as they travel on Pulsar (``type``, ``venue``, ``symbol``, decimal
strings, ``ts_event``/``ts_recv`` in ns), service events (``type`` ``alert``, ``execution``, ``position``), and::

    {"type": "ack", "op": "subscribe", "venue": "kraken", "symbol": "BTC/USD", "channels": ["trade", "quote"],
     "req_id": 1}
    {"type": "error", "op": "subscribe", "error": "kraken:FOO/USD is not in the instrument registry", "req_id": 1}
    {"type": "pong", "req_id": 3}

A bad message gets an ``error`` frame and the connection stays open.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: Channels a client can ask for per instrument. ``quote`` and ``ticker`` are conflated per instrument (only the
#: latest waits for a slow client); ``trade`` and ``status`` are delivered in order from a bounded buffer.
MARKET_CHANNELS = ("trade", "quote", "ticker", "status")
CONFLATED = frozenset({"quote", "ticker"})
#: Streams that are not per instrument: alerts raised and paper-trading executions/positions.
SERVICE_CHANNELS = ("alerts", "fills")

#: Close codes (RFC 6455 leaves 4000-4999 to applications).
CLOSE_SLOW_CONSUMER = 4008  # the client fell more than web.max_pending_trades events behind
CLOSE_UNAUTHORIZED = 4001  # never sent today: an unauthorised upgrade is refused with HTTP 401 before the socket opens
CLOSE_GOING_AWAY = 1001  # the gateway is shutting down

MAX_FRAME_BYTES = 4096  # a control message is small; anything bigger is refused with an error frame


class ControlMessage(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["subscribe", "unsubscribe", "ping"]
    venue: str | None = None
    symbol: str | None = None
    channels: list[str] = msgspec.field(default_factory=list)
    req_id: int | str | None = None


class ProtocolError(ValueError):
    """A control message that cannot be applied; ``op`` and ``req_id`` are echoed in the error frame."""

    def __init__(self, message: str, op: str | None = None, req_id: Any = None) -> None:
        super().__init__(message)
        self.op = op
        self.req_id = req_id


_decoder = msgspec.json.Decoder(ControlMessage)
_encoder = msgspec.json.Encoder()


def parse_control(data: str | bytes) -> ControlMessage:
    """Decode and check one control message; :class:`ProtocolError` names what is wrong."""
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"control message too large ({len(data)} bytes, max {MAX_FRAME_BYTES})")
    try:
        msg = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid control message: {exc}", _peek(data, "op"), _peek(data, "req_id")) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # found by fuzzing (bench/fuzz.py): a binary frame that is not UTF-8
        raise ProtocolError(f"invalid JSON: not UTF-8 (byte {exc.start})") from None
    except RecursionError:  # found by fuzzing: nested a few thousand deep
        raise ProtocolError("invalid JSON: nested too deeply") from None
    if msg.op == "ping":
        return msg
    if not msg.channels:
        raise ProtocolError("channels: give at least one", msg.op, msg.req_id)
    unknown = [c for c in msg.channels if c not in MARKET_CHANNELS + SERVICE_CHANNELS]
    if unknown:
        raise ProtocolError(
            f"unknown channel {unknown[0]!r}: expected one of {', '.join(MARKET_CHANNELS + SERVICE_CHANNELS)}",
            msg.op,
            msg.req_id,
        )
    market = [c for c in msg.channels if c in MARKET_CHANNELS]
    if market and not (msg.venue and msg.symbol):
        raise ProtocolError(f"venue and symbol are required for channels {', '.join(market)}", msg.op, msg.req_id)
    if len(set(msg.channels)) != len(msg.channels):
        raise ProtocolError("channels: a channel is listed twice", msg.op, msg.req_id)
    return msg


def _peek(data: str | bytes, key: str) -> Any:
    try:
        doc = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def ack(msg: ControlMessage, venue: str | None, symbol: str | None) -> str:
    doc: dict[str, Any] = {"type": "ack", "op": msg.op}
    if venue is not None:
        doc["venue"], doc["symbol"] = venue, symbol
    doc["channels"] = msg.channels
    if msg.req_id is not None:
        doc["req_id"] = msg.req_id
    return _encoder.encode(doc).decode()


def pong(msg: ControlMessage) -> str:
    doc: dict[str, Any] = {"type": "pong"}
    if msg.req_id is not None:
        doc["req_id"] = msg.req_id
    return _encoder.encode(doc).decode()


def error(message: str, op: str | None = None, req_id: Any = None) -> str:
    doc: dict[str, Any] = {"type": "error", "error": message}
    if op is not None:
        doc["op"] = op
    if req_id is not None:
        doc["req_id"] = req_id
    return _encoder.encode(doc).decode()


def text_frame(text: str) -> bytes:
    """``text`` as one complete, unmasked WebSocket text frame (RFC 6455 5.2: FIN + opcode 1, then the payload
    length in 7, 7+16 or 7+64 bits): what a server sends, built once per event and written as is to every
    client (no per-message compression is negotiated)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload
