"""The one candle query API: OHLCV per time bucket from the sink's tables, the same answer in every database mode.

:func:`candles` returns :class:`CandleRow` s (exact :class:`~decimal.Decimal` prices and volumes) for one symbol::

    candles(conn, "EUR/USD", interval="1m", start=t0, end=t1, side="bid")

Rules, identical in both modes:

* **Source.** ``side`` given (``bid`` / ``ask`` / ``mid``) → the ``quotes`` table, rows of channel ``quote``
  (Quote events; ``ticker`` rows would count the same top of book twice). ``side=None`` → ``trades`` when the
  symbol has trades in the range (a trade-driven instrument: price, size), otherwise bid quotes (the FX
  charting convention, and what Dukascopy's own candle files are). ``source=`` forces either table.
* **Prices and volume.** ``bid``: price ``bid``, volume ``sum(bid_size)``; ``ask`` likewise; ``mid``: price
  ``(bid + ask) * 0.5`` (exact: multiplying by 0.5 adds one digit of scale, where ``/ 2`` would round to
  numeric's division scale), only rows with both sides, and ``volume`` is ``None`` (a mid price has no size).
  Quote sizes are in base-currency units as the ingesters store them (Dukascopy: ``volume x 1,000,000``), so a
  candle's volume is in units too.
* **Open/close.** The first/last row by ``(time, ts_event_ns, seq)`` — ``time`` is ``ts_event_ns`` floored to
  microseconds, so ``(ts_event_ns, seq)`` is the same order and the one the SQL uses.
* **Buckets.** UTC-aligned, ``[bucket, bucket + interval)``. ``start`` is floored and ``end`` ceiled to the
  interval, and every bucket beginning in ``[start, end)`` that holds at least one row is returned, oldest
  first. Naive datetimes are UTC.
* **Venue.** ``venue`` selects one source. ``venue=None`` with one venue in the range uses it; with two
  (a Dukascopy backfill and the OANDA stream both carry EUR/USD) the series is stitched at an hour boundary,
  history before, live after (the rule is in :mod:`sinks.postgres.stitch`); with three or more
  :class:`CandleError` names them — pass ``venue``.
* **Intervals** ``1s 1m 5m 15m 1h 4h 12h 1d 1w``: the database computes ``1s 1m 5m 1h 1d``; the others are
  built from the one below (:func:`sinks.postgres.stitch.rollup`). Weeks start on Monday.

Modes (``CandleMode``): plain PostgreSQL computes the candles from the raw rows with one ``GROUP BY`` query
(``date_bin``; open/close as ``min``/``max`` over ``ARRAY[ts_event_ns, seq, price]`` — one streaming pass with
no per-group sort or array accumulation, measured fastest, see :data:`OPEN_CLOSE_METHODS`). With TimescaleDB the
``trade``/``bid``/``ask`` candles are read from the hierarchical continuous aggregates that
:mod:`sinks.postgres.timescale_caggs` maintains (real-time aggregation on, so unmaterialized rows count too);
``mid`` has no aggregate and is computed from the hypertable as on plain PostgreSQL.

All SQL is composed with :mod:`psycopg.sql`: identifiers as :class:`~psycopg.sql.Identifier`, values bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg import sql

from pulse.errors import PulseError
from sinks.postgres.stitch import BUILT_ON, CHART_INTERVALS, Seam, find_seam, origin, rollup

Interval = Literal["1s", "1m", "5m", "15m", "1h", "4h", "12h", "1d", "1w"]
Side = Literal["bid", "ask", "mid"]
Source = Literal["trades", "quotes"]

#: Bucket widths the database computes, in seconds, finest first (the order of the TimescaleDB hierarchy too).
INTERVALS: dict[str, int] = {"1s": 1, "1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
_HOUR_S = 3_600
SIDES: tuple[str, ...] = ("bid", "ask", "mid")

#: How the plain-SQL query picks a bucket's open and close. ``minmax`` (the default) is one streaming pass;
#: ``array_agg`` sorts each group; both give the same rows (the unit and integration tests check that).
#: Measured (PostgreSQL 18, 100,000 trades over one day, best of 5, end to end incl. decoding): 1m 151 vs
#: 175 ms, 1h 167 vs 138 ms, 1s (86,400 buckets) 866 vs 1,376 ms; DISTINCT ON for open and close joined to a
#: GROUP BY was 245 / 160 / 765 ms. minmax is never far from the best and keeps one simple query.
OPEN_CLOSE_METHODS = ("minmax", "array_agg")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CandleError(PulseError, ValueError):
    """A candle request that cannot be answered as asked (bad interval or side, ambiguous venue)."""


@dataclass(frozen=True, slots=True)
class CandleMode:
    """Which database features are active (the sink core detects them; pass its answer)."""

    timescaledb: bool = False
    toolkit: bool = False


PLAIN = CandleMode()


@dataclass(frozen=True, slots=True)
class CandleRow:
    """One bucket: ``[bucket, bucket + interval)``. ``volume`` is ``None`` for mid candles or sizeless quotes."""

    bucket: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None
    ticks: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO time, decimals as strings (exact)."""
        return {
            "bucket": self.bucket.isoformat(),
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "volume": None if self.volume is None else str(self.volume),
            "ticks": self.ticks,
        }


# -- pure helpers (unit-tested) ---------------------------------------------------------------------------
def interval_seconds(interval: str) -> int:
    try:
        return CHART_INTERVALS[interval]
    except KeyError:
        raise CandleError(f"unknown interval {interval!r}: expected one of {', '.join(CHART_INTERVALS)}") from None


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def floor_time(t: datetime, seconds: int) -> datetime:
    """``t`` floored to a UTC-aligned multiple of ``seconds`` (naive means UTC; weeks start on Monday)."""
    base = origin(seconds)
    us = (_utc(t) - base) // timedelta(microseconds=1)
    step = seconds * 1_000_000
    return base + timedelta(microseconds=us - us % step)


def ceil_time(t: datetime, seconds: int) -> datetime:
    f = floor_time(t, seconds)
    return f if f == _utc(t) else f + timedelta(seconds=seconds)


def bucket_range(interval: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole buckets; refuses an empty range."""
    n = interval_seconds(interval)
    lo, hi = floor_time(start, n), ceil_time(end, n)
    if lo >= hi:
        raise CandleError(f"empty range: {start.isoformat()} is not before {end.isoformat()}")
    return lo, hi


def price_columns(source: Source, side: Side | None) -> tuple[sql.Composable, sql.Composable, sql.Composable]:
    """(price expression, size expression, extra WHERE condition) for a source and side."""
    if source == "trades":
        if side is not None:
            raise CandleError("side applies to quote candles only; trades have one price")
        return sql.Identifier("price"), sql.Identifier("size"), sql.SQL("TRUE")
    side = side or "bid"
    channel = sql.SQL("{} = {}").format(sql.Identifier("channel"), sql.Literal("quote"))
    if side == "mid":
        bid, ask = sql.Identifier("bid"), sql.Identifier("ask")
        return (
            sql.SQL("({} + {}) * 0.5").format(bid, ask),
            sql.SQL("NULL::numeric"),
            sql.SQL("{} AND {} IS NOT NULL AND {} IS NOT NULL").format(channel, bid, ask),
        )
    if side not in ("bid", "ask"):
        raise CandleError(f"unknown side {side!r}: expected bid, ask or mid")
    price = sql.Identifier(side)
    return price, sql.Identifier(f"{side}_size"), sql.SQL("{} AND {} IS NOT NULL").format(channel, price)


def raw_candles_query(source: Source, side: Side | None, *, by_venue: bool, method: str = "minmax") -> sql.Composed:
    """Candles computed from the raw table. Parameters (named): symbol, width (interval), start, end[, venue].

    Returns rows ``(venue, bucket, open, high, low, close, volume, ticks)``; ``venue`` is NULL unless
    ``by_venue`` (then one group per venue, for the ambiguity check) — without it ``%(venue)s`` filters.
    """
    price, size, where = price_columns(source, side)
    ts, seq = sql.Identifier("ts_event_ns"), sql.Identifier("seq")
    if method == "minmax":
        # numeric[] compares element-wise: the smallest (ts_event_ns, seq) row carries the open in slot 3.
        key = sql.SQL("ARRAY[{}::numeric, {}::numeric, {}]").format(ts, seq, price)
        open_, close = sql.SQL("(min({}))[3]").format(key), sql.SQL("(max({}))[3]").format(key)
    elif method == "array_agg":
        open_ = sql.SQL("(array_agg({} ORDER BY {}, {}))[1]").format(price, ts, seq)
        close = sql.SQL("(array_agg({} ORDER BY {} DESC, {} DESC))[1]").format(price, ts, seq)
    else:
        raise CandleError(f"unknown open/close method {method!r}: expected one of {OPEN_CLOSE_METHODS}")
    venue = sql.Identifier("venue")
    return sql.SQL(
        "SELECT {venue_out}, date_bin(%(width)s::interval, {time}, {origin}) AS bucket,"
        " {open} AS open, max({price}) AS high, min({price}) AS low, {close} AS close,"
        " sum({size}) AS volume, count(*) AS ticks"
        " FROM {table}"
        " WHERE {symbol} = %(symbol)s AND {time} >= %(start)s AND {time} < %(end)s AND {where}{venue_filter}"
        " GROUP BY {group} ORDER BY bucket"
    ).format(
        venue_out=venue if by_venue else sql.SQL("NULL::text"),
        time=sql.Identifier("time"),
        origin=sql.SQL("TIMESTAMPTZ '1970-01-01 00:00:00+00'"),
        open=open_,
        close=close,
        price=price,
        size=size,
        table=sql.Identifier(source),
        symbol=sql.Identifier("symbol"),
        where=where,
        venue_filter=sql.SQL("") if by_venue else sql.SQL(" AND {} = %(venue)s").format(venue),
        group=sql.SQL("{}, bucket").format(venue) if by_venue else sql.SQL("bucket"),
    )


def aggregate_query(view: str, *, by_venue: bool) -> sql.Composed:
    """Candles read from a continuous aggregate (TimescaleDB). Same parameters and row shape as the raw query."""
    venue = sql.Identifier("venue")
    return sql.SQL(
        "SELECT {venue_out}, bucket, open, high, low, close, volume, ticks FROM {view}"
        " WHERE {symbol} = %(symbol)s AND bucket >= %(start)s AND bucket < %(end)s{venue_filter}"
        " ORDER BY bucket"
    ).format(
        venue_out=venue if by_venue else sql.SQL("NULL::text"),
        view=sql.Identifier(view),
        symbol=sql.Identifier("symbol"),
        venue_filter=sql.SQL("") if by_venue else sql.SQL(" AND {} = %(venue)s").format(venue),
    )


def has_trades_query(*, with_venue: bool) -> sql.Composed:
    return sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {t} WHERE {symbol} = %(symbol)s AND {time} >= %(start)s"
        " AND {time} < %(end)s{venue_filter})"
    ).format(
        t=sql.Identifier("trades"),
        symbol=sql.Identifier("symbol"),
        time=sql.Identifier("time"),
        venue_filter=sql.SQL(" AND {} = %(venue)s").format(sql.Identifier("venue")) if with_venue else sql.SQL(""),
    )


# -- the API ----------------------------------------------------------------------------------------------
def candles(
    conn: psycopg.Connection[Any],
    symbol: str,
    *,
    interval: str,
    start: datetime,
    end: datetime,
    side: Side | None = None,
    venue: str | None = None,
    source: Source | None = None,
    mode: CandleMode = PLAIN,
    method: str = "minmax",
) -> list[CandleRow]:
    """OHLCV candles of ``symbol`` (canonical, ``EUR/USD``) for every non-empty bucket in ``[start, end)``.

    See the module docstring for the source, side, bucket, interval and venue rules. Raises
    :class:`CandleError` for a bad interval, side or range, or when ``venue=None`` and three or more venues
    have data in the range. :func:`seam_of` tells where a stitched series changes source.
    """
    return _candles(conn, symbol, interval, start, end, side, venue, source, mode, method)[0]


def seam_of(
    conn: psycopg.Connection[Any],
    symbol: str,
    *,
    start: datetime,
    end: datetime,
    side: Side | None = None,
    source: Source | None = None,
) -> Seam | None:
    """Where :func:`candles` with ``venue=None`` switches from history to the live source, if it stitches."""
    lo, hi = _utc(start), _utc(end)
    params: dict[str, Any] = {"symbol": symbol, "start": lo, "end": hi}
    src = source or ("quotes" if side is not None else _detect_source(conn, params, False))
    extents = _extents(conn, src, side if src == "quotes" else None, params)
    if len(extents) > 2:
        raise CandleError(
            f"{symbol} has data from {len(extents)} venues in this range ({', '.join(sorted(extents))}): pass venue"
        )
    return find_seam(extents) if len(extents) == 2 else None


def _candles(
    conn: psycopg.Connection[Any],
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
    side: Side | None,
    venue: str | None,
    source: Source | None,
    mode: CandleMode,
    method: str,
) -> tuple[list[CandleRow], Source]:
    width = interval_seconds(interval)
    lo, hi = bucket_range(interval, start, end)
    if side is not None and side not in SIDES:
        raise CandleError(f"unknown side {side!r}: expected bid, ask or mid")
    params: dict[str, Any] = {"symbol": symbol, "start": lo, "end": hi, "width": timedelta(seconds=width)}
    if venue is not None:
        params["venue"] = venue
    if source is None:
        source = "quotes" if side is not None else _detect_source(conn, params, venue is not None)
    if source == "quotes" and side is None:
        side = "bid"
    if interval in BUILT_ON:  # built on the one below
        finer, _ = _candles(conn, symbol, BUILT_ON[interval], lo, hi, side, venue, source, mode, method)
        return rollup(finer, width), source
    if venue is None:
        seam = seam_of(conn, symbol, start=lo, end=hi, side=side, source=source)
        if seam is not None:
            return _stitched(conn, symbol, interval, lo, hi, side, source, mode, method, seam), source
    # venue None: at most one venue has data here (seam_of said so), so grouping by venue is no filter
    by_venue = venue is None
    view = _aggregate_view(source, side, interval) if mode.timescaledb else None
    if view is not None:
        query = aggregate_query(view, by_venue=by_venue)
    else:
        query = raw_candles_query(source, side, by_venue=by_venue, method=method)
    rows = conn.execute(query, params).fetchall()
    return [CandleRow(r[1], r[2], r[3], r[4], r[5], r[6], int(r[7])) for r in rows], source


def _stitched(
    conn: psycopg.Connection[Any],
    symbol: str,
    interval: str,
    lo: datetime,
    hi: datetime,
    side: Side | None,
    source: Source,
    mode: CandleMode,
    method: str,
    seam: Seam,
) -> list[CandleRow]:
    """History's buckets before the seam, the live source's from it (buckets over 1 h built from hours)."""
    width = interval_seconds(interval)
    step = interval if width <= _HOUR_S else "1h"
    at = min(max(seam.at, lo), hi)
    before = _candles(conn, symbol, step, lo, at, side, seam.before, source, mode, method)[0] if lo < at else []
    after = _candles(conn, symbol, step, at, hi, side, seam.after, source, mode, method)[0] if at < hi else []
    rows = before + after
    return rows if width <= _HOUR_S else rollup(rows, width)


def _extents(
    conn: psycopg.Connection[Any], source: Source, side: Side | None, params: dict[str, Any]
) -> dict[str, tuple[datetime, datetime]]:
    """Each venue's first and last row time for the symbol in the range (the rows the candles would use)."""
    _, _, where = price_columns(source, side)
    query = sql.SQL(
        "SELECT {venue}, min({time}), max({time}) FROM {table} WHERE {symbol} = %(symbol)s"
        " AND {time} >= %(start)s AND {time} < %(end)s AND {where} GROUP BY {venue}"
    ).format(
        venue=sql.Identifier("venue"),
        time=sql.Identifier("time"),
        table=sql.Identifier(source),
        symbol=sql.Identifier("symbol"),
        where=where,
    )
    return {r[0]: (r[1], r[2]) for r in conn.execute(query, params).fetchall()}


def _detect_source(conn: psycopg.Connection[Any], params: dict[str, Any], with_venue: bool) -> Source:
    row = conn.execute(has_trades_query(with_venue=with_venue), params).fetchone()
    return "trades" if row and row[0] else "quotes"


def _aggregate_view(source: Source, side: Side | None, interval: str) -> str | None:
    """The continuous aggregate holding these candles, or ``None`` (mid: computed from the hypertable)."""
    from sinks.postgres.timescale_caggs import view_name  # the caggs module imports this one's constants

    if source == "trades":
        return view_name("trade", interval)
    return None if side == "mid" else view_name(side or "bid", interval)
