"""The Coinbase ingester in-process against the local venue (real WebSocket, real REST) and the real broker: a lost
message (a skipped sequence_num) → gap marker → resubscription → books equal to the venue's; malformed messages
dead-lettered; an unlisted product refused; live add/remove on the open connection; a silent venue left."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pulsar
import pytest

from ingesters.base.context import IngestContext
from ingesters.coinbase.service import CoinbaseIngester
from ingesters.coinbase.settings import CoinbaseSettings
from ingesters.coinbase.simulator import CoinbaseSimulator, FaultPlan
from pulse.bus import Bus, EventPublisher
from pulse.codec import decode_any
from pulse.models import BookSnapshot, Status, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import dead_letter_topic, topic


def fast(sim: CoinbaseSimulator, **kw: Any) -> CoinbaseSettings:
    base = {"url": sim.url, "rest_url": sim.rest_url, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    return CoinbaseSettings(**{**base, **kw})


def sym(unique: str, n: int) -> str:
    return f"C{n}{unique[:6].upper()}/USD"


async def wait_for(pred: Callable[[], Any], what: str, task: asyncio.Task[None], limit: float = 90) -> None:
    end = time.monotonic() + limit
    while not pred():
        if task.done():
            task.result()
            pytest.fail(f"ingester ended while waiting for {what}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Running:
    """A CoinbaseIngester on the test's event loop, publishing to the session's broker."""

    def __init__(self, settings: Settings, endpoints: Endpoints, cfg: CoinbaseSettings, symbols: list[str],
                 name: str) -> None:  # fmt: skip
        self.bus = Bus(settings, endpoints.pulsar_url)
        self.publisher = EventPublisher(self.bus, "crypto", producer_prefix=name)
        self.ctx = IngestContext(self.publisher, venue="coinbase", name=name)
        self.ing = CoinbaseIngester(cfg, self.ctx, symbols=symbols)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.ing.run(self.stop))

    async def until(self, pred: Callable[[], Any], what: str, limit: float = 90) -> None:
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


async def test_a_lost_message_marks_a_gap_resubscribes_and_the_books_equal_the_venues(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a, b = sym(unique, 0), sym(unique, 1)
    faults = FaultPlan(skip_sequence_every=25, max_skips=1, malformed_every=70, max_malformed=2)
    sim = CoinbaseSimulator(symbols=[a, b], rate=400, seed=3, faults=faults, heartbeat_interval_s=0.2)
    await sim.start()
    name = f"test-coinbase-{unique}"
    run = Running(runtime_settings, endpoints, fast(sim), [a, b], name)
    try:
        await run.until(lambda: sim.stats["skipped_sequences"] == 1 and sim.stats["malformed"] == 2, "the faults")
        await run.until(lambda: run.ing.resyncs == 2 and not run.ing._resyncing, "the fresh snapshots")
        sim.paused = True  # the market stops; the last updates drain
        for s in (a, b):
            m = sim.market(s)
            await run.until(lambda s=s, m=m: run.ing.parser.book(s).levels() == m.book_levels(), f"{s} equal")
    finally:
        await run.close()
        await sim.stop()
    c = run.ctx.counters
    assert c.parse_errors == c.dead_letters == 2 and c.reconnects == 0 and run.ing.parser.gaps == 1
    assert sim.stats["snapshots"] == 4  # each book: the first subscription and the resubscription
    topics = [topic("crypto", "coinbase", s, ch) for s in (a, b) for ch in ("book", "trade", "ticker", "quote")]
    got = await asyncio.to_thread(read, endpoints.pulsar_url, topics, f"b-{unique}")
    gaps = [(m.topic_name(), ev.symbol) for m, ev in got if isinstance(ev, Status) and ev.kind == "gap"]
    assert len(gaps) == 8 and len(set(gaps)) == 8  # one marker on every topic of both products
    assert all("sequence_num jumped" in ev.detail for _, ev in got if isinstance(ev, Status) and ev.kind == "gap")
    for s in (a, b):
        book = [ev for _, ev in got if ev is not None and ev.symbol == s and "book" in type(ev).__name__.lower()]
        assert sum(isinstance(ev, BookSnapshot) for ev in book) == 2  # the first sync and the fresh one
        kinds = [ev.kind for _, ev in got if isinstance(ev, Status) and ev.symbol == s and ev.kind != "connected"]
        assert kinds.count("resync") == 1
    dlq = await asyncio.to_thread(read, endpoints.pulsar_url, [dead_letter_topic("ingest.coinbase")], f"d-{unique}")
    mine = [m for m, _ in dlq if m.properties().get("source") == name]
    assert len(mine) == 2 and all(m.properties()["kind"] == "parse_error" for m in mine)


async def test_unlisted_products_are_refused_and_symbols_change_live(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a, b, bad = sym(unique, 2), sym(unique, 3), sym(unique, 4)
    per_symbol = 60
    sim = CoinbaseSimulator(symbols=[a, b], rate=200, seed=5, max_trades=per_symbol)
    await sim.start()
    run = Running(runtime_settings, endpoints, fast(sim), [a, bad], f"test-coinbase-l-{unique}")
    try:
        await run.until(lambda: sim.stats["trades_per_symbol"][a] > 10, "trades of the first product")
        assert run.ing.rejected.keys() == {bad} and run.ctx.counters.rejected == 1  # never subscribed
        assert await run.ing.add_symbols([b]) == [b]
        await run.until(lambda: all(n >= per_symbol for n in sim.stats["trades_per_symbol"].values()), "all trades")
        await asyncio.sleep(0.5)  # the last trades' messages
        assert await run.ing.remove_symbols([b]) == [b]
        await run.until(lambda: not run.ing._pending_off, "the unsubscription acknowledged")
    finally:
        await run.close()
        await sim.stop()
    assert run.ctx.counters.reconnects == 0 and run.ctx.counters.gaps == 0 and run.ing.parser.gaps == 0
    got = await asyncio.to_thread(read, endpoints.pulsar_url,
                                  [topic("crypto", "coinbase", s, "trade") for s in (a, b)], f"t-{unique}")  # fmt: skip
    trades = [(ev.symbol, ev.trade_id, ev.price, ev.size, ev.side) for _, ev in got if isinstance(ev, Trade)]
    sent = [(t.symbol, t.trade_id, t.price, t.size, t.side) for t in sim.sent_trades]
    assert len(trades) == len(set(trades)) and sorted(trades) == sorted(sent)  # every trade once, exact values
    status = await asyncio.to_thread(read, endpoints.pulsar_url, [topic("crypto", "coinbase", b, "status")],
                                     f"s-{unique}")  # fmt: skip
    assert [ev.kind for _, ev in status if isinstance(ev, Status)] == ["subscribed", "unsubscribed"]
    dlq = await asyncio.to_thread(read, endpoints.pulsar_url, [dead_letter_topic("ingest.coinbase")], f"d-{unique}")
    mine = [m for m, _ in dlq if m.properties().get("source") == f"test-coinbase-l-{unique}"]
    assert [(m.properties()["kind"], m.properties()["symbol"]) for m in mine] == [("rejected", bad)]


async def test_a_silent_venue_is_left_and_heartbeats_keep_a_quiet_one(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a = sym(unique, 5)
    sim = CoinbaseSimulator(symbols=[a], rate=50, seed=7, max_trades=0, heartbeat_interval_s=0.2,
                            faults=FaultPlan(stall_after=30, stall_s=30))  # fmt: skip
    await sim.start()
    sim.paused = True  # a quiet product: only heartbeats for a while
    run = Running(runtime_settings, endpoints, fast(sim, stale_after_s=4.0), [a], f"test-coinbase-s-{unique}")
    try:
        await run.until(lambda: run.ing.parser.heartbeats >= 30, "heartbeats")  # 6 s without data: still connected
        assert run.ctx.counters.reconnects == 0 and run.ctx.counters.stale == 0
        sim.paused = False  # book updates; after 30 the venue goes silent on that connection
        await run.until(lambda: sim.stats["stalls"] == 1, "the stall")
        await run.until(lambda: run.ctx.counters.reconnects == 1 and sim.connections() >= 1, "the reconnect")
        await run.until(lambda: run.ctx.counters.gaps == 1, "the gap marker")
    finally:
        await run.close()
        await sim.stop()
    assert run.ctx.counters.stale == 1


async def test_history_pages_back_through_the_rest_trades_exactly() -> None:
    from datetime import UTC, datetime

    from ingesters.coinbase.history import fetch_history
    from ingesters.coinbase.parser import aggressor
    from ingesters.coinbase.schemas import format_time

    sim = CoinbaseSimulator(symbols=["HIST/USD"], rate=1, seed=2)
    await sim.start()
    try:
        m = sim.market("HIST/USD")
        base = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
        for i in range(2500):  # 2 ms apart: 500 trades a second, so each full page of 1000 spans two seconds
            t, ns = m.make_trade(), base + i * 2_000_000 + 7
            raw = {"trade_id": t.trade_id, "product_id": "HIST-USD", "price": str(t.price), "size": str(t.size),
                   "side": "SELL" if t.side == "buy" else "BUY", "time": format_time(ns)}  # fmt: skip
            sim.tape["HIST-USD"].append((ns, raw))
        settings = Settings().with_overrides(coinbase={"rest_url": sim.rest_url})
        start = datetime.fromtimestamp((base + 1_000_000_000) / 1e9, UTC)  # from trade 500 …
        end = datetime.fromtimestamp((base + 4_000_000_000) / 1e9, UTC)  # … to trade 2000 (excluded)
        got = await fetch_history(settings, "HIST/USD", start, end)
    finally:
        await sim.stop()
    want = [(raw["trade_id"], ns, Decimal(raw["price"]), Decimal(raw["size"]), aggressor(raw["side"]))
            for ns, raw in sim.tape["HIST-USD"][500:2000]]  # fmt: skip
    assert [(t.trade_id, t.ts_event, t.price, t.size, t.side) for t in got] == want  # in order, once, exact
    assert all(t.venue == "coinbase" and t.symbol == "HIST/USD" and t.seq == 0 for t in got)
    assert sim.stats["rest_trades"] >= 2  # it paged
