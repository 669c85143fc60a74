"""Follow the control topic: a private subscription per running service, starting at the latest command.

Each process gets its own subscription (``<service>.<random>``) so every process sees every command (a shared
subscription would hand each command to one of them). It starts at the latest message because a service reads
the registry right after subscribing; :meth:`close` unsubscribes so no backlog piles up for a dead process.
"""

from __future__ import annotations

import uuid

import pulsar

from control_plane.commands import InstrumentCommand, decode
from pulse.bus import Bus
from pulse.errors import CodecError
from pulse.log import get_logger
from pulse.topics import control_topic

log = get_logger(__name__)


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
