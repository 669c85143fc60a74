"""Durable state of the matching service: a snapshot plus a write-ahead journal of the inputs since it.

Layout under the state directory::

    snapshot.bin      msgpack {gen, engine (MatchingEngine.snapshot bytes), hwm, out_seq, published}
    journal-<gen>.log length-prefixed msgpack records appended after that snapshot

Records: ``["in", topic, key, position, payload]`` (an input, written *before* it is processed, so every
execution ever published can be reproduced) and ``["pub", n]`` (outputs 1..n are acknowledged by the broker).

Why a journal and not only snapshots: the service reads several topics (orders and market data) and the broker
does not remember how their messages interleaved. Replaying redelivered messages in a different interleaving
could produce executions that differ from ones already published. The journal keeps the exact processing order,
so recovery (snapshot + journal replay) rebuilds exactly the state the killed process had and regenerates the
same executions with the same ids. Inputs are acknowledged to the broker only once the journal holding them is
fsync'd (or a snapshot covering them is durable), so an input is either in the journal or will be redelivered;
a redelivered input already in the journal is recognised by its position (see :class:`Position`) and skipped.

A checkpoint writes the snapshot (temp file, fsync, rename, fsync of the directory), then starts journal
``gen + 1`` and deletes the old one; a crash in between leaves a snapshot whose journal does not exist yet
(empty) and a stale journal that the next start deletes.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

_enc = msgspec.msgpack.Encoder()
_LEN = struct.Struct(">I")

#: A message's place in its topic: (partition, ledger, entry, batch index). Totally ordered within one topic.
Position = tuple[int, int, int, int]


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = self.dir / "snapshot.bin"
        self.gen = 0
        self._fd: int | None = None
        self.written = 0  # bytes in the current journal

    # -- start ---------------------------------------------------------------------------------------
    def load(self) -> tuple[dict[str, Any] | None, list[list[Any]]]:
        """The last snapshot (or None) and the journal records after it; opens that journal for appending."""
        snap: dict[str, Any] | None = None
        if self.snapshot_path.exists():
            snap = msgspec.msgpack.decode(self.snapshot_path.read_bytes())
            self.gen = int(snap["gen"])
        for stale in self.dir.glob("journal-*.log"):
            if stale.name != self._journal_name(self.gen):
                stale.unlink()
        path = self.dir / self._journal_name(self.gen)
        read = list(self._read(path)) if path.exists() else []
        records = [r for r, _end in read]
        valid = read[-1][1] if read else 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, valid)  # drop a torn last record
        os.lseek(self._fd, valid, os.SEEK_SET)
        self.written = valid
        return snap, records

    @staticmethod
    def _journal_name(gen: int) -> str:
        return f"journal-{gen}.log"

    @staticmethod
    def _read(path: Path) -> Iterator[tuple[list[Any], int]]:
        data = path.read_bytes()
        i = 0
        while i + _LEN.size <= len(data):
            (n,) = _LEN.unpack_from(data, i)
            if i + _LEN.size + n > len(data):
                return  # torn write at the end (the process died mid-record)
            try:
                rec = msgspec.msgpack.decode(data[i + _LEN.size : i + _LEN.size + n])
            except msgspec.DecodeError:
                return
            i += _LEN.size + n
            yield rec, i

    # -- running -------------------------------------------------------------------------------------
    def append(self, record: list[Any]) -> int:
        """Append one record (to the page cache: survives the process being killed); returns the journal size."""
        body = _enc.encode(record)
        assert self._fd is not None
        os.write(self._fd, _LEN.pack(len(body)) + body)
        self.written += _LEN.size + len(body)
        return self.written

    def sync(self) -> tuple[int, int]:
        """fsync the journal; returns (generation, bytes now durable)."""
        gen, n, fd = self.gen, self.written, self._fd
        if fd is not None:
            os.fsync(fd)
        return gen, n

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Durably write a snapshot covering everything journalled so far, then start an empty journal."""
        new_gen = self.gen + 1
        tmp = self.snapshot_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_enc.encode({**state, "gen": new_gen}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.snapshot_path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        old = self.dir / self._journal_name(self.gen)
        if self._fd is not None:
            os.close(self._fd)
        self.gen = new_gen
        self._fd = os.open(self.dir / self._journal_name(new_gen), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = 0
        with contextlib.suppress(FileNotFoundError):
            old.unlink()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
