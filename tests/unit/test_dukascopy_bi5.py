"""Dukascopy .bi5 decoding against real files (expected values from shared/data/README.md)."""

from __future__ import annotations

import lzma
import struct
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from ingesters.dukascopy.bi5 import (
    Bi5Error,
    decode_candles,
    decode_ticks,
    float32_to_decimal,
    seq_base,
    to_quotes,
)
from ingesters.dukascopy.downloader import candle_url, hours_between, tick_url
from ingesters.dukascopy.instruments import instruments, lookup
from pulse.errors import PulseError, SymbolError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dukascopy"
DAY = DATA / "EURUSD" / "2019" / "01" / "04"  # zero-based month: 2019-02-04
pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")

HOUR0 = datetime(2019, 2, 4, tzinfo=UTC)
HOUR0_NS = int(HOUR0.timestamp()) * 1_000_000_000
EURUSD = lookup("EURUSD")


def ticks(hour: int = 0):
    data = (DAY / f"{hour:02d}h_ticks.bi5").read_bytes()
    return decode_ticks(
        data, hour_start_ns=HOUR0_NS + hour * 3_600_000_000_000, divisor=EURUSD.divisor, symbol="EURUSD"
    )


def f32_bits(x: float) -> int:
    return struct.unpack(">I", struct.pack(">f", x))[0]


def test_first_hour_ticks_exact() -> None:
    recs = ticks(0)
    assert len(recs) == 3_733
    first, last = recs[0], recs[-1]
    assert first.ts_event == HOUR0_NS + 994_000_000
    assert datetime.fromtimestamp(first.ts_event // 1_000_000_000, UTC).isoformat() == "2019-02-04T00:00:00+00:00"
    assert first.offset_ms == 994
    assert (first.ask, first.bid) == (Decimal("1.14545"), Decimal("1.14543"))
    assert str(first.ask) == "1.14545" and str(first.bid) == "1.14543"
    assert first.ask_volume == Decimal("1.0")
    assert str(first.bid_volume) == "2.06"
    assert last.offset_ms == 3_599_808
    assert last.ts_event == HOUR0_NS + 3_599_808 * 1_000_000
    assert (last.ask, last.bid) == (Decimal("1.14559"), Decimal("1.14555"))


def test_ticks_of_all_four_hours_are_ordered() -> None:
    counts = []
    for hour in range(4):
        recs = ticks(hour)
        counts.append(len(recs))
        offsets = [r.offset_ms for r in recs]
        assert offsets == sorted(offsets) and offsets[0] >= 0 and offsets[-1] < 3_600_000
    assert counts == [3_733, 2_825, 2_474, 2_968]


def test_float32_volume_rule() -> None:
    # float32(2.06) is 2.059999942779541: the shortest decimal that round-trips is 2.06.
    assert struct.unpack(">f", struct.pack(">f", 2.06))[0] == 2.059999942779541
    assert str(float32_to_decimal(f32_bits(2.059999942779541))) == "2.06"
    assert str(float32_to_decimal(f32_bits(293.760009765625))) == "293.76"
    assert str(float32_to_decimal(f32_bits(1.0))) == "1"
    assert str(float32_to_decimal(f32_bits(1000.0))) == "1000"
    assert str(float32_to_decimal(f32_bits(1e-6))) == "0.000001"
    assert float32_to_decimal(f32_bits(0.1)) == Decimal("0.1")
    with pytest.raises(ValueError):
        float32_to_decimal(0x7FC00000)  # NaN


def test_minute_candles_exact() -> None:
    data = (DAY / "BID_candles_min_1.bi5").read_bytes()
    candles = decode_candles(data, period_start_ns=HOUR0_NS, divisor=EURUSD.divisor, symbol="EURUSD")
    assert len(candles) == 1_440
    c = candles[0]
    assert c.offset_s == 0 and c.ts_event == HOUR0_NS
    assert (c.open, c.close, c.low, c.high) == (
        Decimal("1.14543"),
        Decimal("1.14569"),
        Decimal("1.14542"),
        Decimal("1.14570"),
    )
    assert str(c.volume) == "293.76"
    assert [x.offset_s for x in candles] == list(range(0, 86_400, 60))


def test_empty_file_means_no_ticks() -> None:
    assert decode_ticks(b"", hour_start_ns=HOUR0_NS, divisor=100_000, symbol="EURUSD") == []
    assert decode_candles(b"", period_start_ns=HOUR0_NS, divisor=100_000, symbol="EURUSD") == []
    # A valid stream with no records is also no ticks.
    empty_stream = lzma.compress(b"", format=lzma.FORMAT_ALONE)
    assert decode_ticks(empty_stream, hour_start_ns=HOUR0_NS, divisor=100_000, symbol="EURUSD") == []


def _stream(*records: tuple[int, int, int, float, float]) -> bytes:
    """A valid LZMA "alone" stream of tick records (offset ms, ask, bid, ask volume, bid volume)."""
    return lzma.compress(b"".join(struct.pack(">I2i2f", *r) for r in records), format=lzma.FORMAT_ALONE)


_REAL_00H = (DAY / "00h_ticks.bi5").read_bytes() if DAY.is_dir() else b""


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"this is not lzma at all", "LZMA"),
        (_REAL_00H[:5_000], "truncated"),
        (lzma.compress(b"\x00" * 19, format=lzma.FORMAT_ALONE), "whole number"),
        (_stream((5, 1, 1, 1, 1), (4, 1, 1, 1, 1)), "out of order"),
        (_stream((3_600_000, 1, 1, 1, 1)), "outside the hour"),
        (_stream((1, 1, 1, float("nan"), 1)), "not finite"),
        (_stream((1, 1, 1, -1.0, 1)), "negative volume"),
    ],
)
def test_corrupt_data_raises_bi5error_naming_the_file(data: bytes, reason: str) -> None:
    with pytest.raises(Bi5Error) as err:
        decode_ticks(data, hour_start_ns=HOUR0_NS + 3_600_000_000_000, divisor=100_000, symbol="EURUSD")
    assert isinstance(err.value, PulseError)
    assert str(err.value).startswith("EURUSD/2019/01/04/01h_ticks.bi5: ")
    assert reason in str(err.value)
    with pytest.raises(Bi5Error, match=r"^https://example/x\.bi5: "):
        decode_ticks(data, hour_start_ns=HOUR0_NS, divisor=100_000, symbol="EURUSD", source="https://example/x.bi5")


def test_to_quotes() -> None:
    recs = ticks(0)
    quotes = to_quotes(
        recs, symbol="EUR/USD", first_seq=seq_base(HOUR0_NS), clock=lambda: 123, volume_multiplier=1_000_000
    )
    q = quotes[0]
    assert (q.venue, q.symbol, q.ts_event, q.ts_recv) == ("dukascopy", "EUR/USD", recs[0].ts_event, 123)
    assert (q.bid, q.ask) == (Decimal("1.14543"), Decimal("1.14545"))
    assert str(q.bid_size) == "2060000" and str(q.ask_size) == "1000000"
    assert [x.seq for x in quotes] == list(range(seq_base(HOUR0_NS), seq_base(HOUR0_NS) + 3_733))
    assert all(x.ts_recv == 123 for x in quotes)
    unsized = to_quotes(recs[:2], symbol="EUR/USD", first_seq=0, clock=lambda: 0)
    assert unsized[0].bid_size is None and unsized[0].ask_size is None


def test_seq_base_depends_only_on_the_hour() -> None:
    assert seq_base(HOUR0_NS) == 430_344 * 10_000_000
    assert seq_base(HOUR0_NS + 3_600_000_000_000) - seq_base(HOUR0_NS) == 10_000_000
    with pytest.raises(ValueError):
        seq_base(HOUR0_NS + 1)


def test_instrument_table() -> None:
    assert lookup("eurusd") is lookup("EUR/USD") is lookup("EUR-USD") is EURUSD
    assert (EURUSD.code, EURUSD.symbol, EURUSD.divisor, EURUSD.decimals) == ("EURUSD", "EUR/USD", 100_000, 5)
    assert EURUSD.volume_multiplier == 1_000_000
    assert (lookup("USDJPY").divisor, lookup("USDJPY").decimals) == (1_000, 3)
    assert lookup("XAUUSD").divisor == lookup("XAGUSD").divisor == 1_000
    assert lookup("BTCUSD").divisor == 10 and lookup("BTCUSD").volume_multiplier is None
    assert len([i for i in instruments() if i.volume_multiplier]) >= 20
    codes = [i.code for i in instruments()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("name", ["FOOBAR", "EUR/XYZ", "GBPNZD", "eur usd"])
def test_unknown_instrument_is_refused(name: str) -> None:
    with pytest.raises(SymbolError, match="To add one"):
        lookup(name)


def _have_tz() -> bool:
    try:
        ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _have_tz(), reason="no time zone database")
@pytest.mark.parametrize(
    "hour, closed",
    [
        # Winter (PST): closed Fri 22:00 UTC → Sun 22:00 UTC.
        ("2019-02-01T21", False),
        ("2019-02-01T22", True),
        ("2019-02-02T12", True),
        ("2019-02-03T21", True),
        ("2019-02-03T22", False),
        ("2019-02-04T00", False),
        # Summer (PDT): closed Fri 21:00 UTC → Sun 21:00 UTC.
        ("2019-07-05T20", False),
        ("2019-07-05T21", True),
        ("2019-07-07T20", True),
        ("2019-07-07T21", False),
    ],
)
def test_fx_weekly_close(hour: str, closed: bool) -> None:
    start = datetime.fromisoformat(hour).replace(tzinfo=UTC)
    assert EURUSD.certainly_closed(start) is closed
    assert lookup("BTCUSD").certainly_closed(start) is False


def test_urls_use_zero_based_months() -> None:
    base = "https://datafeed.dukascopy.com/datafeed/"
    assert tick_url(base, "EURUSD", HOUR0) == f"{base}EURUSD/2019/01/04/00h_ticks.bi5"
    assert tick_url(base, "EURUSD", datetime(2019, 12, 31, 23, tzinfo=UTC)).endswith("/2019/11/31/23h_ticks.bi5")
    assert candle_url(base, "EURUSD", HOUR0) == f"{base}EURUSD/2019/01/04/BID_candles_min_1.bi5"
    assert candle_url(base, "EURUSD", HOUR0, timeframe="hour_1", side="ASK").endswith(
        "EURUSD/2019/01/ASK_candles_hour_1.bi5"
    )
    assert candle_url(base, "EURUSD", HOUR0, timeframe="day_1").endswith("EURUSD/2019/BID_candles_day_1.bi5")
    assert len(hours_between(HOUR0, datetime(2019, 2, 5, tzinfo=UTC))) == 24


def test_quote_ticks_equal_the_quotes_they_stand_for() -> None:
    """The backfill's fast path (records → QuoteTicks → QuoteBatch) carries exactly what to_quotes gives."""
    from ingesters.dukascopy.bi5 import to_quote_ticks
    from pulse.models import QuoteBatch

    recs = ticks(0)
    for mult in (1_000_000, None):
        first = seq_base(HOUR0_NS)
        quotes = to_quotes(recs, symbol="EUR/USD", first_seq=first, clock=lambda: 7, volume_multiplier=mult)
        fast = to_quote_ticks(recs, first_seq=seq_base(HOUR0_NS), volume_multiplier=mult)
        batch = QuoteBatch(venue="dukascopy", symbol="EUR/USD", ts_event=fast[0].ts_event, ts_recv=7,
                           seq=fast[0].seq, ticks=tuple(fast))  # fmt: skip
        assert batch.quotes() == quotes
        assert [batch] == list(QuoteBatch.chunks(quotes, len(quotes)))


@pytest.mark.parametrize("bits", [0x7F7FFFFF, 0x5F000000, 0xFF7FFFFF])  # 3.4e38, 9.2e18, -3.4e38
def test_an_absurd_volume_is_a_bi5_error(bits: int) -> None:
    raw = struct.pack(">I2i2I", 10, 114545, 114540, bits, 0x3F800000)
    data = lzma.compress(raw, format=lzma.FORMAT_ALONE)
    with pytest.raises(Bi5Error, match="record 0: volume"):
        decode_ticks(data, hour_start_ns=0, divisor=100_000, symbol="EURUSD")
