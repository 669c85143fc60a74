"""The ingester side of a benchmark, run as its own process: ``python -m bench.ingest_proc`` (config on stdin).

It wires an ingester exactly as :func:`ingesters.base.app.run_ingester` does — ``open_publisher`` (with
``pulsar.publish_process`` a publisher process, whose CPU is reported as ``publisher``) → ``IngestContext`` →
``KrakenIngester`` / ``OandaIngester``, status file and all — with two bench-only probes:

* the publisher's ``on_ack`` counts broker acks, keeps the time of the last one and, in a latency run,
  records ``ack time - ts_event`` for every acknowledged trade sent after the first marker;
* the parser is wrapped so that a heartbeat — the replay venue's marker — snapshots the counters: the
  first marker ends the warm-up, the second (or ``max_measure_s`` running out) ends the measured part and
  stops the ingester, which then flushes; the figure runs from the first marker to the last ack.

``mode: backfill`` runs :func:`ingesters.dukascopy.service.run_backfill` (a warm-up range, then timed ranges).
The result is one ``RESULT {json}`` line on stdout; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from bench.harness import cpu_seconds, emit_result
from ingesters.base.context import IngestContext
from ingesters.kraken.parser import Parsed
from ingesters.oanda.parser import ParsedLine
from pulse.bus import PublisherBase
from pulse.log import setup_logging
from pulse.models import Event
from pulse.publish_proc import OffloadedPublisher, open_publisher
from pulse.runtime import Endpoints
from pulse.settings import Settings

#: A Wednesday noon (UTC): the OANDA ingester's market-hours rule sees an open market whatever today is.
FX_OPEN = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)


def own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread: the event loop and the client's IO thread
    return ru.ru_utime + ru.ru_stime


class Probe:
    """Counters read at the venue's markers, plus ack counting (and latencies) from the client's callback thread.

    With ``max_measure_s`` the measured part also ends at the first frame handled that long after the first
    marker (the run then takes the same time however fast the machine is); frames after the end are dropped
    unparsed, so nothing published after it inflates the figure.
    """

    def __init__(
        self, pids: dict[str, int], *, latency_suffix: str | None = None, max_measure_s: float | None = None
    ) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.max_measure_s = max_measure_s
        self.done = False
        self._deadline = float("inf")
        self.ctx: IngestContext | None = None
        self.stop: asyncio.Event | None = None
        self.acked = 0
        self.last_ack = 0.0
        self.marks: list[dict[str, float]] = []
        self.latencies: list[int] = []
        self._suffix = latency_suffix or "\0never"
        self._lat_from = 1 << 62  # ns; set at the first marker

    def on_ack(self, topic_name: str, ts_event: int, acked_ns: int) -> None:
        self.acked += 1
        # the ack's own time on this process's perf_counter (a publisher process reports acks a moment later)
        self.last_ack = time.perf_counter() - max(0, time.time_ns() - acked_ns) / 1e9
        if ts_event >= self._lat_from and topic_name.endswith(self._suffix):
            self.latencies.append(acked_ns - ts_event)

    def snapshot(self) -> dict[str, float]:
        assert self.ctx is not None
        c = self.ctx.counters
        return {
            "t": time.perf_counter(),
            "frames": c.frames,
            "events": c.events,
            "acked": self.acked,
            "cpu": own_cpu(),
            **{f"cpu_{k}": cpu_seconds(pid) for k, pid in self.pids.items()},
        }

    def marker(self, *, data: bool = False) -> None:
        """The venue's marker (``data=False``), or the measuring time running out on a data frame."""
        snap = self.snapshot()
        snap["end_is_data"] = data
        self.marks.append(snap)
        if len(self.marks) == 1:
            self._lat_from = time.time_ns()
            if self.max_measure_s is not None:
                self._deadline = snap["t"] + self.max_measure_s
        elif len(self.marks) == 2:
            self.done = True
            if self.stop is not None:
                self.stop.set()

    def after(self, heartbeat: bool) -> None:
        """Called after each parsed frame."""
        if heartbeat:
            self.marker()
        elif time.perf_counter() > self._deadline:
            self.marker(data=True)

    def result(self, final: dict[str, float]) -> dict[str, Any]:
        if len(self.marks) < 2:
            return {"ok": False, "error": f"saw {len(self.marks)} of 2 venue markers before the deadline"}
        m0, m1 = self.marks
        elapsed = self.last_ack - m0["t"]
        frames = m1["frames"] - m0["frames"] - (0 if m1["end_is_data"] else 1)  # a venue marker is not data
        events = m1["events"] - m0["events"]
        span = final["t"] - m0["t"]
        out: dict[str, Any] = {
            "ok": True,
            "frames": frames,
            "events": events,
            "acked_in_window": self.acked - m0["acked"],
            "pending_at_start": m0["events"] - m0["acked"],
            "elapsed_s": elapsed,
            "read_s": m1["t"] - m0["t"],
            "frames_per_s": frames / elapsed,
            "events_per_s": events / elapsed,
            "cpu_cores": {"ingester": (final["cpu"] - m0["cpu"]) / span},
        }
        for k in self.pids:
            out["cpu_cores"][k] = (final[f"cpu_{k}"] - m0[f"cpu_{k}"]) / span
        if self.latencies:
            out["latencies_ns"] = self.latencies
        return out


class NullPublisher(PublisherBase):
    """A publisher without a broker: each event is encoded (payload and properties) and counted as acked at
    once. It measures everything the ingester process does except the Pulsar client."""

    def publish(self, event: Event, topic_name: str | None = None) -> None:
        t = topic_name or self.topic_for(event)
        self.codec.encode(event)
        self.properties_of(event)
        self._ack_now(t)
        if self._on_ack:
            self._on_ack(t, event.ts_event, time.time_ns())

    def publish_raw(self, topic_name: str, payload: bytes, properties: dict[str, str], key: str | None = None) -> None:
        self._ack_now(topic_name)

    def flush(self) -> None:
        pass

    def _ack_now(self, t: str) -> None:
        st = self.stats.of(t)
        st.sent += 1
        st.sent_events += 1
        st.settle(True, st.sent, st.sent_events)


def _finish(publisher: PublisherBase, timeout_s: float) -> None:
    publisher.flush()
    deadline = time.monotonic() + timeout_s
    while publisher.stats.pending > 0 and time.monotonic() < deadline:
        time.sleep(0.002)  # callbacks trail flush() by a moment; the figure uses the last ack's own time


def run_streaming(cfg: dict[str, Any], settings: Settings) -> dict[str, Any]:
    venue = cfg["mode"]
    namespace = "crypto" if venue == "kraken" else "fx"
    probe = Probe(
        cfg.get("pids", {}),
        latency_suffix=".trade" if cfg.get("latency") else None,
        max_measure_s=cfg.get("max_measure_s"),
    )
    publisher: PublisherBase
    if cfg.get("publisher") == "null":
        publisher = NullPublisher(settings, namespace, producer_prefix=f"bench-{venue}", on_ack=probe.on_ack)
    else:  # what `pulse ingest` opens: with pulsar.publish_process, a publisher process (its CPU is counted)
        publisher = open_publisher(
            settings, cfg["pulsar_url"], namespace, producer_prefix=f"bench-{venue}", on_ack=probe.on_ack
        )
        if isinstance(publisher, OffloadedPublisher):
            probe.pids["publisher"] = publisher.pid
    ctx = IngestContext(publisher, venue=venue, name=f"bench-ingest-{venue}", status_home=Path(cfg["home"]))
    probe.ctx = ctx

    async def main() -> None:
        stop = asyncio.Event()
        probe.stop = stop
        ingester = _build(venue, cfg, settings, ctx, probe)
        asyncio.get_running_loop().call_later(cfg["timeout_s"], stop.set)
        await ingester.run(stop)

    try:
        asyncio.run(main())
        _finish(publisher, settings.pulsar.operation_timeout_s)
        final = probe.snapshot()
    finally:
        publisher.close()
    summary = ctx.snapshot()
    summary.pop("topics", None)
    return {**probe.result(final), "ingester": summary}


def _build(venue: str, cfg: dict[str, Any], settings: Settings, ctx: IngestContext, probe: Probe) -> Any:
    if venue == "kraken":
        from ingesters.kraken.service import KrakenIngester

        k = settings.kraken
        ing = KrakenIngester(
            k, ctx, symbols=cfg["symbols"], channels=["trade", "ticker", "book"], depth=cfg["depth"], url=cfg["url"]
        )
        feed = ing.parser.feed

        def probed(frame: str | bytes) -> Parsed:
            if probe.done:
                return Parsed()
            parsed = feed(frame)
            probe.after(parsed.heartbeat)
            return parsed

        ing.parser.feed = probed  # type: ignore[method-assign]
        return ing
    from ingesters.oanda.service import OandaIngester

    ing = OandaIngester(
        settings.oanda, ctx, instruments=cfg["instruments"], token=cfg["token"], api_url=cfg["url"], now=lambda: FX_OPEN
    )
    ing.parser = _ProbedOandaParser(ing.parser, probe)  # type: ignore[assignment]
    return ing


class _ProbedOandaParser:
    def __init__(self, inner: Any, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    def feed_line(self, line: bytes) -> ParsedLine:
        if self._probe.done:
            return ParsedLine(None, False, None)
        parsed = self._inner.feed_line(line)
        self._probe.after(parsed.heartbeat)
        return parsed

    def last_seq(self, symbol: str) -> int:
        return self._inner.last_seq(symbol)


def run_backfills(cfg: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A warm-up backfill, then up to ``reps`` timed ones over the same range (fresh checkpoints each time),
    fewer once ``max_total_s`` of timed runs are spent."""
    from ingesters.dukascopy.service import BATCH_TICKS, run_backfill

    ep = Endpoints(pulsar_url=cfg["pulsar_url"], database_url="", embedded=True)
    start = datetime.fromisoformat(cfg["start"])
    work = Path(cfg["work"])
    broker = cfg.get("pids", {}).get("broker")

    def once(name: str, hours: int) -> dict[str, Any]:
        s = settings.with_overrides(dukascopy={"checkpoint_dir": str(work / name)})
        cpu0, b0, t0 = own_cpu(), cpu_seconds(broker), time.perf_counter()
        end = start + timedelta(hours=hours)
        summary = run_backfill(
            s, ep, cfg["symbol"], start, end, base_url=cfg["url"], feed=cfg.get("feed", "bi5"), progress=False,
            batch_ticks=cfg.get("batch_ticks", BATCH_TICKS),
        )  # fmt: skip
        dt = time.perf_counter() - t0
        return {
            "ok": bool(summary["ok"]),
            "ticks": summary["ticks_published"],
            "acked": summary["published"],
            "messages": summary.get("messages", summary["published"]),  # broker messages (a batch holds many ticks)
            "hours": summary["hours_downloaded"],
            "elapsed_s": dt,
            "ticks_per_s": summary["ticks_published"] / dt,
            "cpu_cores": {"backfill": (own_cpu() - cpu0) / dt, "broker": (cpu_seconds(broker) - b0) / dt},
        }

    once("warmup", cfg["warmup_hours"])
    runs: list[dict[str, Any]] = []
    budget = cfg.get("max_total_s", float("inf"))  # fewer repetitions when one run is slow
    while len(runs) < cfg["reps"] and sum(r["elapsed_s"] for r in runs) < budget:
        runs.append(once(f"run{len(runs)}", cfg["hours"]))
    return {"runs": runs}


def main() -> None:
    cfg = json.loads(sys.stdin.read())
    settings = msgspec.convert(cfg["settings"], Settings)
    setup_logging(settings.logging.level, settings.logging.format)
    emit_result(run_backfills(cfg, settings) if cfg["mode"] == "backfill" else run_streaming(cfg, settings))


if __name__ == "__main__":
    main()
