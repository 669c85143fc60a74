"""The Pulsar → PostgreSQL sink service: batches messages, writes them in one transaction, acks after commit.

Loop (one thread, blocking — run it in its own process)::

    receive until batch_size messages or max_latency_ms after the first one
      → decode (format from the message properties) → map to (table, row)
      → CopyWriter.write: one transaction, ON CONFLICT DO NOTHING
      → on commit: acknowledge every message of the batch

- A message that cannot be decoded or mapped goes, raw, to ``deadletter/sink.postgres`` with the properties
  ``error``, ``source_topic`` and ``message_id``, and is acknowledged; the rest of the batch still lands.
  If the database refuses a row anyway (``RowsRejected``), the batch is halved until the offending message is
  isolated and dead-lettered, each committed part being acknowledged.
- Database unavailable: the batch is kept and retried with capped, jittered exponential backoff
  (``sink.retry_max_s``); nothing is acknowledged meanwhile and nothing new is received.
- Broker errors (receive, ack) are logged and counted; a lost ack only means a redelivery, which the unique
  keys absorb.
- ``stop`` set: the current batch is committed and acknowledged, the consumer closed, and ``run`` returns. If
  the database is down at that moment the batch is left unacknowledged (it is redelivered on the next start).

pulsar-lite: subscriptions are Shared over an explicit topic list (no regex subscriptions; unbatched sends to
Exclusive/Failover subscriptions may be delivered many times there).
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulsar
import sqlalchemy.exc

from pulse.bus import Bus
from pulse.codec import decode_any
from pulse.log import get_logger
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import StatusFile
from pulse.topics import dead_letter_topic, topic
from sinks.postgres.mapping import Row, to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.writer import CopyWriter, DatabaseUnavailable, RowsRejected

log = get_logger(__name__)

DEAD_LETTER_SOURCE = "sink.postgres"
# Not "ticker": the Kraken ingester publishes each ticker's top of book as a Quote on the quote topic already.
DEFAULT_CHANNELS = ("trade", "quote", "book", "status")
_STATUS_EVERY_S = 0.5
_IDLE_RECEIVE_MS = 250  # longest single blocking receive
_BACKOFF_INITIAL_S = 0.1
_LATENCY_WINDOW = 1024


def topics_for(
    settings: Settings,
    namespace: str = "crypto",
    venue: str = "kraken",
    symbols: Sequence[str] | None = None,
    channels: Sequence[str] = DEFAULT_CHANNELS,
) -> list[str]:
    """The explicit topic list for one venue's streams (pulsar-lite has no pattern subscriptions).

    ``symbols`` defaults to ``settings.kraken.symbols``.
    """
    syms = settings.kraken.symbols if symbols is None else symbols
    return [topic(namespace, venue, s, ch, settings.pulsar.tenant) for s in syms for ch in channels]


def parse_source(spec: str) -> tuple[str, str, list[str]]:
    """``crypto/kraken=BTC/USD,ETH/USD`` → ("crypto", "kraken", ["BTC/USD", "ETH/USD"]), validated."""
    from pulse.errors import ConfigError
    from pulse.symbols import parse_symbol_list
    from pulse.topics import NAMESPACES

    head, sep, syms = spec.partition("=")
    namespace, slash, venue = head.strip().partition("/")
    if not sep or not slash or namespace not in NAMESPACES or not venue.isidentifier():
        raise ConfigError(
            f"invalid sink source {spec!r}: expected NAMESPACE/VENUE=SYMBOL[,SYMBOL…], e.g. crypto/kraken=BTC/USD"
        )
    return namespace, venue, parse_symbol_list(syms)


def topics_for_sources(settings: Settings, sources: Sequence[str] | None = None) -> list[str]:
    """The topic list for ``sources`` (default ``sink.sources``, else crypto/kraken with kraken.symbols)."""
    specs = list(sources or settings.sink.sources)
    if not specs:
        return topics_for(settings)
    out: list[str] = []
    for spec in specs:
        namespace, venue, symbols = parse_source(spec)
        out += [t for t in topics_for(settings, namespace, venue, symbols) if t not in out]
    return out


@dataclass
class SinkStats:
    """Live counters (updated by the sink thread only; read them from anywhere)."""

    received: int = 0
    stored: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # new rows per table
    duplicates: int = 0  # rows whose unique key already existed (redeliveries)
    ignored: int = 0  # events the sink does not store (candles, deltas without a top of book)
    dead_lettered: int = 0
    batches: int = 0  # committed transactions
    db_errors: int = 0
    broker_errors: int = 0
    last_event_ns: dict[str, int] = field(default_factory=dict)  # "venue:symbol" → newest stored ts_event
    commit_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))

    def latency_ms(self, q: float) -> float | None:
        data = sorted(self.commit_latencies_s)
        if not data:
            return None
        return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": dict(self.stored),
            "stored_total": sum(self.stored.values()),
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "db_errors": self.db_errors,
            "broker_errors": self.broker_errors,
            "commit_p50_ms": self.latency_ms(0.50),
            "commit_p99_ms": self.latency_ms(0.99),
        }


@dataclass
class _Item:
    msg: pulsar.Message
    table: str
    row: Row
    key: str  # venue:symbol
    ts_event: int


class _Stopped(Exception):
    """Stop was requested while the database was unavailable: leave the batch unacknowledged."""


class PostgresSink:
    """Consumes ``topics`` (an explicit list; see :func:`topics_for`) into PostgreSQL. Call :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        topics: list[str],
        *,
        name: str = "sink-postgres",
        status_home: Path | None = None,
    ) -> None:
        if not topics:
            raise ValueError("PostgresSink needs at least one topic")
        self.settings = settings
        self.endpoints = endpoints
        self.topics = list(topics)
        self.name = name
        self.stats = SinkStats()
        self.dead_letter_topic = dead_letter_topic(DEAD_LETTER_SOURCE, settings.pulsar.tenant)
        self._status = StatusFile(status_home, name) if status_home is not None else None
        self._status_at = 0.0
        self._bus: Bus | None = None
        self._consumer: pulsar.Consumer | None = None
        self._writer: CopyWriter | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; commit and acknowledge the batch in hand, then close and return."""
        cfg = self.settings.sink
        try:
            self._retrying("ensure schema", self._ensure_schema, stop)
            self._bus = Bus(self.settings, self.endpoints.pulsar_url)
            self._consumer = self._bus.subscribe(
                self.topics, cfg.subscription, sub_type="shared", consumer_name=self.name
            )
            self._writer = CopyWriter(self.endpoints.database_url, application_name=self.name)
            log.info("sink started", topics=len(self.topics), subscription=cfg.subscription, batch_size=cfg.batch_size)
            while not stop.is_set():
                msgs = self._collect(stop)
                if msgs:
                    self._process(msgs, stop)
                self._tick()
        except _Stopped:
            log.warning("stopped with the database unavailable; the batch in hand will be redelivered")
        finally:
            self._close()
        log.info("sink stopped", **self.stats.as_dict())

    def _ensure_schema(self) -> None:
        try:
            ensure_schema(self.endpoints.database_url)
        except sqlalchemy.exc.OperationalError as exc:  # not reachable (yet): retried like a write
            raise DatabaseUnavailable(f"cannot create the schema: {exc.orig or exc}") from exc

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
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

    # -- receive -------------------------------------------------------------------------------------
    def _collect(self, stop: threading.Event) -> list[pulsar.Message]:
        """Up to batch_size messages, returned at most max_latency_ms after the first one arrived."""
        cfg = self.settings.sink
        assert self._consumer is not None
        msgs: list[pulsar.Message] = []
        deadline: float | None = None
        while len(msgs) < cfg.batch_size:
            if msgs and stop.is_set():
                break  # commit what we hold now rather than wait out max_latency_ms
            timeout_ms = _IDLE_RECEIVE_MS  # bounded, so stop and the status file stay responsive
            if deadline is not None:
                timeout_ms = min(timeout_ms, int((deadline - time.monotonic()) * 1000))
                if timeout_ms <= 0:
                    break
            try:
                msg = self._consumer.receive(timeout_millis=timeout_ms)
            except pulsar.Timeout:
                if deadline is None and stop.is_set():
                    break
                self._tick()
                continue
            except Exception as exc:
                self.stats.broker_errors += 1
                log.warning("receive failed", error=str(exc))
                stop.wait(0.5)
                break
            msgs.append(msg)
            self.stats.received += 1
            if deadline is None:
                deadline = time.monotonic() + cfg.max_latency_ms / 1000
        return msgs

    # -- process -------------------------------------------------------------------------------------
    def _process(self, msgs: list[pulsar.Message], stop: threading.Event) -> None:
        items: list[_Item] = []
        for msg in msgs:
            try:
                event = decode_any(msg.data(), msg.properties())
                mapped = to_row(event)
            except Exception as exc:  # CodecError, MappingError — or a bug; either way the message is bad here
                self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
                continue
            if mapped is None:
                self.stats.ignored += 1
                self._ack(msg)
                continue
            table, row = mapped
            items.append(_Item(msg, table, row, f"{event.venue}:{event.symbol}", event.ts_event))
        self._store(items, stop)

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
            rows[it.table].append(it.row)
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
        st.batches += 1
        inserted = 0
        for table, n in counts.items():
            st.stored[table] += n
            inserted += n
        st.duplicates += len(group) - inserted
        last = st.last_event_ns
        for it in group:
            if it.ts_event > last.get(it.key, -1):
                last[it.key] = it.ts_event
            self._ack(it.msg)

    # -- retry / ack / dead letters --------------------------------------------------------------------
    def _retrying(self, what: str, fn: Any, stop: threading.Event) -> Any:
        """Call ``fn`` until it stops raising DatabaseUnavailable (capped, jittered backoff; stop-aware)."""
        delay = _BACKOFF_INITIAL_S
        while True:
            try:
                return fn()
            except DatabaseUnavailable as exc:
                self.stats.db_errors += 1
                if stop.is_set():
                    raise _Stopped from exc
                wait = random.uniform(delay / 2, delay)
                log.warning("database unavailable, retrying", action=what, retry_in_s=round(wait, 2), error=str(exc))
                self._sleep(wait, stop)
                delay = min(delay * 2, self.settings.sink.retry_max_s)

    def _sleep(self, seconds: float, stop: threading.Event) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not stop.is_set():
            stop.wait(min(left, _STATUS_EVERY_S))
            self._tick()

    def _ack(self, msg: pulsar.Message) -> None:
        assert self._consumer is not None
        try:
            self._consumer.acknowledge(msg)
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
            self._consumer.negative_acknowledge(msg)
            return
        self.stats.dead_lettered += 1
        self._ack(msg)

    # -- status --------------------------------------------------------------------------------------
    def _tick(self, final: bool = False) -> None:
        if self._status is None:
            return
        now = time.monotonic()
        if now - self._status_at < _STATUS_EVERY_S and not final:
            return
        self._status_at = now
        try:
            self._status.write(
                self.stats.as_dict(),
                topics=len(self.topics),
                subscription=self.settings.sink.subscription,
                last_event_ns=dict(self.stats.last_event_ns),
                state="stopped" if final else "running",
            )
        except OSError as exc:
            log.warning("status file write failed", path=str(self._status.path), error=str(exc))
