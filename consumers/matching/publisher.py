"""The matching service's executions and positions out: one producer per symbol, with the symbol's output count
as the Pulsar sequence id.

Each symbol's outputs go out on a producer named after the fills topic and the symbol — the same name in every
instance of a scaled-out group — and every output carries the symbol's running output count (deterministic: the
engine produces the same outputs from the same inputs) as its sequence id. With deduplication on the ``trading``
namespace (Apache Pulsar; ``pulsar/namespaces.yaml``), the broker drops an output it already holds when a new
owner of the symbol, or a restarted instance, publishes again what the broker had not confirmed: the topic holds
each execution once. The name also fences: the broker refuses a second producer of that name while the first
one's connection lives. pulsar-lite has no deduplication; there consumers dedupe on ``exec_id``.

Confirmations: outputs are numbered 1, 2, … per instance (the journal's ``pub`` markers); with several producers
the broker's answers come back out of order, so :meth:`FillsPublisher.confirmed` advances only over a contiguous
run of confirmed numbers.
"""

from __future__ import annotations

import contextlib
import heapq
import queue
import time
from urllib.parse import quote

import pulsar

from consumers.matching.messages import Execution, Output, output_encoder
from pulse.errors import BusError
from pulse.log import get_logger

log = get_logger(__name__)

_PRODUCER_WAIT_S = 30.0  # a moved symbol's producer name is busy until the broker drops the old connection


class FillsPublisher:
    def __init__(self, client: pulsar.Client, topic: str, max_pending: int) -> None:
        self.client = client
        self.topic = topic
        self.max_pending = max_pending
        self._producers: dict[str, pulsar.Producer] = {}
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()  # producer callbacks → the processing thread
        self._heap: list[int] = []
        self.acked = 0  # outputs 1..acked confirmed by the broker

    def producer(self, symbol: str) -> pulsar.Producer:
        p = self._producers.get(symbol)
        if p is None:
            p = self._producers[symbol] = self._create(symbol)
        return p

    def _create(self, symbol: str) -> pulsar.Producer:
        name = f"matching.{self.topic.rsplit('/', 1)[-1]}.{quote(symbol, safe='')}"
        deadline = time.monotonic() + _PRODUCER_WAIT_S
        while True:
            try:
                return self.client.create_producer(
                    self.topic,
                    producer_name=name,
                    compression_type=pulsar.CompressionType.LZ4,
                    batching_enabled=False,  # a batch would hold a fill for the batching delay; ids stay per message
                    block_if_queue_full=True,
                    send_timeout_millis=0,
                    max_pending_messages=self.max_pending,
                )
            except Exception as exc:  # ProducerBusy while the previous owner's connection is still open
                if time.monotonic() > deadline:
                    raise BusError(f"cannot create producer {name} on {self.topic}: {exc}") from exc
                time.sleep(0.2)

    def send(self, o: Output, n: int, seq_id: int) -> None:
        """Publish output number ``n`` of this instance, the ``seq_id``-th of its symbol."""
        acks = self._acks

        def done(res: pulsar.Result, _mid: object) -> None:
            if res == pulsar.Result.Ok:
                acks.put(n)

        self.producer(o.symbol).send_async(
            output_encoder.encode(o), done, properties=_props(o), partition_key=o.symbol, sequence_id=seq_id
        )

    def send_again(self, o: Output, seq_id: int) -> None:
        """Publish an output another instance (or this one before a restart) produced and the broker may lack."""
        self.producer(o.symbol).send_async(
            output_encoder.encode(o), None, properties=_props(o), partition_key=o.symbol, sequence_id=seq_id
        )

    def confirmed(self) -> int:
        """The highest n with outputs 1..n confirmed (processing thread)."""
        heap, acks = self._heap, self._acks
        while True:
            try:
                heapq.heappush(heap, acks.get_nowait())
            except queue.Empty:
                break
        acked = self.acked
        while heap and heap[0] <= acked + 1:
            acked = max(acked, heapq.heappop(heap))
        self.acked = acked
        return acked

    def all_confirmed(self, n: int) -> None:
        """After a flush: outputs 1..n are confirmed."""
        self.confirmed()
        self.acked = max(self.acked, n)
        self._heap = [x for x in self._heap if x > self.acked]

    def flush(self) -> None:
        for p in list(self._producers.values()):
            p.flush()

    def close_symbol(self, symbol: str) -> None:
        """Flush and close the symbol's producer (its name is free for the next owner)."""
        p = self._producers.pop(symbol, None)
        if p is not None:
            with contextlib.suppress(Exception):
                p.flush()
            try:
                p.close()
            except Exception as exc:
                log.warning("producer close failed", symbol=symbol, error=str(exc))

    def close(self) -> None:
        for s in list(self._producers):
            self.close_symbol(s)


def _props(o: Output) -> dict[str, str]:
    return {"type": "execution" if type(o) is Execution else "position", "format": "json"}
