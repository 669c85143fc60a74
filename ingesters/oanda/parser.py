"""Pure parsing of the OANDA v20 pricing stream: raw bytes in, :class:`pulse.models.Quote` events out.

Two pieces, no I/O:

* :class:`LineSplitter` cuts the chunked HTTP body into lines. Chunk boundaries fall anywhere (mid-line,
  mid-UTF-8 sequence), a line may end with ``\\r\\n``, the last line may lack its newline, and a line longer
  than ``max_line_bytes`` is dropped and counted rather than buffered without bound.
* :class:`OandaStreamParser` turns one line into a :class:`ParsedLine`. ``PRICE`` lines become quotes with the
  full ladders, ``HEARTBEAT`` lines are flagged, and anything malformed raises :class:`OandaMessageError`
  (the caller logs and dead-letters it; the connection stays up).

Timestamps keep all nine fractional digits: OANDA's RFC 3339 ``time`` is parsed with integer arithmetic only.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import msgspec

from ingesters.oanda.schemas import STREAM_DECODER, ClientPrice, PriceBucket
from ingesters.oanda.symbols import instrument_to_symbol
from pulse.errors import PulseError, SymbolError
from pulse.models import Level, Quote

__all__ = [
    "LineSplitter",
    "OandaMessageError",
    "OandaStreamParser",
    "ParsedLine",
    "parse_rfc3339_ns",
]

_NS = 1_000_000_000
_ZERO = Decimal(0)


class OandaMessageError(PulseError, ValueError):
    """A stream line is not a valid OANDA ``PRICE`` or ``HEARTBEAT`` object. ``raw`` holds the line."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


# -- timestamps -------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
# Whole seconds repeat across many lines (4 prices/s per instrument), so the calendar work is cached.
_SECONDS_CACHE: dict[str, int] = {}
_SECONDS_CACHE_MAX = 4096


def parse_rfc3339_ns(text: str) -> int:
    """``"2016-10-27T08:38:43.094548890Z"`` → integer nanoseconds since the epoch, exactly.

    Accepts 0-9 fractional digits and a ``Z`` or ``±HH:MM`` offset; raises :class:`ValueError` otherwise
    (including impossible dates and leap seconds, which OANDA does not send).
    """
    # Fast path for OANDA's own shape, "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", once its second has been seen
    # (the cached prefix was validated by the full pattern below).
    if len(text) == 30 and text[29] == "Z" and text[19] == ".":
        secs = _SECONDS_CACHE.get(text[:19])
        frac = text[20:29]
        if secs is not None and frac.isdigit() and frac.isascii():
            return secs * _NS + int(frac)
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    key = text[:19]
    secs = _SECONDS_CACHE.get(key)
    if secs is None:
        year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
        if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
            raise ValueError(f"impossible date in {text!r}")
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"impossible time of day in {text!r}")
        secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        if len(_SECONDS_CACHE) >= _SECONDS_CACHE_MAX:
            _SECONDS_CACHE.clear()
        _SECONDS_CACHE[key] = secs
    frac = m.group(7)
    ns = int(frac) * 10 ** (9 - len(frac)) if frac else 0
    sign = m.group(8)
    if sign is not None:
        offset = int(m.group(9)) * 3600 + int(m.group(10)) * 60
        secs = secs - offset if sign == "+" else secs + offset
    return secs * _NS + ns


# -- line splitting ---------------------------------------------------------------------------------------


class LineSplitter:
    """Reassemble newline-delimited lines from arbitrary chunks of a byte stream.

    ``feed(chunk)`` returns the lines completed by ``chunk``; ``flush()`` returns a final line that arrived
    without its newline. Empty lines are skipped and a trailing ``\\r`` is removed. A line longer than
    ``max_line_bytes`` is discarded up to its newline and counted in ``oversized`` (its first bytes are kept
    in ``last_oversized_prefix`` for the log), so a broken or hostile peer cannot make the buffer grow
    without bound.
    """

    __slots__ = ("_buf", "_discarding", "last_oversized_prefix", "max_line_bytes", "oversized")

    def __init__(self, max_line_bytes: int = 1 << 20) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.max_line_bytes = max_line_bytes
        self.oversized = 0
        self.last_oversized_prefix = b""
        self._buf = bytearray()
        self._discarding = False

    def _drop(self, prefix: bytes | bytearray) -> None:
        self.oversized += 1
        self.last_oversized_prefix = bytes(prefix[:200])

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._discarding:
            nl = chunk.find(b"\n")
            if nl < 0:
                return out
            self._discarding = False
            chunk = chunk[nl + 1 :]
        buf = self._buf
        search_from = len(buf)  # no newline before this point: it was searched already
        buf += chunk
        pos = 0
        limit = self.max_line_bytes
        while (nl := buf.find(b"\n", search_from)) >= 0:
            end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
            if end - pos > limit:
                self._drop(buf[pos:end])
            elif end > pos:
                line = bytes(buf[pos:end])
                if not line.isspace():
                    out.append(line)
            pos = search_from = nl + 1
        if pos:
            del buf[:pos]
        if len(buf) > limit:
            self._drop(buf)
            buf.clear()
            self._discarding = True
        return out

    def flush(self) -> list[bytes]:
        """End of stream: return the unterminated last line, if any, and reset."""
        buf, self._buf = self._buf, bytearray()
        discarding, self._discarding = self._discarding, False
        if discarding:
            return []
        line = bytes(buf).rstrip(b"\r")
        return [line] if line and not line.isspace() else []


# -- parsing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """What one stream line meant.

    ``event`` is the quote of a ``PRICE`` line (``None`` for a heartbeat); ``heartbeat`` is True for a
    ``HEARTBEAT`` line; ``tradeable`` is the price's tradeable flag (``None`` for a heartbeat); ``ts_event``
    is the line's venue time in ns (both kinds carry one, so heartbeats can measure clock skew and latency).
    """

    event: Quote | None
    heartbeat: bool
    tradeable: bool | None
    ts_event: int = 0


_INF = Decimal("Infinity")
# Liquidity comes in a handful of round sizes; converting each int to Decimal once saves time per bucket.
_LIQUIDITY: dict[int, Decimal] = {}


def _ladder(buckets: tuple[PriceBucket, ...], side: str, raw: bytes) -> tuple[Level, ...]:
    levels = []
    for b in buckets:
        price = b.price
        try:
            ok = _ZERO < price < _INF
        except ArithmeticError:  # NaN cannot be ordered
            ok = False
        if not ok:
            raise OandaMessageError(f"OANDA {side} price {price} is not a positive finite number", raw)
        liquidity = b.liquidity
        size = _LIQUIDITY.get(liquidity)
        if size is None:
            if liquidity < 0:
                raise OandaMessageError(f"OANDA {side} liquidity {liquidity} is negative", raw)
            size = Decimal(liquidity)
            if len(_LIQUIDITY) < 1024:
                _LIQUIDITY[liquidity] = size
        levels.append(Level(price, size))
    return tuple(levels)


class OandaStreamParser:
    """Turn pricing-stream lines into :class:`ParsedLine` results.

    ``clock`` (ns since the epoch) stamps ``ts_recv``. ``seq`` counts quotes per instrument, starting at 1
    and strictly increasing for the life of the parser; keep one parser across reconnects so sequences keep
    rising (the ingester publishes a ``gap`` status marker at a reconnect). Instrument names are validated
    once and cached.
    """

    __slots__ = ("_clock", "_seq", "_symbols", "venue")

    def __init__(self, clock: Callable[[], int] = time.time_ns, venue: str = "oanda") -> None:
        self._clock = clock
        self.venue = venue
        self._seq: dict[str, int] = {}
        self._symbols: dict[str, str] = {}

    def last_seq(self, symbol: str) -> int:
        """The last sequence number given to ``symbol`` (canonical), 0 if none yet."""
        return self._seq.get(symbol, 0)

    def feed_line(self, line: bytes) -> ParsedLine:
        """Parse one line (without its newline). Raises :class:`OandaMessageError` (and nothing else) if it is
        malformed: bad JSON, invalid UTF-8, nesting too deep for the decoder, wrong types or values."""
        try:
            return self._parse(line)
        except OandaMessageError:
            raise
        except msgspec.MsgspecError as exc:
            raise OandaMessageError(f"malformed OANDA stream line: {exc}", line) from exc
        except Exception as exc:  # RecursionError, UnicodeDecodeError, …: still the line's fault
            raise OandaMessageError(f"malformed OANDA stream line: {type(exc).__name__}: {exc}", line) from exc

    def _parse(self, line: bytes) -> ParsedLine:
        ts_recv = self._clock()
        msg = STREAM_DECODER.decode(line)
        try:
            ts_event = parse_rfc3339_ns(msg.time)
        except ValueError as exc:
            raise OandaMessageError(f"malformed OANDA stream line: {exc}", line) from exc
        if type(msg) is not ClientPrice:
            return ParsedLine(None, True, None, ts_event)

        instrument = msg.instrument
        symbol = self._symbols.get(instrument)
        if symbol is None:
            try:
                symbol = instrument_to_symbol(instrument)
            except SymbolError as exc:
                raise OandaMessageError(f"malformed OANDA stream line: {exc}", line) from exc
            self._symbols[instrument] = symbol
        bids = _ladder(msg.bids, "bid", line)
        asks = _ladder(msg.asks, "ask", line)
        tradeable = msg.tradeable
        if tradeable is None:
            # `status` is deprecated but older payloads carry only it; with neither, assume tradeable.
            tradeable = msg.status is None or msg.status == "tradeable"
        seq = self._seq.get(symbol, 0) + 1
        self._seq[symbol] = seq
        best_bid = bids[0] if bids else None
        best_ask = asks[0] if asks else None
        quote = Quote(
            venue=self.venue,
            symbol=symbol,
            ts_event=ts_event,
            ts_recv=ts_recv,
            seq=seq,
            bid=best_bid.price if best_bid else None,
            bid_size=best_bid.size if best_bid else None,
            ask=best_ask.price if best_ask else None,
            ask_size=best_ask.size if best_ask else None,
            bids=bids,
            asks=asks,
            tradeable=tradeable,
        )
        return ParsedLine(quote, False, tradeable, ts_event)
