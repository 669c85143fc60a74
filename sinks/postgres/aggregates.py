"""The sink's side of the TimescaleDB candle aggregates: create them at start, refresh backfilled ranges.

Continuous-aggregate policies only look back a bounded window (:data:`~sinks.postgres.timescale_caggs.
POLICIES`), and real-time aggregation only covers time above the watermark. Rows backfilled into the past
(the ``historical`` namespace) land below it: until that range is refreshed, the aggregates do not show them.
So the sink:

* at start, after the migrations and hypertables (:func:`ensure`), creates the hierarchical candle aggregates
  and their refresh policies (:func:`~sinks.postgres.timescale_caggs.ensure_candle_aggregates`), idempotently,
  under the migrations' advisory lock (two sinks starting together do not race on ``CREATE``);
* after each commit, :meth:`AggregateRefresher.committed` widens one pending ``[min time, max time]`` with the
  committed rows of historical topics (trades and quotes only — the aggregates' sources) — no I/O there;
* a thread of its own (own autocommit connection: ``CALL refresh_continuous_aggregate`` cannot run in a
  transaction) refreshes the pending range bottom-up, 1 s → 1 min → 5 min → 1 h → 1 day
  (:func:`~sinks.postgres.timescale_caggs.refresh_after_backfill`), *coalesced*: once no commit happened for
  ``idle_s`` (the backfill paused or ended), or every ``busy_every_s`` while commits keep coming — never per
  batch. On stop the pending range is refreshed one last time.

A failed refresh (database unavailable, …) keeps the range pending and is retried after ``busy_every_s``.
Known limit: a range still pending when the sink is killed (or stopped with the database down) is not
refreshed later — its rows are committed and acknowledged, so nothing redelivers them; call
:func:`~sinks.postgres.timescale_caggs.refresh_after_backfill` for it by hand.

Plain PostgreSQL needs none of this: candles are computed by SQL from the raw tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg

from pulse.log import get_logger
from sinks.postgres.timescale_caggs import SOURCES, ensure_candle_aggregates, refresh_after_backfill

log = get_logger(__name__)

#: The tables the candle aggregates read (``trades`` for trade candles, ``quotes`` for bid/ask).
AGGREGATED_TABLES = frozenset(s[0] for s in SOURCES.values())
_TS = 3  # ts_event_ns in a trades/quotes row (schema.COLUMNS: venue, symbol, time, ts_event_ns, …)
IDLE_S = 1.0
BUSY_EVERY_S = 30.0


def ensure(url: str, *, toolkit: bool) -> list[str]:
    """Create the candle aggregates and policies on ``url`` (hypertables must exist). Idempotent.

    Skipped, with a warning, when ``trades``/``quotes`` are not hypertables (TimescaleDB disabled in the config).
    """
    from sinks.postgres.migrations import LOCK_KEY

    with psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="pulse-sink-caggs") as conn:
        rows = conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s)",
            (sorted(AGGREGATED_TABLES),),
        ).fetchall()
        missing = AGGREGATED_TABLES - {r[0] for r in rows}
        if missing:
            log.warning("candle aggregates not created: not hypertables", tables=",".join(sorted(missing)))
            return []
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            return ensure_candle_aggregates(conn, toolkit=toolkit)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def is_historical(topic_name: str) -> bool:
    """``persistent://tenant/historical/…`` → True."""
    parts = topic_name.split("/", 4)
    return len(parts) > 3 and parts[3] == "historical"


class AggregateRefresher:
    """Coalesces committed historical time ranges and refreshes the aggregates over them (see the module doc).

    :meth:`committed` is called by the sink's writer thread; :meth:`start`/:meth:`stop` by its owner. Counters
    (``refreshes``, ``errors``, ``last_range``) are written by the refresher thread only.
    """

    def __init__(
        self,
        url: str,
        topics: Iterable[str],
        *,
        idle_s: float = IDLE_S,
        busy_every_s: float = BUSY_EVERY_S,
        name: str = "sink-postgres",
        stats: Any = None,
    ) -> None:
        self.url = url
        self.idle_s = idle_s
        self.busy_every_s = busy_every_s
        self.name = name
        self.stats = stats  # SinkStats: cagg_refreshes / cagg_refresh_errors mirrored there
        topics = list(topics)
        hist = [is_historical(t) for t in topics]
        # all / none of the subscribed topics historical: no per-message topic lookup on the hot path
        self._every = bool(topics) and all(hist)
        self._none = not any(hist)
        self._hist_cache: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._lo: int | None = None  # pending range, ts_event ns, inclusive
        self._hi: int | None = None
        self._since = 0.0  # monotonic time the pending range was opened
        self._last_commit = 0.0
        self._stopping = False
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self.refreshes = 0  # refresh_after_backfill runs (each one: every source, every level, bottom-up)
        self.errors = 0
        self.last_range: tuple[str, str] | None = None

    # -- writer thread ---------------------------------------------------------------------------------
    def committed(self, items: Iterable[Any], counts: dict[str, int]) -> None:
        """Note the committed ``items`` (``.table``, ``.ts_event``, ``.msg``, maybe ``.rows``) — when their
        tables got new rows (all duplicates: nothing changed)."""
        if self._none or not any(counts.get(t) for t in AGGREGATED_TABLES):
            return
        lo = hi = None
        every, cache = self._every, self._hist_cache
        for it in items:
            if it.table not in AGGREGATED_TABLES:
                continue
            if not every:
                name = it.msg.topic_name()
                hist = cache.get(name)
                if hist is None:
                    hist = cache[name] = is_historical(name)
                if not hist:
                    continue
            rows = getattr(it, "rows", None)  # a message carrying many events (QuoteBatch): every row's time
            if rows is not None and len(rows) > 1:
                a = min(r[_TS] for r in rows)
                b = max(r[_TS] for r in rows)
            else:
                a = b = it.ts_event
            if lo is None or a < lo:
                lo = a
            if hi is None or b > hi:
                hi = b
        now = time.monotonic()
        with self._lock:
            self._last_commit = now
            if lo is None or hi is None:
                return
            if self._lo is None or self._hi is None:
                self._lo, self._hi, self._since = lo, hi, now
            else:
                self._lo, self._hi = min(self._lo, lo), max(self._hi, hi)
            self._wake.notify()

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-caggs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Refresh what is pending (one attempt), then end the thread and close its connection."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("candle aggregate refresh still running at stop", timeout_s=timeout)

    def pending(self) -> tuple[datetime, datetime] | None:
        with self._lock:
            return _window(self._lo, self._hi)

    # -- refresher thread ------------------------------------------------------------------------------
    def _take(self) -> tuple[int, int] | None:
        """Wait until the pending range is due (or stop); take it. None: stop with nothing pending."""
        with self._lock:
            while True:
                if self._lo is not None and self._hi is not None:
                    now = time.monotonic()
                    due = (
                        self._stopping
                        or (now - self._last_commit >= self.idle_s and now >= self._retry_at)
                        or now - self._since >= self.busy_every_s
                    )
                    if due:
                        lo, hi = self._lo, self._hi
                        self._lo = self._hi = None
                        return lo, hi
                    wait = min(
                        max(self._last_commit + self.idle_s, self._retry_at) - now,
                        self._since + self.busy_every_s - now,
                    )
                elif self._stopping:
                    return None
                else:
                    wait = None
                self._wake.wait(None if wait is None else max(wait, 0.01))

    def _loop(self) -> None:
        try:
            while (taken := self._take()) is not None:
                if not self._refresh(*taken):
                    with self._lock:
                        if self._stopping:
                            start, end = _window(*taken)  # type: ignore[misc]
                            log.warning("candle aggregates not refreshed at stop: refresh this range by hand",
                                        start=start.isoformat(), end=end.isoformat())  # fmt: skip
                            return
                        self._lo = taken[0] if self._lo is None else min(self._lo, taken[0])
                        self._hi = taken[1] if self._hi is None else max(self._hi, taken[1])
                        self._since = time.monotonic()  # next attempt in busy_every_s, idle or busy
                        self._retry_at = self._since + self.busy_every_s
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _refresh(self, lo: int, hi: int) -> bool:
        start, end = _window(lo, hi)  # type: ignore[misc]
        t0 = time.perf_counter()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=10, application_name=f"{self.name}-caggs"
                )
            calls = refresh_after_backfill(self._conn, start, end)
        except Exception as exc:  # psycopg.Error mostly; never let the thread die with ranges pending
            self.errors += 1
            if self.stats is not None:
                self.stats.cagg_refresh_errors += 1
            log.warning(
                "candle aggregate refresh failed; range kept pending",
                start=start.isoformat(),
                end=end.isoformat(),
                error=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self._conn = None
            return False
        self.refreshes += 1
        if self.stats is not None:
            self.stats.cagg_refreshes += 1
        self.last_range = (start.isoformat(), end.isoformat())
        log.info(
            "candle aggregates refreshed after backfill",
            start=start.isoformat(),
            end=end.isoformat(),
            calls=calls,
            seconds=round(time.perf_counter() - t0, 3),
        )
        return True


def _window(lo: int | None, hi: int | None) -> tuple[datetime, datetime] | None:
    """ts_event ns, inclusive → ``[start, end)`` datetimes on ``time`` (ns floored to µs; end one µs past)."""
    if lo is None or hi is None:
        return None
    start = datetime.fromtimestamp(lo // 1000 // 1_000_000, UTC).replace(microsecond=(lo // 1000) % 1_000_000)
    end_us = hi // 1000 + 1
    end = datetime.fromtimestamp(end_us // 1_000_000, UTC).replace(microsecond=end_us % 1_000_000)
    return start, end
