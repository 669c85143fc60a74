"""Pulsar → asyncio: one non-durable reader per topic, however many WebSocket clients listen to it.

A reader is Pulsar's non-durable, exclusive subscription with no acknowledgements: nothing is left behind on
the broker when the gateway stops, and no backlog builds for a gateway that is gone. On pulsar-lite (checked
by ``tests/integration/test_web_gateway.py``) readers started at ``MessageId.latest`` receive every message,
batched or not, exactly once; the redelivery storms of unbatched sends hit acknowledged Exclusive/Failover
*subscriptions*, which a reader is not. What pulsar-lite does not do is start a reader *on* the latest message
(``start_message_id_inclusive``): it times out. So the last known value of a topic comes from the gateway's own
cache, seeded from the database when the reader starts (:mod:`web.data`).

The client library calls the listener on its own thread. Messages go into one deque and the event loop is
woken once per burst (``call_soon_threadsafe`` only when no drain is already scheduled), so a busy topic costs
one thread hop per burst, not per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pulsar

from pulse.errors import BusError
from pulse.log import get_logger

log = get_logger(__name__)

#: (topic, payload, properties, publish time in ms)
Message = tuple[str, bytes, dict[str, str], int]


class Readers:
    """Readers keyed by topic; ``on_batch`` runs on the event loop with every message received since the last."""

    def __init__(
        self, client: pulsar.Client, loop: asyncio.AbstractEventLoop, on_batch: Callable[[list[Message]], None]
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

    @property
    def topics(self) -> list[str]:
        return list(self._readers)

    def _listener(self, topic: str) -> Callable[[Any, Any], None]:
        queue, lock = self._queue, self._lock

        def on_message(_reader: Any, msg: Any) -> None:
            queue.append((topic, msg.data(), msg.properties(), msg.publish_timestamp()))
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
        """Start the topic's reader unless it runs; True when this call started it."""
        if topic in self._readers:
            return False
        pending = self._starting.get(topic)
        if pending is not None:
            await pending
            return False
        fut: asyncio.Future[None] = self.loop.create_future()
        self._starting[topic] = fut
        try:
            start = pulsar.MessageId.earliest if earliest else pulsar.MessageId.latest
            reader = await asyncio.to_thread(
                self.client.create_reader, topic, start, reader_listener=self._listener(topic), receiver_queue_size=2000
            )
        except Exception as exc:
            fut.set_exception(BusError(f"cannot read {topic}: {exc}"))
            fut.exception()  # retrieved: waiters get it through await
            raise BusError(f"cannot read {topic}: {exc}") from exc
        finally:
            self._starting.pop(topic, None)
        self._readers[topic] = reader
        if not fut.done():
            fut.set_result(None)
        log.info("reader started", topic=topic)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for topic, reader in list(self._readers.items()):
            try:
                reader.close()
            except Exception as exc:
                log.warning("reader close failed", topic=topic, error=str(exc))
        self._readers.clear()
