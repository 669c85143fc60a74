"""``run_backfill`` end to end: the local datafeed serving real Dukascopy files → a REAL pulsar-lite broker,
read back with fresh Shared subscriptions. Exact counts and values, order, resume, identical re-publication.

The historical topic is shared by the session, so each read keeps only events stamped (``ts_recv``) inside
the run being checked.
"""

from __future__ import annotations

import asyncio
import lzma
import struct
import time
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pulsar
import pytest

from ingesters.dukascopy.bi5 import decode_ticks
from ingesters.dukascopy.service import run_backfill
from ingesters.dukascopy.simulator import DukascopySimulator
from pulse.bus import Bus
from pulse.codec import decode_any
from pulse.errors import SymbolError
from pulse.models import Quote, QuoteBatch, unbatched
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.conftest import SHARED_DATA
from tests.consume import drain

DATA = SHARED_DATA / "dukascopy"
DAY = DATA / "EURUSD" / "2019" / "01" / "04"
pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")

T0 = datetime(2019, 2, 4, 0, tzinfo=UTC)
T4 = datetime(2019, 2, 4, 4, tzinfo=UTC)
# QuoteBatch messages travel on their own topic (with their own schema); the quote topic carries single Quotes
TOPIC = "persistent://market-data/historical/dukascopy.EUR-USD.quote_batch"
DEADLINE_S = 20.0


def file_ticks() -> int:
    """Ticks in the four hour files, decoded here straight from disk."""
    total = 0
    for hour in range(4):
        start_ns = int(datetime(2019, 2, 4, hour, tzinfo=UTC).timestamp()) * 1_000_000_000
        data = (DAY / f"{hour:02d}h_ticks.bi5").read_bytes()
        total += len(decode_ticks(data, hour_start_ns=start_ns, divisor=100_000, symbol="EURUSD"))
    return total


def read_topic(settings: Settings, endpoints: Endpoints, sub: str, since_ns: int, until_ns: int, expected: int):
    """Quotes of TOPIC stamped in [since_ns, until_ns], in delivery order, from a new Earliest subscription
    (a QuoteBatch message counts as its quotes; ``read_topic.messages`` is how many messages they took)."""
    read_topic.messages = 0  # type: ignore[attr-defined]

    def take(msg: pulsar.Message) -> list[Quote]:
        ev = decode_any(msg.data(), msg.properties())
        if not (isinstance(ev, Quote | QuoteBatch) and since_ns <= ev.ts_recv <= until_ns):
            return []
        read_topic.messages += 1  # type: ignore[attr-defined]
        return unbatched(ev)  # type: ignore[arg-type]

    bus = Bus(settings, endpoints.pulsar_url)
    try:
        consumer = bus.subscribe(TOPIC, sub, receiver_queue_size=5000)
        out = drain(consumer, expected, deadline_s=DEADLINE_S, take=take)
        consumer.close()
    finally:
        bus.close()
    return out


def key(q: Quote) -> tuple[str, int, int]:
    return (q.symbol, q.ts_event, q.seq)


def content(q: Quote) -> tuple[Any, ...]:
    return (q.venue, q.symbol, q.ts_event, q.seq, q.bid, q.bid_size, q.ask, q.ask_size, q.tradeable)


async def test_backfill_publishes_exactly_once_per_checkpoint_in_time_order(
    runtime_settings: Settings,
    endpoints: Endpoints,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = file_ticks()
    assert expected == 12_000  # 3,733 + 2,825 + 2,474 + 2,968

    def settings_with(checkpoints: Path) -> Settings:
        return runtime_settings.with_overrides(dukascopy={"checkpoint_dir": str(checkpoints)})

    async with DukascopySimulator(DATA) as sim:

        async def backfill(checkpoints: Path, progress: bool = False) -> tuple[dict[str, Any], int, int]:
            began = time.time_ns()
            summary = await asyncio.to_thread(
                run_backfill, settings_with(checkpoints), endpoints, "EURUSD", T0, T4,
                base_url=sim.base_url, feed="bi5", progress=progress,
            )  # fmt: skip
            return summary, began, time.time_ns()

        first, a0, a1 = await backfill(tmp_path / "ck-a")
        again, _, _ = await backfill(tmp_path / "ck-a")
        requests_after_resume = sim.stats.requests
        fresh, c0, c1 = await backfill(tmp_path / "ck-b", progress=True)  # the rich bar, drawn to stderr

    # First run: every tick, acknowledged, checkpointed.
    assert first["published"] == first["ticks_published"] == expected
    assert (first["hours_requested"], first["hours_downloaded"], first["hours_failed"]) == (4, 4, 0)
    assert first["ok"] and first["topic"] == TOPIC and first["checkpoint_dir"] == str(tmp_path / "ck-a")
    # Same checkpoint: nothing downloaded, nothing published.
    assert again["published"] == again["ticks_published"] == 0
    assert (again["hours_skipped"], again["requests"]) == (4, 0)
    assert requests_after_resume == 4
    # New checkpoint: the same events again.
    assert fresh["published"] == expected
    assert "4/4" in capsys.readouterr().err.replace(" ", ""), "progress: hours done/total"

    got = await asyncio.to_thread(read_topic, runtime_settings, endpoints, f"test-duka-{unique}-a", a0, a1, expected)
    assert len(got) == expected, "exactly one event per tick on the broker"
    assert read_topic.messages == 4 + 3 + 3 + 3, "≤ 1,000 ticks per message, hour by hour: 4+3+3+3 batches"  # type: ignore[attr-defined]
    assert first["messages"] == read_topic.messages  # type: ignore[attr-defined]
    assert all(a.ts_event < b.ts_event for a, b in pairwise(got)), "strictly time-ordered on the topic"
    first_tick = got[0]
    # From /work/shared/data/README.md: 2019-02-04T00:00:00.994Z, ask 1.14545, bid 1.14543, volumes 1.0 / 2.06 M.
    assert first_tick.ts_event == int(T0.timestamp()) * 1_000_000_000 + 994_000_000
    assert (first_tick.ask, first_tick.bid, first_tick.ask_size, first_tick.bid_size) == (
        Decimal("1.14545"),
        Decimal("1.14543"),
        Decimal("1000000"),
        Decimal("2060000"),
    )
    assert (first_tick.venue, first_tick.symbol) == ("dukascopy", "EUR/USD")

    # Nothing was published between the first run and the re-run with a new checkpoint (the resume run).
    between = await asyncio.to_thread(read_topic, runtime_settings, endpoints, f"test-duka-{unique}-b", a1, c0, 0)
    assert between == []

    replay = await asyncio.to_thread(read_topic, runtime_settings, endpoints, f"test-duka-{unique}-c", c0, c1, expected)
    assert len(replay) == expected
    assert [key(q) for q in replay] == [key(q) for q in got], "identical (symbol, ts_event, seq) keys: sink dedupes"
    assert [content(q) for q in replay] == [content(q) for q in got]
    assert len({key(q) for q in got}) == expected


def test_unknown_instrument_is_refused_before_anything_starts(tmp_path: Path) -> None:
    settings = Settings().with_overrides(
        runtime={"home": str(tmp_path)}, dukascopy={"checkpoint_dir": str(tmp_path / "ck")}
    )
    nowhere = Endpoints(pulsar_url="pulsar://127.0.0.1:1", database_url="", embedded=False)
    with pytest.raises(SymbolError, match="unknown Dukascopy instrument"):
        run_backfill(settings, nowhere, "NOPE/XYZ", T0, T4, progress=False)
    assert not (tmp_path / "ck").exists(), "no checkpoint store was created"


def _with_huge_volume(hour_file: Path) -> bytes:
    """The hour's real ticks, with record 5's ask volume set to the largest float32 (3.4e38)."""
    raw = bytearray(lzma.decompress(hour_file.read_bytes(), format=lzma.FORMAT_ALONE))
    struct.pack_into(">f", raw, 5 * 20 + 12, 3.4028234663852886e38)
    return lzma.compress(bytes(raw), format=lzma.FORMAT_ALONE)


async def test_a_corrupt_tick_fails_its_hour_only_and_is_dead_lettered(
    runtime_settings: Settings, endpoints: Endpoints, tmp_path: Path, unique: str
) -> None:
    # A huge float32 volume once raised decimal.InvalidOperation and killed the whole backfill.
    root = tmp_path / "datafeed"
    day = root / "EURUSD" / "2019" / "01" / "04"
    day.mkdir(parents=True)
    (day / "00h_ticks.bi5").write_bytes((DAY / "00h_ticks.bi5").read_bytes())
    bad = _with_huge_volume(DAY / "01h_ticks.bi5")
    (day / "01h_ticks.bi5").write_bytes(bad)
    (day / "02h_ticks.bi5").write_bytes((DAY / "02h_ticks.bi5").read_bytes())
    settings = runtime_settings.with_overrides(dukascopy={"checkpoint_dir": str(tmp_path / "ck")})
    async with DukascopySimulator(root) as sim:
        summary = await asyncio.to_thread(
            run_backfill, settings, endpoints, "EURUSD", T0, datetime(2019, 2, 4, 3, tzinfo=UTC),
            base_url=sim.base_url, feed="bi5", progress=False,
        )  # fmt: skip
    assert summary["hours_failed"] == 1 and summary["hours_downloaded"] == 2 and not summary["ok"]
    ((hour, reason),) = summary["failures"]
    assert hour == "2019-02-04T01:00:00+00:00" and "record 5: volume" in reason and "out of range" in reason
    bus = Bus(runtime_settings, endpoints.pulsar_url)
    try:
        consumer = bus.subscribe("persistent://market-data/deadletter/ingest.dukascopy", f"dl-{unique}")
        dead = drain(consumer, 1, deadline_s=DEADLINE_S, take=lambda m: [m] if m.data() == bad else [])
        consumer.close()
    finally:
        bus.close()
    assert len(dead) == 1
    props = dead[0].properties()
    assert props["kind"] == "parse_error" and props["url"].endswith("/EURUSD/2019/01/04/01h_ticks.bi5")
