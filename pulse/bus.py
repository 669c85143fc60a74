"""The Pulsar client wrapper: one client per process, producer and consumer factories with Pulse's defaults.

Producers: LZ4 (configurable), batching on, ``block_if_queue_full`` (a full queue blocks the caller: that is
the backpressure path, nothing is dropped), a stable producer name, the instrument as partition/ordering key.
Consumers: Shared or Key_Shared by default — pulsar-lite can redeliver unbatched sends many times to
Exclusive/Failover subscriptions, and every Pulse consumer is idempotent anyway.

Schemas (Apache Pulsar only): on a cluster with an admin API (``pulsar.admin_url`` set) and the JSON codec, a
producer on a venue topic declares the channel's registered schema (:func:`pulse.schemas.registered_schema`, the
bytes provisioning uploads), so each message carries the schema version. Without it Apache Pulsar accepts the
producer (``schemaValidationEnforced`` is off by default) but its messages have no schema version, and a
schema-aware reader such as the Java client's ``Schema.AUTO_CONSUME()`` decodes them as plain BYTES — found on
Apache Pulsar 4.0.7 (tests/real_pulsar/test_real_schemas.py). pulsar-lite has no schema registry: bytes as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import _pulsar  # the client's compiled core (what pulsar.Producer wraps)
import pulsar

from pulse.broker_watch import AckWatch, BrokerWatch
from pulse.codec import Codec
from pulse.errors import BusError, TopicError
from pulse.log import get_logger
from pulse.models import Event, QuoteBatch
from pulse.schemas import SCHEMA_OF_CHANNEL, registered_schema
from pulse.settings import Settings
from pulse.topics import CHANNEL_OF_EVENT, parse_topic, topic

log = get_logger(__name__)

_COMPRESSION = {
    "lz4": pulsar.CompressionType.LZ4,
    "zstd": pulsar.CompressionType.ZSTD,
    "none": pulsar.CompressionType.NONE,
}
_MessageBuilder = _pulsar.MessageBuilder
_SUB_TYPES = {
    "shared": pulsar.ConsumerType.Shared,
    "key_shared": pulsar.ConsumerType.KeyShared,
    "failover": pulsar.ConsumerType.Failover,
    "exclusive": pulsar.ConsumerType.Exclusive,
}
SubscriptionType = Literal["shared", "key_shared", "failover", "exclusive"]


def client_logger(settings: Settings) -> object:
    """The C++ client's own logger at WARN, writing to ``<home>/logs/pulsar-client.log``.

    Handing the client a Python ``logging.Logger`` makes it format every DEBUG record and call into Python
    for each, about two calls per message (``bench/`` measured the publish ceiling 1.6-2.3x lower). Its console
    logger would write to stdout, where ``--json`` output goes. The first client of a process sets it.
    """
    logs = settings.home / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        return pulsar.FileLogger(pulsar.LoggerLevel.Warn, str(logs / "pulsar-client.log"))
    except OSError:  # read-only home: fall back to Python logging (slower, still correct)
        lg = logging.getLogger("pulsar")
        lg.setLevel(logging.WARNING)
        return lg


def client_options(settings: Settings, url: str) -> dict[str, object]:
    """``pulsar.Client`` keyword arguments for ``url``: token auth and TLS when the settings ask for them."""
    ps = settings.pulsar
    if not url.startswith(("pulsar://", "pulsar+ssl://")):
        raise BusError(f"pulsar.url {url!r} must start with pulsar:// or pulsar+ssl://")
    kwargs: dict[str, object] = {
        "operation_timeout_seconds": ps.operation_timeout_s,
        "logger": client_logger(settings),
        "io_threads": 1,
    }
    if ps.listener_name:
        kwargs["listener_name"] = ps.listener_name
    token = settings.pulsar_token()
    if token:
        kwargs["authentication"] = pulsar.AuthenticationToken(token)
    if url.startswith("pulsar+ssl://"):
        kwargs["use_tls"] = True
        kwargs["tls_allow_insecure_connection"] = ps.tls_allow_insecure_connection
        kwargs["tls_validate_hostname"] = ps.tls_validate_hostname
        if ps.tls_trust_certs_file:
            kwargs["tls_trust_certs_file_path"] = ps.tls_trust_certs_file
    return kwargs


class DeclaredJsonSchema(pulsar.schema.Schema):  # type: ignore[misc]
    """A producer schema that declares a registered JSON (Avro record) definition and sends payloads as they are.

    Pulse encodes events itself (msgspec); this only tells the broker which schema the bytes follow, so it stamps
    each message with the schema version. ``definition`` must be the registered text byte for byte: the broker
    matches schemas by a hash of their bytes, and a reformatted copy would become a new schema version.
    """

    def __init__(self, name: str, definition: str) -> None:
        self._record_cls = bytes
        self._schema_info = _pulsar.SchemaInfo(_pulsar.SchemaType.JSON, name, definition)

    def encode(self, obj: bytes) -> bytes:
        return obj

    def decode(self, data: bytes) -> bytes:
        return data


def producer_schema(settings: Settings, topic_name: str) -> DeclaredJsonSchema | None:
    """The schema a producer on ``topic_name`` declares: the channel's registered one on a cluster with an admin
    API and the JSON codec (where ``pulse symbols add`` registers it), else None (bytes, e.g. on pulsar-lite)."""
    if not settings.pulsar.admin_url or settings.pulsar.codec != "json":
        return None
    try:
        channel = parse_topic(topic_name).channel
    except TopicError:  # dead letters, control commands: not venue topics, no registered schema
        return None
    if channel not in SCHEMA_OF_CHANNEL:
        return None
    return DeclaredJsonSchema(topic_name.rsplit("/", 1)[-1], registered_schema(channel))


def explain(settings: Settings, exc: Exception) -> str:
    """The client's error, plus "authentication failed" when the broker rejects ``pulsar.auth_token``.

    Apache Pulsar answers a bad token on the binary protocol with an AuthenticationError, but the C++ client
    (pulsar-client 3.13) keeps reconnecting and reports only ``TimeOut`` once the operation times out. When a
    token is set and the cluster has an admin API, the same token is tried there: a 401 is a definite answer.
    """
    text = str(exc)
    token = settings.pulsar_token()
    if "AuthenticationError" in text:
        return f"{text}: authentication failed (the broker rejected pulsar.auth_token)"
    if not token or not settings.pulsar.admin_url or not any(w in text for w in ("TimeOut", "ConnectError")):
        return text
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        settings.pulsar.admin_url.rstrip("/") + "/admin/v2/clusters", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except urllib.error.HTTPError as err:
        if err.code == 401:
            return f"{text}: authentication failed (the broker rejected pulsar.auth_token; its admin API answers 401)"
    except OSError:
        pass
    return text


class Bus:
    """A connected Pulsar client with Pulse's producer/consumer defaults. Close it when done."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        options = client_options(settings, url)
        try:
            self.client = pulsar.Client(url, **options)  # type: ignore[arg-type]
        except Exception as exc:  # the C++ client raises its own types
            raise BusError(f"cannot create Pulsar client for {url}: {exc}") from exc
        self._producers: dict[str, pulsar.Producer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def producer(self, topic_name: str, *, name: str | None = None, batching: bool = True) -> pulsar.Producer:
        """The cached producer for ``topic_name`` (created on first use, which also creates the topic).

        ``batching=False``: every message is its own publish request (what a producer that sets explicit
        sequence ids for broker deduplication wants, see :class:`EventPublisher`)."""
        p = self._producers.get(topic_name)
        if p is not None:
            return p
        with self._lock:
            p = self._producers.get(topic_name)
            if p is None:
                ps = self.settings.pulsar
                schema = producer_schema(self.settings, topic_name)
                try:
                    p = self.client.create_producer(
                        topic_name,
                        producer_name=name,
                        schema=schema or pulsar.schema.BytesSchema(),
                        compression_type=_COMPRESSION[ps.compression],
                        batching_enabled=batching,
                        batching_max_messages=ps.batching_max_messages,
                        batching_max_publish_delay_ms=ps.batching_max_publish_delay_ms,
                        batching_max_allowed_size_in_bytes=512 * 1024,
                        max_pending_messages=ps.max_pending_messages,
                        block_if_queue_full=True,
                        # never time a message out: while the broker is away the queue fills and publish blocks
                        # (backpressure) instead of dropping; it also means no message can fail while a later
                        # one succeeds, which lets EventPublisher count acks from sampled callbacks exactly
                        send_timeout_millis=0,
                    )
                except Exception as exc:
                    raise BusError(f"cannot create producer on {topic_name}: {explain(self.settings, exc)}") from exc
                self._producers[topic_name] = p
        return p

    def subscribe(
        self,
        topics: str | Sequence[str],
        subscription: str,
        *,
        sub_type: SubscriptionType = "shared",
        earliest: bool = True,
        receiver_queue_size: int = 5000,
        consumer_name: str | None = None,
        batch_receive: tuple[int, int] | None = None,  # (max messages, timeout ms) for consumer.batch_receive()
        negative_ack_redelivery_delay_ms: int = 1000,
    ) -> pulsar.Consumer:
        try:
            return self.client.subscribe(
                list(topics) if not isinstance(topics, str) else topics,
                subscription,
                consumer_type=_SUB_TYPES[sub_type],
                initial_position=pulsar.InitialPosition.Earliest if earliest else pulsar.InitialPosition.Latest,
                receiver_queue_size=receiver_queue_size,
                consumer_name=consumer_name,
                negative_ack_redelivery_delay_ms=negative_ack_redelivery_delay_ms,
                batch_receive_policy=(
                    pulsar.ConsumerBatchReceivePolicy(batch_receive[0], -1, batch_receive[1]) if batch_receive else None
                ),
            )
        except Exception as exc:
            raise BusError(f"cannot subscribe {subscription!r} to {topics}: {explain(self.settings, exc)}") from exc

    def flush(self) -> None:
        for p in list(self._producers.values()):
            try:
                p.flush()
            except Exception as exc:
                raise BusError(f"flush failed on {p.topic()}: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            for p in list(self._producers.values()):
                try:
                    p.close()
                except Exception as exc:
                    log.warning("producer close failed", topic=p.topic(), error=str(exc))
            self.client.close()


class _TopicStats:
    __slots__ = ("acked", "acked_events", "failed", "sampled_at", "sent", "sent_events")

    def __init__(self) -> None:
        self.sent = 0  # messages handed to the client
        self.sent_events = 0  # events in them (a QuoteBatch counts its ticks)
        self.acked = 0  # messages the broker acknowledged
        self.acked_events = 0
        self.failed = 0
        self.sampled_at = 0.0

    def settle(self, ok: bool, upto: int, upto_events: int) -> None:
        """Message ``upto`` has its answer; every earlier one had the same fate (no send timeout, in order)."""
        known = self.acked + self.failed
        if upto <= known:
            return
        # max(): answers may arrive from two threads (the client's callbacks and the publisher's settle timer)
        if ok:
            self.acked = max(self.acked, upto - self.failed)
            self.acked_events = max(self.acked_events, upto_events)
        else:
            self.failed = max(self.failed, upto - self.acked)


class PublishStats:
    """Per-topic counters. Acks are counted from sampled callbacks (see :class:`EventPublisher`) and become exact
    for everything sent once :meth:`EventPublisher.flush` returns."""

    def __init__(self) -> None:
        self.topics: dict[str, _TopicStats] = {}
        self.last_error: str = ""
        self.broker_disconnects = 0  # connection losses seen (BrokerWatch)
        self.unconfirmed_since = 0.0  # epoch s since which the broker confirmed nothing while messages wait (AckWatch)

    def of(self, topic_name: str) -> _TopicStats:
        st = self.topics.get(topic_name)
        if st is None:
            st = self.topics[topic_name] = _TopicStats()
        return st

    @property
    def sent(self) -> dict[str, int]:
        return {t: st.sent for t, st in self.topics.items()}

    @property
    def acked(self) -> dict[str, int]:
        return {t: st.acked for t, st in self.topics.items()}

    @property
    def failed(self) -> dict[str, int]:
        return {t: st.failed for t, st in self.topics.items() if st.failed}

    @property
    def total_acked(self) -> int:
        return sum(st.acked for st in self.topics.values())

    @property
    def events_acked(self) -> int:
        return sum(st.acked_events for st in self.topics.values())

    @property
    def total_failed(self) -> int:
        return sum(st.failed for st in self.topics.values())

    @property
    def pending(self) -> int:
        return sum(st.sent - st.acked - st.failed for st in self.topics.values())


#: ``on_ack(topic, ts_event, acked_ns)``: a sampled broker ack — the topic, the acknowledged (last) event's
#: ``ts_event`` and the wall-clock time of the ack, both in ns since the epoch.
AckHook = Callable[[str, int, int], None]


class PublisherBase:
    """What every publisher shares: topic naming in one namespace, the codec, message properties and counters.

    :class:`EventPublisher` sends through a Pulsar client in this process; :class:`pulse.publish_proc.
    OffloadedPublisher` hands encoded messages to a publisher process. Both count per topic in ``stats``.
    """

    def __init__(
        self, settings: Settings, namespace: str, *, producer_prefix: str, on_ack: AckHook | None = None
    ) -> None:
        self.settings = settings
        self.namespace = namespace
        self.tenant = settings.pulsar.tenant
        self.codec = Codec(settings.pulsar.codec)
        self.prefix = producer_prefix
        self._stats = PublishStats()
        self._topics: dict[tuple[str, str, str], str] = {}
        self._on_ack = on_ack
        self._props: dict[type, dict[str, str]] = {}  # per event type: its message properties

    @property
    def stats(self) -> PublishStats:
        return self._stats

    def topic_for(self, event: Event) -> str:
        key = (event.venue, event.symbol, _tag(event))
        t = self._topics.get(key)
        if t is None:
            t = topic(self.namespace, event.venue, event.symbol, CHANNEL_OF_EVENT[key[2]], self.tenant)
            self._topics[key] = t
        return t

    def publish(self, event: Event, topic_name: str | None = None, *, sequence_id: int | None = None) -> None:
        """Encode and send ``event`` asynchronously (key = its symbol, event time = its ``ts_event``);
        ``sequence_id``: the Pulsar sequence id to send it with (broker deduplication), else the client's own."""
        raise NotImplementedError

    def publish_raw(self, topic_name: str, payload: bytes, properties: dict[str, str], key: str | None = None) -> None:
        """Publish bytes as they are (dead letters keep the venue's raw payload)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Wait until the broker answered everything sent; then every count is exact."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release what the publisher owns."""
        self.flush()

    def properties_of(self, event: Event) -> dict[str, str]:
        """The message properties of ``event`` (one dict per event type, built once: do not modify it)."""
        props = self._props.get(type(event))
        if props is None:
            props = self._props[type(event)] = self.codec.properties(event)
        return props


def event_counts(event: Event) -> tuple[int, int]:
    """(events in the message, the last one's ``ts_event``): a QuoteBatch counts its ticks."""
    if type(event) is QuoteBatch:
        return len(event.ticks), (event.ticks[-1].ts_event if event.ticks else event.ts_event)
    return 1, event.ts_event


class EventPublisher(PublisherBase):
    """Publishes canonical events to their topic in one namespace, keyed by instrument, through ``bus``.

    A settle thread wakes every ``settle_interval_s``: a topic that went quiet with messages still unanswered
    (its last messages were not among the sampled callbacks) gets its producer flushed asynchronously, and the
    flush's answer settles them, so ``pending`` reaches 0 and ``acked`` equals ``sent`` shortly after the last
    publish without waiting for a later message. The same thread watches the producers' broker connection
    (:class:`BrokerWatch`: a log line and ``stats.broker_disconnects``) and its confirmations (:class:`AckWatch`:
    a log line when nothing is confirmed for 10 s while messages wait, and ``stats.unconfirmed_since``).
    """

    def __init__(
        self,
        bus: Bus,
        namespace: str,
        *,
        producer_prefix: str,
        on_ack: AckHook | None = None,
        ack_every: int = 64,
        owns_bus: bool = False,
        batching: bool = True,
    ) -> None:
        super().__init__(bus.settings, namespace, producer_prefix=producer_prefix, on_ack=on_ack)
        self.bus = bus
        self.batching = batching  # False: one publish request per message (explicit sequence ids, see publish)
        self.owns_bus = owns_bus  # close() closes the bus too
        self._native: dict[str, Any] = {}  # topic → the native producer (see send_encoded)
        self.ack_every = ack_every
        self.ack_interval_s = 0.1
        self.settle_interval_s = 0.2
        self._handed: dict[str, tuple[int, int]] = {}  # topic → (sent, sent_events) once in the client's hands
        self._seen: dict[str, tuple[int, int]] = {}  # … as the previous settle tick saw it
        self._flushing: set[str] = set()
        stats = self._stats
        self.watch = BrokerWatch(producer_prefix, bus.url, on_lost=lambda: setattr(
            stats, "broker_disconnects", stats.broker_disconnects + 1))  # fmt: skip
        self.acks = AckWatch(producer_prefix, bus.url, on_change=lambda since: setattr(
            stats, "unconfirmed_since", since))  # fmt: skip
        # Held around every call into a native producer (send, flush, is_connected). Without it the settle thread
        # and the sending thread deadlocked (tests/faults/test_disk_full.py, gdb): a send holds the producer's
        # mutex and waits for the GIL to copy its Python callback, while flush_async, called with the GIL held,
        # waits for that mutex. Waiting on this lock releases the GIL; the settle thread never waits long for it.
        self._native_lock = threading.Lock()
        self._stop = threading.Event()
        self._settler = threading.Thread(target=self._settle_loop, name=f"{producer_prefix}-settle", daemon=True)
        self._settler.start()

    def publish(self, event: Event, topic_name: str | None = None, *, sequence_id: int | None = None) -> None:
        """Encode and send ``event`` asynchronously (key = its symbol, event time = its ``ts_event``).

        ``sequence_id``: send with this Pulsar sequence id instead of the client's counter. With deduplication on
        the namespace, the broker keeps the highest sequence id it persisted per producer name and drops any
        message at or below it, so a producer that re-sends the same events under the same name and ids after a
        crash adds nothing to the topic. Ids must increase per producer name; the producer name is stable
        (``<producer_prefix>.<topic>``)."""
        n, last_ts = event_counts(event)
        payload = self.codec.encode(event)
        self.send_encoded(topic_name or self.topic_for(event), payload, self.properties_of(event), event.symbol,
                          event.ts_event, n, last_ts, sequence_id)  # fmt: skip

    def send_encoded(
        self,
        t: str,
        payload: bytes,
        props: dict[str, str],
        key: str,
        ts_event: int,
        n: int,
        last_ts: int,
        sequence_id: int | None = None,
    ) -> None:
        """Send an encoded event: ``n`` events in it (a QuoteBatch counts its ticks), ``last_ts`` the last one's
        ``ts_event`` (handed to ``on_ack``).

        The message is built with the client's native ``MessageBuilder`` (one chained call) and handed to the
        native producer, exactly as ``pulsar.Producer.send_async`` does minus its per-call argument type checks
        and schema indirection (payloads are bytes already): ~1.3x the wrapper's rate in the raw publish loop.
        """
        native = self._native.get(t)
        if native is None:
            producer = self.bus.producer(t, name=f"{self.prefix}.{t.rsplit('/', 1)[-1]}", batching=self.batching)
            native = self._native[t] = producer._producer  # pulsar-client 3.x: the native producer it wraps
        mb = _MessageBuilder().content(payload).properties(props).partition_key(key)
        if ts_event > 0:
            mb.event_timestamp(ts_event // 1_000_000)
        if sequence_id is not None:
            mb.sequence_id(sequence_id)
        callback = self._callback(t, n, last_ts)
        with self._native_lock:
            native.send_async(mb.build(), callback)
        st = self._stats.topics[t]
        self._handed[t] = (st.sent, st.sent_events)

    def publish_raw(self, topic_name: str, payload: bytes, properties: dict[str, str], key: str | None = None) -> None:
        """Publish bytes as they are (dead letters keep the venue's raw payload)."""
        producer = self.bus.producer(topic_name, name=f"{self.prefix}.{topic_name.rsplit('/', 1)[-1]}")
        callback = self._callback(topic_name, 1, 0)
        with self._native_lock:
            producer.send_async(payload, callback, properties=properties, partition_key=key)
        st = self._stats.topics[topic_name]
        self._handed[topic_name] = (st.sent, st.sent_events)

    def _callback(self, t: str, n: int, ts_event: int) -> Callable[[pulsar.Result, object], None] | None:
        """Count the message; return an ack callback for one message in ``ack_every`` (and at least every
        ``ack_interval_s`` per topic), else None.

        A Python callback per message costs a GIL hand-off from the client's I/O thread for every ack; sampling
        keeps the live counters within ~64 messages (or 0.1 s) while the client runs free. Counts stay exact:
        with no send timeout a message cannot fail while a later one succeeds, so one answer settles every
        earlier message of the topic, and :meth:`flush` settles the rest.
        """
        st = self._stats.of(t)
        st.sent += 1
        st.sent_events += n
        now = time.monotonic()
        if st.sent % self.ack_every and now - st.sampled_at < self.ack_interval_s:
            return None
        st.sampled_at = now
        upto, upto_events = st.sent, st.sent_events
        stats, on_ack = self._stats, self._on_ack

        def done(res: pulsar.Result, _msg_id: object) -> None:
            ok = res == pulsar.Result.Ok
            st.settle(ok, upto, upto_events)
            if not ok:
                stats.last_error = str(res)
            elif on_ack is not None:
                on_ack(t, ts_event, time.time_ns())

        return done

    def flush(self) -> None:
        """Wait until the broker answered everything sent; then every count is exact."""
        self.bus.flush()  # raises BusError if the client failed
        for st in self._stats.topics.values():
            st.settle(True, st.sent, st.sent_events)

    def _settle_loop(self) -> None:
        while not self._stop.wait(self.settle_interval_s):
            if self.bus._closed:  # closed under us by its owner
                return
            try:
                connected = self.watch.down_since is None
                # a send blocked on a full queue holds the lock: skip the native calls this tick, not the watch
                if self._native_lock.acquire(timeout=self.settle_interval_s):
                    try:
                        self._settle_quiet()
                        connected = self.watch.check(list(self.bus._producers.values()))
                    finally:
                        self._native_lock.release()
                st = self._stats
                self.acks.check(st.total_acked + st.total_failed, st.pending, connected=connected)
            except Exception as exc:  # never let the timer die: the counters would go stale again
                log.warning("publish settle failed", error=f"{type(exc).__name__}: {exc}")

    def _settle_quiet(self) -> None:
        """Flush (asynchronously) each producer whose topic sent nothing since the last tick and still has
        unanswered messages; the flush's answer covers everything handed to the client before it."""
        topics = self._stats.topics
        for t, handed in list(self._handed.items()):
            seen, self._seen[t] = self._seen.get(t), handed
            st = topics[t]
            if handed != seen or handed[0] <= st.acked + st.failed or t in self._flushing:
                continue
            producer = self.bus._producers.get(t)
            if producer is None:
                continue
            self._flushing.add(t)
            upto, upto_events = handed

            def done(res: pulsar.Result, t: str = t, st: _TopicStats = st, upto: int = upto,
                     upto_events: int = upto_events) -> None:  # fmt: skip
                self._flushing.discard(t)
                if res == pulsar.Result.Ok:
                    st.settle(True, upto, upto_events)

            producer._producer.flush_async(done)

    def close(self) -> None:
        """Flush; close the bus if this publisher owns it."""
        self._stop.set()
        try:
            self.flush()
        finally:
            self._settler.join(timeout=2)
            if self.owns_bus:
                self.bus.close()


def _tag(event: Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[attr-defined]
