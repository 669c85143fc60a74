"""Pure decoders for Dukascopy ``.bi5`` files: bytes in, exact records out, then :class:`Quote` events.

A ``.bi5`` file is one LZMA "alone" stream (``.lzma``: 13-byte header with the uncompressed size) holding
fixed-size big-endian records; a 0-byte file means "no data":

* ticks (``{HH}h_ticks.bi5``, one UTC hour), 20 bytes: uint32 milliseconds since the hour, int32 ask,
  int32 bid, float32 ask volume, float32 bid volume;
* candles (``BID_candles_min_1.bi5`` per day, ``…_hour_1`` per month, ``…_day_1`` per year), 24 bytes:
  uint32 seconds since the period start, int32 open, close, low, high, float32 volume.

Prices are integers over the instrument's divisor (a power of ten, see :mod:`.instruments`), so they become
:class:`~decimal.Decimal` exactly by moving the decimal point: ``Decimal(114545).scaleb(-5)`` is
``Decimal('1.14545')``. Prices are read as *signed* integers, as every public decoder does: for the values
Dukascopy publishes (below 2**31) signed and unsigned agree, and a negative price (WTI, April 2020) stays
negative instead of becoming 4 billion.

Volumes are float32; see :func:`float32_to_decimal` for how they become decimals without inventing digits.

Decoders memoise the Decimal of each distinct raw price and volume (an hour has a few hundred of each, and
they recur from hour to hour): both conversions are pure functions of the raw value, the memos are bounded
and simply cleared when full. That, not clever code, is what makes decoding ~0.5-1 µs per tick.
"""

from __future__ import annotations

import lzma
import math
import struct
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from pulse.errors import CodecError
from pulse.models import Quote, QuoteTick
from pulse.symbols import canonical

VENUE = "dukascopy"

#: Largest decompressed file we accept. A busy hour is well under 1 MiB; this only stops a corrupt header
#: from asking for gigabytes.
MAX_DECOMPRESSED = 64 * 1024 * 1024

#: Largest volume a record may carry, in Dukascopy's unit (millions for FX): a float32 holds up to 3.4e38,
#: and such a value is corruption, not a trade; it would also not fit a Decimal context's 28 digits once
#: scaled to base units (``decimal.InvalidOperation``).
MAX_VOLUME = 1e15

#: ``seq`` of a quote is ``hour_index * SEQ_PER_HOUR + index_in_file``: see :func:`seq_base`.
SEQ_PER_HOUR = 10_000_000

_HOUR_MS = 3_600_000
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_NS_PER_HOUR = 3_600 * _NS_PER_S

_TICK = struct.Struct(">I2i2I")  # volumes read as raw bits: the cache key, converted once per value
_CANDLE = struct.Struct(">I4iI")
_F32 = struct.Struct(">f")
_ONE = Decimal(1)

_MEMO_LIMIT = 1 << 16
_price_memos: dict[int, dict[int, Decimal]] = {}  # exponent → raw integer → price
_volume_memo: dict[int, Decimal] = {}  # float32 bits → decimal (valid, non-negative volumes only)
_size_memo: dict[tuple[Decimal, Decimal], Decimal] = {}  # (volume, multiplier) → size


def _price_memo(exp: int) -> dict[int, Decimal]:
    memo = _price_memos.setdefault(exp, {})
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    return memo


class Bi5Error(CodecError):
    """A ``.bi5`` file cannot be decoded. The message starts with the file's name."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class TickRecord(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One tick as Dukascopy stores it, made exact. Volumes are in Dukascopy's unit (see instruments)."""

    ts_event: int  # ns since the epoch, UTC: hour start + offset
    offset_ms: int  # milliseconds since the hour start, as stored
    ask: Decimal
    bid: Decimal
    ask_volume: Decimal
    bid_volume: Decimal


class CandleRecord(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One candle as Dukascopy stores it, made exact."""

    ts_event: int  # ns since the epoch, UTC: period start + offset
    offset_s: int  # seconds since the period start, as stored
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def float32_to_decimal(bits: int) -> Decimal:
    """The decimal a float32 (given as its 32 raw bits) was written from: the shortest decimal string that
    converts back to exactly the same float32, as ``repr`` does for float64.

    Dukascopy writes volumes such as 2.06 as float32, which stores 2.059999942779541; printing 9
    significant digits would invent noise, printing a fixed number of digits would drop real ones. The
    shortest round-tripping string is unique per float32 value, so the rule is exact and deterministic:
    0x4003d70a → ``Decimal('2.06')``, 0x3f800000 → ``Decimal('1')``, 293.760009765625 → ``Decimal('293.76')``.
    Whole numbers are returned without an exponent (1000, not 1E+3). NaN and infinities raise ValueError.
    """
    packed = bits.to_bytes(4, "big")
    value = _F32.unpack(packed)[0]
    if not math.isfinite(value):
        raise ValueError(f"float32 {packed.hex()} is not finite")
    text = repr(value)
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        candidate = f"{value:.{digits}g}"
        try:
            if _F32.pack(float(candidate)) == packed:
                text = candidate
                break
        except OverflowError:
            continue
    return _plain(Decimal(text))


def _plain(d: Decimal) -> Decimal:
    """Normalise without scientific notation for whole numbers: 2.06E+6 → 2060000, 2.50 → 2.5."""
    d = d.normalize()
    return d.quantize(_ONE) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]


def _exponent(divisor: int) -> int:
    if not isinstance(divisor, int) or divisor < 1 or 10 ** (len(str(divisor)) - 1) != divisor:
        raise ValueError(f"divisor must be a positive power of ten, got {divisor!r}")
    return -(len(str(divisor)) - 1)


def datafeed_path(code: str, hour_start: datetime) -> str:
    """The datafeed path of an hour's ticks, month zero-based: ``EURUSD/2019/01/04/00h_ticks.bi5``."""
    h = hour_start.astimezone(UTC)
    return f"{code}/{h.year:04d}/{h.month - 1:02d}/{h.day:02d}/{h.hour:02d}h_ticks.bi5"


def _describe_ticks(symbol: str, hour_start_ns: int) -> str:
    return datafeed_path(symbol, datetime.fromtimestamp(hour_start_ns // _NS_PER_S, UTC))


def decompress(data: bytes, *, source: str) -> bytes:
    """Inflate one LZMA "alone" stream; ``b""`` for an empty file. Raises :class:`Bi5Error`."""
    if not data:
        return b""
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        out = decoder.decompress(data, max_length=MAX_DECOMPRESSED + 1)
    except lzma.LZMAError as exc:
        raise Bi5Error(source, f"not a valid LZMA 'alone' stream ({exc}; {len(data)} bytes)") from exc
    if len(out) > MAX_DECOMPRESSED:
        raise Bi5Error(source, f"decompresses to more than {MAX_DECOMPRESSED} bytes")
    if not decoder.eof:
        raise Bi5Error(source, f"truncated LZMA stream ({len(data)} bytes, {len(out)} decoded)")
    return out


def decode_ticks(
    data: bytes, *, hour_start_ns: int, divisor: int, symbol: str, source: str | None = None
) -> list[TickRecord]:
    """Decode one hour of ticks. ``symbol`` is the Dukascopy code, used to name the file in errors
    (``source`` overrides the name, e.g. with the URL). Empty input gives ``[]``.

    Raises :class:`Bi5Error` for anything that is not a well-formed tick file: bad LZMA, a length that is
    not a whole number of records, offsets outside the hour or going backwards, non-finite or negative
    volumes.
    """
    name = source or _describe_ticks(symbol, hour_start_ns)
    raw = decompress(data, source=name)
    if len(raw) % _TICK.size:
        raise Bi5Error(name, f"{len(raw)} bytes is not a whole number of {_TICK.size}-byte tick records")
    exp = _exponent(divisor)
    prices = _price_memo(exp)
    volumes = _volume_memo
    if len(volumes) > _MEMO_LIMIT:
        volumes.clear()
    out: list[TickRecord] = []
    append = out.append
    previous = 0
    try:
        for ms, ask, bid, ask_bits, bid_bits in _TICK.iter_unpack(raw):
            if ms < previous or ms >= _HOUR_MS:
                raise Bi5Error(name, f"record {len(out)}: offset {ms} ms out of order or outside the hour")
            previous = ms
            a = prices.get(ask)
            if a is None:
                a = prices[ask] = Decimal(ask).scaleb(exp)
            b = prices.get(bid)
            if b is None:
                b = prices[bid] = Decimal(bid).scaleb(exp)
            av = volumes.get(ask_bits)
            if av is None:
                av = volumes[ask_bits] = _volume(ask_bits, name, len(out))
            bv = volumes.get(bid_bits)
            if bv is None:
                bv = volumes[bid_bits] = _volume(bid_bits, name, len(out))
            append(TickRecord(hour_start_ns + ms * _NS_PER_MS, ms, a, b, av, bv))
    except Bi5Error:
        raise
    except Exception as exc:  # whatever else bad bytes provoke is still a bad file
        raise Bi5Error(name, f"record {len(out)}: {type(exc).__name__}: {exc}") from exc
    return out


def decode_candles(
    data: bytes, *, period_start_ns: int, divisor: int, symbol: str, source: str | None = None
) -> list[CandleRecord]:
    """Decode a candle file (minute candles of a day, hour candles of a month, day candles of a year).

    Record layout on disk is open, close, low, high; records come back with named fields.
    """
    start = datetime.fromtimestamp(period_start_ns // _NS_PER_S, UTC)
    name = source or f"{symbol} candles from {start:%Y-%m-%dT%H:%MZ}"
    raw = decompress(data, source=name)
    if len(raw) % _CANDLE.size:
        raise Bi5Error(name, f"{len(raw)} bytes is not a whole number of {_CANDLE.size}-byte candle records")
    exp = _exponent(divisor)
    prices = _price_memo(exp)
    out: list[CandleRecord] = []
    previous = 0
    try:
        for sec, o, c, lo, hi, vol_bits in _CANDLE.iter_unpack(raw):
            if sec < previous:
                raise Bi5Error(name, f"record {len(out)}: offset {sec} s out of order")
            previous = sec
            values = []
            for p in (o, hi, lo, c):
                d = prices.get(p)
                if d is None:
                    d = prices[p] = Decimal(p).scaleb(exp)
                values.append(d)
            volume = _volume(vol_bits, name, len(out))
            out.append(CandleRecord(period_start_ns + sec * _NS_PER_S, sec, *values, volume))
    except Bi5Error:
        raise
    except Exception as exc:  # whatever else bad bytes provoke is still a bad file
        raise Bi5Error(name, f"record {len(out)}: {type(exc).__name__}: {exc}") from exc
    return out


def _volume(bits: int, name: str, index: int) -> Decimal:
    value = _F32.unpack(bits.to_bytes(4, "big"))[0]
    if math.isfinite(value) and not -MAX_VOLUME <= value <= MAX_VOLUME:
        raise Bi5Error(name, f"record {index}: volume {value:g} is out of range (above {MAX_VOLUME:g})")
    try:
        d = float32_to_decimal(bits)
    except ValueError as exc:
        raise Bi5Error(name, f"record {index}: volume {exc}") from exc
    if d < 0:
        raise Bi5Error(name, f"record {index}: negative volume {d}")
    return d


def seq_base(hour_start_ns: int) -> int:
    """The ``seq`` of the first tick of an hour: ``hours since the epoch * SEQ_PER_HOUR``.

    It depends only on the hour, so a tick gets the same ``seq`` whatever range is backfilled and whether a
    run resumes from a checkpoint; together with exact prices this makes re-published events identical.
    An hour cannot hold SEQ_PER_HOUR ticks (that would be 200 MB decompressed; we refuse 64 MiB).
    """
    if hour_start_ns % _NS_PER_HOUR:
        raise ValueError(f"{hour_start_ns} is not the start of an hour")
    return hour_start_ns // _NS_PER_HOUR * SEQ_PER_HOUR


def to_quotes(
    records: Iterable[TickRecord],
    *,
    symbol: str,
    first_seq: int,
    clock: Callable[[], int] = time.time_ns,
    volume_multiplier: int | None = None,
    venue: str = VENUE,
) -> list[Quote]:
    """Turn decoded ticks into canonical :class:`Quote` events.

    ``symbol`` is the canonical Pulse symbol (``EUR/USD``). ``seq`` counts up from ``first_seq`` (use
    :func:`seq_base` of the hour). ``clock`` (ns) is read once: every quote of the batch shares ``ts_recv``,
    the moment the file was decoded. Sizes are ``volume * volume_multiplier`` in base-currency units
    (2.06 million → 2060000); with ``volume_multiplier=None`` (unit unverified) sizes are ``None``.
    """
    symbol = canonical(symbol)
    ts_recv = clock()
    mult = Decimal(volume_multiplier) if volume_multiplier is not None else None
    sizes = _size_memo
    if len(sizes) > _MEMO_LIMIT:
        sizes.clear()
    out: list[Quote] = []
    append = out.append
    for seq, r in enumerate(records, first_seq):
        if mult is None:
            ask_size = bid_size = None
        else:
            key = (r.ask_volume, mult)
            ask_size = sizes.get(key)
            if ask_size is None:
                ask_size = sizes[key] = _plain(r.ask_volume * mult)
            key = (r.bid_volume, mult)
            bid_size = sizes.get(key)
            if bid_size is None:
                bid_size = sizes[key] = _plain(r.bid_volume * mult)
        append(
            Quote(
                venue=venue,
                symbol=symbol,
                ts_event=r.ts_event,
                ts_recv=ts_recv,
                seq=seq,
                bid=r.bid,
                bid_size=bid_size,
                ask=r.ask,
                ask_size=ask_size,
            )
        )
    return out


def to_quote_ticks(
    records: Iterable[TickRecord], *, first_seq: int, volume_multiplier: int | None = None
) -> list[QuoteTick]:
    """Decoded ticks straight into :class:`~pulse.models.QuoteTick`\\ s, the element of a QuoteBatch: the same
    values :func:`to_quotes` gives (``seq`` from ``first_seq``, sizes scaled by ``volume_multiplier`` or None)
    without building a :class:`Quote` per tick first — the backfill's hot path."""
    mult = Decimal(volume_multiplier) if volume_multiplier is not None else None
    sizes = _size_memo
    if len(sizes) > _MEMO_LIMIT:
        sizes.clear()
    out: list[QuoteTick] = []
    append = out.append
    get = sizes.get
    for seq, r in enumerate(records, first_seq):
        if mult is None:
            append(QuoteTick(r.ts_event, seq, r.bid, None, r.ask, None))
            continue
        av, bv = r.ask_volume, r.bid_volume
        ask_size = get((av, mult))
        if ask_size is None:
            ask_size = sizes[(av, mult)] = _plain(av * mult)
        bid_size = get((bv, mult))
        if bid_size is None:
            bid_size = sizes[(bv, mult)] = _plain(bv * mult)
        append(QuoteTick(r.ts_event, seq, r.bid, bid_size, r.ask, ask_size))
    return out
