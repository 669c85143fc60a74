"""The Dukascopy backfill driver: download hours concurrently, publish them strictly in time order, resume.

``pulse backfill dukascopy EURUSD --from 2019-02-04T00 --to 2019-02-05T00`` ends up in :func:`backfill`,
which the CLI calls with a ``publish`` callback (and usually a ``flush``) from the ingester base::

    with CheckpointStore(home / "checkpoints") as store:
        report = await backfill("EURUSD", start, end, base_url=url, publish=producer.send,
                                flush=producer.flush, checkpoint=store)

Guarantees:

* **Order.** Up to ``2 * concurrency`` hours are in flight, but hour *h* is published (every tick, in file
  order) before anything of hour *h+1*.
* **Durability before checkpoint.** After an hour's last ``publish`` the driver awaits ``flush()`` and only
  then records the hour as done, so a crash re-publishes at most the hour in progress.
* **Identical re-runs.** Quotes carry ``seq = seq_base(hour) + index`` (see :func:`.bi5.seq_base`), exact
  prices and ``ts_event`` from the file, so re-publishing an hour yields the same events (bar ``ts_recv``)
  and idempotent consumers drop the copies.
* **Resumable.** Hours in the checkpoint are not downloaded again. Only hours that produced ticks are
  recorded: an empty or 404 answer may be Dukascopy's transient 0-byte reply or an hour not published
  yet, so it is asked again on the next run (cheap: a weekend is skipped without any request).
* **Failures** (retries exhausted, other 4xx, corrupt file) are counted and listed in the report and the
  run continues (a gap; re-run to fill it), unless ``fail_fast``, which re-raises the first one.
* **Nothing found is a failure.** When hours were asked for and not one had ticks (all 404, or all empty
  although the market was open), the report is not ``ok`` and its ``error`` says so: that is what a wrong
  ``--url``, the wrong ``--feed`` or a feed that changed its layout look like.
* **Both feeds** (see :mod:`.feeds`): ``feed="api"`` (the JSON data API, default) or ``"bi5"``. With the API,
  the hour still running (by ``clock``) is asked for with ``?from=<hour start>``; its ticks are published
  (same ``seq`` as when the whole hour is fetched later) but the hour is not checkpointed (``hours_partial``).
"""

from __future__ import annotations

import contextlib
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingesters.dukascopy.bi5 import seq_base, to_quote_ticks, to_quotes
from ingesters.dukascopy.downloader import (
    DukascopyDownloader,
    HourFetch,
    RetryPolicy,
    fetch_ahead,
    hours_between,
)
from ingesters.dukascopy.feeds import Feed, get_feed
from ingesters.dukascopy.instruments import Instrument, lookup
from pulse.errors import CodecError, ConfigError
from pulse.log import get_logger
from pulse.models import Quote, QuoteTick

log = get_logger(__name__)

_NS_PER_S = 1_000_000_000

Publish = Callable[[Quote], Awaitable[None] | None]
Flush = Callable[[], Awaitable[None] | None]
#: (canonical symbol, ts_recv, the hour's ticks in order) → publish them; the per-hour fast path
PublishTicks = Callable[[str, int, list[QuoteTick]], Awaitable[None] | None]
#: (file URL, its raw bytes, the decoder's error) → keep a file that could not be decoded (a dead letter)
DeadLetter = Callable[[str, bytes, str], None]


class CheckpointStore:
    """Which (instrument, hour) pairs were published *and flushed*. One sqlite3 file under ``directory``.

    Keys are the Dukascopy code and the hour start in epoch seconds. Losing the file only costs a
    re-publish (events are identical, consumers idempotent), so commits favour speed (WAL, NORMAL sync).
    """

    FILENAME = "dukascopy-checkpoints.sqlite3"

    def __init__(self, directory: Path | str) -> None:
        self.path = Path(directory) / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS done_hours ("
            " code TEXT NOT NULL, hour_start_s INTEGER NOT NULL, ticks INTEGER NOT NULL,"
            " bytes INTEGER NOT NULL, done_at_ns INTEGER NOT NULL, PRIMARY KEY (code, hour_start_s))"
        )
        self._db.commit()

    def done_hours(self, code: str, start: datetime, end: datetime) -> set[datetime]:
        """Hours of ``code`` in ``[start, end)`` already done."""
        rows = self._db.execute(
            "SELECT hour_start_s FROM done_hours WHERE code = ? AND hour_start_s >= ? AND hour_start_s < ?",
            (code, int(start.timestamp()), int(end.timestamp())),
        )
        return {datetime.fromtimestamp(s, UTC) for (s,) in rows}

    def is_done(self, code: str, hour: datetime) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM done_hours WHERE code = ? AND hour_start_s = ?", (code, int(hour.timestamp()))
        ).fetchone()
        return row is not None

    def mark_done(self, code: str, hour: datetime, *, ticks: int, nbytes: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO done_hours (code, hour_start_s, ticks, bytes, done_at_ns) VALUES (?, ?, ?, ?, ?)",
            (code, int(hour.timestamp()), ticks, nbytes, time.time_ns()),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class BackfillReport:
    """What a run did. ``hours_requested`` = skipped + closed + empty + downloaded + failed."""

    symbol: str  # canonical, e.g. EUR/USD
    code: str  # Dukascopy code, e.g. EURUSD
    hours_requested: int = 0  # hours in [start, end)
    hours_downloaded: int = 0  # fetched, had ticks, published, checkpointed
    hours_empty: int = 0  # 404, 0 bytes or no records (not checkpointed)
    hours_not_found: int = 0  # of those, 404s
    hours_partial: int = 0  # the hour still running (data API): published, not checkpointed
    hours_closed: int = 0  # wholly inside the weekly close: not requested
    hours_skipped: int = 0  # already in the checkpoint
    hours_failed: int = 0
    ticks_published: int = 0
    bytes_downloaded: int = 0  # compressed bytes of the hours published
    requests: int = 0
    retries: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (hour ISO, reason)
    elapsed_s: float = 0.0
    feed: str = "api"
    base_url: str = ""

    @property
    def nothing_found(self) -> bool:
        """Hours were asked for and not one had ticks: all 404, or all empty while the market was open
        (hours wholly inside the weekly close are never asked for)."""
        asked = self.hours_requested - self.hours_skipped - self.hours_closed - self.hours_failed
        return asked > 0 and self.hours_downloaded == 0 and self.hours_partial == 0

    @property
    def error(self) -> str | None:
        """Why the run is not ``ok``, in one sentence; None when it is."""
        if self.nothing_found:
            return (
                f"no tick data: every one of the {self.hours_empty} {self.code} hour(s) asked for was missing "
                f"({self.hours_not_found} answered 404 Not Found, {self.hours_empty - self.hours_not_found} "
                f"empty although the market was open) at {self.base_url} ({self.feed} feed). Check --url "
                "and --feed (api: the JSON data API; bi5: the .bi5 datafeed layout); a holiday or an hour not "
                "published yet looks the same, so re-run later if that is expected"
            )
        if self.hours_failed:
            return f"{self.hours_failed} hour(s) failed (see failures); re-run to fill them"
        return None

    @property
    def ok(self) -> bool:
        return self.hours_failed == 0 and not self.nothing_found


def _as_utc(t: datetime, name: str) -> datetime:
    """Naive datetimes are UTC (the CLI's ``2019-02-04T00``); aware ones are converted."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    if (t.minute, t.second, t.microsecond) != (0, 0, 0):
        raise ConfigError(f"{name} {t.isoformat()} is not on the hour: Dukascopy files hold whole UTC hours")
    return t


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None and inspect.isawaitable(result):
        await result


async def backfill(
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    base_url: str | None = None,
    feed: str = "api",
    publish: Publish | None = None,
    checkpoint: CheckpointStore,
    publish_ticks: PublishTicks | None = None,
    concurrency: int = 8,
    clock: Callable[[], int] = time.time_ns,
    progress: Callable[[int, int], None] | None = None,
    flush: Flush | None = None,
    retry: RetryPolicy | None = None,
    skip_closed: bool = True,
    fail_fast: bool = False,
    dead_letter: DeadLetter | None = None,
) -> BackfillReport:
    """Publish every tick of ``symbol`` in ``[start, end)`` as :class:`Quote` events, in time order.

    ``symbol``: Dukascopy code or Pulse symbol (``EURUSD`` / ``EUR/USD``); unknown → ``SymbolError``.
    ``start``/``end``: on the hour; naive means UTC. ``publish(quote)`` may return an awaitable (awaited
    before the next quote); or, instead, ``publish_ticks(symbol, ts_recv, ticks)`` gets each hour's ticks at
    once as :class:`~pulse.models.QuoteTick`\\ s (the same values; no Quote built per tick). ``flush()`` is
    awaited after each hour, before the checkpoint. ``clock`` gives ``ts_recv`` (ns).
    ``progress(hours_done, hours_total)`` is called after every hour. A file that does not decode
    (:class:`~pulse.errors.CodecError`: a bad ``.bi5`` or a malformed API answer) fails its hour and goes to
    ``dead_letter(url, data, error)``. ``feed``: ``api`` (``base_url`` default :data:`.jsonapi.API_URL`) or
    ``bi5`` (default the datafeed).
    """
    if (publish is None) == (publish_ticks is None):
        raise ValueError("give exactly one of publish and publish_ticks")
    began = time.monotonic()
    source = get_feed(feed)
    instrument = lookup(symbol)
    start, end = _as_utc(start, "start"), _as_utc(end, "end")
    if start >= end:
        raise ConfigError(f"empty range: start {start.isoformat()} is not before end {end.isoformat()}")
    hours = hours_between(start, end)
    report = BackfillReport(instrument.symbol, instrument.code, hours_requested=len(hours), feed=source.name)
    done = checkpoint.done_hours(instrument.code, start, end)
    todo = [h for h in hours if h not in done]
    report.hours_skipped = len(hours) - len(todo)
    finished = report.hours_skipped

    def tick_progress() -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished, len(hours))

    if progress is not None and finished:
        progress(finished, len(hours))

    now_ns = clock()

    def is_open(hour: datetime) -> bool:  # the hour still running: the data API has its own URL for it
        return source.name == "api" and 0 <= now_ns - int(hour.timestamp()) * _NS_PER_S < 3_600 * _NS_PER_S

    async with DukascopyDownloader(base_url or source.default_url, concurrency=concurrency, retry=retry) as downloader:
        report.base_url = downloader.base_url

        def fetch(hour: datetime) -> Awaitable[HourFetch]:
            url = source.tick_url(downloader.base_url, instrument, hour, open_period=is_open(hour))
            return downloader.fetch_hour(instrument, hour, skip_closed=skip_closed, url=url)

        hours_ahead = fetch_ahead(todo, fetch, 2 * concurrency)
        try:
            async with contextlib.aclosing(hours_ahead) as results:
                async for hour, fetched, error in results:
                    if error is not None:
                        _fail(report, hour, error, fail_fast)
                    if fetched is not None:
                        await _publish_hour(
                            instrument, source, fetched, report, publish or publish_ticks, flush, checkpoint, clock,
                            fail_fast, per_tick=publish is not None, open_period=is_open(hour), dead_letter=dead_letter,
                        )  # fmt: skip
                    tick_progress()
        finally:
            report.requests = downloader.stats.requests
            report.retries = downloader.stats.retries
            report.elapsed_s = time.monotonic() - began

    # the command prints the summary (once): this line is for a caller's debug log
    log.debug("backfill finished", code=instrument.code, start=start.isoformat(), end=end.isoformat(),
              hours=report.hours_requested, published=report.hours_downloaded, empty=report.hours_empty,
              closed=report.hours_closed, skipped=report.hours_skipped, failed=report.hours_failed,
              ticks=report.ticks_published, bytes=report.bytes_downloaded, requests=report.requests,
              retries=report.retries, elapsed_s=round(report.elapsed_s, 1), feed=source.name)  # fmt: skip
    if report.nothing_found:
        log.error("backfill found nothing", code=instrument.code, error=report.error)
    return report


def _fail(report: BackfillReport, hour: datetime, exc: Exception, fail_fast: bool) -> None:
    if fail_fast:
        raise exc
    report.hours_failed += 1
    report.failures.append((hour.isoformat(), str(exc)))
    log.warning("backfill hour failed, left for a re-run", hour=hour.isoformat(), error=str(exc)[:300])


async def _publish_hour(
    instrument: Instrument,
    source: Feed,
    fetched: HourFetch,
    report: BackfillReport,
    publish: Any,
    flush: Flush | None,
    checkpoint: CheckpointStore,
    clock: Callable[[], int],
    fail_fast: bool,
    *,
    per_tick: bool = True,
    open_period: bool = False,
    dead_letter: DeadLetter | None = None,
) -> None:
    if fetched.status == "closed":
        report.hours_closed += 1
        return
    if fetched.status != "ok":
        report.hours_empty += 1
        report.hours_not_found += fetched.status == "missing"
        return
    hour_ns = int(fetched.hour.timestamp()) * _NS_PER_S
    try:
        records = source.decode_ticks(
            fetched.data, hour_start_ns=hour_ns, instrument=instrument, source=fetched.url, open_period=open_period
        )
    except CodecError as exc:
        if dead_letter is not None:
            dead_letter(fetched.url, fetched.data, str(exc))
        _fail(report, fetched.hour, exc, fail_fast)
        return
    if not records:
        report.hours_empty += 1
        return
    if per_tick:
        quotes = to_quotes(
            records, symbol=instrument.symbol, first_seq=seq_base(hour_ns), clock=clock,
            volume_multiplier=instrument.volume_multiplier,
        )  # fmt: skip
        for quote in quotes:
            result = publish(quote)
            if result is not None:
                await _maybe_await(result)
    else:
        ticks = to_quote_ticks(records, first_seq=seq_base(hour_ns), volume_multiplier=instrument.volume_multiplier)
        await _maybe_await(publish(instrument.symbol, clock(), ticks))
    if flush is not None:
        await _maybe_await(flush())
    report.ticks_published += len(records)
    report.bytes_downloaded += len(fetched.data)
    if open_period:  # the hour is still running: ask again next time
        report.hours_partial += 1
        return
    checkpoint.mark_done(instrument.code, fetched.hour, ticks=len(records), nbytes=len(fetched.data))
    report.hours_downloaded += 1
