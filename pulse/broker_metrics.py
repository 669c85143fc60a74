"""Per-topic rates and backlog from a broker's Prometheus endpoint (``/metrics``).

pulsar-lite exports Pulsar's own topic-level metric names (``pulsar_rate_in``, ``pulsar_rate_out``,
``pulsar_in_messages_total``, ``pulsar_subscription_back_log`` …, labelled ``namespace`` and ``topic``), and so does
a real Pulsar broker on ``http://broker:8080/metrics/`` — there the ``topic`` label is the full name, in
pulsar-lite the local name; both are turned into the full ``persistent://tenant/ns/local`` name here.

:func:`stalled` finds subscriptions that do not drain: a backlog, a consumer connected, and nothing dispatched
or acknowledged for a while. pulsar-lite was seen to keep a SIGKILLed sink's consumer on a Shared subscription
and dispatch nothing more (34k backlog, 0 msg/s out) while everything else looked healthy.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class SubscriptionMetrics:
    backlog: float = 0.0
    consumers: float = 0.0  # connected consumers
    unacked: float = 0.0  # dispatched, not acknowledged
    last_consumed: float = 0.0  # unix seconds of the last dispatch (0: never, or not exported)
    last_acked: float = 0.0  # unix seconds of the last acknowledgement (0: never, or not exported)


@dataclass(frozen=True)
class Stall:
    """A subscription with a backlog and a consumer connected that has not moved for ``idle_s`` seconds."""

    topic: str
    subscription: str
    backlog: int
    consumers: int
    idle_s: float

    def describe(self) -> str:
        return (f"subscription {self.subscription} on {self.topic}: backlog {self.backlog} not draining for "
                f"{self.idle_s:.0f}s with {self.consumers} consumer(s) connected")  # fmt: skip


@dataclass
class TopicMetrics:
    topic: str
    rate_in: float = 0.0  # msg/s
    rate_out: float = 0.0
    in_total: float = 0.0  # messages ever received
    backlog: float = 0.0  # unacknowledged messages over all subscriptions
    subscriptions: dict[str, float] = field(default_factory=dict)  # subscription → backlog
    subs: dict[str, SubscriptionMetrics] = field(default_factory=dict)  # subscription → its figures

    def as_dict(self) -> dict[str, object]:
        return {
            "rate_in": round(self.rate_in, 1),
            "rate_out": round(self.rate_out, 1),
            "in_total": int(self.in_total),
            "backlog": int(self.backlog),
            "subscriptions": {k: int(v) for k, v in self.subscriptions.items()},
        }


def _full(labels: dict[str, str]) -> str | None:
    name = labels.get("topic")
    if not name:
        return None
    if "://" in name:
        return name
    ns = labels.get("namespace", "")
    return f"persistent://{ns}/{name}" if ns else None


_SUB_FIELDS = {
    "pulsar_subscription_consumers_count": "consumers",
    "pulsar_subscription_unacked_messages": "unacked",
    "pulsar_subscription_last_consumed_timestamp": "last_consumed",
    "pulsar_subscription_last_acked_timestamp": "last_acked",
}


def parse_topic_metrics(text: str) -> dict[str, TopicMetrics]:
    out: dict[str, TopicMetrics] = {}
    sub_backlog: dict[str, dict[str, float]] = {}
    sub_fields: dict[tuple[str, str], SubscriptionMetrics] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            topic = _full(sample.labels)
            if topic is None:
                continue
            tm = out.get(topic) or out.setdefault(topic, TopicMetrics(topic))
            name = sample.name
            if name == "pulsar_rate_in":
                tm.rate_in += sample.value
            elif name == "pulsar_rate_out":
                tm.rate_out += sample.value
            elif name == "pulsar_in_messages_total":
                tm.in_total += sample.value
            elif name == "pulsar_subscription_back_log" and "subscription" in sample.labels:
                subs = sub_backlog.setdefault(topic, {})
                subs[sample.labels["subscription"]] = subs.get(sample.labels["subscription"], 0.0) + sample.value
            elif name in _SUB_FIELDS and "subscription" in sample.labels:
                sm = sub_fields.setdefault((topic, sample.labels["subscription"]), SubscriptionMetrics())
                attr = _SUB_FIELDS[name]
                value = sample.value
                if attr.startswith("last"):  # the latest over partitions; Apache Pulsar exports ms, pulsar-lite s
                    setattr(sm, attr, max(getattr(sm, attr), value / 1000 if value > 1e11 else value))
                else:  # counts: summed over partitions
                    setattr(sm, attr, getattr(sm, attr) + value)
    for topic, subs in sub_backlog.items():
        out[topic].subscriptions = subs
        out[topic].backlog = sum(subs.values())
    for (topic, sub), sm in sub_fields.items():
        sm.backlog = out[topic].subscriptions.get(sub, 0.0)
        out[topic].subs[sub] = sm
    return out


def stalled(
    topics: dict[str, TopicMetrics], stall_s: float, *, now: float | None = None, subscription: str | None = None
) -> list[Stall]:
    """Subscriptions (``subscription`` only, if given) with a backlog and a consumer connected that neither got
    a message dispatched nor acknowledged one for more than ``stall_s`` seconds.

    A subscription that never had anything dispatched or acknowledged (both timestamps 0, e.g. a broker that
    does not export them) is not judged: nothing says how long it has been waiting."""
    now = time.time() if now is None else now
    out = []
    for topic, tm in topics.items():
        for name, sm in tm.subs.items():
            if subscription is not None and name != subscription:
                continue
            last = max(sm.last_consumed, sm.last_acked)
            if sm.backlog > 0 and sm.consumers > 0 and last > 0 and now - last > stall_s:
                out.append(Stall(topic, name, int(sm.backlog), int(sm.consumers), round(now - last, 1)))
    return out


def fetch_topic_metrics(url: str, timeout: float = 3.0) -> dict[str, TopicMetrics]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse_topic_metrics(resp.read().decode("utf-8", "replace"))
