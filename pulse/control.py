"""Instrument commands on the control topic: how running services learn about registry changes.

``pulse symbols add|remove|enable|disable`` commits the change to the registry first, then publishes one
:class:`InstrumentCommand` on ``persistent://{tenant}/control/instruments``, keyed by ``venue:symbol``.
Every running ingester (and the sink) reads that topic through its own subscription starting at the latest
message, and applies commands of its venue; a service that starts later reads the registry instead, so no
change is missed: services subscribe to the control topic *before* they read the registry, and applying a
command twice is harmless (subscribing to a subscribed symbol is a no-op).

:class:`ControlListener` follows the topic: a private subscription per running service, starting at the latest
command. Each process gets its own subscription (``<service>.<random>``) so every process sees every command (a
shared subscription would hand each command to one of them). It starts at the latest message because a service
reads the registry right after subscribing; :meth:`ControlListener.close` unsubscribes so no backlog piles up for
a dead process.

This is a core contract: ``pulse symbols`` (control_plane) publishes these messages; ingesters and the sink
follow them, importing only this module.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

import msgspec
import pulsar

from pulse.bus import Bus
from pulse.errors import CodecError
from pulse.log import get_logger
from pulse.topics import control_topic

log = get_logger(__name__)

Op = Literal["add", "remove", "enable", "disable"]


class InstrumentCommand(msgspec.Struct, frozen=True, kw_only=True):
    op: Op
    venue: str
    symbol: str
    venue_symbol: str
    namespace: str
    channels: tuple[str, ...] = ()
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)
    ts: int = msgspec.field(default_factory=time.time_ns)

    @property
    def subscribes(self) -> bool:
        """True when the command means "stream this instrument" (add/enable), False for remove/disable."""
        return self.op in ("add", "enable")

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(InstrumentCommand)


def encode(cmd: InstrumentCommand) -> bytes:
    return _enc.encode(cmd)


def decode(data: bytes) -> InstrumentCommand:
    try:
        return _dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"bad control command: {exc}") from exc


class ControlListener:
    def __init__(self, bus: Bus, service: str) -> None:
        self.topic = control_topic("instruments", bus.settings.pulsar.tenant)
        self.subscription = f"{service}.{uuid.uuid4().hex[:8]}"
        self.consumer = bus.subscribe(
            self.topic, self.subscription, sub_type="shared", earliest=False, receiver_queue_size=100
        )
        self.bad = 0

    def receive(self, timeout_ms: int = 500) -> InstrumentCommand | None:
        """The next command, or None after ``timeout_ms``. Malformed commands are logged, counted, skipped."""
        try:
            msg = self.consumer.receive(timeout_millis=timeout_ms)
        except pulsar.Timeout:
            return None
        self.consumer.acknowledge(msg)
        try:
            return decode(msg.data())
        except CodecError as exc:
            self.bad += 1
            log.warning(
                "ignoring malformed control command", error=str(exc), raw=msg.data()[:200].decode("utf-8", "replace")
            )
            return None

    def close(self) -> None:
        try:
            self.consumer.unsubscribe()
        except Exception:  # the broker may be gone; the subscription then expires with it
            try:
                self.consumer.close()
            except Exception as exc:
                log.debug("control consumer close failed", error=str(exc))
