"""The local Dukascopy venue's JSON data API: answers in the API's format, built from the ``.bi5`` files it
also serves, so one directory of real files feeds both layouts.

The format is the one :mod:`ingesters.dukascopy.jsonapi` documents (dukascopy-node 1.47+): delta-encoded
columns, prices as units of ``multiplier`` with the first price as the base, tick volumes in units (the
``.bi5`` float32 counts millions), candle volumes as in the ``.bi5`` file, no closed-market candles. Real API
answers placed under ``{root}/v1/{path}.json`` (e.g. ``v1/ticks/BTC-USD/2023/2/20/12.json``) are served as
they are instead.
"""

from __future__ import annotations

import lzma
import struct
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ingesters.dukascopy.bi5 import float32_to_decimal
from ingesters.dukascopy.instruments import Instrument, lookup

_TICK = struct.Struct(">I2i2I")
_CANDLE = struct.Struct(">I4iI")
_MS_PER_S = 1_000
_HOUR_MS = 3_600_000
_SOURCES = {"minute": (60, "min_1"), "hour": (3_600, "hour_1"), "day": (86_400, "day_1")}


class NotServed(Exception):
    """No such data here: the server answers 404."""


def instrument_for(api_code: str) -> Instrument:
    """``EUR-USD`` / ``USA500.IDX-USD`` → the instrument (its datafeed code drops the dot and dash)."""
    try:
        return lookup(api_code.replace(".", "").replace("-", ""))
    except Exception as exc:  # an unknown name is simply not served
        raise NotServed(api_code) from exc


def _multiplier(inst: Instrument) -> str:
    return f"1.0E-{inst.decimals}" if inst.decimals else "1"


def _price(units: int, inst: Instrument) -> Decimal:
    return Decimal(units).scaleb(-inst.decimals)


def _read(file: Path) -> bytes:
    if not file.is_file():
        raise NotServed(str(file))
    data = file.read_bytes()
    return lzma.decompress(data, format=lzma.FORMAT_ALONE) if data else b""


def _number(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text if "." in text else text + ".0"


def tick_answer(root: Path, api_code: str, hour: datetime, from_ms: int | None = None) -> bytes:
    """The API's answer for one hour of ticks (``from_ms``: only ticks from then on, as ``?from=`` does)."""
    inst = instrument_for(api_code)
    h = hour.astimezone(UTC)
    raw = _read(root / inst.code / f"{h.year:04d}" / f"{h.month - 1:02d}" / f"{h.day:02d}" / f"{h.hour:02d}h_ticks.bi5")
    hour_ms = int(h.timestamp()) * _MS_PER_S
    start = hour_ms if from_ms is None else from_ms
    records = [r for r in _TICK.iter_unpack(raw) if hour_ms + r[0] >= start]
    doc = {"timestamp": str(start), "multiplier": _multiplier(inst), "ask": "null", "bid": "null"}
    cols: dict[str, list[str]] = {k: [] for k in ("times", "asks", "bids", "askVolumes", "bidVolumes")}
    if records:
        doc["ask"], doc["bid"] = str(_price(records[0][1], inst)), str(_price(records[0][2], inst))
    t, a, b = start, records[0][1] if records else 0, records[0][2] if records else 0
    for ms, ask, bid, av, bv in records:
        cols["times"].append(str(hour_ms + ms - t))
        cols["asks"].append(str(ask - a))
        cols["bids"].append(str(bid - b))
        cols["askVolumes"].append(_number(float32_to_decimal(av).scaleb(6)))
        cols["bidVolumes"].append(_number(float32_to_decimal(bv).scaleb(6)))
        t, a, b = hour_ms + ms, ask, bid
    return _render(doc, cols)


def _render(doc: dict[str, str], cols: dict[str, list[str]]) -> bytes:
    """One JSON object; every value is already JSON text, so numbers keep their exact digits."""
    fields = [f'"{k}":{v}' for k, v in doc.items()] + [f'"{k}":[{",".join(v)}]' for k, v in cols.items()]
    return ("{" + ",".join(fields) + "}").encode()


def candle_answer(
    root: Path, source: str, api_code: str, side: str, period: datetime, from_ms: int | None = None
) -> bytes:
    """The API's answer for a candle file (minute: a day, hour: a month, day: a year), placeholders left out."""
    if source not in _SOURCES or side not in ("BID", "ASK"):
        raise NotServed(source)
    inst = instrument_for(api_code)
    step_s, name = _SOURCES[source]
    p = period.astimezone(UTC)
    folder = root / inst.code / f"{p.year:04d}"
    if source != "day":
        folder /= f"{p.month - 1:02d}"
    if source == "minute":
        folder /= f"{p.day:02d}"
    raw = _read(folder / f"{side}_candles_{name}.bi5")
    period_ms = int(p.timestamp()) * _MS_PER_S
    start = period_ms if from_ms is None else from_ms
    shift = step_s * _MS_PER_S
    records = [
        r
        for r in _CANDLE.iter_unpack(raw)
        if period_ms + r[0] * _MS_PER_S >= start and not (r[5] == 0 and r[1] == r[2] == r[3] == r[4])
    ]
    doc = {"timestamp": str(start), "multiplier": _multiplier(inst)}
    doc.update({k: "null" for k in ("open", "high", "low", "close")})
    doc["shift"] = str(shift)
    cols: dict[str, list[str]] = {k: [] for k in ("times", "opens", "highs", "lows", "closes", "volumes")}
    if records:
        _, o, c, lo, hi, _ = records[0]
        doc.update(open=str(_price(o, inst)), high=str(_price(hi, inst)), low=str(_price(lo, inst)))
        doc["close"] = str(_price(c, inst))
    slot = (start - period_ms) // shift
    prev = (records[0][1], records[0][4], records[0][3], records[0][2]) if records else (0, 0, 0, 0)
    for sec, o, c, lo, hi, vol in records:
        now = (o, hi, lo, c)
        index = sec * _MS_PER_S // shift
        cols["times"].append(str(index - slot))
        for key, v, pv in zip(("opens", "highs", "lows", "closes"), now, prev, strict=True):
            cols[key].append(str(v - pv))
        cols["volumes"].append(_number(float32_to_decimal(vol)))
        slot, prev = index, now
    return _render(doc, cols)


def period_of(source: str, ms: int) -> datetime:
    """Start of the period (hour of ticks, day/month/year of candles) holding ``ms``."""
    t = datetime.fromtimestamp(ms / _MS_PER_S, UTC)
    if source == "ticks":
        return t.replace(minute=0, second=0, microsecond=0)
    if source == "minute":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if source == "hour":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def answer(root: Path, path: str, from_ms: int | None) -> bytes:
    """The answer to ``GET /v1/{path}[?from=ms]``; :class:`NotServed` for anything this venue lacks."""
    recorded = (root / "v1" / f"{path}.json").resolve()
    if from_ms is None and recorded.is_relative_to(root.resolve()) and recorded.is_file():
        return recorded.read_bytes()
    parts = path.split("/")
    try:
        if parts[0] == "ticks" and len(parts) == 2 and from_ms is not None:
            return tick_answer(root, parts[1], period_of("ticks", from_ms), from_ms)
        if parts[0] == "ticks" and len(parts) == 6 and from_ms is None:
            y, m, d, h = (int(x) for x in parts[2:])
            return tick_answer(root, parts[1], datetime(y, m, d, h, tzinfo=UTC))
        if parts[0] == "candles" and len(parts) == 4 and from_ms is not None:
            return candle_answer(root, parts[1], parts[2], parts[3], period_of(parts[1], from_ms), from_ms)
        if parts[0] == "candles" and 5 <= len(parts) <= 7 and from_ms is None:
            source, code, side, *ymd = parts[1:]
            need = {"minute": 3, "hour": 2, "day": 1}.get(source)
            if need != len(ymd):
                raise NotServed(path)
            y, m, d = (*(int(x) for x in ymd), 1, 1)[:3]
            return candle_answer(root, source, code, side, datetime(y, m, d, tzinfo=UTC))
    except ValueError as exc:  # non-numeric or impossible dates
        raise NotServed(path) from exc
    raise NotServed(path)


__all__ = ["NotServed", "answer", "candle_answer", "period_of", "tick_answer"]
