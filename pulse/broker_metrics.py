"""Per-topic rates and backlog from a broker's Prometheus endpoint (``/metrics``).

pulsar-lite exports Pulsar's own topic-level metric names (``pulsar_rate_in``, ``pulsar_rate_out``,
``pulsar_in_messages_total``, ``pulsar_subscription_back_log`` …, labelled ``namespace`` and ``topic``), and so does
a real Pulsar broker on ``http://broker:8080/metrics/`` — there the ``topic`` label is the full name, in
pulsar-lite the local name; both are turned into the full ``persistent://tenant/ns/local`` name here.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class TopicMetrics:
    topic: str
    rate_in: float = 0.0  # msg/s
    rate_out: float = 0.0
    in_total: float = 0.0  # messages ever received
    backlog: float = 0.0  # unacknowledged messages over all subscriptions
    subscriptions: dict[str, float] = field(default_factory=dict)  # subscription → backlog

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


def parse_topic_metrics(text: str) -> dict[str, TopicMetrics]:
    out: dict[str, TopicMetrics] = {}
    sub_backlog: dict[str, dict[str, float]] = {}
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
    for topic, subs in sub_backlog.items():
        out[topic].subscriptions = subs
        out[topic].backlog = sum(subs.values())
    return out


def fetch_topic_metrics(url: str, timeout: float = 3.0) -> dict[str, TopicMetrics]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return parse_topic_metrics(resp.read().decode("utf-8", "replace"))
