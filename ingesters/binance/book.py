"""One symbol's local order book, kept in step with Binance's diff-depth stream by the documented procedure
(web-socket-streams.md, "How to manage a local order book correctly"):

1. buffer the diff events (each covers update ids ``[U, u]``);
2. fetch a REST snapshot (``lastUpdateId``) once a diff is buffered; a snapshot older than the first buffered
   diff is fetched again. Binance's page says "strictly less than ``U``"; Pulse asks again only when
   ``lastUpdateId + 1 < U`` — a snapshot at ``U - 1`` is exactly continued by that diff, so it is kept (the
   straddle rule below is what every client applies to it anyway);
3. drop buffered diffs with ``u <= lastUpdateId``;
4. the first diff applied must straddle the snapshot: ``U <= lastUpdateId + 1 <= u``;
5. every later diff must continue it: ``U == previous u + 1``; a diff with ``u`` at or below the book's id is a
   duplicate and is ignored. Anything else is a break: the book is discarded and the procedure starts over.

Each level carries its NEW absolute quantity, so re-applying a level is harmless: that is why a straddling diff
(and the first diff of a new connection after a renewal, :meth:`BookSync.rebase`) may be applied on top of a
book that already holds part of it. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ingesters.base.book import PriceLevels
from ingesters.binance.schemas import DepthSnapshot, DepthUpdateEvent

MAX_BUFFERED = 10_000  # diffs held while waiting for a snapshot; beyond that the wait starts over


class OrderBook(PriceLevels):
    """Price → quantity per side (best prices cached) at the update id of the last change applied."""

    __slots__ = ("update_id",)

    def __init__(self) -> None:
        super().__init__()
        self.update_id = 0

    def load(self, snap: DepthSnapshot) -> None:
        self._load(snap.bids, snap.asks)
        self.update_id = snap.last_update_id


@dataclass(slots=True)
class DiffOutcome:
    kind: Literal["applied", "stale", "buffered", "break"]
    want_snapshot: bool = False  # buffered the first diff: ask for a snapshot now
    reason: str = ""


@dataclass(slots=True)
class SnapshotOutcome:
    kind: Literal["synced", "too_old", "break", "unexpected"]
    applied: list[DepthUpdateEvent] = field(default_factory=list)  # buffered diffs applied on top of it
    reason: str = ""


class BookSync:
    """The procedure in the module docstring for one symbol."""

    __slots__ = ("_straddle", "book", "buffer", "snapshot_pending", "synced")

    def __init__(self) -> None:
        self.book = OrderBook()
        self.synced = False
        self.buffer: list[DepthUpdateEvent] = []
        self.snapshot_pending = False  # a snapshot was asked for and has not been applied
        self._straddle = False  # the next diff may straddle the book's id instead of continuing it

    def reset(self) -> None:
        """Discard the book and start over (the next diff is buffered and asks for a snapshot)."""
        self.book = OrderBook()
        self.synced = False
        self.buffer = []
        self.snapshot_pending = False
        self._straddle = False

    def rebase(self) -> None:
        """A new connection's diff stream starts here (a renewal): its windows need not line up with the old
        connection's, so its first new diff may straddle the book's id, as after a snapshot."""
        if self.synced:
            self._straddle = True

    def on_diff(self, ev: DepthUpdateEvent) -> DiffOutcome:
        if not self.synced:
            if len(self.buffer) >= MAX_BUFFERED:
                self.buffer.clear()  # the snapshot never came: start the wait again from this diff
            self.buffer.append(ev)
            want = not self.snapshot_pending
            self.snapshot_pending = True
            return DiffOutcome("buffered", want_snapshot=want)
        return self._apply(ev)

    def _apply(self, ev: DepthUpdateEvent) -> DiffOutcome:
        book = self.book
        last = book.update_id
        if ev.final_id <= last:
            return DiffOutcome("stale")
        if ev.first_id == last + 1 or (self._straddle and ev.first_id <= last + 1):
            book.apply(ev.bids, ev.asks)
            book.update_id = ev.final_id
            self._straddle = False
            return DiffOutcome("applied")
        reason = (
            f"diff [{ev.first_id}, {ev.final_id}] does not straddle the book's update id {last} + 1"
            if self._straddle
            else f"diff starts at {ev.first_id}, expected {last + 1} (previous u + 1)"
        )
        self.reset()
        return DiffOutcome("break", reason=reason)

    def on_snapshot(self, snap: DepthSnapshot) -> SnapshotOutcome:
        if self.synced or not self.buffer:
            self.snapshot_pending = False
            return SnapshotOutcome("unexpected", reason="no buffered diff is waiting for a snapshot")
        lid = snap.last_update_id
        if lid + 1 < self.buffer[0].first_id:
            # older than the stream we hold (ids lid+1 … U-1 would be missing): ask again
            return SnapshotOutcome("too_old", reason=f"snapshot {lid} is older than the first buffered diff "
                                   f"[{self.buffer[0].first_id}, …]")  # fmt: skip
        pending = [ev for ev in self.buffer if ev.final_id > lid]
        self.buffer = []
        self.snapshot_pending = False
        self.book.load(snap)
        self.synced = True
        self._straddle = True  # the first applied diff must straddle lastUpdateId + 1
        applied: list[DepthUpdateEvent] = []
        for ev in pending:
            out = self._apply(ev)
            if out.kind == "break":
                return SnapshotOutcome("break", applied, out.reason)
            if out.kind == "applied":
                applied.append(ev)
        return SnapshotOutcome("synced", applied)
