"""Dukascopy's JSON data API: decoding real answers (recorded by dukascopy-node) exactly, the same records as
the .bi5 files of the same hour and periods, and a clear refusal of every kind of malformed answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest

from ingesters.dukascopy import bi5, jsonapi
from ingesters.dukascopy.bi5 import seq_base, to_quote_ticks
from ingesters.dukascopy.feeds import get_feed
from ingesters.dukascopy.instruments import lookup
from ingesters.dukascopy.jsonapi import ApiFormatError, candle_path, decode_candles, decode_ticks, tick_path
from pulse.errors import CodecError, ConfigError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "dukascopy"
BTC_HOUR = datetime(2023, 2, 20, 12, tzinfo=UTC)
BTC_HOUR_NS = int(BTC_HOUR.timestamp()) * 10**9
EUR_HOUR = datetime(2026, 7, 13, 12, tzinfo=UTC)
EUR_HOUR_NS = int(EUR_HOUR.timestamp()) * 10**9


def api(path: str) -> bytes:
    return (FIX / "v1" / f"{path}.json").read_bytes()


def btc_pair():
    json_ticks = decode_ticks(api("ticks/BTC-USD/2023/2/20/12"), hour_start_ns=BTC_HOUR_NS, source="api")
    bi5_ticks = bi5.decode_ticks(
        (FIX / "BTCUSD/2023/01/20/12h_ticks.bi5").read_bytes(), hour_start_ns=BTC_HOUR_NS, divisor=10, symbol="BTCUSD"
    )
    return json_ticks, bi5_ticks


def test_the_same_hour_from_both_feeds_gives_identical_ticks() -> None:
    """2023-02-20 12:00 UTC BTC/USD, as Dukascopy served it as .bi5 and, later, from the JSON API."""
    from_api, from_bi5 = btc_pair()
    assert len(from_api) == len(from_bi5) == 8_523
    assert [(t.ts_event, t.offset_ms, t.ask, t.bid) for t in from_api] == [
        (t.ts_event, t.offset_ms, t.ask, t.bid) for t in from_bi5
    ]
    first = from_api[0]
    assert (first.ts_event, first.ask, first.bid) == (1_676_894_400_084_000_000, Decimal("24921.5"), Decimal("24849.4"))
    assert str(first.ask) == "24921.5" and str(from_api[-1].bid) == "24784.7"
    # What the backfill publishes (seq, prices; BTC sizes are None: its volume unit is unverified) is identical.
    seq = seq_base(BTC_HOUR_NS)
    assert to_quote_ticks(from_api, first_seq=seq) == to_quote_ticks(from_bi5, first_seq=seq)


def test_real_eurusd_answer_decodes_to_the_values_dukascopy_node_expects() -> None:
    ticks = decode_ticks(api("ticks/EUR-USD/2026/7/13/12"), hour_start_ns=EUR_HOUR_NS, source="api")
    assert len(ticks) == 3_551
    # dukascopy-node's own test: [ms, ask, bid, askVolume, bidVolume] in millions
    assert [(t.ts_event // 10**6, t.ask, t.bid, t.ask_volume, t.bid_volume) for t in ticks[:3]] == [
        (1783944000093, Decimal("1.14277"), Decimal("1.14273"), Decimal("1.8"), Decimal("2.7")),
        (1783944000197, Decimal("1.14275"), Decimal("1.14271"), Decimal("0.9"), Decimal("14.49")),
        (1783944000351, Decimal("1.14273"), Decimal("1.14272"), Decimal("0.9"), Decimal("0.9")),
    ]
    assert (ticks[-1].ts_event // 10**6, ticks[-1].ask, ticks[-1].bid) == (
        1783947597150,
        Decimal("1.14310"),
        Decimal("1.14309"),
    )
    assert str(ticks[-1].ask) == "1.14310"  # five decimals, as every EUR/USD price from either feed
    # sizes in base units, exact: 1.8 million EUR
    quotes = to_quote_ticks(ticks[:2], first_seq=0, volume_multiplier=lookup("EURUSD").volume_multiplier)
    assert [(q.ask_size, q.bid_size) for q in quotes] == [
        (Decimal("1800000"), Decimal("2700000")),
        (Decimal("900000"), Decimal("14490000")),
    ]


@pytest.mark.parametrize(
    ("bi5_file", "api_path", "start", "step", "placeholders"),
    [
        ("BTCUSD/2023/01/19/BID_candles_min_1.bi5", "candles/minute/BTC-USD/BID/2023/2/19", (2023, 2, 19), 60, 3),
        ("BTCUSD/2023/00/BID_candles_hour_1.bi5", "candles/hour/BTC-USD/BID/2023/1", (2023, 1, 1), 3_600, 14),
    ],
)
def test_candles_from_both_feeds_are_identical(bi5_file, api_path, start, step, placeholders) -> None:
    ns = int(datetime(*start, tzinfo=UTC).timestamp()) * 10**9
    old = bi5.decode_candles((FIX / bi5_file).read_bytes(), period_start_ns=ns, divisor=10, symbol="BTCUSD")
    new = decode_candles(api(api_path), period_start_ns=ns, step_s=step, source="api")
    real = [r for r in old if not (r.volume == 0 and r.open == r.high == r.low == r.close)]
    assert len(old) - len(real) == placeholders  # the .bi5 grid's closed-market fillers; the API sends none
    assert [(r.ts_event, r.offset_s, r.open, r.high, r.low, r.close) for r in new] == [
        (r.ts_event, r.offset_s, r.open, r.high, r.low, r.close) for r in real
    ]
    # Volumes are not stored alike: the .bi5 file holds a float32, the API a decimal rounded its own way
    # (0.01229416 where the file has 0.012294, 1.152498 where it has 1.1524976). They agree to 1e-4 relative.
    assert all(abs(a.volume - b.volume) <= b.volume * Decimal("1e-4") for a, b in zip(new, real, strict=True))


def test_day_candles_differ_only_where_dukascopy_revised_a_day() -> None:
    ns = int(datetime(2022, 1, 1, tzinfo=UTC).timestamp()) * 10**9
    old = bi5.decode_candles(
        (FIX / "BTCUSD/2022/BID_candles_day_1.bi5").read_bytes(), period_start_ns=ns, divisor=10, symbol="BTCUSD"
    )
    new = decode_candles(api("candles/day/BTC-USD/BID/2022"), period_start_ns=ns, step_s=86_400, source="api")
    assert len(old) == len(new) == 365

    def ohlc(r):
        return (r.ts_event, r.open, r.high, r.low, r.close)

    differ = [(ohlc(a), ohlc(b)) for a, b in zip(old, new, strict=True) if ohlc(a) != ohlc(b)]
    # 2022-10-18: the archived .bi5 and the API disagree in the data itself, not in decoding
    day = 1_666_051_200 * 10**9
    prices = [
        Decimal(p) for p in ("19546.3", "19638.8", "19291.8", "19318.3", "19513.3", "19661.4", "19067.1", "19292.5")
    ]
    assert differ == [((day, *prices[:4]), (day, *prices[4:]))]


def test_minute_candles_with_gaps_and_an_empty_day() -> None:
    ns = int(datetime(2026, 7, 10, tzinfo=UTC).timestamp()) * 10**9
    doc = json.loads(api("candles/minute/EUR-USD/BID/2026/7/10"))
    got = decode_candles(api("candles/minute/EUR-USD/BID/2026/7/10"), period_start_ns=ns, step_s=60, source="api")
    assert len(got) == len(doc["times"])  # no placeholders invented for the gap
    assert (got[0].ts_event // 10**6, got[0].open, got[0].high, got[0].low, got[0].close, got[0].volume) == (
        1783641600000, Decimal("1.14331"), Decimal("1.14334"), Decimal("1.14322"), Decimal("1.14324"),
        Decimal("197.1"),
    )  # fmt: skip
    gap = [(b.offset_s - a.offset_s) // 60 for a, b in pairwise(got) if b.offset_s - a.offset_s > 60]
    assert gap == [3]  # two closed minutes skipped (dukascopy-node fills them with flat candles)
    empty_ns = ns + 86_400 * 10**9
    assert (
        decode_candles(api("candles/minute/EUR-USD/BID/2026/7/11"), period_start_ns=empty_ns, step_s=60, source="x")
        == []
    )


def test_url_layout() -> None:
    assert tick_path("EUR-USD", EUR_HOUR) == "ticks/EUR-USD/2026/7/13/12"
    assert tick_path("EUR-USD", datetime(2019, 2, 4, 0, tzinfo=UTC)) == "ticks/EUR-USD/2019/2/4/0"  # no padding
    assert tick_path("EUR-USD", EUR_HOUR, open_period=True) == "ticks/EUR-USD?from=1783944000000"
    feb19 = datetime(2023, 2, 19, tzinfo=UTC)
    assert candle_path("minute", "BTC-USD", "BID", feb19, open_period=False) == "candles/minute/BTC-USD/BID/2023/2/19"
    assert candle_path("hour", "BTC-USD", "ASK", feb19, open_period=False) == "candles/hour/BTC-USD/ASK/2023/2"
    assert candle_path("day", "BTC-USD", "BID", feb19, open_period=False) == "candles/day/BTC-USD/BID/2023"
    assert (
        candle_path("minute", "BTC-USD", "BID", feb19, open_period=True)
        == "candles/minute/BTC-USD/BID?from=1676764800000"
    )
    assert lookup("USA500IDXUSD").api_code == "USA500.IDX-USD" and lookup("EUR/USD").api_code == "EUR-USD"
    feed = get_feed("api")
    assert feed.tick_url("https://h/v1", lookup("EURUSD"), EUR_HOUR) == "https://h/v1/ticks/EUR-USD/2026/7/13/12"
    assert (
        get_feed("bi5")
        .tick_url("https://h/datafeed", lookup("EURUSD"), EUR_HOUR)
        .endswith("EURUSD/2026/06/13/12h_ticks.bi5")
    )
    with pytest.raises(ConfigError, match="unknown Dukascopy feed 'csv'"):
        get_feed("csv")


def _tick_doc(**changes) -> bytes:
    doc = {
        "timestamp": 1783944000000, "multiplier": 1.0e-5, "ask": 1.14277, "bid": 1.14273,
        "times": [93, 104], "asks": [0, -2], "bids": [0, 1], "askVolumes": [1800000.0, 900000.0],
        "bidVolumes": [2700000.0, 900000.0],
    }  # fmt: skip
    doc.update(changes)
    return json.dumps(doc).encode()


def test_a_well_formed_minimal_answer_decodes() -> None:
    got = decode_ticks(_tick_doc(), hour_start_ns=EUR_HOUR_NS, source="u")
    assert [(t.offset_ms, t.ask, t.bid) for t in got] == [
        (93, Decimal("1.14277"), Decimal("1.14273")),
        (197, Decimal("1.14275"), Decimal("1.14274")),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_tick_doc(asks=[0]), r"column lengths do not match \(times 2, asks 1, bids 2, askVolumes 2, bidVolumes 2\)"),
        (_tick_doc(times=[93, -1]), r"times\[1\] is a negative time delta \(-1 ms\)"),
        (_tick_doc(ask=None), r"missing base price 'ask'"),
        (_tick_doc(bid="1.1"), r"base price 'bid' is \"1.1\", not a number"),
        (_tick_doc().replace(b"900000.0]", b"NaN]"), r"non-finite number NaN"),
        (_tick_doc().replace(b'"times": [93', b'"times": [Infinity'), r"non-finite number Infinity"),
        (_tick_doc().replace(b"1800000.0", b"1e999"), r"askVolumes\[0\] is a non-finite number"),
        (_tick_doc(bids=[0, "2"]), r"bids\[1\] is \"2\", not a number"),
        (_tick_doc(asks=[0, 1.5]), r"asks\[1\] is 1.5, not a whole number"),
        (_tick_doc(askVolumes=[1, -5]), r"askVolumes\[1\] is negative"),
        (_tick_doc(multiplier=0.5), r"multiplier 0.5 is not a power of ten"),
        (_tick_doc(multiplier=None), r"multiplier is null, not a number"),
        (_tick_doc(times=[93, 3_600_000]), r"tick 1 at 1783947600093 ms is after the hour"),
        (_tick_doc(timestamp=1783940400000), r"timestamp 1783940400000 is not the hour asked for"),
        (_tick_doc(bidVolumes=None), r"column 'bidVolumes' is missing"),
        (b"[1, 2]", r"expected a JSON object, got list"),
        (b"<html>rate limited</html>", r"not valid JSON data"),
        (b"", r"not valid JSON data"),
    ],
)
def test_malformed_answers_are_refused_clearly(body: bytes, message: str) -> None:
    with pytest.raises(ApiFormatError, match=r"^https://h/v1/ticks/EUR-USD/2026/7/13/12: .*" + message):
        decode_ticks(body, hour_start_ns=EUR_HOUR_NS, source="https://h/v1/ticks/EUR-USD/2026/7/13/12")


def test_empty_hour_needs_no_base_price_and_errors_are_codec_errors() -> None:
    empty = _tick_doc(ask=None, bid=None, times=[], asks=[], bids=[], askVolumes=[], bidVolumes=[])
    assert decode_ticks(empty, hour_start_ns=EUR_HOUR_NS, source="u") == []
    assert issubclass(ApiFormatError, CodecError)


def test_malformed_candle_answers_are_refused() -> None:
    ns = int(datetime(2026, 7, 10, tzinfo=UTC).timestamp()) * 10**9
    doc = json.loads(api("candles/minute/EUR-USD/BID/2026/7/10"))
    with pytest.raises(ApiFormatError, match="shift 60000 ms is not the 3600 s candle length"):
        decode_candles(json.dumps(doc).encode(), period_start_ns=ns, step_s=3_600, source="u")
    for change, message in (
        ({"volumes": doc["volumes"][:-1]}, "column lengths do not match"),
        ({"close": None}, "missing base price 'close'"),
        ({"times": [0, -1, *doc["times"][2:]]}, r"times\[1\] is a negative time delta"),
        ({"times": [0, 0, *doc["times"][2:]]}, r"times\[1\] repeats the candle before it"),
    ):
        with pytest.raises(ApiFormatError, match=message):
            decode_candles(json.dumps({**doc, **change}).encode(), period_start_ns=ns, step_s=60, source="u")
    # lengths are checked before anything else, and the message names every column
    assert jsonapi.API_URL == "https://jetta.dukascopy.com/v1"
