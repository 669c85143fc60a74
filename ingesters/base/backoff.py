"""Capped exponential backoff with jitter, reset after a healthy session.

The delays come from tenacity's ``wait_exponential_jitter`` (initial · 2ⁿ plus up to ``initial`` of random
jitter, capped at ``maximum``), driven by our own attempt counter because the reconnect loop must reset it
after a successful subscribe — something a single ``Retrying`` block cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass

import tenacity


@dataclass
class _Attempt:
    attempt_number: int


class Backoff:
    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"invalid backoff: initial={initial} maximum={maximum}")
        self._wait = tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self.maximum = maximum
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        return min(float(self._wait(_Attempt(self.attempt))), self.maximum)  # type: ignore[arg-type]

    def reset(self) -> None:
        self.attempt = 0
