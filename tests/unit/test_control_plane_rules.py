"""Venue symbol rules, control command codec, topic lists and broker-metrics parsing (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from control_plane.symbols import plan_instrument
from pulse.broker_metrics import parse_topic_metrics
from pulse.control import InstrumentCommand, decode, encode
from pulse.errors import CodecError, SymbolError
from pulse.topics import service_topic
from pulse.venues import expects_ticks, instrument_topics


@pytest.mark.parametrize(
    ("venue", "text", "symbol", "venue_symbol", "namespace", "precisions"),
    [
        ("kraken", "BTC/USD", "BTC/USD", "BTC/USD", "crypto", (1, 8)),
        ("kraken", "xbt/usd", "BTC/USD", "BTC/USD", "crypto", (1, 8)),  # legacy XBT ↔ BTC
        ("kraken", "XDG-EUR", "DOGE/EUR", "DOGE/EUR", "crypto", (7, 8)),  # legacy XDG ↔ DOGE
        ("kraken", "SOL/USDT", "SOL/USDT", "SOL/USDT", "crypto", (2, 8)),
        ("oanda", "EUR_USD", "EUR/USD", "EUR_USD", "fx", (5, 0)),
        ("oanda", "USD/JPY", "USD/JPY", "USD_JPY", "fx", (3, 0)),
        ("dukascopy", "EURUSD", "EUR/USD", "EURUSD", "historical", (5, 2)),
        ("dukascopy", "usd/jpy", "USD/JPY", "USDJPY", "historical", (3, 2)),
    ],
)
def test_venue_rules_resolve_names(
    venue: str, text: str, symbol: str, venue_symbol: str, namespace: str, precisions: tuple[int, int]
) -> None:
    _, inst = plan_instrument(venue, text)
    assert (inst.symbol, inst.venue_symbol, inst.namespace) == (symbol, venue_symbol, namespace)
    assert (inst.price_precision, inst.size_precision) == precisions


@pytest.mark.parametrize(
    ("venue", "text", "message"),
    [
        ("kraken", "BTCUSD", "expected BASE/QUOTE"),
        ("kraken", "BTC/USD'; DROP TABLE instruments;--", "expected BASE/QUOTE"),
        ("kraken", "BTC/XYZ", "not a Kraken quote currency"),
        ("kraken", "USD/USD", "base and quote are the same"),
        ("kraken", "BTC/USD.trade", "expected BASE/QUOTE"),
        ("oanda", "EURUSD", "for OANDA"),
        ("oanda", "EUR_USDX", "for OANDA"),
        ("dukascopy", "NOPE", "unknown Dukascopy instrument"),
        ("bitstamp", "BTC/USD", "unknown venue"),
    ],
)
def test_bad_names_are_refused(venue: str, text: str, message: str) -> None:
    with pytest.raises(SymbolError, match=message):
        plan_instrument(venue, text)


def test_channels_and_precisions_are_checked() -> None:
    _, inst = plan_instrument("kraken", "ETH/USD", ["book", "trade"], price_precision=3)
    assert inst.channels == ("book", "trade") and inst.price_precision == 3
    with pytest.raises(SymbolError, match="oanda has no channel trade"):
        plan_instrument("oanda", "EUR_USD", ["trade"])
    with pytest.raises(SymbolError, match="between 0 and 18"):
        plan_instrument("kraken", "ETH/USD", size_precision=19)


def test_instrument_topics_follow_the_venue_channels() -> None:
    _, inst = plan_instrument("kraken", "ETH/USD", ["ticker", "book"])
    assert instrument_topics(inst, "market-data") == [
        "persistent://market-data/crypto/kraken.ETH-USD.ticker",
        "persistent://market-data/crypto/kraken.ETH-USD.quote",  # the ticker channel also yields quotes
        "persistent://market-data/crypto/kraken.ETH-USD.book",
        "persistent://market-data/crypto/kraken.ETH-USD.status",
    ]


def test_control_commands_round_trip_and_refuse_garbage() -> None:
    cmd = InstrumentCommand(
        op="add", venue="kraken", symbol="SOL/USD", venue_symbol="SOL/USD", namespace="crypto", channels=("trade",)
    )
    back = decode(encode(cmd))
    assert back == cmd and back.subscribes and back.key == "kraken:SOL/USD"
    assert not decode(encode(InstrumentCommand(op="disable", venue="kraken", symbol="SOL/USD",
                                               venue_symbol="SOL/USD", namespace="crypto"))).subscribes  # fmt: skip
    with pytest.raises(CodecError):
        decode(b'{"op": "explode", "venue": "kraken"}')


def test_fx_is_expected_to_tick_only_while_open() -> None:
    saturday = datetime(2024, 1, 6, 12, tzinfo=UTC)
    monday = datetime(2024, 1, 8, 12, tzinfo=UTC)
    assert not expects_ticks("oanda", saturday) and expects_ticks("oanda", monday)
    assert expects_ticks("kraken", saturday)
    assert not expects_ticks("dukascopy", monday)  # backfill only


def test_service_topics_are_validated() -> None:
    assert service_topic("trading", "orders") == "persistent://market-data/trading/orders"
    with pytest.raises(ValueError):
        service_topic("trading", "Orders/../x")
    with pytest.raises(ValueError):
        service_topic("nowhere", "orders")


METRICS = """\
# TYPE pulsar_rate_in gauge
pulsar_rate_in{cluster="pulsar-lite",namespace="market-data/crypto",partition="-1",topic="kraken.BTC-USD.trade"} 12.5
pulsar_rate_out{cluster="pulsar-lite",namespace="market-data/crypto",partition="-1",topic="kraken.BTC-USD.trade"} 10
pulsar_in_messages_total{cluster="pulsar-lite",namespace="market-data/crypto",topic="kraken.BTC-USD.trade"} 420
pulsar_subscription_back_log{namespace="market-data/crypto",topic="kraken.BTC-USD.trade",subscription="sink"} 7
pulsar_subscription_back_log{namespace="market-data/crypto",topic="kraken.BTC-USD.trade",subscription="alerts"} 3
pulsar_rate_in{cluster="c",namespace="market-data/fx",topic="persistent://market-data/fx/oanda.EUR-USD.quote"} 2
pulsar_broker_rate_in 14.5
"""


def test_topic_metrics_are_parsed_from_both_label_styles() -> None:
    got = parse_topic_metrics(METRICS)
    btc = got["persistent://market-data/crypto/kraken.BTC-USD.trade"]
    assert (btc.rate_in, btc.rate_out, btc.in_total, btc.backlog) == (12.5, 10.0, 420.0, 10.0)
    assert btc.subscriptions == {"sink": 7.0, "alerts": 3.0}
    assert got["persistent://market-data/fx/oanda.EUR-USD.quote"].rate_in == 2.0  # a real broker's full-name label
    assert len(got) == 2  # broker-wide samples carry no topic
