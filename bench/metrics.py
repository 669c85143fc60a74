"""What the metrics cost the services (no broker needed).

The services' counters are read at scrape time, so the hot path pays for two things only, each measured here
against a baseline taken in the same run:

* the publish latency histogram: one ``observe`` in the publisher's ack hook, which the publisher calls for one
  message in 64 (``EventPublisher.ack_every``) — compared with a no-op hook, and per event with the ingest path
  itself (``IngestContext.publish`` through a publisher that encodes and counts but has no broker);
* the loop heartbeat: ``StatusFile.due()`` now stores ``time.monotonic()`` — compared with the same check
  without the store;

plus what a scrape costs (collect + Prometheus text for an ingester with 40 topics), which holds the GIL once per
scrape interval.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from bench.harness import Report, median
from bench.ingest_proc import NullPublisher
from ingesters.base.context import IngestContext
from ingesters.base.metrics import ingester_probe, latency_histogram
from pulse.metrics import _Collector
from pulse.models import Trade
from pulse.settings import Settings
from pulse.status import StatusFile

ACK_EVERY = 64  # EventPublisher.ack_every: one ack callback per this many messages


class _OldDue(StatusFile):
    """StatusFile.due() as it was before the heartbeat (the baseline)."""

    def due(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now < self._written_at + self.every_s:
            return False
        self._written_at = now
        return True


def _per_call_ns(fn: Any, n: int, reps: int) -> float:
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter_ns() - t0) / n)
    return median(runs)


def _publish_ns(settings: Settings, on_ack: Any, n: int, reps: int) -> float:
    pub = NullPublisher(settings, "crypto", producer_prefix="bench-metrics", on_ack=on_ack)
    ctx = IngestContext(pub, venue="kraken", name="bench-metrics")
    now = time.time_ns()
    events = [Trade(venue="kraken", symbol=("BTC/USD", "ETH/USD")[i % 2], ts_event=now + i, ts_recv=now + i, seq=i,
                    price=Decimal("45283.5"), size=Decimal("0.0123"), side="buy", trade_id=str(i))
              for i in range(1000)]  # fmt: skip
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(n // 1000):
            for ev in events:
                ctx.publish(ev)
        runs.append((time.perf_counter_ns() - t0) / (n // 1000 * 1000))
    return median(runs)


def measure(settings: Settings, *, quick: bool, work: Path) -> dict[str, Any]:
    n, reps = (50_000, 3) if quick else (200_000, 5)
    _, hook = latency_histogram("bench")
    path_ns = _publish_ns(settings, None, n, reps)
    noop_ns = _publish_ns(settings, lambda t, ts, acked: None, n, reps)  # a hook on every event
    hist_ns = _publish_ns(settings, hook, n, reps)
    observe_ns = max(0.0, hist_ns - noop_ns)  # what the histogram adds to one ack callback
    new_due = StatusFile(work, "bench-new", every_s=3600)
    old_due = _OldDue(work, "bench-old", every_s=3600)
    due_new_ns = _per_call_ns(new_due.due, n, reps)
    due_old_ns = _per_call_ns(old_due.due, n, reps)
    # a scrape of an ingester with 40 topics
    pub = NullPublisher(settings, "crypto", producer_prefix="bench-metrics")
    ctx = IngestContext(pub, venue="kraken", name="bench-metrics")
    now = time.time_ns()
    for i in range(40):
        ctx.publish(Trade(venue="kraken", symbol=f"S{i}/USD", ts_event=now, ts_recv=now, seq=1, price=Decimal(1),
                          size=Decimal(1), side="buy", trade_id="1"))  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ingester_probe(ctx, 30.0), 30.0))  # type: ignore[arg-type]
    scrape_ns = _per_call_ns(lambda: generate_latest(registry), 200 if quick else 1000, reps)
    return {
        "ingest_path_ns_per_event": path_ns,
        "hook_noop_ns": noop_ns - path_ns,
        "histogram_observe_ns_per_ack": observe_ns,
        "histogram_ns_per_event": observe_ns / ACK_EVERY,
        "histogram_share_of_path": observe_ns / ACK_EVERY / path_ns,
        "heartbeat_due_ns": due_new_ns,
        "due_baseline_ns": due_old_ns,
        "heartbeat_ratio": due_new_ns / due_old_ns,
        "scrape_ms_40_topics": scrape_ns / 1e6,
        "scrape_core_share_at_15s": scrape_ns / 1e9 / 15,
    }


def run(report: Report, settings: Settings, *, quick: bool, work: Path) -> dict[str, Any]:
    r = measure(settings, quick=quick, work=work)
    report.add("metrics", r, "metrics   hot-path cost of the Prometheus metrics (baselines from this run):")
    report.line(
        f"  publish latency histogram: {r['histogram_observe_ns_per_ack']:.0f} ns per sampled ack = "
        f"{r['histogram_ns_per_event']:.1f} ns per event (1 ack in {ACK_EVERY}); the ingest path itself "
        f"(IngestContext.publish, encode + count, no broker) {r['ingest_path_ns_per_event']:.0f} ns per event "
        f"-> {r['histogram_share_of_path'] * 100:.2f}% of it"
    )
    report.line(
        f"  loop heartbeat: StatusFile.due() {r['heartbeat_due_ns']:.0f} ns vs {r['due_baseline_ns']:.0f} ns "
        f"without the store ({r['heartbeat_ratio']:.2f}x)"
    )
    report.line(
        f"  one scrape (40 topics): {r['scrape_ms_40_topics']:.2f} ms = "
        f"{r['scrape_core_share_at_15s'] * 100:.3f}% of a core at a 15 s scrape interval"
    )
    return r


if __name__ == "__main__":
    import sys
    import tempfile

    from pulse.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        run(Report(stream=sys.stdout), load_settings(environ={}), quick="--quick" in sys.argv, work=Path(tmp))
