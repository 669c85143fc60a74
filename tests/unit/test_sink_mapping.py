"""Events → rows for the PostgreSQL sink: exact values, column order, what is ignored and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

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
    from sinks.postgres.service import topics_for

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
    from sinks.postgres.service import parse_source, topics_for_sources

    assert parse_source("fx/oanda=EUR/USD,usd/jpy") == ("fx", "oanda", ["EUR/USD", "USD/JPY"])
    topics = topics_for_sources(Settings(), ["fx/oanda=EUR/USD", "historical/dukascopy=EUR/USD"])
    assert "persistent://market-data/fx/oanda.EUR-USD.quote" in topics
    assert "persistent://market-data/historical/dukascopy.EUR-USD.quote" in topics
    for bad in ["fx/oanda", "nope/oanda=EUR/USD", "fx=EUR/USD", "fx/oan da=EUR/USD"]:
        with pytest.raises(ConfigError, match="invalid sink source"):
            parse_source(bad)
    with pytest.raises(SymbolError, match="EUR_USD"):
        parse_source("fx/oanda=EUR_USD")
