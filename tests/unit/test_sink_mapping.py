"""Events → rows for the PostgreSQL sink: exact values, column order, what is ignored and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from pulse.models import BookDelta, BookSnapshot, Candle, Level, Quote, Status, Ticker, Trade
from sinks.postgres.mapping import MappingError, ns_to_time, to_row
from sinks.postgres.schema import COLUMNS

D = Decimal
TS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
TIME = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
COMMON = {"venue": "kraken", "symbol": "BTC/USD", "ts_event": TS, "ts_recv": TS + 1_000, "seq": 7}
HEAD = {"venue": "kraken", "symbol": "BTC/USD", "time": TIME, "ts_event_ns": TS, "ts_recv_ns": TS + 1_000, "seq": 7}


def named(event: object) -> tuple[str, dict[str, object]]:
    mapped = to_row(event)  # type: ignore[arg-type]
    assert mapped is not None
    table, row = mapped
    assert len(row) == len(COLUMNS[table])
    return table, dict(zip(COLUMNS[table], row, strict=True))


def test_trade() -> None:
    ev = Trade(**COMMON, price=D("45283.50000001"), size=D("0.00123400"), side="buy", trade_id="T1", ord_type="limit")
    table, row = named(ev)
    assert table == "trades"
    assert row == {
        **HEAD,
        "trade_id": "T1",
        "price": D("45283.50000001"),
        "size": D("0.00123400"),
        "side": "buy",
        "ord_type": "limit",
    }
    assert str(row["size"]) == "0.00123400"  # scale kept, not normalised


def test_trade_without_side_or_order_type() -> None:
    _, row = named(Trade(**COMMON, price=D("1"), size=D("2"), side=None, trade_id="9"))
    assert row["side"] is None and row["ord_type"] is None


def test_quote_drops_the_ladder_and_keeps_nulls() -> None:
    ev = Quote(
        **COMMON,
        bid=D("1.08501"),
        bid_size=None,
        ask=D("1.08513"),
        ask_size=D("1000000"),
        bids=(Level(D("1.08501"), D("1")),),
        tradeable=False,
    )
    table, row = named(ev)
    assert table == "quotes"
    assert row == {
        **HEAD,
        "channel": "quote",
        "bid": D("1.08501"),
        "bid_size": None,
        "ask": D("1.08513"),
        "ask_size": D("1000000"),
        "tradeable": False,
    }


def test_ticker_becomes_a_quote_row_from_its_top_of_book() -> None:
    ev = Ticker(
        **COMMON, bid=D("100.1"), bid_size=D("2"), ask=D("100.2"), ask_size=D("3"), last=D("100.15"), volume=D("9")
    )
    table, row = named(ev)
    assert table == "quotes"
    assert row == {
        **HEAD,
        "channel": "ticker",
        "bid": D("100.1"),
        "bid_size": D("2"),
        "ask": D("100.2"),
        "ask_size": D("3"),
        "tradeable": True,
    }


def test_book_snapshot_top_is_the_first_level() -> None:
    ev = BookSnapshot(
        **COMMON,
        depth=10,
        bids=(Level(D("99.5"), D("1.5")), Level(D("99.4"), D("2"))),
        asks=(Level(D("99.6"), D("0.25")),),
    )
    table, row = named(ev)
    assert table == "book_top"
    assert row == {**HEAD, "bid": D("99.5"), "bid_size": D("1.5"), "ask": D("99.6"), "ask_size": D("0.25")}


def test_book_snapshot_with_an_empty_side() -> None:
    _, row = named(BookSnapshot(**COMMON, depth=10, bids=(), asks=(Level(D("1"), D("2")),)))
    assert row["bid"] is None and row["bid_size"] is None and row["ask"] == D("1")


def test_book_delta_uses_best_levels_not_changed_levels() -> None:
    ev = BookDelta(
        **COMMON,
        bids=(Level(D("99.1"), D("0")),),
        asks=(),
        best_bid=Level(D("99.5"), D("1.5")),
        best_ask=Level(D("99.6"), D("0.25")),
    )
    table, row = named(ev)
    assert table == "book_top"
    assert row == {**HEAD, "bid": D("99.5"), "bid_size": D("1.5"), "ask": D("99.6"), "ask_size": D("0.25")}


def test_book_delta_without_best_levels_is_ignored() -> None:
    assert to_row(BookDelta(**COMMON, bids=(Level(D("1"), D("1")),), asks=())) is None


def test_status_markers_go_to_gaps() -> None:
    table, row = named(Status(**COMMON, kind="gap", detail="reconnected after 3.2 s"))
    assert table == "gaps"
    assert row == {**HEAD, "kind": "gap", "detail": "reconnected after 3.2 s"}


def test_candles_are_ignored() -> None:
    ev = Candle(**COMMON, interval_s=60, open=D(1), high=D(1), low=D(1), close=D(1), volume=D(1))
    assert to_row(ev) is None


def test_time_is_floored_to_microseconds() -> None:
    assert ns_to_time(1_999) == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert ns_to_time(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event", "match"),
    [
        (Trade(**COMMON, price=D("NaN"), size=D("1"), side="buy", trade_id="1"), "price=NaN"),
        (Trade(**COMMON, price=D("1"), size=D("Infinity"), side="buy", trade_id="1"), "size=Infinity"),
        (Trade(**COMMON, price=D("1"), size=D("1"), side="buy", trade_id=""), "empty trade_id"),
        (Trade(**COMMON, price=D("1"), size=D("1"), side="buy", trade_id="a\x00b"), "NUL"),
        (Trade(**{**COMMON, "symbol": "btc/usd"}, price=D("1"), size=D("1"), side=None, trade_id="1"), "canonical"),
        (Trade(**{**COMMON, "symbol": "BTCUSD"}, price=D("1"), size=D("1"), side=None, trade_id="1"), "invalid"),
        (Trade(**{**COMMON, "ts_event": 10**30}, price=D("1"), size=D("1"), side=None, trade_id="1"), "bigint"),
        (Quote(**{**COMMON, "seq": -(2**64)}, bid=None, bid_size=None, ask=None, ask_size=None), "seq"),
        (BookDelta(**COMMON, bids=(), asks=(), best_bid=Level(D("sNaN"), D("1"))), r"best_bid\.price"),
        (Status(**{**COMMON, "venue": ""}, kind="gap"), "empty venue"),
    ],
)
def test_invalid_events_are_refused(event: object, match: str) -> None:
    with pytest.raises(MappingError, match=match):
        to_row(event)  # type: ignore[arg-type]


def test_topics_for_builds_the_explicit_topic_list() -> None:
    from pulse.settings import Settings
    from sinks.postgres.sources import topics_for

    assert topics_for(Settings(), symbols=["BTC/USD", "ETH/EUR"], channels=["trade", "book"]) == [
        "persistent://market-data/crypto/kraken.BTC-USD.trade",
        "persistent://market-data/crypto/kraken.BTC-USD.book",
        "persistent://market-data/crypto/kraken.ETH-EUR.trade",
        "persistent://market-data/crypto/kraken.ETH-EUR.book",
    ]
    default = topics_for(Settings())  # kraken.symbols by trade, quote, book, status (tickers are also quotes)
    assert len(default) == 8 and default[0] == "persistent://market-data/crypto/kraken.BTC-USD.trade"
    assert not any(t.endswith(".ticker") for t in default)


def test_sink_sources_are_validated_and_expand_to_topics() -> None:
    from pulse.errors import ConfigError, SymbolError
    from pulse.settings import Settings
    from sinks.postgres.sources import parse_source, parse_sources, topics_for_sources

    assert parse_source("fx/oanda=EUR/USD,usd/jpy") == ("fx", "oanda", ["EUR/USD", "USD/JPY"])
    # instrument ids (namespaces from the venue registry) and venue spellings are accepted too
    assert parse_source("fx/oanda=EUR_USD") == ("fx", "oanda", ["EUR/USD"])
    assert parse_sources("kraken:XBT/USD,ETH/USD,oanda:EUR_USD") == [
        ("crypto", "kraken", ["BTC/USD", "ETH/USD"]),
        ("fx", "oanda", ["EUR/USD"]),
    ]
    assert topics_for_sources(Settings(), ["oanda:EUR_USD"]) == topics_for_sources(Settings(), ["fx/oanda=EUR/USD"])
    topics = topics_for_sources(Settings(), ["fx/oanda=EUR/USD", "historical/dukascopy=EUR/USD"])
    assert "persistent://market-data/fx/oanda.EUR-USD.quote" in topics
    assert "persistent://market-data/historical/dukascopy.EUR-USD.quote" in topics
    for bad in ["fx/oanda", "nope/oanda=EUR/USD", "fx=EUR/USD", "fx/oan da=EUR/USD"]:
        with pytest.raises(ConfigError, match="invalid sink source"):
            parse_source(bad)
    with pytest.raises(SymbolError, match="EUR_USDX"):
        parse_source("fx/oanda=EUR_USDX")
    with pytest.raises(SymbolError, match="unknown venue 'nope'"):
        parse_sources("kraken:BTC/USD,nope:ETH/USD")


# -- QuoteBatch: many ticks of one instrument in one message (the historical path) ----------------------------


def _quotes(n: int, **over: object) -> list[Quote]:
    base = {"venue": "dukascopy", "symbol": "EUR/USD", "ts_recv": TS + 5}
    return [
        Quote(
            **{**base, **over},
            ts_event=TS + i * 1_000_000,
            seq=100 + i,
            bid=D("1.14543") + i,
            bid_size=D("2060000"),
            ask=D("1.14545"),
            ask_size=None if i % 2 else D("1000000"),
        )
        for i in range(n)
    ]


def test_quote_batch_rows_equal_the_single_quotes_rows() -> None:
    from pulse.codec import Codec, decode_any
    from pulse.models import QuoteBatch, unbatched
    from sinks.postgres.mapping import to_rows

    quotes = _quotes(2_500)
    batches = list(QuoteBatch.chunks(quotes, 1_000))
    assert [len(b.ticks) for b in batches] == [1_000, 1_000, 500]
    assert batches == list(QuoteBatch.chunks(quotes, 1_000)), "deterministic: a re-run sends the same batches"
    assert (batches[1].ts_event, batches[1].seq) == (quotes[1_000].ts_event, quotes[1_000].seq)
    codec = Codec("json")
    decoded = [decode_any(codec.encode(b)) for b in batches]
    assert decoded == batches and codec.properties(batches[0])["type"] == "quote_batch"
    assert [q for b in decoded for q in unbatched(b)] == quotes
    rows = [r for b in decoded for r in to_rows(b)[1]]  # type: ignore[index]
    assert rows == [to_row(q)[1] for q in quotes]  # type: ignore[index]
    assert to_rows(quotes[0]) == ("quotes", [to_row(quotes[0])[1]])  # type: ignore[index]


def test_quote_batch_splits_on_a_change_of_head_and_refuses_ladders() -> None:
    from pulse.models import QuoteBatch

    mixed = _quotes(3) + _quotes(2, ts_recv=TS + 9)
    assert [len(b.ticks) for b in QuoteBatch.chunks(mixed, 1_000)] == [3, 2]
    with pytest.raises(ValueError, match="ladder"):
        list(QuoteBatch.chunks([Quote(**COMMON, bid=D(1), bid_size=None, ask=None, ask_size=None,
                                      bids=(Level(D(1), D(1)),))]))  # fmt: skip


@pytest.mark.parametrize("bad", [D("NaN"), D("Infinity"), D("sNaN")])
def test_quote_batch_with_one_bad_tick_is_refused_whole(bad: Decimal) -> None:
    from pulse.models import QuoteBatch
    from sinks.postgres.mapping import to_rows

    quotes = _quotes(10)
    quotes[7] = msgspec.structs.replace(quotes[7], ask=bad)
    (batch,) = QuoteBatch.chunks(quotes)
    with pytest.raises(MappingError):
        to_rows(batch)
    with pytest.raises(MappingError, match="symbol"):
        to_rows(msgspec.structs.replace(batch, symbol="EURUSD"))


def test_quote_batch_int64_ranges_are_enforced_by_the_decoder() -> None:
    from pulse.errors import CodecError
    from sinks.postgres.sources import decode_payload

    doc = b'{"type":"quote_batch","venue":"dukascopy","symbol":"EUR/USD","ts_event":1,"ts_recv":1,"seq":0,'
    with pytest.raises(CodecError):
        decode_payload(doc + b'"ticks":[[1,9223372036854775808,"1.1",null,"1.2",null]]}')
    assert len(decode_payload(doc + b'"ticks":[[1,9223372036854775807,"1.1",null,"1.2",null]]}').ticks) == 1


def test_quote_batch_time_is_floored_to_microseconds_like_single_quotes() -> None:
    from pulse.models import QuoteBatch
    from sinks.postgres.mapping import to_rows

    odd = [-1_999, -1, 0, 999, 1_000, 5_000_000_001, TS, 3, 2**63 - 1, -(2**63)]
    quotes = [msgspec.structs.replace(q, ts_event=ts) for q, ts in zip(_quotes(len(odd)), odd, strict=True)]
    (batch,) = QuoteBatch.chunks(quotes)
    assert to_rows(batch)[1] == [to_row(q)[1] for q in quotes]  # type: ignore[index]
