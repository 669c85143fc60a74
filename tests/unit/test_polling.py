"""pulse.polling: poll until the value changes, survive failed reads, stop on halt."""

from __future__ import annotations

import threading

from pulse.polling import poll_until_changed


def test_returns_the_first_value_that_differs_and_retries_failed_reads() -> None:
    values = iter([ConnectionError("down"), (1, 2), (1, 2), (1, 2, 3)])
    reads = []

    def read() -> tuple[int, ...]:
        v = next(values)
        reads.append(v)
        if isinstance(v, Exception):
            raise v
        return v

    got = poll_until_changed(read, lambda v: v == (1, 2), every_s=0.001, halt=threading.Event(),
                             errors=(ConnectionError,), what="test")  # fmt: skip
    assert got == (1, 2, 3) and len(reads) == 4


def test_halt_ends_it_with_none() -> None:
    halt = threading.Event()
    threading.Timer(0.05, halt.set).start()
    assert poll_until_changed(lambda: 1, lambda v: v == 1, every_s=0.01, halt=halt, errors=(), what="test") is None
