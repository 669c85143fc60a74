"""Fan-out with bounded memory per client: conflated quotes, a bounded trade buffer, slow clients closed.

Each event arrives once (one reader per topic, :mod:`web.feeds`), is turned into its JSON text frame once, and
is offered to every client subscribed to its topic. A client's :class:`Outbox` holds what its writer has not
sent yet, in arrival order:

* a **conflated** frame (``quote``, ``ticker``) replaces the one of the same topic still waiting (it keeps the
  waiting one's place, so per-instrument order holds and a quote is never older than one already sent);
* any other frame (``trade``, ``status``, alerts, fills) is appended. A client is closed with
  :data:`~web.protocol.CLOSE_SLOW_CONSUMER` — counted in :attr:`Hub.stats` — rather than grow the gateway's
  memory when more than ``max_pending`` of them wait while its writer has been stuck on the socket for over
  :data:`STUCK_S` (the client does not read), or when more than ``HARD_FACTOR x max_pending`` wait at all. The
  grace matters on a busy machine: the gateway's loop may be held up and then hand a reading client a burst of
  several hundred trades at once, which is not the client's fault (the tests saw exactly that).

So one client holds at most ``HARD_FACTOR x max_pending`` trades plus one quote per subscribed topic, plus the
batch its writer is sending (taken out of the outbox whole, so bounded by the same numbers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

STUCK_S = 1.0  # a writer blocked this long on one batch means the client is not reading
HARD_FACTOR = 4  # past HARD_FACTOR x max_pending waiting trades a client is closed whatever its writer does


@dataclass
class HubStats:
    events_in: int = 0  # frames received from the broker
    delivered: int = 0  # frames handed to client sockets
    conflated: int = 0  # quotes replaced before a slow client got them
    slow_closed: int = 0  # clients closed for falling too far behind
    bad_messages: int = 0  # control messages answered with an error frame
    undecodable: int = 0  # broker messages that were not Pulse events (skipped, logged)
    duplicates: int = 0  # broker redeliveries dropped (an event not newer than one already passed on)
    clients: int = 0
    clients_total: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Outbox:
    """What one client still has to receive. Not thread-safe: event loop only."""

    __slots__ = ("_seq", "busy_since", "closed_reason", "max_pending", "on_give_up", "pending", "topics", "trades",
                 "wake")  # fmt: skip

    def __init__(self, max_pending: int) -> None:
        self.pending: dict[object, str] = {}  # insertion-ordered: topic → latest quote, or seq → frame
        self.trades = 0  # non-conflated frames waiting
        self.max_pending = max_pending
        self.wake = asyncio.Event()
        self.topics: set[str] = set()
        self.closed_reason: str | None = None  # set when the hub gave up on this client
        self.on_give_up: Callable[[str], None] | None = None  # the session closes the socket
        self.busy_since: float | None = None  # time.monotonic() when the writer began sending its current batch
        self._seq = 0

    def put(self, frame: str) -> None:
        """Append a frame that must not be conflated (acks, snapshots, trades). Never closes the client."""
        self._seq += 1
        self.pending[self._seq] = frame
        self.wake.set()

    def take(self) -> list[str]:
        """Everything waiting, oldest first; the outbox is empty afterwards."""
        frames = list(self.pending.values())
        self.pending.clear()
        self.trades = 0
        self.wake.clear()
        return frames


@dataclass
class Hub:
    max_pending: int = 2000
    stats: HubStats = field(default_factory=HubStats)
    subscribers: dict[str, set[Outbox]] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)  # topic → its latest frame (trade, quote, ticker topics)

    def dispatch(self, topic: str, frame: str, *, conflate: bool, remember: bool) -> None:
        """One event from the broker: remember it (``remember``: the topic's last value, sent first to a new
        subscriber) and offer it to the topic's subscribers (``conflate``: only the latest waits)."""
        self.stats.events_in += 1
        if remember:
            self.last[topic] = frame
        subs = self.subscribers.get(topic)
        if not subs:
            return
        if conflate:
            for box in subs:
                pending = box.pending
                if topic in pending:
                    self.stats.conflated += 1
                pending[topic] = frame
                box.wake.set()
            return
        slow: list[Outbox] = []
        now = 0.0
        for box in subs:
            box._seq += 1
            box.pending[box._seq] = frame
            box.trades += 1
            box.wake.set()
            if box.trades > box.max_pending:
                now = now or time.monotonic()
                stuck = box.busy_since is not None and now - box.busy_since > STUCK_S
                if stuck or box.trades > HARD_FACTOR * box.max_pending:
                    slow.append(box)
        for box in slow:
            self.give_up(box, f"slow consumer: more than {box.max_pending} events waiting")

    def give_up(self, box: Outbox, reason: str) -> None:
        """Stop feeding ``box`` and free what it holds; its writer sees ``closed_reason`` and closes the socket."""
        if box.closed_reason is not None:
            return
        box.closed_reason = reason
        self.stats.slow_closed += 1
        self.drop(box)
        box.pending.clear()
        box.trades = 0
        box.wake.set()
        if box.on_give_up is not None:
            box.on_give_up(reason)

    def subscribe(self, box: Outbox, topics: Iterable[str]) -> list[str]:
        """Add ``box`` to ``topics``; returns the last known frames of those topics (to send first)."""
        snapshot = []
        for t in topics:
            self.subscribers.setdefault(t, set()).add(box)
            box.topics.add(t)
            frame = self.last.get(t)
            if frame is not None:
                snapshot.append(frame)
        return snapshot

    def unsubscribe(self, box: Outbox, topics: Iterable[str]) -> None:
        for t in topics:
            subs = self.subscribers.get(t)
            if subs is not None:
                subs.discard(box)
                if not subs:
                    del self.subscribers[t]
            box.topics.discard(t)
            box.pending.pop(t, None)

    def drop(self, box: Outbox) -> None:
        self.unsubscribe(box, list(box.topics))

    def seed(self, topic: str, frame: str) -> None:
        """A last value from elsewhere (the database), unless the broker already gave a newer one."""
        self.last.setdefault(topic, frame)
