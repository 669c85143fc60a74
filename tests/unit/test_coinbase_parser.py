"""Coinbase Advanced Trade: the pure parser on one fixture per message type (the documented examples), sequence
gaps, malformed messages, the symbol rules, the subscribe messages and the demo plan."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from ingesters.coinbase import protocol
from ingesters.coinbase.parser import CoinbaseMessageError, CoinbaseParser
from ingesters.coinbase.schemas import format_time, parse_time, products_decoder
from ingesters.coinbase.simulator_market import MALFORMED_FRAMES
from ingesters.coinbase.symbols import precisions_of, resolve, shipped_rules
from pulse.errors import SymbolError
from pulse.instruments import parse_instrument
from pulse.models import BookDelta, BookSnapshot, Level, Quote, Ticker, Trade

FIX = Path(__file__).parents[1] / "fixtures" / "coinbase"
RECV = 1_700_000_000_000_000_000
D = Decimal


def fixture(name: str) -> bytes:
    return (FIX / f"{name}.json").read_bytes()


def ns(text: str) -> int:
    return parse_time(text)


def parser(*books: str) -> CoinbaseParser:
    p = CoinbaseParser(clock=lambda: RECV, depth=2)
    for b in books:
        p.track_book(b)
    return p


def with_seq(name: str, seq: int) -> bytes:
    doc = msgspec.json.decode(fixture(name))
    doc["sequence_num"] = seq
    return msgspec.json.encode(doc)


def test_times_are_exact_nanoseconds() -> None:
    assert parse_time("2023-02-09T20:32:50.714964855Z") == 1675974770_714964855
    assert parse_time("2019-08-14T20:42:27.265Z") == 1565815347_265000000
    assert parse_time("1970-01-01T00:00:00Z") == 0
    assert format_time(1675974770_714964855) == "2023-02-09T20:32:50.714964855Z"
    for bad in (
        "2023-02-09T20:32:50+01:00",
        "2023-02-09 20:32:50Z",
        "2023-02-09T20:32:50.Z",
        "2023-02-09T20:32:50.1234567890Z",
    ):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_level2_snapshot_then_update() -> None:
    p = parser("BTC/USD")
    out = p.feed(fixture("l2_snapshot"))
    assert out.channel == "l2_data" and out.snapshots == ["BTC/USD"]
    assert out.events == [
        BookSnapshot(venue="coinbase", symbol="BTC/USD", ts_event=ns("2023-02-09T20:32:50.714964855Z"), ts_recv=RECV,
                     seq=1, depth=2, bids=(Level(D("21921.73"), D("0.06317902")), Level(D("21921.3"), D("0.02"))),
                     asks=(Level(D("21922.63"), D("0.0161")), Level(D("21923.1"), D("0.5"))))
    ]  # fmt: skip
    out = p.feed(fixture("l2_update"))
    assert out.events == [
        BookDelta(venue="coinbase", symbol="BTC/USD", ts_event=ns("2023-02-09T20:32:51.001288Z"), ts_recv=RECV, seq=2,
                  bids=(Level(D("21921.73"), D("0")), Level(D("21921.5"), D("1.25"))),
                  asks=(Level(D("21922.63"), D("0.02")),),
                  best_bid=Level(D("21921.5"), D("1.25")), best_ask=Level(D("21922.63"), D("0.02")))
    ]  # fmt: skip
    bids, asks = p.book("BTC/USD").levels()
    assert bids == [(D("21921.5"), D("1.25")), (D("21921.3"), D("0.02")), (D("21920.89"), D("0.3"))]
    assert asks == [(D("21922.63"), D("0.02")), (D("21923.1"), D("0.5"))]


def test_level2_updates_wait_for_a_snapshot_and_untracked_books_are_ignored() -> None:
    p = parser("BTC/USD")
    assert p.feed(fixture("l2_update")).events == []  # no snapshot yet
    assert p.duplicates == 1
    assert parser().feed(fixture("l2_snapshot")).events == []  # nobody keeps BTC/USD's book


def test_market_trades_in_time_order_and_repeats_dropped() -> None:
    # Coinbase's side is the resting (maker) order's: a BUY maker means a seller took it, the aggressor is "sell"
    p = parser()
    out = p.feed(fixture("market_trades"))
    assert out.events == [
        Trade(venue="coinbase", symbol="ETH/USD", ts_event=ns("2019-08-14T20:42:27.265Z"), ts_recv=RECV, seq=1,
              price=D("1260.01"), size=D("0.3"), side="sell", trade_id="000000000"),
        Trade(venue="coinbase", symbol="ETH/USD", ts_event=ns("2019-08-14T20:42:27.3Z"), ts_recv=RECV, seq=2,
              price=D("1260.02"), size=D("0.1"), side="buy", trade_id="000000001"),
    ]  # fmt: skip
    assert p.feed(with_seq("market_trades", 1)).events == [] and p.duplicates == 2  # a resubscription's snapshot


def test_ticker_is_a_ticker_and_a_quote() -> None:
    out = parser().feed(fixture("ticker"))
    ts = ns("2023-02-09T20:30:37.167359596Z")
    assert out.events == [
        Ticker(venue="coinbase", symbol="BTC/USD", ts_event=ts, ts_recv=RECV, seq=1, bid=D("21931.98"),
               bid_size=D("8000.21"), ask=D("21933.98"), ask_size=D("8038.07770938"), last=D("21932.98"),
               volume=D("16038.28770938"), low=D("21835.29"), high=D("23011.18"), change_pct=D("-4.15775596190603")),
        Quote(venue="coinbase", symbol="BTC/USD", ts_event=ts, ts_recv=RECV, seq=1, bid=D("21931.98"),
              bid_size=D("8000.21"), ask=D("21933.98"), ask_size=D("8038.07770938")),
    ]  # fmt: skip


def test_heartbeats_subscriptions_errors_and_unknown_channels() -> None:
    p = parser()
    out = p.feed(fixture("heartbeats"))
    assert out.events == [] and out.channel == "heartbeats" and p.heartbeats == 1
    out = p.feed(with_seq("subscriptions", 1))
    assert out.subscriptions == {"level2": ["BTC-USD"], "market_trades": ["BTC-USD", "ETH-USD"]}
    out = p.feed(fixture("error"))
    assert out.error == "Failure to subscribe: unknown product 'NOPE-USD'" and out.events == []
    out = p.feed(b'{"channel":"candles","sequence_num":2,"events":[{"whatever":1}]}')
    assert out.events == [] and p.ignored == 1 and out.gap is None  # ignored, as Coinbase asks; sequence kept


def test_sequence_gap_out_of_order_and_new_connection() -> None:
    p = parser("BTC/USD")
    p.feed(fixture("l2_snapshot"))  # 0
    out = p.feed(with_seq("l2_update", 3))  # 1 and 2 lost
    assert out.gap == (1, 3) and p.gaps == 1 and len(out.events) == 1
    assert p.feed(with_seq("heartbeats", 2)).channel == "heartbeats" and p.out_of_order == 1  # older: dropped
    assert p.heartbeats == 0
    p.invalidate_books(["BTC/USD"])  # what the service does on a gap: updates now wait for the fresh snapshot
    assert p.feed(with_seq("l2_update", 4)).events == [] and not p.book("BTC/USD").synced
    out = p.feed(with_seq("l2_snapshot", 5))
    assert out.gap is None and isinstance(out.events[0], BookSnapshot) and p.book("BTC/USD").synced
    p.new_connection()  # a new connection counts from 0 again, and its books wait for their snapshots
    assert p.feed(fixture("l2_snapshot")).gap is None and p.gaps == 1


BAD = [
    *MALFORMED_FRAMES,
    b'{"channel":"l2_data","events":[{"type":"update","product_id":"BTC-USD","updates":'
    b'[{"side":"bid","event_time":"2023-02-09T20:32:50Z","price_level":"NaN","new_quantity":"1"}]}]}',
    b'{"channel":"l2_data","events":[{"type":"update","product_id":"BTC-USD","updates":'
    b'[{"side":"bid","event_time":"2023-02-09T20:32:50Z","price_level":"-5","new_quantity":"1"}]}]}',
    b'{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"1",'
    b'"product_id":"BTC;DROP","price":"1","size":"1","side":"BUY","time":"2023-02-09T20:32:50Z"}]}]}',
    b'{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"1",'
    b'"product_id":"BTC-USD","price":"1","size":"1","side":"BUY","time":"yesterday"}]}]}',
    b'{"channel":"ticker","events":[{"type":"update"}]}',
    b'{"message":"no channel"}',
    b"[]",
]


@pytest.mark.parametrize("bad", BAD)
def test_malformed_messages_are_refused_without_side_effects(bad: str | bytes) -> None:
    p = parser("BTC/USD")
    p.feed(fixture("l2_snapshot"))
    before = p.book("BTC/USD").levels()
    with pytest.raises(CoinbaseMessageError):
        p.feed(bad)
    assert p.book("BTC/USD").levels() == before
    assert p.feed(fixture("l2_update")).events  # the next good message goes through


def test_a_malformed_message_still_reports_the_gap_it_revealed() -> None:
    p = parser()
    p.feed(fixture("heartbeats"))
    with pytest.raises(CoinbaseMessageError) as info:
        p.feed(b'{"channel":"l2_data","sequence_num":5,"events":[{"type":"nope"}]}')
    assert info.value.parsed.gap == (1, 5)


def test_symbol_rules() -> None:
    btc = resolve("btc-usd")
    assert (btc.symbol, btc.venue_symbol, btc.price_precision, btc.size_precision) == ("BTC/USD", "BTC-USD", 2, 8)
    assert resolve("1INCH/USD").venue_symbol == "1INCH-USD"
    assert resolve("ABC/USDT").price_precision == 8  # not in the shipped snapshot: 8/8
    assert shipped_rules() == {"BTC-USD": (2, 8), "ETH-USD": (2, 8), "SOL-USD": (2, 8)}
    for bad, why in [("BTC/XYZ", "not a Coinbase quote"), ("EUR/USD", "fiat base EUR"), ("BTC-USD;DROP", "invalid"),
                     ("BTC USD", "invalid"), ("btc@usd", "invalid"), ("USD/USD", "fiat"), ("ÄBC/USD", "invalid"),
                     ("A" * 13 + "/USD", "invalid"), ("BTC/BTC", "the same"), ("", "invalid")]:  # fmt: skip
        with pytest.raises(SymbolError, match=why):
            resolve(bad)


def test_precisions_come_from_product_metadata() -> None:
    products = {p.product_id: precisions_of(p) for p in products_decoder.decode(fixture("products")).products}
    assert products == {"BTC-USD": (2, 8), "DOGE-USD": (5, 1)}


def test_btc_usd_on_the_command_line_needs_its_venue() -> None:
    assert str(parse_instrument("coinbase:btc-usd")) == "coinbase:BTC/USD"
    assert str(parse_instrument("BTC-USD", "coinbase")) == "coinbase:BTC/USD"
    with pytest.raises(SymbolError, match="'BTC/USD' is ambiguous") as info:
        parse_instrument("BTC/USD")
    assert "coinbase:BTC/USD" in str(info.value) and "kraken:BTC/USD" in str(info.value)
    assert str(parse_instrument("kraken:BTC/USD")) == "kraken:BTC/USD"


def test_one_subscribe_per_channel() -> None:
    assert protocol.subscribe("level2", ["BTC-USD", "ETH-USD"]) == (
        b'{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}'
    )
    assert protocol.unsubscribe("market_trades", ["BTC-USD"]) == (
        b'{"type":"unsubscribe","product_ids":["BTC-USD"],"channel":"market_trades"}'
    )
    assert protocol.subscribe("heartbeats") == b'{"type":"subscribe","channel":"heartbeats"}'
    for ch, ids in (("user", ["BTC-USD"]), ("level2", []), ("l2_data", ["BTC-USD"])):
        with pytest.raises(ValueError):
            protocol.subscribe(ch, ids)


def test_the_demo_runs_coinbase_only_when_named() -> None:
    from app.demo import _plans

    assert "coinbase" not in {v.name for v, _, _ in _plans(None, fx=True, backfill=False)}  # opt-in
    named = _plans(None, fx=True, backfill=False, only=["kraken", "coinbase"])
    assert [v.name for v, _, _ in named] == ["kraken", "coinbase"]  # Kraken stays the main venue
    alone = _plans(None, fx=True, backfill=False, only=["coinbase"])
    assert [(v.name, syms) for v, _, syms in alone] == [("coinbase", ["BTC/USD", "ETH/USD"])]


def test_bad_symbols_are_refused_before_anything_starts() -> None:
    from click.testing import CliRunner

    from cli import cli

    env = {"PULSE_COINBASE__SYMBOLS": "BTC;X", "PULSE_PULSAR__URL": "pulsar://127.0.0.1:1"}
    res = CliRunner().invoke(cli, ["ingest", "coinbase"], env=env)
    assert res.exit_code == 2 and "coinbase.symbols: invalid Coinbase symbol 'BTC;X'" in res.output
    res = CliRunner().invoke(cli, ["ingest", "coinbase", "--symbols", "kraken:BTC/USD"])
    assert res.exit_code == 2 and "is not on coinbase" in res.output
