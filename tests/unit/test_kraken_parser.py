"""KrakenFeedParser and the request builders, driven by recorded Kraken v2 frames (one fixture per type)."""

from __future__ import annotations

import calendar
import contextlib
import json
import random
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from ingesters.kraken import protocol
from ingesters.kraken.book import checksum
from ingesters.kraken.parser import KrakenFeedParser, KrakenMessageError, Parsed, SubscriptionAck
from pulse.errors import ConfigError, PulseError
from pulse.models import BookDelta, BookSnapshot, Level, Quote, Ticker, Trade

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kraken"
RECV = 1_700_000_000_123_456_789
D = Decimal


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def parser(depth: int = 10) -> KrakenFeedParser:
    return KrakenFeedParser(depth=depth, clock=lambda: RECV)


def ns(y: int, mo: int, d: int, h: int, mi: int, s: int, micros: int) -> int:
    return calendar.timegm((y, mo, d, h, mi, s)) * 1_000_000_000 + micros * 1000


def instrument(symbol: str, price_precision: int, qty_precision: int) -> str:
    pair = {"symbol": symbol, "price_precision": price_precision, "qty_precision": qty_precision}
    return json.dumps({"channel": "instrument", "type": "update", "data": {"assets": [], "pairs": [pair]}})


def book_frame(kind: str, symbol: str, bids: list, asks: list, crc: int, timestamp: str | None = None) -> str:
    entry: dict = {"symbol": symbol, "bids": [{"price": p, "qty": q} for p, q in bids], "checksum": crc}
    entry["asks"] = [{"price": p, "qty": q} for p, q in asks]
    if timestamp:
        entry["timestamp"] = timestamp
    # Decimals written as JSON numbers, as Kraken does.
    return (
        msgspec.json.Encoder(decimal_format="number")
        .encode({"channel": "book", "type": kind, "data": [entry]})
        .decode()
    )


MATIC_BEST_BID = Level(D("0.5666"), D("4831.75496356"))
MATIC_BEST_ASK = Level(D("0.5668"), D("4410.79769741"))


# ------------------------------------------------------------------------------------------------ trades


def test_trade_fixture():
    parsed = parser().feed(fixture("trade_update"))
    assert parsed == Parsed(
        events=[
            Trade(
                venue="kraken",
                symbol="MATIC/USD",
                ts_event=ns(2023, 9, 25, 7, 49, 37, 708706),
                ts_recv=RECV,
                seq=1,
                price=D("0.5117"),
                size=D("40.0"),
                side="sell",
                trade_id="4665906",
                ord_type="market",
            )
        ]
    )
    assert parsed.events[0].ts_event == 1695628177708706000


def test_trade_batch_and_bytes_input():
    frame = json.dumps(
        {
            "channel": "trade",
            "type": "snapshot",
            "data": [
                {"symbol": "BTC/USD", "side": "buy", "price": 105944.2, "qty": 0.00027625, "ord_type": "limit",
                 "trade_id": 10218208, "timestamp": "2023-10-06T17:35:55.440295Z"},
                {"symbol": "BTC/USD", "side": "sell", "price": 105910.5, "qty": 0.0001246, "ord_type": "market",
                 "trade_id": 10218209, "timestamp": "2023-10-06T17:35:56.123456789Z"},
            ],
        }
    ).encode()  # fmt: skip
    events = parser().feed(frame).events
    assert [(e.trade_id, e.price, e.size, e.side, e.seq) for e in events] == [
        ("10218208", D("105944.2"), D("0.00027625"), "buy", 1),
        ("10218209", D("105910.5"), D("0.0001246"), "sell", 2),
    ]
    assert events[1].ts_event == ns(2023, 10, 6, 17, 35, 56, 0) + 123_456_789


# ------------------------------------------------------------------------------------------------ ticker


def test_ticker_fixture_gives_ticker_and_quote():
    ts = ns(2023, 9, 25, 9, 4, 31, 742648)
    common = {"venue": "kraken", "symbol": "ALGO/USD", "ts_event": ts, "ts_recv": RECV, "seq": 1}
    assert parser().feed(fixture("ticker_snapshot")).events == [
        Ticker(
            **common,
            bid=D("0.10025"),
            bid_size=D("740.0"),
            ask=D("0.10036"),
            ask_size=D("1361.44813783"),
            last=D("0.10035"),
            volume=D("997038.98383185"),
            vwap=D("0.10148"),
            low=D("0.09979"),
            high=D("0.10285"),
            change=D("-0.00017"),
            change_pct=D("-0.17"),
        ),
        Quote(**common, bid=D("0.10025"), bid_size=D("740.0"), ask=D("0.10036"), ask_size=D("1361.44813783")),
    ]


# -------------------------------------------------------------------------------------------------- book


def test_book_snapshot_fixture_with_instrument_precision():
    p = parser()
    assert p.feed(instrument("MATIC/USD", 4, 8)) == Parsed()
    (snap,) = p.feed(fixture("book_snapshot")).events
    assert isinstance(snap, BookSnapshot)
    assert (snap.symbol, snap.seq, snap.depth, snap.checksum) == ("MATIC/USD", 1, 10, 2439117997)
    assert snap.ts_event == ns(2023, 10, 6, 17, 35, 55, 440295)
    assert snap.bids[0] == MATIC_BEST_BID and snap.asks[0] == MATIC_BEST_ASK
    assert snap.bids[6] == Level(D("0.566"), D("18097.1547"))
    assert [lv.price for lv in snap.asks] == [D("0.5668") + D("0.0001") * i for i in range(10)]
    assert (p.checksum_ok, p.checksum_failed, p.precision("MATIC/USD")) == (1, 0, (4, 8))


def test_book_update_fixture():
    p = parser()
    p.feed(instrument("MATIC/USD", 4, 8))
    p.feed(fixture("book_snapshot"))
    parsed = p.feed(fixture("book_update"))
    assert parsed == Parsed(
        events=[
            BookDelta(
                venue="kraken",
                symbol="MATIC/USD",
                ts_event=ns(2023, 10, 6, 17, 35, 55, 440295),
                ts_recv=RECV,
                seq=2,
                bids=(Level(D("0.5657"), D("1098.3947558")),),
                asks=(),
                checksum=2114181697,
                best_bid=MATIC_BEST_BID,
                best_ask=MATIC_BEST_ASK,
            )
        ]
    )
    assert p.book("MATIC/USD").bids()[-1] == (D("0.5657"), D("1098.3947558"))
    assert (p.checksum_ok, p.checksum_failed) == (2, 0)


def test_guide_snapshot_verifies_without_instrument():
    (snap,) = parser().feed(fixture("book_checksum_guide_snapshot")).events
    assert snap.checksum == 3310070434 and snap.ts_event == RECV
    assert snap.bids[3] == Level(D("45281.0"), D("0.10000000"))


def test_checksum_mismatch_drops_book_and_asks_for_resync():
    p = parser()
    p.feed(fixture("book_snapshot"))
    bad = fixture("book_update").replace("2114181697", "2114181698")
    assert p.feed(bad) == Parsed(resync=["MATIC/USD"])
    assert (p.checksum_ok, p.checksum_failed) == (1, 1)
    assert p.book("MATIC/USD") is None
    assert p.feed(fixture("book_update")) == Parsed()  # no book: ignored until a snapshot
    (snap,) = p.feed(fixture("book_snapshot")).events
    assert snap.seq == 2  # sequence numbers keep increasing
    (delta,) = p.feed(fixture("book_update")).events
    assert delta.seq == 3 and (p.checksum_ok, p.checksum_failed) == (3, 1)


def test_snapshot_with_wrong_checksum_is_not_published():
    p = parser()
    p.feed(instrument("MATIC/USD", 4, 8))
    assert p.feed(fixture("book_snapshot").replace("2439117997", "1")) == Parsed(resync=["MATIC/USD"])
    assert p.checksum_failed == 1 and p.book("MATIC/USD") is None


def test_update_before_snapshot_is_ignored():
    p = parser()
    assert p.feed(fixture("book_update")) == Parsed()
    assert (p.checksum_ok, p.checksum_failed) == (0, 0)


def test_snapshot_truncated_to_depth():
    bids = [(D("100.0") - i, D("1.5")) for i in range(12)]
    asks = [(D("101.0") + i, D("2.25")) for i in range(12)]
    crc = checksum(bids, asks, 1, 8)
    p = parser(depth=10)
    (snap,) = p.feed(book_frame("snapshot", "XBT/EUR", bids, asks, crc)).events
    assert len(snap.bids) == len(snap.asks) == 10
    assert snap.bids[-1] == Level(D("91.0"), D("1.5")) and snap.asks[-1] == Level(D("110.0"), D("2.25"))
    # A better bid arrives; the 10th bid falls out of scope without a delete message.
    book_after = [(D("100.5"), D("3")), *bids[:9]]
    (delta,) = p.feed(
        book_frame("update", "XBT/EUR", [(D("100.5"), D("3"))], [], checksum(book_after, asks, 1, 8))
    ).events
    assert delta.best_bid == Level(D("100.5"), D("3"))
    assert p.book("XBT/EUR").bids()[-1] == (D("92.0"), D("1.5"))


def test_precision_derived_from_snapshot_decimals():
    # Without the instrument channel the MATIC book's decimals (4 and 8) reproduce Kraken's number.
    p = parser()
    p.feed(fixture("book_snapshot"))
    assert p.precision("MATIC/USD") == (4, 8) and p.checksum_ok == 1
    assert len(p.feed(fixture("book_update")).events) == 1


def test_precision_search_when_every_quantity_hides_its_trailing_zeros():
    # Real precision (1, 8); on the wire the quantities show at most 2 decimals ("0.1", "0.25").
    bids = [(D("45283.5") - i, D("0.1") * (i + 1)) for i in range(10)]
    asks = [(D("45285.2") + i, D("0.25")) for i in range(10)]
    crc = checksum(bids, asks, 1, 8)
    assert crc != checksum(bids, asks, 1, 2)
    p = parser()
    (snap,) = p.feed(book_frame("snapshot", "BTC/USD", bids, asks, crc)).events
    assert snap.checksum == crc and p.precision("BTC/USD") == (1, 8)
    # An update whose quantity shows more decimals than the snapshot's still verifies.
    new_asks = [(D("45285.2"), D("0.12345678")), *asks[1:]]
    (delta,) = p.feed(book_frame("update", "BTC/USD", [], new_asks[:1], checksum(bids, new_asks, 1, 8))).events
    assert delta.asks == (Level(D("45285.2"), D("0.12345678")),)


def test_derived_precision_widens_on_update():
    # Snapshot quantities all show 1 decimal and 1 happens to reproduce the checksum; an update then needs 8.
    bids = [(D("100") - i, D("1.5")) for i in range(10)]
    asks = [(D("101") + i, D("2.5")) for i in range(10)]
    p = parser()
    p.feed(book_frame("snapshot", "ETH/USD", bids, asks, checksum(bids, asks, 0, 1)))
    assert p.precision("ETH/USD") == (0, 1)
    new_bids = [(D("100"), D("1.00000001")), *bids[1:]]
    (delta,) = p.feed(book_frame("update", "ETH/USD", new_bids[:1], [], checksum(new_bids, asks, 0, 8))).events
    assert delta.checksum == checksum(new_bids, asks, 0, 8)
    assert p.precision("ETH/USD") == (0, 8) and p.checksum_failed == 0


def test_instrument_precision_is_preferred_over_derivation():
    p = parser()
    p.feed(instrument("MATIC/USD", 3, 8))  # wrong on purpose: a derived (4, 8) would have matched
    assert p.feed(fixture("book_snapshot")) == Parsed(resync=["MATIC/USD"])


def test_instrument_arriving_later_replaces_derived_precision():
    p = parser()
    p.feed(fixture("book_snapshot"))
    p.feed(instrument("MATIC/USD", 4, 8))
    assert p.precision("MATIC/USD") == (4, 8)
    assert len(p.feed(fixture("book_update")).events) == 1


def test_instrument_fixture_records_precisions():
    p = parser()
    assert p.feed(fixture("instrument_snapshot")) == Parsed()
    assert p.precision("BTC/USD") == (1, 8) and p.precision("MATIC/GBP") == (4, 8)


def test_invalid_level_leaves_book_untouched():
    p = parser()
    p.feed(fixture("book_snapshot"))
    bad = fixture("book_update").replace('"asks": []', '"asks": [{"price": 0.6, "qty": -1}]')
    with pytest.raises(KrakenMessageError, match="invalid book level"):
        p.feed(bad)
    assert len(p.feed(fixture("book_update")).events) == 1 and p.checksum_failed == 0


# ----------------------------------------------------------------------------------- sequence numbers


def test_seq_per_symbol_and_channel_survives_reset_books():
    p = parser()
    p.feed(fixture("trade_update"))
    p.feed(fixture("book_snapshot"))
    p.feed(fixture("ticker_snapshot"))
    p.reset_books()
    assert p.book("MATIC/USD") is None
    assert p.feed(fixture("book_update")) == Parsed()  # book gone
    assert [e.seq for e in p.feed(fixture("book_snapshot")).events] == [2]
    assert [e.seq for e in p.feed(fixture("trade_update")).events] == [2]
    assert [(type(e).__name__, e.seq) for e in p.feed(fixture("ticker_snapshot")).events] == [
        ("Ticker", 2),
        ("Quote", 2),
    ]
    p.reset_books("MATIC/USD")
    assert p.book("MATIC/USD") is None


# ----------------------------------------------------------------------------------- control messages


def test_subscribe_ack():
    assert parser().feed(fixture("subscribe_ack")).acks == [
        SubscriptionAck(method="subscribe", channel="book", symbol="ALGO/USD", success=True, error=None, req_id=None)
    ]


def test_subscribe_error_for_unknown_pair():
    # Kraken's refusal has no "result": the pair is at the top level, the channel is not named.
    assert parser().feed(fixture("subscribe_error")).acks == [
        SubscriptionAck(
            method="subscribe",
            channel="",
            symbol="XBT/USD",
            success=False,
            error="Currency pair not supported XBT/USD",
            req_id=None,
        )
    ]


def test_unsubscribe_ack_with_req_id():
    frame = fixture("unsubscribe_ack").replace('"success": true', '"success": true, "req_id": 42')
    assert parser().feed(frame).acks == [
        SubscriptionAck(method="unsubscribe", channel="ticker", symbol="ALGO/USD", success=True, error=None, req_id=42)
    ]


def test_heartbeat_pong_and_status():
    p = parser()
    assert p.feed(fixture("heartbeat")) == Parsed(heartbeat=True)
    assert p.feed(fixture("pong")) == Parsed(pong=True)
    assert p.feed(fixture("status")) == Parsed()


# ----------------------------------------------------------------------------------------- malformed

MALFORMED = [
    "not json",
    "",
    "[1, 2]",
    "{}",
    '{"channel": "ohlc", "type": "update", "data": []}',
    '{"channel": "trade", "type": "partial", "data": []}',
    '{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "up", "price": 1, "qty": 1,'
    ' "ord_type": "limit", "trade_id": 1, "timestamp": "2023-10-06T17:35:55Z"}]}',
    '{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy", "price": 1, "qty": 1,'
    ' "ord_type": "limit", "timestamp": "2023-10-06T17:35:55Z"}]}',
    '{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy", "price": "NaN", "qty": 1,'
    ' "ord_type": "limit", "trade_id": 1, "timestamp": "2023-10-06T17:35:55Z"}]}',
    '{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy", "price": 1, "qty": 1,'
    ' "ord_type": "limit", "trade_id": 1, "timestamp": "2023-13-06T17:35:55Z"}]}',
    '{"channel": "trade", "type": "update", "data": [{"symbol": "not a pair", "side": "buy", "price": 1, "qty": 1,'
    ' "ord_type": "limit", "trade_id": 1, "timestamp": "2023-10-06T17:35:55Z"}]}',
    '{"channel": "book", "type": "snapshot", "data": [{"symbol": "BTC/USD", "bids": [{"price": "Infinity",'
    ' "qty": 1}], "asks": [], "checksum": 0}]}',
    '{"channel": "ticker", "type": "update", "data": [{"symbol": "BTC/USD"}]}',
    '{"channel": "instrument", "type": "snapshot", "data": {"pairs": [{"symbol": "BTC/USD", "price_precision": -1,'
    ' "qty_precision": 8}]}}',
    '{"method": "add_order", "success": true}',
    '{"method": "subscribe"}',
    '{"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "checksum": -1}]}',
    '{"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "checksum": 4294967296}]}',
    '{"channel": "heartbeat", "x": "\ud800"}',
    b'{"channel": "trade", "type": "update", "data": [{"symbol": "BTC/\xff"}]}',
    b"\xff\xfe",
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frames_raise_kraken_message_error(frame):
    with pytest.raises(KrakenMessageError):
        parser().feed(frame)


def test_non_text_frame_is_refused():
    with pytest.raises(KrakenMessageError):
        parser().feed(12)  # type: ignore[arg-type]
    assert issubclass(KrakenMessageError, PulseError)


def test_truncated_and_mutated_frames_never_raise_anything_else():
    names = [p.stem for p in FIXTURES.glob("*.json")]
    rnd = random.Random(7)
    for name in names:
        text = fixture(name)
        variants = [text[:i] for i in range(len(text))]
        for _ in range(200):
            i = rnd.randrange(len(text))
            variants.append(text[:i] + rnd.choice('{}[]":,0-.eE9aZ ') + text[i + 1 :])
            raw = bytearray(text.encode())
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
            variants.append(bytes(raw))
        for variant in variants:
            p = parser()
            p.feed(fixture("book_snapshot"))
            with contextlib.suppress(KrakenMessageError):
                p.feed(variant)


def test_invalid_depth_is_refused():
    with pytest.raises(ConfigError):
        KrakenFeedParser(depth=7)


# ------------------------------------------------------------------------------------------- requests


def test_request_builders():
    assert protocol.subscribe("book", ["BTC/USD", "ETH/USD"], depth=25, req_id=7) == (
        '{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD","ETH/USD"],"depth":25,'
        '"snapshot":true},"req_id":7}'
    )
    assert protocol.subscribe("trade", ["btc/usd"], req_id=1, snapshot=False) == (
        '{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"],"snapshot":false},"req_id":1}'
    )
    assert protocol.subscribe("instrument", ["BTC/USD"], req_id=2) == (
        '{"method":"subscribe","params":{"channel":"instrument","snapshot":true},"req_id":2}'
    )
    assert protocol.unsubscribe("book", ["BTC/USD"], depth=10, req_id=3) == (
        '{"method":"unsubscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10},"req_id":3}'
    )
    assert protocol.ping(101) == '{"method":"ping","req_id":101}'


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channel": "ohlc", "symbols": ["BTC/USD"]},
        {"channel": "book", "symbols": ["BTC/USD"], "depth": 20},
        {"channel": "trade", "symbols": ["BTC/USD"], "depth": 10},
        {"channel": "trade", "symbols": []},
        {"channel": "trade", "symbols": "BTC/USD"},
        {"channel": "trade", "symbols": ["BTC/USD"], "req_id": -1},
    ],
)
def test_request_builders_refuse_what_kraken_would(kwargs):
    with pytest.raises(PulseError):
        protocol.subscribe(**{"req_id": 1, **kwargs})


def test_rfc3339():
    parse = protocol.parse_rfc3339_ns
    base = calendar.timegm((2023, 9, 25, 7, 49, 37)) * 1_000_000_000
    assert parse("2023-09-25T07:49:37.708706Z") == base + 708_706_000
    assert parse("2023-09-25T07:49:37Z") == base
    assert parse("2023-09-25T07:49:37.1Z") == base + 100_000_000
    assert parse("2023-09-25T07:49:37.123456789Z") == base + 123_456_789
    assert parse("2023-09-25T09:49:37.5+02:00") == base + 500_000_000
    assert parse("2023-09-25T07:19:37-00:30") == base
    for bad in ["2023-09-25", "2023-02-30T00:00:00Z", "2023-09-25T07:49:37.Z", "2023-09-25T07:49:37.1234567890Z",
                "2023-09-25T07:49:37", "2023-09-25T07:49:37.\uff17Z", "2023-09-25T24:00:00Z"]:  # fmt: skip
        with pytest.raises(ValueError):
            parse(bad)
    assert protocol.format_rfc3339_ns(base + 708_706_123) == "2023-09-25T07:49:37.708706Z"
    assert parse(protocol.format_rfc3339_ns(base + 5_000)) == base + 5_000
