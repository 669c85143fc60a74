"""The benchmarks' pure helpers: percentile maths, formatting, targets, the JSON document, the replay venues'
framing and the Kraken corpus. No timings are measured or asserted here."""

from __future__ import annotations

import json
import math
import struct

import pytest

from bench.harness import (
    Report,
    Target,
    fmt_num,
    fmt_rate,
    fmt_runs,
    latency_summary,
    median,
    percentile,
    ratio,
)
from bench.kraken_corpus import HEARTBEAT, PLACEHOLDER_BYTES, generate, synthetic_clock
from bench.kraken_venue import accept_key, chunked, ws_frame
from bench.oanda_venue import chunks
from ingesters.kraken.parser import KrakenFeedParser
from ingesters.kraken.protocol import parse_rfc3339_ns


def test_percentile_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([7.0], 99) == 7.0


def test_percentile_clamps_and_handles_empty() -> None:
    assert percentile([1.0, 2.0], 150) == 2.0
    assert percentile([1.0, 2.0], -5) == 1.0
    assert math.isnan(percentile([], 50))


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert math.isnan(median([]))


def test_latency_summary_in_milliseconds() -> None:
    ns = [1_000_000 * k for k in range(1, 101)]  # 1..100 ms
    s = latency_summary(ns)
    assert s["count"] == 100
    assert s["p50_ms"] == pytest.approx(50.0, abs=1.0)
    assert s["p99_ms"] == 99.0
    assert s["max_ms"] == 100.0
    empty = latency_summary([])
    assert empty["count"] == 0 and math.isnan(empty["p99_ms"]) and math.isnan(empty["max_ms"])


def test_ratio() -> None:
    assert ratio(20.0, 40.0) == 0.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(1.0, float("nan")))
    assert math.isnan(ratio(float("nan"), 2.0))


def test_formatting() -> None:
    assert fmt_rate(31234.5) == "31,234"
    assert fmt_rate(1_234_567) == "1.23M"
    assert fmt_rate(float("nan")) == "n/a"
    assert fmt_num(52340.7) == "52,341"
    assert fmt_num(9.876) == "9.88"
    assert fmt_runs([30_100.0, 950.0]) == "30.1k 950"


def test_targets() -> None:
    assert Target("t", 50_000, ">=", 50_000).passed
    assert not Target("t", 49_999, ">=", 50_000).passed
    assert Target("p99", 9.9, "<", 10).passed
    assert not Target("p99", 10.0, "<", 10).passed
    assert not Target("t", float("nan"), ">=", 1).passed
    assert Target("t", 1.0, ">=", 2.0).describe().startswith("FAIL")


def test_report_document_is_valid_json(capsys: pytest.CaptureFixture[str]) -> None:
    r = Report()
    r.add("rate", 123.0, "rate 123")
    r.add("missing", float("nan"), "missing")
    r.target("rate", 123.0, ">=", 100.0)
    r.target("latency", float("nan"), "<", 10.0, " ms")
    doc = r.document({"quick": True})
    assert "rate 123" in capsys.readouterr().out
    parsed = json.loads(json.dumps(doc, allow_nan=False))  # NaN became null
    assert parsed["figures"] == {"rate": 123.0, "missing": None}
    assert [t["pass"] for t in parsed["targets"]] == [True, False]
    assert parsed["targets"][1]["value"] is None
    assert parsed["all_targets_pass"] is False


def test_websocket_accept_key_rfc6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_ws_frame_lengths(size: int) -> None:
    payload = b"x" * size
    frame = ws_frame(payload)
    assert frame[0] == 0x81  # FIN + text
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 1 << 16:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size and frame[4:] == payload
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size and frame[10:] == payload


def test_chunked_keeps_whole_frames_in_order() -> None:
    frames = [b"a" * 1000] * 600  # several 256 KiB chunks
    joined = b"".join(chunked(frames))
    assert joined == b"".join(ws_frame(f) for f in frames)
    assert len(chunked(frames)) > 1


def test_oanda_chunks_are_http_chunked_lines() -> None:
    lines = [b'{"type":"PRICE","n":%d}' % i for i in range(3)]
    (only,) = chunks(lines)
    head, _, rest = only.partition(b"\r\n")
    body = rest[: int(head, 16)]
    assert body.split(b"\n")[:-1] == lines and rest.endswith(b"\r\n")


def test_kraken_corpus_replays_without_checksum_failures() -> None:
    corpus = generate(frames=400, seed=3, stamp=synthetic_clock(1_700_000_000_000_000_000))
    parser = KrakenFeedParser(depth=corpus.depth)
    assert not parser.feed(corpus.instrument).events
    for f in (*corpus.book_snapshots.values(), *corpus.ticker_snapshots.values()):
        assert parser.feed(f).events
    events = [len(parser.feed(f).events) for f in corpus.frames]
    assert parser.checksum_failed == 0
    assert events == corpus.events  # the venue's count of what each frame yields is exact
    assert corpus.counts["events"] == sum(events) and corpus.counts["frames"] == len(corpus.frames) >= 400
    assert corpus.counts["trades"] > corpus.counts["trade_frames"]  # trade frames carry several trades
    assert parser.feed(HEARTBEAT).heartbeat


def test_kraken_corpus_placeholder_stamps() -> None:
    corpus = generate(frames=50, seed=1, stamp=None)
    stamped = [f for f in corpus.frames if PLACEHOLDER_BYTES in f]
    assert len(stamped) == len(corpus.frames)  # every data frame carries a timestamp to replace
    now = b"2024-05-01T12:00:00.123456Z"
    first = now.join(corpus.frames[0].split(PLACEHOLDER_BYTES))
    assert PLACEHOLDER_BYTES not in first
    assert parse_rfc3339_ns(now.decode()) == 1_714_564_800_123_456_000
