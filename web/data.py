"""What the console reads from PostgreSQL: candles at a resolution picked for the view, ticks, last values, alerts.

All functions are blocking (psycopg); the gateway runs them in worker threads. Values are bound parameters and
identifiers come from fixed tables, so nothing a request carries reaches SQL as text.

**Fractal zoom.** :func:`pick_resolution` maps a time range and a number of points to the finest resolution
that still gives at most that many buckets, from ``1w`` down to ``1s``; when even ``1s`` fits, the range is
narrow enough to show raw ticks (unless there are more than :data:`TICK_LIMIT` of them, then ``1s``). Weekly
candles (Monday 00:00 UTC) are rolled up here from the daily ones: open of the first day, close of the last,
extremes, summed volume and tick counts — the same numbers a 1w bucket over the raw rows would give.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg

from pulse.models import Quote, Trade
from sinks.postgres.candles import CandleError, CandleRow, candles
from sinks.postgres.mode import detect_mode

#: Chart resolutions, coarsest first, with their widths in seconds.
RESOLUTIONS: dict[str, int] = {"1w": 604800, "1d": 86400, "1h": 3600, "5m": 300, "1m": 60, "1s": 1}
TICK_LIMIT = 5000  # the most ticks one response carries
MAX_POINTS = 5000
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)
_json = msgspec.json.Encoder(decimal_format="string")


class DataError(ValueError):
    """A request the data layer refuses (bad interval, range or venue); the message names the problem."""


def pick_resolution(start: datetime, end: datetime, points: int) -> str:
    """The finest resolution with at most ``points`` buckets over ``[start, end)``; ``tick`` below ``1s``."""
    span = (end - start).total_seconds()
    chosen = "1w"
    for name, width in RESOLUTIONS.items():
        if math.ceil(span / width) <= points:
            chosen = name
    if chosen == "1s":
        return "tick"
    return chosen


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT t FROM unnest(ARRAY['trades', 'quotes', 'alerts']) AS t WHERE to_regclass(t) IS NOT NULL"
    ).fetchall()
    return {r[0] for r in rows}


def _candle_rows(conn: psycopg.Connection[Any], symbol: str, venue: str | None, interval: str,
                 start: datetime, end: datetime) -> list[CandleRow]:  # fmt: skip
    mode = detect_mode(conn, create=False)
    row = conn.execute("SELECT to_regclass('pulse_candles_bid_1s')").fetchone()
    kwargs: dict[str, Any] = {"mode": mode} if mode.timescaledb and row and row[0] is not None else {}
    try:
        return candles(conn, symbol, interval=interval, start=start, end=end, venue=venue, **kwargs)
    except CandleError as exc:
        raise DataError(str(exc)) from exc


def _weekly(daily: list[CandleRow]) -> list[CandleRow]:
    out: list[CandleRow] = []
    for r in daily:
        week = _MONDAY + timedelta(weeks=(r.bucket - _MONDAY) // timedelta(weeks=1))
        if out and out[-1].bucket == week:
            w = out[-1]
            vol = None if w.volume is None or r.volume is None else w.volume + r.volume
            out[-1] = CandleRow(week, w.open, max(w.high, r.high), min(w.low, r.low), r.close, vol, w.ticks + r.ticks)
        else:
            out.append(CandleRow(week, r.open, r.high, r.low, r.close, r.volume, r.ticks))
    return out


def _candle_doc(r: CandleRow) -> dict[str, Any]:
    d = r.as_dict()
    d["time"] = int(r.bucket.timestamp())
    return d


def candle_series(
    url: str, venue: str | None, symbol: str, start: datetime, end: datetime,
    *, interval: str | None = None, points: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Candles (or ticks) of one instrument over ``[start, end)`` at ``interval``, or at the resolution
    :func:`pick_resolution` picks for ``points``."""
    if end <= start:
        raise DataError("to must be after from")
    if interval is None:
        if points is None:
            raise DataError("give interval or points")
        resolution = pick_resolution(start, end, points)
    else:
        if interval not in RESOLUTIONS:
            raise DataError(f"unknown interval {interval!r}: expected one of {', '.join(RESOLUTIONS)}")
        resolution = interval
    doc: dict[str, Any] = {"venue": venue, "symbol": symbol, "from": start.isoformat(), "to": end.isoformat(),
                           "resolution": resolution, "points": points}  # fmt: skip
    with psycopg.connect(url, connect_timeout=5) as conn:
        tables = _tables(conn)
        if resolution == "tick":
            ticks = _ticks(conn, tables, venue, symbol, start, end, TICK_LIMIT + 1)
            if len(ticks["ticks"]) <= TICK_LIMIT:
                return {**doc, **ticks, "candles": []}
            resolution = doc["resolution"] = "1s"
        if not tables & {"trades", "quotes"}:
            return {**doc, "candles": []}
        if resolution == "1w":
            rows = _weekly(_candle_rows(conn, symbol, venue, "1d", start, end))
        else:
            rows = _candle_rows(conn, symbol, venue, resolution, start, end)
    return {**doc, "candles": [_candle_doc(r) for r in rows]}


def _ticks(conn: psycopg.Connection[Any], tables: set[str], venue: str | None, symbol: str,
           start: datetime, end: datetime, limit: int) -> dict[str, Any]:  # fmt: skip
    where = "symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s"
    params: dict[str, Any] = {"symbol": symbol, "start": start, "end": end, "limit": limit}
    if venue is not None:
        where += " AND venue = %(venue)s"
        params["venue"] = venue
    if "trades" in tables:
        rows = conn.execute(
            f"SELECT ts_event_ns, price, size, side FROM trades WHERE {where}"  # fixed text; values are bound
            " ORDER BY time DESC, ts_event_ns DESC, seq DESC LIMIT %(limit)s",
            params,
        ).fetchall()
        if rows:
            ticks = [{"ts_event": r[0], "time": r[0] / 1e9, "price": str(r[1]), "size": str(r[2]), "side": r[3]}
                     for r in reversed(rows)]  # fmt: skip
            return {"source": "trades", "ticks": ticks}
    if "quotes" in tables:
        rows = conn.execute(
            f"SELECT ts_event_ns, bid, ask FROM quotes WHERE {where} AND channel = 'quote'"
            " ORDER BY time DESC, ts_event_ns DESC, seq DESC LIMIT %(limit)s",
            params,
        ).fetchall()
        ticks = [
            {"ts_event": r[0], "time": r[0] / 1e9, "bid": _s(r[1]), "ask": _s(r[2]),
             "price": _s((r[1] + r[2]) * Decimal("0.5")) if r[1] is not None and r[2] is not None else _s(r[1] or r[2])}
            for r in reversed(rows)
        ]  # fmt: skip
        return {"source": "quotes", "ticks": ticks}
    return {"source": None, "ticks": []}


def _s(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def tick_series(url: str, venue: str | None, symbol: str, start: datetime, end: datetime, limit: int) -> dict[str, Any]:
    """The most recent ``limit`` ticks in ``[start, end)``, oldest first: trades, else quotes (bid, ask, mid)."""
    if end <= start:
        raise DataError("to must be after from")
    with psycopg.connect(url, connect_timeout=5) as conn:
        got = _ticks(conn, _tables(conn), venue, symbol, start, end, limit + 1)
    truncated = len(got["ticks"]) > limit
    if truncated:
        got["ticks"] = got["ticks"][1:]
    return {"venue": venue, "symbol": symbol, "from": start.isoformat(), "to": end.isoformat(), "limit": limit,
            "truncated": truncated, **got}  # fmt: skip


def last_frames(url: str, venue: str, symbol: str) -> dict[str, str]:
    """The newest stored trade and quote of an instrument as event frames: ``{"trade": …, "quote": …}``."""
    out: dict[str, str] = {}
    with psycopg.connect(url, connect_timeout=5) as conn:
        tables = _tables(conn)
        p = {"venue": venue, "symbol": symbol}
        if "trades" in tables:
            r = conn.execute(
                "SELECT ts_event_ns, ts_recv_ns, seq, price, size, side, trade_id, ord_type FROM trades"
                " WHERE venue = %(venue)s AND symbol = %(symbol)s ORDER BY time DESC, ts_event_ns DESC, seq DESC"
                " LIMIT 1",
                p,
            ).fetchone()
            if r:
                t = Trade(venue=venue, symbol=symbol, ts_event=r[0], ts_recv=r[1], seq=r[2], price=r[3], size=r[4],
                          side=r[5], trade_id=r[6], ord_type=r[7])  # fmt: skip
                out["trade"] = _json.encode(t).decode()
        if "quotes" in tables:
            r = conn.execute(
                "SELECT ts_event_ns, ts_recv_ns, seq, bid, bid_size, ask, ask_size, tradeable FROM quotes"
                " WHERE venue = %(venue)s AND symbol = %(symbol)s AND channel = 'quote'"
                " ORDER BY time DESC, ts_event_ns DESC, seq DESC LIMIT 1",
                p,
            ).fetchone()
            if r:
                q = Quote(venue=venue, symbol=symbol, ts_event=r[0], ts_recv=r[1], seq=r[2], bid=r[3], bid_size=r[4],
                          ask=r[5], ask_size=r[6], tradeable=r[7])  # fmt: skip
                out["quote"] = _json.encode(q).decode()
    return out


def recent_alerts(url: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts, newest first (empty before the alerting service created its tables)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        if "alerts" not in _tables(conn):
            return []
        rows = conn.execute(
            "SELECT alert_id, rule_id, kind, venue, symbol, ts_event, condition, value, threshold, message"
            " FROM alerts ORDER BY ts_event DESC, id DESC LIMIT %(limit)s",
            {"limit": limit},
        ).fetchall()
    keys = ("alert_id", "rule_id", "kind", "venue", "symbol", "ts_event", "condition", "value", "threshold", "message")
    return [dict(zip(keys, r, strict=True)) for r in rows]
