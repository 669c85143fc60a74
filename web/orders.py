"""Paper orders from the gateway: publish a command to the matching service and wait for its answer.

The gateway already reads the fills topic (from its start, for ``GET /api/orders``); :class:`OrderDesk` sends a
command to ``trading/<matching.orders_topic>`` keyed by its symbol, exactly as ``pulse orders`` does, and
collects the executions that answer it as they come back on that topic: those carrying the command's
``request_id``, or (after the first) the same ``order_id`` — the CLI's ``--wait`` rule. No thread, no extra
subscription: :meth:`OrderDesk.feed` is called by :class:`web.console.Console` for every new execution.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from consumers.matching.messages import Command, Execution, encode
from pulse.topics import service_topic

MORE_S = 0.3  # after the first answer, executions that follow it this closely belong to the same answer


class _Waiter:
    __slots__ = ("answers", "event", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.answers: list[Execution] = []
        self.event = asyncio.Event()


class OrderDesk:
    """One producer on the orders topic and the commands still waiting for an answer. Event loop only."""

    def __init__(self, client: Any, settings: Any) -> None:
        self.client = client
        self.topic = service_topic("trading", settings.matching.orders_topic, settings.pulsar.tenant)
        self._producer: Any = None
        self._waiting: dict[str, _Waiter] = {}
        self.sent = 0

    def feed(self, out: Execution) -> None:
        """A new execution from the fills topic (deduplicated by the console)."""
        for w in self._waiting.values():
            if out.request_id == w.request_id or (w.answers and out.order_id == w.answers[0].order_id):
                w.answers.append(out)
                w.event.set()

    async def send(self, cmd: Command, wait_s: float) -> list[Execution]:
        """Publish ``cmd``; the executions answering it within ``wait_s`` (none when ``wait_s`` is 0 or the
        matching service did not answer in time)."""
        w = _Waiter(cmd.request_id)
        self._waiting[cmd.request_id] = w  # before sending: an answer cannot arrive unseen
        try:
            await asyncio.to_thread(self._publish, cmd)
            self.sent += 1
            if wait_s <= 0:
                return []
            deadline = time.monotonic() + wait_s
            while True:
                left = deadline - time.monotonic() if not w.answers else MORE_S
                if left <= 0:
                    break
                w.event.clear()
                try:
                    await asyncio.wait_for(w.event.wait(), left)
                except TimeoutError:
                    if w.answers:
                        break
            return list(w.answers)
        finally:
            del self._waiting[cmd.request_id]

    def _publish(self, cmd: Command) -> None:
        if self._producer is None:
            self._producer = self.client.create_producer(self.topic, batching_enabled=False)
        self._producer.send(encode(cmd), partition_key=cmd.symbol,
                            properties={"type": type(cmd).__struct_config__.tag})  # fmt: skip

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close()
            finally:
                self._producer = None
