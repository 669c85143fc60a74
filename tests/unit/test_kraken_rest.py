"""Kraken's REST ``Trades`` endpoint: the documented answer parsed exactly, errors named (retryable or not), and
the client paging through the local venue's history — the trades it streamed and those it made with nobody
connected — each trade once, in a range, through injected rate limits."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect

from ingesters.kraken import protocol
from ingesters.kraken.rest import KrakenRest, KrakenRestError, parse_trades, rest_pair
from ingesters.kraken.simulator import KrakenSimulator
from pulse.errors import ConfigError

# Kraken's "Get Recent Trades" example answer (docs.kraken.com, REST API → Market Data), byte for byte in content
DOC_EXAMPLE = b"""{"error": [], "result": {"XXBTZUSD": [
 ["30243.40000", "0.34507674", 1688669597.8277369, "b", "m", "", 61044952],
 ["30243.30000", "0.00376960", 1688669598.2804112, "s", "l", "", 61044953],
 ["30243.30000", "0.01235716", 1688669602.698379, "s", "m", "", 61044956]],
 "last": "1688671969993150842"}}"""


def test_the_documented_answer_parses_exactly() -> None:
    trades, last = parse_trades(DOC_EXAMPLE, "BTC/USD", ts_recv=7)
    assert last == 1688671969993150842
    assert [(t.trade_id, t.price, t.size, t.side, t.ord_type, t.ts_event) for t in trades] == [
        ("61044952", Decimal("30243.40000"), Decimal("0.34507674"), "buy", "market", 1688669597827736900),
        ("61044953", Decimal("30243.30000"), Decimal("0.00376960"), "sell", "limit", 1688669598280411200),
        ("61044956", Decimal("30243.30000"), Decimal("0.01235716"), "sell", "market", 1688669602698379000),
    ]
    assert {(t.venue, t.symbol, t.ts_recv) for t in trades} == {("kraken", "BTC/USD", 7)}


def test_rest_pair_names_use_the_legacy_codes() -> None:
    assert rest_pair("BTC/USD") == "XBTUSD" and rest_pair("XBT/EUR") == "XBTEUR"
    assert rest_pair("DOGE/USD") == "XDGUSD" and rest_pair("SOL/USD") == "SOLUSD"


@pytest.mark.parametrize(
    ("body", "retryable", "words"),
    [
        (b'{"error": ["EQuery:Unknown asset pair"]}', False, "EQuery:Unknown asset pair"),
        (b'{"error": ["EAPI:Rate limit exceeded"]}', True, "Rate limit"),
        (b'{"error": ["EService:Unavailable"]}', True, "Unavailable"),
        (
            b'{"error": [], "result": {"XXBTZUSD": [["1.0", "2.0", 1.5, "b", "m", ""]], "last": "1"}}',
            False,
            "malformed",
        ),
        (b'{"error": [], "result": {"XXBTZUSD": [["1.0", "2.0", 1.5, "x", "m", "", 3]], "last": "1"}}', False, "side"),
        (b'{"error": [], "result": {"XXBTZUSD": [["-1", "2.0", 1.5, "b", "m", "", 3]], "last": "1"}}', False, "price"),
        (b'{"error": [], "result": {"XXBTZUSD": []}}', False, "last"),
        (b"<html>busy</html>", False, "malformed"),
    ],
)
def test_errors_and_malformed_answers_are_named(body: bytes, retryable: bool, words: str) -> None:
    with pytest.raises(KrakenRestError, match=words) as info:
        parse_trades(body, "BTC/USD", 0)
    assert info.value.retryable is retryable


def test_a_rest_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kraken\.rest_url"):
        KrakenRest("ftp://example.invalid")


async def test_the_client_pages_through_the_local_venues_history() -> None:
    sim = KrakenSimulator(symbols=["BTC/USD", "ETH/USD"], rate=3000, seed=3, max_trades=2300, keep_trading=True)
    await sim.start()
    try:
        async with connect(sim.url) as ws:  # subscribe, then leave: the market trades on with nobody connected
            await ws.send(protocol.subscribe("trade", ["BTC/USD"], req_id=1, snapshot=False))
            async with asyncio.timeout(20):
                while json.loads(await ws.recv()).get("channel") != "trade":
                    pass
        async with asyncio.timeout(60):
            while len(sim.tape.trade_ids("BTC/USD")) < 2300:  # noqa: ASYNC110 — the venue's market loop fills it
                await asyncio.sleep(0.05)
        assert len(sim.sent_trades) < 2300  # most were made with no client: only the REST history has them
        sim.tape.fail_next = 2  # two rate-limit answers first: retried
        async with KrakenRest(sim.rest_url, interval_s=0, backoff_max_s=0.01) as rest:
            every = await rest.trades("BTC/USD", 0, 2**62)
            assert (
                rest.retries == 2 and rest.requests == 2 + 3
            )  # pages of 1000 (1-1000, 1000-1999) and a short last one
            assert [int(t.trade_id) for t in every] == sim.tape.trade_ids("BTC/USD") == list(range(1, 2301))
            streamed = {(str(t.trade_id), t.price, t.side) for t in sim.sent_trades}
            assert streamed <= {(t.trade_id, t.price, t.side) for t in every}  # same ids, prices, sides
            lo, hi = every[500].ts_event, every[1700].ts_event
            window = await rest.trades("BTC/USD", lo, hi)
            assert [t.trade_id for t in window] == [t.trade_id for t in every if lo <= t.ts_event < hi]
            with pytest.raises(KrakenRestError, match="Unknown asset pair"):
                await rest.trades("SOL/USD", 0, 2**62)  # not listed by this venue
        assert sim.tape.trade_ids("ETH/USD") == []  # never subscribed: it never traded
    finally:
        await sim.stop()
