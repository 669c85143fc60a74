"""The Kraken ingester in-process against the local venue and the real broker: refusals and the watchdog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pulsar
import pytest

from ingesters.base.context import IngestContext
from ingesters.kraken.service import KrakenIngester
from ingesters.kraken.settings import KrakenSettings
from ingesters.kraken.simulator import FaultPlan, KrakenSimulator
from pulse.bus import Bus, EventPublisher
from pulse.codec import decode_any
from pulse.models import Status
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import dead_letter_topic, topic

FAST = KrakenSettings(stale_after_s=1.5, ping_interval_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2)


async def wait_for(pred: Callable[[], Any], what: str, task: asyncio.Task[None]) -> None:
    end = time.monotonic() + 15
    while not pred():
        if task.done():
            task.result()
            pytest.fail(f"ingester ended while waiting for {what}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def read_all(url: str, topics: list[str], sub: str) -> list[tuple[pulsar.Message, str]]:
    client = pulsar.Client(url)
    out = []
    try:
        consumer = client.subscribe(
            topics, sub, initial_position=pulsar.InitialPosition.Earliest, consumer_type=pulsar.ConsumerType.Shared
        )
        while True:
            try:
                msg = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                return out
            out.append((msg, msg.topic_name()))
    finally:
        client.close()


async def run_ingester(
    settings: Settings,
    endpoints: Endpoints,
    sim: KrakenSimulator,
    symbols: list[str],
    until: Callable[[IngestContext, KrakenIngester], bool],
    kraken: KrakenSettings = FAST,
) -> tuple[IngestContext, KrakenIngester]:
    bus = Bus(settings, endpoints.pulsar_url)
    publisher = EventPublisher(bus, "crypto", producer_prefix="test-kraken")
    ctx = IngestContext(publisher, venue="kraken", name="test-kraken")
    ing = KrakenIngester(kraken, ctx, symbols=symbols, channels=["trade", "book"], depth=10, url=sim.url)
    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(stop))
    try:
        await wait_for(lambda: until(ctx, ing), "the expected state", task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await asyncio.to_thread(publisher.flush)
        bus.close()
    return ctx, ing


async def test_rejected_symbol_is_dead_lettered_and_the_rest_stream(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    good, bad = f"G{unique[:6].upper()}/USD", f"B{unique[:6].upper()}/USD"
    sim = KrakenSimulator(symbols=[good], rate=300, seed=2)  # the venue does not list `bad`
    await sim.start()
    try:
        ctx, ing = await run_ingester(
            runtime_settings,
            endpoints,
            sim,
            [good, bad],
            until=lambda c, i: c.counters.rejected == 1 and c.counters.events > 20,
        )
    finally:
        await sim.stop()
    assert bad in ing.rejected and "not supported" in ing.rejected[bad].lower()
    assert ing.active_symbols == [good] and ctx.counters.parse_errors == 0
    msgs = await asyncio.to_thread(read_all, endpoints.pulsar_url, [dead_letter_topic("ingest.kraken")], f"d-{unique}")
    mine = [m for m, _ in msgs if m.properties().get("symbol") == bad]
    assert len(mine) == 1 and mine[0].properties()["kind"] == "rejected"
    assert bad in mine[0].data().decode()  # the venue's raw refusal, kept whole
    trades = await asyncio.to_thread(
        read_all, endpoints.pulsar_url, [topic("crypto", "kraken", good, "trade")], f"t-{unique}"
    )
    assert len(trades) > 0


async def test_stalled_feed_trips_the_watchdog_and_reconnects_with_a_gap(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    sym = f"S{unique[:6].upper()}/USD"
    sim = KrakenSimulator(symbols=[sym], rate=300, seed=4, faults=FaultPlan(stall_after=40))
    await sim.start()
    try:
        _ctx, _ = await run_ingester(
            runtime_settings,
            endpoints,
            sim,
            [sym],
            until=lambda c, i: c.counters.stale == 1 and c.counters.reconnects == 1 and c.counters.gaps == 1,
        )
    finally:
        await sim.stop()
    assert sim.stats["stalls"] == 1 and sim.stats["connections"] >= 2
    msgs = await asyncio.to_thread(
        read_all,
        endpoints.pulsar_url,
        [topic("crypto", "kraken", sym, "trade"), topic("crypto", "kraken", sym, "status")],
        f"s-{unique}",
    )
    # two topics: a consumer interleaves them in any order, so order the markers by when they were made
    markers = sorted(
        (ev for m, _ in msgs if isinstance(ev := decode_any(m.data(), m.properties()), Status)),
        key=lambda ev: ev.ts_event,
    )
    kinds = [ev.kind for ev in markers]
    assert "stale" in kinds and "gap" in kinds
    assert kinds.index("stale") < kinds.index("gap")  # marked stale, then the gap once reconnected


HOSTILE_FRAMES: tuple[str | bytes, ...] = (
    '{"data":' + "[" * 1000 + "]" * 1000 + ',"channel":"trade"}',  # msgspec skips it recursively: RecursionError
    '{"channel":' + "[" * 1000 + "]" * 1000 + "}",  # the fast path's tag lookup: RecursionError too
    b'{"channel":"trade","type":"update","data":[{"symbol":"\xff\xfe"}]}',  # binary frame, not UTF-8
)


async def test_hostile_frames_are_dead_lettered_and_the_connection_kept(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    # Deep nesting once escaped the parser as RecursionError: no dead letter, a reconnect and a gap marker.
    sym = f"H{unique[:6].upper()}/USD"
    faults = FaultPlan(malformed_every=5, max_malformed=6, malformed_frames=HOSTILE_FRAMES)
    sim = KrakenSimulator(symbols=[sym], rate=300, seed=5, faults=faults)
    # the dead-letter topic is shared by every Kraken test (and the demo's --faults sends the same hostile
    # frames): count only what was published since this test began
    began_ms = time.time_ns() // 1_000_000 - 1
    await sim.start()
    try:
        ctx, _ = await run_ingester(
            runtime_settings, endpoints, sim, [sym], until=lambda c, i: c.counters.parse_errors >= 6
        )
    finally:
        await sim.stop()
    assert sim.stats["malformed"] == 6 and sim.stats["connections"] == 1
    assert ctx.counters.parse_errors == ctx.counters.dead_letters == 6
    assert ctx.counters.reconnects == 0 and ctx.counters.gaps == 0
    msgs = await asyncio.to_thread(read_all, endpoints.pulsar_url, [dead_letter_topic("ingest.kraken")], f"h-{unique}")
    expected = sorted(f.encode() if isinstance(f, str) else f for f in HOSTILE_FRAMES * 2)
    mine = [
        m
        for m, _ in msgs
        if m.properties().get("kind") == "parse_error" and m.data() in expected and m.publish_timestamp() >= began_ms
    ]
    assert sorted(m.data() for m in mine) == expected


def test_settings_constrain_the_watchdog() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"stale_after_s": 0}, KrakenSettings)
