"""Pulsar → asyncio: one subscription per topic, however many WebSocket clients listen to it.

Each gateway process reads every topic through a **Shared subscription of its own** (``pulse-web-<host>-<pid>-
<random>``, starting at the latest message; the fills topic from the earliest), acknowledges every message as it
arrives, and unsubscribes at shutdown, so nothing is left behind on the broker (killed before it could, it leaves
them to the next gateway, which removes them: :mod:`web.leftovers`). Why not a non-durable reader
(what the issue suggests first) or an Exclusive subscription: measured on pulsar-lite with the live traffic shape
(20 topics, 5,000 events/s, ~1 message per batch; ``tests/integration/test_web_gateway.py`` and the README design
notes), a reader got ~30% repeats and 2.6 s p50 / 4.2 s p99 latency, an Exclusive subscription ~80% repeats and
4-9 s, a Shared subscription with acks every message once at 26 ms p50 on a loaded machine. Repeats that slip
through anyway are dropped by :class:`web.console.Console` (events are ordered by ``(ts_recv, seq)``).

pulsar-lite cannot start a consumer *on* the latest message (``start_message_id_inclusive`` times out), so the
last known value of a topic comes from the gateway's own cache, seeded from the database when the subscription
starts (:mod:`web.data`).

The client library calls the listener on its own thread. Messages go into one deque and the event loop is
woken once per burst (``call_soon_threadsafe`` only when no drain is already scheduled), so a busy topic costs
one thread hop per burst, not per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulsar

from pulse.errors import BusError
from pulse.log import get_logger
from web.leftovers import Record

log = get_logger(__name__)

#: (topic, payload, properties, publish time in ms)
Message = tuple[str, bytes, dict[str, str], int]


class Readers:
    """Readers keyed by topic; ``on_batch`` runs on the event loop with every message received since the last."""

    def __init__(
        self,
        client: pulsar.Client,
        loop: asyncio.AbstractEventLoop,
        on_batch: Callable[[list[Message]], None],
        home: Path | None = None,
    ) -> None:
        self.client = client
        self.loop = loop
        self.on_batch = on_batch
        self._readers: dict[str, Any] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}
        self._queue: deque[Message] = deque()
        self._scheduled = False
        self._lock = threading.Lock()
        self._closed = False
        self.received = 0
        host = re.sub(r"[^a-zA-Z0-9_-]", "-", socket.gethostname())[:40]
        self.subscription = f"pulse-web-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # what this process subscribed, on disk: a gateway killed before close() is cleaned by the next one
        self.record = Record(home, self.subscription) if home is not None else None

    @property
    def topics(self) -> list[str]:
        return list(self._readers)

    def _listener(self, topic: str) -> Callable[[Any, Any], None]:
        queue, lock = self._queue, self._lock

        def on_message(consumer: Any, msg: Any) -> None:
            queue.append((topic, msg.data(), msg.properties(), msg.publish_timestamp()))
            consumer.acknowledge(msg)
            with lock:
                if self._scheduled or self._closed:
                    return
                self._scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop closed under us (shutdown)
                self.loop.call_soon_threadsafe(self._drain)

        return on_message

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        batch: list[Message] = []
        queue = self._queue
        while queue:
            batch.append(queue.popleft())
        if batch:
            self.received += len(batch)
            self.on_batch(batch)

    async def ensure(self, topic: str, *, earliest: bool = False) -> bool:
        """Subscribe to the topic unless subscribed; True when this call did it."""
        if topic in self._readers:
            return False
        pending = self._starting.get(topic)
        if pending is not None:
            await pending
            return False
        fut: asyncio.Future[None] = self.loop.create_future()
        self._starting[topic] = fut
        try:
            if self.record is not None:  # before subscribing: a kill in between leaves nothing unrecorded
                await asyncio.to_thread(self.record.add, topic)
            position = pulsar.InitialPosition.Earliest if earliest else pulsar.InitialPosition.Latest
            reader = await asyncio.to_thread(
                self.client.subscribe, topic, self.subscription, consumer_type=pulsar.ConsumerType.Shared,
                initial_position=position, message_listener=self._listener(topic), receiver_queue_size=2000,
            )  # fmt: skip
        except Exception as exc:
            fut.set_exception(BusError(f"cannot read {topic}: {exc}"))
            fut.exception()  # retrieved: waiters get it through await
            raise BusError(f"cannot read {topic}: {exc}") from exc
        finally:
            self._starting.pop(topic, None)
        self._readers[topic] = reader
        if not fut.done():
            fut.set_result(None)
        log.info("subscribed", topic=topic, subscription=self.subscription)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
        failed = 0
        for topic, consumer in list(self._readers.items()):
            try:
                consumer.unsubscribe()  # a durable subscription of this process only: leave nothing behind
            except Exception as exc:
                failed += 1
                log.warning("unsubscribe failed", topic=topic, error=str(exc))
                with contextlib.suppress(Exception):
                    consumer.close()
        self._readers.clear()
        if self.record is not None and not failed:
            self.record.delete()  # else the next gateway removes what is left
