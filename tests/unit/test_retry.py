"""pulse.retry: the services' retry loop (backoff, counting, stop and the grace period after it)."""

from __future__ import annotations

import threading
import time

import pytest

from pulse.retry import RetryStopped, counting, retry_until_ok


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down #{self.calls}")
        return "ok"


def test_retries_until_the_call_succeeds_and_counts_each_error() -> None:
    fn, seen = Flaky(3), []
    out = retry_until_ok(fn, what="write", dependency="database", errors=(ConnectionError,), stop=threading.Event(),
                         on_error=seen.append, initial_s=0.001, max_delay_s=0.002)  # fmt: skip
    assert out == "ok" and fn.calls == 4
    assert [str(e) for e in seen] == ["down #1", "down #2", "down #3"]


def test_other_errors_are_not_retried() -> None:
    def boom() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        retry_until_ok(boom, what="x", dependency="database", errors=(ConnectionError,), stop=threading.Event())


def test_stop_ends_the_retries_at_once_without_grace() -> None:
    stop = threading.Event()
    stop.set()
    fn = Flaky(100)
    with pytest.raises(RetryStopped, match="database was unavailable"):
        retry_until_ok(fn, what="x", dependency="database", errors=(ConnectionError,), stop=stop)
    assert fn.calls == 1


def test_a_stop_during_the_wait_wakes_it() -> None:
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(RetryStopped):
        retry_until_ok(Flaky(100), what="x", dependency="broker", errors=(ConnectionError,), stop=stop,
                       initial_s=30.0, max_delay_s=30.0)  # fmt: skip
    assert time.monotonic() - t0 < 5.0  # not the 15-30 s backoff


def test_the_grace_period_keeps_trying_after_stop() -> None:
    stop = threading.Event()
    stop.set()
    fn = Flaky(2)
    out = retry_until_ok(fn, what="last snapshot", dependency="database", errors=(ConnectionError,), stop=stop,
                         initial_s=0.001, max_delay_s=0.002, grace_after_stop_s=5.0)  # fmt: skip
    assert out == "ok" and fn.calls == 3


def test_counting_adds_one_per_failed_attempt() -> None:
    class Stats:
        db_errors = 0

    st = Stats()
    retry_until_ok(Flaky(2), what="x", dependency="database", errors=(ConnectionError,), stop=threading.Event(),
                   on_error=counting(st, "db_errors"), initial_s=0.001, max_delay_s=0.002)  # fmt: skip
    assert st.db_errors == 2


def test_each_wait_is_jittered_within_half_to_the_capped_delay() -> None:
    from tenacity import RetryCallState

    from pulse.retry import jittered_backoff

    wait = jittered_backoff(0.1, 1.0)
    state = RetryCallState(None, None, (), {})
    for attempt, delay in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0), (500, 1.0)]:
        state.attempt_number = attempt
        waits = [wait(state) for _ in range(200)]
        assert all(delay / 2 <= w <= delay for w in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > delay / 10  # jittered, not a fixed delay
