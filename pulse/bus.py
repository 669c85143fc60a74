"""The Pulsar client wrapper: one client per process, producer and consumer factories with Pulse's defaults.

Producers: LZ4 (configurable), batching on, ``block_if_queue_full`` (a full queue blocks the caller: that is
the backpressure path, nothing is dropped), a stable producer name, the instrument as partition/ordering key.
Consumers: Shared or Key_Shared by default — pulsar-lite can redeliver unbatched sends many times to
Exclusive/Failover subscriptions, and every Pulse consumer is idempotent anyway.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import pulsar

from pulse.codec import Codec
from pulse.errors import BusError
from pulse.log import get_logger
from pulse.models import Event, QuoteBatch
from pulse.settings import Settings
from pulse.topics import CHANNEL_OF_EVENT, topic

log = get_logger(__name__)

_COMPRESSION = {
    "lz4": pulsar.CompressionType.LZ4,
    "zstd": pulsar.CompressionType.ZSTD,
    "none": pulsar.CompressionType.NONE,
}
_SUB_TYPES = {
    "shared": pulsar.ConsumerType.Shared,
    "key_shared": pulsar.ConsumerType.KeyShared,
    "failover": pulsar.ConsumerType.Failover,
    "exclusive": pulsar.ConsumerType.Exclusive,
}
SubscriptionType = Literal["shared", "key_shared", "failover", "exclusive"]


def _pulsar_logger() -> logging.Logger:
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
        "logger": _pulsar_logger(),
        "io_threads": 1,
    }
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

    def producer(self, topic_name: str, *, name: str | None = None) -> pulsar.Producer:
        """The cached producer for ``topic_name`` (created on first use, which also creates the topic)."""
        p = self._producers.get(topic_name)
        if p is not None:
            return p
        with self._lock:
            p = self._producers.get(topic_name)
            if p is None:
                ps = self.settings.pulsar
                try:
                    p = self.client.create_producer(
                        topic_name,
                        producer_name=name,
                        compression_type=_COMPRESSION[ps.compression],
                        batching_enabled=True,
                        batching_max_messages=ps.batching_max_messages,
                        batching_max_publish_delay_ms=ps.batching_max_publish_delay_ms,
                        batching_max_allowed_size_in_bytes=512 * 1024,
                        max_pending_messages=ps.max_pending_messages,
                        block_if_queue_full=True,
                        send_timeout_millis=ps.operation_timeout_s * 1000,
                    )
                except Exception as exc:
                    raise BusError(f"cannot create producer on {topic_name}: {exc}") from exc
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
            raise BusError(f"cannot subscribe {subscription!r} to {topics}: {exc}") from exc

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


class PublishStats:
    """Counters updated from the client's callback thread (one writer per counter, so plain ints suffice)."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = defaultdict(int)
        self.acked: dict[str, int] = defaultdict(int)
        self.failed: dict[str, int] = defaultdict(int)
        self.events_acked: int = 0  # events in acknowledged messages (a QuoteBatch counts its ticks)
        self.last_error: str = ""

    @property
    def total_acked(self) -> int:
        return sum(self.acked.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())

    @property
    def pending(self) -> int:
        return sum(self.sent.values()) - self.total_acked - self.total_failed


class EventPublisher:
    """Publishes canonical events to their topic in one namespace, keyed by instrument."""

    def __init__(
        self,
        bus: Bus,
        namespace: str,
        *,
        producer_prefix: str,
        on_ack: Callable[[str, int], None] | None = None,  # (topic, event's ts_event ns) after the broker acks
    ) -> None:
        self.bus = bus
        self.namespace = namespace
        self.tenant = bus.settings.pulsar.tenant
        self.codec = Codec(bus.settings.pulsar.codec)
        self.prefix = producer_prefix
        self.stats = PublishStats()
        self._topics: dict[tuple[str, str, str], str] = {}
        self._on_ack = on_ack

    def topic_for(self, event: Event) -> str:
        key = (event.venue, event.symbol, _tag(event))
        t = self._topics.get(key)
        if t is None:
            t = topic(self.namespace, event.venue, event.symbol, CHANNEL_OF_EVENT[key[2]], self.tenant)
            self._topics[key] = t
        return t

    def publish(self, event: Event, topic_name: str | None = None) -> None:
        t = topic_name or self.topic_for(event)
        producer = self.bus.producer(t, name=f"{self.prefix}.{t.rsplit('/', 1)[-1]}")
        stats = self.stats
        stats.sent[t] += 1
        on_ack = self._on_ack
        if isinstance(event, QuoteBatch):
            n, ts_event = len(event.ticks), (event.ticks[-1].ts_event if event.ticks else event.ts_event)
        else:
            n, ts_event = 1, event.ts_event

        def done(res: pulsar.Result, _msg_id: object) -> None:
            if res == pulsar.Result.Ok:
                stats.acked[t] += 1
                stats.events_acked += n
                if on_ack:
                    on_ack(t, ts_event)
            else:
                stats.failed[t] += 1
                stats.last_error = str(res)

        producer.send_async(
            self.codec.encode(event),
            done,
            properties=self.codec.properties(event),
            partition_key=event.symbol,
            event_timestamp=event.ts_event // 1_000_000,
        )

    def publish_raw(self, topic_name: str, payload: bytes, properties: dict[str, str], key: str | None = None) -> None:
        """Publish bytes as they are (dead letters keep the venue's raw payload)."""
        producer = self.bus.producer(topic_name, name=f"{self.prefix}.{topic_name.rsplit('/', 1)[-1]}")
        stats = self.stats
        stats.sent[topic_name] += 1

        def done(res: pulsar.Result, _msg_id: object) -> None:
            if res == pulsar.Result.Ok:
                stats.acked[topic_name] += 1
            else:
                stats.failed[topic_name] += 1
                stats.last_error = str(res)

        producer.send_async(payload, done, properties=properties, partition_key=key)

    def flush(self) -> None:
        self.bus.flush()


def _tag(event: Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[attr-defined]
