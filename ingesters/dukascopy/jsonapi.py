"""Pure decoders for Dukascopy's JSON data API (July 2026 on): bytes in, the same exact records as ``.bi5``.

Facts taken from the public client that moved to it first (dukascopy-node 1.47+: ``src/url-generator``,
``src/data-normaliser`` and its recorded fixtures ``src/__mocks__/fixtures``)::

    {root}/ticks/{BASE-QUOTE}/{Y}/{M}/{D}/{H}                     one finished UTC hour of ticks
    {root}/ticks/{BASE-QUOTE}?from=<ms>                           the hour still running, from <ms>
    {root}/candles/minute/{CODE}/{BID|ASK}/{Y}/{M}/{D}            minute candles of one UTC day
    {root}/candles/hour/{CODE}/{BID|ASK}/{Y}/{M}                  hour candles of one UTC month
    {root}/candles/day/{CODE}/{BID|ASK}/{Y}                       day candles of one UTC year
    {root}/candles/{minute|hour|day}/{CODE}/{BID|ASK}?from=<ms>   the period still running

with ``root = https://jetta.dukascopy.com/v1``, the month **1-based** and nothing zero-padded
(``EUR-USD/2026/7/13/12``). ``CODE`` is the instrument's name with ``-`` for ``/`` (``EUR-USD``,
``USA500.IDX-USD``).

A tick answer is one JSON object of delta-encoded columns::

    {"timestamp": 1783944000000, "multiplier": 1.0E-5, "ask": 1.14277, "bid": 1.14273,
     "times": [93, 104, ...], "asks": [0, -2, ...], "bids": [0, -2, ...],
     "askVolumes": [1800000.0, ...], "bidVolumes": [2700000.0, ...]}

* tick *i* is at ``timestamp + times[0] + … + times[i]`` ms (so ``times[0]`` is the first tick's offset);
* its ask is ``ask / multiplier + asks[0] + … + asks[i]`` price units times ``multiplier`` (``asks[0]`` is
  0 in every recorded answer: the base is the first price), likewise bids;
* tick volumes are in *units* (1,800,000 EUR); the ``.bi5`` files count millions (1.8). Records here keep
  the ``.bi5`` unit, so both feeds give the same :class:`~.bi5.TickRecord` and the same events;
* an hour without ticks has empty columns and ``null`` base prices.

A candle answer has ``open``/``high``/``low``/``close`` bases, ``shift`` (candle length in ms), ``times`` in
shifts (a delta above 1 skips closed-market slots: the API sends no placeholders), ``opens``/``highs``/
``lows``/``closes`` deltas in price units and ``volumes`` in the ``.bi5`` unit (millions for currencies).

Every number is read as an exact :class:`~decimal.Decimal` from the JSON text (``1.14277`` never becomes a
float), and anything malformed is refused with :class:`ApiFormatError` naming the URL and what is wrong:
columns of different lengths, a non-finite or non-numeric value, a negative time delta, a missing base price,
a multiplier that is not a power of ten, a tick outside the hour it was asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from typing import Any, Literal

from ingesters.dukascopy.bi5 import CandleRecord, TickRecord
from pulse.errors import CodecError

#: Dukascopy's data API root, as dukascopy-node 1.47+ uses it.
API_URL = "https://jetta.dukascopy.com/v1"

CandleSource = Literal["minute", "hour", "day"]

_NS_PER_MS = 1_000_000
_MS_PER_S = 1_000
_HOUR_MS = 3_600_000
#: JSON tick volumes are units; ``.bi5`` (and so the records) count millions.
_TICK_VOLUME_EXP = -6
#: Largest magnitude accepted as a finite number (an IEEE double's; ``1e999`` is Infinity in every client).
_MIN_EXPONENT, _MAX_EXPONENT = -18, 6  # the multipliers a price scale can sensibly have (Dukascopy: 1e-5 … 1)
_MAX_ADJUSTED = 308
_MEMO_LIMIT = 1 << 16
_price_memo: dict[tuple[int, int], Decimal] = {}
_volume_memo: dict[tuple[Decimal, int], Decimal] = {}


class ApiFormatError(CodecError):
    """A data API answer cannot be decoded. The message starts with the URL (or a description)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


# -- URLs ------------------------------------------------------------------------------------------------


def tick_path(api_code: str, hour_start: datetime, *, open_period: bool = False) -> str:
    """Path (below the API root) of one hour of ticks: ``ticks/EUR-USD/2026/7/13/12`` (month 1-based, no
    padding), or ``ticks/EUR-USD?from=<ms>`` for the hour still running."""
    h = hour_start.astimezone(UTC)
    if open_period:
        return f"ticks/{api_code}?from={_ms(h)}"
    return f"ticks/{api_code}/{h.year}/{h.month}/{h.day}/{h.hour}"


def candle_path(
    source: CandleSource, api_code: str, side: Literal["BID", "ASK"], period_start: datetime, *, open_period: bool
) -> str:
    """Path of a candle file: minute candles of a day, hour candles of a month, day candles of a year."""
    p = period_start.astimezone(UTC)
    base = f"candles/{source}/{api_code}/{side}"
    if open_period:
        return f"{base}?from={_ms(p)}"
    if source == "minute":
        return f"{base}/{p.year}/{p.month}/{p.day}"
    if source == "hour":
        return f"{base}/{p.year}/{p.month}"
    return f"{base}/{p.year}"


def _ms(t: datetime) -> int:
    return int(t.timestamp()) * _MS_PER_S + t.microsecond // 1000


# -- decoding --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _load(data: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and the NaN/Infinity refusal, bad UTF-8 too
        raise ApiFormatError(source, f"not valid JSON data ({exc}); {len(data)} bytes") from exc
    except RecursionError:  # found by fuzzing (bench/fuzz.py): an answer nested a few thousand deep
        raise ApiFormatError(source, f"not valid JSON data (nested too deeply); {len(data)} bytes") from None
    except InvalidOperation:  # found by fuzzing: 1e-08446744073709551616 is beyond what a Decimal can hold
        raise ApiFormatError(source, f"not valid JSON data (a number out of range); {len(data)} bytes") from None
    if not isinstance(doc, dict):
        raise ApiFormatError(source, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _number(value: Any, what: str, source: str) -> Decimal | int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ApiFormatError(source, f"{what} is {json.dumps(value, default=str)[:40]}, not a number")
    if isinstance(value, Decimal) and (not value.is_finite() or value.adjusted() > _MAX_ADJUSTED):
        raise ApiFormatError(source, f"{what} is a non-finite number ({value})")
    return value


def _integer(value: Any, what: str, source: str) -> int:
    n = _number(value, what, source)
    if isinstance(n, Decimal):
        if n != n.to_integral_value():
            raise ApiFormatError(source, f"{what} is {n}, not a whole number")
        return int(n)
    return n


def _exponent(multiplier: Any, source: str) -> int:
    """The power of ten of ``multiplier`` (``1.0E-5`` → -5); anything else is refused."""
    m = Decimal(_number(multiplier, "multiplier", source))
    if m <= 0:
        raise ApiFormatError(source, f"multiplier {m} is not positive")
    t = m.normalize().as_tuple()
    if t.digits != (1,):
        raise ApiFormatError(source, f"multiplier {m} is not a power of ten")
    # found by fuzzing (bench/fuzz.py): 1e-560000 made every price a 560,000-digit integer (a hang)
    if not _MIN_EXPONENT <= int(t.exponent) <= _MAX_EXPONENT:
        raise ApiFormatError(source, f"multiplier {m} is out of range (1e{_MIN_EXPONENT} to 1e{_MAX_EXPONENT})")
    return int(t.exponent)


def _columns(doc: dict[str, Any], names: Sequence[str], source: str) -> list[list[Any]]:
    cols = []
    for name in names:
        col = doc.get(name)
        if not isinstance(col, list):
            raise ApiFormatError(source, f"column {name!r} is {'missing' if col is None else 'not a list'}")
        cols.append(col)
    lengths = {len(c) for c in cols}
    if len(lengths) > 1:
        detail = ", ".join(f"{n} {len(c)}" for n, c in zip(names, cols, strict=True))
        raise ApiFormatError(source, f"column lengths do not match ({detail})")
    return cols


def _base_units(doc: dict[str, Any], name: str, exp: int, source: str) -> int:
    """The base price ``name`` in price units (an integer: the price divided by the multiplier)."""
    value = doc.get(name)
    if value is None:
        raise ApiFormatError(source, f"missing base price {name!r} (needed when the columns are not empty)")
    price = Decimal(_number(value, f"base price {name!r}", source))
    units = price.scaleb(-exp)
    if units != units.to_integral_value():
        raise ApiFormatError(source, f"base price {name!r} {price} is not a whole number of {Decimal(1).scaleb(exp)}")
    return int(units)


def _price(units: int, exp: int) -> Decimal:
    key = (units, exp)
    d = _price_memo.get(key)
    if d is None:
        if len(_price_memo) > _MEMO_LIMIT:
            _price_memo.clear()
        d = _price_memo[key] = Decimal(units).scaleb(exp)
    return d


def _volume(value: Any, exp: int, what: str, source: str) -> Decimal:
    """A volume as the shortest plain decimal, moved by ``10**exp`` (units → millions for ticks)."""
    n = _number(value, what, source)
    key = (n if isinstance(n, Decimal) else Decimal(n), exp)
    d = _volume_memo.get(key)
    if d is None:
        if key[0] < 0:
            raise ApiFormatError(source, f"{what} is negative ({n})")
        if len(_volume_memo) > _MEMO_LIMIT:
            _volume_memo.clear()
        try:
            d = key[0].scaleb(exp).normalize()
            if d.as_tuple().exponent > 0:  # type: ignore[operator]
                d = d.quantize(Decimal(1))
        except InvalidOperation:  # found by fuzzing (bench/fuzz.py): 3.4028235e38 has no plain form in 28 digits
            raise ApiFormatError(source, f"{what} is out of range ({n})") from None
        _volume_memo[key] = d
    return d


def decode_ticks(data: bytes, *, hour_start_ns: int, source: str, whole_hour: bool = True) -> list[TickRecord]:
    """Decode one tick answer into the records :func:`.bi5.decode_ticks` gives for the same hour.

    ``hour_start_ns``: the hour that was asked for; every tick must lie inside it. ``whole_hour``: the answer
    is for a finished hour, so its ``timestamp`` must be the hour start (an open-period answer may start
    later). Raises :class:`ApiFormatError` for anything malformed; an hour without ticks gives ``[]``.
    """
    doc = _load(data, source)
    start_ms = _integer(doc.get("timestamp"), "timestamp", source)
    exp = _exponent(doc.get("multiplier"), source)
    times, asks, bids, ask_vols, bid_vols = _columns(doc, ("times", "asks", "bids", "askVolumes", "bidVolumes"), source)
    hour_ms = hour_start_ns // _NS_PER_MS
    if (whole_hour and start_ms != hour_ms) or not hour_ms <= start_ms < hour_ms + _HOUR_MS:
        raise ApiFormatError(source, f"timestamp {start_ms} is not the hour asked for (starting {hour_ms})")
    if not times:
        return []
    ask_u = _base_units(doc, "ask", exp, source)
    bid_u = _base_units(doc, "bid", exp, source)
    times = _int_column(times, "times", source)
    negative = next((i for i, dt in enumerate(times) if dt < 0), None)
    if negative is not None:
        raise ApiFormatError(source, f"times[{negative}] is a negative time delta ({times[negative]} ms)")
    stamps = list(accumulate(times, initial=start_ms))[1:]
    end_ms = hour_ms + _HOUR_MS
    if stamps[-1] >= end_ms:
        i = next(i for i, t in enumerate(stamps) if t >= end_ms)
        raise ApiFormatError(source, f"tick {i} at {stamps[i]} ms is after the hour (which ends at {end_ms})")
    ask_units = list(accumulate(_int_column(asks, "asks", source), initial=ask_u))[1:]
    bid_units = list(accumulate(_int_column(bids, "bids", source), initial=bid_u))[1:]
    ask_v = _volume_column(ask_vols, _TICK_VOLUME_EXP, "askVolumes", source)
    bid_v = _volume_column(bid_vols, _TICK_VOLUME_EXP, "bidVolumes", source)
    memo = _price_memo
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    out: list[TickRecord] = []
    append = out.append
    for t, a, b, av, bv in zip(stamps, ask_units, bid_units, ask_v, bid_v, strict=True):
        ask = memo.get((a, exp))
        if ask is None:
            ask = memo[(a, exp)] = Decimal(a).scaleb(exp)
        bid = memo.get((b, exp))
        if bid is None:
            bid = memo[(b, exp)] = Decimal(b).scaleb(exp)
        append(TickRecord(t * _NS_PER_MS, t - hour_ms, ask, bid, av, bv))
    return out


def _int_column(col: list[Any], name: str, source: str) -> list[int]:
    """The column as ints; every element checked (whole numbers written as ``2.0`` are accepted)."""
    if all(type(x) is int for x in col):
        return col
    return [_integer(x, f"{name}[{i}]", source) for i, x in enumerate(col)]


def _volume_column(col: list[Any], exp: int, name: str, source: str) -> list[Decimal]:
    memo = _volume_memo
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    out = []
    for i, x in enumerate(col):
        d = memo.get((x, exp)) if type(x) is Decimal or type(x) is int else None
        if d is None:
            d = _volume(x, exp, f"{name}[{i}]", source)
        out.append(d)
    return out


def decode_candles(
    data: bytes, *, period_start_ns: int, step_s: int, source: str, whole_period: bool = True
) -> list[CandleRecord]:
    """Decode one candle answer into :class:`~.bi5.CandleRecord`\\ s (only the candles sent: the API has no
    closed-market placeholders). ``step_s`` is the candle length asked for; ``shift`` must agree with it.
    ``offset_s`` is counted from ``period_start_ns``, as in the ``.bi5`` files."""
    doc = _load(data, source)
    start_ms = _integer(doc.get("timestamp"), "timestamp", source)
    exp = _exponent(doc.get("multiplier"), source)
    names = ("times", "opens", "highs", "lows", "closes", "volumes")
    times, opens, highs, lows, closes, volumes = _columns(doc, names, source)
    period_ms = period_start_ns // _NS_PER_MS
    if (whole_period and start_ms != period_ms) or start_ms < period_ms:
        raise ApiFormatError(source, f"timestamp {start_ms} is not the period asked for (starting {period_ms})")
    if not times:
        return []
    shift = _integer(doc.get("shift"), "shift", source)
    if shift != step_s * _MS_PER_S:
        raise ApiFormatError(source, f"shift {shift} ms is not the {step_s} s candle length asked for")
    units = [_base_units(doc, n, exp, source) for n in ("open", "high", "low", "close")]
    out: list[CandleRecord] = []
    t = start_ms
    for i in range(len(times)):
        dt = _integer(times[i], f"times[{i}]", source)
        if dt < 0:
            raise ApiFormatError(source, f"times[{i}] is a negative time delta ({dt} candles)")
        if i and dt == 0:
            raise ApiFormatError(source, f"times[{i}] repeats the candle before it")
        t += dt * shift
        for j, col in enumerate((opens, highs, lows, closes)):
            units[j] += _integer(col[i], f"{names[j + 1]}[{i}]", source)
        o, h, lo, c = (_price(u, exp) for u in units)
        vol = _volume(volumes[i], 0, f"volumes[{i}]", source)
        out.append(CandleRecord(t * _NS_PER_MS, (t - period_ms) // _MS_PER_S, o, h, lo, c, vol))
    return out
