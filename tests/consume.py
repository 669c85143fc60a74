"""Reading a test's messages back from the broker: receive until the expected count, then drain."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pulsar

T = TypeVar("T")


def drain(
    consumer: pulsar.Consumer,
    expected: int,
    *,
    deadline_s: float,
    take: Callable[[pulsar.Message], list[T]],
    wait_ms: int = 1000,
) -> list[T]:
    """Receive and acknowledge messages; ``take(msg)`` gives the items a message contributes (none to skip it).

    Waits up to ``wait_ms`` per receive until ``expected`` items came, then keeps draining until 300 ms pass
    with nothing more (so an extra, unexpected message is seen too), or until ``deadline_s`` runs out.
    """
    out: list[T] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            msg = consumer.receive(timeout_millis=300 if len(out) >= expected else wait_ms)
        except pulsar.Timeout:
            if len(out) >= expected:
                break
            continue
        consumer.acknowledge(msg)
        out += take(msg)
    return out
