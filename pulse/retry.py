"""Retry a call until a dependency (the database, the broker) answers again: the services' one retry loop.

Capped exponential backoff with jitter (each wait drawn from [delay/2, delay], delay doubling up to
``max_delay_s``), a warning per failed attempt, and stop-awareness: once ``stop`` is set the loop gives up
(:class:`RetryStopped`) — at once, or after ``grace_after_stop_s`` of further attempts for work worth finishing
(a last snapshot). The ingesters' reconnect loop uses :class:`ingesters.base.backoff.Backoff` instead: it must
reset its attempt count after a healthy session, which a per-call loop never needs.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pulse.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")


def counting(stats: object, field: str) -> Callable[[BaseException], None]:
    """An ``on_error`` that adds 1 to ``stats.<field>`` per failed attempt."""

    def count(_exc: BaseException) -> None:
        setattr(stats, field, getattr(stats, field) + 1)

    return count


class RetryStopped(Exception):
    """Stop was requested while the dependency was still unavailable."""


def retry_until_ok(
    fn: Callable[[], T],
    *,
    what: str,
    dependency: str,
    errors: tuple[type[BaseException], ...],
    stop: threading.Event,
    on_error: Callable[[BaseException], None] | None = None,
    initial_s: float = 0.1,
    max_delay_s: float = 10.0,
    grace_after_stop_s: float = 0.0,
) -> T:
    """Call ``fn`` until it returns without raising one of ``errors``; return its result.

    ``what`` names the action and ``dependency`` what is unavailable (both in the log line); ``on_error`` is
    called with each caught error (counters). Waits end early when ``stop`` is set; then the call is tried
    until ``grace_after_stop_s`` has passed, and :class:`RetryStopped` is raised.
    """
    delay = initial_s
    deadline: float | None = None
    while True:
        try:
            return fn()
        except errors as exc:
            if on_error is not None:
                on_error(exc)
            if stop.is_set():
                deadline = deadline if deadline is not None else time.monotonic() + grace_after_stop_s
                if time.monotonic() >= deadline:
                    raise RetryStopped(f"stopped while the {dependency} was unavailable ({what})") from exc
            wait = random.uniform(delay / 2, delay)
            log.warning(f"{dependency} unavailable, retrying", action=what, retry_in_s=round(wait, 2),
                        error=str(exc)[:300])  # fmt: skip
            if stop.is_set():
                time.sleep(wait)  # the grace period: stop.wait would return at once
            else:
                stop.wait(wait)
            delay = min(delay * 2, max_delay_s)
