"""Binance: the parser on one recorded-format frame per message type (values from Binance's docs), the book sync
procedure, symbol rules, stream names and request pacing. Pure: no network, no clock but an injected one."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from ingesters.binance import protocol
from ingesters.binance.book import BookSync
from ingesters.binance.parser import BinanceMessageError, BinanceParser
from ingesters.binance.schemas import (
    DepthSnapshot,
    DepthUpdateEvent,
    exchange_info_decoder,
    rest_error_decoder,
    trades_decoder,
)
from ingesters.binance.simulator_market import MALFORMED_FRAMES
from ingesters.binance.symbols import precisions_of, resolve, shipped_rules
from pulse.errors import ConfigError, SymbolError
from pulse.instruments import parse_instrument
from pulse.models import BookDelta, BookSnapshot, Level, Quote, Trade

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
NOW = 1_700_000_000_123_456_789
D = Decimal


def frame(name: str) -> bytes:
    return (FIX / name).read_bytes()


def parser() -> BinanceParser:
    return BinanceParser(clock=lambda: NOW, depth=1000)


def test_trade() -> None:
    out = parser().feed(frame("trade.json"))
    assert out.events == [
        Trade(venue="binance", symbol="BNB/BTC", ts_event=1672515782136_000_000, ts_recv=NOW, seq=1, price=D("0.001"),
              size=D("100"), side="sell", trade_id="12345")
    ]  # fmt: skip
    assert out.stream == "bnbbtc@trade"


def test_agg_trade_has_its_own_id_space() -> None:
    (t,) = parser().feed(frame("agg_trade.json")).events
    assert isinstance(t, Trade)
    assert (t.trade_id, t.price, t.size, t.side, t.ts_event) == ("a12345", D("0.001"), D("100"), "sell",
                                                                 1672515782136_000_000)  # fmt: skip


def test_book_ticker_is_a_quote_stamped_on_receipt() -> None:
    (q,) = parser().feed(frame("book_ticker.json")).events
    assert q == Quote(venue="binance", symbol="BNB/USDT", ts_event=NOW, ts_recv=NOW, seq=1, bid=D("25.35190000"),
                      bid_size=D("31.21000000"), ask=D("25.36520000"), ask_size=D("40.66000000"))  # fmt: skip
    assert str(q.bid) == "25.35190000"  # exactly the venue's text


def test_duplicates_are_dropped_by_id() -> None:
    p = parser()
    assert len(p.feed(frame("trade.json")).events) == 1
    assert p.feed(frame("trade.json")).events == []  # the same trade on a renewal's overlapping connection
    assert len(p.feed(frame("book_ticker.json")).events) == 1
    assert p.feed(frame("book_ticker.json")).events == []
    assert p.duplicates == 2


def test_depth_is_ignored_without_a_tracked_book() -> None:
    out = parser().feed(frame("depth_update.json"))
    assert out.events == [] and out.snapshots == [] and out.stream == "bnbbtc@depth@100ms"


def snapshot(lid: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> bytes:
    return msgspec.json.encode({"lastUpdateId": lid, "bids": bids, "asks": asks})


def diff(first: int, final: int, bids: list[tuple[str, str]] = (), asks: list[tuple[str, str]] = ()) -> bytes:
    data = {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": first, "u": final, "b": bids, "a": asks}
    return msgspec.json.encode({"stream": "bnbbtc@depth@100ms", "data": data})


def test_book_sync_from_the_documented_snapshot() -> None:
    p = parser()
    p.track_book("BNB/BTC")
    out = p.feed(frame("depth_update.json"))  # [157, 160]: buffered, asks for a snapshot
    assert out.snapshots == ["BNB/BTC"] and out.events == []
    out = p.apply_snapshot("BNB/BTC", frame("depth_snapshot.json"))  # lastUpdateId 1027024: the diff is older
    (snap,) = out.events
    assert isinstance(snap, BookSnapshot)
    assert snap.bids == (Level(D("4.00000000"), D("431.00000000")),)
    assert snap.asks == (Level(D("4.00000200"), D("12.00000000")),)
    assert p.book("BNB/BTC").book.update_id == 1027024  # type: ignore[union-attr]
    # the first diff after it must straddle 1027025; this one does
    (delta,) = p.feed(diff(1027020, 1027026, bids=[("4.00000100", "5")], asks=[("4.00000200", "0")])).events
    assert isinstance(delta, BookDelta)
    assert delta.best_bid == Level(D("4.00000100"), D("5")) and delta.best_ask is None
    assert delta.ts_event == 1672515782136_000_000 and delta.seq == 2
    # then each diff continues the previous one: U == previous u + 1
    assert len(p.feed(diff(1027027, 1027027, asks=[("4.1", "1")])).events) == 1
    assert p.feed(diff(1027020, 1027027)).events == []  # already applied: ignored
    out = p.feed(diff(1027029, 1027030))  # 1027028 is missing
    assert out.events == [] and out.resync and out.resync[0][0] == "BNB/BTC" and "expected 1027028" in out.resync[0][1]
    assert not p.book("BNB/BTC").synced  # type: ignore[union-attr]
    assert p.feed(diff(1027031, 1027032)).snapshots == ["BNB/BTC"]  # starts over: buffer, ask again


def test_a_snapshot_older_than_the_buffer_is_asked_again() -> None:
    p = parser()
    p.track_book("BNB/BTC")
    p.feed(diff(200, 205))
    out = p.apply_snapshot("BNB/BTC", snapshot(150, [("1", "1")], [("2", "1")]))
    assert out.retry_snapshot == ["BNB/BTC"] and out.events == []
    out = p.apply_snapshot("BNB/BTC", snapshot(199, [("1", "1")], [("2", "1")]))  # 200 continues it exactly
    assert [type(e).__name__ for e in out.events] == ["BookSnapshot", "BookDelta"]


def test_buffered_diffs_are_applied_on_top_of_the_snapshot() -> None:
    p = parser()
    p.track_book("BNB/BTC")
    for first, final, level in ((100, 104, "1.0"), (105, 109, "1.1"), (110, 112, "1.2")):
        p.feed(diff(first, final, bids=[(level, "3")]))
    out = p.apply_snapshot("BNB/BTC", snapshot(106, [("1.0", "2")], [("9", "1")]))
    kinds = [type(e).__name__ for e in out.events]
    assert kinds == ["BookSnapshot", "BookDelta", "BookDelta"]  # [100,104] dropped; [105,109] straddles 107
    bids, asks = p.book("BNB/BTC").book.levels()  # type: ignore[union-attr]
    assert bids == [(D("1.2"), D("3")), (D("1.1"), D("3")), (D("1.0"), D("2"))] and asks == [(D("9"), D("1"))]


def test_a_first_diff_past_the_snapshot_is_a_break() -> None:
    sync = BookSync()
    sync.on_diff(DepthUpdateEvent("X", 100, 110, [], []))
    res = sync.on_snapshot(DepthSnapshot(100, [], []))  # 101 must be inside [U, u]: it is
    assert res.kind == "synced" and sync.book.update_id == 110
    sync = BookSync()
    sync.on_diff(DepthUpdateEvent("X", 100, 110, [], []))
    sync.on_diff(DepthUpdateEvent("X", 115, 120, [], []))  # 111-114 never came
    res = sync.on_snapshot(DepthSnapshot(112, [], []))
    assert res.kind == "break" and not sync.synced


def test_server_shutdown_and_responses() -> None:
    p = parser()
    assert p.feed(frame("server_shutdown.json")).shutdown
    (ack,) = p.feed(frame("subscribe_response.json")).acks
    assert (ack.id, ack.ok) == (1, True)
    (err,) = p.feed(frame("error_response.json")).acks
    assert (err.id, err.ok, err.error) == (2, False, "2: Invalid request: invalid stream")


@pytest.mark.parametrize("bad", (*MALFORMED_FRAMES, '{"stream":"btcusdt@kline_1m","data":{}}', '{"id":1}', "[]"))
def test_malformed_frames_are_refused_without_side_effects(bad: str | bytes) -> None:
    p = parser()
    with pytest.raises(BinanceMessageError):
        p.feed(bad)
    assert p.feed(frame("trade.json")).events[0].seq == 1  # nothing consumed


def test_a_malformed_snapshot_is_refused() -> None:
    p = parser()
    p.track_book("BNB/BTC")
    p.feed(diff(1, 2))
    with pytest.raises(BinanceMessageError):
        p.apply_snapshot("BNB/BTC", b'{"lastUpdateId": 3, "bids": [["x", "1"]], "asks": []}')


def test_rest_fixtures() -> None:
    (t,) = trades_decoder.decode(frame("recent_trades.json"))
    assert (t.id, t.price, t.qty, t.quote_qty, t.time, t.is_buyer_maker) == (
        28457, D("4.00000100"), D("12.00000000"), D("48.000012"), 1499865549590, True)  # fmt: skip
    (info,) = exchange_info_decoder.decode(frame("exchange_info.json")).symbols
    assert (info.symbol, info.base_asset, info.quote_asset, info.status) == ("ETHBTC", "ETH", "BTC", "TRADING")
    assert precisions_of(info) == (6, 3)  # tickSize 0.00000100, stepSize 0.00100000
    err = rest_error_decoder.decode(frame("rest_error.json"))
    assert (err.code, err.msg) == (-1121, "Invalid symbol.")


def test_symbol_rules() -> None:
    for text in ("BTC/USDT", "btc-usdt", "BTCUSDT", "btcusdt", " BTC/USDT "):
        r = resolve(text)
        assert (r.symbol, r.venue_symbol, r.stream_name) == ("BTC/USDT", "BTCUSDT", "btcusdt")
    assert (resolve("BTCUSDT").price_precision, resolve("BTCUSDT").size_precision) == (2, 5)  # shipped snapshot
    assert shipped_rules()["ETHUSDT"] == (2, 4)
    assert (resolve("ETHBTC").symbol, resolve("ETHBTC").price_precision) == ("ETH/BTC", 8)  # not shipped: 8/8
    assert resolve("FDUSDUSDT").symbol == "FDUSD/USDT"
    for bad in ("BTC/XYZ", "btc/usdt;drop", "BTC USDT", "btc@trade", "USDT/USDT", "ÄBC/USDT", "A" * 17 + "/USDT", ""):
        with pytest.raises(SymbolError):
            resolve(bad)


def test_canonical_identifier_through_the_venue_registry() -> None:
    assert str(parse_instrument("binance:BTCUSDT")) == "binance:BTC/USDT"
    assert str(parse_instrument("ETHUSDT")) == "binance:ETH/USDT"  # only Binance spells it so
    with pytest.raises(SymbolError, match="ambiguous"):
        parse_instrument("BTC/USDT")  # Kraken lists it too


def test_stream_names_urls_and_requests() -> None:
    assert protocol.stream_name("BTCUSDT", protocol.stream_kind("book")) == "btcusdt@depth@100ms"
    assert protocol.stream_kind("book", depth_speed="1000ms") == "depth"
    assert protocol.stream_kind("trade", trade_stream="aggTrade") == "aggTrade"
    assert protocol.stream_kind("quote") == "bookTicker"
    url = protocol.stream_url("wss://stream.binance.com:9443/", ["btcusdt@trade", "ethusdt@bookTicker"])
    assert url == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@bookTicker"
    assert msgspec.json.decode(protocol.request("SUBSCRIBE", ["btcusdt@trade"], 7)) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}  # fmt: skip
    with pytest.raises(ConfigError):
        protocol.request("SUBSCRIBE", [f"s{i}@trade" for i in range(201)], 1)
    with pytest.raises(ConfigError):
        protocol.stream_url("http://example", [])


def test_pacer_keeps_requests_under_the_rate() -> None:
    now = [100.0]
    pacer = protocol.Pacer(4, clock=lambda: now[0])
    for _ in range(4):
        assert pacer.delay() == 0
        pacer.sent()
    assert pacer.delay() == pytest.approx(1.0)  # a fifth within the same second must wait
    now[0] += 0.6
    assert pacer.delay() == pytest.approx(0.4)
    now[0] += 0.4
    assert pacer.delay() == 0


def test_the_demo_runs_binance_only_when_named() -> None:
    from app.demo import _plans

    assert "binance" not in {v.name for v, _, _ in _plans(None, fx=True, backfill=False)}  # opt-in
    named = _plans(None, fx=True, backfill=False, only=["kraken", "binance", "oanda"])
    assert [v.name for v, _, _ in named] == ["kraken", "oanda", "binance"]  # Kraken stays the main venue
    alone = _plans(None, fx=True, backfill=False, only=["binance"])
    assert [(v.name, syms) for v, _, syms in alone] == [("binance", ["BTC/USDT", "ETH/USDT"])]
    with pytest.raises(ConfigError, match="no demo plan for nope"):
        _plans(None, fx=True, backfill=False, only=["nope"])
