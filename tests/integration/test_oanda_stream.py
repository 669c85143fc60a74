"""OANDA pricing stream end to end against the local OANDA venue (ingesters.oanda.simulator): real HTTP,
real chunked bodies, real status codes — no mocks."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ingesters.oanda.parser import OandaMessageError, OandaStreamParser, ParsedLine
from ingesters.oanda.simulator import OandaFaults, OandaSimulator
from ingesters.oanda.stream import InvalidInstrumentError, OandaStream, OandaTransportError, StaleStreamError
from pulse.errors import FatalVenueError
from pulse.models import Level

TOKEN = "s3cr3t-0123456789abcdef-TOKEN"
ACCOUNT = "101-004-7654321-001"


async def simulator(**kw: object) -> OandaSimulator:
    args: dict[str, object] = dict(
        token=TOKEN, account_id=ACCOUNT, instruments=["EUR_USD", "USD_JPY", "GBP_USD"], rate=200.0
    )
    args.update(kw)
    sim = OandaSimulator(**args)  # type: ignore[arg-type]
    await sim.start()
    return sim


@pytest.fixture
async def sim() -> AsyncIterator[OandaSimulator]:
    s = await simulator(heartbeat_s=0.05)
    yield s
    await s.stop()


def stream_for(sim: OandaSimulator, instruments: list[str], **kw: object) -> OandaStream:
    args: dict[str, object] = dict(account_id=sim.account_id, token=sim.token, api_url=sim.base_url)
    args.update(kw)
    return OandaStream(instruments=instruments, **args)  # type: ignore[arg-type]


def expected_from_wire(line: bytes) -> tuple[str, tuple[Level, ...], tuple[Level, ...], bool]:
    msg = json.loads(line)
    bids = tuple(Level(Decimal(b["price"]), Decimal(b["liquidity"])) for b in msg["bids"])
    asks = tuple(Level(Decimal(a["price"]), Decimal(a["liquidity"])) for a in msg["asks"])
    return msg["instrument"].replace("_", "/"), bids, asks, msg["tradeable"]


async def test_quotes_arrive_with_exact_prices(sim: OandaSimulator) -> None:
    parser = OandaStreamParser()
    raw: list[bytes] = []
    parsed: list[ParsedLine] = []
    async with stream_for(sim, ["EUR_USD", "USD_JPY"]) as stream:
        async for line in stream.lines():
            raw.append(line)
            parsed.append(parser.feed_line(line))
            if len(parsed) >= 60 and any(p.heartbeat for p in parsed):
                break
    # The snapshot: one price per instrument at the walk's known starting point.
    eur, jpy = parsed[0].event, parsed[1].event
    assert eur is not None and jpy is not None
    assert (eur.symbol, eur.bid, eur.ask, eur.bid_size, eur.ask_size) == (
        "EUR/USD",
        Decimal("1.09993"),
        Decimal("1.10007"),
        Decimal("1000000"),
        Decimal("1000000"),
    )
    assert eur.bids == (
        Level(Decimal("1.09993"), Decimal("1000000")),
        Level(Decimal("1.09992"), Decimal("2000000")),
    )
    assert eur.asks == (
        Level(Decimal("1.10007"), Decimal("1000000")),
        Level(Decimal("1.10008"), Decimal("2000000")),
    )
    assert (jpy.symbol, jpy.bid, jpy.ask) == ("USD/JPY", Decimal("149.992"), Decimal("150.008"))
    # Every line that went out came back, in order, with identical prices and ladders.
    assert raw == list(sim.sent)[: len(raw)]
    seqs: dict[str, int] = {}
    for line, p in zip(raw, parsed, strict=True):
        if p.heartbeat:
            assert p.event is None and b'"HEARTBEAT"' in line
            continue
        q = p.event
        assert q is not None
        symbol, bids, asks, tradeable = expected_from_wire(line)
        assert (q.symbol, q.bids, q.asks, q.tradeable) == (symbol, bids, asks, tradeable)
        assert (q.bid, q.bid_size, q.ask, q.ask_size) == (bids[0].price, bids[0].size, asks[0].price, asks[0].size)
        assert q.bid < q.ask
        assert -q.bid.as_tuple().exponent == (3 if symbol == "USD/JPY" else 5)  # type: ignore[operator]
        assert q.seq == seqs.get(symbol, 0) + 1
        seqs[symbol] = q.seq
        assert abs(q.ts_recv - q.ts_event) < 5_000_000_000
    assert set(seqs) == {"EUR/USD", "USD/JPY"}


async def test_lines_reassembled_when_the_body_comes_in_tiny_chunks() -> None:
    sim = await simulator(faults=OandaFaults(chunk_bytes=5), heartbeat_s=0.05)
    try:
        parser = OandaStreamParser()
        got = []
        async with stream_for(sim, ["EUR_USD", "GBP_USD", "USD_JPY"]) as stream:
            async for line in stream.lines():
                got.append(line)
                parser.feed_line(line)
                if len(got) == 40:
                    break
        assert got == list(sim.sent)[:40]
    finally:
        await sim.stop()


async def test_wrong_token_is_fatal_and_never_echoed(sim: OandaSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "WRONG-" + TOKEN
    stream = OandaStream(account_id=ACCOUNT, token=bad, instruments=["EUR_USD"], api_url=sim.base_url)
    with pytest.raises(FatalVenueError) as info:
        async with stream:
            pass
    message = str(info.value)
    assert message == (
        "OANDA rejected the token (setting oanda.token / OANDA_TOKEN): "
        "401 Insufficient authorization to perform request."
    )
    for text in (message, repr(info.value), repr(stream), caplog.text):
        assert bad not in text and TOKEN not in text
    assert sim.stats.rejected_auth == 1 and sim.stats.connections == 0


async def test_unknown_instrument_is_named(sim: OandaSimulator) -> None:
    stream = stream_for(sim, ["EUR_USD", "FOO_BAR", "GBP_USD"])
    with pytest.raises(InvalidInstrumentError) as info:
        await stream.open()
    assert info.value.instruments == ("FOO_BAR",)
    assert not isinstance(info.value, FatalVenueError)
    assert "FOO_BAR" in str(info.value) and "400" in str(info.value)
    # The caller drops it and reconnects with the others.
    remaining = [i for i in stream.instruments if i not in info.value.instruments]
    async with stream_for(sim, remaining) as retry:
        first = [line async for line in _take(retry, 2)]
    assert [json.loads(x)["instrument"] for x in first] == ["EUR_USD", "GBP_USD"]
    assert sim.stats.rejected_instruments == 1


async def _take(stream: OandaStream, n: int) -> AsyncIterator[bytes]:
    count = 0
    async for line in stream.lines():
        yield line
        count += 1
        if count == n:
            return


async def test_wrong_account_is_fatal(sim: OandaSimulator) -> None:
    stream = OandaStream(account_id="101-004-0000000-009", token=TOKEN, instruments=["EUR_USD"], api_url=sim.base_url)
    with pytest.raises(FatalVenueError, match="403"):
        await stream.open()


async def test_stall_raises_stale_within_the_timeout() -> None:
    sim = await simulator(faults=OandaFaults(stall_after=5), heartbeat_s=0.05)
    try:
        stream = stream_for(sim, ["EUR_USD"], stale_after_s=0.5)
        got = 0
        last = time.monotonic()
        with pytest.raises(StaleStreamError, match=r"no data or heartbeat for 0\.5s"):
            async with stream:
                async for _ in stream.lines():
                    got += 1
                    last = time.monotonic()
        waited = time.monotonic() - last
        assert got == 5
        assert 0.45 <= waited < 1.0
        assert sim.stats.stalls == 1
    finally:
        await sim.stop()


async def test_disconnect_ends_the_iterator_with_a_transport_error() -> None:
    sim = await simulator(faults=OandaFaults(disconnect_after=25, connections=1), heartbeat_s=0.05)
    try:
        parser = OandaStreamParser()
        got: list[bytes] = []
        with pytest.raises(OandaTransportError) as info:
            async with stream_for(sim, ["EUR_USD", "USD_JPY"]) as stream:
                async for line in stream.lines():
                    got.append(line)
                    parser.feed_line(line)
        assert not isinstance(info.value, StaleStreamError)
        assert info.value.retryable
        assert got == list(sim.sent)[:25] and len(got) == 25
        assert sim.stats.disconnects == 1
        # Reconnecting with the same parser: sequences keep rising, the walk continues.
        before = parser.last_seq("EUR/USD")
        async with stream_for(sim, ["EUR_USD", "USD_JPY"]) as again:
            async for line in _take(again, 4):
                out = parser.feed_line(line)
                if out.event is not None and out.event.symbol == "EUR/USD":
                    assert out.event.seq > before
        assert sim.stats.connections == 2 and sim.stats.disconnects == 1
    finally:
        await sim.stop()


async def test_malformed_lines_are_reported_and_the_stream_continues() -> None:
    sim = await simulator(faults=OandaFaults(malformed_every=7), heartbeat_s=0.05)
    try:
        parser = OandaStreamParser()
        errors: list[OandaMessageError] = []
        good = 0
        async with stream_for(sim, ["EUR_USD"]) as stream:
            async for line in _take(stream, 70):
                try:
                    parser.feed_line(line)
                    good += 1
                except OandaMessageError as exc:
                    errors.append(exc)
        assert len(errors) == 10 and good == 60
        assert sim.stats.malformed >= 10
        assert errors[0].raw == b'{"type":"PRICE","instrument":"EUR_'
    finally:
        await sim.stop()


async def test_closed_market_sends_non_tradeable_snapshot_then_heartbeats() -> None:
    sim = await simulator(faults=OandaFaults(closed=True), heartbeat_s=0.05)
    try:
        parser = OandaStreamParser()
        async with stream_for(sim, ["EUR_USD", "USD_JPY"]) as stream:
            out = [parser.feed_line(line) async for line in _take(stream, 6)]
        assert [o.tradeable for o in out[:2]] == [False, False]
        assert all(o.event is not None and not o.event.tradeable for o in out[:2])
        assert all(o.heartbeat for o in out[2:])
        assert sim.stats.non_tradeable_prices == 2 and sim.stats.prices == 2
    finally:
        await sim.stop()


async def test_server_errors_are_retryable_and_client_errors_fatal() -> None:
    sim = await simulator(faults=OandaFaults(reject_status=503, connections=1), heartbeat_s=0.05)
    try:
        with pytest.raises(OandaTransportError) as info:
            await stream_for(sim, ["EUR_USD"]).open()
        assert info.value.status == 503 and "Injected failure" in str(info.value)
        async with stream_for(sim, ["EUR_USD"]) as ok:  # second attempt is served
            assert len([line async for line in _take(ok, 1)]) == 1
    finally:
        await sim.stop()
    sim = await simulator(faults=OandaFaults(reject_status=405))
    try:
        with pytest.raises(FatalVenueError, match="405"):
            await stream_for(sim, ["EUR_USD"]).open()
    finally:
        await sim.stop()


async def test_nothing_listening_is_a_transport_error() -> None:
    sim = await simulator()
    url = sim.base_url
    await sim.stop()
    with pytest.raises(OandaTransportError):
        await OandaStream(account_id=ACCOUNT, token=TOKEN, instruments=["EUR_USD"], api_url=url).open()


async def test_a_stream_is_used_once() -> None:
    sim = await simulator()
    try:
        stream = stream_for(sim, ["EUR_USD"])
        async with stream:
            pass
        with pytest.raises(RuntimeError):
            await stream.open()
    finally:
        await sim.stop()


async def test_simulator_rate_is_respected() -> None:
    sim = await simulator(rate=100.0, heartbeat_s=10.0)
    try:
        async with stream_for(sim, ["EUR_USD", "USD_JPY"]) as stream:
            start = asyncio.get_running_loop().time()
            async for _ in _take(stream, 52):  # 2 snapshot prices + 50 at 100/s ≈ 0.5 s
                pass
            elapsed = asyncio.get_running_loop().time() - start
        assert 0.4 <= elapsed < 1.0
    finally:
        await sim.stop()
