"""The embedded broker's storage as the broker process sees it: free space, and what its log says about a full disk.

The data directory is read through ``/proc/<pid>/root``: for a broker in a mount namespace of its own (its data on
a volume mounted only there) that is the broker's view; otherwise it is the same directory. pulsar-lite keeps its
RocksDB and entry log in ``<db_path>.rocksdb`` (beside ``db_path``, not inside it).

What pulsar-lite 0.2.0 does when that disk fills (tests/faults/test_disk_full.py): a write to its entry log
fails with "No space left on device", the broker logs it and drops the producer's connection, the client
reconnects and resends for ever. Nothing in the client or its metrics names the disk, hence these checks.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: the line pulsar-lite logs when a write fails for lack of space (the OS's text for ENOSPC)
ENOSPC_TEXT = "No space left on device"
_STAMP = re.compile(r"^\[(\S+)")


@dataclass(frozen=True)
class Storage:
    """Free space of the filesystem holding ``path`` (as the broker sees it)."""

    path: str
    free_bytes: int
    size_bytes: int

    @property
    def free_mb(self) -> float:
        return self.free_bytes / 2**20

    def describe(self) -> str:
        return f"{self.path} {_size(self.free_bytes)} free of {_size(self.size_bytes)}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "free_mb": round(self.free_mb, 1)}


def _size(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def lite_data_dir(db_path: str | Path) -> Path:
    """Where pulsar-lite really writes for ``db_path``: ``<db_path>.rocksdb``."""
    return Path(f"{db_path}.rocksdb")


def seen_by(pid: int | None, path: str | Path) -> Path:
    """``path`` as process ``pid`` sees it (through its root, across mount namespaces); ``path`` if it cannot be."""
    if pid:
        inside = Path(f"/proc/{pid}/root") / str(path).lstrip("/")
        try:
            inside.stat()
            return inside
        except OSError:  # gone, or not ours to look into
            pass
    return Path(path)


def broker_storage(path: str | Path, pid: int | None = None) -> Storage:
    """Free space where the broker writes ``path`` (its nearest existing parent before it first wrote)."""
    p = Path(path)
    while not seen_by(pid, p).exists() and p.parent != p:
        p = p.parent
    st = os.statvfs(seen_by(pid, p))
    return Storage(str(path), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def storage_problem(storage: Storage, min_free_mb: float) -> str:
    """The complaint when free space is under ``min_free_mb`` MB, else ''."""
    if storage.free_mb >= min_free_mb:
        return ""
    return f"broker storage full: {storage.describe()} (runtime.broker_min_free_mb = {min_free_mb:g})"


def enospc_in_log(log_path: str | Path, offset: int = 0, tail_bytes: int = 1 << 20) -> dict[str, Any] | None:
    """The first and latest "No space left on device" lines the broker's log has past ``offset`` (its size when this
    broker started: ``runtime.json``'s ``log_offset``), read from at most its last ``tail_bytes``, with their
    count; None when there is none (or no log)."""
    try:
        with open(log_path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(offset, end - tail_bytes, 0))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    hits = [line for line in text.splitlines() if ENOSPC_TEXT in line]
    if not hits:
        return None

    def when(line: str) -> str:
        m = _STAMP.match(line)
        return m.group(1) if m else ""

    return {"count": len(hits), "first": when(hits[0]), "last": when(hits[-1]), "line": hits[-1][-300:]}
