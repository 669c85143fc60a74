"""What every ingester shares: publishing, counters, dead letters, last-tick tracking and its status file.

Venue packages own the transport and the parsing; they hand events and bad frames to an
:class:`IngestContext` and never talk to Pulsar directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulse.bus import PublisherBase
from pulse.log import get_logger, mask
from pulse.models import Event, Status, StatusKind
from pulse.status import StatusFile, read_status
from pulse.topics import CHANNEL_OF_EVENT, dead_letter_topic, topic

log = get_logger(__name__)

RAW_LOG_LIMIT = 300  # characters of a bad frame that go into the log line (the dead letter keeps it all)
LOG_BURST = 10  # bad frames logged one by one per interval; the rest only counted …
LOG_INTERVAL_S = 60.0  # … and summed up in one line when the interval ends (every frame is still dead-lettered)


class _LogLimiter:
    """First ``burst`` events of each ``interval_s`` pass; then one summary with the count of those held back."""

    def __init__(self, burst: int = LOG_BURST, interval_s: float = LOG_INTERVAL_S) -> None:
        self.burst = burst
        self.interval_s = interval_s
        self._window_start = float("-inf")
        self.passed = 0
        self.suppressed = 0  # held back in the current window

    def allow(self, now: float) -> tuple[bool, int]:
        """(log this one?, how many were held back in the window that just ended: report them now)"""
        ended = 0
        if now - self._window_start >= self.interval_s:
            ended, self.suppressed = self.suppressed, 0
            self._window_start, self.passed = now, 0
        if self.passed < self.burst:
            self.passed += 1
            return True, ended
        self.suppressed += 1
        return False, ended


@dataclass
class Counters:
    frames: int = 0  # raw messages received from the venue
    events: int = 0  # canonical events handed to the publisher
    parse_errors: int = 0  # malformed or unknown frames (each dead-lettered)
    checksum_failures: int = 0  # book checksum mismatches (each followed by a resync)
    reconnects: int = 0  # sessions started after the first one
    markers: int = 0  # Status markers published (connected, gap, resync, stale, …), one per topic
    gaps: int = 0  # gap markers published
    stale: int = 0  # watchdog timeouts
    rejected: int = 0  # subscriptions the venue refused (each dead-lettered)
    dead_letters: int = 0


class IngestContext:
    def __init__(
        self,
        publisher: PublisherBase,
        *,
        venue: str,
        name: str,
        status_home: Path | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.publisher = publisher
        self.venue = venue
        self.name = name
        self.clock = clock
        self.counters = Counters()
        self.last_tick: dict[str, int] = {}  # symbol → ts_recv of its latest event (ns)
        self.last_price: dict[str, str] = {}
        self._status = StatusFile(status_home, name) if status_home else None
        #: symbol → ts_recv of its last event in this ingester's previous run (read from the status file it
        #: left): the first session marks the hole between that run and this one with a ``gap``
        self.previous_run: dict[str, int] = _previous_last_ticks(status_home, name) if status_home else {}
        self._dlq = dead_letter_topic(f"ingest.{venue}", publisher.tenant)
        self.extra: dict[str, Any] = {}
        #: venue-specific counters merged into every snapshot (e.g. the Kraken parser's verified checksums)
        self.probes: list[Callable[[], dict[str, int]]] = []
        self._log_limits: dict[str, _LogLimiter] = {}  # per dead-letter kind

    # -- events ---------------------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        self.counters.events += 1
        first = event.symbol not in self.last_tick
        self.last_tick[event.symbol] = event.ts_recv
        if first:  # a pair's first event goes to the status file at once (not at the next 0.5 s write): a crash
            self.write_status()  # right after it still leaves the restarted process the pair's hole to mark
        price = getattr(event, "price", None) or getattr(event, "bid", None)
        if price is not None:
            self.last_price[event.symbol] = str(price)
        self.publisher.publish(event)

    def status(self, symbol: str, kind: StatusKind, detail: str = "", channels: tuple[str, ...] = ()) -> None:
        """Publish a Status marker in-band on each of the instrument's data topics, so consumers see it in order."""
        now = self.clock()
        ev = Status(venue=self.venue, symbol=symbol, ts_event=now, ts_recv=now, kind=kind, detail=detail)
        if kind == "gap":
            self.counters.gaps += 1
        for ch in channels or ("status",):
            self.counters.markers += 1
            self.publisher.publish(ev, topic(self.publisher.namespace, self.venue, symbol, ch, self.publisher.tenant))

    def gap(self, symbol: str, detail: str, channels: tuple[str, ...] = ()) -> None:
        """A ``gap`` marker on the instrument's topics: events between the markers may be missing. It also
        covers the hole since the previous run, so that one is not marked again."""
        self.previous_run.pop(symbol, None)
        self.status(symbol, "gap", detail, channels)

    def restart_gap(self, symbol: str, channels: tuple[str, ...] = ()) -> bool:
        """If ``symbol`` streamed in this ingester's previous run (a restart, a crash, a SIGKILL), publish the
        ``gap`` marker for the time between that run's last event and this one's first. Once per symbol."""
        last = self.previous_run.get(symbol)
        if last is None:
            return False
        when = datetime.fromtimestamp(last / 1e9, UTC).isoformat(timespec="milliseconds")
        self.gap(symbol, f"restarted; data since the previous run's last event ({when}) may be missing", channels)
        return True

    def dead_letter(self, raw: bytes | str, error: str, *, kind: str = "parse_error", **props: str) -> None:
        """Count, log (truncated) and publish a bad frame with its error to the venue's dead-letter topic."""
        data = raw.encode() if isinstance(raw, str) else raw
        self.counters.dead_letters += 1
        self._log_bad(kind, error, data)
        self.publisher.publish_raw(
            self._dlq,
            data,
            {"error": error[:1000], "kind": kind, "venue": self.venue, "source": self.name, **props},
        )

    def _log_bad(self, kind: str, error: str, data: bytes) -> None:
        """One warning per bad frame up to LOG_BURST per LOG_INTERVAL_S and kind; beyond that a summary line
        per interval with the count, so a venue spewing garbage cannot flood the log."""
        limiter = self._log_limits.setdefault(kind, _LogLimiter())
        allowed, held_back = limiter.allow(time.monotonic())
        what = kind.replace("_", " ")
        if held_back:
            log.warning(f"{what}: more not logged", venue=self.venue, not_logged=held_back,
                        interval_s=limiter.interval_s, dead_letters=self.counters.dead_letters)  # fmt: skip
        if allowed:
            text = mask(data[:RAW_LOG_LIMIT].decode("utf-8", "replace"))
            log.warning(what, venue=self.venue, error=error, raw=text, raw_bytes=len(data))
            if limiter.passed == limiter.burst:
                log.warning(f"{what}: logging at most {limiter.burst} per {limiter.interval_s:g}s from now; "
                            "every one is still counted and dead-lettered", venue=self.venue)  # fmt: skip

    def flush_log_summary(self) -> None:
        """Log the count of bad frames held back in the current interval (at the end of a run)."""
        for kind, limiter in self._log_limits.items():
            if limiter.suppressed:
                log.warning(f"{kind.replace('_', ' ')}: more not logged", venue=self.venue,
                            not_logged=limiter.suppressed, dead_letters=self.counters.dead_letters)  # fmt: skip
                limiter.suppressed = 0

    # -- reporting ------------------------------------------------------------------------------------
    @property
    def status_file(self) -> StatusFile | None:
        return self._status

    def snapshot(self) -> dict[str, Any]:
        st = self.publisher.stats
        probed: dict[str, int] = {}
        for probe in self.probes:
            probed.update(probe())
        return {
            **asdict(self.counters),
            **probed,
            "sent": sum(st.sent.values()),  # messages handed to the client (events, markers, dead letters)
            "published": st.total_acked,  # …of which the broker acknowledged
            "publish_failed": st.total_failed,
            "pending": st.pending,
            "broker_disconnects": st.broker_disconnects,  # connection losses (each one logged)
            # seconds the broker has confirmed nothing while messages wait (0: confirming; each stall logged)
            "unconfirmed_s": round(time.time() - st.unconfirmed_since, 1) if st.unconfirmed_since else 0,
            "topics": dict(st.acked),
        }

    def write_status(self) -> None:
        if self._status:
            self._status.write(
                self.snapshot(),
                venue=self.venue,
                last_tick=dict(self.last_tick),
                last_price=dict(self.last_price),
                **self.extra,
            )

    async def status_loop(self, interval: float = 0.5) -> None:
        while True:
            self.write_status()
            await asyncio.sleep(interval)

    @contextlib.asynccontextmanager
    async def reporting(self, interval: float = 0.5) -> AsyncIterator[None]:
        """Write the status file every ``interval`` s while the body runs, and once more at the end."""
        task = asyncio.create_task(self.status_loop(interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.flush_log_summary()
            self.write_status()


def _previous_last_ticks(home: Path, name: str) -> dict[str, int]:
    """The per-symbol last ticks the previous process of this name left in its status file ({} if none)."""
    doc = read_status(home, name)
    ticks = doc.get("last_tick") if doc else None
    if not isinstance(ticks, dict):
        return {}
    return {s: t for s, t in ticks.items() if isinstance(s, str) and type(t) is int}


def channel_of(event: Event) -> str:
    return CHANNEL_OF_EVENT[type(event).__struct_config__.tag]  # type: ignore[attr-defined]
