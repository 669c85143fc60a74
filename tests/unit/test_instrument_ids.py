"""One instrument identifier, ``venue:SYMBOL``, with each venue's own spellings accepted as input."""

from __future__ import annotations

import pytest

from pulse.errors import SymbolError
from pulse.instruments import InstrumentId, parse_instrument, parse_instrument_list, resolve_instrument


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("kraken:BTC/USD", "kraken:BTC/USD"),
        ("kraken:xbt/usd", "kraken:BTC/USD"),  # Kraken's legacy code, any case
        ("Kraken:XDG-EUR", "kraken:DOGE/EUR"),
        ("oanda:EUR_USD", "oanda:EUR/USD"),  # OANDA's spelling
        ("oanda:EUR/USD", "oanda:EUR/USD"),
        ("oanda:AUDCAD", "oanda:AUD/CAD"),  # six letters: BASE/QUOTE
        ("dukascopy:EURUSD", "dukascopy:EUR/USD"),  # Dukascopy's code
        ("dukascopy:usa500idxusd", "dukascopy:USA500IDX/USD"),
        # bare names that only one venue spells so
        ("EUR_USD", "oanda:EUR/USD"),
        ("EURUSD", "dukascopy:EUR/USD"),
        ("AUDCAD", "dukascopy:AUD/CAD"),
        ("XBT/USD", "kraken:BTC/USD"),
    ],
)
def test_spellings_parse_to_the_canonical_id(text: str, canonical: str) -> None:
    assert str(parse_instrument(text)) == canonical


def test_a_default_venue_applies_to_bare_names_only() -> None:
    assert parse_instrument("EUR/USD", "oanda") == InstrumentId("oanda", "EUR/USD")
    assert parse_instrument("oanda:EUR_USD", "oanda") == InstrumentId("oanda", "EUR/USD")
    with pytest.raises(SymbolError, match="instrument 'kraken:BTC/USD' is not on oanda"):
        parse_instrument("kraken:BTC/USD", "oanda")


def test_the_venue_name_and_precisions_come_with_the_resolution() -> None:
    v, r = resolve_instrument("oanda:usd_jpy")
    got = (v.name, v.namespace, r.symbol, r.venue_symbol, r.price_precision)
    assert got == ("oanda", "fx", "USD/JPY", "USD_JPY", 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EUR/USD", "'EUR/USD' is ambiguous: write VENUE:SYMBOL, one of dukascopy:EUR/USD, kraken:EUR/USD, oanda:EUR"),
        ("nope:BTC/USD", "unknown venue 'nope': expected one of alpaca, binance, coinbase, dukascopy, kraken, oanda"),
        ("kraken:BTC;DROP", "invalid Kraken symbol 'BTC;DROP'"),
        ("oanda:EUR_USDX", "invalid symbol 'EUR_USDX' for OANDA"),
        ("dukascopy:FOOBAR", "unknown Dukascopy instrument 'FOOBAR'"),
        ("K R:BTC/USD", "invalid instrument 'K R:BTC/USD': expected VENUE:SYMBOL"),
        ("ZZZZZZZZ", "no venue knows instrument 'ZZZZZZZZ'"),
        ("", "instrument must be a non-empty string"),
    ],
)
def test_bad_or_ambiguous_names_are_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(SymbolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_instrument(text)


def test_lists_refuse_duplicates_across_spellings() -> None:
    assert [str(i) for i in parse_instrument_list("EUR_USD, oanda:GBP/USD")] == ["oanda:EUR/USD", "oanda:GBP/USD"]
    with pytest.raises(SymbolError, match="instrument kraken:BTC/USD listed twice"):
        parse_instrument_list("kraken:XBT/USD,BTC/USD", "kraken")
    with pytest.raises(SymbolError, match="empty instrument"):
        parse_instrument_list("kraken:BTC/USD,,kraken:ETH/USD")
