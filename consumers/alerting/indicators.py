"""Incremental indicators, O(1) (amortised) per update, deterministic, and snapshot-able.

Each indicator is a mutable msgspec struct holding only plain numbers and lists, so the engine's state
snapshot is ``msgspec.msgpack.encode(indicator)`` and a restore is ``msgspec.convert(data, Type)`` — no
pickling, no custom serialisers, and a restored indicator continues bit-for-bit where the old one stopped.

Values are floats: these are statistics (averages, percentages, z-scores), never prices that get stored or
compared to a user's price level (``price_cross`` compares exact Decimals).
"""

from __future__ import annotations

import math

import msgspec

#: A running float sum is recomputed exactly (``math.fsum``) every this many updates, so rounding error of
#: add/subtract pairs cannot accumulate over a long-running service (amortised O(1)).
_RESUM_EVERY = 4096


class SMA(msgspec.Struct, kw_only=True):
    """Simple moving average over the last ``n`` samples (ring buffer + running sum)."""

    n: int
    buf: list[float] = msgspec.field(default_factory=list)
    pos: int = 0  # next slot to overwrite once the buffer is full
    total: float = 0.0
    updates: int = 0

    def update(self, x: float) -> None:
        buf = self.buf
        if len(buf) < self.n:
            buf.append(x)
            self.total += x
        else:
            self.total += x - buf[self.pos]
            buf[self.pos] = x
            self.pos = (self.pos + 1) % self.n
        self.updates += 1
        if self.updates % _RESUM_EVERY == 0:
            self.total = math.fsum(buf)

    @property
    def ready(self) -> bool:
        return len(self.buf) >= self.n

    @property
    def value(self) -> float:
        return self.total / len(self.buf) if self.buf else math.nan


class EMA(msgspec.Struct, kw_only=True):
    """Exponential moving average with ``alpha = 2 / (n + 1)``, seeded with the SMA of the first ``n`` samples
    (the usual convention, so it is ``ready`` after ``n`` samples like the SMA of the same length)."""

    n: int
    count: int = 0
    value: float = 0.0

    def update(self, x: float) -> None:
        if self.count < self.n:
            self.count += 1
            self.value += (x - self.value) / self.count  # running mean of the seed window
        else:
            self.value += (2.0 / (self.n + 1)) * (x - self.value)

    @property
    def ready(self) -> bool:
        return self.count >= self.n


class WindowedChange(msgspec.Struct, kw_only=True):
    """Percent change of a series against its value as of ``window_ns`` ago (a step function of the samples).

    Samples are kept in arrival order from ``head``; a sample equal to the previous one is not stored (it does
    not change the step function), so a quiet quote stream costs no memory. Each update drops samples that can
    never again be "the value as of the window start", so every sample is appended and dropped once: amortised
    O(1). :meth:`update` returns ``None`` until the series is older than the window.
    """

    window_ns: int
    ts: list[int] = msgspec.field(default_factory=list)
    px: list[float] = msgspec.field(default_factory=list)
    head: int = 0

    def update(self, t: int, x: float) -> float | None:
        ts, px = self.ts, self.px
        if not px or px[-1] != x:
            ts.append(t)
            px.append(x)
        start = t - self.window_ns
        h = self.head
        n = len(ts)
        while h + 1 < n and ts[h + 1] <= start:
            h += 1
        if h > 64 and h * 2 > n:  # compact: the dropped prefix is the larger half
            del ts[:h], px[:h]
            h = 0
        if h != self.head:  # a msgspec attribute write costs more than the comparison (hot path)
            self.head = h
        if ts[h] > start:
            return None
        ref = px[h]
        return (x / ref - 1.0) * 100.0 if ref else None


class BucketVolume(msgspec.Struct, kw_only=True):
    """Volume per fixed time bucket and the mean/std of the previous ``n`` completed buckets.

    The baseline statistics are computed when a bucket closes (O(n), once per bucket); each trade is O(1).
    Empty buckets between two trades count as volume 0 (at most ``n`` of them are materialised).
    """

    interval_ns: int
    n: int
    bucket: int = -1  # index (ts // interval_ns) of the current bucket; -1 before the first trade
    current: float = 0.0
    ring: list[float] = msgspec.field(default_factory=list)
    pos: int = 0
    mean: float = 0.0
    std: float = 0.0

    def add(self, t: int, volume: float) -> tuple[bool, float | None]:
        """Add a trade; return (a bucket closed before this trade, the closed bucket's z-score vs its baseline)."""
        b = t // self.interval_ns
        closed_z: float | None = None
        closed = False
        if self.bucket < 0:
            self.bucket = b
        elif b > self.bucket:
            closed = True
            closed_z = self.z(self.current)
            self._push(self.current)
            for _ in range(min(b - self.bucket - 1, self.n)):
                self._push(0.0)
            self.bucket = b
            self.current = 0.0
            self._stats()
        self.current += volume
        return closed, closed_z

    def _push(self, v: float) -> None:
        if len(self.ring) < self.n:
            self.ring.append(v)
        else:
            self.ring[self.pos] = v
            self.pos = (self.pos + 1) % self.n

    def _stats(self) -> None:
        ring = self.ring
        m = math.fsum(ring) / len(ring)
        self.mean = m
        self.std = math.sqrt(math.fsum((v - m) ** 2 for v in ring) / len(ring))

    @property
    def ready(self) -> bool:
        return len(self.ring) >= self.n

    def z(self, v: float) -> float | None:
        """z-score of ``v`` against the baseline (population std); ``inf`` above a perfectly flat baseline."""
        if not self.ready:
            return None
        if self.std == 0.0:
            return math.inf if v > self.mean else 0.0
        return (v - self.mean) / self.std
