"""Schema documents for the event model, so non-Python consumers (Java, Flink, Pulsar IO) can read topics.

``python -m pulse.schemas`` rewrites ``pulsar/schemas/<type>.schema.json`` (JSON Schema, draft 2020-12) from
the msgspec model; a test fails when the committed files drift from the model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from pulse.errors import ConfigError
from pulse.models import EVENT_TYPES, SCHEMA_VERSION

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "pulsar" / "schemas"


def json_schema(tag: str) -> dict[str, Any]:
    (schema,), components = msgspec.json.schema_components([EVENT_TYPES[tag]], ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": tag,
        "x-pulse-schema-version": SCHEMA_VERSION,
        **schema,
        "$defs": components,
    }


def render_all() -> dict[str, str]:
    return {f"{tag}.schema.json": json.dumps(json_schema(tag), indent=2, sort_keys=True) + "\n" for tag in EVENT_TYPES}


# -- JSON Schema (pulsar/schemas) → Avro record, the definition Pulsar's JSON schema type stores -------------
#: The schema registered on each channel's topic: a Pulsar topic has one schema, so a channel carrying several
#: event types (book: snapshots and deltas; quote: quotes and backfill batches; status markers everywhere)
#: registers its main type and lists all of them in the schema property ``pulse.event_types``.
SCHEMA_OF_CHANNEL = {
    "trade": "trade",
    "quote": "quote",
    "ticker": "ticker",
    "book": "book_delta",
    "candle": "candle",
    "status": "status",
    "quote_batch": "quote_batch",
}


def registered_schema(channel: str) -> str:
    """The schema definition (an Avro record, as text) registered on a ``channel`` topic: the exact bytes
    provisioning uploads and producers declare, so the broker sees one schema, not two versions of it."""
    return json.dumps(avro_schema(SCHEMA_OF_CHANNEL[channel]), sort_keys=True)


def avro_schema(tag: str, schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The Avro record for event type ``tag``, translated from ``pulsar/schemas/<tag>.schema.json``."""
    path = schema_dir / f"{tag}.schema.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read schema {path}: {exc}") from exc
    defs = doc.get("$defs", {})
    root = _ref_name(doc["$ref"])
    defined: set[str] = set()
    return _avro_record(root, defs, defined)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _avro_record(name: str, defs: dict[str, Any], defined: set[str]) -> dict[str, Any]:
    spec = defs[name]
    defined.add(name)
    required = set(spec.get("required", []))
    fields = []
    for fname, fspec in spec.get("properties", {}).items():
        avro_t, nullable = _avro_type(fspec, defs, defined)
        field: dict[str, Any] = {"name": fname}
        if nullable:
            field["type"] = ["null", avro_t]
            if fname not in required or fspec.get("default", 0) is None:
                field["default"] = None
        else:
            field["type"] = avro_t
            if "default" in fspec and fspec["default"] is not None:
                field["default"] = fspec["default"]
        fields.append(field)
    rec: dict[str, Any] = {"type": "record", "name": name, "namespace": "pulse.events", "fields": fields}
    if spec.get("description"):
        rec["doc"] = " ".join(str(spec["description"]).split())
    return rec


def _avro_type(spec: dict[str, Any], defs: dict[str, Any], defined: set[str]) -> tuple[Any, bool]:
    """(avro type, nullable) for one JSON Schema node."""
    if "anyOf" in spec:
        branches = [b for b in spec["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) != len(spec["anyOf"])
        types = []
        for b in branches:
            t, n = _avro_type(b, defs, defined)
            nullable = nullable or n
            if t not in types:
                types.append(t)
        return (types[0] if len(types) == 1 else types), nullable
    if "$ref" in spec:
        name = _ref_name(spec["$ref"])
        target = defs[name]
        if target.get("type") == "object":
            return (f"pulse.events.{name}" if name in defined else _avro_record(name, defs, defined)), False
        return _avro_type(target, defs, defined)
    if "enum" in spec:
        return "string", False
    t = spec.get("type")
    if t == "string":
        return "string", False
    if t == "integer":
        return "long", False
    if t == "number":
        return "double", False
    if t == "boolean":
        return "boolean", False
    if t == "array":
        if "prefixItems" in spec:  # a fixed-shape tuple on the wire: an array of the union of its item types
            items: list[Any] = []
            nullable = False
            for it in spec["prefixItems"]:
                at, n = _avro_type(it, defs, defined)
                nullable = nullable or n
                if at not in items:
                    items.append(at)
            item_t: Any = items[0] if len(items) == 1 else items
            if nullable:
                item_t = ["null", *(item_t if isinstance(item_t, list) else [item_t])]
            return {"type": "array", "items": item_t}, False
        at, n = _avro_type(spec.get("items", {"type": "string"}), defs, defined)
        return {"type": "array", "items": ["null", at] if n else at}, False
    if t == "object":
        return {"type": "map", "values": "string"}, False
    return "string", False


def main() -> int:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (SCHEMA_DIR / name).write_text(text)
    print(f"wrote {len(EVENT_TYPES)} schemas to {SCHEMA_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
