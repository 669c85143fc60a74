"""Scale-out of the alerting service: which symbols an instance owns, and how it takes one over.

With ``alerting.subscription_type = key_shared`` (the default on a real cluster) several ``pulse consumers alerting
run`` processes share one Key_Shared subscription keyed by symbol: the broker gives each symbol's messages to one
consumer at a time and, when a consumer goes away, hands its symbols and its unacknowledged messages to the
others. Each symbol's state must follow. The design, per symbol (the unit the broker moves):

* **Load on first sight.** An instance starts owning nothing. The first message of a symbol it does not own makes
  it *claim* the symbol in the database (``alert_owners``: owner, ``epoch`` + 1) and load what the previous owner
  committed: the rule state of the symbol's instruments (``alert_state``), the position of the last message of
  each topic that state covers, and how many alerts it had produced. A symbol nobody stored starts fresh.
* **Fenced commits.** A snapshot commits a symbol's state only while its epoch is unchanged (a conditional
  ``UPDATE`` in the same transaction). An instance whose symbol was taken over learns it at its next snapshot:
  it writes nothing for that symbol, gives the messages it held back to the broker (negative ack: redelivered
  to the new owner) and forgets the symbol (a later return loads it again).
* **Replay by position.** Messages are acknowledged only after the snapshot covering them commits; the new owner
  receives the unacknowledged ones again. A message at or below the stored position of its topic is already in
  the loaded state and is skipped (the window between a commit and its acks); every later one is applied, in
  order, so the engine — deterministic per instrument — reproduces the alerts the old owner produced after its
  last commit, with the same ``alert_id``\\ s (the ``alerts`` table stores each once, webhooks fire once).
* **Exactly once on the alerts topic.** Each symbol's alerts go out on a producer named after the symbol (the
  same name in every instance) with the symbol's alert count as the Pulsar sequence id. With deduplication on
  the ``alerts`` namespace the broker drops the replayed alerts the old owner had already published. The
  producer name is also a fence: the broker refuses a second producer of that name while the first one's
  connection lives. Stale-feed alerts (``on_timer``: wall-clock driven, not replayed) use a producer per
  symbol without explicit ids, and only the owner of a symbol raises them.

Why not sticky key ranges: with fixed ranges the keys of a dead instance do not move at all (their messages wait
for it), and a range change still needs this handover. Why not the per-instance snapshot directory of the
matching service: the survivor may run on another machine; the database is already shared by every instance.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pulsar

from consumers.alerting.engine import AlertEngine
from consumers.alerting.store import AlertStore, Fence
from pulse.errors import BusError
from pulse.log import get_logger

log = get_logger(__name__)

Key = tuple[str, str]
#: A message's place in its topic: (partition, ledger, entry, batch index), totally ordered within one topic.
Position = tuple[int, int, int, int]
_PRODUCER_WAIT_S = 30.0  # a taken-over symbol's producer name is busy until the broker drops the old connection


def position(msg: pulsar.Message) -> Position:
    mid = msg.message_id()
    return (mid.partition(), mid.ledger_id(), mid.entry_id(), mid.batch_index())


class Handover:
    """The symbols this instance owns (see the module docstring). Main thread only, except :meth:`commit`."""

    def __init__(self, store: AlertStore, owner: str, fresh: dict[Key, bytes], alerts_topic: str) -> None:
        self.store = store
        self.owner = owner
        self.fresh = fresh  # every instrument's state before any tick: where a symbol nobody stored starts
        self.alerts_topic = alerts_topic
        self.epochs: dict[str, int] = {}  # owned symbol → the epoch of our claim
        self.alert_seq: dict[str, int] = {}  # owned symbol → alerts produced (last sequence id)
        self.hwm: dict[str, Position] = {}  # topic → position of the last message applied
        self.topics_of: dict[str, set[str]] = {}
        self.touched: set[str] = set()  # symbols with messages applied since the last snapshot
        self._producers: dict[tuple[str, bool], pulsar.Producer] = {}
        self.lost: queue.SimpleQueue[set[str]] = queue.SimpleQueue()  # writer thread → main: symbols taken over

    # -- ownership -----------------------------------------------------------------------------------------
    def take(self, symbol: str) -> dict[Key, bytes]:
        """Claim ``symbol``; return the state blobs to restore for its instruments (stored, else fresh)."""
        c = self.store.claim(symbol, self.owner)
        self.drop([symbol])
        self.epochs[symbol] = c.epoch
        self.alert_seq[symbol] = c.alert_seq
        topics = self.topics_of.setdefault(symbol, set())
        for t, p in c.positions.items():
            self.hwm[t] = (p[0], p[1], p[2], p[3])
            topics.add(t)
        blobs = {k: b for k, b in self.fresh.items() if k[1] == symbol}
        blobs.update(c.state)
        log.info("symbol taken over", symbol=symbol, epoch=c.epoch, stored=len(c.state), alert_seq=c.alert_seq)
        return blobs

    def drop(self, symbols: Any) -> None:
        """Forget symbols (lost to a take-over): their positions, counters and producers."""
        for s in symbols:
            self.epochs.pop(s, None)
            self.alert_seq.pop(s, None)
            self.touched.discard(s)
            for t in self.topics_of.pop(s, ()):
                self.hwm.pop(t, None)
            for timer in (False, True):
                p = self._producers.pop((s, timer), None)
                if p is not None:
                    try:
                        p.close()
                    except Exception as exc:
                        log.warning("producer close failed", symbol=s, error=str(exc))

    def drop_lost(self) -> int:
        """Forget the symbols the writer found taken over (main thread); returns how many."""
        n = 0
        while True:
            try:
                lost = self.lost.get_nowait()
            except queue.Empty:
                return n
            lost = {s for s in lost if s in self.epochs}
            if lost:
                log.warning("symbols taken over by another instance", symbols=sorted(lost))
                self.drop(lost)
                n += len(lost)

    def snapshot(self, engine: AlertEngine) -> tuple[dict[Key, bytes], dict[str, Fence], dict[str, int]]:
        """(state of the owned instruments touched, their symbols' fences, every owned symbol's epoch)."""
        keys = {k for k in engine.take_dirty() if k[1] in self.epochs}
        fences = self.fences({k[1] for k in keys})
        return engine.snapshot(keys), fences, dict(self.epochs)

    def is_replay(self, topic: str, symbol: str, pos: Position) -> bool:
        """True for a message the loaded state already covers (skip it); else record it as applied."""
        last = self.hwm.get(topic)
        if last is not None and pos <= last:
            return True
        self.hwm[topic] = pos
        topics = self.topics_of.setdefault(symbol, set())
        if topic not in topics:
            topics.add(topic)
        self.touched.add(symbol)
        return False

    def fences(self, symbols: set[str]) -> dict[str, Fence]:
        """What a snapshot taken now commits for ``symbols`` (owned ones only); clears ``touched``."""
        out = {
            s: Fence(
                epoch=self.epochs[s],
                positions={t: list(self.hwm[t]) for t in sorted(self.topics_of.get(s, ())) if t in self.hwm},
                alert_seq=self.alert_seq[s],
            )
            for s in sorted(symbols | self.touched)
            if s in self.epochs
        }
        self.touched = set()
        return out

    # -- alerts --------------------------------------------------------------------------------------------
    def send(self, symbol: str, payload: bytes, callback: Any, props: dict[str, str], ts_ms: int, timer: bool) -> None:
        """Publish one alert of an owned symbol: tick alerts with the symbol's next sequence id."""
        producer = self._producers.get((symbol, timer))
        if producer is None:
            producer = self._producers[(symbol, timer)] = self._create(symbol, timer)
        if timer:
            producer.send_async(payload, callback, properties=props, partition_key=symbol, event_timestamp=ts_ms)
            return
        seq = self.alert_seq[symbol] + 1
        self.alert_seq[symbol] = seq
        producer.send_async(
            payload, callback, properties=props, partition_key=symbol, event_timestamp=ts_ms, sequence_id=seq
        )

    def _create(self, symbol: str, timer: bool) -> pulsar.Producer:
        name = f"alerting.{self.alerts_topic.rsplit('/', 1)[-1]}.{symbol.replace('/', '-')}"
        name += ".timer" if timer else ""
        client = self.client
        deadline = time.monotonic() + _PRODUCER_WAIT_S
        while True:
            try:
                return client.create_producer(
                    self.alerts_topic,
                    producer_name=name,
                    batching_enabled=False,  # one alert per publish request: explicit ids stay per message
                    block_if_queue_full=True,
                    send_timeout_millis=0,
                )
            except Exception as exc:  # ProducerBusy while the previous owner's connection is still open
                if time.monotonic() > deadline:
                    raise BusError(f"cannot create producer {name} on {self.alerts_topic}: {exc}") from exc
                time.sleep(0.2)

    client: Any = None  # the service's pulsar.Client, set once connected

    def flush(self) -> None:
        """Wait for the broker's answers to every alert sent (writer thread, before acknowledging)."""
        for p in list(self._producers.values()):
            p.flush()

    def close(self) -> None:
        self.drop(list(self.epochs))
