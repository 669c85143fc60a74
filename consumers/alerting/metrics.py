"""The alerting service's metrics and readiness, read from its counters at scrape time.

``current`` holds the running :class:`AlertingService`: a rule change replaces it in the same process (the
counters carry over), so the probe always reads whichever instance runs now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import Metric

from consumers.alerting.service import AlertingService
from pulse.metrics import Probe, Progress, counter, erroring, gauge, service_counters

_COUNTERS = (
    ("received", "pulse_alerting_received", "Messages received"),
    ("ticks", "pulse_alerting_ticks", "Ticks evaluated by the engine"),
    ("alerts", "pulse_alerts_fired", "Alerts the rules fired"),
    ("published", "pulse_alerts_published", "Alerts the broker acknowledged"),
    ("stored", "pulse_alerts_stored", "New rows in the alerts table"),
    ("duplicates", "pulse_alerts_duplicates", "Alerts the table already had (replays)"),
    ("decode_errors", "pulse_alerting_decode_errors", "Messages that could not be decoded"),
    ("snapshots", "pulse_alerting_snapshots", "Rule-state snapshots committed"),
    ("webhook_delivered", "pulse_webhook_delivered", "Webhook deliveries that succeeded"),
    ("webhook_failed", "pulse_webhook_failed", "Webhook deliveries given up"),
    ("webhook_retries", "pulse_webhook_retries", "Webhook delivery retries"),
)


def alerting_probe(
    current: Callable[[], AlertingService], stall_after_s: float, waiting: Callable[[], bool] = lambda: False
) -> Probe:
    """``waiting``: every rule was removed while the service ran and it waits for the next one (ready: there is
    nothing to subscribe to; its loop keeps the heartbeat)."""
    st = current().stats  # the counters carry over from one instance to the next
    db_errors, snapshots = Progress(lambda: st.db_errors), Progress(lambda: st.snapshots)
    broker_errors, received = Progress(lambda: st.broker_errors), Progress(lambda: st.received)

    def collect() -> Iterable[Metric]:
        svc = current()
        snap = svc.counters()
        name = svc.name
        yield from service_counters(name, _COUNTERS, snap)
        yield counter("pulse_dependency_errors", "Failed calls to a dependency (each retried)",
                      {(name, "database"): snap["db_errors"], (name, "broker"): snap["broker_errors"]},
                      ("service", "dependency"))  # fmt: skip
        pending = {(name, "webhooks"): snap.get("webhook_pending", 0)}
        yield gauge("pulse_queue_depth", "Webhook deliveries waiting", pending, ("service", "queue"))
        if "lag_p99_ms" in snap:
            yield gauge("pulse_alerting_lag_seconds", "Tick receive time to evaluation, by quantile (recent ticks)",
                        {(name, "0.5"): snap["lag_p50_ms"] / 1000, (name, "0.99"): snap["lag_p99_ms"] / 1000},
                        ("service", "quantile"))  # fmt: skip

    def checks() -> dict[str, bool]:
        svc = current()
        return {
            "subscribed": waiting() or (svc._consumer is not None and svc.engine is not None),
            "database": not erroring(db_errors, snapshots, stall_after_s),
            "broker": not erroring(broker_errors, received, stall_after_s),
        }

    def summary() -> str:
        st = current().stats
        if waiting():
            return f"no enabled rules, waiting for one; {st.received} received, {st.alerts} alerts fired"
        return f"{st.received} received, {st.alerts} alerts fired, {st.stored} stored, {st.db_errors} db errors"

    def beat() -> float:
        sf = current()._status
        return sf.beat if sf is not None else float("inf")

    return Probe(current().name, collect, checks, beat, summary)
