"""Backfill end to end against the local datafeed simulator serving real Dukascopy files."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest

from ingesters.dukascopy.backfill import CheckpointStore, backfill
from ingesters.dukascopy.bi5 import decode_candles
from ingesters.dukascopy.downloader import DownloadError, RetryPolicy
from ingesters.dukascopy.simulator import DukascopySimulator, Faults
from pulse.errors import ConfigError, SymbolError
from pulse.models import Quote

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dukascopy"
DAY = DATA / "EURUSD" / "2019" / "01" / "04"
pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")

T0 = datetime(2019, 2, 4, 0, tzinfo=UTC)
T4 = datetime(2019, 2, 4, 4, tzinfo=UTC)
TICKS_PER_HOUR = [3_733, 2_825, 2_474, 2_968]
FAST = RetryPolicy(initial_s=0.01, max_s=0.05, timeout_s=5.0, empty_retries=1)


def path(hour: int) -> str:
    return f"EURUSD/2019/01/04/{hour:02d}h_ticks.bi5"


@pytest.fixture
async def sim():
    async with DukascopySimulator(DATA) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path):
    with CheckpointStore(tmp_path / "checkpoints") as s:
        yield s


class Collector:
    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self.flushes: list[int] = []  # number of quotes published at each flush

    def publish(self, quote: Quote) -> None:
        self.quotes.append(quote)

    async def flush(self) -> None:
        self.flushes.append(len(self.quotes))


async def run(sim, store, collector, start=T0, end=T4, **kw):
    kw.setdefault("retry", FAST)
    return await backfill(
        "EURUSD",
        start,
        end,
        base_url=sim.base_url,
        feed="bi5",
        publish=collector.publish,
        flush=collector.flush,
        checkpoint=store,
        clock=lambda: 42,
        **kw,
    )


async def test_backfill_publishes_every_tick_in_time_order(sim, store) -> None:
    c = Collector()
    progress: list[tuple[int, int]] = []
    report = await run(sim, store, c, concurrency=4, progress=lambda d, t: progress.append((d, t)))
    assert len(c.quotes) == sum(TICKS_PER_HOUR) == 12_000
    assert report.ticks_published == 12_000
    assert (report.hours_requested, report.hours_downloaded, report.hours_empty, report.hours_failed) == (4, 4, 0, 0)
    assert report.bytes_downloaded == sum((DAY / f"{h:02d}h_ticks.bi5").stat().st_size for h in range(4))
    ts = [q.ts_event for q in c.quotes]
    assert all(a < b for a, b in pairwise(ts)), "ticks must be strictly time-ordered"
    seqs = [q.seq for q in c.quotes]
    assert all(a < b for a, b in pairwise(seqs))
    assert {q.venue for q in c.quotes} == {"dukascopy"} and {q.symbol for q in c.quotes} == {"EUR/USD"}
    assert {q.ts_recv for q in c.quotes} == {42}
    # One flush per hour, each after exactly that hour's ticks.
    assert c.flushes == [3_733, 6_558, 9_032, 12_000]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(store.is_done("EURUSD", datetime(2019, 2, 4, h, tzinfo=UTC)) for h in range(4))
    first = c.quotes[0]
    assert (first.ask, first.bid, first.ask_size, first.bid_size) == (
        Decimal("1.14545"),
        Decimal("1.14543"),
        Decimal("1000000"),
        Decimal("2060000"),
    )


async def test_checkpoint_is_written_only_after_flush(sim, store) -> None:
    seen: list[bool] = []
    c = Collector()

    async def flush() -> None:
        hour = datetime.fromtimestamp(c.quotes[-1].ts_event // 1_000_000_000, UTC).replace(minute=0, second=0)
        seen.append(store.is_done("EURUSD", hour))

    await backfill(
        "EUR/USD",
        T0,
        T4,
        base_url=sim.base_url,
        feed="bi5",
        publish=c.publish,
        flush=flush,
        checkpoint=store,
        retry=FAST,
    )
    assert seen == [False] * 4


async def test_injected_503s_are_retried(sim, store) -> None:
    sim.faults = Faults(unavailable={path(1): 2, path(2): 1}, retry_after_s=0)
    c = Collector()
    report = await run(sim, store, c)
    assert len(c.quotes) == 12_000 and report.hours_failed == 0
    assert sim.stats.unavailable == 3
    assert report.retries == 3 and report.requests == 7


async def test_slow_response_times_out_and_is_retried(sim, store) -> None:
    sim.faults = Faults(slow={path(0): 1}, slow_delay_s=2.0)
    c = Collector()
    report = await run(sim, store, c, retry=RetryPolicy(initial_s=0.01, max_s=0.05, timeout_s=0.5))
    assert len(c.quotes) == 12_000 and report.retries == 1 and sim.stats.slow == 1


async def test_transient_empty_answer_is_asked_again(sim, store) -> None:
    sim.faults = Faults(empty={path(3): 1})
    c = Collector()
    report = await run(sim, store, c)
    assert len(c.quotes) == 12_000 and report.hours_empty == 0
    assert sim.stats.by_path[path(3)] == 2


async def test_rerun_with_same_checkpoint_publishes_nothing(sim, store) -> None:
    await run(sim, store, Collector())
    requests_before = sim.stats.requests
    again = Collector()
    report = await run(sim, store, again)
    assert again.quotes == [] and again.flushes == []
    assert (report.hours_skipped, report.hours_downloaded, report.ticks_published) == (4, 0, 0)
    assert sim.stats.requests == requests_before, "done hours must not be downloaded again"


async def test_resumed_run_publishes_identical_events(sim, store, tmp_path: Path) -> None:
    full = Collector()
    with CheckpointStore(tmp_path / "other") as fresh:
        await run(sim, fresh, full)
    first_half = Collector()
    await run(sim, store, first_half, end=datetime(2019, 2, 4, 2, tzinfo=UTC))
    rest = Collector()
    report = await run(sim, store, rest)
    assert report.hours_skipped == 2
    assert first_half.quotes + rest.quotes == full.quotes


async def test_hours_without_files_count_as_empty(sim, store) -> None:
    c = Collector()
    report = await run(sim, store, c, end=datetime(2019, 2, 4, 6, tzinfo=UTC))
    assert (report.hours_downloaded, report.hours_empty, report.hours_failed) == (4, 2, 0)
    assert len(c.quotes) == 12_000
    assert sim.stats.not_found == 4  # 04h and 05h, each asked twice (empty_retries=1)
    assert not store.is_done("EURUSD", datetime(2019, 2, 4, 4, tzinfo=UTC)), "empty hours are not checkpointed"


async def test_weekend_hours_are_not_requested(sim, store) -> None:
    c = Collector()
    report = await run(
        sim, store, c, start=datetime(2019, 2, 2, 0, tzinfo=UTC), end=datetime(2019, 2, 2, 6, tzinfo=UTC)
    )
    assert report.hours_closed == 6 and sim.stats.requests == 0 and c.quotes == []


async def test_client_error_and_corrupt_file_fail_their_hour_only(sim, store) -> None:
    sim.faults = Faults(status={path(3): 403}, corrupt={path(1)})
    c = Collector()
    report = await run(sim, store, c)
    assert report.hours_failed == 2 and not report.ok
    assert len(c.quotes) == TICKS_PER_HOUR[0] + TICKS_PER_HOUR[2]
    reasons = dict(report.failures)
    assert "HTTP 403" in reasons["2019-02-04T03:00:00+00:00"]
    assert reasons["2019-02-04T01:00:00+00:00"].startswith(f"{sim.base_url}/{path(1)}: truncated LZMA")
    assert sim.stats.by_path[path(3)] == 1, "a 403 is not retried"
    assert not store.is_done("EURUSD", datetime(2019, 2, 4, 1, tzinfo=UTC))


async def test_fail_fast_raises(sim, store) -> None:
    sim.faults = Faults(status={path(1): 500})
    c = Collector()
    with pytest.raises(DownloadError, match="HTTP 500"):
        await run(sim, store, c, fail_fast=True, retry=RetryPolicy(max_attempts=2, initial_s=0.01, max_s=0.01))
    assert len(c.quotes) == TICKS_PER_HOUR[0]


async def test_bad_arguments_are_refused(sim, store) -> None:
    c = Collector()
    with pytest.raises(SymbolError):
        await backfill("NOPE", T0, T4, base_url=sim.base_url, publish=c.publish, checkpoint=store)
    with pytest.raises(ConfigError):
        await run(sim, store, c, start=T4, end=T0)
    with pytest.raises(ConfigError):
        await run(sim, store, c, start=datetime(2019, 2, 4, 0, 30, tzinfo=UTC))


async def test_minute_candles_equal_ticks(sim, store) -> None:
    """The day's BID minute candles are the bid OHLC and summed bid volume of the ticks, exactly."""
    c = Collector()
    await run(sim, store, c)
    minutes: dict[int, list[Quote]] = defaultdict(list)
    t0_ns = int(T0.timestamp()) * 1_000_000_000
    for q in c.quotes:
        minutes[(q.ts_event - t0_ns) // 60_000_000_000].append(q)
    candles = decode_candles(
        (DAY / "BID_candles_min_1.bi5").read_bytes(), period_start_ns=t0_ns, divisor=100_000, symbol="EURUSD"
    )[:240]
    assert sorted(minutes) == list(range(240)), "every minute of the 4 hours has ticks"
    for i, candle in enumerate(candles):
        bids = [q.bid for q in minutes[i]]
        assert (candle.open, candle.high, candle.low, candle.close) == (bids[0], max(bids), min(bids), bids[-1])
        # Quote sizes are units; candle volumes are millions, as the tick volumes were.
        assert sum(q.bid_size for q in minutes[i]) == candle.volume * 1_000_000, f"minute {i}"
