"""An ingester's metrics and readiness, read from its :class:`~ingesters.base.context.IngestContext` counters
and its publisher's per-topic stats at scrape time (nothing is counted twice, the hot path pays nothing).

The publish latency histogram is fed by the publisher's sampled ack hook (one ack per 64 messages or 0.1 s per
topic, see :class:`pulse.bus.EventPublisher`): event time (``ts_event``) to the broker's acknowledgement.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from prometheus_client import Histogram
from prometheus_client.core import Metric

from ingesters.base.context import IngestContext
from pulse.errors import TopicError
from pulse.metrics import Probe, Progress, counter, gauge
from pulse.topics import parse_topic

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: IngestContext counter → (metric name, help); each labelled by service and venue
_COUNTERS = {
    "frames": ("pulse_frames_received", "Raw messages received from the venue"),
    "reconnects": ("pulse_reconnects", "Venue sessions started after the first one"),
    "checksum_failures": ("pulse_checksum_failures", "Order book checksum mismatches (each followed by a resync)"),
    "parse_errors": ("pulse_parse_errors", "Malformed or unknown venue frames (each dead-lettered)"),
    "dead_letters": ("pulse_dead_letters", "Messages published to the dead-letter topic"),
    "gaps": ("pulse_gaps", "Gap markers published"),
    "stale": ("pulse_stale_feeds", "Stale-feed watchdog timeouts"),
    "rejected": ("pulse_subscriptions_rejected", "Subscriptions the venue refused"),
    "publish_failed": ("pulse_publish_failed", "Messages the broker refused"),
}


def latency_histogram(service: str) -> tuple[Histogram, object]:
    """The histogram and an ``on_ack`` hook (:data:`pulse.bus.AckHook`) that feeds it."""
    hist = Histogram(
        "pulse_publish_latency_seconds",
        "Event time to broker acknowledgement (sampled acks)",
        labelnames=["service"],
        buckets=LATENCY_BUCKETS,
        registry=None,
    )
    child = hist.labels(service=service)

    def on_ack(_topic: str, ts_event: int, acked_ns: int) -> None:
        if ts_event > 0:
            child.observe(max(0.0, (acked_ns - ts_event) / 1e9))

    return hist, on_ack


def ingester_probe(ctx: IngestContext, stall_after_s: float, latency: Histogram | None = None) -> Probe:
    channel_of: dict[str, tuple[str, str]] = {}  # topic → (venue, channel), parsed once
    stats = ctx.publisher.stats
    frames = Progress(lambda: ctx.counters.frames)
    acks = Progress(lambda: stats.total_acked + stats.total_failed)
    sends = Progress(lambda: sum(st.sent for st in list(stats.topics.values())))

    def where(t: str) -> tuple[str, str]:
        vc = channel_of.get(t)
        if vc is None:
            try:
                p = parse_topic(t)
                vc = (p.venue, p.channel)
            except TopicError:  # the dead-letter topic
                vc = (ctx.venue, "deadletter")
            channel_of[t] = vc
        return vc

    def collect() -> Iterable[Metric]:
        snap = ctx.snapshot()
        svc, venue = ctx.name, ctx.venue
        ev_in: dict[tuple[str, ...], int] = defaultdict(int)
        ev_out: dict[tuple[str, ...], int] = defaultdict(int)
        for t, st in list(stats.topics.items()):
            v, ch = where(t)
            ev_in[(svc, v, ch)] += st.sent_events
            ev_out[(svc, v, ch)] += st.acked_events
        labels = ("service", "venue", "channel")
        yield counter("pulse_events_in", "Events handed to the publisher, per topic channel (with markers)",
                      ev_in, labels)  # fmt: skip
        yield counter("pulse_events_out", "Events the broker acknowledged, per topic channel", ev_out, labels)
        for key, (name, doc) in _COUNTERS.items():
            yield counter(name, doc, {(svc, venue): snap.get(key, 0)}, ("service", "venue"))
        yield gauge("pulse_queue_depth", "Messages waiting in a queue (publish: sent, not yet acknowledged)",
                    {(svc, "publish"): snap["pending"]}, ("service", "queue"))  # fmt: skip
        yield gauge("pulse_publish_unconfirmed_seconds",
                    "Seconds the broker has confirmed no publish while messages wait (0 while it confirms)",
                    {(svc,): snap.get("unconfirmed_s", 0)}, ("service",))  # fmt: skip
        yield gauge("pulse_connected", "1 while the venue session is connected and subscribed",
                    {(svc, venue): bool(ctx.extra.get("connected"))}, ("service", "venue"))  # fmt: skip
        now_ns = ctx.clock()
        ages = {(svc, venue, sym): max(0.0, (now_ns - ts) / 1e9) for sym, ts in list(ctx.last_tick.items())}
        yield gauge("pulse_last_event_age_seconds", "Seconds since the instrument's latest event was received",
                    ages, ("service", "venue", "symbol"))  # fmt: skip
        if latency is not None:
            yield from latency.collect()

    def market_closed() -> bool:
        return ctx.extra.get("market") == "closed"

    def checks() -> dict[str, bool]:
        idle = market_closed()  # a closed market is quiet by design: ready, nothing to stream
        # the broker is stalled when messages keep going out and no answer came for stall_after_s: while
        # messages flow the publisher samples an ack callback at least every 0.1 s per topic (pulse.bus)
        sending = sends.idle_s() < stall_after_s
        return {
            "connected": idle or bool(ctx.extra.get("connected")),
            "feed_moving": idle or frames.idle_s() < stall_after_s,
            "broker_acking": not sending or acks.idle_s() < stall_after_s,
        }

    def summary() -> str:
        c = ctx.counters
        state = "market closed" if market_closed() else ("connected" if ctx.extra.get("connected") else "connecting")
        return (
            f"{state}; {c.frames} frames, {stats.total_acked} published, {stats.pending} pending, "
            f"{c.reconnects} reconnects, {c.parse_errors} parse errors, {c.checksum_failures} checksum failures"
            + (f"; the broker has confirmed nothing for {time.time() - stats.unconfirmed_since:.0f} s"
               if stats.unconfirmed_since else "")
        )  # fmt: skip

    sf = ctx.status_file  # its periodic write, from the event loop, is the loop's heartbeat
    return Probe(ctx.name, collect, checks, (lambda: sf.beat) if sf is not None else None, summary)
