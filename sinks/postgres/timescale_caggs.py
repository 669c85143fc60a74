"""TimescaleDB: hierarchical continuous aggregates for candles (1 s → 1 min → 5 min → 1 h → 1 day).

Written against TimescaleDB 2.x's documented API (hierarchical continuous aggregates need 2.9+):

* one aggregate chain per source — ``trade`` (table ``trades``: price, size) and ``bid`` / ``ask`` (table
  ``quotes``, channel ``quote``: bid, bid_size / ask, ask_size) — named ``pulse_candles_{source}_{interval}``;
* the 1 s level aggregates the hypertable (``time_bucket`` on ``time``); every level above aggregates the one
  below (``time_bucket`` on its ``bucket`` column), as the hierarchical-aggregate docs prescribe;
* ``WITH (timescaledb.continuous, timescaledb.materialized_only = false)``: real-time aggregation on (it is off
  by default since 2.13), so a query also sees rows not yet materialized, on every level;
* refresh policies via ``add_continuous_aggregate_policy(..., if_not_exists => true)``, and
  :func:`refresh_after_backfill` runs ``CALL refresh_continuous_aggregate(view, start, end)`` bottom-up.

Re-aggregation. ``first(value, ordering)`` / ``last(...)`` cannot be combined from partial results of the
same kind, so each level stores plain values — ``open``, ``high``, ``low``, ``close``, ``volume``, ``ticks`` —
and the level above takes ``first(open, bucket)``, ``max(high)``, ``min(low)``, ``last(close, bucket)``,
``sum(volume)``, ``sum(ticks)``: every one of them re-aggregates exactly, because buckets do not overlap and
are ordered by ``bucket``. At the 1 s level the order is ``(ts_event_ns, seq)`` (ties in time broken by the
sequence number, like the plain-SQL path), packed into one numeric so ``first``/``last`` can compare it.

The toolkit (``timescaledb_toolkit``). ``candlestick_agg(ts, price, volume)`` works in DOUBLE PRECISION, but
the candle API promises exact decimals. So with ``toolkit=True`` each level *also* stores a ``candlestick``
column — ``candlestick_agg(time, price::float8, size::float8)`` at 1 s and ``rollup(candlestick)`` above — for
the toolkit accessors (``vwap(candlestick)``, ``open_time(candlestick)``, …), while :func:`candles` keeps
reading the exact numeric columns. The numeric columns and the candlestick are aggregated from the same rows,
so ``vwap`` and the exact OHLC always describe the same bucket.

Every statement is composed with :mod:`psycopg.sql`; intervals and names are identifiers or literals from
this module's own tables, never user text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pulse.log import get_logger
from sinks.postgres.candles import INTERVALS, ceil_time, floor_time

log = get_logger(__name__)

#: source → (table, price column, size column, extra WHERE condition or None)
SOURCES: dict[str, tuple[str, str, str, str | None]] = {
    "trade": ("trades", "price", "size", None),
    "bid": ("quotes", "bid", "bid_size", "bid"),
    "ask": ("quotes", "ask", "ask_size", "ask"),
}

#: interval → the SQL interval literal time_bucket gets
BUCKETS: dict[str, str] = {"1s": "1 second", "1m": "1 minute", "5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}

#: interval → (start_offset, end_offset, schedule_interval) of its refresh policy. The window spans many buckets
#: (refreshes need at least two); end_offset of one bucket leaves the open bucket to real-time aggregation.
POLICIES: dict[str, tuple[str, str, str]] = {
    "1s": ("1 hour", "1 second", "10 seconds"),
    "1m": ("3 hours", "1 minute", "1 minute"),
    "5m": ("12 hours", "5 minutes", "5 minutes"),
    "1h": ("3 days", "1 hour", "15 minutes"),
    "1d": ("30 days", "1 day", "1 hour"),
}

# (ts_event_ns, seq) as one numeric, order-preserving over the whole bigint range of both.
_ORDER_KEY = "ts_event_ns::numeric * 18446744073709551616 + (seq::numeric + 9223372036854775808)"


def view_name(source: str, interval: str) -> str:
    if source not in SOURCES or interval not in INTERVALS:
        raise ValueError(f"no candle aggregate for source {source!r} and interval {interval!r}")
    return f"pulse_candles_{source}_{interval}"


def _below(interval: str) -> str | None:
    names = list(INTERVALS)
    i = names.index(interval)
    return names[i - 1] if i else None


def create_view_sql(source: str, interval: str, *, toolkit: bool) -> sql.Composed:
    """``CREATE MATERIALIZED VIEW IF NOT EXISTS … WITH (timescaledb.continuous, …)`` for one level."""
    table, price, size, not_null = SOURCES[source]
    width = sql.SQL("INTERVAL {}").format(sql.Literal(BUCKETS[interval]))
    below = _below(interval)
    if below is None:  # the 1 s level: from the hypertable
        p, s = sql.Identifier(price), sql.Identifier(size)
        bucket = sql.SQL("time_bucket({}, {})").format(width, sql.Identifier("time"))
        key = sql.SQL(_ORDER_KEY)
        cols = sql.SQL(
            "first({p}, {key}) AS open, max({p}) AS high, min({p}) AS low, last({p}, {key}) AS close,"
            " sum({s}) AS volume, count(*) AS ticks"
        ).format(p=p, s=s, key=key)
        if toolkit:
            cols = sql.SQL("{}, candlestick_agg({}, {}::float8, {}::float8) AS candlestick").format(
                cols, sql.Identifier("time"), p, s
            )
        conditions = []
        if table == "quotes":
            conditions.append(sql.SQL("{} = {}").format(sql.Identifier("channel"), sql.Literal("quote")))
        if not_null:
            conditions.append(sql.SQL("{} IS NOT NULL").format(sql.Identifier(not_null)))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        src = sql.Identifier(table)
    else:  # every other level: from the level below
        b = sql.Identifier("bucket")
        bucket = sql.SQL("time_bucket({}, {})").format(width, b)
        cols = sql.SQL(
            "first(open, {b}) AS open, max(high) AS high, min(low) AS low, last(close, {b}) AS close,"
            " sum(volume) AS volume, sum(ticks)::bigint AS ticks"
        ).format(b=b)
        if toolkit:
            cols = sql.SQL("{}, rollup(candlestick) AS candlestick").format(cols)
        where = sql.SQL("")
        src = sql.Identifier(view_name(source, below))
    return sql.SQL(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS {view}"
        " WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
        " SELECT venue, symbol, {bucket} AS bucket, {cols} FROM {src}{where}"
        " GROUP BY venue, symbol, {bucket} WITH NO DATA"
    ).format(view=sql.Identifier(view_name(source, interval)), bucket=bucket, cols=cols, src=src, where=where)


def policy_sql(source: str, interval: str) -> sql.Composed:
    start, end, every = POLICIES[interval]
    return sql.SQL(
        "SELECT add_continuous_aggregate_policy({view}, start_offset => INTERVAL {start},"
        " end_offset => INTERVAL {end}, schedule_interval => INTERVAL {every}, if_not_exists => true)"
    ).format(
        view=sql.Literal(view_name(source, interval)),
        start=sql.Literal(start),
        end=sql.Literal(end),
        every=sql.Literal(every),
    )


def refresh_sql(source: str, interval: str) -> sql.Composed:
    """``CALL refresh_continuous_aggregate(view, %(start)s, %(end)s)`` — a procedure: autocommit only."""
    return sql.SQL("CALL refresh_continuous_aggregate({}, %(start)s::timestamptz, %(end)s::timestamptz)").format(
        sql.Literal(view_name(source, interval))
    )


def ensure_candle_aggregates(conn: psycopg.Connection[Any], *, toolkit: bool, policies: bool = True) -> list[str]:
    """Create the missing aggregates (all sources, all levels, bottom-up) and, with ``policies``, their refresh
    policies. Idempotent. Needs the ``timescaledb`` extension (and ``timescaledb_toolkit`` with ``toolkit``)
    and ``trades``/``quotes`` as hypertables. Returns the view names, finest first per source.

    An existing view is kept as it is: switching ``toolkit`` later needs the views dropped first.
    """
    created: list[str] = []
    for source in SOURCES:
        for interval in INTERVALS:
            conn.execute(create_view_sql(source, interval, toolkit=toolkit))
            if policies:
                conn.execute(policy_sql(source, interval))
            created.append(view_name(source, interval))
    if not conn.autocommit:
        conn.commit()
    log.info("candle aggregates ready", views=len(created), toolkit=toolkit, policies=policies)
    return created


def refresh_after_backfill(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> int:
    """Materialize ``[start, end)`` in every aggregate, bottom-up (1 s → … → 1 d), so each level reads a
    refreshed level below. ``conn`` must be in autocommit mode (``CALL refresh_continuous_aggregate`` cannot
    run inside a transaction block). The window is widened to whole buckets per level, since only buckets
    wholly inside it are refreshed. Returns the number of refresh calls.
    """
    if not conn.autocommit:
        raise ValueError("refresh_after_backfill needs an autocommit connection (a procedure call)")
    calls = 0
    for interval, seconds in INTERVALS.items():
        window = {"start": floor_time(start, seconds), "end": ceil_time(end, seconds)}
        for source in SOURCES:
            conn.execute(refresh_sql(source, interval), window)
            calls += 1
    log.info("candle aggregates refreshed", start=start.isoformat(), end=end.isoformat(), calls=calls)
    return calls
