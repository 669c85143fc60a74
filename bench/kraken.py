"""Kraken: the production ingester fed by a replay venue, each in its own process, publishing to the bench broker.

Throughput: the venue (:mod:`bench.kraken_venue`, ``blast``) answers the subscriptions and then writes the whole
corpus as fast as the socket takes it; the ingester (:mod:`bench.ingest_proc`) is ``KrakenIngester`` +
``IngestContext`` + ``EventPublisher(Bus(…), "crypto")`` exactly as ``pulse ingest kraken`` builds them. The
figure runs from the end of the warm-up frames to the broker's ack of the last event (flush included): frames
and events per second, and events/s as a share of the raw publish ceiling. Median of the repetitions, each a
fresh ingester process (a fresh connection, fresh producers).

Latency: the venue paces frames at a fixed event rate and stamps every frame with the wall-clock time it
writes it; the ingester's ``on_ack`` hook takes ``time.time_ns() - ts_event`` for each acknowledged trade: venue
send → WebSocket → parse → encode → batch → broker → ack callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bench.harness import Child, Report, broker_pid, fmt_rate, fmt_runs, latency_summary, median, ratio, run_child
from bench.kraken_corpus import SYMBOLS, generate, synthetic_clock
from ingesters.kraken.parser import KrakenFeedParser
from pulse.runtime import Endpoints
from pulse.settings import Settings

TARGET_EVENTS_PER_S = 50_000
TARGET_CEILING_SHARE = 0.40
TARGET_P99_MS = 10.0
LATENCY_RATE = 5_000  # events/s


@dataclass(frozen=True)
class Sizes:
    frames: int  # corpus data frames (a fast ingester reads them all; a slow one stops at measure_s)
    warmup_frames: int
    measure_s: float  # longest measured part of a throughput run
    reps: int
    latency_s: float
    latency_warmup_s: float


FULL = Sizes(frames=100_000, warmup_frames=8_000, measure_s=6.0, reps=3, latency_s=10.0, latency_warmup_s=1.0)
QUICK = Sizes(frames=30_000, warmup_frames=2_000, measure_s=2.5, reps=1, latency_s=3.0, latency_warmup_s=0.5)


def _ingest_cfg(
    settings: Settings,
    ep: Endpoints,
    venue: Child,
    *,
    latency: bool,
    timeout: float,
    null: bool = False,
    measure_s: float | None = None,
) -> dict[str, Any]:
    return {
        "max_measure_s": measure_s,
        "publisher": "null" if null else "pulsar",
        "mode": "kraken",
        "settings": msgspec.to_builtins(settings),
        "pulsar_url": ep.pulsar_url,
        "home": str(settings.home),
        "url": venue.info["url"],
        "symbols": venue.info["symbols"],
        "depth": venue.info["depth"],
        "latency": latency,
        "timeout_s": timeout,
        "pids": {"venue": venue.pid, "broker": broker_pid(settings)},
    }


def _check(res: dict[str, Any], what: str) -> None:
    if not res.get("ok"):
        raise RuntimeError(f"{what}: {res.get('error', 'failed')}")
    ing = res["ingester"]
    bad = {k: ing[k] for k in ("checksum_failures", "parse_errors", "reconnects", "publish_failed") if ing.get(k)}
    if bad:  # the figure would include resyncs or reconnects: say so rather than print it as throughput
        raise RuntimeError(f"{what}: the ingester reported {bad}")


def _cores(res: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in res["cpu_cores"].items())


def run(report: Report, settings: Settings, ep: Endpoints, *, ceiling: float, quick: bool, work: Path) -> None:
    size = QUICK if quick else FULL
    report.section("Kraken: replay venue process → KrakenIngester process → broker")
    args = ["--mode", "blast", "--frames", str(size.frames), "--warmup-frames", str(size.warmup_frames)]
    args += ["--symbols", ",".join(SYMBOLS)]
    runs: list[dict[str, Any]] = []
    with Child("bench.kraken_venue", args, log=work / "kraken-venue.log") as venue:
        c = venue.info
        report.line(
            f"  corpus: {c['frames']:,} frames for {len(c['symbols'])} pairs = {c['trade_frames']:,} trade frames "
            f"({c['trades']:,} trades), {c['ticker_frames']:,} tickers, {c['book_updates']:,} checksummed book "
            f"updates; {c['events']:,} events ({c['events_per_frame']:.2f}/frame); warm-up {c['warmup_frames']:,} "
            f"frames; generated in {c['generate_s']}s before timing"
        )
        null_runs = []
        for i in range(size.reps):  # interleaved with the null-publisher runs: a noisy neighbour hits both
            cfg = _ingest_cfg(settings, ep, venue, latency=False, timeout=120, measure_s=size.measure_s)
            res = run_child("bench.ingest_proc", cfg, log=work / f"kraken-ingest-{i}.log", timeout=180)
            _check(res, f"kraken throughput run {i + 1}")
            runs.append(res)
            report.line(
                f"  run {i + 1}: {res['frames']:,} frames, {res['events']:,} events in {res['elapsed_s']:.2f}s "
                f"(reading took {res['read_s']:.2f}s, the rest is the flush); CPU cores: {_cores(res)}"
            )
            cfg = _ingest_cfg(settings, ep, venue, latency=False, timeout=120, null=True, measure_s=size.measure_s)
            res = run_child("bench.ingest_proc", cfg, log=work / f"kraken-ingest-null-{i}.log", timeout=180)
            _check(res, f"kraken null-publisher run {i + 1}")
            null_runs.append(res["events_per_s"])
    events_s = median([r["events_per_s"] for r in runs])
    frames_s = median([r["frames_per_s"] for r in runs])
    share = ratio(events_s, ceiling)
    report.add(
        "kraken_frames_per_s",
        frames_s,
        f"kraken    frames/s, first measured frame → last event acked: {fmt_rate(frames_s)}  "
        f"(median; runs {fmt_runs([r['frames_per_s'] for r in runs])})",
    )
    report.add(
        "kraken_events_per_s",
        events_s,
        f"kraken    events/s, same window: {fmt_rate(events_s)}  (median; runs "
        f"{fmt_runs([r['events_per_s'] for r in runs])}) = {share:.0%} of the raw ceiling",
    )
    report.add("kraken_ceiling_share", share, f"kraken    events/s ÷ ceiling msgs/s: {share:.2f}")
    null_s = median(null_runs)
    report.add(
        "kraken_without_broker_events_per_s",
        null_s,
        f"kraken    the same ingester process with a null publisher (WebSocket + parse + checksums + encode, no "
        f"Pulsar client): {fmt_rate(null_s)} events/s  (median; runs {fmt_runs(null_runs)}) — the most any client "
        f"could leave it",
    )
    parse = parse_only(quick=size is QUICK)
    report.add(
        "kraken_parse_only_events_per_s",
        parse["events_per_s"],
        f"kraken    parser alone, in-process (KrakenFeedParser.feed over {parse['frames']:,} frames, checksums "
        f"verified): {fmt_rate(parse['frames_per_s'])} frames/s, {fmt_rate(parse['events_per_s'])} events/s",
    )
    report.note(
        f"per event {1e6 / events_s:.0f} µs through the broker vs {1e6 / null_s:.0f} µs with the null publisher: "
        f"the Pulsar client path costs the ingester {1e6 / events_s - 1e6 / null_s:.0f} µs per event"
    )
    report.target("kraken events/s", events_s, ">=", TARGET_EVENTS_PER_S, " events/s")
    report.target("kraken events/s as % of the raw ceiling", share * 100, ">=", TARGET_CEILING_SHARE * 100, "%")
    _latency(report, settings, ep, size=size, work=work, capacity=events_s)


def parse_only(*, quick: bool) -> dict[str, float]:
    """Frames/s and events/s of :class:`KrakenFeedParser` alone over a fresh corpus (median of 3 passes)."""
    corpus = generate(SYMBOLS, frames=8_000 if quick else 20_000, stamp=synthetic_clock())
    frames = [f.decode() for f in corpus.frames]  # the WebSocket client hands the ingester str frames
    runs = []
    for _ in range(4):  # the first pass is the warm-up
        parser = KrakenFeedParser(depth=corpus.depth)
        for f in (corpus.instrument, *corpus.book_snapshots.values(), *corpus.ticker_snapshots.values()):
            parser.feed(f)
        events = 0
        t0 = time.perf_counter()
        for f in frames:
            events += len(parser.feed(f).events)
        runs.append((time.perf_counter() - t0, events))
        if parser.checksum_failed:
            raise RuntimeError(f"parse-only: {parser.checksum_failed} checksum failures")
    elapsed = median([r[0] for r in runs[1:]])
    return {"frames": len(frames), "frames_per_s": len(frames) / elapsed, "events_per_s": runs[-1][1] / elapsed}


def _latency(report: Report, settings: Settings, ep: Endpoints, *, size: Sizes, work: Path, capacity: float) -> None:
    args = ["--mode", "paced", "--rate", str(LATENCY_RATE), "--warmup-s", str(size.latency_warmup_s)]
    args += ["--duration-s", str(size.latency_s), "--symbols", ",".join(SYMBOLS)]
    with Child("bench.kraken_venue", args, log=work / "kraken-venue-paced.log") as venue:
        timeout = size.latency_s + size.latency_warmup_s + 60
        cfg = _ingest_cfg(settings, ep, venue, latency=True, timeout=timeout)
        res = run_child("bench.ingest_proc", cfg, log=work / "kraken-ingest-latency.log", timeout=timeout + 60)
    _check(res, "kraken latency run")
    lat = latency_summary(res.pop("latencies_ns", []))
    rate = res["events"] / res["read_s"] if res["read_s"] else float("nan")
    report.add(
        "kraken_latency_ms",
        {**lat, "events_per_s": rate, "seconds": res["read_s"]},
        f"kraken    latency venue send → broker ack, {lat['count']:,} trades over {res['read_s']:.1f}s at "
        f"{fmt_rate(rate)} events/s (after {size.latency_warmup_s:g}s warm-up): p50 {lat['p50_ms']:.2f} ms, "
        f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms; CPU cores: {_cores(res)}",
    )
    report.note(
        f"offered load {LATENCY_RATE:,} events/s = {ratio(LATENCY_RATE, capacity):.0%} of the throughput measured "
        f"above (near or over 100%, queueing dominates the latency)"
    )
    report.target("kraken trade latency p99", lat["p99_ms"], "<", TARGET_P99_MS, " ms")
