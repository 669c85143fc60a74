"""Baselines: the raw ``pulsar-client`` publish ceiling, and msgspec JSON vs MessagePack codec rates.

The ceiling (the BASELINE every ingester figure is divided by) is the fastest a plain :class:`pulsar.Client` goes
here: one IO thread, the client's native WARN logger, one producer configured as ``Bus.producer`` (LZ4,
batching with the same delay/count/bytes, ``max_pending_messages``, ``block_if_queue_full``, no send timeout),
sending one pre-encoded Trade (JSON, :mod:`pulse.codec`) N times with ``send_async`` and no callback, then
``flush`` — nothing but the client.

Variants, each changing one thing, show where the client's time goes: Pulse's per-message metadata, the
ingester's fan-out over 20 topics (tiny batches), and the configuration ``Bus`` had before the bench's findings
(a Python ``logging.Logger`` and a Python callback on every message).
Each runs in its own process because the client's logger is process-wide; repetitions are interleaved so a
noisy neighbour hurts every variant alike.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pulsar

from bench.harness import Report, emit_result, fmt_rate, fmt_runs, median, ratio, run_child
from pulse.codec import Codec
from pulse.models import BookDelta, Level, Trade
from pulse.settings import Settings

CEILING_TOPIC = "bench.ceiling"


def sample_trade() -> Trade:
    now = time.time_ns()
    return Trade(
        venue="kraken",
        symbol="BTC/USD",
        ts_event=now,
        ts_recv=now + 150_000,
        seq=123_456,
        price=Decimal("60123.4"),
        size=Decimal("0.01234567"),
        side="buy",
        trade_id="98765432",
        ord_type="market",
    )


def sample_book_delta() -> BookDelta:
    """What the Kraken ingester publishes for a typical book update (two bid changes, one ask removal)."""
    now = time.time_ns()
    return BookDelta(
        venue="kraken",
        symbol="BTC/USD",
        ts_event=now,
        ts_recv=now + 150_000,
        seq=654_321,
        bids=(Level(Decimal("60120.1"), Decimal("0.5")), Level(Decimal("60119.7"), Decimal("1.25000001"))),
        asks=(Level(Decimal("60125.3"), Decimal("0")),),
        checksum=3_310_070_434,
        best_bid=Level(Decimal("60120.1"), Decimal("0.5")),
        best_ask=Level(Decimal("60125.8"), Decimal("0.0104")),
    )


#: What each ceiling variant changes from the baseline (a plain client configured like ``pulse.bus.Bus``).
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "with_metadata": {"metadata": True},  # + 3 properties, partition key, event timestamp, as EventPublisher
    "topics20": {"topics": 20, "metadata": True},  # …over 20 producers, like the Kraken ingester's fan-out
    "python_logger_callback": {"logger": "python", "callback": True},  # how Bus was configured at first
}
DESCRIPTIONS = {
    "with_metadata": "+ Pulse's per-message metadata (3 properties, key, event_timestamp)",
    "topics20": "+ metadata, spread over 20 topics (the Kraken ingester's fan-out: tiny batches)",
    "python_logger_callback": "a Python logging.Logger and a Python ack callback per message (Bus's first design)",
}


class CountingLogger(logging.Logger):
    """A ``logging.Logger`` at WARNING, like the one ``Bus`` passes, that counts the records the client hands it.

    Given a Python logger, the C++ client cannot know its level: it formats every record, DEBUG included, and
    calls into Python (taking the GIL) for each; the logger then drops it. The count shows how often.
    """

    def __init__(self) -> None:
        super().__init__("pulsar.bench", logging.WARNING)
        self.calls = 0

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.calls += 1
        super().log(level, msg, *args, **kwargs)


def _client(settings: Settings, url: str, logger: Any) -> pulsar.Client:
    return pulsar.Client(
        url, operation_timeout_seconds=settings.pulsar.operation_timeout_s, logger=logger, io_threads=1
    )


def _producer(client: pulsar.Client, settings: Settings, topic_name: str) -> pulsar.Producer:
    """A producer with exactly the options ``pulse.bus.Bus.producer`` sets."""
    ps = settings.pulsar
    return client.create_producer(
        topic_name,
        compression_type={
            "lz4": pulsar.CompressionType.LZ4,
            "zstd": pulsar.CompressionType.ZSTD,
            "none": pulsar.CompressionType.NONE,
        }[ps.compression],
        batching_enabled=True,
        batching_max_messages=ps.batching_max_messages,
        batching_max_publish_delay_ms=ps.batching_max_publish_delay_ms,
        batching_max_allowed_size_in_bytes=512 * 1024,
        max_pending_messages=ps.max_pending_messages,
        block_if_queue_full=True,
        send_timeout_millis=0,
    )


def run_variant(settings: Settings, url: str, variant: str, n: int) -> dict[str, float]:
    """msgs/s of one variant (a warm-up of n/5 messages, then n messages and a flush), and how many client log
    records per message went through Python."""
    opts = {"logger": "native", "callback": False, "topics": 1, "metadata": False, **VARIANTS[variant]}
    logger = pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn) if opts["logger"] == "native" else CountingLogger()
    client = _client(settings, url, logger)
    codec = Codec(settings.pulsar.codec)
    trade = sample_trade()
    payload = codec.encode(trade)
    props, key, ts_ms = codec.properties(trade), trade.symbol, trade.ts_event // 1_000_000
    acked = 0

    def on_ack(_res: pulsar.Result, _msg_id: object) -> None:
        nonlocal acked
        acked += 1

    callback = on_ack if opts["callback"] else None
    try:
        base = f"persistent://{settings.pulsar.tenant}/crypto/{CEILING_TOPIC}"
        producers = [_producer(client, settings, f"{base}-{i}") for i in range(opts["topics"])]
        k = len(producers)

        def burst(count: int) -> float:
            t0 = time.perf_counter()
            if opts["metadata"]:
                for i in range(count):
                    producers[i % k].send_async(
                        payload, callback, properties=props, partition_key=key, event_timestamp=ts_ms
                    )
            else:
                for i in range(count):
                    producers[i % k].send_async(payload, callback)
            for p in producers:
                p.flush()
            return count / (time.perf_counter() - t0)

        burst(max(n // 5, 1000))  # warm-up: connections, batch buffers, allocator
        calls0 = getattr(logger, "calls", 0)
        rate = burst(n)
        log_calls = (getattr(logger, "calls", 0) - calls0) / n
    finally:
        client.close()
    return {"msgs_per_s": rate, "log_calls_per_msg": log_calls}


def measure_ceiling(settings: Settings, pulsar_url: str, *, n: int, reps: int, work: Path) -> dict[str, Any]:
    """Each variant in a fresh process (the client's logger is process-wide), repetitions interleaved."""
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    log_calls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for rep in range(reps):
        for name in VARIANTS:
            count = n // 2 if VARIANTS[name].get("topics", 1) > 1 else n  # the slow variant: fewer messages
            cfg = {"settings": msgspec.to_builtins(settings), "pulsar_url": pulsar_url, "variant": name, "n": count}
            res = run_child("bench.ceiling", cfg, log=work / f"ceiling-{name}-{rep}.log", timeout=300)
            runs[name].append(res["msgs_per_s"])
            log_calls[name].append(res["log_calls_per_msg"])
    payload = Codec(settings.pulsar.codec).encode(sample_trade())
    return {
        "payload_bytes": len(payload),
        "n": n,
        "runs": runs,
        "msgs_per_s": {name: median(r) for name, r in runs.items()},
        "log_calls_per_msg": {name: median(r) for name, r in log_calls.items()},
    }


def report_ceiling(report: Report, res: dict[str, Any]) -> float:
    rates, runs = res["msgs_per_s"], res["runs"]
    base = rates["baseline"]
    report.add(
        "ceiling_msgs_per_s",
        base,
        f"ceiling   raw pulsar-client send_async+flush, 1 topic, {res['payload_bytes']}-B Trade JSON, producer "
        f"configured as Bus, native logger, no callback: {fmt_rate(base)} msgs/s  "
        f"(median; runs {fmt_runs(runs['baseline'])})  <- BASELINE",
    )
    calls = res["log_calls_per_msg"]
    report.line(
        f"  (with a Python logger the client hands {calls['python_logger_callback']:.1f} log records per message "
        "to Python — DEBUG records the logger then drops; Bus now uses the native logger)"
    )
    for name, text in DESCRIPTIONS.items():
        report.add(
            f"ceiling_{name}_msgs_per_s",
            rates[name],
            f"ceiling   {text}: {fmt_rate(rates[name])} msgs/s = {ratio(rates[name], base):.2f}x baseline  "
            f"(runs {fmt_runs(runs[name])})",
        )
    return base


# -- codec -----------------------------------------------------------------------------------------------


def _rate(fn: Callable[[Any], Any], arg: Any, n: int, reps: int) -> float:
    for _ in range(n // 10):  # warm-up
        fn(arg)
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        runs.append(n / (time.perf_counter() - t0))
    return median(runs)


def measure_codec(*, n: int, reps: int) -> dict[str, dict[str, float]]:
    """Events/s to encode and decode a Trade and a BookDelta with each format (median of ``reps``)."""
    out: dict[str, dict[str, float]] = {}
    for label, event in (("trade", sample_trade()), ("book_delta", sample_book_delta())):
        for fmt in ("json", "msgpack"):
            codec = Codec(fmt)  # type: ignore[arg-type]
            data = codec.encode(event)
            assert codec.decode(data) == event  # the bench measures a correct round trip
            out[f"{label}.{fmt}"] = {
                "bytes": len(data),
                "encode_per_s": _rate(codec.encode, event, n, reps),
                "decode_per_s": _rate(codec.decode, data, n, reps),
            }
    return out


def report_codec(report: Report, res: dict[str, dict[str, float]]) -> None:
    report.add("codec", res, "codec     events/s, msgspec via pulse.codec.Codec (median; decode validates types):")
    for label in ("trade", "book_delta"):
        j, m = res[f"{label}.json"], res[f"{label}.msgpack"]
        report.line(
            f"  {label:<10} JSON {j['bytes']:>3} B enc {fmt_rate(j['encode_per_s']):>6} dec "
            f"{fmt_rate(j['decode_per_s']):>7}  |  MessagePack {m['bytes']:>3} B enc "
            f"{fmt_rate(m['encode_per_s']):>6} dec {fmt_rate(m['decode_per_s']):>7}  "
            f"(msgpack/json: enc {ratio(m['encode_per_s'], j['encode_per_s']):.2f}x, "
            f"dec {ratio(m['decode_per_s'], j['decode_per_s']):.2f}x)"
        )


def main() -> None:
    """Child process entry: one ceiling variant, config as JSON on stdin."""
    cfg = json.loads(sys.stdin.read())
    settings = msgspec.convert(cfg["settings"], Settings)
    emit_result(run_variant(settings, cfg["pulsar_url"], cfg["variant"], cfg["n"]))


if __name__ == "__main__":
    main()
