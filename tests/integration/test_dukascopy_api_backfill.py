"""The backfill over Dukascopy's JSON data API against the local venue, which serves both layouts: the same
events as the .bi5 feed, the open hour, and a run that finds nothing is an error."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ingesters.dukascopy.backfill import CheckpointStore, backfill
from ingesters.dukascopy.candles import backfill_candles
from ingesters.dukascopy.downloader import RetryPolicy
from ingesters.dukascopy.simulator import DukascopySimulator, Faults
from pulse.models import Candle, Quote

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dukascopy"
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "dukascopy"
T0 = datetime(2019, 2, 4, 0, tzinfo=UTC)
T4 = datetime(2019, 2, 4, 4, tzinfo=UTC)
FAST = RetryPolicy(initial_s=0.01, max_s=0.05, timeout_s=5.0, empty_retries=0)
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared Dukascopy files not found at {SHARED}")


async def run(url: str, feed: str, tmp: Path, symbol="EURUSD", start=T0, end=T4, clock=lambda: 42, **kw):
    quotes: list[Quote] = []
    with CheckpointStore(tmp) as store:
        report = await backfill(
            symbol, start, end, base_url=url, feed=feed, publish=quotes.append, checkpoint=store, clock=clock,
            retry=FAST, **kw,
        )  # fmt: skip
        done = store.done_hours(lookup_code(symbol), start, end)
    return report, quotes, done


def lookup_code(symbol: str) -> str:
    from ingesters.dukascopy.instruments import lookup

    return lookup(symbol).code


@needs_shared
async def test_both_feeds_publish_identical_events(tmp_path: Path) -> None:
    async with DukascopySimulator(SHARED) as sim:
        api, from_api, done_api = await run(sim.api_url, "api", tmp_path / "a")
        old, from_bi5, done_bi5 = await run(sim.base_url, "bi5", tmp_path / "b")
        assert sim.stats.by_path["ticks/EUR-USD/2019/2/4/0"] == 1  # month 1-based, no padding
    assert api.ok and old.ok and api.feed == "api" and api.error is None
    assert len(from_api) == 12_000 and from_api == from_bi5  # every field: seq, ts, prices, sizes
    assert done_api == done_bi5 == {datetime(2019, 2, 4, h, tzinfo=UTC) for h in range(4)}
    assert (from_api[0].ask, from_api[0].ask_size, from_api[0].bid_size) == (
        Decimal("1.14545"), Decimal("1000000"), Decimal("2060000")
    )  # fmt: skip


async def test_real_hour_served_in_both_forms_backfills_identically(tmp_path: Path) -> None:
    """dukascopy-node's recorded API answer and the .bi5 file of 2023-02-20 12:00 BTC/USD."""
    hour = datetime(2023, 2, 20, 12, tzinfo=UTC)
    async with DukascopySimulator(FIX) as sim:
        api, a, _ = await run(sim.api_url, "api", tmp_path / "a", "BTCUSD", hour, hour.replace(hour=13))
        old, b, _ = await run(sim.base_url, "bi5", tmp_path / "b", "BTCUSD", hour, hour.replace(hour=13))
    assert api.ok and old.ok and len(a) == len(b) == 8_523
    assert [(q.ts_event, q.seq, q.bid, q.ask) for q in a] == [(q.ts_event, q.seq, q.bid, q.ask) for q in b]


@needs_shared
async def test_every_hour_missing_is_an_error_not_a_success(tmp_path: Path) -> None:
    async with DukascopySimulator(SHARED) as sim:
        wrong, quotes, done = await run(sim.base_url, "api", tmp_path)  # the API asked on the .bi5 root
    assert not wrong.ok and quotes == [] and done == set()
    assert (wrong.hours_empty, wrong.hours_not_found, wrong.hours_failed) == (4, 4, 0)
    assert wrong.error.startswith("no tick data: every one of the 4 EURUSD hour(s) asked for was missing")
    assert "--url" in wrong.error and "--feed" in wrong.error


@needs_shared
async def test_all_empty_answers_on_market_days_are_an_error(tmp_path: Path) -> None:
    hours = [f"ticks/EUR-USD/2019/2/4/{h}" for h in range(4)]
    async with DukascopySimulator(SHARED, faults=Faults(empty=dict.fromkeys(hours, 5))) as sim:
        report, quotes, _ = await run(sim.api_url, "api", tmp_path)
    assert not report.ok and quotes == [] and report.hours_not_found == 0 and report.hours_empty == 4
    assert "4 empty although the market was open" in report.error


@needs_shared
async def test_weekend_only_and_partly_missing_runs_stay_ok(tmp_path: Path) -> None:
    async with DukascopySimulator(SHARED) as sim:
        weekend, _, _ = await run(sim.api_url, "api", tmp_path / "w", start=datetime(2019, 2, 2, tzinfo=UTC),
                                  end=datetime(2019, 2, 2, 6, tzinfo=UTC))  # fmt: skip
        some, quotes, _ = await run(sim.api_url, "api", tmp_path / "s", end=datetime(2019, 2, 4, 6, tzinfo=UTC))
    assert weekend.ok and weekend.hours_closed == 6 and sim.stats.requests == 8 - 2  # 4 + 2 ticks hours only
    assert some.ok and some.hours_downloaded == 4 and some.hours_not_found == 2 and len(quotes) == 12_000


@needs_shared
async def test_the_hour_still_running_uses_from_and_is_not_checkpointed(tmp_path: Path) -> None:
    now = int(datetime(2019, 2, 4, 1, 30, tzinfo=UTC).timestamp()) * 10**9  # inside hour 01
    async with DukascopySimulator(SHARED) as sim:
        report, quotes, done = await run(sim.api_url, "api", tmp_path, end=datetime(2019, 2, 4, 2, tzinfo=UTC),
                                         clock=lambda: now)  # fmt: skip
        assert sim.stats.by_path["ticks/EUR-USD"] == 1  # ?from=<hour start>
    assert report.ok and report.hours_downloaded == 1 and report.hours_partial == 1
    assert done == {T0}, "the running hour is asked again next time"
    assert len(quotes) == 3_733 + 2_825  # the simulator has the whole hour; the real API sends what exists so far


@needs_shared
@pytest.mark.parametrize("feed", ["api", "bi5"])
async def test_candle_fast_path_on_both_feeds(tmp_path: Path, feed: str) -> None:
    out: list[Candle] = []
    async with DukascopySimulator(SHARED) as sim:
        with CheckpointStore(tmp_path) as store:
            report = await backfill_candles(
                "EURUSD", T0, datetime(2019, 2, 5, tzinfo=UTC), timeframe="1m", side="bid",
                base_url=sim.api_url if feed == "api" else sim.base_url, feed=feed, publish=out.append,
                checkpoint=store, clock=lambda: 2 * 10**18, retry=FAST,
            )  # fmt: skip
        if feed == "api":
            assert sim.stats.by_path["candles/minute/EUR-USD/BID/2019/2/4"] == 1
    assert report.ok and report.candles_published == len(out) == 1_440
    assert (out[0].open, out[0].high, out[0].low, out[0].close, out[0].volume) == (
        Decimal("1.14543"), Decimal("1.14570"), Decimal("1.14542"), Decimal("1.14569"), Decimal("293760000")
    )  # fmt: skip


async def test_candle_run_that_finds_nothing_is_an_error(tmp_path: Path) -> None:
    async with DukascopySimulator(FIX) as sim:
        with CheckpointStore(tmp_path) as store:
            report = await backfill_candles(
                "EURUSD", T0, datetime(2019, 2, 5, tzinfo=UTC), timeframe="1m", side="bid", base_url=sim.api_url,
                publish=lambda c: None, checkpoint=store, retry=FAST,
            )  # fmt: skip
    assert not report.ok and report.files_not_found == 1 and report.error.startswith("no candle data")
