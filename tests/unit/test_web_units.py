"""The console's pure parts: control-message parsing, the hub's bounds, resolution picking, weekly roll-up."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sinks.postgres.candles import CandleRow
from web.data import _weekly, pick_resolution
from web.hub import Hub
from web.protocol import ProtocolError, parse_control
from web.security import is_loopback

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


def test_control_messages_are_parsed_and_bad_ones_named() -> None:
    m = parse_control('{"op": "subscribe", "venue": "kraken", "symbol": "BTC/USD", "channels": ["trade"], "req_id": 4}')
    assert (m.op, m.venue, m.symbol, m.channels, m.req_id) == ("subscribe", "kraken", "BTC/USD", ["trade"], 4)
    assert parse_control('{"op": "subscribe", "channels": ["alerts", "fills"]}').channels == ["alerts", "fills"]
    for text, words, req_id in [
        ("{not json", "invalid JSON", None),
        ("[1, 2]", "Expected `object`, got `array`", None),
        ('{"op": "subscribe", "channels": ["trade"], "req_id": 9}', "venue and symbol are required", 9),
        ('{"op": "subscribe", "venue": "kraken", "symbol": "X/Y", "channels": []}', "at least one", None),
        ('{"op": "subscribe", "venue": "kraken", "symbol": "X/Y", "channels": ["trade", "trade"]}', "twice", None),
        ('{"op": "subscribe", "venue": "kraken", "symbol": "X/Y", "channels": ["book"]}', "unknown channel", None),
        ('{"op": "subscribe", "extra": 1, "req_id": "a"}', "invalid control message", "a"),
        ("x" * 5000, "too large", None),
    ]:
        with pytest.raises(ProtocolError) as err:
            parse_control(text)
        assert words in str(err.value) and err.value.req_id == req_id, text


def _conflation_and_bounds(hub: Hub) -> None:
    enc = hub.encode
    box = hub.outbox()
    closed: list[str] = []
    box.on_give_up = closed.append
    assert hub.subscribe(box, ["q", "t"]) == []
    hub.dispatch("q", enc("q1"), conflate=True, remember=True)
    hub.dispatch("t", enc("t1"), conflate=False, remember=True)
    hub.dispatch("q", enc("q2"), conflate=True, remember=True)  # replaces q1, keeping its place before t1
    assert box.take() == [enc("q2"), enc("t1")] and hub.stats.conflated == 1
    for i in range(12):  # a burst to an idle writer: up to 4 x the bound waits, the client is not at fault
        hub.dispatch("t", enc(f"t{i}"), conflate=False, remember=True)
    assert closed == [] and box.trades == 12
    hub.dispatch("t", enc("t12"), conflate=False, remember=True)  # past the hard bound
    assert closed == ["slow consumer: more than 3 events waiting"] and hub.stats.slow_closed == 1
    assert box.pending == {} and hub.subscribers == {}  # nothing kept for it any more
    stuck = hub.outbox()
    stuck.on_give_up = closed.append
    hub.subscribe(stuck, ["t"])
    stuck.busy_since = time.monotonic() - 5  # its writer has been blocked on the socket for 5 s
    for i in range(4):
        hub.dispatch("t", enc(f"s{i}"), conflate=False, remember=True)
    assert len(closed) == 2 and stuck.closed_reason is not None  # the fourth waiting trade: too far behind
    late = hub.outbox()
    assert hub.subscribe(late, ["q", "t"]) == [enc("q2"), enc("s3")]  # the last values, sent first


def test_quotes_conflate_in_place_and_trades_are_bounded() -> None:
    _conflation_and_bounds(Hub(max_pending=3, direct=False))

    async def direct() -> None:  # the direct writer schedules its flush on the running loop
        _conflation_and_bounds(Hub(max_pending=3, direct=True))

    asyncio.run(direct())


def _frames(data: bytes) -> list[str]:
    """Unmasked server text frames (RFC 6455 5.2) → their texts; every byte must belong to a frame."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0x81  # FIN, text
        n, i = data[i + 1], i + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        out.append(data[i : i + n].decode())
        i += n
    return out


def test_direct_fanout_writes_each_client_once_per_burst_and_holds_a_full_socket() -> None:
    """Real sockets: the hub writes whole frames, one write per client per burst; a client whose socket is full
    is blocked (its frames wait, quotes conflate) and gets everything once it reads again."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(max_pending=100_000, direct=True)
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
        writes: list[int] = []
        real_write = transport.write
        transport.write = lambda data: (writes.append(len(data)), real_write(data))[1]  # type: ignore[method-assign]
        box = hub.outbox()
        box.transport = transport
        hub.subscribe(box, ["q", "t"])
        texts = ["x" * 10, "y" * 300, "z" * 70_000]  # the three length encodings
        for text in texts:
            hub.dispatch("t", hub.encode(text), conflate=False, remember=True)
        await asyncio.sleep(0)
        assert len(writes) == 1 and hub.stats.delivered == 3
        got = b""
        while len(got) < writes[0]:
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                got += theirs.recv(1 << 20)
        assert _frames(got) == texts
        # the client stops reading: its socket fills, the hub blocks it and keeps its frames
        big = "b" * 60_000
        while not box.blocked:
            hub.dispatch("t", hub.encode(big), conflate=False, remember=True)
            await asyncio.sleep(0)
        assert box.busy_since is not None
        sent = hub.stats.delivered
        hub.dispatch("t", hub.encode("after"), conflate=False, remember=True)
        for i in range(5):
            hub.dispatch("q", hub.encode(f"quote{i}"), conflate=True, remember=True)
        await asyncio.sleep(0.05)
        assert hub.stats.delivered == sent and len(box.pending) == 2  # waiting: the trade, the latest quote
        blocked_at = box.busy_since
        received = b""
        while True:  # the client reads again, slowly: progress, so it is not "stuck"; then everything arrives
            await asyncio.sleep(0.03)
            with contextlib.suppress(BlockingIOError):
                received += theirs.recv(16 * 1024)
            if box.blocked and box.busy_since is not None and box.busy_since > blocked_at:
                blocked_at = -1.0  # seen: the time it counts as stuck from moved on with the reading
            if received.endswith(b"quote4"):
                break
        assert blocked_at == -1.0
        assert not box.blocked and box.busy_since is None and box.pending == {}
        tail = _frames(received)[-2:]
        assert tail == ["after", "quote4"]
        transport.close()
        theirs.close()

    asyncio.run(run())


def test_the_resolution_is_the_finest_with_at_most_n_buckets() -> None:
    day = timedelta(days=1)
    assert pick_resolution(T0, T0 + 30 * day, 4) == "1w"
    assert pick_resolution(T0, T0 + 30 * day, 30) == "1d"
    assert pick_resolution(T0, T0 + day, 24) == "1h"
    assert pick_resolution(T0, T0 + day, 288) == "5m"
    assert pick_resolution(T0, T0 + timedelta(hours=2), 120) == "1m"
    assert pick_resolution(T0, T0 + timedelta(minutes=3), 200) == "tick"


def test_weekly_candles_roll_up_the_days_exactly() -> None:
    d = [CandleRow(T0 + timedelta(days=i), Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v), n)
         for i, (o, h, lo, c, v, n) in enumerate([("10", "12", "9", "11", "1.5", 3), ("11", "15", "10.5", "14", "2", 4),
                                                  ("14", "14", "8", "9", "0.25", 1)])]  # fmt: skip
    d.append(CandleRow(T0 + timedelta(days=7), Decimal(9), Decimal(9), Decimal(9), Decimal(9), None, 1))
    weeks = _weekly(d)
    assert [(w.bucket, w.open, w.high, w.low, w.close, w.volume, w.ticks) for w in weeks] == [
        (T0, Decimal(10), Decimal(15), Decimal(8), Decimal(9), Decimal("3.75"), 8),
        (T0 + timedelta(days=7), Decimal(9), Decimal(9), Decimal(9), Decimal(9), None, 1),
    ]


def test_loopback_is_what_the_open_read_rule_trusts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")
