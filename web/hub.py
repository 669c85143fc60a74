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

**Writing** (``web.fanout``). ``direct`` (the default): each event becomes one complete WebSocket frame once
(:func:`web.protocol.text_frame`), shared by every client; a dispatch only files it in the subscribers'
outboxes and marks them, and once per burst of broker messages :meth:`Hub.flush` writes each marked client's
waiting frames to its transport in one ``write`` — no task per client, no wake-up per event. A client whose
transport buffers more than :data:`HIGH_WATER` bytes is *blocked* (that is its ``busy_since``) until the
buffer drains; its frames wait (and conflate) in its outbox meanwhile. ``tasks`` (the former design, kept to
measure against, ``bench/web.py``): one writer task per client woken per event, ``await ws.send_str`` per frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from web.protocol import text_frame

STUCK_S = 1.0  # a writer blocked this long on one batch means the client is not reading
HARD_FACTOR = 4  # past HARD_FACTOR x max_pending waiting trades a client is closed whatever its writer does
HIGH_WATER = 256 * 1024  # bytes buffered in a client's transport past which it is blocked (direct mode)
LOW_WATER = 64 * 1024  # ... and unblocked once the buffer is back under this
DRAIN_POLL_S = 0.02  # how often a blocked client's buffer is looked at


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

    __slots__ = ("_seq", "blocked", "busy_since", "closed_reason", "encode", "max_pending", "notify",
                 "on_give_up", "pending", "topics", "trades", "transport", "wake")  # fmt: skip

    def __init__(self, max_pending: int) -> None:
        self.pending: dict[object, Any] = {}  # insertion-ordered: topic → latest quote, or seq → frame
        self.trades = 0  # non-conflated frames waiting
        self.max_pending = max_pending
        self.wake = asyncio.Event()
        self.topics: set[str] = set()
        self.closed_reason: str | None = None  # set when the hub gave up on this client
        self.on_give_up: Callable[[str], None] | None = None  # the session closes the socket
        self.busy_since: float | None = None  # time.monotonic() when the writer began sending its current batch
        self._seq = 0
        self.encode: Callable[[str], Any] = str  # text → what the writer sends (set by the hub)
        self.notify: Callable[[Outbox], None] = _wake  # something is waiting (set by the hub)
        self.transport: Any = None  # direct mode: the client's transport, None once it closes
        self.blocked = False  # direct mode: its transport is full, nothing is written until it drains

    def put(self, text: str) -> None:
        """Append a message of our own (acks, errors, pongs). Never closes the client."""
        self.put_frame(self.encode(text))

    def put_frame(self, frame: Any) -> None:
        """Append an encoded frame that must not be conflated (snapshots). Never closes the client."""
        self._seq += 1
        self.pending[self._seq] = frame
        self.notify(self)

    def take(self) -> list[Any]:
        """Everything waiting, oldest first; the outbox is empty afterwards."""
        frames = list(self.pending.values())
        self.pending.clear()
        self.trades = 0
        self.wake.clear()
        return frames


def _wake(box: Outbox) -> None:
    box.wake.set()


@dataclass
class Hub:
    max_pending: int = 2000
    direct: bool = True  # web.fanout = "direct"; False: "tasks"
    stats: HubStats = field(default_factory=HubStats)
    subscribers: dict[str, set[Outbox]] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)  # topic → its latest frame (trade, quote, ticker topics)
    dirty: set[Outbox] = field(default_factory=set)  # direct mode: outboxes with something to write
    closing: bool = False  # shutting down: nothing more is written
    _flush_scheduled: bool = False

    def encode(self, text: str) -> Any:
        """An event's text as the hub hands it to clients: one complete WebSocket frame (direct) or the text."""
        return text_frame(text) if self.direct else text

    def outbox(self) -> Outbox:
        box = Outbox(self.max_pending)
        box.encode = self.encode
        if self.direct:
            box.notify = self._mark
        return box

    def _mark(self, box: Outbox) -> None:
        self.dirty.add(box)
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Direct mode: write every marked client's waiting frames, one transport write each."""
        self._flush_scheduled = False
        dirty, self.dirty = self.dirty, set()
        if self.closing:
            return
        delivered = 0
        for box in dirty:
            if box.blocked or box.closed_reason is not None or not box.pending:
                continue
            t = box.transport
            if t is None or t.is_closing():
                continue
            frames = box.take()
            t.write(frames[0] if len(frames) == 1 else b"".join(frames))
            delivered += len(frames)
            if t.get_write_buffer_size() > HIGH_WATER:
                box.blocked = True
                box.busy_since = time.monotonic()
                asyncio.get_running_loop().create_task(self._unblock(box))
        self.stats.delivered += delivered

    async def _unblock(self, box: Outbox) -> None:
        """Wait until the blocked client's buffer is back under :data:`LOW_WATER`. ``busy_since`` moves on
        whenever the buffer shrank: "stuck" (what closes a client with trades piling up) means no progress at
        all for :data:`STUCK_S`, not a client that reads slowly."""
        t = box.transport
        size = t.get_write_buffer_size() if t is not None else 0
        while t is not None and not t.is_closing() and box.closed_reason is None and size > LOW_WATER:
            await asyncio.sleep(DRAIN_POLL_S)
            now_size = t.get_write_buffer_size()
            if now_size < size:
                box.busy_since = time.monotonic()
            size = now_size
        box.blocked = False
        box.busy_since = None
        if box.pending:
            self._mark(box)

    def dispatch(self, topic: str, frame: Any, *, conflate: bool, remember: bool) -> None:
        """One event from the broker: remember it (``remember``: the topic's last value, sent first to a new
        subscriber) and offer it to the topic's subscribers (``conflate``: only the latest waits)."""
        self.stats.events_in += 1
        if remember:
            self.last[topic] = frame
        subs = self.subscribers.get(topic)
        if not subs:
            return
        direct = self.direct
        if conflate:
            for box in subs:
                pending = box.pending
                if topic in pending:
                    self.stats.conflated += 1
                pending[topic] = frame
                if not direct:
                    box.wake.set()
            if direct:
                self.dirty.update(subs)
                self._schedule()
            return
        slow: list[Outbox] = []
        now = 0.0
        for box in subs:
            box._seq += 1
            box.pending[box._seq] = frame
            box.trades += 1
            if not direct:
                box.wake.set()
            if box.trades > box.max_pending:
                now = now or time.monotonic()
                stuck = box.busy_since is not None and now - box.busy_since > STUCK_S
                if stuck or box.trades > HARD_FACTOR * box.max_pending:
                    slow.append(box)
        if direct:
            self.dirty.update(subs)
            self._schedule()
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

    def subscribe(self, box: Outbox, topics: Iterable[str]) -> list[Any]:
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

    def seed(self, topic: str, text: str) -> None:
        """A last value from elsewhere (the database), unless the broker already gave a newer one."""
        if topic not in self.last:
            self.last[topic] = self.encode(text)
