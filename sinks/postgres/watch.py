"""The sink's watch on the broker: outages (:class:`~pulse.bus.BrokerWatch`) and a subscription that stalls.

A stall is a backlog that does not shrink while a consumer is connected (:func:`pulse.broker_metrics.stalled`:
nothing dispatched or acknowledged for ``stall_s``). pulsar-lite was seen to keep a SIGKILLed sink's consumer
on the Shared subscription and dispatch nothing more — to the restarted sink either — until the broker was
restarted. When the sink has received nothing for ``stall_s`` it asks the broker's metrics about its own
subscription; a stall is logged, counted (``stalls``), shown in the status file (``stalled``, read by
``pulse status``), and, if it lasts another ``stall_s`` (the status file says so meanwhile: a resubscribe can
block while pulsar-lite is in that state), met by closing and recreating the sink's consumer (``resubscribes``,
at most once per ``stall_s``), the one recovery a client can try; it clears as soon as messages arrive again.
On Apache Pulsar the broker redelivers a dead consumer's messages by itself (tests/real_pulsar/test_real_sink_kill.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pulse.broker_metrics import Stall, fetch_topic_metrics, stalled
from pulse.bus import BrokerWatch
from pulse.log import get_logger

log = get_logger(__name__)


class SinkWatch:
    """Call :meth:`tick` from the receiving loop (it rate-limits itself)."""

    def __init__(
        self,
        name: str,
        pulsar_url: str,
        metrics_url: str,
        subscription: str,
        stats: Any,
        *,
        stall_s: float = 30.0,
        every_s: float = 0.5,
        probe_every_s: float = 5.0,
    ) -> None:
        self.name = name
        self.metrics_url = metrics_url
        self.subscription = subscription
        self.stats = stats  # SinkStats: broker_errors, stalls, resubscribes, stalled
        self.stall_s = stall_s
        self.every_s = every_s
        self.probe_every_s = probe_every_s
        self.broker = BrokerWatch(name, pulsar_url, on_lost=self._lost)
        self.stall: Stall | None = None
        self._at = self._probe_at = float("-inf")
        self._resubscribe_at = float("inf")  # the next recovery attempt, while stalled

    def _lost(self) -> None:
        self.stats.broker_errors += 1

    def tick(self, consumers: Sequence[Any], idle_s: float, resubscribe: Callable[[], None]) -> None:
        """``idle_s``: how long ago the sink last received a message; ``resubscribe`` recreates its consumer."""
        now = time.monotonic()
        if now < self._at:
            return
        self._at = now + self.every_s
        connected = self.broker.check(consumers)
        if self.stall is not None and idle_s < self.stall_s:
            log.info("subscription draining again", sink=self.name, subscription=self.subscription)
            self.stall, self.stats.stalled = None, False
        if not connected or idle_s < self.stall_s or not self.metrics_url or now < self._probe_at:
            return
        self._probe_at = now + self.probe_every_s
        try:
            found = stalled(fetch_topic_metrics(self.metrics_url), self.stall_s, subscription=self.subscription)
        except OSError as exc:
            log.warning("broker metrics unavailable", sink=self.name, url=self.metrics_url, error=str(exc))
            return
        if not found:
            if self.stall is not None:  # nothing left to dispatch (or it moved): no longer stalled
                log.info("subscription no longer stalled", sink=self.name, subscription=self.subscription)
                self.stall, self.stats.stalled = None, False
            return
        if self.stall is None:
            self.stats.stalls += 1
            self._resubscribe_at = now + self.stall_s
            log.warning("subscription stalled", sink=self.name, detail=found[0].describe(),
                        topics=len(found), backlog=sum(s.backlog for s in found))  # fmt: skip
        self.stall, self.stats.stalled = found[0], True
        if now >= self._resubscribe_at:
            self._resubscribe_at = now + self.stall_s
            log.warning("recreating the consumer to recover", sink=self.name, subscription=self.subscription)
            self.stats.resubscribes += 1
            resubscribe()
