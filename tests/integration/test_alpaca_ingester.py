"""The Alpaca ingester in-process against the local venue (real WebSocket, the real protocol: connect, auth,
subscribe, arrays) and the real broker: every trade the venue delivered reaches its topic once with exact values
through a disconnect and malformed frames; minute bars as candles; auth failures are fatal without leaking the
credentials; the closed market is slept through; live subscribe/unsubscribe; the symbol limit refuses symbols."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulsar
import pytest

from ingesters.alpaca.calendar import UsEquityCalendar
from ingesters.alpaca.service import AlpacaIngester
from ingesters.alpaca.settings import AlpacaSettings
from ingesters.alpaca.simulator import AlpacaSimulator, FaultPlan
from ingesters.base.context import IngestContext
from pulse.bus import Bus, EventPublisher
from pulse.codec import decode_any
from pulse.errors import FatalVenueError
from pulse.models import Candle, Quote, Status, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import dead_letter_topic, topic

KEY, SECRET = "PKTESTKEY0123456789", "s3cret-Alpaca-0f9e8d7c6b5a"


def ticker(unique: str, n: int) -> str:
    return chr(ord("A") + n) + "".join(chr(ord("A") + int(c, 16)) for c in unique[:4])


def fast(**kw: Any) -> AlpacaSettings:
    base = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "market_hours": "always", "auth_timeout_s": 5.0}
    return AlpacaSettings(**{**base, **kw})


async def wait_for(pred: Callable[[], Any], what: str, task: asyncio.Task[None], limit: float = 30) -> None:
    end = time.monotonic() + limit
    while not pred():
        if task.done():
            task.result()
            pytest.fail(f"ingester ended while waiting for {what}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Running:
    """An AlpacaIngester on the test's event loop, publishing to the session's broker."""

    def __init__(self, settings: Settings, endpoints: Endpoints, sim: AlpacaSimulator, symbols: list[str], name: str,
                 cfg: AlpacaSettings | None = None, **kw: Any) -> None:  # fmt: skip
        self.bus = Bus(settings, endpoints.pulsar_url)
        self.publisher = EventPublisher(self.bus, "equities", producer_prefix=name)
        self.ctx = IngestContext(self.publisher, venue="alpaca", name=name, status_home=kw.pop("status_home", None))
        self.ing = AlpacaIngester(cfg or fast(), self.ctx, key=kw.pop("key", KEY), secret=kw.pop("secret", SECRET),
                                  symbols=symbols, url=sim.url, **kw)  # fmt: skip
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.ing.run(self.stop))

    async def until(self, pred: Callable[[], Any], what: str, limit: float = 30) -> None:
        await wait_for(pred, what, self.task, limit)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 15)
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
                msg = consumer.receive(timeout_millis=1500)
            except pulsar.Timeout:
                return out
            props = msg.properties()
            out.append((msg, decode_any(msg.data(), props) if "type" in props else None))
    finally:
        client.close()


def trades_of(sent: list, symbols: list[str]) -> list[tuple]:
    return sorted((t.symbol, t.trade_id, t.price, t.size, t.ts_ns) for t in sent if t.symbol in symbols)


async def test_every_delivered_trade_reaches_the_broker_once_through_a_disconnect_and_bad_frames(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a, b = ticker(unique, 0), ticker(unique, 1)
    sim = AlpacaSimulator(credentials={KEY: SECRET}, rate=400, seed=5, bar_interval_s=0.4, max_trades=150,
                          faults=FaultPlan(disconnect_after=90, malformed_every=25))  # fmt: skip
    await sim.start()
    run = Running(runtime_settings, endpoints, sim, [a, b], f"test-alpaca-{unique}")
    try:
        await run.until(lambda: all(sim.markets[s].next_id > 150 for s in (a, b) if s in sim.markets)
                        and len(sim.markets) == 2, "every trade made")  # fmt: skip
        await run.until(lambda: sim.stats["bars"] >= 2, "bars")
        await asyncio.sleep(0.5)
    finally:
        await run.close()
        await sim.stop()
    c = run.ctx.counters
    assert sim.stats["disconnects"] >= 1 and c.reconnects >= 1
    assert sim.stats["malformed"] >= 4 and c.parse_errors == sim.stats["malformed"] == c.dead_letters
    topics = [topic("equities", "alpaca", s, ch) for s in (a, b) for ch in ("trade", "quote", "candle")]
    events = await asyncio.to_thread(read, endpoints.pulsar_url, topics, f"a-{unique}")
    trades = [ev for _, ev in events if isinstance(ev, Trade)]
    got = sorted((t.symbol, t.trade_id, t.price, t.size, t.ts_event) for t in trades)
    assert got == trades_of(sim.delivered, [a, b])  # each once, exact decimals and nanoseconds
    assert len(got) >= 150 and len(got) == len({(t[0], t[1]) for t in got})
    gaps = [ev for _, ev in events if isinstance(ev, Status) and ev.kind == "gap"]
    assert {g.symbol for g in gaps} == {a, b}  # after the reconnect, on every instrument
    candles = [ev for _, ev in events if isinstance(ev, Candle)]
    assert candles and all(cd.interval_s == 60 and cd.side == "trade" and cd.low <= cd.close <= cd.high
                           for cd in candles)  # fmt: skip
    assert any(isinstance(ev, Quote) and ev.symbol == a for _, ev in events)
    dlq = await asyncio.to_thread(read, endpoints.pulsar_url, [dead_letter_topic("ingest.alpaca")], f"d-{unique}")
    mine = [m for m, _ in dlq if m.properties().get("source") == f"test-alpaca-{unique}"]
    assert len(mine) == c.dead_letters and {m.properties()["kind"] for m in mine} == {"parse_error"}


async def test_wrong_secret_is_fatal_at_once_and_never_leaks(
    runtime_settings: Settings, endpoints: Endpoints, unique: str, caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    wrong = "WRONG-secret-5e4d3c2b1a0f"
    sim = AlpacaSimulator(credentials={KEY: SECRET})
    await sim.start()
    run = Running(runtime_settings, endpoints, sim, [ticker(unique, 0)], f"test-alpaca-{unique}", secret=wrong,
                  status_home=tmp_path)  # fmt: skip
    try:
        with pytest.raises(FatalVenueError) as info:
            await asyncio.wait_for(run.task, 10)
    finally:
        await run.close()
        await sim.stop()
    assert sim.stats["auth_failed"] == 1 and sim.stats["connections"] == 1  # no retry storm
    assert "402" in str(info.value) and "alpaca.key / alpaca.secret" in str(info.value)
    status = (tmp_path / "run" / f"test-alpaca-{unique}.json").read_text()
    for text in (str(info.value), repr(run.ing), caplog.text, status, json.dumps(run.ctx.snapshot(), default=str)):
        assert wrong not in text and SECRET not in text


async def test_a_feed_the_account_lacks_is_fatal(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    sim = AlpacaSimulator(credentials={KEY: SECRET}, feeds=("iex",))
    await sim.start()
    run = Running(runtime_settings, endpoints, sim, [ticker(unique, 0)], f"test-alpaca-{unique}", cfg=fast(feed="sip"))
    try:
        with pytest.raises(FatalVenueError, match=r"409 insufficient subscription; check setting alpaca\.feed \(sip\)"):
            await asyncio.wait_for(run.task, 10)
    finally:
        await run.close()
        await sim.stop()


async def test_closed_market_is_slept_through_then_the_open_connects(
    runtime_settings: Settings, endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    a = ticker(unique, 0)
    clock = {"now": datetime(2026, 11, 26, 15, 0, tzinfo=UTC)}  # Thanksgiving: the NYSE is closed
    cal = UsEquityCalendar("regular", cache_path=tmp_path / "xnys.json")
    sim = AlpacaSimulator(credentials={KEY: SECRET}, rate=200)
    await sim.start()
    run = Running(runtime_settings, endpoints, sim, [a], f"test-alpaca-{unique}", cfg=fast(market_hours="regular"),
                  calendar=cal, now=lambda: clock["now"])  # fmt: skip
    run.ing.market_recheck_s = 0.02
    try:
        await run.until(lambda: run.ing.market_state == "closed", "market closed", limit=60)
        await asyncio.sleep(0.3)
        assert sim.stats["connections"] == 0, "no connection while the market is closed"
        clock["now"] = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # the day after: open until the 13:00 early close
        await run.until(lambda: run.ctx.counters.events >= 5, "data after the open")
        clock["now"] = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 13:00 New York: the early close
        await run.until(lambda: run.ing.market_state == "closed" and sim.connections() == 0, "closed at 13:00")
        connections = sim.stats["connections"]
        await asyncio.sleep(0.3)
        assert sim.stats["connections"] == connections == 1
    finally:
        await run.close()
        await sim.stop()
    events = await asyncio.to_thread(
        read, endpoints.pulsar_url, [topic("equities", "alpaca", a, "trade")], f"m-{unique}"
    )
    kinds = [ev.kind if isinstance(ev, Status) else "trade" for _, ev in events]
    assert kinds[:2] == ["market_closed", "market_open"] and kinds[-1] == "market_closed"
    assert "gap" not in kinds  # a planned close is no gap
    assert "opens 2026-11-27T14:30:00+00:00" in next(ev.detail for _, ev in events if isinstance(ev, Status))


async def test_live_subscribe_unsubscribe_and_the_symbol_limit(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a, b, c = ticker(unique, 0), ticker(unique, 1), ticker(unique, 2)
    sim = AlpacaSimulator(credentials={KEY: SECRET}, rate=300, symbol_limit=2)
    await sim.start()
    run = Running(runtime_settings, endpoints, sim, [a], f"test-alpaca-{unique}")
    try:
        await run.until(lambda: run.ctx.last_tick.get(a), f"{a} data")
        await run.ing.add_symbols([b], ["trade"])
        await run.until(lambda: run.ctx.last_tick.get(b), f"{b} data")
        await run.ing.add_symbols([c])  # a third trade/quote symbol: over the venue's limit
        await run.until(lambda: c in run.ing.rejected, f"{c} refused")
        await run.ing.remove_symbols([a])
        await run.until(lambda: a not in sim.markets or all(a not in cn.subs["trades"] for cn in sim._conns),
                        "unsubscribed at the venue")  # fmt: skip
        await asyncio.sleep(0.3)
    finally:
        await run.close()
        await sim.stop()
    assert run.ctx.counters.rejected == 1 and run.ctx.counters.reconnects == 0 and sim.stats["connections"] == 1
    statuses = [topic("equities", "alpaca", s, "status") for s in (a, b)]
    events = await asyncio.to_thread(read, endpoints.pulsar_url, statuses, f"s-{unique}")
    kinds = {(ev.symbol, ev.kind) for _, ev in events if isinstance(ev, Status)}
    assert (b, "subscribed") in kinds and (a, "unsubscribed") in kinds
    assert not [ev for _, ev in events if isinstance(ev, Trade)]


async def test_a_silent_feed_trips_the_watchdog_and_reconnects(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a = ticker(unique, 0)
    sim = AlpacaSimulator(credentials={KEY: SECRET}, rate=200, faults=FaultPlan(stall_after=20))
    await sim.start()
    run = Running(runtime_settings, endpoints, sim, [a], f"test-alpaca-{unique}", cfg=fast(stale_after_s=0.8))
    try:
        await run.until(lambda: run.ctx.counters.stale >= 1 and sim.stats["connections"] >= 2, "stale → reconnect")
        await run.until(lambda: run.ctx.counters.gaps >= 1, "a gap marker after the reconnect")
    finally:
        await run.close()
        await sim.stop()
    topics = [topic("equities", "alpaca", a, ch) for ch in ("trade", "status")]
    events = await asyncio.to_thread(read, endpoints.pulsar_url, topics, f"w-{unique}")
    on = {(m.topic_name().rsplit(".", 1)[-1], ev.kind) for m, ev in events if isinstance(ev, Status)}
    assert {("status", "stale"), ("trade", "gap")} <= on  # the gap in-band on the data topics


async def test_trade_corrections_and_cancels_are_counted_and_kept_not_errors(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    a = ticker(unique, 0)
    sim = AlpacaSimulator(credentials={KEY: SECRET}, rate=300, max_trades=60, faults=FaultPlan(amend_every=10))
    await sim.start()
    name = f"test-alpaca-{unique}"
    run = Running(runtime_settings, endpoints, sim, [a], name)
    try:
        await run.until(lambda: sim.stats["amendments"] == 6, "six amendments sent")
        await run.until(lambda: sum(run.ing.amendments.values()) == 6, "six amendments received")
    finally:
        await run.close()
        await sim.stop()
    snap = run.ctx.snapshot()
    assert (snap["trade_corrections"], snap["trade_cancels"]) == (3, 3) and snap["parse_errors"] == 0
    dlq = await asyncio.to_thread(read, endpoints.pulsar_url, [dead_letter_topic("ingest.alpaca")], f"x-{unique}")
    mine = sorted((m.properties()["kind"], m.properties()["trade_id"]) for m, _ in dlq
                  if m.properties().get("source") == name)  # fmt: skip
    ids = sorted(t.trade_id for t in sim.delivered if int(t.trade_id.split("-")[1]) % 10 == 0)
    assert [k for k, _ in mine].count("trade_cancel") == 3 and sorted(t for _, t in mine) == ids
