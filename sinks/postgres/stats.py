"""The sink's live counters (updated by the sink thread only; read from anywhere: status file, metrics, --json)."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

_LATENCY_WINDOW = 1024


@dataclass
class SinkStats:
    """Live counters (updated by the sink thread only; read them from anywhere)."""

    received: int = 0
    stored: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # new rows per table
    duplicates: int = 0  # rows whose unique key already existed (redeliveries)
    ignored: int = 0  # events the sink does not store (candles, deltas without a top of book)
    dead_lettered: int = 0
    batches: int = 0  # committed transactions
    db_errors: int = 0
    broker_errors: int = 0
    last_event_ns: dict[str, int] = field(default_factory=dict)  # "venue:symbol" → newest stored ts_event
    commit_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))
    # first receive of a batch → its commit: what a reader waits for a received message to become visible
    visible_latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_WINDOW))
    mode: str = ""  # postgresql | timescaledb | timescaledb+toolkit, once detected
    cagg_refreshes: int = 0  # TimescaleDB: coalesced bottom-up refreshes of backfilled ranges (aggregates.py)
    cagg_refresh_errors: int = 0
    topics_added: int = 0  # topics of instruments added while running (registry-following)
    stalls: int = 0  # backlog not draining with a consumer connected (watch.py); stalled while it lasts
    resubscribes: int = 0
    stalled: bool = False
    batch_rows: Any = None  # a histogram child (sinks.postgres.metrics) observing rows per committed batch

    def _q(self, data: deque[float], q: float) -> float | None:
        ordered = sorted(data)
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    def latency_ms(self, q: float) -> float | None:
        return self._q(self.commit_latencies_s, q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": dict(self.stored),
            "stored_total": sum(self.stored.values()),
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "db_errors": self.db_errors,
            "broker_errors": self.broker_errors,
            "commit_p50_ms": self.latency_ms(0.50),
            "commit_p99_ms": self.latency_ms(0.99),
            "visible_p99_ms": self._q(self.visible_latencies_s, 0.99),
            "mode": self.mode,
            "cagg_refreshes": self.cagg_refreshes,
            "cagg_refresh_errors": self.cagg_refresh_errors,
            "topics_added": self.topics_added,
            **{"stalls": self.stalls, "resubscribes": self.resubscribes, "stalled": self.stalled},
        }
