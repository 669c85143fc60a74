"""Settings as TOML text: what ``pulse config show`` prints (each non-default value commented with its source) and
``pulse config example`` writes (every key at its default, each section introduced by its docstring)."""

from __future__ import annotations

import inspect
import json
import math
import re
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["example_toml", "field_comments", "settings_toml", "toml_value"]


def toml_value(value: Any) -> str:
    """One TOML value: strings in basic (JSON-compatible) quoting, lists as arrays, dicts as inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


_FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*)\s*:[^#]*?(?:#\s*(.*))?$")


def field_comments(model: type) -> dict[str, str]:
    """A settings section's field comments, read from its source: the ``#`` lines just above a field and the
    comment at the end of its line (the documentation ``pulse config example`` writes beside each key)."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = _FIELD.match(line)
        if m:
            text = " ".join([*above, m[2] or ""]).strip()
            if text:
                out[m[1]] = text
        above = []
    return out


def example_toml(sections: Mapping[str, tuple[type, Mapping[str, Any]]]) -> str:
    """A commented settings file: each section (name → (model, default values)) with its docstring, each key at
    its default with its comment."""
    out = [
        "# Pulse settings (pulse.toml). Every key is shown at its default; delete what you do not change.",
        "# Precedence: command-line options > PULSE_<SECTION>__<KEY> environment variables > this file > defaults.",
        "# Secrets can be given as <key>_file (a path whose content is the secret); they are never logged.",
    ]
    for section, (model, values) in sections.items():
        out.append("")
        for line in inspect.cleandoc(model.__doc__ or "").replace("``", "`").splitlines():
            out.append(f"# {line}".rstrip())
        out.append(f"[{section}]")
        comments = field_comments(model)
        for k, v in values.items():
            if k in comments:
                out += textwrap.wrap(comments[k].replace("``", "`"), 116, initial_indent="# ", subsequent_indent="# ")
            out.append(f"{_key(k)} = {toml_value(v)}")
    return "\n".join(out) + "\n"


def settings_toml(
    data: Mapping[str, Mapping[str, Any]],
    source_of: Callable[[str], str] | None = None,
    docs: Mapping[str, str] | None = None,
) -> str:
    """``data`` (section → key → value) as TOML. ``source_of("section.key")`` adds ``# <source>`` to each value
    that is not a default; ``docs`` puts a section's description above it as comments."""
    out: list[str] = []
    for section, values in data.items():
        if out:
            out.append("")
        for line in (docs or {}).get(section, "").strip().splitlines():
            out.append(f"# {line.strip()}".rstrip())
        out.append(f"[{section}]")
        for k, v in values.items():
            line = f"{_key(k)} = {toml_value(v)}"
            src = source_of(f"{section}.{k}") if source_of else "default"
            out.append(line if src == "default" else f"{line}  # {src}")
    return "\n".join(out) + "\n"
