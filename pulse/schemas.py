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


def main() -> int:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (SCHEMA_DIR / name).write_text(text)
    print(f"wrote {len(EVENT_TYPES)} schemas to {SCHEMA_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
