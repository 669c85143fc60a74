"""The matching service: the pure engine wired to Pulsar, with durable state (``pulse consumers matching run``).

Inputs: the orders topic (``trading/<matching.orders_topic>``, commands keyed by symbol) and each instrument's
``quote``, ``trade`` and ``book`` topics in its namespace. Two Key_Shared consumers (Shared on the embedded
pulsar-lite: see :meth:`MatchingService.consumer_type`) (orders from the earliest
unacknowledged message, so orders sent before the service first started are not lost; market data from the
latest, so a first start does not replay history) hand messages through their listener to one queue; one thread
processes them in arrival order::

    receive → duplicate? (position ≤ high-water mark of its topic and key: ack, skip)
            → journal append (the exact processing order, see journal.py)
            → engine → publish executions/positions to trading/<matching.fills_topic> (key = symbol)
            → ack once the journal is fsync'd (a background thread, every ~50 ms: group commit)

Latency: nothing on that path waits for the disk. Executions are published as soon as the engine returns them
(no producer batching: a batch would hold a fill for up to the batching delay); the journal append goes to the
page cache (it survives the process being killed); fsync and acknowledgement happen on the sync thread, once
per ~50 ms for everything received since (so the ack-after-fsync guarantee holds at one fsync per group).

Every ``snapshot_interval_s`` the state is serialised on the processing thread and the journal rotated there
(cheap); the snapshot is written and fsync'd by the sync thread (see journal.py for the crash cases). On
SIGTERM, after flushing the producer, a snapshot is written synchronously. On start: snapshot + journal replay
rebuild the exact state; the executions of replayed inputs that the broker had not confirmed (journal ``pub``
markers) are published again with the same ``exec_id``\\ s, so nothing is lost and a consumer
dedupes the rare repeat on ``exec_id``.

Scaling out: several processes (``--name``) share the subscription; Key_Shared gives each symbol (the partition key
of its orders and market data) to one of them, and a symbol's state moves with it when the broker moves the key
(an instance joined, stopped or died): see handover.py. A message of a symbol this instance does not own waits,
in memory and unacknowledged, until the symbol is taken over.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import pulsar

from consumers.matching.engine import InstrumentSpec, MatchingEngine
from consumers.matching.handover import Owners, empty_part, keys_with_state, part_of, replay_dead_owner, with_part
from consumers.matching.journal import Position, StateStore
from consumers.matching.messages import Execution, Output, decode_command
from consumers.matching.publisher import FillsPublisher
from pulse.bus import Bus
from pulse.log import get_logger
from pulse.models import Event
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import StatusFile
from pulse.topics import reading_channels, service_topic, topic

log = get_logger(__name__)

MARKET_CHANNELS = ("quote", "trade", "book")
_SYNC_EVERY_S = 0.05
_SWITCH_INTERVAL_S = 0.001
_OWNERS_EVERY_S = 0.05  # how often release requests and waited-for keys are looked at
_market_json = msgspec.json.Decoder(Event)
_market_mp = msgspec.msgpack.Decoder(Event)


def state_root(settings: Settings) -> Path:
    """Where every instance's state directory and the key owner files live (shared by a scaled-out group)."""
    base = Path(settings.matching.state_dir).expanduser() if settings.matching.state_dir else None
    return base or settings.home / "state" / "matching"


def state_dir(settings: Settings, name: str) -> Path:
    return state_root(settings) / name


def market_topics(settings: Settings, instruments: Sequence[InstrumentSpec]) -> list[str]:
    tenant = settings.pulsar.tenant
    return [
        topic(i.namespace, i.venue, i.symbol, ch, tenant)
        for i in instruments
        for ch in reading_channels(i.namespace, MARKET_CHANNELS)
    ]


@dataclass
class MatchingStats:
    received: int = 0
    orders: int = 0
    market_events: int = 0
    executions: int = 0
    fills: int = 0
    rejects: int = 0
    published: int = 0  # outputs the broker acknowledged
    duplicates: int = 0  # redelivered inputs already processed (skipped)
    bad_messages: int = 0
    replayed: int = 0  # journal records re-applied at start
    republished: int = 0  # outputs published again at start (not confirmed before the previous process ended)
    snapshots: int = 0
    open_orders: int = 0
    takeovers: int = 0  # symbols taken over (first sight of each after a start counts too)
    releases: int = 0  # symbols let go to another instance that asked
    keys_owned: int = 0


def _position(msg: pulsar.Message) -> Position:
    mid = msg.message_id()
    return (mid.partition(), mid.ledger_id(), mid.entry_id(), mid.batch_index())


class MatchingService:
    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        instruments: Sequence[InstrumentSpec],
        *,
        name: str = "matching",
        status_home: Path | None = None,
        stats: MatchingStats | None = None,
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.instruments = list(instruments)
        self.name = name
        ms = settings.matching
        tenant = settings.pulsar.tenant
        self.orders_topic = service_topic("trading", ms.orders_topic, tenant)
        self.fills_topic = service_topic("trading", ms.fills_topic, tenant)
        self.market_topics = market_topics(settings, self.instruments)
        self.store = StateStore(state_dir(settings, name))
        self.owners = Owners(state_root(settings), ms.subscription, name)
        self._owned = self.owners.owned
        self._waiting: dict[str, list[tuple[pulsar.Consumer, pulsar.Message]]] = {}  # key → messages, in order
        self.stats = stats or MatchingStats()  # a reload carries the counters over
        self.engine = MatchingEngine(self.instruments)
        self.hwm: dict[str, Position] = {}  # "topic|key" → last processed position
        self.out_seq = 0  # outputs produced so far (deterministic given the inputs)
        self.published = 0  # outputs 1..published confirmed by the broker
        self.key_seq: dict[str, int] = {}  # symbol → its outputs so far (their producer's sequence ids)
        self._pub_marked = 0
        self._marked_at = 0.0
        self._pending: deque[tuple[int, int, pulsar.Message, pulsar.Consumer]] = deque()  # (gen, offset, msg, c)
        self._lock = threading.Lock()
        # a snapshot taken and its journal rotated, to be written by the sync thread: (state, gen, old journal fd)
        self._ckpt_job: tuple[dict[str, Any], int, int | None] | None = None
        self._inbox: queue.Queue[tuple[pulsar.Consumer, pulsar.Message]] = queue.Queue()
        self._status = StatusFile(status_home, name) if status_home is not None else None
        self.last_tick: dict[str, int] = {}
        self.state = "starting"

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Recover, consume until ``stop`` is set, then flush, snapshot, acknowledge and close."""
        bus = Bus(self.settings, self.endpoints.pulsar_url)
        consumers: list[pulsar.Consumer] = []
        switch: float | None = None
        syncer = threading.Thread(target=self._sync_loop, args=(stop,), name=f"{self.name}-sync", daemon=True)
        try:
            self.out = FillsPublisher(bus.client, self.fills_topic, self.settings.pulsar.max_pending_messages)
            self._recover()
            sub = self.settings.matching.subscription
            listener = self._on_message
            common: dict[str, Any] = {
                "consumer_type": self.consumer_type(),
                "message_listener": listener,
                "receiver_queue_size": 5000,
                "consumer_name": self.name,
            }
            consumers.append(
                bus.client.subscribe(self.orders_topic, sub, initial_position=pulsar.InitialPosition.Earliest, **common)
            )
            if self.market_topics:
                consumers.append(
                    bus.client.subscribe(
                        self.market_topics, sub, initial_position=pulsar.InitialPosition.Latest, **common
                    )
                )
            syncer.start()
            gc.freeze()  # instruments, recovered state, client objects: long-lived, out of every collection
            switch = sys.getswitchinterval()
            # the listener and sync threads hand over within ~1 ms rather than the default 5 ms (a message that
            # arrives while the processing thread holds the GIL waits for the switch)
            sys.setswitchinterval(_SWITCH_INTERVAL_S)
            self.state = "running"
            log.info(
                "matching started",
                instruments=len(self.instruments),
                orders_topic=self.orders_topic,
                fills_topic=self.fills_topic,
                open_orders=len(self.engine.open),
                replayed=self.stats.replayed,
            )
            self._write_status(force=True)
            snap_every = self.settings.matching.snapshot_interval_s
            snap_at = time.monotonic() + snap_every
            owners_at = 0.0
            inbox = self._inbox
            while not stop.is_set():
                try:
                    consumer, msg = inbox.get(timeout=0.1)
                except queue.Empty:
                    pass
                else:
                    self._handle(consumer, msg)
                now = time.monotonic()
                if now >= owners_at:
                    self._tend_owners()
                    owners_at = now + _OWNERS_EVERY_S
                if now - self._marked_at >= _SYNC_EVERY_S:
                    self._mark_published()
                    self._marked_at = now
                if now >= snap_at:
                    self._checkpoint_async()
                    snap_at = now + snap_every
                self._write_status()
            self.state = "stopping"
            for c in consumers:
                with contextlib.suppress(Exception):
                    c.pause_message_listener()
            if syncer.is_alive():
                syncer.join(10)  # stop is set: it ends its round; the snapshot below supersedes a pending one
            self._flush_outputs()
            self.checkpoint()
        finally:
            if switch is not None:
                sys.setswitchinterval(switch)
            stop.set()
            if syncer.is_alive():
                syncer.join(2)
            for c in consumers:
                with contextlib.suppress(Exception):
                    c.close()
            if hasattr(self, "out"):
                self.out.close()
            with contextlib.suppress(Exception):
                bus.close()
            self.store.close()
            self.owners.unlock_all()  # after the final snapshot: the next owner reads this instance's state
            self.state = "stopped"
            self._write_status(force=True)
        log.info("matching stopped", **asdict(self.stats))

    def consumer_type(self) -> pulsar.ConsumerType:
        """Key_Shared (scale out by instrument) on a real cluster; Shared on the embedded pulsar-lite, whose
        Key_Shared dispatcher refuses a second process (tests/integration/test_lite_key_shared.py) and stalled
        after a consumer died with unacknowledged messages (the restart case). Shared means one service instance
        per subscription."""
        kind = self.settings.matching.subscription_type
        if kind == "auto":
            kind = "shared" if not self.settings.pulsar.url else "key_shared"
        return pulsar.ConsumerType.Shared if kind == "shared" else pulsar.ConsumerType.KeyShared

    def _on_message(self, consumer: pulsar.Consumer, msg: pulsar.Message) -> None:
        self._inbox.put((consumer, msg))

    # -- processing ----------------------------------------------------------------------------------
    def _handle(self, consumer: pulsar.Consumer, msg: pulsar.Message) -> None:
        key = msg.partition_key()
        if key not in self._owned:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.append((consumer, msg))
                return
            if not self._take(key):
                self._waiting[key] = [(consumer, msg)]
                return
        self.stats.received += 1
        t = msg.topic_name()
        hk = f"{t}|{key}"
        pos = _position(msg)
        last = self.hwm.get(hk)
        if last is not None and pos <= last:
            self.stats.duplicates += 1
            consumer.acknowledge(msg)
            return
        payload = msg.data()
        off = self.store.append(["in", t, key, list(pos), payload])
        self._apply(t, hk, pos, payload, publish=True)
        self._pending.append((self.store.gen, off, msg, consumer))

    # -- ownership (handover.py) --------------------------------------------------------------------------
    def _take(self, key: str) -> bool:
        """Take ``key`` over if nobody holds it (loading its state, see handover.py); else ask its owner."""
        owners = self.owners
        if not owners.try_lock(key):
            owners.ask(key)
            return False
        try:
            doc = owners.owner_of(key)
            part: bytes | None = None
            late: list[tuple[Output, int]] = []
            if doc is not None and doc["part"] is not None:
                part = owners.read_part(doc)  # let go by a live owner (or by this one)
            elif doc is not None and doc["owner"] != self.name:  # its owner died (or stopped) holding it
                part, late = replay_dead_owner(owners.instance_dir(doc["owner"]), self.instruments,
                                               self._engine_apply, key)  # fmt: skip
                for o, seq_id in late:  # the dead owner's outputs the broker had not confirmed: same ids
                    self.out.send_again(o, seq_id)
                self.out.flush()
                self.stats.republished += len(late)
            if part is not None:
                self.store.append(["part", key, part])
                self.engine = with_part(self.engine, self.hwm, part, self.instruments, self.key_seq)
            owners.record(key)
        except BaseException:
            owners.unlock(key)
            raise
        self.stats.takeovers += 1
        self.stats.keys_owned = len(self._owned)
        log.info("symbol taken over", symbol=key, previous=doc and doc["owner"], loaded=part is not None,
                 republished=len(late))  # fmt: skip
        return True

    def _release(self, key: str) -> None:
        """Let ``key`` go (another instance asked): its executions confirmed, its state written for the next owner
        and removed from this engine (journalled)."""
        self._flush_outputs()
        self.out.close_symbol(key)  # its producer name is free for the next owner
        part = part_of(self.engine, self.hwm, key, self.key_seq)
        gone = empty_part(key)
        self.store.append(["part", key, gone])
        self.engine = with_part(self.engine, self.hwm, gone, self.instruments, self.key_seq)
        self.owners.release(key, part)
        self.stats.releases += 1
        self.stats.keys_owned = len(self._owned)
        log.info("symbol let go", symbol=key)

    def _tend_owners(self) -> None:
        """Let go what others asked for; take over the keys whose messages wait (then apply those, in order)."""
        for key in self.owners.asked():
            if key in self._owned:
                self._release(key)
        for key in list(self._waiting):
            if self._take(key):
                for consumer, msg in self._waiting.pop(key):
                    self._handle(consumer, msg)

    def _claim_at_start(self) -> bool:
        """After recovery: keep (lock) the keys this instance owned when it stopped; drop from the engine the
        orders and positions of keys another instance owns now. True if the engine changed."""
        changed = False
        keys = keys_with_state(self.engine) | {i.symbol for i in self.instruments}
        for key in sorted(keys):
            doc = self.owners.owner_of(key)
            mine = doc is None or (doc["owner"] == self.name and doc["part"] is None)
            if mine and key in keys_with_state(self.engine):
                if self.owners.try_lock(key):
                    self.owners.record(key)
                    continue
                # another instance is taking it over from this one's state: let it finish reading it
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and self.owners.owner_of(key) == doc:
                    time.sleep(0.05)
                mine = False
            if not mine and key in keys_with_state(self.engine):
                gone = empty_part(key)
                self.store.append(["part", key, gone])
                self.engine = with_part(self.engine, self.hwm, gone, self.instruments, self.key_seq)
                changed = True
        self.stats.keys_owned = len(self._owned)
        return changed

    def _engine_apply(self, engine: MatchingEngine, t: str, payload: bytes) -> list[Output]:
        """One journalled input applied to ``engine`` (a dead owner's, being replayed): no counters, no output."""
        try:
            if t == self.orders_topic or t.startswith(self.orders_topic + "-partition-"):
                return engine.on_order(decode_command(payload))
            return engine.on_market(_market_json.decode(payload) if payload[:1] == b"{" else _market_mp.decode(payload))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []

    def _apply(
        self, t: str, hk: str, pos: Position, payload: bytes, *, publish: bool, sink: list | None = None
    ) -> list[Output]:
        """Apply one input; publish its outputs (``publish``) or collect them with their numbers (``sink``)."""
        self.hwm[hk] = pos
        outs: list[Output]
        try:
            if t == self.orders_topic or t.startswith(self.orders_topic + "-partition-"):
                self.stats.orders += 1
                outs = self.engine.on_order(decode_command(payload))
            else:
                ev = _market_json.decode(payload) if payload[:1] == b"{" else _market_mp.decode(payload)
                self.stats.market_events += 1
                self.last_tick[f"{ev.venue}:{ev.symbol}"] = ev.ts_event
                outs = self.engine.on_market(ev)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats.bad_messages += 1
            raw = payload[:200].decode("utf-8", "replace")
            log.warning("undecodable message skipped", topic=t, error=str(exc), raw=raw)
            return []
        key_seq = self.key_seq
        for o in outs:
            n = self.out_seq = self.out_seq + 1
            sym = o.symbol
            ks = key_seq[sym] = key_seq.get(sym, 0) + 1
            if type(o) is Execution:
                self.stats.executions += 1
                if o.kind == "fill":
                    self.stats.fills += 1
                elif o.kind == "rejected":
                    self.stats.rejects += 1
            if publish:
                self.out.send(o, n, ks)
            elif sink is not None:
                sink.append((o, n, ks))
        return outs

    def _flush_outputs(self) -> None:
        """Wait for the broker to confirm every output so far; journal that."""
        self.out.flush()
        self.out.all_confirmed(self.out_seq)
        self._mark_published()

    def _mark_published(self) -> None:
        n = self.out.confirmed()
        if n > self._pub_marked:
            self.store.append(["pub", n])
            self._pub_marked = n
            self.published = n
            self.stats.published = n

    # -- durability ----------------------------------------------------------------------------------
    def _sync_loop(self, stop: threading.Event) -> None:
        """Every ~50 ms: write a pending snapshot, fsync the journal, acknowledge the inputs now durable. The disk
        waits happen outside the lock, so the processing thread never waits for them."""
        while not stop.wait(_SYNC_EVERY_S):
            with self._lock:
                job, self._ckpt_job = self._ckpt_job, None
            if job is not None:
                state, gen, old_fd = job
                try:
                    self.store.write_snapshot(state, gen)
                except OSError as exc:
                    log.warning("snapshot write failed", error=str(exc))
                    with self._lock:
                        if self._ckpt_job is None:
                            self._ckpt_job = job  # retry next round; nothing of journal `gen` is acked before
                    continue
                if old_fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(old_fd)
                self._ack_through(gen - 1, None)  # every input of the older journals is in the snapshot
            with self._lock:
                if not self._pending or self._ckpt_job is not None:
                    continue
                gen, upto, fd = self.store.gen, self.store.written, self.store.fd
            if fd is None:
                continue
            try:
                os.fsync(fd)  # fds are closed only by this thread, or after it has ended
            except OSError as exc:
                log.warning("journal fsync failed", error=str(exc))
                continue
            self._ack_through(gen, upto)

    def _ack_through(self, gen: int, upto: int | None) -> None:
        """Acknowledge the pending inputs journalled before generation ``gen``, and those of ``gen`` up to byte
        ``upto`` (all of them if None). Only the sync thread pops (or the processing thread when it has ended)."""
        p = self._pending
        while p and (p[0][0] < gen or (p[0][0] == gen and (upto is None or p[0][1] <= upto))):
            _g, _o, msg, consumer = p.popleft()
            with contextlib.suppress(Exception):
                consumer.acknowledge(msg)

    def _state(self) -> dict[str, Any]:
        return {
            "engine": self.engine.snapshot(),
            "hwm": sorted([k, list(v)] for k, v in self.hwm.items()),
            "out_seq": self.out_seq,
            "published": self.published,
            "key_seq": sorted([k, v] for k, v in self.key_seq.items()),
        }

    def _checkpoint_async(self) -> None:
        """Snapshot the state and rotate the journal here (processing thread, no disk wait); the sync thread
        writes the snapshot. Skipped while the previous one is still pending."""
        with self._lock:
            if self._ckpt_job is not None:
                return
            state = self._state()
            old_fd, gen = self.store.rotate()
            self._ckpt_job = (state, gen, old_fd)
            self.stats.snapshots += 1

    def checkpoint(self) -> None:
        """Snapshot everything processed, start a new journal, acknowledge every input the snapshot covers
        (synchronously: at start after recovery and at shutdown, when the sync thread is not running)."""
        with self._lock:
            job, self._ckpt_job = self._ckpt_job, None
            if job is not None and job[2] is not None:
                with contextlib.suppress(OSError):
                    os.close(job[2])
            self.store.checkpoint(self._state())
            self.stats.snapshots += 1
            self._ack_through(self.store.gen, None)

    def _recover(self) -> None:
        snap, records = self.store.load()
        if snap is not None:
            self.engine = MatchingEngine.restore(snap["engine"], self.instruments)
            self.hwm = {k: tuple(v) for k, v in snap["hwm"]}  # type: ignore[misc]
            self.out_seq = snap["out_seq"]
            self.published = snap["published"]
            self.key_seq = dict(snap.get("key_seq", []))
        confirmed = max([self.published] + [r[1] for r in records if r[0] == "pub"])
        for rec in records:
            if rec[0] == "part":  # a key taken over or let go (handover.py)
                self.engine = with_part(self.engine, self.hwm, rec[2], self.instruments, self.key_seq)
                continue
            if rec[0] != "in":
                continue
            _kind, t, key, pos, payload = rec
            outs: list[tuple[Output, int, int]] = []
            self._apply(t, f"{t}|{key}", tuple(pos), payload, publish=False, sink=outs)  # type: ignore[arg-type]
            self.stats.replayed += 1
            for o, n, ks in outs:
                if n > confirmed:  # not confirmed before the previous process ended: again, with the same ids
                    self.out.send_again(o, ks)
                    self.stats.republished += 1
        self.published = self._pub_marked = self.out.acked = confirmed
        if self._claim_at_start() or records or snap is not None:
            self._flush_outputs()
            self.checkpoint()  # the replayed state becomes the new base: the journal starts empty
            log.info("matching state recovered", replayed=self.stats.replayed, republished=self.stats.republished)

    # -- reporting -----------------------------------------------------------------------------------
    def snapshot_stats(self) -> dict[str, Any]:
        self.stats.open_orders = len(self.engine.open)
        return asdict(self.stats)

    def _write_status(self, force: bool = False) -> None:
        if self._status is None or not self._status.due(force=force):
            return
        self._status.write_or_log(
            self.snapshot_stats(),
            state=self.state,
            last_tick=dict(self.last_tick),
            instruments=[f"{i.venue}:{i.symbol}" for i in self.instruments],
        )
