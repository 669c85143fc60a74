"""The candle fast path: Dukascopy's real minute-candle file of 2019-02-04, served by the local datafeed, through
``run_candle_backfill`` into a REAL pulsar-lite broker, read back with fresh Shared subscriptions. Exact counts
and values, order, sub-ranges, resume. Placeholders, unfinished periods and corrupt grids are checked without the
broker, on files built from real records.

That the first 240 minute candles equal the bid OHLC and summed volume of the four shipped tick hours is
``test_minute_candles_equal_ticks`` in ``test_dukascopy_backfill.py``; it is what fixes the volume unit here.
"""

from __future__ import annotations

import asyncio
import lzma
import struct
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pulsar
import pytest

from ingesters.dukascopy.backfill import CheckpointStore
from ingesters.dukascopy.bi5 import decode_candles
from ingesters.dukascopy.candles import backfill_candles, checkpoint_key, is_placeholder
from ingesters.dukascopy.downloader import RetryPolicy
from ingesters.dukascopy.service import run_candle_backfill
from ingesters.dukascopy.simulator import DukascopySimulator
from pulse.bus import Bus
from pulse.codec import decode_any
from pulse.errors import ConfigError, SymbolError
from pulse.models import Candle
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.conftest import SHARED_DATA
from tests.consume import drain

DATA = SHARED_DATA / "dukascopy"
DAY = DATA / "EURUSD" / "2019" / "01" / "04"  # zero-based month: 2019-02-04
MINUTES = DAY / "BID_candles_min_1.bi5"
pytestmark = pytest.mark.skipif(not MINUTES.is_file(), reason=f"shared Dukascopy candles not found at {MINUTES}")

T0 = datetime(2019, 2, 4, 0, tzinfo=UTC)
T1, T3 = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
T24 = T0 + timedelta(days=1)
NS = 1_000_000_000
TOPIC = "persistent://market-data/historical/dukascopy.EUR-USD.candle"
DEADLINE_S = 20.0
FAST = RetryPolicy(initial_s=0.01, max_s=0.05, timeout_s=5.0, empty_retries=1)


def read_candles(settings: Settings, endpoints: Endpoints, sub: str, since_ns: int, until_ns: int, expected: int):
    """Candles of TOPIC stamped (ts_recv) in [since_ns, until_ns], in delivery order, from a new Earliest
    subscription: the topic is shared by the session, the stamp tells the runs apart."""

    def take(msg: pulsar.Message) -> list[Candle]:
        ev = decode_any(msg.data(), msg.properties())
        return [ev] if isinstance(ev, Candle) and since_ns <= ev.ts_recv <= until_ns else []

    bus = Bus(settings, endpoints.pulsar_url)
    try:
        consumer = bus.subscribe(TOPIC, sub, receiver_queue_size=5000)
        out = drain(consumer, expected, deadline_s=DEADLINE_S, take=take)
        consumer.close()
    finally:
        bus.close()
    return out


async def test_minute_candles_to_the_broker_exactly_once_per_checkpoint(
    runtime_settings: Settings, endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    t0_ns = int(T0.timestamp()) * NS
    records = decode_candles(MINUTES.read_bytes(), period_start_ns=t0_ns, divisor=100_000, symbol="EURUSD")
    assert len(records) == 1_440 and not any(is_placeholder(r) for r in records), "a trading Monday: no fillers"

    def settings_with(checkpoints: Path) -> Settings:
        return runtime_settings.with_overrides(dukascopy={"checkpoint_dir": str(checkpoints)})

    async with DukascopySimulator(DATA) as sim:

        async def run(checkpoints: Path, start: datetime, end: datetime, side: str = "bid"):
            began = time.time_ns()
            summary = await asyncio.to_thread(
                run_candle_backfill, settings_with(checkpoints), endpoints, "EURUSD", start, end,
                timeframe="1m", side=side, base_url=sim.base_url, feed="bi5", progress=False,
            )  # fmt: skip
            return summary, began, time.time_ns()

        day, a0, a1 = await run(tmp_path / "ck-a", T0, T24)
        again, _, _ = await run(tmp_path / "ck-a", T0, T24)
        requests_after_resume = sim.stats.requests
        part, b0, b1 = await run(tmp_path / "ck-b", T1, T3)
        part_again, _, _ = await run(tmp_path / "ck-b", T1, T3)
        wider, _, _ = await run(tmp_path / "ck-b", T0, T24)  # a clipped file's checkpoint hides no more than it
        ask, _, _ = await run(tmp_path / "ck-c", T0, T24, side="ask")

    assert day["published"] == day["candles_published"] == 1_440
    assert (day["files_requested"], day["files_downloaded"], day["files_failed"], day["candles_flat"]) == (1, 1, 0, 0)
    assert day["ok"] and day["topic"] == TOPIC and day["checkpoint_dir"] == str(tmp_path / "ck-a")
    assert (again["published"], again["files_skipped"], again["requests"]) == (0, 1, 0)
    assert requests_after_resume == 1
    assert part["published"] == part["candles_published"] == 120
    assert (part_again["published"], part_again["files_skipped"]) == (0, 1)
    assert (wider["published"], wider["files_skipped"]) == (1_440, 0)
    # The simulator has no ASK file: a 404, asked twice (empty retry); a run that found nothing at all is not
    # a success (issue 14): not ok, and the error says where it looked.
    assert (ask["published"], ask["files_empty"], ask["ok"]) == (0, 1, False)
    assert ask["error"].startswith("no candle data")

    got = await asyncio.to_thread(read_candles, runtime_settings, endpoints, f"test-candles-{unique}-a", a0, a1, 1_440)
    assert len(got) == 1_440, "exactly one event per candle on the broker"
    assert all(a.ts_event < b.ts_event for a, b in pairwise(got)), "strictly time-ordered on the topic"
    first = got[0]
    # From /work/shared/data/README.md: offset 0, open 1.14543, close 1.14569, low 1.14542, high 1.14570,
    # volume 293.76 (millions of EUR, like the tick volumes) → 293,760,000 EUR.
    assert first.ts_event == int(T0.timestamp()) * NS
    assert (first.open, first.close, first.low, first.high) == (
        Decimal("1.14543"),
        Decimal("1.14569"),
        Decimal("1.14542"),
        Decimal("1.14570"),
    )
    assert first.volume == Decimal("293760000") and str(first.volume) == "293760000"
    assert (first.venue, first.symbol, first.interval_s, first.side, first.ticks) == (
        "dukascopy",
        "EUR/USD",
        60,
        "bid",
        0,
    )
    assert [c.seq for c in got] == [c.ts_event // (60 * NS) for c in got], "seq = minute index: re-runs identical"
    assert [c.ts_event for c in got] == [r.ts_event for r in records]
    assert [(c.open, c.high, c.low, c.close) for c in got] == [(r.open, r.high, r.low, r.close) for r in records]
    assert [c.volume for c in got] == [r.volume * 1_000_000 for r in records]

    sub = await asyncio.to_thread(read_candles, runtime_settings, endpoints, f"test-candles-{unique}-b", b0, b1, 120)
    assert [c.ts_event for c in sub] == [int(T1.timestamp()) * NS + i * 60 * NS for i in range(120)]
    assert [(c.seq, c.close, c.volume) for c in sub] == [(c.seq, c.close, c.volume) for c in got[60:180]]


def test_bad_requests_are_refused_before_anything_starts(tmp_path: Path) -> None:
    settings = Settings().with_overrides(
        runtime={"home": str(tmp_path)}, dukascopy={"checkpoint_dir": str(tmp_path / "ck")}
    )
    nowhere = Endpoints(pulsar_url="pulsar://127.0.0.1:1", database_url="", embedded=False)

    def run(symbol: str = "EURUSD", start: datetime = T0, end: datetime = T24, **kw: Any) -> None:
        kw = {"timeframe": "1m", "side": "bid", **kw}
        run_candle_backfill(settings, nowhere, symbol, start, end, progress=False, **kw)

    with pytest.raises(SymbolError, match="unknown Dukascopy instrument"):
        run("NOPE/XYZ")
    with pytest.raises(ConfigError, match="not on a whole hour"):
        run(start=T0 + timedelta(minutes=30), timeframe="1h")
    with pytest.raises(ConfigError, match="not on UTC midnight"):
        run(end=T3, timeframe="1d")
    with pytest.raises(ConfigError, match="empty range"):
        run(start=T24, end=T0)
    with pytest.raises(ConfigError, match="timeframe"):
        run(timeframe="5m")
    with pytest.raises(ConfigError, match="side"):
        run(side="mid")
    with pytest.raises(ConfigError, match="volume unit"):
        run("XAUUSD")  # Candle.volume is required and gold's unit is unverified: refuse, never guess
    assert not (tmp_path / "ck").exists(), "no checkpoint store was created"


# -- without the broker: files built from the real records -----------------------------------------------


def candle_file(rows: list[tuple[int, int, int, int, int, float]]) -> bytes:
    """A .bi5 candle file: (seconds, open, close, low, high, volume) records, LZMA "alone" as Dukascopy's."""
    raw = b"".join(struct.pack(">I4if", *row) for row in rows)
    return lzma.compress(raw, format=lzma.FORMAT_ALONE)


def real_rows(n: int) -> list[tuple[int, int, int, int, int, float]]:
    raw = lzma.decompress(MINUTES.read_bytes(), format=lzma.FORMAT_ALONE)
    return [struct.unpack(">I4if", raw[i * 24 : (i + 1) * 24]) for i in range(n)]


async def backfill_day(root: Path, store: CheckpointStore, **kw: Any) -> tuple[Any, list[Candle]]:
    out: list[Candle] = []
    async with DukascopySimulator(root) as sim:
        report = await backfill_candles(
            "EURUSD", T0, T24, timeframe="1m", side="bid", base_url=sim.base_url, feed="bi5", publish=out.append,
            checkpoint=store, retry=FAST, **kw,
        )  # fmt: skip
    return report, out


@pytest.fixture
def store(tmp_path: Path):
    with CheckpointStore(tmp_path / "checkpoints") as s:
        yield s


def write_day(root: Path, data: bytes) -> None:
    target = root / "EURUSD" / "2019" / "01" / "04" / "BID_candles_min_1.bi5"
    target.parent.mkdir(parents=True)
    target.write_bytes(data)


async def test_closed_market_placeholders_are_skipped_quiet_minutes_kept(tmp_path: Path, store) -> None:
    rows = real_rows(3)
    o = rows[0][2]  # the first candle's close, as Dukascopy repeats it in a filler
    placeholder = (60, o, o, o, o, 0.0)
    quiet = (120, o, o, o, o, 1.5)  # no range but traded volume: a real minute
    write_day(tmp_path / "feed", candle_file([rows[0], placeholder, quiet]))
    report, out = await backfill_day(tmp_path / "feed", store)
    assert (report.candles_published, report.candles_flat) == (2, 1)
    assert [c.ts_event - int(T0.timestamp()) * NS for c in out] == [0, 120 * NS]
    assert out[1].volume == Decimal("1500000") and out[1].open == out[1].close == Decimal("1.14569")
    assert store.is_done(checkpoint_key("EURUSD", "1m", "bid"), T0)


async def test_a_period_not_over_is_published_so_far_and_not_checkpointed(store) -> None:
    now = int((T0 + timedelta(hours=2, seconds=30)).timestamp()) * NS  # minute 02:00 still running
    report, out = await backfill_day(DATA, store, clock=lambda: now)
    assert (report.candles_published, report.files_incomplete) == (120, 1)
    assert out[-1].ts_event == now - 90 * NS and all(c.ts_recv == now for c in out)
    assert not store.is_done(checkpoint_key("EURUSD", "1m", "bid"), T0)


async def test_a_corrupt_grid_fails_the_file_only(tmp_path: Path, store) -> None:
    rows = real_rows(2)
    write_day(tmp_path / "feed", candle_file([rows[0], (30, *rows[1][1:])]))  # 30 s: not a minute slot
    report, out = await backfill_day(tmp_path / "feed", store)
    assert (report.files_failed, report.candles_published, out) == (1, 0, [])
    assert "offset 30 s" in report.failures[0][1]
    assert not store.is_done(checkpoint_key("EURUSD", "1m", "bid"), T0)
