"""The Binance ingester in-process against the local venue (real WebSocket, real REST) and the real broker: book
sync through a forced sequence break, live subscribe, renewal without loss or duplicates, pings both ways,
malformed frames and unknown symbols."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pulsar
import pytest

from ingesters.base.context import IngestContext
from ingesters.binance.service import BinanceIngester
from ingesters.binance.settings import BinanceSettings
from ingesters.binance.simulator import BinanceSimulator, FaultPlan
from pulse.bus import Bus, EventPublisher
from pulse.codec import decode_any
from pulse.models import Status, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import dead_letter_topic, topic


def fast(sim: BinanceSimulator, **kw: Any) -> BinanceSettings:
    base = {"url": sim.url, "rest_url": sim.rest_url, "backoff_initial_s": 0.05, "backoff_max_s": 0.2,
            "snapshot_retry_s": 0.1}  # fmt: skip
    return BinanceSettings(**{**base, **kw})


def sym(unique: str, n: int) -> str:
    return f"B{n}{unique[:6].upper()}/USDT"


async def wait_for(pred: Callable[[], Any], what: str, task: asyncio.Task[None], limit: float = 20) -> None:
    end = time.monotonic() + limit
    while not pred():
        if task.done():
            task.result()
            pytest.fail(f"ingester ended while waiting for {what}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Running:
    """A BinanceIngester on the test's event loop, publishing to the session's broker."""

    def __init__(self, settings: Settings, endpoints: Endpoints, cfg: BinanceSettings, symbols: list[str],
                 name: str) -> None:  # fmt: skip
        self.bus = Bus(settings, endpoints.pulsar_url)
        self.publisher = EventPublisher(self.bus, "crypto", producer_prefix=name)
        self.ctx = IngestContext(self.publisher, venue="binance", name=name)
        self.ing = BinanceIngester(cfg, self.ctx, symbols=symbols)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.ing.run(self.stop))

    async def until(self, pred: Callable[[], Any], what: str, limit: float = 20) -> None:
        await wait_for(pred, what, self.task, limit)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await asyncio.to_thread(self.publisher.flush)
        self.bus.close()


def read(url: str, topics: list[str], sub: str) -> list[tuple[pulsar.Message, Any]]:
    client = pulsar.Client(url)
    out = []
    try:
        consumer = client.subscribe(topics, sub, initial_position=pulsar.InitialPosition.Earliest,
                                    consumer_type=pulsar.ConsumerType.Shared)  # fmt: skip
        while True:
            try:
                msg = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                return out
            props = msg.properties()
            out.append((msg, decode_any(msg.data(), props) if "type" in props else None))
    finally:
        client.close()


async def test_a_skipped_update_resyncs_that_book_only_and_it_equals_the_venues(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a, b = sym(unique, 0), sym(unique, 1)
    faults = FaultPlan(skip_update_every=12, max_skips=1, malformed_every=60, max_malformed=2)
    sim = BinanceSimulator(symbols=[a, b], rate=600, seed=3, faults=faults, depth_interval_s=0.03)
    await sim.start()
    run = Running(runtime_settings, endpoints, fast(sim), [a, b], f"test-binance-{unique}")
    try:
        await run.until(lambda: sim.stats["skipped_updates"] == 1 and sim.stats["malformed"] == 2, "the faults")
        await run.until(lambda: run.ing.parser.resyncs == 1 and all(run.ing.parser.book(s).synced for s in (a, b)),
                        "the resync")  # fmt: skip
        sim.paused = True  # the market stops; the last diffs drain
        for s in (a, b):
            m = sim.market(s)
            await run.until(lambda s=s, m=m: run.ing.parser.book(s).book.update_id == m.update_id, f"{s} caught up")
            assert run.ing.parser.book(s).book.levels() == m.book_levels()  # every level, exact decimals
    finally:
        await run.close()
        await sim.stop()
    c = run.ctx.counters
    assert c.parse_errors == c.dead_letters == 2 and c.reconnects == 0
    books = await asyncio.to_thread(read, endpoints.pulsar_url,
                                    [topic("crypto", "binance", s, "book") for s in (a, b)], f"b-{unique}")  # fmt: skip
    resyncs = [ev for _, ev in books if isinstance(ev, Status) and ev.kind == "resync"]
    assert len(resyncs) == 1 and "expected" in resyncs[0].detail  # one marker, on the broken book only
    broken = resyncs[0].symbol
    kinds = [type(ev).__name__ for _, ev in books if ev.symbol == broken and not isinstance(ev, Status)]
    assert kinds.count("BookSnapshot") == 2  # the first sync and the re-sync
    dlq = await asyncio.to_thread(read, endpoints.pulsar_url, [dead_letter_topic("ingest.binance")], f"d-{unique}")
    mine = [m for m, _ in dlq if m.properties().get("source") == f"test-binance-{unique}"]
    assert len(mine) == 2 and all(m.properties()["kind"] == "parse_error" for m in mine)


async def test_live_subscribe_and_renewals_lose_and_double_nothing(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a, b, bad = sym(unique, 2), sym(unique, 3), sym(unique, 4)
    per_symbol = 150
    sim = BinanceSimulator(symbols=[a, b], rate=150, seed=5, max_trades=per_symbol, depth_interval_s=0.05)
    await sim.start()
    cfg = fast(sim, renew_after_s=0.8, renew_overlap_max_s=2.0)
    run = Running(runtime_settings, endpoints, cfg, [a], f"test-binance-r-{unique}")
    try:
        await run.until(lambda: sim.stats["trades_per_symbol"][a] > 20, "trades of the first symbol")
        assert await run.ing.add_symbols([b, bad]) == [b]  # the venue does not list `bad`: refused, not subscribed
        await run.until(lambda: all(n >= per_symbol for n in sim.stats["trades_per_symbol"].values()), "all trades",
                        limit=30)  # fmt: skip
        await run.until(lambda: run.ing.renewals >= 2, "two renewals")
        await asyncio.sleep(0.5)  # the last trades' frames
    finally:
        await run.close()
        await sim.stop()
    assert run.ctx.counters.reconnects == 0 and run.ctx.counters.gaps == 0  # renewed, never reconnected
    assert run.ing.rejected.keys() == {bad} and run.ctx.counters.rejected == 1
    got = await asyncio.to_thread(read, endpoints.pulsar_url,
                                  [topic("crypto", "binance", s, "trade") for s in (a, b)], f"t-{unique}")  # fmt: skip
    trades = [(ev.symbol, ev.trade_id, ev.price, ev.size, ev.side) for _, ev in got if isinstance(ev, Trade)]
    sent = [(t.symbol, str(t.trade_id), t.price, t.qty, t.side) for t in sim.sent_trades]
    assert len(trades) == len(set(trades)) and sorted(trades) == sorted(sent)  # every trade once, exact values
    status_topics = [topic("crypto", "binance", s, "status") for s in (a, b)]
    status = await asyncio.to_thread(read, endpoints.pulsar_url, status_topics, f"s-{unique}")
    subscribed = [ev for _, ev in status if isinstance(ev, Status) and ev.kind == "subscribed"]
    assert [ev.symbol for ev in subscribed] == [b]  # the live add was acknowledged on the open connection


async def test_pings_are_answered_a_silent_client_is_dropped_and_a_silent_venue_left(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a = sym(unique, 5)
    sim = BinanceSimulator(symbols=[a], rate=100, seed=7, ping_interval_s=0.2, ping_timeout_s=2.0,
                           faults=FaultPlan(stop_ponging_after=150, stop_ponging_connections=(3,)))  # fmt: skip
    await sim.start()
    cfg = fast(sim, ping_interval_s=0.3, ping_timeout_s=1.5, stale_after_s=60)  # generous: a loaded machine
    run = Running(runtime_settings, endpoints, cfg, [a], f"test-binance-p-{unique}")
    try:
        await run.until(lambda: sim.stats["pongs"] >= 5, "the venue's pings answered")
        assert sim.stats["pong_timeouts"] == 0 and run.ctx.counters.reconnects == 0
        # a client that completes the handshake and then never reads: no pong, so the venue drops it
        raw = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", sim.port), 5)
        raw.sendall(b"GET /stream?streams=" + a.replace("/", "").lower().encode() + b"@trade HTTP/1.1\r\n"
                    b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
        await run.until(lambda: sim.stats["pong_timeouts"] == 1, "the silent client dropped")
        raw.close()
        assert run.ctx.counters.reconnects == 0  # the ingester's own connection kept ponging
        # connections so far: the ingester's (1) and the silent client (2). Make the ingester reconnect once; the
        # venue stops reading on that connection (3): our pings go unanswered and the ingester leaves it
        await run.ing._current.ws.close()  # type: ignore[union-attr]
        await run.until(lambda: sim.stats["deaf"] == 1, "the venue to stop ponging")
        await run.until(lambda: run.ctx.counters.reconnects == 2, "the ingester to leave the silent venue")
        # the gap marker for a reconnect is written when data resumes on the new connection
        await run.until(lambda: run.ctx.counters.gaps == 2, "the second gap marker, once data resumes")
    finally:
        await run.close()
        await sim.stop()
    assert run.ctx.counters.stale == 0  # found by the missing pongs, not by the data watchdog
    assert run.ctx.counters.gaps == 2  # one per reconnect
