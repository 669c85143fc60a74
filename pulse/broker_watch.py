"""Watches on a service's broker: its connection (:class:`BrokerWatch`) and its confirmations (:class:`AckWatch`).

The C++ client hides both: it reconnects by itself and reports that only in its own log file, and a publish it
cannot get confirmed just waits (no send timeout: see :class:`pulse.bus.Bus`). A broker whose disk is full is the
case that shows it: pulsar-lite drops the producer's connection on each failed write, the client reconnects and
resends for ever, and the service's pending count grows with nothing else to say why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pulse.log import get_logger

log = get_logger(__name__)


class BrokerWatch:
    """Says in the service's own log, and counts, when its connection to the broker drops and comes back.

    The C++ client reconnects by itself and reports that only in its own log file
    (``<home>/logs/pulsar-client.log``); a service calls :meth:`check` with its producers or consumers every
    half second or so (``is_connected()`` is a cheap local read) and gets one structured warning when the
    connection is lost (``on_lost`` counts it) and one info line with the outage's length when it is back."""

    def __init__(self, service: str, url: str, on_lost: Callable[[], None] | None = None) -> None:
        self.service = service
        self.url = url
        self.on_lost = on_lost
        self.down_since: float | None = None  # time.monotonic() of the loss, while disconnected

    def check(self, handles: Any) -> bool:
        """Whether every handle (producer or consumer; None ignored) is connected; logs and counts changes."""
        connected = True
        for h in handles:
            if h is not None and not h.is_connected():
                connected = False
                break
        if not connected and self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("broker connection lost", service=self.service, reconnecting=True,
                        broker=self.url)  # fmt: skip
            if self.on_lost is not None:
                self.on_lost()
        elif connected and self.down_since is not None:
            down_s = round(time.monotonic() - self.down_since, 1)
            self.down_since = None
            log.info("broker connection restored", service=self.service, broker=self.url, down_s=down_s)
        return connected


class AckWatch:
    """Says in the service's log when the broker stops confirming publishes, and when it confirms again.

    ``check`` is called every fraction of a second with the count of answered messages (acked or failed) and the
    pending count. While messages are pending and none was answered for ``stall_s``, one warning names what the
    operator should look at (repeated every ``repeat_s`` while it lasts, with the pending count then); when answers
    resume, one info line with how long it lasted. ``on_change(since)`` receives the wall-clock start of the
    stall (epoch seconds), and 0.0 when it ends, for the service's status file and metrics."""

    def __init__(
        self,
        service: str,
        url: str,
        *,
        stall_s: float = 10.0,
        repeat_s: float = 60.0,
        on_change: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service, self.url = service, url
        self.stall_s, self.repeat_s = stall_s, repeat_s
        self.on_change = on_change
        self.clock = clock
        self.answered = -1
        self.progress_at = clock()  # the latest answer (or the latest moment nothing was pending)
        self.stalled_since: float | None = None  # clock() of the last answer before a stall, while stalled
        self.warned_at: float | None = None

    def check(self, answered: int, pending: int, *, connected: bool = True) -> None:
        now = self.clock()
        if answered != self.answered or pending <= 0:
            self.answered, self.progress_at = answered, now
            if self.stalled_since is not None:
                lasted = round(now - self.stalled_since, 1)
                self.stalled_since = self.warned_at = None
                log.info(f"the broker confirms publishes again after {lasted:.0f} s", service=self.service,
                         broker=self.url, unconfirmed_s=lasted, pending=pending)  # fmt: skip
                if self.on_change is not None:
                    self.on_change(0.0)
            return
        waited = now - self.progress_at
        if waited < self.stall_s:
            return
        if self.stalled_since is None:
            self.stalled_since = self.progress_at
            if self.on_change is not None:
                self.on_change(time.time() - waited)
        if self.warned_at is None or now - self.warned_at >= self.repeat_s:
            self.warned_at = now
            where = "" if connected else " (the connection keeps dropping)"
            log.warning(
                f"the broker has not confirmed a publish for {waited:.0f} s, {pending:,} pending{where}: "
                "is its storage full? `pulse status` checks the embedded broker's disk; see also the broker's log",
                service=self.service,
                broker=self.url,
                unconfirmed_s=round(waited, 1),
                pending=pending,
                connected=connected,
            )
