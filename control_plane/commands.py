"""Instrument commands on the control topic: how running services learn about registry changes.

``pulse symbols add|remove|enable|disable`` commits the change to the registry first, then publishes one
:class:`InstrumentCommand` on ``persistent://{tenant}/control/instruments``, keyed by ``venue:symbol``.
Every running ingester (and the sink) reads that topic through its own subscription starting at the latest
message, and applies commands of its venue; a service that starts later reads the registry instead, so no
change is missed: services subscribe to the control topic *before* they read the registry, and applying a
command twice is harmless (subscribing to a subscribed symbol is a no-op).
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

import msgspec

from pulse.errors import CodecError

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
