"""The Pulsar → PostgreSQL/TimescaleDB sink service: batches in, one transaction per batch, acks after commit.

Two threads, so the database write of batch *n* overlaps receiving and decoding batch *n+1*::

    receiver (caller's thread)                    writer thread
    consumer.batch_receive()  ─ batch_size or     take a batch from a queue of one
      max_latency_ms, whichever first             → CopyWriter.write: COPY to staging, INSERT … ON CONFLICT,
    → decode (format sniffed) → map → table       commit
    → hand the batch over (blocks while the       → on commit, and only then: acknowledge every message
      writer still holds two: bounded)

- A message may carry many events (:class:`~pulse.models.QuoteBatch`, the historical path): it becomes many
  rows, and is acknowledged once they are all committed. Received messages are handed to the writer in groups
  of about ``batch_size`` *rows* (at message boundaries), so a batch of batches stays bounded.
- A message that cannot be decoded or mapped goes, raw, to the config's dead-letter topic with the properties
  ``error``, ``source_topic`` and ``message_id``, and is acknowledged; the rest of the batch still lands.
  If the database refuses a row anyway (``RowsRejected``), the batch is halved until the offending message is
  isolated and dead-lettered, each committed part being acknowledged. A QuoteBatch is dead-lettered whole.
- Database unavailable: the writer keeps its batch and retries with capped, jittered exponential backoff
  (``retry_max_s``); nothing is acknowledged meanwhile and, the hand-over queue being full, nothing more is
  received beyond one waiting batch.
- Broker errors (receive, ack) are logged and counted; a lost ack only means a redelivery, which the unique
  keys absorb.
- ``stop`` set: the batches in hand are committed and acknowledged, the consumer closed, and ``run`` returns.
  If the database is down at that moment they are left unacknowledged (redelivered on the next start).
- At start: schema migrations (:mod:`sinks.postgres.migrations`), mode detection (:mod:`sinks.postgres.mode`),
  and on TimescaleDB the hypertables and policies of the config; the log line ``sink started`` names the mode.
- TimescaleDB: the candle aggregates are created at start, and the time range of committed ``historical`` rows
  is refreshed bottom-up when the sink goes idle or every so often while busy (:mod:`sinks.postgres.aggregates`).

pulsar-lite: subscriptions are Shared over an explicit topic list (no regex subscriptions; unbatched sends to
Exclusive/Failover subscriptions may be delivered many times there).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pulsar
import sqlalchemy.exc

from pulse.bus import Bus
from pulse.errors import BusError
from pulse.log import get_logger
from pulse.retry import RetryStopped, counting, retry_until_ok
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import StatusFile
from sinks.postgres import aggregates
from sinks.postgres.config import SinkConfig, default_config
from sinks.postgres.mapping import ELEMENT_TYPE, Row, to_rows
from sinks.postgres.migrations import prepare
from sinks.postgres.mode import DbMode
from sinks.postgres.sources import decode_payload, receive_many
from sinks.postgres.stats import SinkStats
from sinks.postgres.watch import SinkWatch
from sinks.postgres.writer import CopyWriter, DatabaseUnavailable, RowsRejected

log = get_logger(__name__)

_STATUS_EVERY_S = 0.5
_IDLE_RECEIVE_MS = 250  # longest single blocking receive
_PARTITION = re.compile(r"-partition-\d+$")


@dataclass(slots=True)
class _Item:
    msg: pulsar.Message
    table: str
    rows: list[Row]  # one per event the message carries (many for a QuoteBatch)
    key: str  # venue:symbol
    ts_event: int  # the newest event's


@dataclass(slots=True)
class _Batch:
    items: list[_Item]
    first_at: float  # monotonic time the batch's receive started


_DONE = object()  # end-of-stream marker for the writer thread


class PostgresSink:
    """Consumes topics into PostgreSQL/TimescaleDB as ``config`` says. Call :meth:`run`.

    ``config`` defaults to :func:`~sinks.postgres.config.default_config` over ``topics`` (settings' [sink]
    values). ``topics`` defaults to the config's sources.
    """

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        topics: list[str] | None = None,
        *,
        config: SinkConfig | None = None,
        name: str = "sink-postgres",
        status_home: Path | None = None,
        follow_namespaces: Sequence[str] = (),
    ) -> None:
        tenant = settings.pulsar.tenant
        if config is None:
            if not topics:
                raise ValueError("PostgresSink needs a config or at least one topic")
            config = default_config(settings, topics)
        self.settings = settings
        self.config = config
        self.endpoints = endpoints
        self.topics = list(topics) if topics else config.topic_list(tenant)
        self.name = name
        self.stats = SinkStats()
        self.mode: DbMode | None = None
        self.dead_letter_topic = config.dead_letter(tenant)
        self._status = StatusFile(status_home, name) if status_home is not None else None
        self._bus: Bus | None = None
        self._consumer: pulsar.Consumer | None = None
        # registry-following: instruments added live get a consumer of their own on the same subscription
        self.follow_namespaces = tuple(follow_namespaces)
        self._extra: list[pulsar.Consumer] = []
        self._consumer_of: dict[str, pulsar.Consumer] = {}  # topic → its consumer, when not the first one
        self._new_topics: queue.Queue[list[str]] = queue.Queue()
        self._listener: Any = None
        self._writer: CopyWriter | None = None
        # the mapper's table → the config's table, per event type
        self._target = {ev: t.table for ev, t in config.tables.items()}
        self._handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._writer_error: BaseException | None = None
        self._caggs: aggregates.AggregateRefresher | None = None  # TimescaleDB only
        # a broker outage (a log line, broker_errors + 1) and a stalled subscription (stalls, resubscribes)
        self._watch = SinkWatch(name, endpoints.pulsar_url, endpoints.broker_metrics_url, config.subscription,
                                self.stats, stall_s=config.stall_s)  # fmt: skip
        self._received_at = time.monotonic()

    @property
    def subscribed(self) -> bool:
        return self._consumer is not None

    @property
    def status_file(self) -> StatusFile | None:
        return self._status

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; commit and acknowledge the batches in hand, then close and return."""
        cfg = self.config
        writer_thread: threading.Thread | None = None
        try:
            self.mode = self._retrying("prepare database", self._prepare_database, stop)
            self.stats.mode = self.mode.name
            if self.mode.timescaledb and cfg.timescale.enabled != "off":
                self._caggs = self._retrying("create candle aggregates", self._prepare_aggregates, stop)
            self._bus = Bus(self.settings, self.endpoints.pulsar_url)
            bus = self._bus
            if self.follow_namespaces:
                self._follow_registry(bus, stop)

            def subscribe() -> pulsar.Consumer:
                return bus.subscribe(
                    self.topics,
                    cfg.subscription,
                    sub_type="shared",
                    consumer_name=self.name,
                    receiver_queue_size=min(max(2 * cfg.batch_size, 5000), 50_000),
                )

            # the broker may be down or slow (pulsar-lite once took > 30 s after a consumer was SIGKILLed): retry
            self._consumer = self._retrying("subscribe", subscribe, stop, broker=True)
            columns = {t.table: _columns_for(ev) for ev, t in cfg.tables.items()}
            self._writer = CopyWriter(
                self.endpoints.database_url, columns, modes=cfg.table_modes(), application_name=self.name
            )
            writer_thread = threading.Thread(target=self._write_loop, args=(stop,), name=f"{self.name}-writer")
            writer_thread.start()
            log.info(
                "sink started",
                mode=self.mode.name,
                timescaledb=self.mode.version or "-",
                topics=len(self.topics),
                subscription=cfg.subscription,
                batch_size=cfg.batch_size,
            )
            # JDBC-sink semantics: a batch is written when it holds batch_size rows or when max_latency_ms has
            # passed since its first message arrived, whichever comes first; stop writes what is in hand.
            items: list[_Item] = []
            nrows, first_at = 0, 0.0
            while not stop.is_set() and self._writer_error is None:
                if not self._new_topics.empty():
                    self._subscribe_new(stop)
                for item in self._collect(stop):
                    if not items:
                        first_at = time.monotonic()
                    items.append(item)
                    nrows += len(item.rows)
                    if nrows >= cfg.batch_size:
                        self._hand_over(_Batch(items, first_at), stop)
                        items, nrows = [], 0
                if items and (time.monotonic() - first_at) * 1000 >= cfg.max_latency_ms:
                    self._hand_over(_Batch(items, first_at), stop)
                    items, nrows = [], 0
                idle_s = time.monotonic() - self._received_at
                self._watch.tick([self._consumer, *self._extra], idle_s, lambda: self._resubscribe(subscribe))
                self._tick()
            if items and self._writer_error is None:
                self._hand_over(_Batch(items, first_at), stop, final=True)
        except RetryStopped:
            log.warning("stopped with the database unavailable; the batch in hand will be redelivered")
        finally:
            if writer_thread is not None:
                self._hand_over(_DONE, stop, final=True)
                writer_thread.join()
            if self._caggs is not None:
                self._caggs.stop()
            self._close()
        log.info("sink stopped", **self.stats.as_dict())
        if self._writer_error is not None:
            raise self._writer_error

    def _prepare_database(self) -> DbMode:
        try:
            return prepare(self.endpoints.database_url, self.config)
        except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as exc:  # not reachable (yet): retried
            raise DatabaseUnavailable(f"cannot prepare the database: {exc}") from exc

    def _prepare_aggregates(self) -> aggregates.AggregateRefresher:
        assert self.mode is not None
        try:
            aggregates.ensure(self.endpoints.database_url, toolkit=self.mode.toolkit)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot create the candle aggregates: {exc}") from exc
        refresher = aggregates.AggregateRefresher(
            self.endpoints.database_url, self.topics, name=self.name, stats=self.stats
        )
        refresher.start()
        return refresher

    # -- following the registry ------------------------------------------------------------------------
    def _follow_registry(self, bus: Bus, stop: threading.Event) -> None:
        """Subscribe to the control topic, then add the registry's enabled instruments of the followed
        namespaces to the topic list; a thread then queues the topics of instruments added later."""
        from pulse.control import ControlListener
        from pulse.registry import RegistryReader
        from pulse.venues import instrument_topics

        tenant = self.settings.pulsar.tenant
        self._listener = ControlListener(bus, self.name)

        def read() -> list[str]:
            with RegistryReader(self.endpoints.database_url) as reg:
                rows = [r for r in reg.list(enabled_only=True) if r.namespace in self.follow_namespaces]
            return [t for r in rows for t in instrument_topics(r, tenant)]

        try:
            found = read()
        except Exception as exc:  # the database was reachable a moment ago (prepare); keep going without it
            log.warning("instrument registry unreadable; following control commands only", error=str(exc))
            found = []
        self.topics += [t for t in dict.fromkeys(found) if t not in self.topics]

        def follow() -> None:
            while not stop.is_set():
                try:
                    cmd = self._listener.receive(250)
                except Exception as exc:
                    log.warning("control topic receive failed", error=str(exc))
                    stop.wait(1.0)
                    continue
                if cmd is not None and cmd.subscribes and cmd.namespace in self.follow_namespaces:
                    self._new_topics.put(instrument_topics(cmd, tenant))

        threading.Thread(target=follow, name=f"{self.name}-control", daemon=True).start()

    def _subscribe_new(self, stop: threading.Event) -> None:
        """(Receiving thread.) One more consumer for topics not consumed yet, on the same subscription."""
        new: list[str] = []
        while not self._new_topics.empty():
            new += [t for t in self._new_topics.get_nowait() if t not in self.topics and t not in new]
        if not new or self._bus is None:
            return
        bus, cfg = self._bus, self.config

        def subscribe() -> pulsar.Consumer:
            return bus.subscribe(new, cfg.subscription, sub_type="shared", consumer_name=self.name)

        consumer = self._retrying("subscribe new topics", subscribe, stop, broker=True)
        self._extra.append(consumer)
        for t in new:
            self._consumer_of[t] = consumer
        self.topics += new
        self.stats.topics_added += len(new)
        log.info("consuming new instrument topics", topics=",".join(t.rsplit("/", 1)[-1] for t in new))

    def _owner(self, msg: pulsar.Message) -> pulsar.Consumer:
        if self._extra:
            owner = self._consumer_of.get(_PARTITION.sub("", msg.topic_name()))
            if owner is not None:
                return owner
        assert self._consumer is not None
        return self._consumer

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for consumer in [self._consumer, *self._extra]:
            if consumer is None:
                continue
            try:
                consumer.close()
            except Exception as exc:
                log.warning("consumer close failed", error=str(exc))
        if self._writer is not None:
            self._writer.close()
        if self._bus is not None:
            try:
                self._bus.close()
            except Exception as exc:
                log.warning("pulsar client close failed", error=str(exc))
        self._tick(final=True)  # keep the file: final counters, state "stopped" (a crash leaves no such state)

    # -- receive (caller's thread) -------------------------------------------------------------------
    def _receive(self, limit: int) -> list[pulsar.Message]:
        """Up to ``limit`` messages: wait ≤ 250 ms for the first, then take what the client already holds.

        Plain ``receive`` calls rather than ``batch_receive``: with a multi-topic consumer against pulsar-lite,
        ``batch_receive`` was seen to stop one topic's flow permits (the broker kept a backlog and dispatched
        nothing more), stalling the sink; ``receive`` never did.
        """
        consumer = self._consumer
        assert consumer is not None
        if self._extra:
            return receive_many([consumer, *self._extra], limit, _IDLE_RECEIVE_MS)
        try:
            msgs = [consumer.receive(timeout_millis=_IDLE_RECEIVE_MS)]
        except pulsar.Timeout:
            return []
        try:
            while len(msgs) < limit:
                msgs.append(consumer.receive(timeout_millis=1))
        except pulsar.Timeout:
            pass
        return msgs
        return msgs

    def _collect(self, stop: threading.Event) -> list[_Item]:
        """Received messages (≤ batch_size), decoded and mapped; empty when idle."""
        try:
            msgs = self._receive(self.config.batch_size)
        except Exception as exc:
            self.stats.broker_errors += 1
            log.warning("receive failed", error=str(exc))
            stop.wait(0.5)
            return []
        if not msgs:
            return []
        self._received_at = time.monotonic()
        self.stats.received += len(msgs)
        items: list[_Item] = []
        target = self._target
        ignored: list[pulsar.Message] = []
        for msg in msgs:
            try:
                event = decode_payload(msg.data())
                mapped = to_rows(event)
            except Exception as exc:  # CodecError, MappingError — or a bug; either way the message is bad here
                self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
                continue
            if mapped is None or not mapped[1]:
                ignored.append(msg)
                continue
            tag = event.__struct_config__.tag  # type: ignore[attr-defined]
            table = target.get(ELEMENT_TYPE.get(tag, tag), mapped[0])
            rows = mapped[1]
            items.append(_Item(msg, table, rows, f"{event.venue}:{event.symbol}", rows[-1][3]))
        if ignored:
            self.stats.ignored += len(ignored)
            for msg in ignored:
                self._ack(msg)
        return items

    def _hand_over(self, batch: object, stop: threading.Event, final: bool = False) -> None:
        """Queue ``batch`` for the writer, waiting while it is busy (the bound that keeps memory flat)."""
        while True:
            if self._writer_error is not None:
                return
            try:
                self._handoff.put(batch, timeout=_STATUS_EVERY_S)
                return
            except queue.Full:
                self._tick()

    # -- write (writer thread) -----------------------------------------------------------------------
    def _write_loop(self, stop: threading.Event) -> None:
        try:
            while True:
                batch = self._handoff.get()
                if batch is _DONE:
                    return
                self._store(batch.items, stop)
                self.stats.visible_latencies_s.append(time.monotonic() - batch.first_at)
        except RetryStopped:
            log.warning("stopped with the database unavailable; the batch in hand will be redelivered")
            self._drain()
        except BaseException as exc:
            log.error("sink writer failed", error=f"{type(exc).__name__}: {exc}")
            self._writer_error = exc
            self._drain()
            stop.set()

    def _drain(self) -> None:
        """Empty the hand-over queue (unacknowledged: redelivered later) so the receiver never blocks on it."""
        while True:
            try:
                if self._handoff.get(timeout=5) is _DONE:
                    return
            except queue.Empty:
                return

    def _store(self, items: list[_Item], stop: threading.Event) -> None:
        """Write ``items`` and ack them; on RowsRejected, halve until the bad message is isolated."""
        pending = [items] if items else []
        while pending:
            group = pending.pop()
            try:
                counts = self._write(group, stop)
            except RowsRejected as exc:
                if len(group) == 1:
                    self._dead_letter(group[0].msg, f"RowsRejected: {exc}")
                else:
                    mid = len(group) // 2
                    pending += [group[mid:], group[:mid]]  # first half is popped first: keep order
                continue
            self._committed(group, counts)

    def _write(self, group: list[_Item], stop: threading.Event) -> dict[str, int]:
        rows: dict[str, list[Row]] = defaultdict(list)
        for it in group:
            rows[it.table].extend(it.rows)
        assert self._writer is not None
        writer = self._writer

        def attempt() -> dict[str, int]:
            t0 = time.perf_counter()
            counts = writer.write(rows)
            self.stats.commit_latencies_s.append(time.perf_counter() - t0)
            return counts

        return self._retrying("write batch", attempt, stop)

    def _committed(self, group: list[_Item], counts: dict[str, int]) -> None:
        st = self.stats
        inserted = 0
        for table, n in counts.items():
            st.stored[table] += n
            inserted += n
        nrows = sum(len(it.rows) for it in group)
        st.duplicates += max(0, nrows - inserted)
        last = st.last_event_ns
        ack = self._ack
        for it in group:
            if it.ts_event > last.get(it.key, -1):
                last[it.key] = it.ts_event
            ack(it.msg)
        if self._caggs is not None:
            self._caggs.committed(group, counts)  # TimescaleDB: note the historical range to refresh
        st.batches += 1  # after the acks: a reader seeing the count sees the batch acknowledged
        if st.batch_rows is not None:
            st.batch_rows.observe(nrows)

    # -- retry / ack / dead letters --------------------------------------------------------------------
    def _retrying(self, what: str, fn: Any, stop: threading.Event, *, broker: bool = False) -> Any:
        """Call ``fn`` until it stops raising DatabaseUnavailable (or BusError with ``broker``): capped, jittered
        backoff, stop-aware (:func:`pulse.retry.retry_until_ok`)."""

        return retry_until_ok(
            fn,
            what=what,
            dependency="broker" if broker else "database",
            errors=(BusError,) if broker else (DatabaseUnavailable,),
            stop=stop,
            on_error=counting(self.stats, "broker_errors" if broker else "db_errors"),
            max_delay_s=self.config.retry_max_s,
        )

    def _ack(self, msg: pulsar.Message) -> None:
        try:
            self._owner(msg).acknowledge(msg)
        except Exception as exc:  # a lost ack is a redelivery, which the unique keys absorb
            self.stats.broker_errors += 1
            log.warning("ack failed", error=str(exc))

    def _dead_letter(self, msg: pulsar.Message, error: str) -> None:
        """Publish the raw message to the dead-letter topic, then ack it (nack it if the publish failed)."""
        assert self._bus is not None and self._consumer is not None
        props = {"error": error[:1000], "source_topic": msg.topic_name(), "message_id": str(msg.message_id())}
        log.warning("dead-lettering message", **props)
        try:
            self._bus.producer(self.dead_letter_topic).send(msg.data(), properties=props)
        except Exception as exc:
            self.stats.broker_errors += 1
            log.error("dead-letter publish failed; message will be redelivered", error=str(exc))
            self._owner(msg).negative_acknowledge(msg)
            return
        self.stats.dead_lettered += 1
        self._ack(msg)

    # -- status --------------------------------------------------------------------------------------
    def _resubscribe(self, subscribe: Any) -> None:
        """Close the consumers and subscribe again to every topic (a stall's recovery; what they held and did
        not ack is redelivered, and the unique keys absorb it)."""
        for consumer in [self._consumer, *self._extra]:
            try:
                if consumer is not None:
                    consumer.close()
            except Exception as exc:
                log.warning("consumer close failed", error=str(exc))
        self._extra, self._consumer_of = [], {}
        try:
            self._consumer = subscribe()
        except BusError as exc:
            self.stats.broker_errors += 1
            log.warning("resubscribe failed; retrying", error=str(exc))
            self._consumer = self._retrying("subscribe", subscribe, threading.Event(), broker=True)

    def _tick(self, final: bool = False) -> None:
        if self._status is None or not self._status.due(force=final):
            return
        self._status.write_or_log(
            self.stats.as_dict(),
            topics=len(self.topics),
            subscription=self.config.subscription,
            database_mode=self.stats.mode,
            last_event_ns=dict(self.stats.last_event_ns),
            state="stopped" if final else "running",
            broker_connected=self._watch.broker.down_since is None,
            stall=self._watch.stall.describe() if self._watch.stall else "",
        )


def _columns_for(event_type: str) -> tuple[str, ...]:
    from sinks.postgres.mapping import EVENT_TABLES
    from sinks.postgres.schema import COLUMNS

    return COLUMNS[EVENT_TABLES[event_type]]
