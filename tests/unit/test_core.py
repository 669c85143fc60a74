"""Core package: symbols, topic naming both ways, codec exactness, settings validation, backoff, schemas."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingesters.base.backoff import Backoff
from pulse.codec import Codec, decode_any
from pulse.dsn import redact_database_url
from pulse.errors import CodecError, ConfigError, SymbolError, TopicError
from pulse.models import BookDelta, Level, Quote, Status, Trade
from pulse.schemas import SCHEMA_DIR, render_all
from pulse.settings import load_settings
from pulse.symbols import canonical, parse_symbol_list, to_topic_token
from pulse.topics import dead_letter_topic, parse_topic, topic


def trade(**kw: object) -> Trade:
    base = dict(
        venue="kraken",
        symbol="BTC/USD",
        ts_event=1_700_000_000_123_456_789,
        ts_recv=1_700_000_000_200_000_000,
        price=Decimal("45283.50000001"),
        size=Decimal("0.00010000"),
        side="buy",
        trade_id="42",
        seq=7,
    )
    base.update(kw)
    return Trade(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw,expected", [("btc/usd", "BTC/USD"), ("BTC-USD", "BTC/USD"), (" eur/usd ", "EUR/USD")])
def test_symbols_normalise(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


@pytest.mark.parametrize("bad", ["BTCUSD", "BTC/US D", "BTC/USD/X", "BTC/USD;drop", "../x", "", "B.TC/USD", "Ä/USD"])
def test_symbols_refuse_injection(bad: str) -> None:
    with pytest.raises(SymbolError, match="invalid symbol"):
        canonical(bad)


@pytest.mark.parametrize("raw,expected", [("aapl", "AAPL"), (" TSLA ", "TSLA"), ("brk.b", "BRK.B"), ("F", "F")])
def test_tickers_are_canonical_symbols(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


@pytest.mark.parametrize(
    "bad", ["BRK.B.C", "BRK..B", ".B", "BRK.", "BRK.BCD", "AAPLXY", "AAPL;", "AA PL", "A1", "BRK_B", "AAPL.trade"]
)
def test_tickers_refuse_injection(bad: str) -> None:
    with pytest.raises(SymbolError, match="invalid symbol"):
        canonical(bad)


def test_ticker_topics_round_trip() -> None:
    t = topic("equities", "alpaca", "BRK.B", "trade")
    assert t == "persistent://market-data/equities/alpaca.BRK_B.trade"
    assert parse_topic(t) == ("market-data", "equities", "alpaca", "BRK.B", "trade")
    assert parse_topic(topic("equities", "alpaca", "AAPL", "candle")).symbol == "AAPL"
    assert to_topic_token("aapl") == "AAPL"
    for bad in (
        "persistent://market-data/equities/alpaca.BRK.B.trade",
        "persistent://market-data/equities/alpaca.AAPLXY.trade",
    ):
        with pytest.raises(TopicError):
            parse_topic(bad)


def test_symbol_list_refuses_duplicates_and_empties() -> None:
    assert parse_symbol_list("btc/usd,ETH/USD") == ["BTC/USD", "ETH/USD"]
    with pytest.raises(SymbolError, match="twice"):
        parse_symbol_list("BTC/USD,btc/usd")
    with pytest.raises(SymbolError, match="empty"):
        parse_symbol_list("BTC/USD,,ETH/USD")


def test_topic_round_trip() -> None:
    t = topic("crypto", "kraken", "BTC/USD", "trade")
    assert t == "persistent://market-data/crypto/kraken.BTC-USD.trade"
    assert parse_topic(t) == ("market-data", "crypto", "kraken", "BTC/USD", "trade")
    assert parse_topic(t + "-partition-3").symbol == "BTC/USD"
    assert to_topic_token("eth/usd") == "ETH-USD"


@pytest.mark.parametrize(
    "args",
    [
        ("nope", "kraken", "BTC/USD", "trade"),
        ("crypto", "Kraken", "BTC/USD", "trade"),
        ("crypto", "kraken", "BTC/USD", "fills"),
        ("crypto", "kraken", "BTC/USD/x", "trade"),
    ],
)
def test_topic_refuses_bad_parts(args: tuple[str, str, str, str]) -> None:
    with pytest.raises(TopicError):
        topic(*args)


@pytest.mark.parametrize(
    "bad",
    [
        "persistent://market-data/crypto/kraken.BTCUSD.trade",
        "kraken.BTC-USD.trade",
        "persistent://market-data/nope/kraken.BTC-USD.trade",
    ],
)
def test_parse_topic_refuses(bad: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(bad)


def test_dead_letter_topic() -> None:
    assert dead_letter_topic("ingest.kraken") == "persistent://market-data/deadletter/ingest.kraken"
    with pytest.raises(TopicError):
        dead_letter_topic("Ingest Kraken")


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_codec_is_exact_for_every_event_type(fmt: str) -> None:
    codec = Codec(fmt)  # type: ignore[arg-type]
    events = [
        trade(),
        Quote(
            venue="oanda",
            symbol="EUR/USD",
            ts_event=1,
            ts_recv=2,
            bid=Decimal("1.14543"),
            bid_size=Decimal("1000000"),
            ask=Decimal("1.14545"),
            ask_size=None,
            bids=(Level(Decimal("1.14543"), Decimal("1000000")),),
        ),
        BookDelta(
            venue="kraken",
            symbol="BTC/USD",
            ts_event=1,
            ts_recv=2,
            bids=(Level(Decimal("1.0"), Decimal("0")),),
            asks=(),
            checksum=4294967295,
            best_bid=None,
            best_ask=Level(Decimal("2.10"), Decimal("3")),
        ),
        Status(venue="kraken", symbol="BTC/USD", ts_event=1, ts_recv=2, kind="gap", detail="reconnected"),
    ]
    for ev in events:
        data = codec.encode(ev)
        back = codec.decode(data)
        assert back == ev and type(back) is type(ev)
        assert decode_any(data, codec.properties(ev)) == ev
    # trailing zeros survive: the decimal travels as text, never as a float
    assert b'"45283.50000001"' in Codec("json").encode(trade()) and b'"0.00010000"' in Codec("json").encode(trade())


def test_codec_errors_are_specific() -> None:
    with pytest.raises(CodecError, match="cannot decode json"):
        Codec().decode(b"{not json")
    with pytest.raises(CodecError):
        Codec().decode(b'{"type":"trade","venue":"k"}')
    with pytest.raises(CodecError, match="unknown codec"):
        Codec("avro")  # type: ignore[arg-type]


def test_settings_file_env_and_refusals(tmp_path) -> None:
    f = tmp_path / "pulse.toml"
    f.write_text('[kraken]\nsymbols = ["BTC/USD"]\ndepth = 25\n[pulsar]\nauth_token = "s3cr3t-token"\n')
    s = load_settings(f, environ={"PULSE_KRAKEN__DEPTH": "100"})
    assert s.kraken.symbols == ["BTC/USD"] and s.kraken.depth == 100
    assert s.redacted()["pulsar"]["auth_token"] == "***" and "s3cr3t-token" in s.secrets()
    f.write_text("[kraken]\ndepht = 25\n")
    with pytest.raises(ConfigError, match="depht"):
        load_settings(f, environ={})
    f.write_text("[runtime]\nbroker_port = 0\n")
    with pytest.raises(ConfigError, match=r"runtime\.broker_port"):
        load_settings(f, environ={})
    with pytest.raises(ConfigError, match="PULSE_NOPE__X"):
        load_settings(None, environ={"PULSE_NOPE__X": "1"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_database_password_is_redacted() -> None:
    assert redact_database_url("postgresql://u:hunter2@h:5432/db") == "postgresql://u:***@h:5432/db"
    s = load_settings(None, environ={"PULSE_DATABASE__URL": "postgresql://u:hunter2@h/db"})
    assert "hunter2" not in str(s.redacted()) and "hunter2" in s.secrets()


def test_backoff_is_capped_jittered_and_resets() -> None:
    b = Backoff(0.5, 4.0)
    delays = [b.next_delay() for _ in range(10)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert delays[-1] == 4.0 and delays[0] < 1.0 + 1e-9
    b.reset()
    assert b.next_delay() <= 1.0
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_committed_schemas_match_the_model() -> None:
    for name, text in render_all().items():
        assert (SCHEMA_DIR / name).read_text() == text, f"{name} drifted: run `python -m pulse.schemas`"
