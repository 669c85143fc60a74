"""The candle SQL builders and time helpers, pure: no database. What runs against one is in
tests/integration/test_sink_candles.py (plain PostgreSQL in CI, TimescaleDB when a URL is given)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from sinks.postgres.candles import (
    INTERVALS,
    CandleError,
    CandleRow,
    aggregate_query,
    bucket_range,
    ceil_time,
    floor_time,
    has_trades_query,
    interval_seconds,
    price_columns,
    raw_candles_query,
)
from sinks.postgres.timescale_caggs import (
    SOURCES,
    create_view_sql,
    policy_sql,
    refresh_after_backfill,
    refresh_sql,
    view_name,
)

T = datetime(2019, 2, 4, 1, 2, 3, 456789, tzinfo=UTC)


def text(q: object) -> str:
    return q.as_string(None)  # type: ignore[attr-defined]


# -- time helpers ------------------------------------------------------------------------------------------
def test_intervals_and_errors() -> None:
    assert [interval_seconds(i) for i in INTERVALS] == [1, 60, 300, 3600, 86400]
    with pytest.raises(CandleError, match="unknown interval '2m'"):
        interval_seconds("2m")


def test_floor_and_ceil_are_utc_aligned() -> None:
    assert floor_time(T, 60) == datetime(2019, 2, 4, 1, 2, tzinfo=UTC)
    assert ceil_time(T, 60) == datetime(2019, 2, 4, 1, 3, tzinfo=UTC)
    assert floor_time(T, 300) == datetime(2019, 2, 4, 1, 0, tzinfo=UTC)
    assert floor_time(T, 86400) == datetime(2019, 2, 4, tzinfo=UTC)
    on = datetime(2019, 2, 4, 1, tzinfo=UTC)
    assert ceil_time(on, 3600) == on == floor_time(on, 3600)  # on a boundary: unchanged
    assert floor_time(T.replace(tzinfo=None), 60) == floor_time(T, 60)  # naive means UTC
    plus2 = T.astimezone(timezone(timedelta(hours=2)))
    assert floor_time(plus2, 3600) == datetime(2019, 2, 4, 1, tzinfo=UTC)


def test_bucket_range_widens_and_refuses_empty() -> None:
    assert bucket_range("1h", T, T + timedelta(minutes=1)) == (
        datetime(2019, 2, 4, 1, tzinfo=UTC),
        datetime(2019, 2, 4, 2, tzinfo=UTC),
    )
    with pytest.raises(CandleError, match="empty range"):
        bucket_range("1m", T, T - timedelta(minutes=5))


# -- plain SQL ---------------------------------------------------------------------------------------------
def test_price_columns_per_source_and_side() -> None:
    p, s, w = price_columns("trades", None)
    assert (text(p), text(s), text(w)) == ('"price"', '"size"', "TRUE")
    p, s, w = price_columns("quotes", "ask")
    assert (text(p), text(s)) == ('"ask"', '"ask_size"')
    assert text(w) == """"channel" = 'quote' AND "ask" IS NOT NULL"""
    p, s, w = price_columns("quotes", None)  # quotes without a side: bid
    assert text(p) == '"bid"'
    p, s, w = price_columns("quotes", "mid")
    assert text(p) == '("bid" + "ask") * 0.5' and text(s) == "NULL::numeric"
    assert '"bid" IS NOT NULL AND "ask" IS NOT NULL' in text(w)
    with pytest.raises(CandleError, match="quote candles only"):
        price_columns("trades", "bid")
    with pytest.raises(CandleError, match="unknown side"):
        price_columns("quotes", "last")  # type: ignore[arg-type]


def test_raw_query_binds_every_value_and_orders_open_close_exactly() -> None:
    q = text(raw_candles_query("quotes", "bid", by_venue=False))
    for param in ("%(symbol)s", "%(start)s", "%(end)s", "%(width)s", "%(venue)s"):
        assert param in q
    assert "EUR" not in q and "dukascopy" not in q  # no data in the text
    assert "date_bin(%(width)s::interval, \"time\", TIMESTAMPTZ '1970-01-01 00:00:00+00')" in q
    assert '(min(ARRAY["ts_event_ns"::numeric, "seq"::numeric, "bid"]))[3] AS open' in q
    assert '(max(ARRAY["ts_event_ns"::numeric, "seq"::numeric, "bid"]))[3] AS close' in q
    assert 'sum("bid_size") AS volume, count(*) AS ticks FROM "quotes"' in q
    assert q.endswith("GROUP BY bucket ORDER BY bucket") and q.startswith("SELECT NULL::text,")

    agg = text(raw_candles_query("trades", None, by_venue=True, method="array_agg"))
    assert '(array_agg("price" ORDER BY "ts_event_ns", "seq"))[1] AS open' in agg
    assert '(array_agg("price" ORDER BY "ts_event_ns" DESC, "seq" DESC))[1] AS close' in agg
    assert "%(venue)s" not in agg and 'GROUP BY "venue", bucket' in agg and agg.startswith('SELECT "venue",')
    with pytest.raises(CandleError, match="open/close method"):
        raw_candles_query("trades", None, by_venue=True, method="window")


def test_aggregate_and_presence_queries() -> None:
    q = text(aggregate_query("pulse_candles_bid_1m", by_venue=False))
    assert 'FROM "pulse_candles_bid_1m"' in q and "bucket >= %(start)s AND bucket < %(end)s" in q
    assert '"venue" = %(venue)s' in q and q.endswith("ORDER BY bucket")
    assert '"venue" = %(venue)s' not in text(has_trades_query(with_venue=False))
    assert text(has_trades_query(with_venue=True)).startswith('SELECT EXISTS (SELECT 1 FROM "trades"')


def test_candle_row_json_is_exact() -> None:
    row = CandleRow(T, Decimal("1.14543"), Decimal("1.14570"), Decimal("1.14542"), Decimal("1.14569"), None, 3)
    assert row.as_dict()["high"] == "1.14570" and row.as_dict()["volume"] is None


# -- TimescaleDB DDL ---------------------------------------------------------------------------------------
def test_view_names() -> None:
    assert view_name("bid", "5m") == "pulse_candles_bid_5m"
    with pytest.raises(ValueError):
        view_name("mid", "1m")
    with pytest.raises(ValueError):
        view_name("trade", "2m")


def test_bottom_level_aggregates_the_hypertable() -> None:
    q = text(create_view_sql("bid", "1s", toolkit=False))
    assert q.startswith('CREATE MATERIALIZED VIEW IF NOT EXISTS "pulse_candles_bid_1s"')
    assert "WITH (timescaledb.continuous, timescaledb.materialized_only = false)" in q
    assert "time_bucket(INTERVAL '1 second', \"time\") AS bucket" in q
    assert 'first("bid", ts_event_ns::numeric' in q and 'last("bid", ts_event_ns::numeric' in q
    assert 'FROM "quotes" WHERE "channel" = \'quote\' AND "bid" IS NOT NULL' in q
    assert q.endswith("GROUP BY venue, symbol, time_bucket(INTERVAL '1 second', \"time\") WITH NO DATA")
    assert "candlestick" not in q
    trade = text(create_view_sql("trade", "1s", toolkit=True))
    assert 'FROM "trades" GROUP BY' in trade  # no WHERE for trades
    assert 'candlestick_agg("time", "price"::float8, "size"::float8) AS candlestick' in trade


@pytest.mark.parametrize(("interval", "below"), [("1m", "1s"), ("5m", "1m"), ("1h", "5m"), ("1d", "1h")])
def test_each_level_reaggregates_the_one_below(interval: str, below: str) -> None:
    for source in SOURCES:
        q = text(create_view_sql(source, interval, toolkit=True))
        assert f'FROM "pulse_candles_{source}_{below}"' in q
        assert 'first(open, "bucket") AS open' in q and 'last(close, "bucket") AS close' in q
        assert "sum(volume) AS volume, sum(ticks)::bigint AS ticks" in q
        assert "rollup(candlestick) AS candlestick" in q
        assert "rollup" not in text(create_view_sql(source, interval, toolkit=False))


def test_policy_and_refresh_statements() -> None:
    p = text(policy_sql("ask", "1h"))
    assert p == (
        "SELECT add_continuous_aggregate_policy('pulse_candles_ask_1h', start_offset => INTERVAL '3 days',"
        " end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes', if_not_exists => true)"
    )
    r = text(refresh_sql("trade", "1d"))
    assert r == (
        "CALL refresh_continuous_aggregate('pulse_candles_trade_1d', %(start)s::timestamptz, %(end)s::timestamptz)"
    )


class _FakeConn:
    def __init__(self, autocommit: bool) -> None:
        self.autocommit = autocommit
        self.calls: list[tuple[str, dict[str, datetime]]] = []

    def execute(self, query: object, params: dict[str, datetime]) -> None:
        self.calls.append((text(query), params))


def test_refresh_runs_bottom_up_on_whole_buckets() -> None:
    with pytest.raises(ValueError, match="autocommit"):
        refresh_after_backfill(_FakeConn(autocommit=False), T, T)  # type: ignore[arg-type]
    conn = _FakeConn(autocommit=True)
    assert refresh_after_backfill(conn, T, T + timedelta(minutes=1)) == 15  # type: ignore[arg-type]
    levels = [c[0].split("'")[1].rsplit("_", 1)[1] for c in conn.calls]
    assert levels == [i for i in INTERVALS for _ in SOURCES]  # 1s (all sources) first, 1d last
    first_1d = conn.calls[-1][1]
    assert first_1d == {"start": datetime(2019, 2, 4, tzinfo=UTC), "end": datetime(2019, 2, 5, tzinfo=UTC)}
    assert conn.calls[0][1]["start"] == datetime(2019, 2, 4, 1, 2, 3, tzinfo=UTC)
