"""`pulse web` against the real broker and database: the WebSocket fan-out and its bounds, auth, the API.

Every test talks to a real `pulse web` process through real clients (the `websockets` library, urllib) and
publishes real events to the embedded pulsar-lite broker, as an ingester would.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import websockets

from pulse.bus import Bus, EventPublisher
from pulse.models import Quote, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.procs import pulse, wait_for
from tests.web_gateway import TOKEN, Gateway, gateway
from web.protocol import CLOSE_SLOW_CONSUMER

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def gw(runtime_settings: Settings) -> Iterator[Gateway]:
    with gateway(runtime_settings) as g:
        yield g


@pytest.fixture(scope="module")
def publisher(runtime_settings: Settings, endpoints: Endpoints) -> Iterator[EventPublisher]:
    # small batches, as a live ingester's are (pulsar-lite loses and repeats messages of 1,000-message batches
    # under load, for readers and subscriptions alike: see the README's design notes)
    bus = Bus(runtime_settings.with_overrides(pulsar={"batching_max_messages": 20}), endpoints.pulsar_url)
    pub = EventPublisher(bus, "crypto", producer_prefix="test-web", owns_bus=True)
    yield pub
    pub.close()


def publish_paced(publisher: EventPublisher, events: list[Any], chunk: int = 50) -> None:
    """Publish like a live feed (bursts of ``chunk``), not as one burst of everything."""
    for i in range(0, len(events), chunk):
        for e in events[i : i + chunk]:
            publisher.publish(e)
        publisher.flush()
        time.sleep(0.002)


def new_symbol(unique: str) -> str:
    return f"W{unique[:7].upper()}/USD"


def add(gw: Gateway, symbol: str, venue: str = "kraken") -> None:
    status, body = gw.request("POST", "/api/instruments", {"venue": venue, "symbols": [symbol]}, token=gw.token)
    assert status == 201, body


def trade(symbol: str, i: int, price: str = "100.5") -> Trade:
    now = time.time_ns()
    return Trade(venue="kraken", symbol=symbol, ts_event=now, ts_recv=now, seq=i, price=Decimal(price),
                 size=Decimal("0.00012345"), side="buy", trade_id=f"t{i}")  # fmt: skip


def quote(symbol: str, i: int, bid: str = "100.1", ask: str = "100.3") -> Quote:
    now = time.time_ns()
    return Quote(venue="kraken", symbol=symbol, ts_event=now, ts_recv=now, seq=i, bid=Decimal(bid),
                 bid_size=Decimal("1.5"), ask=Decimal(ask), ask_size=Decimal("2.25"))  # fmt: skip


async def recv_json(ws: Any, wait_s: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), wait_s))


async def subscribe(ws: Any, symbol: str, channels: list[str], req_id: int = 1) -> dict[str, Any]:
    await ws.send(json.dumps({"op": "subscribe", "venue": "kraken", "symbol": symbol, "channels": channels,
                              "req_id": req_id}))  # fmt: skip
    ack = await recv_json(ws)
    assert ack == {"type": "ack", "op": "subscribe", "venue": "kraken", "symbol": symbol, "channels": channels,
                   "req_id": req_id}, ack  # fmt: skip
    return ack


async def collect(ws: Any, n: int, wait_s: float = 15.0) -> list[dict[str, Any]]:
    out = []
    end = time.monotonic() + wait_s
    while len(out) < n:
        out.append(await recv_json(ws, max(0.1, end - time.monotonic())))
    return out


async def test_subscribe_streams_exact_events_and_unsubscribe_stops_a_channel(
    gw: Gateway, publisher: EventPublisher, unique: str
) -> None:
    sym = new_symbol(unique)
    add(gw, sym)
    async with websockets.connect(gw.ws_url) as ws:
        await subscribe(ws, sym, ["trade", "quote"])
        publisher.publish(trade(sym, 1, "65123.40000001"))
        publisher.publish(quote(sym, 1, "65123.1", "65123.9"))
        publisher.flush()
        got = await collect(ws, 2)
        by_type = {e["type"]: e for e in got}
        t, q = by_type["trade"], by_type["quote"]
        assert (t["venue"], t["symbol"], t["price"], t["size"], t["side"]) == ("kraken", sym, "65123.40000001",
                                                                               "0.00012345", "buy")  # fmt: skip
        assert isinstance(t["ts_event"], int) and isinstance(t["ts_recv"], int)
        assert (q["bid"], q["ask"], q["bid_size"], q["ask_size"]) == ("65123.1", "65123.9", "1.5", "2.25")

        await ws.send(json.dumps({"op": "unsubscribe", "venue": "kraken", "symbol": sym, "channels": ["quote"],
                                  "req_id": "u1"}))  # fmt: skip
        assert (await recv_json(ws))["op"] == "unsubscribe"
        publisher.publish(quote(sym, 2))
        publisher.publish(trade(sym, 2, "65124"))
        publisher.flush()
        after = await recv_json(ws)
        assert (after["type"], after["price"]) == ("trade", "65124")  # the quote published before it never came


async def test_a_new_subscriber_first_gets_the_last_trade_and_quote(
    gw: Gateway, publisher: EventPublisher, unique: str
) -> None:
    sym = new_symbol(unique)
    add(gw, sym)
    async with websockets.connect(gw.ws_url) as first:
        await subscribe(first, sym, ["trade", "quote"])
        for i in range(1, 4):
            publisher.publish(trade(sym, i, f"10{i}.5"))
            publisher.publish(quote(sym, i, f"10{i}.1", f"10{i}.9"))
        publisher.flush()
        seen: set[tuple[str, int]] = set()
        while not {("trade", 3), ("quote", 3)} <= seen:  # the last of each went through the gateway
            e = await recv_json(first)
            seen.add((e["type"], e["seq"]))
    async with websockets.connect(gw.ws_url) as late:
        await subscribe(late, sym, ["trade", "quote"], req_id=7)
        snapshot = {e["type"]: e for e in await collect(late, 2)}
        assert snapshot["trade"]["price"] == "103.5" and snapshot["trade"]["trade_id"] == "t3"
        assert (snapshot["quote"]["bid"], snapshot["quote"]["ask"]) == ("103.1", "103.9")


async def test_one_reader_per_topic_whatever_the_number_of_clients(
    gw: Gateway, publisher: EventPublisher, unique: str
) -> None:
    sym = new_symbol(unique)
    add(gw, sym)
    clients = [await websockets.connect(gw.ws_url) for _ in range(5)]
    try:
        await subscribe(clients[0], sym, ["trade"])
        readers = gw.stats()["readers"]
        for c in clients[1:]:
            await subscribe(c, sym, ["trade"])
        assert gw.stats()["readers"] == readers  # no reader more for four more clients
        publish_paced(publisher, [trade(sym, i, f"{200 + i}") for i in range(50)])
        for c in clients:
            prices = [e["price"] for e in await collect(c, 50)]
            assert prices == [str(200 + i) for i in range(50)]  # each client: every trade, in order
    finally:
        for c in clients:
            await c.close()


async def test_bad_messages_get_error_frames_and_the_connection_stays(gw: Gateway, unique: str) -> None:
    async with websockets.connect(gw.ws_url) as ws:
        cases = [
            ("{not json", "invalid JSON"),
            (json.dumps({"op": "shout"}), "invalid control message"),
            (
                json.dumps(
                    {"op": "subscribe", "venue": "kraken", "symbol": "BTC/USD", "channels": ["gossip"], "req_id": 5}
                ),
                "unknown channel 'gossip'",
            ),
            (json.dumps({"op": "subscribe", "channels": ["trade"]}), "venue and symbol are required"),
            (
                json.dumps({"op": "subscribe", "venue": "kraken", "symbol": "BTC/XXX", "channels": ["trade"]}),
                "XXX is not a Kraken quote currency",
            ),
            (
                json.dumps(
                    {
                        "op": "subscribe",
                        "venue": "kraken",
                        "symbol": f"N{unique[:6].upper()}/USD",
                        "channels": ["trade"],
                    }
                ),
                "is not in the instrument registry",
            ),
            (
                json.dumps({"op": "subscribe", "venue": "nasdaq", "symbol": "AAPL", "channels": ["trade"]}),
                "unknown venue 'nasdaq'",
            ),
        ]
        before = gw.stats()["bad_messages"]
        for text, expected in cases:
            await ws.send(text)
            frame = await recv_json(ws)
            assert frame["type"] == "error" and expected in frame["error"], (text, frame)
        await ws.send(b"\x00\x01")
        assert "binary frames" in (await recv_json(ws))["error"]
        await ws.send(json.dumps({"op": "ping", "req_id": 9}))
        assert await recv_json(ws) == {"type": "pong", "req_id": 9}  # still connected and answering
        assert gw.stats()["bad_messages"] - before == len(cases) + 1


def _settle(gw: Gateway) -> dict[str, Any]:
    """The gateway's counters once it has read everything the broker had for it (no change for 1 s)."""
    last = gw.stats()
    while True:
        time.sleep(1.0)
        now = gw.stats()
        if now["received"] == last["received"]:
            return now
        last = now


class RawClient:
    """A WebSocket client on a bare socket with a tiny receive buffer that reads only when told: a client that
    stops reading backs up into the gateway at once (a library client keeps draining the socket into its own
    queue)."""

    def __init__(self, url: str) -> None:
        self.sock = _slow_socket(url)
        host = url.split("//", 1)[1].split("/", 1)[0]
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, doc: dict[str, Any]) -> None:
        payload = json.dumps(doc).encode()
        assert len(payload) < 126
        mask = b"\x01\x02\x03\x04"
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + body)

    def frames(self, wait_s: float = 10.0) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of every frame until the connection closes."""
        self.sock.settimeout(wait_s)
        while True:
            while True:
                parsed = _parse_frame(self.buf)
                if parsed is None:
                    break
                op, payload, self.buf = parsed
                yield op, payload
                if op == 0x8:
                    return
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def _parse_frame(buf: bytes) -> tuple[int, bytes, bytes] | None:
    if len(buf) < 2:
        return None
    op, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = int.from_bytes(buf[2:10], "big"), 10
    if len(buf) < at + n:
        return None
    return op, buf[at : at + n], buf[at + n :]


def _slow_socket(url: str) -> socket.socket:
    """A client socket with a tiny receive buffer, so an unread client backs up quickly."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    return s


async def test_a_slow_client_gets_quotes_conflated_to_the_latest(
    gw: Gateway, publisher: EventPublisher, unique: str
) -> None:
    sym = new_symbol(unique)
    add(gw, sym)
    async with websockets.connect(gw.ws_url, sock=_slow_socket(gw.url), max_queue=1) as ws:
        await subscribe(ws, sym, ["quote"])
        before = gw.stats()
        n = 20_000
        # the client reads nothing meanwhile
        publish_paced(publisher, [quote(sym, i, f"{1000 + i}.1", f"{1000 + i}.2") for i in range(1, n)], 200)
        settled = _settle(gw)
        publisher.publish(quote(sym, n, f"{1000 + n}.1", f"{1000 + n}.2"))  # the latest, after the flood
        publisher.flush()
        wait_for(lambda: gw.stats()["events_in"] > settled["events_in"], "the gateway to read the latest quote")
        after = gw.stats()
        assert after["events_in"] - before["events_in"] > n / 2, after  # the broker delivered most of them
        got = []
        while not got or got[-1]["seq"] != n:
            got.append(await recv_json(ws))
        seqs = [q["seq"] for q in got]
        assert seqs == sorted(set(seqs))  # in order, never an older quote after a newer one
        assert len(got) < n / 2  # most were replaced while the client was not reading
        assert (got[-1]["bid"], got[-1]["ask"]) == (f"{1000 + n}.1", f"{1000 + n}.2")  # and the latest arrived
        assert after["conflated"] - before["conflated"] >= n / 2
        assert after["slow_closed"] == before["slow_closed"]  # conflation never closes a client
        await ws.send(json.dumps({"op": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}


def test_a_client_too_far_behind_on_trades_is_closed_with_4008_and_counted(
    runtime_settings: Settings, publisher: EventPublisher, unique: str
) -> None:
    sym = new_symbol(unique)
    with gateway(runtime_settings, max_pending_trades="500", send_buffer_bytes="4096") as small:
        add(small, sym)

        slow = RawClient(small.url)
        try:
            slow.send({"op": "subscribe", "venue": "kraken", "symbol": sym, "channels": ["trade"]})

            async def run() -> None:
                async with websockets.connect(small.ws_url) as fast:
                    await subscribe(fast, sym, ["trade"])
                    reading = asyncio.create_task(collect(fast, 5000, wait_s=60))  # the fast client reads throughout
                    trades = [trade(sym, i, f"{300 + i}") for i in range(5000)]
                    await asyncio.to_thread(publish_paced, publisher, trades)  # the loop keeps reading meanwhile
                    fast_prices = [e["price"] for e in await reading]
                    assert fast_prices == [str(300 + i) for i in range(5000)]  # a reading client lost nothing

            asyncio.run(run())
            assert small.stats()["slow_closed"] == 1
            frames = list(slow.frames())
            assert json.loads(frames[0][1])["type"] == "ack"
            prices = [json.loads(p)["price"] for op, p in frames[1:] if op == 0x1]
            assert prices == [str(300 + i) for i in range(len(prices))]  # what it got, it got in order
            op, payload = frames[-1]
            assert op == 0x8 and int.from_bytes(payload[:2], "big") == CLOSE_SLOW_CONSUMER
            assert b"slow consumer" in payload[2:]
        finally:
            slow.close()


def test_auth_refusals_name_the_problem(gw: Gateway, runtime_settings: Settings, unique: str) -> None:
    body = {"venue": "kraken", "symbols": [new_symbol(unique)]}
    status, doc = gw.request("POST", "/api/instruments", body)
    assert status == 401 and "bearer token" in doc["error"]
    status, doc = gw.request("POST", "/api/instruments", body, token="wrong-token")
    assert status == 401 and "bearer token" in doc["error"]
    status, doc = gw.request(
        "POST", "/api/instruments", body, token=gw.token, headers={"Origin": "https://evil.example"}
    )
    assert status == 403 and "origin 'https://evil.example'" in doc["error"]
    status, doc = gw.request("POST", "/api/instruments", token=gw.token, raw=b"venue=kraken",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 415 and "application/json" in doc["error"]
    status, doc = gw.request("DELETE", f"/api/instruments/kraken/{new_symbol(unique).replace('/', '-')}")
    assert status == 401
    # the page's own origin may write
    status, doc = gw.request("POST", "/api/instruments", body, token=gw.token, headers={"Origin": gw.url})
    assert status == 201, doc
    # reads are open on loopback
    assert gw.request("GET", "/api/instruments")[0] == 200
    # no token configured: changes are refused, naming the setting; the token never shows in output or logs
    with gateway(runtime_settings, token="") as open_gw:
        status, doc = open_gw.request("POST", "/api/instruments", body, token="anything")
        assert status == 403 and "web.token" in doc["error"]
    # beyond loopback every request needs the token, and the command refuses to start without one
    r = pulse(runtime_settings, "web", "--host", "0.0.0.0", "--port", "0", env={"PULSE_WEB__TOKEN": ""})
    assert r.returncode == 2 and "web.token" in r.stderr
    with gateway(runtime_settings, "--host", "0.0.0.0") as wide:
        status, doc = wide.request("GET", "/api/instruments")
        assert status == 401
        assert wide.request("GET", "/api/instruments", token=TOKEN)[0] == 200
        assert wide.request("GET", "/healthz")[0] == 200  # liveness stays open for probes
        wide.proc.send_signal(15)
        _, err = wide.proc.communicate(timeout=15)
        assert TOKEN not in err


async def test_websocket_refuses_foreign_origins_and_needs_the_token_beyond_loopback(
    gw: Gateway, runtime_settings: Settings
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(gw.ws_url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    async with websockets.connect(gw.ws_url, origin=gw.url) as ok:
        await ok.send(json.dumps({"op": "ping"}))
        assert await recv_json(ok) == {"type": "pong"}
    with gateway(runtime_settings, "--host", "0.0.0.0") as wide:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(wide.ws_url)
        assert refused.value.response.status_code == 401
        async with websockets.connect(wide.ws_url + f"?token={TOKEN}") as ws:
            await ws.send(json.dumps({"op": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}


async def test_a_removed_instrument_can_still_be_unsubscribed(
    gw: Gateway, publisher: EventPublisher, unique: str
) -> None:
    sym = new_symbol(unique)
    add(gw, sym)
    async with websockets.connect(gw.ws_url) as ws:
        await subscribe(ws, sym, ["trade"])
        status, _ = gw.request("DELETE", f"/api/instruments/kraken/{sym.replace('/', '-')}", token=gw.token)
        assert status == 200
        await ws.send(json.dumps({"op": "unsubscribe", "venue": "kraken", "symbol": sym, "channels": ["trade"]}))
        assert (await recv_json(ws))["type"] == "ack"
        publisher.publish(trade(sym, 1))
        publisher.flush()
        await ws.send(json.dumps({"op": "ping", "req_id": 1}))
        await asyncio.sleep(1.0)  # the trade would have arrived by now
        assert await recv_json(ws) == {"type": "pong", "req_id": 1}
        with pytest.raises(TimeoutError):
            await recv_json(ws, 1.0)
