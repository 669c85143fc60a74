"""Pure, stateful parser for Alpaca's market data v2 stream: raw frames in, Pulse events out.

:class:`AlpacaParser` owns no I/O. A frame is a JSON array of messages tagged by ``T``; ``feed(frame)`` splits it and
decodes each element on its own, so one bad element costs only itself: it is listed in :attr:`Parsed.bad` (the
service counts, logs and dead-letters it) and the others are still published. A frame that is not a JSON array at
all raises :class:`AlpacaMessageError`.

Mapping
    ``t`` → :class:`~pulse.models.Trade`: ``ts_event`` = ``t`` (RFC-3339, nanoseconds, exact), ``size`` = shares,
          ``side`` None (the stream does not say who was the aggressor), ``trade_id`` = ``<x>-<i>`` (exchange code
          and the exchange's trade id: ids are per exchange, so the code keeps two exchanges' ids apart).
    ``q`` → :class:`~pulse.models.Quote`: best bid/ask with sizes; a side with price and size 0 is empty (None).
    ``b`` → :class:`~pulse.models.Candle`: ``interval_s`` 60, ``ts_event`` = the minute's start, ``ticks`` = ``n``,
          ``side`` "trade".
    ``c`` / ``x`` (a trade corrected, cancelled or in error: automatic with trades) → :attr:`Parsed.amendments`, with
          the trade id it names (``<x>-<oi>`` / ``<x>-<i>``): Pulse has no event to amend a stored trade, so the
          service counts them and keeps each message on the dead-letter topic (kind ``trade_correction`` /
          ``trade_cancel``), never as a parse error.
    ``success`` / ``error`` / ``subscription`` → :class:`Control` (connected, authenticated, errors with Alpaca's
          code, the session's whole subscription after each change).

Sequence numbers are per (symbol, channel), start at 1 and keep increasing for the parser's life.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from ingesters.alpaca.schemas import (
    BarMsg,
    CancelMsg,
    CorrectionMsg,
    Error,
    QuoteMsg,
    Subscription,
    Success,
    TradeMsg,
    frame_decoder,
    message_decoder,
)
from ingesters.alpaca.symbols import resolve
from ingesters.base.parsing import SymbolParser
from pulse.errors import PulseError
from pulse.models import Candle, Event, Quote, Trade

_ZERO = Decimal(0)
_MAX = Decimal("1e12")  # sanity bound (prices, sizes, volumes); comparisons also reject NaN
_NS = 1_000_000_000
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))$", re.ASCII
)
_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" → epoch seconds (messages of one second share it)


class AlpacaMessageError(PulseError):
    """An Alpaca frame or message is malformed: bad JSON, not an array, an unknown type, a bad field."""


def parse_rfc3339_ns(text: str) -> int:
    """``"2021-02-22T15:51:45.335689322Z"`` → nanoseconds since the epoch, exactly (0-9 fraction digits, ``Z``
    or ``±HH:MM``). Raises :class:`ValueError` otherwise, impossible dates and times included."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    key = text[:19]
    secs = _SECONDS.get(key)
    if secs is None:
        y, mo, d, h, mi, s = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
        if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]) or h > 23 or mi > 59 or s > 59:
            raise ValueError(f"impossible date or time in {text[:40]!r}")
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[key] = secs
    frac = m.group(7)
    ns = int(frac) * 10 ** (9 - len(frac)) if frac else 0
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs = secs - offset if m.group(9) == "+" else secs + offset
    return secs * _NS + ns


@dataclass(slots=True)
class Control:
    kind: str  # "connected" | "authenticated" | "success" (another msg) | "error" | "subscription"
    code: int = 0
    msg: str = ""
    subscription: Subscription | None = None


@dataclass(slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    bad: list[tuple[bytes, str]] = field(default_factory=list)  # (the element's raw JSON, why)
    #: (the element's raw JSON, "trade_correction" | "trade_cancel", symbol, the trade id it amends)
    amendments: list[tuple[bytes, str, str, str]] = field(default_factory=list)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, msgspec.MsgspecError | AlpacaMessageError) else f"{type(exc).__name__}: {exc}"


def _preview(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else bytes(frame[:200]).decode("utf-8", "replace")
    return text[:200]


def _check(name: str, value: Decimal, *, zero_ok: bool = False) -> None:
    if not ((value >= _ZERO if zero_ok else value > _ZERO) and value < _MAX):
        raise AlpacaMessageError(f"invalid {name} {value}")


def _symbol_of(name: str) -> str:
    return resolve(name).symbol


class AlpacaParser(SymbolParser):
    """Turns Alpaca stream frames into Pulse events; one instance per ingester (its state outlives connections)."""

    message_error = AlpacaMessageError
    _resolve = staticmethod(_symbol_of)

    def __init__(self, *, venue: str = "alpaca", clock: Callable[[], int] = time.time_ns) -> None:
        self.venue = venue
        self._clock = clock
        self._seq: dict[tuple[str, str], int] = {}
        self._symbols: dict[str, str] = {}  # Alpaca name → canonical

    def feed(self, frame: str | bytes) -> Parsed:
        """Parse one frame. Raises :class:`AlpacaMessageError` if it is not a JSON array of objects' text; bad
        elements are returned in ``Parsed.bad`` instead."""
        try:
            elements = frame_decoder.decode(frame)
        except Exception as exc:  # bad JSON, not an array, invalid UTF-8, nesting too deep
            raise AlpacaMessageError(f"malformed Alpaca frame ({_reason(exc)}): {_preview(frame)}") from exc
        ts_recv = self._clock()
        out = Parsed()
        for raw in elements:
            try:
                self._message(raw, out, ts_recv)
            except Exception as exc:
                out.bad.append((bytes(raw), f"malformed Alpaca message ({_reason(exc)})"))
        return out

    def _message(self, raw: msgspec.Raw, out: Parsed, ts_recv: int) -> None:
        msg = message_decoder.decode(raw)
        if isinstance(msg, TradeMsg):
            _check("trade price", msg.price)
            _check("trade size", msg.size)
            sym = self._canonical(msg.symbol)
            out.events.append(
                Trade(venue=self.venue, symbol=sym, ts_event=parse_rfc3339_ns(msg.timestamp), ts_recv=ts_recv,
                      seq=self._next_seq(sym, "trade"), price=msg.price, size=msg.size, side=None,
                      trade_id=f"{msg.exchange}-{msg.trade_id}")
            )  # fmt: skip
        elif isinstance(msg, QuoteMsg):
            for name, v in (("bid", msg.bid), ("bid size", msg.bid_size), ("ask", msg.ask), ("ask size", msg.ask_size)):
                _check(name, v, zero_ok=True)
            sym = self._canonical(msg.symbol)
            no_bid = msg.bid == _ZERO and msg.bid_size == _ZERO
            no_ask = msg.ask == _ZERO and msg.ask_size == _ZERO
            out.events.append(
                Quote(venue=self.venue, symbol=sym, ts_event=parse_rfc3339_ns(msg.timestamp), ts_recv=ts_recv,
                      seq=self._next_seq(sym, "quote"), bid=None if no_bid else msg.bid,
                      bid_size=None if no_bid else msg.bid_size, ask=None if no_ask else msg.ask,
                      ask_size=None if no_ask else msg.ask_size)
            )  # fmt: skip
        elif isinstance(msg, BarMsg):
            for name, v in (("open", msg.open), ("high", msg.high), ("low", msg.low), ("close", msg.close)):
                _check(f"bar {name}", v)
            _check("bar volume", msg.volume, zero_ok=True)
            if not (msg.low <= min(msg.open, msg.close) and max(msg.open, msg.close) <= msg.high):
                raise AlpacaMessageError(f"inconsistent bar o={msg.open} h={msg.high} l={msg.low} c={msg.close}")
            if msg.trades < 0:
                raise AlpacaMessageError(f"invalid bar trade count {msg.trades}")
            sym = self._canonical(msg.symbol)
            out.events.append(
                Candle(venue=self.venue, symbol=sym, ts_event=parse_rfc3339_ns(msg.timestamp), ts_recv=ts_recv,
                       seq=self._next_seq(sym, "candle"), interval_s=60, open=msg.open, high=msg.high, low=msg.low,
                       close=msg.close, volume=msg.volume, ticks=msg.trades, side="trade")
            )  # fmt: skip
        elif isinstance(msg, CorrectionMsg):
            _check("original price", msg.original_price)
            _check("original size", msg.original_size)
            _check("corrected price", msg.corrected_price)
            _check("corrected size", msg.corrected_size)
            parse_rfc3339_ns(msg.timestamp)
            sym = self._canonical(msg.symbol)
            out.amendments.append((bytes(raw), "trade_correction", sym, f"{msg.exchange}-{msg.original_id}"))
        elif isinstance(msg, CancelMsg):
            if msg.action not in ("C", "E"):
                raise AlpacaMessageError(f"unknown cancel action {msg.action!r} (C or E)")
            parse_rfc3339_ns(msg.timestamp)
            sym = self._canonical(msg.symbol)
            out.amendments.append((bytes(raw), "trade_cancel", sym, f"{msg.exchange}-{msg.trade_id}"))
        elif isinstance(msg, Success):
            kind = msg.msg if msg.msg in ("connected", "authenticated") else "success"
            out.controls.append(Control(kind, msg=msg.msg))
        elif isinstance(msg, Error):
            out.controls.append(Control("error", code=msg.code, msg=msg.msg))
        elif isinstance(msg, Subscription):
            out.controls.append(Control("subscription", subscription=msg))
