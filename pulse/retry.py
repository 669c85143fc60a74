"""Retry a call until a dependency (the database, the broker) answers again: the services' one retry loop, on
tenacity.

Capped exponential backoff with jitter (each wait drawn from [delay/2, delay], delay doubling up to
``max_delay_s``), a warning per failed attempt, and stop-awareness: once ``stop`` is set the loop gives up
(:class:`RetryStopped`) — at once, or after ``grace_after_stop_s`` of further attempts for work worth finishing
(a last snapshot); a wait ends early when ``stop`` is set. The ingesters' reconnect loop uses
:class:`ingesters.base.backoff.Backoff` instead (tenacity's waits too): it must reset its attempt count after a
healthy session, which a per-call loop never needs.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception_type

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


def jittered_backoff(initial_s: float, max_delay_s: float) -> Callable[[RetryCallState], float]:
    """A tenacity wait: attempt n waits a random time in [d/2, d], d = ``initial_s`` · 2ⁿ⁻¹ capped at ``max_delay_s``
    (half the delay is kept: a dependency that is back is retried soon, and clients do not retry in step)."""

    def wait(state: RetryCallState) -> float:
        delay = min(initial_s * 2 ** min(state.attempt_number - 1, 62), max_delay_s)
        return random.uniform(delay / 2, delay)

    return wait


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
    deadline: list[float] = []  # set when stop is first seen

    def failed(state: RetryCallState) -> None:
        if on_error is not None and state.outcome is not None:
            on_error(state.outcome.exception())  # type: ignore[arg-type]

    def stopped(_state: RetryCallState) -> bool:
        if not stop.is_set():
            return False
        if not deadline:
            deadline.append(time.monotonic() + grace_after_stop_s)
        return time.monotonic() >= deadline[0]

    def warn(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(f"{dependency} unavailable, retrying", action=what, retry_in_s=round(wait, 2),
                    error=str(exc)[:300])  # fmt: skip

    def sleep(seconds: float) -> None:
        if stop.is_set():
            time.sleep(seconds)  # the grace period: stop.wait would return at once
        else:
            stop.wait(seconds)

    retrying = Retrying(
        retry=retry_if_exception_type(errors),
        wait=jittered_backoff(initial_s, max_delay_s),
        stop=stopped,
        after=failed,
        before_sleep=warn,
        sleep=sleep,
    )
    try:
        return retrying(fn)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise RetryStopped(f"stopped while the {dependency} was unavailable ({what})") from last
