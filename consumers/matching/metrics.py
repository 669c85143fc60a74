"""The matching service's metrics and readiness, read from its :class:`MatchingStats` at scrape time.

``current`` holds the running :class:`MatchingService`: a registry change replaces it in the same process
(the counters carry over), so the probe always reads whichever instance runs now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import Metric

from consumers.matching.service import MatchingService
from pulse.metrics import Probe, gauge, service_counters

_COUNTERS = (
    ("received", "pulse_matching_received", "Messages received (orders and market data)"),
    ("orders", "pulse_orders", "Paper orders received"),
    ("market_events", "pulse_matching_market_events", "Venue market-data events applied"),
    ("executions", "pulse_matching_executions", "Executions produced (fills, cancels, rejects, expiries)"),
    ("fills", "pulse_fills", "Fills and partial fills"),
    ("rejects", "pulse_matching_rejects", "Orders rejected"),
    ("published", "pulse_matching_published", "Outputs the broker acknowledged"),
    ("duplicates", "pulse_matching_duplicates", "Redelivered inputs skipped"),
    ("bad_messages", "pulse_matching_bad_messages", "Messages that could not be decoded"),
    ("snapshots", "pulse_matching_snapshots", "State snapshots written"),
)


def matching_probe(current: Callable[[], MatchingService]) -> Probe:
    def collect() -> Iterable[Metric]:
        svc = current()
        snap = svc.snapshot_stats()
        yield from service_counters(svc.name, _COUNTERS, snap)
        yield gauge("pulse_matching_open_orders", "Resting paper orders", {(svc.name,): snap["open_orders"]},
                    ("service",))  # fmt: skip
        yield gauge("pulse_queue_depth", "Messages waiting for the matching thread",
                    {(svc.name, "inbox"): svc._inbox.qsize()}, ("service", "queue"))  # fmt: skip

    def checks() -> dict[str, bool]:
        return {"subscribed": current().state == "running"}

    def summary() -> str:
        svc = current()
        st = svc.stats
        return f"{svc.state}; {st.orders} orders, {st.fills} fills, {st.rejects} rejects, {st.received} received"

    def beat() -> float:
        sf = current()._status
        return sf.beat if sf is not None else float("inf")

    return Probe(current().name, collect, checks, beat, summary)
