"""Service status files: each running service writes ``<home>/run/<name>.json`` about twice a second.

They carry the pid, start time, counters and per-instrument last-tick times, so ``pulse status`` and
``pulse demo`` can report liveness and rates of services in other processes without a metrics stack.
Writes are atomic (write + rename); a file whose pid is dead or whose ``updated`` is old means a dead service.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pulse.runtime.procs import pid_alive


class StatusFile:
    def __init__(self, home: Path, name: str) -> None:
        self.dir = home / "run"
        self.path = self.dir / f"{name}.json"
        self.name = name
        self.started = time.time()

    def write(self, counters: dict[str, Any], **extra: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "name": self.name,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "counters": counters,
            **extra,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, default=str))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_status(home: Path, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads((home / "run" / f"{name}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    doc["alive"] = pid_alive(int(doc.get("pid", 0))) and (time.time() - doc.get("updated", 0)) < 10
    return doc


def list_status(home: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted((home / "run").glob("*.json")):
        doc = read_status(home, p.stem)
        if doc is not None:
            out.append(doc)
    return out
