"""Candles from the sink's tables, checked against Dukascopy's own minute candles — the reference.

Real datafeed files → local Dukascopy simulator → ``run_backfill`` → REAL pulsar-lite (``historical``) →
``PostgresSink`` → REAL PostgreSQL → :func:`sinks.postgres.candles.candles`. Dukascopy computes
``BID_candles_min_1.bi5`` from the same ticks (bid OHLC, summed bid volume), so the first 240 minute candles of
2019-02-04 must equal Pulse's 1-minute bid candles of 00:00-04:00 exactly.

Volume units: the sink stores quote sizes in base-currency units (the tick file's millions x 1,000,000), so a
Pulse candle's volume is ``file volume x 1,000,000`` — 293.76 (millions of EUR) → 293,760,000.

The historical topic is shared by the session (other tests back the same hours up): a fresh checkpoint
directory publishes all 12,000 ticks again, a fresh subscription reads the topic from the start, and the unique
keys make re-published ticks land once — so the table holds exactly those 12,000 rows for the range.

TimescaleDB tests (``@pytest.mark.timescale``) run only with ``PULSE_TEST_TIMESCALE_URL`` set: they create the
extension, the tables, hypertables and the aggregates there, load the same 12,000 quotes, refresh bottom-up,
and require the aggregates to answer exactly as the plain SQL does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ingesters.dukascopy.bi5 import CandleRecord, decode_candles, decode_ticks, seq_base, to_quotes
from ingesters.dukascopy.service import run_backfill
from ingesters.dukascopy.simulator import DukascopySimulator
from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.candles import CandleMode, CandleRow, candles
from sinks.postgres.mapping import to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from sinks.postgres.sources import topics_for_sources
from sinks.postgres.writer import CopyWriter
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "dukascopy"
DAY = DATA / "EURUSD" / "2019" / "01" / "04"
T0 = datetime(2019, 2, 4, 0, tzinfo=UTC)
T4 = datetime(2019, 2, 4, 4, tzinfo=UTC)
TICKS = 12_000  # 3,733 + 2,825 + 2,474 + 2,968
MILLION = 1_000_000
DEADLINE_S = 60.0

pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")


def reference(side: str = "BID") -> list[CandleRecord]:
    """The first 240 minute candles of the day (00:00-04:00), decoded straight from Dukascopy's file."""
    data = (DAY / f"{side}_candles_min_1.bi5").read_bytes()
    recs = decode_candles(data, period_start_ns=int(T0.timestamp()) * 10**9, divisor=100_000, symbol="EURUSD")
    return recs[:240]


def as_reference(rows: list[CandleRow]) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return [(r.bucket, r.open, r.high, r.low, r.close, r.volume) for r in rows]  # type: ignore[misc]


def expected(recs: list[CandleRecord]) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    return [
        (datetime.fromtimestamp(c.ts_event / 1e9, UTC), c.open, c.high, c.low, c.close, c.volume * MILLION)
        for c in recs
    ]


def stored(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM quotes WHERE venue = 'dukascopy' AND symbol = 'EUR/USD' AND time >= %s AND time < %s",
            (T0, T4),
        ).fetchone()
    return row[0] if row else 0


@contextlib.contextmanager
def running(sink: PostgresSink) -> Iterator[PostgresSink]:
    stop = threading.Event()
    th = threading.Thread(target=sink.run, args=(stop,), name=sink.name, daemon=True)
    th.start()
    try:
        yield sink
    finally:
        stop.set()
        th.join(timeout=30)
        assert not th.is_alive(), "sink did not stop"


@pytest.fixture(scope="module")
def backfilled(runtime_settings: Settings, endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The four hours backfilled through the broker and stored by the sink; returns the database URL."""
    ensure_schema(endpoints.database_url)
    checkpoints = tmp_path_factory.mktemp("candles-ck")
    settings = runtime_settings.with_overrides(dukascopy={"checkpoint_dir": str(checkpoints)})

    async def backfill() -> dict[str, object]:
        async with DukascopySimulator(DATA) as sim:
            return await asyncio.to_thread(
                run_backfill, settings, endpoints, "EURUSD", T0, T4, base_url=sim.base_url, feed="bi5", progress=False
            )

    summary = asyncio.run(backfill())
    assert summary["published"] == TICKS, summary

    sink_settings = runtime_settings.with_overrides(
        sink={"subscription": f"sink-candles-{time.time_ns()}", "batch_size": 2000, "max_latency_ms": 50}
    )
    topics = topics_for_sources(sink_settings, ["historical/dukascopy=EUR/USD"])
    sink = PostgresSink(sink_settings, endpoints, topics, name="sink-candles-test")
    with running(sink):
        end = time.monotonic() + DEADLINE_S
        while stored(endpoints.database_url) < TICKS:
            if time.monotonic() > end:
                pytest.fail(f"sink stored {stored(endpoints.database_url)} of {TICKS} quotes in {DEADLINE_S}s")
            time.sleep(0.1)
    assert sink.stats.dead_lettered == 0
    assert stored(endpoints.database_url) == TICKS
    return endpoints.database_url


def test_bid_minute_candles_equal_dukascopy_file(backfilled: str) -> None:
    want = expected(reference("BID"))
    assert want[0][1:] == (
        Decimal("1.14543"), Decimal("1.14570"), Decimal("1.14542"), Decimal("1.14569"), Decimal("293760000"),
    )  # fmt: skip
    with psycopg.connect(backfilled) as conn:
        got = candles(conn, "EUR/USD", interval="1m", start=T0, end=T4, side="bid")
        other = candles(conn, "EUR/USD", interval="1m", start=T0, end=T4, side="bid", method="array_agg")
        by_default = candles(conn, "EUR/USD", interval="1m", start=T0, end=T4, venue="dukascopy")
    assert len(got) == 240
    assert as_reference(got) == want  # open, high, low, close, volume: every minute, exactly
    assert all(r.ticks > 0 for r in got) and sum(r.ticks for r in got) == TICKS
    assert other == got  # both open/close methods agree
    assert by_default == got  # no trades for EUR/USD: side=None means bid quotes


def test_ask_candles_match_ask_file_and_mid_is_exact(backfilled: str) -> None:
    with psycopg.connect(backfilled) as conn:
        ask = candles(conn, "EUR/USD", interval="1m", start=T0, end=T4, side="ask")
        mid = candles(conn, "EUR/USD", interval="1h", start=T0, end=T4, side="mid")
    if (DAY / "ASK_candles_min_1.bi5").exists():
        assert as_reference(ask) == expected(reference("ASK"))
    # Mid of the first tick (bid 1.14543, ask 1.14545) is exact; mid candles have no volume.
    assert mid[0].open == Decimal("1.14544") and mid[0].volume is None
    assert [m.bucket.hour for m in mid] == [0, 1, 2, 3] and sum(m.ticks for m in mid) == TICKS


def test_coarser_intervals_roll_up_the_minutes(backfilled: str) -> None:
    with psycopg.connect(backfilled) as conn:
        minutes = candles(conn, "EUR/USD", interval="1m", start=T0, end=T4, side="bid")
        for interval, n in (("5m", 5), ("1h", 60)):
            coarse = candles(conn, "EUR/USD", interval=interval, start=T0, end=T4, side="bid")
            assert len(coarse) == 240 // n
            for i, c in enumerate(coarse):
                part = minutes[i * n : (i + 1) * n]
                assert c.bucket == part[0].bucket
                assert (c.open, c.close) == (part[0].open, part[-1].close)
                assert (c.high, c.low) == (max(p.high for p in part), min(p.low for p in part))
                assert c.volume == sum(p.volume for p in part)  # type: ignore[misc]
                assert c.ticks == sum(p.ticks for p in part)
        day = candles(conn, "EUR/USD", interval="1d", start=T0 + timedelta(hours=1), end=T4, side="bid")
        assert len(day) == 1 and day[0].bucket == T0 and day[0].ticks == TICKS  # start floored to the day
        secs = candles(conn, "EUR/USD", interval="1s", start=T0, end=T0 + timedelta(minutes=1), side="bid")
        assert sum(s.ticks for s in secs) == minutes[0].ticks and secs[0].open == minutes[0].open


# -- TimescaleDB (real one only) ---------------------------------------------------------------------------
TIMESCALE_URL = os.environ.get("PULSE_TEST_TIMESCALE_URL", "")


def file_quotes() -> list[tuple[str, tuple[object, ...]]]:
    rows = []
    for hour in range(4):
        start_ns = int((T0 + timedelta(hours=hour)).timestamp()) * 10**9
        ticks = decode_ticks((DAY / f"{hour:02d}h_ticks.bi5").read_bytes(), hour_start_ns=start_ns,
                             divisor=100_000, symbol="EURUSD")  # fmt: skip
        quotes = to_quotes(ticks, symbol="EUR/USD", first_seq=seq_base(start_ns), volume_multiplier=MILLION,
                           venue="dukascopy")  # fmt: skip
        rows += [to_row(q) for q in quotes]  # type: ignore[misc]
    return rows  # type: ignore[return-value]


@pytest.fixture(scope="module")
def timescale() -> Iterator[tuple[str, bool]]:
    if not TIMESCALE_URL:
        pytest.skip("PULSE_TEST_TIMESCALE_URL is not set (a TimescaleDB 2.9+ database to test against)")
    from sinks.postgres.timescale_caggs import ensure_candle_aggregates, refresh_after_backfill

    with psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        toolkit = bool(
            conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb_toolkit'").fetchone()
        )
        if toolkit:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb_toolkit")
    ensure_schema(TIMESCALE_URL)
    with psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:
        for table in ("trades", "quotes"):  # until the sink core does it: hypertables on time
            conn.execute(
                "SELECT create_hypertable(%s::regclass, 'time', if_not_exists => true, migrate_data => true)",
                (table,),
            )
        ensure_candle_aggregates(conn, toolkit=toolkit)
    with CopyWriter(TIMESCALE_URL, application_name="candles-test") as writer:
        by_table: dict[str, list[tuple[object, ...]]] = {}
        for table, row in file_quotes():
            by_table.setdefault(table, []).append(row)
        writer.write(by_table)
    with psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:
        refresh_after_backfill(conn, T0, T4)
    yield TIMESCALE_URL, toolkit


@pytest.mark.timescale
@pytest.mark.parametrize("interval", ["1s", "1m", "5m", "1h", "1d"])
def test_timescale_aggregates_equal_plain_sql(timescale: tuple[str, bool], interval: str) -> None:
    url, toolkit = timescale
    ts_mode = CandleMode(timescaledb=True, toolkit=toolkit)
    end = T0 + timedelta(minutes=10) if interval == "1s" else T4
    with psycopg.connect(url) as conn:
        for side in ("bid", "ask"):
            cagg = candles(conn, "EUR/USD", interval=interval, start=T0, end=end, side=side, mode=ts_mode)
            raw = candles(conn, "EUR/USD", interval=interval, start=T0, end=end, side=side)
            assert cagg == raw and cagg, (interval, side)
        if interval == "1m":
            got = candles(conn, "EUR/USD", interval="1m", start=T0, end=T4, side="bid", mode=ts_mode)
            assert as_reference(got) == expected(reference("BID"))


@pytest.mark.timescale
def test_timescale_real_time_aggregation_sees_unmaterialized_rows(timescale: tuple[str, bool]) -> None:
    url, toolkit = timescale
    # Above every watermark (the sink's policies and backfill refreshes move it up to now): no refresh covers
    # this day, only real-time aggregation can show it.
    later = datetime(2100, 1, 4, tzinfo=UTC)
    start_ns = int(later.timestamp()) * 10**9
    from pulse.models import Quote

    quotes = [
        Quote(
            venue="dukascopy",
            symbol="EUR/USD",
            ts_event=start_ns + i * 10**9,
            ts_recv=0,
            seq=i,
            bid=Decimal("1.1") + Decimal(i) / 100000,
            bid_size=Decimal(MILLION),
            ask=Decimal("1.2"),
            ask_size=Decimal(MILLION),
        )
        for i in range(90)
    ]
    with CopyWriter(url, application_name="candles-test-rt") as writer:
        writer.write({"quotes": [to_row(q)[1] for q in quotes]})  # type: ignore[index]
    with psycopg.connect(url) as conn:
        got = candles(conn, "EUR/USD", interval="1m", start=later, end=later + timedelta(minutes=2), side="bid",
                      mode=CandleMode(timescaledb=True, toolkit=toolkit))  # fmt: skip
    assert [(c.ticks, c.open, c.close) for c in got] == [
        (60, Decimal("1.10000"), Decimal("1.10059")),
        (30, Decimal("1.10060"), Decimal("1.10089")),
    ]
    if toolkit:
        with psycopg.connect(url) as conn:
            vwap = conn.execute(
                "SELECT vwap(candlestick) FROM pulse_candles_bid_1h WHERE symbol = 'EUR/USD' AND bucket = %s",
                (T0,),
            ).fetchone()
        assert vwap and vwap[0] is not None


def test_plain_mode_never_touches_timescale(backfilled: str, tmp_path: Path) -> None:
    """The default mode reads only raw tables: it works on plain PostgreSQL, where no aggregate exists."""
    with psycopg.connect(backfilled) as conn:
        assert conn.execute("SELECT to_regclass('pulse_candles_bid_1m')").fetchone() == (None,)
        assert candles(conn, "EUR/USD", interval="1h", start=T0, end=T4)


SYMBOL = "EUR/XTS"


@pytest.mark.timescale
def test_timescale_sink_creates_aggregates_and_refreshes_backfilled_range(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    """The sink on TimescaleDB: creates the aggregates and their policies at start, and after historical quotes
    for a past hour are committed, refreshes that range (once, when idle) — so candles read from the aggregates,
    whose watermark is already past that hour (materialized rows only there), equal the plain SQL ones."""
    if not TIMESCALE_URL:
        pytest.skip("PULSE_TEST_TIMESCALE_URL is not set (a TimescaleDB 2.9+ database to test against)")
    import dataclasses

    from pulse.bus import Bus, EventPublisher
    from pulse.topics import topic
    from sinks.postgres.timescale_caggs import INTERVALS, SOURCES, refresh_after_backfill, view_name

    venue = f"tsbf{unique}"  # this test's rows only (another symbol: the tests above see one EUR/USD venue)
    t1 = T0 + timedelta(hours=1)
    start_ns = int(T0.timestamp()) * 10**9
    ticks = decode_ticks((DAY / "00h_ticks.bi5").read_bytes(), hour_start_ns=start_ns, divisor=100_000,
                         symbol="EURUSD")  # fmt: skip
    quotes = to_quotes(ticks, symbol=SYMBOL, first_seq=seq_base(start_ns), volume_multiplier=MILLION,
                       venue=venue)  # fmt: skip
    n = len(quotes)
    ts_endpoints = dataclasses.replace(endpoints, database_url=TIMESCALE_URL)
    sink_settings = runtime_settings.with_overrides(
        sink={"subscription": f"sink-ts-{unique}", "batch_size": 500, "max_latency_ms": 50}
    )
    hist_topic = topic("historical", venue, SYMBOL, "quote", runtime_settings.pulsar.tenant)
    sink = PostgresSink(sink_settings, ts_endpoints, [hist_topic], name="sink-ts-test")

    def count(conn: psycopg.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM quotes WHERE venue = %s AND time >= %s AND time < %s", (venue, T0, t1)
        ).fetchone()
        return row[0] if row else 0

    with running(sink), psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:
        end = time.monotonic() + DEADLINE_S
        while sink._caggs is None:  # created after the migrations and hypertables
            assert time.monotonic() < end, "sink did not create the candle aggregates"
            time.sleep(0.1)
        assert sink.stats.mode.startswith("timescaledb")
        # Move every watermark to now: 2019 is then below it, where only materialized buckets are seen.
        now = datetime.now(UTC)
        ts_ns = int(now.timestamp()) * 10**9 - 30 * 10**9
        from pulse.models import Quote

        sentinel = Quote(venue=venue, symbol=SYMBOL, ts_event=ts_ns, ts_recv=ts_ns, seq=1, bid=Decimal("1.1"),
                         bid_size=Decimal(1), ask=Decimal("1.2"), ask_size=Decimal(1))  # fmt: skip
        with CopyWriter(TIMESCALE_URL, application_name="ts-sentinel") as writer:
            writer.write({"quotes": [to_row(sentinel)[1]]})  # type: ignore[index]
        refresh_after_backfill(conn, now - timedelta(minutes=2), now)
        mark = conn.execute(
            "SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id))"
            " FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = 'pulse_candles_bid_1d'"
        ).fetchone()
        assert mark and mark[0] > t1, mark

        bus = Bus(runtime_settings, endpoints.pulsar_url)
        try:
            pub = EventPublisher(bus, "historical", producer_prefix=f"ts-{unique}")
            for q in quotes:
                pub.publish(q)
            pub.flush()
        finally:
            bus.close()
        while count(conn) < n or sink.stats.cagg_refreshes < 1:
            assert time.monotonic() < end, (count(conn), n, sink.stats.as_dict())
            time.sleep(0.1)
        assert sink.stats.batches > 1 and sink.stats.cagg_refreshes < sink.stats.batches  # coalesced, not per batch
        time.sleep(1.5)  # the refresh in progress (if any) finishes; nothing new comes
        assert sink._caggs.pending() is None and sink.stats.cagg_refresh_errors == 0

    assert sink.stats.cagg_refreshes <= 2, sink.stats.as_dict()
    mode = CandleMode(timescaledb=True, toolkit=sink.mode is not None and sink.mode.toolkit)
    with psycopg.connect(TIMESCALE_URL) as conn:
        for interval in INTERVALS:
            stop_at = T0 + timedelta(minutes=10) if interval == "1s" else t1
            for side in ("bid", "ask"):
                cagg = candles(conn, SYMBOL, interval=interval, start=T0, end=stop_at, side=side, venue=venue,
                               mode=mode)  # fmt: skip
                raw = candles(conn, SYMBOL, interval=interval, start=T0, end=stop_at, side=side, venue=venue)
                assert cagg == raw and cagg, (interval, side, len(cagg), len(raw))
        got = candles(conn, SYMBOL, interval="1m", start=T0, end=t1, side="bid", venue=venue, mode=mode)
        assert as_reference(got) == expected(reference("BID"))[:60]
        jobs = {
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.jobs"  # a cagg's job names the cagg
                " WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_schema = current_schema()"
            ).fetchall()
        }
    assert {view_name(s, i) for s in SOURCES for i in INTERVALS} <= jobs
    with psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:  # leave the shared database as it was
        conn.execute("DELETE FROM quotes WHERE venue = %s", (venue,))
        refresh_after_backfill(conn, T0, t1)
        refresh_after_backfill(conn, now - timedelta(minutes=2), now)
