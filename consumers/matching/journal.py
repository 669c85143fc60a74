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

A checkpoint starts journal ``gen + 1`` (:meth:`StateStore.rotate`: the records after the snapshot point go
there), writes the snapshot (temp file, fsync, rename, fsync of the directory) and deletes the older journals
(:meth:`StateStore.write_snapshot`). The service does the writing on its sync thread, off the processing path,
and acknowledges nothing of journal ``gen + 1`` before that snapshot is durable. So after a crash either the new
snapshot is durable (older journals are stale: the next start deletes them) or it is not, and the start replays
the old snapshot, its journal and the newer one(s) in order (exactly the processing order; a journal torn at
its end ends the replay there, since nothing after it was acknowledged).
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
        """The last snapshot (or None) and the journal records after it (its journal, then any newer one, in
        order); opens the last journal read for appending."""
        snap: dict[str, Any] | None = None
        if self.snapshot_path.exists():
            snap = msgspec.msgpack.decode(self.snapshot_path.read_bytes())
            self.gen = int(snap["gen"])
        gens = sorted(g for g in (self._gen_of(p) for p in self.dir.glob("journal-*.log")) if g is not None)
        for g in gens:
            if g < self.gen:
                (self.dir / self._journal_name(g)).unlink()  # covered by the snapshot
        records: list[list[Any]] = []
        valid = 0
        for g in [g for g in gens if g >= self.gen]:
            path = self.dir / self._journal_name(g)
            data_len = path.stat().st_size
            read = list(self._read(path))
            records += [r for r, _end in read]
            self.gen = g
            valid = read[-1][1] if read else 0
            if valid < data_len:  # torn at the end: nothing after it was acknowledged, drop the newer journals
                for newer in (x for x in gens if x > g):
                    (self.dir / self._journal_name(newer)).unlink()
                break
        path = self.dir / self._journal_name(self.gen)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, valid)  # drop a torn last record
        os.lseek(self._fd, valid, os.SEEK_SET)
        self.written = valid
        return snap, records

    @staticmethod
    def _gen_of(path: Path) -> int | None:
        stem = path.name[len("journal-") : -len(".log")]
        return int(stem) if stem.isdigit() else None

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
        old_fd, new_gen = self.rotate()
        if old_fd is not None:
            os.close(old_fd)
        self.write_snapshot(state, new_gen)

    def rotate(self) -> tuple[int | None, int]:
        """Start journal ``gen + 1`` (appends go there from now on); returns the previous journal's descriptor
        (still open: the caller closes it) and the new generation, which the snapshot of this point carries."""
        old = self._fd
        self.gen += 1
        self._fd = os.open(self.dir / self._journal_name(self.gen), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = 0
        return old, self.gen

    def write_snapshot(self, state: dict[str, Any], gen: int) -> None:
        """Durably write the snapshot of generation ``gen`` (its state as of :meth:`rotate`), then delete the
        journals it covers. Thread-safe with respect to :meth:`append` (it touches no open journal)."""
        tmp = self.snapshot_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_enc.encode({**state, "gen": gen}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.snapshot_path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        for p in self.dir.glob("journal-*.log"):
            g = self._gen_of(p)
            if g is not None and g < gen:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    @property
    def fd(self) -> int | None:
        """The current journal's descriptor (the sync thread fsyncs it)."""
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_state(directory: Path, attempts: int = 20) -> tuple[dict[str, Any] | None, list[list[Any]]]:
    """Another instance's last snapshot and journal records, read without writing anything (see handover.py).

    Its owner may be restarting and checkpointing meanwhile (a new snapshot, the old journals deleted): a file that
    vanishes mid-read starts the read again."""
    for _ in range(attempts):
        before = _identity(directory / "snapshot.bin")
        try:
            got = _read_state(directory)
        except FileNotFoundError:
            continue
        if _identity(directory / "snapshot.bin") == before:  # no new snapshot (and no journal deleted) meanwhile
            return got
    raise RuntimeError(f"the matching state in {directory} kept changing while it was read")


def _read_state(directory: Path) -> tuple[dict[str, Any] | None, list[list[Any]]]:
    snap: dict[str, Any] | None = None
    gen = 0
    path = directory / "snapshot.bin"
    if path.exists():
        snap = msgspec.msgpack.decode(path.read_bytes())
        gen = int(snap["gen"])
    gens = sorted(g for g in (StateStore._gen_of(p) for p in directory.glob("journal-*.log")) if g is not None)
    records: list[list[Any]] = []
    for g in [g for g in gens if g >= gen]:
        jp = directory / StateStore._journal_name(g)
        size = jp.stat().st_size
        read = list(StateStore._read(jp))
        records += [r for r, _end in read]
        if (read[-1][1] if read else 0) < size:
            break  # torn at its end: nothing after it was acknowledged
    return snap, records


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)
