"""The local Kraken venue: protocol shapes, verifiable checksums, and faults injected exactly as counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ingesters.kraken import protocol
from ingesters.kraken.parser import KrakenFeedParser, KrakenMessageError
from ingesters.kraken.simulator import FaultPlan, KrakenSimulator
from pulse.models import BookDelta, BookSnapshot, Trade

DATA_CHANNELS = {"trade", "ticker", "book", "instrument"}


class Client:
    """A websocket client that feeds every frame to a real parser and keeps count."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.parser = KrakenFeedParser(depth=10)
        self.frames: list[dict] = []  # every well-formed frame, as JSON
        self.events: list = []
        self.malformed = 0
        self.data = 0  # data messages (trade, ticker, book, instrument), malformed ones excluded
        self.resubscribe_on_resync = False

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def pump(self, until: Callable[[], bool], limit_s: float = 20.0) -> None:
        async with asyncio.timeout(limit_s):
            while not until():
                await self.handle(await self.ws.recv())

    async def handle(self, frame: str | bytes) -> None:
        try:
            parsed = self.parser.feed(frame)
        except KrakenMessageError:
            self.malformed += 1
            return
        msg = json.loads(frame)
        self.frames.append(msg)
        self.data += msg.get("channel") in DATA_CHANNELS
        self.events.extend(parsed.events)
        if parsed.resync and self.resubscribe_on_resync:
            await self.send(protocol.unsubscribe("book", parsed.resync, depth=10, req_id=90))
            await self.send(protocol.subscribe("book", parsed.resync, depth=10, req_id=91))

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def replies(self, method: str) -> list[dict]:
        return [f for f in self.frames if f.get("method") == method]


@pytest.fixture
async def venue(request) -> AsyncIterator[KrakenSimulator]:
    kwargs = {"rate": 2000.0, "seed": 3, **getattr(request, "param", {})}
    sim = KrakenSimulator(**kwargs)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def open_client(sim: KrakenSimulator) -> tuple[Client, ClientConnection]:
    ws = await connect(sim.url, max_queue=None)  # unbounded: a backlog must not delay the close handshake
    client = Client(ws)
    await client.pump(lambda: bool(client.frames))  # the status message comes first
    assert client.frames[0]["channel"] == "status" and client.frames[0]["data"][0]["system"] == "online"
    return client, ws


def without_times(msg: dict) -> dict:
    protocol.parse_rfc3339_ns(msg["time_in"])
    protocol.parse_rfc3339_ns(msg["time_out"])
    return {k: v for k, v in msg.items() if k not in ("time_in", "time_out")}


# ---------------------------------------------------------------------------------------------- protocol


async def test_acks_instrument_and_book_snapshots_with_valid_checksums(venue):
    client, ws = await open_client(venue)
    async with ws:
        await client.send(protocol.subscribe("instrument", [], req_id=1))
        await client.send(protocol.subscribe("book", ["BTC/USD", "ETH/USD"], depth=10, req_id=2))
        await client.pump(lambda: len(client.of(BookDelta)) >= 300)

    acks = [without_times(m) for m in client.replies("subscribe")]
    assert acks == [
        {"method": "subscribe", "result": {"channel": "instrument", "snapshot": True}, "success": True, "req_id": 1},
        {"method": "subscribe", "result": {"channel": "book", "snapshot": True, "symbol": "BTC/USD", "depth": 10},
         "success": True, "req_id": 2},
        {"method": "subscribe", "result": {"channel": "book", "snapshot": True, "symbol": "ETH/USD", "depth": 10},
         "success": True, "req_id": 2},
    ]  # fmt: skip
    (inst,) = [f for f in client.frames if f.get("channel") == "instrument"]
    assert [(p["symbol"], p["price_precision"], p["qty_precision"]) for p in inst["data"]["pairs"]] == [
        ("BTC/USD", 1, 8),
        ("ETH/USD", 2, 8),
    ]
    snapshots = client.of(BookSnapshot)
    assert [(s.symbol, len(s.bids), len(s.asks)) for s in snapshots] == [("BTC/USD", 10, 10), ("ETH/USD", 10, 10)]
    assert client.parser.checksum_failed == 0
    assert client.parser.checksum_ok == 2 + len(client.of(BookDelta))
    assert client.malformed == 0 and venue.stats["book_snapshots"] == 2


async def test_checksums_verify_without_the_instrument_channel_and_at_depth_25(venue):
    client, ws = await open_client(venue)
    client.parser = KrakenFeedParser(depth=25)
    async with ws:
        await client.send(protocol.subscribe("book", ["BTC/USD"], depth=25, req_id=1))
        await client.pump(lambda: len(client.of(BookDelta)) >= 300)
    (snap,) = client.of(BookSnapshot)
    assert len(snap.bids) == len(snap.asks) == 25
    assert client.parser.checksum_failed == 0 and client.parser.precision("BTC/USD") == (1, 8)
    assert len(client.parser.book("BTC/USD")) == 25


async def test_unknown_pair_is_refused_like_kraken(venue):
    client, ws = await open_client(venue)
    async with ws:
        await client.send(protocol.subscribe("ticker", ["FOO/USD", "BTC/USD"], req_id=5))
        await client.pump(lambda: len(client.replies("subscribe")) == 2)
    refused, accepted = (without_times(m) for m in client.replies("subscribe"))
    assert refused == {
        "method": "subscribe",
        "success": False,
        "error": "Currency pair not supported FOO/USD",
        "symbol": "FOO/USD",
        "req_id": 5,
    }
    assert accepted["success"] is True and accepted["result"]["symbol"] == "BTC/USD"


async def test_ping_pong_and_unsubscribe(venue):
    client, ws = await open_client(venue)
    async with ws:
        await client.send(protocol.ping(9))
        await client.pump(lambda: bool(client.replies("pong")))
        await client.send(protocol.unsubscribe("trade", ["BTC/USD"], req_id=10))
        await client.pump(lambda: bool(client.replies("unsubscribe")))
    assert [without_times(m) for m in client.replies("pong")] == [{"method": "pong", "req_id": 9}]
    assert [without_times(m) for m in client.replies("unsubscribe")] == [
        {
            "method": "unsubscribe",
            "success": False,
            "error": "Subscription Not Found",
            "symbol": "BTC/USD",
            "req_id": 10,
        }
    ]
    assert venue.stats["pongs"] == 1


@pytest.mark.parametrize("venue", [{"max_trades": 5, "symbols": {"BTC/USD": (1, 8)}}], indirect=True)
async def test_max_trades_then_heartbeats_and_trades_are_recorded(venue):
    client, ws = await open_client(venue)
    async with ws:
        await client.send(protocol.subscribe("trade", ["BTC/USD"], req_id=1, snapshot=False))
        await client.pump(lambda: len(client.of(Trade)) == 5)
        await client.pump(lambda: client.frames[-1].get("channel") == "heartbeat")
    trades = client.of(Trade)
    assert [(int(t.trade_id), t.price, t.size, t.side) for t in trades] == [
        (s.trade_id, s.price, s.qty, s.side) for s in venue.sent_trades
    ]
    assert [int(t.trade_id) for t in trades] == [1, 2, 3, 4, 5]
    assert venue.stats["trades"] == 5 and venue.stats["trades_per_symbol"] == {"BTC/USD": 5}
    assert len(client.of(Trade)) == 5  # nothing after the quota, only heartbeats


async def test_same_seed_same_market():
    async def first_frames(seed: int) -> list:
        sim = KrakenSimulator(rate=2000.0, seed=seed)
        await sim.start()
        try:
            client, ws = await open_client(sim)
            async with ws:
                await client.send(protocol.subscribe("book", ["ETH/USD"], depth=10, req_id=1))
                await client.pump(lambda: len(client.of(BookDelta)) >= 50)
            return [(type(e), e.bids, e.asks, e.checksum) for e in client.events[:51]]
        finally:
            await sim.stop()

    a, b, c = await first_frames(11), await first_frames(11), await first_frames(12)
    assert a == b
    assert a != c


# ------------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("venue", [{"faults": FaultPlan(malformed_every=5, max_malformed=3)}], indirect=True)
async def test_malformed_frames_injected_exactly(venue):
    client, ws = await open_client(venue)
    async with ws:
        await client.send(protocol.subscribe("book", ["BTC/USD"], depth=10, req_id=1))
        await client.pump(lambda: client.data >= 60)
    assert client.malformed == venue.stats["malformed"] == 3
    assert client.parser.checksum_failed == 0


@pytest.mark.parametrize("venue", [{"faults": FaultPlan(bad_checksum_every=10, max_bad_checksums=2)}], indirect=True)
async def test_bad_checksums_injected_exactly_and_resync_recovers(venue):
    client, ws = await open_client(venue)
    client.resubscribe_on_resync = True
    async with ws:
        await client.send(protocol.subscribe("book", ["BTC/USD"], depth=10, req_id=1))
        await client.pump(lambda: client.parser.checksum_failed == 2)
        done = len(client.of(BookDelta))
        await client.pump(lambda: len(client.of(BookDelta)) >= done + 50)
    assert client.parser.checksum_failed == venue.stats["bad_checksums"] == 2
    assert len(client.of(BookSnapshot)) == 3  # the first, then one per resync
    assert client.parser.book("BTC/USD") is not None


@pytest.mark.parametrize("venue", [{"faults": FaultPlan(disconnect_after=20)}], indirect=True)
async def test_disconnect_after_n_data_messages_on_first_connection_only(venue):
    client, _ = await open_client(venue)
    await client.send(protocol.subscribe("book", ["BTC/USD"], depth=10, req_id=1))
    with pytest.raises(ConnectionClosed) as closed:
        await client.pump(lambda: False)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert client.data == 20
    assert venue.stats["disconnects"] == 1

    second, ws2 = await open_client(venue)
    async with ws2:
        await second.send(protocol.subscribe("book", ["BTC/USD"], depth=10, req_id=1))
        await second.pump(lambda: second.data >= 60)
    assert venue.stats["disconnects"] == 1 and venue.stats["connections"] == 2


@pytest.mark.parametrize("venue", [{"faults": FaultPlan(stall_after=10)}], indirect=True)
async def test_stall_after_n_data_messages(venue):
    client, ws = await open_client(venue)
    async with ws:
        await client.send(protocol.subscribe("book", ["BTC/USD"], depth=10, req_id=1))
        await client.pump(lambda: client.data == 10)
        await client.send(protocol.ping(2))
        with pytest.raises(TimeoutError):  # no data, no heartbeat (due after ~1 s), no pong
            await client.pump(lambda: False, limit_s=2.5)
    assert client.data == 10 and not client.replies("pong")
    assert venue.stats["stalls"] == 1

    second, ws2 = await open_client(venue)
    async with ws2:
        await second.send(protocol.ping(3))
        await second.pump(lambda: bool(second.replies("pong")))
    assert venue.stats["stalls"] == 1


def test_fault_plan_validation():
    with pytest.raises(ValueError):
        FaultPlan(malformed_every=0)
    with pytest.raises(ValueError):
        FaultPlan(max_bad_checksums=-1)
    assert FaultPlan(max_malformed=0).max_malformed == 0


def test_plain_symbol_list_gets_kraken_precisions():
    sim = KrakenSimulator(symbols=["BTC/USD", "SOL/USD", "ABC/EUR"])
    assert {s: (m.price_precision, m.qty_precision) for s, m in sim._markets.items()} == {
        "BTC/USD": (1, 8),
        "SOL/USD": (2, 8),
        "ABC/EUR": (2, 8),
    }
    assert sim._markets["BTC/USD"].price(452852) == Decimal("45285.2")
