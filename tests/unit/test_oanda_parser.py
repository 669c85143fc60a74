"""OANDA pricing stream, pure parts: recorded lines → exact quotes; splitting; timestamps; symbol mapping."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ingesters.oanda.parser import LineSplitter, OandaMessageError, OandaStreamParser, parse_rfc3339_ns
from ingesters.oanda.schemas import ERROR_DECODER
from ingesters.oanda.symbols import instrument_to_symbol, parse_instruments, symbol_to_instrument
from pulse.errors import SymbolError
from pulse.models import Level

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oanda"


def fixture_line(name: str) -> bytes:
    lines = (FIXTURES / name).read_bytes().splitlines()
    assert len(lines) == 1
    return lines[0]


def parser() -> OandaStreamParser:
    ticks = iter(range(1_000, 1_000_000))
    return OandaStreamParser(clock=lambda: next(ticks))


# -- PRICE / HEARTBEAT ------------------------------------------------------------------------------------


def test_price_line_from_the_docs_becomes_an_exact_quote() -> None:
    p = parser()
    out = p.feed_line(fixture_line("price.jsonl"))
    q = out.event
    assert q is not None and not out.heartbeat and out.tradeable is True
    assert q.venue == "oanda" and q.symbol == "EUR/JPY"
    assert q.ts_event == 1_477_557_523_094_548_890  # 2016-10-27T08:38:43.094548890Z, all 9 digits
    assert out.ts_event == q.ts_event
    assert q.ts_recv == 1_000
    assert q.seq == 1
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (
        Decimal("114.311"),
        Decimal("1000000"),
        Decimal("114.312"),
        Decimal("1000000"),
    )
    assert q.bids == (
        Level(Decimal("114.311"), Decimal("1000000")),
        Level(Decimal("114.310"), Decimal("2000000")),
        Level(Decimal("114.309"), Decimal("5000000")),
        Level(Decimal("114.307"), Decimal("10000000")),
    )
    assert q.asks == (
        Level(Decimal("114.312"), Decimal("1000000")),
        Level(Decimal("114.313"), Decimal("2000000")),
        Level(Decimal("114.314"), Decimal("5000000")),
        Level(Decimal("114.316"), Decimal("10000000")),
    )
    assert str(q.bids[1].price) == "114.310"  # trailing zero kept: the venue's precision survives
    assert q.tradeable is True


def test_heartbeat_line() -> None:
    out = parser().feed_line(fixture_line("heartbeat.jsonl"))
    assert out.event is None and out.heartbeat is True and out.tradeable is None
    assert out.ts_event == 1_477_557_524_327_443_673


def test_non_tradeable_price() -> None:
    out = parser().feed_line(fixture_line("price_non_tradeable.jsonl"))
    assert out.tradeable is False
    q = out.event
    assert q is not None and q.tradeable is False and q.symbol == "EUR/USD"
    assert (q.bid, q.ask) == (Decimal("1.08542"), Decimal("1.08601"))
    assert q.ts_event == 1_720_817_880_000_000_000  # 2024-07-12T20:58:00Z


def test_error_body_fixtures_decode() -> None:
    assert ERROR_DECODER.decode(fixture_line("error_401.jsonl")).errorMessage == (
        "Insufficient authorization to perform request."
    )
    assert ERROR_DECODER.decode(fixture_line("error_400_instrument.jsonl")).errorMessage == (
        "Invalid Instrument FOO_BAR"
    )


def test_seq_is_per_instrument_and_strictly_increasing() -> None:
    p = parser()
    eur = fixture_line("price_non_tradeable.jsonl")
    jpy = fixture_line("price.jsonl")
    seqs = [(e.symbol, e.seq) for e in (p.feed_line(x).event for x in (eur, jpy, eur, eur, jpy)) if e]
    assert seqs == [("EUR/USD", 1), ("EUR/JPY", 1), ("EUR/USD", 2), ("EUR/USD", 3), ("EUR/JPY", 2)]
    p.feed_line(fixture_line("heartbeat.jsonl"))  # heartbeats take no sequence number
    assert p.last_seq("EUR/USD") == 3 and p.last_seq("EUR/JPY") == 2 and p.last_seq("GBP/USD") == 0


def test_status_only_payload_and_empty_ladders() -> None:
    p = parser()
    line = (
        b'{"type":"PRICE","instrument":"GBP_USD","time":"2024-01-05T21:57:59.5Z","bids":[],"asks":[],'
        b'"status":"non-tradeable"}'
    )
    out = p.feed_line(line)
    assert out.tradeable is False
    q = out.event
    assert q is not None
    assert (q.bid, q.bid_size, q.ask, q.ask_size, q.bids, q.asks) == (None, None, None, None, (), ())
    assert q.ts_event == 1_704_491_879_500_000_000
    # Neither `tradeable` nor `status`: assumed tradeable; missing ladders are empty.
    bare = b'{"type":"PRICE","instrument":"GBP_USD","time":"2024-01-05T21:57:59Z"}'
    assert p.feed_line(bare).tradeable is True


def test_unknown_fields_are_ignored() -> None:
    line = (
        b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-02T03:04:05.000000001Z",'
        b'"bids":[{"price":"1.10001","liquidity":1000000}],"asks":[{"price":"1.10010","liquidity":1000000}],'
        b'"quoteHomeConversionFactors":{"positiveUnits":"1.00000","negativeUnits":"1.00000"},'
        b'"unitsAvailable":{"default":{"long":"1","short":"1"}},"somethingNew":[1,2,3],"tradeable":true}'
    )
    q = parser().feed_line(line).event
    assert q is not None and q.bid == Decimal("1.10001") and q.ts_event == 1_704_164_645_000_000_001


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b'{"type":"PRICE","instrument":"EUR_', "malformed"),  # truncated
        (b"not json at all", "malformed"),
        (b"[]", "malformed"),
        (b'{"time":"2024-01-01T00:00:00Z"}', "type"),  # no type
        (b'{"type":"SURPRISE","time":"2024-01-01T00:00:00Z"}', "SURPRISE"),
        (b'{"errorMessage":"Insufficient authorization to perform request."}', "type"),
        (b'{"type":"HEARTBEAT"}', "time"),
        (b'{"type":"HEARTBEAT","time":"yesterday"}', "RFC 3339"),
        (b'{"type":"HEARTBEAT","time":"2024-02-30T00:00:00Z"}', "impossible"),
        (b'{"type":"PRICE","time":"2024-01-01T00:00:00Z"}', "instrument"),
        (b'{"type":"PRICE","instrument":"eur_usd","time":"2024-01-01T00:00:00Z"}', "instrument"),
        (b'{"type":"PRICE","instrument":"EUR/USD","time":"2024-01-01T00:00:00Z"}', "instrument"),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z",'
            b'"bids":[{"price":"abc","liquidity":1}]}',
            "decimal",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z",'
            b'"bids":[{"price":"NaN","liquidity":1}]}',
            "positive finite",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z",'
            b'"asks":[{"price":"Infinity","liquidity":1}]}',
            "positive finite",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z",'
            b'"asks":[{"price":"0","liquidity":1}]}',
            "positive finite",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z",'
            b'"asks":[{"price":"1.1","liquidity":-5}]}',
            "negative",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z",'
            b'"asks":[{"price":"1.1","liquidity":"lots"}]}',
            "liquidity",
        ),
        (
            b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00Z","tradeable":"yes"}',
            "tradeable",
        ),
    ],
)
def test_malformed_lines_raise_with_the_raw_payload(line: bytes, needle: str) -> None:
    p = parser()
    with pytest.raises(OandaMessageError) as info:
        p.feed_line(line)
    assert needle in str(info.value)
    assert info.value.raw == line
    # The parser is still usable afterwards and no sequence number was spent.
    assert p.feed_line(fixture_line("price.jsonl")).event.seq == 1  # type: ignore[union-attr]


# -- timestamps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2016-10-27T08:38:43.094548890Z", 1_477_557_523_094_548_890),
        ("2016-10-27T08:38:43.094548Z", 1_477_557_523_094_548_000),
        ("2016-10-27T08:38:43.094Z", 1_477_557_523_094_000_000),
        ("2016-10-27T08:38:43.9Z", 1_477_557_523_900_000_000),
        ("2016-10-27T08:38:43Z", 1_477_557_523_000_000_000),
        ("2016-10-27T10:38:43.000000001+02:00", 1_477_557_523_000_000_001),
        ("2016-10-27T03:08:43.000000001-05:30", 1_477_557_523_000_000_001),
        ("1970-01-01T00:00:00.000000000Z", 0),
        ("2024-02-29T23:59:59.999999999Z", 1_709_251_199_999_999_999),
    ],
)
def test_rfc3339_to_ns_is_exact(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns
    assert parse_rfc3339_ns(text) == ns  # second call takes the cached-seconds path


@pytest.mark.parametrize(
    "text",
    [
        "2016-10-27 08:38:43Z",
        "2016-10-27T08:38:43.0945488901Z",  # 10 digits
        "2016-10-27T08:38:43.Z",
        "2016-10-27T08:38:43",  # no offset
        "2016-10-27T24:00:00Z",
        "2016-10-27T08:38:60Z",
        "2016-13-01T00:00:00Z",
        "2016-10-27T08:38:43.09454889\u0663Z",  # non-ASCII digit
        "2016-10-27T08:38:43.0945488 9Z",
    ],
)
def test_rfc3339_rejects_bad_times(text: str) -> None:
    parse_rfc3339_ns("2016-10-27T08:38:43.000000000Z")  # warm the cache for that second
    with pytest.raises(ValueError):
        parse_rfc3339_ns(text)


# -- line splitting ---------------------------------------------------------------------------------------

BODY = (
    fixture_line("price.jsonl")
    + b"\n"
    + fixture_line("heartbeat.jsonl")
    + b"\r\n\n"
    + fixture_line("price_non_tradeable.jsonl")
    + b"\n"
)
EXPECTED = [fixture_line("price.jsonl"), fixture_line("heartbeat.jsonl"), fixture_line("price_non_tradeable.jsonl")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, len(BODY)])
def test_splitter_reassembles_lines_across_any_chunking(size: int) -> None:
    s = LineSplitter()
    out: list[bytes] = []
    for i in range(0, len(BODY), size):
        out += s.feed(BODY[i : i + size])
    out += s.flush()
    assert out == EXPECTED


def test_splitter_returns_a_final_line_without_newline_on_flush() -> None:
    s = LineSplitter()
    assert s.feed(b'{"a":1}\n{"b":') == [b'{"a":1}']
    assert s.feed(b"2}") == []
    assert s.flush() == [b'{"b":2}']
    assert s.flush() == []


def test_splitter_drops_and_counts_overlong_lines_and_recovers() -> None:
    s = LineSplitter(max_line_bytes=10)
    out = s.feed(b"short\n" + b"x" * 25 + b"\nok\n")  # a whole overlong line inside one chunk
    assert out == [b"short", b"ok"] and s.oversized == 1
    # An overlong line arriving in pieces is not buffered: dropped as soon as it passes the limit.
    assert s.feed(b"y" * 8) == []
    assert s.feed(b"y" * 8) == [] and s.oversized == 2
    assert len(s._buf) == 0  # nothing kept
    assert s.feed(b"yyyy") == []
    assert s.feed(b"yy\nafter\n") == [b"after"]
    assert s.last_oversized_prefix == b"y" * 16
    assert s.feed(b"z" * 11) == [] and s.flush() == [] and s.oversized == 3
    assert s.feed(b"exactly10!\n") == [b"exactly10!"]


def test_splitter_skips_blank_lines() -> None:
    s = LineSplitter()
    assert s.feed(b"\n\r\n  \n" + b"a\n") == [b"a"]


# -- symbols ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "symbol"),
    [("EUR_USD", "EUR/USD"), ("USD_JPY", "USD/JPY"), ("XAU_USD", "XAU/USD"), ("SPX500_USD", "SPX500/USD")],
)
def test_symbols_both_ways(instrument: str, symbol: str) -> None:
    assert instrument_to_symbol(instrument) == symbol
    assert symbol_to_instrument(symbol) == instrument


@pytest.mark.parametrize(
    "bad", ["eur_usd", "EUR-USD", "EUR/USD", "EURUSD", "EUR_USDX", "EUR_US", "_USD", "EUR_", " EUR_USD", "1EUR_USD"]
)
def test_instrument_names_are_strict(bad: str) -> None:
    with pytest.raises(SymbolError):
        instrument_to_symbol(bad)


@pytest.mark.parametrize("bad", ["eur/usd", "EUR_USD", "EUR-USD", "EUR/US", "EUR/USD ", "BTC/USDT", "E/USD"])
def test_symbols_are_strict(bad: str) -> None:
    with pytest.raises(SymbolError):
        symbol_to_instrument(bad)


def test_parse_instruments() -> None:
    assert parse_instruments("EUR_USD, GBP_USD") == ["EUR_USD", "GBP_USD"]
    for bad in ("EUR_USD,", "EUR_USD,EUR_USD", "EUR_USD,gbp_usd", ""):
        with pytest.raises(SymbolError):
            parse_instruments(bad)
