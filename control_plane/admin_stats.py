"""What the Pulsar admin API reports about brokers and topics, parsed into the figures ``pulse status`` shows.

Field names are the broker's ``TopicStats``/``PartitionedTopicStats`` JSON (checked against Apache Pulsar 4.0.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BrokerHealth:
    healthy: bool
    status: int  # HTTP status, 0 when the admin API did not answer
    detail: str


@dataclass(frozen=True)
class SubscriptionStats:
    name: str
    msg_backlog: int
    msg_rate_out: float
    consumers: int
    type: str
    last_consumed_ms: int = 0  # lastConsumedTimestamp: the last dispatch (ms since the epoch; 0 = never)
    last_acked_ms: int = 0  # lastAckedTimestamp


@dataclass(frozen=True)
class TopicStats:
    """The figures ``pulse status`` shows for one topic (summed over partitions for a partitioned topic)."""

    topic: str
    msg_rate_in: float
    msg_rate_out: float
    msg_throughput_in: float
    msg_throughput_out: float
    msg_in_counter: int
    storage_size: int
    backlog_size: int
    publishers: int
    partitions: int  # 0 for a non-partitioned topic
    subscriptions: dict[str, SubscriptionStats] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        """Messages not yet acknowledged, over all subscriptions."""
        return sum(s.msg_backlog for s in self.subscriptions.values())


def parse_stats(topic: str, doc: dict[str, Any], partitions: int = 0) -> TopicStats:
    subs = {}
    for name, s in (doc.get("subscriptions") or {}).items():
        subs[name] = SubscriptionStats(
            name=name,
            msg_backlog=int(s.get("msgBacklog") or 0),
            msg_rate_out=float(s.get("msgRateOut") or 0.0),
            consumers=len(s.get("consumers") or []),
            type=str(s.get("type") or ""),
            last_consumed_ms=int(s.get("lastConsumedTimestamp") or 0),
            last_acked_ms=int(s.get("lastAckedTimestamp") or 0),
        )
    meta = doc.get("metadata") or {}
    return TopicStats(
        topic=topic,
        msg_rate_in=float(doc.get("msgRateIn") or 0.0),
        msg_rate_out=float(doc.get("msgRateOut") or 0.0),
        msg_throughput_in=float(doc.get("msgThroughputIn") or 0.0),
        msg_throughput_out=float(doc.get("msgThroughputOut") or 0.0),
        msg_in_counter=int(doc.get("msgInCounter") or 0),
        storage_size=int(doc.get("storageSize") or 0),
        backlog_size=int(doc.get("backlogSize") or 0),
        publishers=len(doc.get("publishers") or []),
        partitions=int(meta.get("partitions") or partitions),
        subscriptions=subs,
    )
