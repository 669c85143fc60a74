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

from pulse.log import get_logger
from pulse.runtime.procs import pid_alive

log = get_logger(__name__)

#: fields added to every status file this process writes (one process is one service): e.g. the URL of its
#: metrics server, which a local ``pulse status`` reads /readyz from (set by :mod:`pulse.supervise`)
PROCESS_META: dict[str, Any] = {}


class StatusFile:
    """``<home>/run/<name>.json`` of one service. Services write it periodically: ``due()`` says when (every
    ``every_s``), ``write_or_log`` writes without ever raising into the service's loop."""

    def __init__(self, home: Path, name: str, every_s: float = 0.5) -> None:
        self.dir = home / "run"
        self.path = self.dir / f"{name}.json"
        self.name = name
        self.started = time.time()
        self.every_s = every_s
        self._written_at = float("-inf")  # time.monotonic() of the last periodic write
        #: time.monotonic() of the service loop's latest visit (a due() check or a write): the loop's heartbeat,
        #: which /healthz and the systemd watchdog read (pulse.supervise)
        self.beat = time.monotonic()

    @property
    def next_due(self) -> float:
        """The ``time.monotonic()`` at which the next periodic write is due."""
        return self._written_at + self.every_s

    def due(self, *, force: bool = False) -> bool:
        """Whether a periodic write is due now (or ``force``); if so, the write is counted as done now."""
        now = self.beat = time.monotonic()
        if not force and now < self._written_at + self.every_s:
            return False
        self._written_at = now
        return True

    def write_or_log(self, counters: dict[str, Any], **extra: Any) -> None:
        """:meth:`write`, logging a failure instead of raising: a full disk must not stop a service."""
        try:
            self.write(counters, **extra)
        except OSError as exc:
            log.warning("status file write failed", path=str(self.path), error=str(exc))

    def write(self, counters: dict[str, Any], **extra: Any) -> None:
        self.beat = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "name": self.name,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "counters": counters,
            **PROCESS_META,
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
