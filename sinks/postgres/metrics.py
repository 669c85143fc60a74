"""The sink's metrics and readiness, read from its :class:`~sinks.postgres.service.SinkStats` at scrape time.

Batch sizes are the one thing observed as they happen (once per committed batch, in the writer thread).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Histogram
from prometheus_client.core import Metric

from pulse.metrics import Probe, Progress, counter, erroring, gauge, service_counters
from sinks.postgres.service import PostgresSink

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000)

_COUNTERS = (
    ("received", "pulse_sink_received", "Messages received from the broker"),
    ("duplicates", "pulse_sink_duplicates", "Rows whose unique key already existed (redeliveries)"),
    ("ignored", "pulse_sink_ignored", "Events the sink does not store"),
    ("batches", "pulse_sink_batches", "Committed transactions"),
    ("topics_added", "pulse_sink_topics_added", "Topics of instruments added while running"),
    ("cagg_refreshes", "pulse_sink_cagg_refreshes", "TimescaleDB continuous-aggregate refreshes"),
)


def sink_probe(svc: PostgresSink, stall_after_s: float) -> Probe:
    st = svc.stats
    name = svc.name
    batch_rows = Histogram("pulse_sink_batch_rows", "Rows per committed batch", labelnames=["service"],
                           buckets=BATCH_BUCKETS, registry=None)  # fmt: skip
    st.batch_rows = batch_rows.labels(service=name)
    db_errors, batches = Progress(lambda: st.db_errors), Progress(lambda: st.batches)
    broker_errors, received = Progress(lambda: st.broker_errors), Progress(lambda: st.received)

    def collect() -> Iterable[Metric]:
        snap = st.as_dict()
        yield from service_counters(name, _COUNTERS, snap)
        yield counter("pulse_sink_rows_stored", "New rows stored, per table",
                      {(name, t): n for t, n in snap["stored"].items()}, ("service", "table"))  # fmt: skip
        yield counter("pulse_dead_letters", "Messages published to the dead-letter topic",
                      {(name, ""): snap["dead_lettered"]}, ("service", "venue"))  # fmt: skip
        yield counter("pulse_dependency_errors", "Failed calls to a dependency (each retried)",
                      {(name, "database"): snap["db_errors"], (name, "broker"): snap["broker_errors"]},
                      ("service", "dependency"))  # fmt: skip
        newest = max(list(st.last_event_ns.values()), default=0)
        if newest:
            yield gauge("pulse_sink_lag_seconds", "Now minus the event time of the newest stored event",
                        {(name,): max(0.0, time.time() - newest / 1e9)}, ("service",))  # fmt: skip
        yield gauge("pulse_queue_depth", "Batches waiting for the database writer (bounded at 1)",
                    {(name, "writer"): svc._handoff.qsize()}, ("service", "queue"))  # fmt: skip
        q = {(name, "0.5"): snap["commit_p50_ms"], (name, "0.99"): snap["commit_p99_ms"]}
        yield gauge("pulse_sink_commit_seconds", "Commit time of recent batches, by quantile",
                    {k: v / 1000 for k, v in q.items() if v is not None}, ("service", "quantile"))  # fmt: skip
        yield from batch_rows.collect()

    def checks() -> dict[str, bool]:  # a dependency error with no success since is "not ready" for stall_after_s
        return {
            "subscribed": svc.subscribed,
            "database": bool(st.mode) and not erroring(db_errors, batches, stall_after_s),
            "broker": not erroring(broker_errors, received, stall_after_s),
        }

    def summary() -> str:
        stored = sum(st.stored.values())
        return (f"{st.mode or 'starting'}; {st.received} received, {stored} rows stored, {st.batches} batches, "
                f"{st.duplicates} duplicates, {st.db_errors} database errors")  # fmt: skip

    sf = svc.status_file
    return Probe(name, collect, checks, (lambda: sf.beat) if sf is not None else None, summary)
