"""Encode and decode events for the wire.

JSON (msgspec) is the default: Java/Flink consumers and Pulsar IO's JDBC sink read it with the JSON schemas
in ``pulsar/schemas/``, and decimals travel as exact strings. MessagePack is available for internal topics
where nobody but Python reads (``bench/`` measures both). Encoders and decoders are built once.

Each message also carries the properties ``type`` (event tag) and ``schema_version``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from pulse.errors import CodecError
from pulse.models import SCHEMA_VERSION, Event

Format = Literal["json", "msgpack"]

_json_enc = msgspec.json.Encoder(decimal_format="string")
_json_dec = msgspec.json.Decoder(Event)
_mp_enc = msgspec.msgpack.Encoder(decimal_format="string")
_mp_dec = msgspec.msgpack.Decoder(Event)

SCHEMA_VERSION_PROP = "schema_version"
TYPE_PROP = "type"
FORMAT_PROP = "format"


class Codec:
    """Encode/decode events in one format; ``properties`` returns the Pulsar message properties."""

    __slots__ = ("_dec", "_enc", "format")

    def __init__(self, fmt: Format = "json") -> None:
        if fmt == "json":
            self._enc, self._dec = _json_enc, _json_dec
        elif fmt == "msgpack":
            self._enc, self._dec = _mp_enc, _mp_dec
        else:
            raise CodecError(f"unknown codec format {fmt!r}: expected 'json' or 'msgpack'")
        self.format: Format = fmt

    def encode(self, event: Event) -> bytes:
        return self._enc.encode(event)

    def decode(self, data: bytes) -> Event:
        try:
            return self._dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CodecError(f"cannot decode {self.format} event: {exc}") from exc

    def properties(self, event: Event) -> dict[str, str]:
        return {
            TYPE_PROP: type(event).__struct_config__.tag,  # type: ignore[attr-defined]
            SCHEMA_VERSION_PROP: str(SCHEMA_VERSION),
            FORMAT_PROP: self.format,
        }


def decode_any(data: bytes, properties: dict[str, str] | None = None) -> Event:
    """Decode a message whatever its format (taken from the ``format`` property, JSON by default)."""
    fmt = (properties or {}).get(FORMAT_PROP, "json")
    if fmt not in ("json", "msgpack"):
        raise CodecError(f"unknown format property {fmt!r}")
    return Codec(fmt).decode(data)  # type: ignore[arg-type]
