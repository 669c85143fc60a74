"""Scale-out of the matching service: which partition keys (symbols) an instance owns, and how a key's state moves.

Several ``pulse consumers matching run --name …`` processes share one Key_Shared subscription (orders and market
data keyed by symbol): the broker gives each key's messages to one instance at a time and moves keys when an
instance joins or dies. Each instance keeps its own snapshot + journal (journal.py: the exact processing order,
appended before processing, nothing on the hot path waits for a disk or a database). A key's state follows it:

* **Ownership is a lock.** Under the shared state root (``matching.state_dir``: one machine, or a network
  filesystem with POSIX locks) each key has a lock file; the instance that holds its ``flock`` owns the key and
  is the only one that applies its messages. The kernel releases a dead process's lock at once. Beside the lock,
  a small owner file (written durably, before any of the key's messages is acknowledged) names the last owner
  and, after a release, the file holding the key's state.
* **Taking a key over** (its first message at an instance that does not own it): lock it (without waiting), then
  load what the owner file points at:
  - nothing, or this instance itself: its own state is the key's (a restart; a first start);
  - a released key: the state the previous owner wrote when it let go;
  - a previous owner that died holding it: that owner's snapshot + journal, read (never written) and replayed
    exactly as its own restart would, then the key's part taken out. Executions of that part the broker had not
    confirmed to the dead owner are published again with the same ``exec_id`` and waited for.
  The loaded part replaces the key's part of this instance's engine and is journalled (``["part", key, …]``), so
  this instance's own restart, or a later survivor reading its journal, rebuilds the same state.
* **Letting a key go** (a live instance asked for it: the broker moved the key): flush the executions, write the
  key's part to a file, journal an empty part for it (its orders and positions leave this engine), point the
  owner file at that file, unlock. Asking is a file in the owner's request directory, which each instance looks
  at every ~50 ms; messages of a key being waited for stay in memory, in order, unacknowledged.
* **Redeliveries** are recognised by position, per topic and key, as on a restart: the part carries the
  positions of the last message of each of the key's topics that its state covers.

What a part is: the key's instruments' market state, books (open orders), positions, the positions of its
topics; plus the engine-wide sets of request and order ids (unioned: ids are unique) and the clock and
time-priority counter (the larger one wins). See :func:`part_of` and :func:`with_part`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import msgspec

from consumers.matching.engine import InstrumentSpec, MatchingEngine
from consumers.matching.journal import Position, read_state
from consumers.matching.messages import Output
from pulse.log import get_logger

log = get_logger(__name__)

_enc = msgspec.msgpack.Encoder(decimal_format="string")
_ASK_EVERY_S = 0.5


def _durable_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- parts of an engine's state ----------------------------------------------------------------------------------
def part_of(engine: MatchingEngine, hwm: dict[str, Position], key: str, key_seq: dict[str, int]) -> bytes:
    """The state of ``key`` (a symbol) in ``engine``: see the module docstring. ``key_seq``: outputs per symbol
    (the sequence ids of its producer, publisher.py)."""
    doc = msgspec.msgpack.decode(engine.snapshot())
    suffix = "|" + key
    return _enc.encode(
        {
            "key": key,
            "now": doc["now"],
            "seq": doc["seq"],
            "requests": doc["requests"],
            "order_requests": doc["order_requests"],
            "open": [o for o in doc["open"] if o[4] == key],
            "markets": [m for m in doc["markets"] if m[1] == key],
            "positions": [p for p in doc["positions"] if p[2] == key],
            "hwm": sorted([k, list(v)] for k, v in hwm.items() if k.endswith(suffix)),
            "outputs": key_seq.get(key, 0),
        }
    )


def empty_part(key: str) -> bytes:
    """A part that removes ``key`` from an engine (what an instance keeps of a key it let go)."""
    return _enc.encode({"key": key, "now": 0, "seq": 0, "requests": [], "order_requests": [], "open": [],
                        "markets": [], "positions": [], "hwm": [], "outputs": 0})  # fmt: skip


def with_part(
    engine: MatchingEngine,
    hwm: dict[str, Position],
    part: bytes,
    instruments: Iterable[InstrumentSpec],
    key_seq: dict[str, int],
) -> MatchingEngine:
    """An engine equal to ``engine`` with the key's part replaced by ``part``; ``hwm`` and ``key_seq`` are updated
    in place."""
    p = msgspec.msgpack.decode(part)
    key = p["key"]
    if p.get("outputs"):
        key_seq[key] = p["outputs"]
    else:
        key_seq.pop(key, None)
    doc = msgspec.msgpack.decode(engine.snapshot())
    doc["now"] = max(doc["now"], p["now"])
    doc["seq"] = max(doc["seq"], p["seq"])
    doc["requests"] = sorted(set(doc["requests"]) | set(p["requests"]))
    doc["order_requests"] = sorted({**dict(doc["order_requests"]), **dict(p["order_requests"])}.items())
    doc["open"] = [o for o in doc["open"] if o[4] != key] + p["open"]
    doc["positions"] = [x for x in doc["positions"] if x[2] != key] + p["positions"]
    doc["markets"] = [m for m in doc["markets"] if m[1] != key] + p["markets"]  # none: a blank market
    eng = MatchingEngine.restore(_enc.encode(doc), instruments)
    suffix = "|" + key
    for k in [k for k in hwm if k.endswith(suffix)]:
        del hwm[k]
    for k, v in p["hwm"]:
        hwm[k] = (v[0], v[1], v[2], v[3])
    return eng


def keys_with_state(engine: MatchingEngine) -> set[str]:
    """Symbols with open orders or positions in ``engine``."""
    return {o.symbol for o in engine.open.values()} | {k[2] for k in engine.positions}


# -- a dead owner's state ----------------------------------------------------------------------------------------
def replay_dead_owner(
    directory: Path,
    instruments: list[InstrumentSpec],
    apply: Callable[[MatchingEngine, str, bytes], list[Output]],
    key: str,
) -> tuple[bytes, list[tuple[Output, int]]]:
    """Rebuild a dead instance's state from its snapshot + journal (read only, as its own restart would) and
    return the part of ``key`` and that key's outputs the broker had not confirmed, with their sequence ids (to
    publish again)."""
    snap, records = read_state(directory)
    engine = MatchingEngine(instruments)
    hwm: dict[str, Position] = {}
    key_seq: dict[str, int] = {}
    out_seq = published = 0
    if snap is not None:
        engine = MatchingEngine.restore(snap["engine"], instruments)
        hwm = {k: (v[0], v[1], v[2], v[3]) for k, v in snap["hwm"]}
        out_seq, published = snap["out_seq"], snap["published"]
        key_seq = dict(snap.get("key_seq", []))
    confirmed = max([published] + [r[1] for r in records if r[0] == "pub"])
    late: list[tuple[Output, int]] = []
    for rec in records:
        if rec[0] == "in":
            _kind, t, k, pos, payload = rec
            hwm[f"{t}|{k}"] = (pos[0], pos[1], pos[2], pos[3])
            for o in apply(engine, t, payload):
                out_seq += 1
                ks = key_seq[o.symbol] = key_seq.get(o.symbol, 0) + 1
                if out_seq > confirmed and o.symbol == key:
                    late.append((o, ks))
        elif rec[0] == "part":
            engine = with_part(engine, hwm, rec[2], instruments, key_seq)
    return part_of(engine, hwm, key, key_seq), late


# -- ownership ---------------------------------------------------------------------------------------------------
class Owners:
    """Lock and owner files of one subscription's keys, for instance ``name`` (see the module docstring)."""

    def __init__(self, root: Path, group: str, name: str) -> None:
        self.root = root  # holds every instance's state directory (<root>/<name>)
        self.dir = root / ".owners" / quote(group, safe="")
        self.name = name
        self.requests = self.dir / ".requests" / quote(name, safe="")
        self.requests.mkdir(parents=True, exist_ok=True)
        self.owned: dict[str, int] = {}  # key → its lock file's descriptor
        self._asked: dict[str, float] = {}

    def _path(self, key: str, ext: str) -> Path:
        return self.dir / f"{quote(key, safe='')}.{ext}"

    def try_lock(self, key: str) -> bool:
        fd = os.open(self._path(key, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.owned[key] = fd
        self._asked.pop(key, None)
        return True

    def owner_of(self, key: str) -> dict[str, Any] | None:
        """The owner file: ``{"owner": name, "part": file name or null}``, or None if the key never had one."""
        try:
            return msgspec.json.decode(self._path(key, "owner").read_bytes())
        except FileNotFoundError:
            return None

    def read_part(self, doc: dict[str, Any]) -> bytes:
        return (self.dir / doc["part"]).read_bytes()

    def instance_dir(self, name: str) -> Path:
        return self.root / name

    def record(self, key: str) -> None:
        """Durably name this instance the key's owner (before any of its messages is acknowledged)."""
        _durable_write(self._path(key, "owner"), msgspec.json.encode({"owner": self.name, "part": None}))

    def release(self, key: str, part: bytes) -> None:
        """Write the key's state where the next owner finds it, then unlock."""
        name = f"{quote(key, safe='')}.{quote(self.name, safe='')}.part"
        _durable_write(self.dir / name, part)
        _durable_write(self._path(key, "owner"), msgspec.json.encode({"owner": self.name, "part": name}))
        self.unlock(key)

    def unlock(self, key: str) -> None:
        fd = self.owned.pop(key, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor releases the flock

    def unlock_all(self) -> None:
        for key in list(self.owned):
            self.unlock(key)

    def ask(self, key: str) -> None:
        """Ask the key's current owner (per its owner file) to let it go; at most every 0.5 s per key."""
        now = time.monotonic()
        if now - self._asked.get(key, 0.0) < _ASK_EVERY_S:
            return
        self._asked[key] = now
        doc = self.owner_of(key)
        if doc is None or doc["owner"] == self.name:
            return  # being taken by someone who has not written the owner file yet: wait for the lock
        d = self.dir / ".requests" / quote(doc["owner"], safe="")
        with contextlib.suppress(OSError):
            d.mkdir(parents=True, exist_ok=True)
            (d / quote(key, safe="")).touch()

    def asked(self) -> list[str]:
        """Keys other instances asked this one for (the requests are consumed)."""
        try:
            names = os.listdir(self.requests)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.requests / n)
            out.append(unquote(n))
        return out
