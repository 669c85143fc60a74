"""Alpaca: the parser on one recorded-format frame per message type (values from Alpaca's documented examples),
array splitting with a bad element, exact timestamps, symbol rules and the NYSE calendar (holidays, early closes,
DST) through the cached exchange-calendars table. Pure: no network, no clock but an injected one."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ingesters.alpaca.calendar import UsEquityCalendar
from ingesters.alpaca.parser import AlpacaMessageError, AlpacaParser, parse_rfc3339_ns
from ingesters.alpaca.symbols import resolve
from pulse.errors import SymbolError
from pulse.instruments import parse_instrument
from pulse.models import Candle, Quote, Trade

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "alpaca"
NOW = 1_700_000_000_123_456_789
D = Decimal


def frame(name: str) -> bytes:
    return (FIX / name).read_bytes()


def parser() -> AlpacaParser:
    return AlpacaParser(clock=lambda: NOW)


def test_trade() -> None:
    out = parser().feed(frame("trade.json"))
    assert out.events == [
        Trade(venue="alpaca", symbol="AAPL", ts_event=1614009104_208_000_000, ts_recv=NOW, seq=1, price=D("126.55"),
              size=D("1"), side=None, trade_id="D-96921")
    ]  # fmt: skip
    assert not out.controls and not out.bad


def test_quote_keeps_nanoseconds_and_exact_prices() -> None:
    (q,) = parser().feed(frame("quote.json")).events
    assert q == Quote(venue="alpaca", symbol="AMD", ts_event=1614009105_335_689_322, ts_recv=NOW, seq=1,
                      bid=D("87.66"), bid_size=D("1"), ask=D("87.68"), ask_size=D("4"))  # fmt: skip


def test_minute_bar_is_a_candle() -> None:
    (c,) = parser().feed(frame("bar.json")).events
    assert c == Candle(venue="alpaca", symbol="SPY", ts_event=1614021300_000_000_000, ts_recv=NOW, seq=1,
                       interval_s=60, open=D("388.985"), high=D("389.13"), low=D("388.975"), close=D("389.12"),
                       volume=D("49378"), ticks=461, side="trade")  # fmt: skip


def test_an_array_is_split_into_events_in_order() -> None:
    p = parser()
    t, q = p.feed(frame("batch.json")).events
    assert isinstance(t, Trade) and (t.symbol, t.price, t.size, t.trade_id) == ("BRK.B", D("412.0001"), D("100"),
                                                                                  "V-52983525029461")  # fmt: skip
    assert t.ts_event == 1614009104_208_123_456
    assert isinstance(q, Quote)
    assert (q.symbol, q.bid, q.bid_size, q.ask, q.ask_size) == ("TSLA", None, None, D("704.99"), D("2"))
    assert q.ts_event == 1614009105_000_000_001
    (t2,) = p.feed(frame("trade.json")).events
    assert (t.seq, t2.seq) == (1, 1)  # per symbol
    (t3,) = p.feed(frame("trade.json")).events
    assert t3.seq == 2


@pytest.mark.parametrize(
    ("name", "kind", "code", "msg"),
    [
        ("connected.json", "connected", 0, "connected"),
        ("authenticated.json", "authenticated", 0, "authenticated"),
        ("error.json", "error", 402, "auth failed"),
    ],
)
def test_control_messages(name: str, kind: str, code: int, msg: str) -> None:
    (c,) = parser().feed(frame(name)).controls
    assert (c.kind, c.code, c.msg) == (kind, code, msg)


def test_subscription_lists_the_whole_session() -> None:
    (c,) = parser().feed(frame("subscription.json")).controls
    assert c.kind == "subscription" and c.subscription is not None
    s = c.subscription
    assert (s.trades, s.quotes, s.bars, s.corrections, s.cancel_errors) == (["AAPL"], ["AMD", "CLDR"], ["*"],
                                                                             ["AAPL"], ["AAPL"])  # fmt: skip


def test_a_bad_element_costs_only_itself() -> None:
    good = json.loads(frame("trade.json"))[0]
    bad = [
        {"T": "t", "S": "AAPL", "i": 1, "x": "V", "p": -1, "s": 1, "t": "2021-02-22T15:51:44Z"},  # negative price
        {"T": "t", "S": "AAPL", "i": 2, "x": "V", "p": 1, "s": 1, "t": "2021-02-30T15:51:44Z"},  # no 30 February
        {"T": "t", "S": "AAPL", "i": 3, "x": "V", "p": 1, "s": 1, "t": "yesterday"},
        {"T": "q", "S": "AAPL", "bx": "V", "bp": 1, "bs": 1, "ax": "V", "ap": None, "as": 1, "t": "2021-02-22T15:51Z"},
        {"T": "t", "S": "*", "i": 4, "x": "V", "p": 1, "s": 1, "t": "2021-02-22T15:51:44Z"},  # not a ticker
        {"T": "b", "S": "SPY", "o": 2, "h": 1, "l": 1, "c": 1, "v": 1, "t": "2021-02-22T19:15:00Z"},  # open > high
        {"T": "zz", "msg": "?"},
        {"S": "AAPL"},
        7,
    ]
    out = parser().feed(json.dumps([bad[0], good, *bad[1:]]))
    assert [e.trade_id for e in out.events] == ["D-96921"]  # type: ignore[union-attr]
    assert len(out.bad) == len(bad)
    assert json.loads(out.bad[0][0]) == bad[0] and "invalid trade price -1" in out.bad[0][1]
    assert "impossible date" in out.bad[1][1] and "not an RFC 3339 time" in out.bad[2][1]
    assert "invalid Alpaca symbol '*'" in out.bad[4][1] and "inconsistent bar" in out.bad[5][1]


@pytest.mark.parametrize("raw", [b"", b"{", b'{"T":"t"}', b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b"null"])
def test_a_frame_that_is_not_an_array_is_refused(raw: bytes) -> None:
    with pytest.raises(AlpacaMessageError, match="malformed Alpaca frame"):
        parser().feed(raw)


def test_rfc3339_exact() -> None:
    assert parse_rfc3339_ns("2021-02-22T15:51:45.335689322Z") == 1614009105_335_689_322
    assert parse_rfc3339_ns("2021-02-22T10:51:45.5-05:00") == 1614009105_500_000_000
    assert parse_rfc3339_ns("2021-02-22T19:15:00Z") == 1614021300 * 10**9
    for bad in (
        "2021-02-22 19:15:00Z",
        "2021-02-22T19:15:00",
        "2021-02-22T24:00:00Z",
        "2021-02-22T19:15:00.1234567890Z",
    ):
        with pytest.raises(ValueError):
            parse_rfc3339_ns(bad)


@pytest.mark.parametrize(("text", "symbol"), [("AAPL", "AAPL"), ("tsla", "TSLA"), (" brk.b ", "BRK.B"), ("F", "F")])
def test_symbol_rules_accept_tickers(text: str, symbol: str) -> None:
    s = resolve(text)
    assert (s.symbol, s.venue_symbol, s.price_precision, s.size_precision) == (symbol, symbol, 4, 0)


@pytest.mark.parametrize(
    "text", ["*", "AAPL,TSLA", 'AAPL"]}', "BRK/B", "BRK-B", "BRK.B.C", "GOOGLE", "A1", "", "AAPL.trade", "ÄPPL"]
)
def test_symbol_rules_refuse_anything_else(text: str) -> None:
    with pytest.raises(SymbolError, match="invalid Alpaca symbol"):
        resolve(text)


def test_instrument_ids() -> None:
    assert str(parse_instrument("alpaca:aapl")) == "alpaca:AAPL"
    assert str(parse_instrument("TSLA")) == "alpaca:TSLA"  # only Alpaca lists bare tickers
    assert str(parse_instrument("BRK.B")) == "alpaca:BRK.B"


# -- the calendar ------------------------------------------------------------------------------------------


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(scope="module")
def nyse(tmp_path_factory: pytest.TempPathFactory) -> UsEquityCalendar:
    cal = UsEquityCalendar("regular", cache_path=tmp_path_factory.mktemp("cal") / "xnys.json")
    cal.preload(utc(2026, 6, 1))
    return cal


def test_regular_session_in_winter_and_summer(nyse: UsEquityCalendar) -> None:
    # EST (UTC-5): 09:30-16:00 New York = 14:30-21:00 UTC; EDT (UTC-4): 13:30-20:00 UTC
    assert not nyse.is_open(utc(2026, 1, 6, 14, 29, 59)) and nyse.is_open(utc(2026, 1, 6, 14, 30))
    assert nyse.is_open(utc(2026, 1, 6, 20, 59, 59)) and not nyse.is_open(utc(2026, 1, 6, 21, 0))
    assert nyse.is_open(utc(2026, 7, 7, 13, 30)) and not nyse.is_open(utc(2026, 7, 7, 20, 0))


def test_holidays_weekends_and_early_closes(nyse: UsEquityCalendar) -> None:
    assert not nyse.is_open(utc(2026, 11, 26, 16, 0))  # Thanksgiving
    assert not nyse.is_open(utc(2026, 12, 25, 16, 0))  # Christmas
    assert not nyse.is_open(utc(2026, 7, 3, 16, 0))  # Independence Day observed (4 July is a Saturday)
    assert not nyse.is_open(utc(2026, 12, 5, 16, 0))  # a Saturday
    assert nyse.is_open(utc(2026, 11, 27, 17, 59)) and not nyse.is_open(utc(2026, 11, 27, 18, 0))  # 13:00 close
    assert nyse.next_close(utc(2026, 12, 24, 15, 0)) == utc(2026, 12, 24, 18, 0)  # Christmas Eve, early close
    assert nyse.next_open(utc(2026, 12, 24, 18, 0)) == utc(2026, 12, 28, 14, 30)  # past Christmas and the weekend
    assert nyse.last_open(utc(2026, 12, 26, 12, 0)) == utc(2026, 12, 24, 14, 30)
    days = nyse.session_days(date(2026, 12, 21), date(2026, 12, 31))
    assert date(2026, 12, 25) not in days and len(days) == 8


def test_the_cache_serves_a_new_process_without_the_library(nyse: UsEquityCalendar) -> None:
    again = UsEquityCalendar("regular", cache_path=nyse.path)
    assert again.is_open(utc(2026, 11, 27, 17, 59)) and not again.is_open(utc(2026, 11, 26, 16, 0))
    assert again.library_loads == 0 and nyse.library_loads == 1
    ext = UsEquityCalendar("extended", cache_path=nyse.path)
    assert ext.is_open(utc(2026, 1, 6, 9, 0)) and not ext.is_open(utc(2026, 1, 6, 8, 59))  # 04:00 EST
    assert ext.is_open(utc(2026, 11, 27, 21, 59)) and not ext.is_open(utc(2026, 11, 27, 22, 0))  # 17:00 after 13:00
    assert not ext.is_open(utc(2026, 11, 26, 12, 0)) and ext.library_loads == 0


def test_a_damaged_cache_is_rebuilt(tmp_path: Path, nyse: UsEquityCalendar) -> None:
    path = tmp_path / "xnys.json"
    path.write_text('{"version": 1, "exchange": "XNYS", "first_year": 2025')
    cal = UsEquityCalendar("regular", cache_path=path)
    assert cal.is_open(utc(2026, 1, 6, 15, 0)) and cal.library_loads == 1
    assert json.loads(path.read_text())["sessions"] == json.loads(nyse.path.read_text())["sessions"]


# -- the REST trade history (pulse repair's source) --------------------------------------------------------


def test_rest_trades_page_gives_the_streams_ids_and_exact_values() -> None:
    from ingesters.alpaca.rest import parse_page

    trades, token = parse_page(frame("rest_trades.json"), "AAPL", NOW)
    assert token == "QUFQTHwyMDIxLTAyLTIyVDE1OjUxOjQ0LjIwODEyMzQ1Nlo="
    assert [(t.trade_id, t.price, t.size, t.ts_event) for t in trades] == [
        ("D-96921", D("126.55"), D("1"), 1614009104_208_000_000),  # the id the stream's trade.json gets
        ("V-52983525029461", D("126.5501"), D("100"), 1614009104_208_123_456),
    ]
    assert parse_page(b'{"trades": null, "symbol": "AAPL", "next_page_token": null}', "AAPL", NOW) == ([], None)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>", "malformed trades answer"),
        (b'{"trades": [{"t": "2021-02-22T15:51:44Z", "x": "V", "p": 0, "s": 1, "i": 1}]}', "price 0"),
        (b'{"trades": [{"t": "noon", "x": "V", "p": 1, "s": 1, "i": 1}]}', "not an RFC 3339 time"),
        (b'{"trades": [{"x": "V", "p": 1, "s": 1, "i": 1}]}', "malformed trades answer"),
    ],
)
def test_rest_trades_page_refuses_malformed_answers(body: bytes, why: str) -> None:
    from ingesters.alpaca.rest import AlpacaRestError, parse_page

    with pytest.raises(AlpacaRestError, match=why):
        parse_page(body, "AAPL", NOW)


def test_trade_corrections_and_cancels_name_the_trade_they_amend() -> None:
    p = parser()
    c = p.feed(frame("correction.json"))
    assert not c.events and not c.bad
    assert [(k, s, t) for _, k, s, t in c.amendments] == [("trade_correction", "EEM", "M-52983525033527")]
    assert json.loads(c.amendments[0][0])["cp"] == 39.1809  # the venue's message, kept whole
    x = p.feed(frame("cancel.json"))
    assert [(k, s, t) for _, k, s, t in x.amendments] == [("trade_cancel", "GOOGL", "D-465")]
    bad = p.feed(b'[{"T":"x","S":"GOOGL","i":1,"x":"D","p":1,"s":1,"a":"Z","t":"2023-04-06T13:15:42Z"}]')
    assert not bad.amendments and "unknown cancel action 'Z'" in bad.bad[0][1]
