"""``pulse backfill dukascopy``: Dukascopy ticks of one instrument and time range into the ``historical`` namespace.

:func:`run_backfill` wires :func:`~ingesters.dukascopy.backfill.backfill` to the broker: every tick becomes a
:class:`~pulse.models.Quote` on ``persistent://<tenant>/historical/dukascopy.<SYMBOL>.quote``, published in time
order, packed :data:`BATCH_TICKS` at a time into :class:`~pulse.models.QuoteBatch` messages (each hour is cut
into chunks from its first tick, so a re-run publishes the very same batches). After each hour the producers
are flushed and the broker's answers checked; only an hour whose every event the broker acknowledged is
checkpointed, so a failed run re-publishes at most the hour it was in (the events are identical, and the
sink's unique keys drop the copies). On Apache Pulsar with deduplication on the namespace the copies do not even
reach the topic: each message carries its first tick's ``seq`` as the Pulsar sequence id under a producer name
fixed by the command (:func:`producer_prefix`), and it is sent unbatched (see the README's design notes).

:func:`run_candle_backfill` does the same with Dukascopy's own candle files (``--candles 1m|1h|1d``, the fast
path for long ranges, see :mod:`~ingesters.dukascopy.candles`): :class:`~pulse.models.Candle` events on
``…/historical/dukascopy.<SYMBOL>.candle``, each file checkpointed only after the broker acknowledged it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ingesters.dukascopy.backfill import CheckpointStore, backfill
from ingesters.dukascopy.bi5 import VENUE
from ingesters.dukascopy.candles import CandleSide, Timeframe, backfill_candles, candle_periods, check_request
from ingesters.dukascopy.downloader import hours_between, normalise_base_url
from ingesters.dukascopy.feeds import get_feed
from ingesters.dukascopy.instruments import lookup
from pulse.bus import Bus, EventPublisher
from pulse.errors import BusError, ConfigError
from pulse.log import get_logger
from pulse.models import Candle, Quote, QuoteBatch, QuoteTick
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import dead_letter_topic, topic

__all__ = ["checkpoint_dir", "producer_prefix", "run_backfill", "run_candle_backfill"]

log = get_logger(__name__)

NAMESPACE = "historical"
PRODUCER_PREFIX = "backfill-dukascopy"
#: Ticks per QuoteBatch message: ~60 KB of JSON, well under the producer's 512 KB batch and Pulsar's 5 MB message
#: limits; large enough that the per-message cost (~45 µs in the sink) is < 0.1 µs per tick.
BATCH_TICKS = 1000
#: A dead-lettered file is cut to this size (Pulsar's default message limit is 5 MB; an hour is tens of KB).
MAX_DEAD_LETTER_BYTES = 4 * 1024 * 1024


def checkpoint_dir(settings: Settings) -> Path:
    """``dukascopy.checkpoint_dir``, else ``<runtime.home>/checkpoints/dukascopy``."""
    configured = settings.dukascopy.checkpoint_dir
    return Path(configured).expanduser() if configured else settings.home / "checkpoints" / "dukascopy"


def run_backfill(
    settings: Settings,
    endpoints: Endpoints,
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    base_url: str | None = None,
    feed: str | None = None,
    progress: bool = True,
    batch_ticks: int = BATCH_TICKS,
) -> dict[str, Any]:
    """Backfill ``symbol`` (``EURUSD`` or ``EUR/USD``) over ``[start, end)`` (on the hour; naive means UTC).

    Ticks go out as :class:`~pulse.models.QuoteBatch` messages of up to ``batch_ticks`` on the instrument's
    ``quote_batch`` topic (1: one :class:`~pulse.models.Quote` per message on its ``quote`` topic, what Pulsar
    IO's JDBC sink reads).

    Refuses an unknown instrument (:class:`~pulse.errors.SymbolError`) or a bad range
    (:class:`~pulse.errors.ConfigError`) before connecting to anything. Raises :class:`~pulse.errors.BusError`
    when the broker fails an event; the hour in progress is then not checkpointed. Returns the
    :class:`~ingesters.dukascopy.backfill.BackfillReport` fields plus ``ok``, ``published`` (events the broker
    acknowledged), ``messages`` (broker messages they took), ``topic``, ``checkpoint_dir`` and ``error`` (why
    it is not ``ok``: failed hours, or no hour had data at all — a wrong ``--url`` or ``--feed``).
    """
    if batch_ticks < 1:
        raise ConfigError(f"batch_ticks must be >= 1, got {batch_ticks}")
    instrument = lookup(symbol)
    start, end = _on_the_hour(start, "--from"), _on_the_hour(end, "--to")
    if start >= end:
        raise ConfigError(f"empty range: --from {start.isoformat()} is not before --to {end.isoformat()}")
    source, url = _feed_and_url(settings, feed, base_url)
    directory = checkpoint_dir(settings)
    # QuoteBatch messages have their own topic (and schema); one Quote per message goes on the quote topic
    channel = "quote" if batch_ticks == 1 else "quote_batch"
    target = topic(NAMESPACE, "dukascopy", instrument.symbol, channel, settings.pulsar.tenant)

    bus = Bus(settings, endpoints.pulsar_url)
    try:
        # Broker deduplication: a stable producer name per command (instrument and range), each message sent
        # unbatched with its first tick's deterministic seq as the Pulsar sequence id (see producer_prefix)
        publisher = EventPublisher(bus, NAMESPACE, producer_prefix=producer_prefix(start, end), batching=False)
        ticks = 0

        def publish(quote: Quote) -> None:  # one message per tick (batch_ticks == 1)
            nonlocal ticks
            ticks += 1
            publisher.publish(quote, sequence_id=quote.seq)

        def publish_ticks(symbol: str, ts_recv: int, hour: list[QuoteTick]) -> None:
            """One hour, cut from its first tick into QuoteBatches of ``batch_ticks``: a re-run publishes the
            very same batches (what ``QuoteBatch.chunks`` of the hour's quotes gives)."""
            nonlocal ticks
            ticks += len(hour)
            for i in range(0, len(hour), batch_ticks):
                part = hour[i : i + batch_ticks]
                first = part[0]
                publisher.publish(
                    QuoteBatch(venue=VENUE, symbol=symbol, ts_event=first.ts_event, ts_recv=ts_recv,
                               seq=first.seq, ticks=tuple(part)),
                    sequence_id=first.seq,
                )  # fmt: skip

        async def flush() -> None:
            # Off the event loop, so downloads of the next hours keep going while the broker acknowledges.
            await asyncio.to_thread(_flush_and_check, publisher, settings.pulsar.operation_timeout_s)

        dead_letters = dead_letter_topic("ingest.dukascopy", settings.pulsar.tenant)

        def dead_letter(url: str, data: bytes, error: str) -> None:
            """A file that does not decode: kept whole (an hour is tens of KB) with the decoder's reason."""
            props = {"error": error[:1000], "kind": "parse_error", "venue": VENUE, "source": PRODUCER_PREFIX}
            publisher.publish_raw(dead_letters, data[:MAX_DEAD_LETTER_BYTES], {**props, "url": url})

        report, summary = _run_checkpointed(
            settings,
            publisher,
            directory,
            target,
            progress=progress,
            bar=(instrument.code, len(hours_between(start, end)), "hours", "ticks"),
            done=lambda: ticks,
            run=lambda store, on_progress: backfill(
                instrument.code,
                start,
                end,
                base_url=url,
                feed=source,
                publish=publish if batch_ticks == 1 else None,
                publish_ticks=publish_ticks if batch_ticks > 1 else None,
                flush=flush,
                checkpoint=store,
                concurrency=settings.dukascopy.concurrency,
                progress=on_progress,
                dead_letter=dead_letter,
            ),
        )
    finally:
        bus.close()
    log.debug(  # the command prints the summary once; this is for a debug log
        "dukascopy backfill done",
        symbol=instrument.symbol,
        published=summary["published"],
        hours=report.hours_downloaded,
        skipped=report.hours_skipped,
        failed=report.hours_failed,
        topic=target,
    )
    return summary


def run_candle_backfill(
    settings: Settings,
    endpoints: Endpoints,
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    timeframe: Timeframe,
    side: CandleSide,
    base_url: str | None = None,
    feed: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Backfill Dukascopy's ``timeframe`` (``1m``/``1h``/``1d``) ``side`` (``bid``/``ask``) candles of ``symbol``
    over ``[start, end)`` (on the timeframe's boundaries; naive means UTC) as :class:`~pulse.models.Candle`
    events on ``persistent://<tenant>/historical/dukascopy.<SYMBOL>.candle``.

    Refuses an unknown instrument, a bad timeframe, side or range, or an instrument whose volume unit is
    unverified, before connecting to anything. Like :func:`run_backfill`, a file is checkpointed only after
    the broker acknowledged every candle of it (else :class:`~pulse.errors.BusError`). Returns the
    :class:`~ingesters.dukascopy.candles.CandleReport` fields plus ``ok``, ``published``, ``topic`` and
    ``checkpoint_dir``.
    """
    instrument, start, end = check_request(symbol, start, end, timeframe, side, names=("--from", "--to"))
    source, url = _feed_and_url(settings, feed, base_url)
    directory = checkpoint_dir(settings)
    target = topic(NAMESPACE, "dukascopy", instrument.symbol, "candle", settings.pulsar.tenant)
    files = len(candle_periods(start, end, timeframe))

    bus = Bus(settings, endpoints.pulsar_url)
    try:
        # One producer name per (timeframe, side): bid and ask runs may share the topic at the same time.
        publisher = EventPublisher(bus, NAMESPACE, producer_prefix=f"{PRODUCER_PREFIX}-candles-{timeframe}-{side}")
        count = 0

        def publish(candle: Candle) -> None:
            nonlocal count
            count += 1
            publisher.publish(candle)

        async def flush() -> None:
            await asyncio.to_thread(_flush_and_check, publisher, settings.pulsar.operation_timeout_s)

        report, summary = _run_checkpointed(
            settings,
            publisher,
            directory,
            target,
            progress=progress,
            bar=(f"{instrument.code} {timeframe} {side}", files, "files", "candles"),
            done=lambda: count,
            run=lambda store, on_progress: backfill_candles(
                instrument.code,
                start,
                end,
                timeframe=timeframe,
                side=side,
                base_url=url,
                feed=source,
                publish=publish,
                flush=flush,
                checkpoint=store,
                concurrency=settings.dukascopy.concurrency,
                progress=on_progress,
            ),
        )
    finally:
        bus.close()
    log.debug(  # the command prints the summary once; this is for a debug log
        "dukascopy candle backfill done",
        symbol=instrument.symbol,
        timeframe=timeframe,
        side=side,
        published=summary["published"],
        files=report.files_downloaded,
        skipped=report.files_skipped,
        failed=report.files_failed,
        topic=target,
    )
    return summary


def producer_prefix(start: datetime, end: datetime) -> str:
    """The tick backfill's producer name prefix: ``backfill-dukascopy.<from>-<to>`` (UTC hours), so the producer
    of ``dukascopy.EUR-USD.quote_batch`` for ``--from 2019-02-04T00 --to 2019-02-04T04`` is always
    ``backfill-dukascopy.20190204T00-20190204T04.dukascopy.EUR-USD.quote_batch``.

    With deduplication on (``pulsar/namespaces.yaml``: the historical namespace) the broker drops every message
    whose sequence id is not above the highest it persisted for that producer name. The ids are the ticks'
    deterministic ``seq`` (hour-based, see :func:`~ingesters.dukascopy.bi5.seq_base`), increasing through a run,
    so re-running the same command after a crash re-sends the hour in progress (or everything, without the
    checkpoint) and the topic still holds each tick once. The range is part of the name because a run over an
    *earlier* range sends lower ids: under one name per instrument the broker would drop all of it as
    duplicates. Two different ranges that overlap are therefore not deduplicated by the broker (the sink's
    unique keys still store each tick once)."""
    return f"{PRODUCER_PREFIX}.{start:%Y%m%dT%H}-{end:%Y%m%dT%H}"


def _feed_and_url(settings: Settings, feed: str | None, base_url: str | None) -> tuple[str, str]:
    """The feed (argument, else ``dukascopy.feed``) and its root URL (argument, else ``dukascopy.base_url``, else
    the feed's own), both checked before anything starts."""
    source = get_feed(feed or settings.dukascopy.feed)
    return source.name, normalise_base_url(base_url or settings.dukascopy.base_url or source.default_url)


def _on_the_hour(t: datetime, name: str) -> datetime:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    if (t.minute, t.second, t.microsecond) != (0, 0, 0):
        raise ConfigError(f"{name} {t.isoformat()} is not on the hour: Dukascopy files hold whole UTC hours")
    return t


def _run_checkpointed(
    settings: Settings,
    publisher: EventPublisher,
    directory: Path,
    target: str,
    *,
    progress: bool,
    bar: tuple[str, int, str, str],
    done: Callable[[], int],
    run: Callable[[CheckpointStore, Callable[[int, int], None]], Coroutine[Any, Any, Any]],
) -> tuple[Any, dict[str, Any]]:
    """Run one backfill coroutine with its checkpoint store and progress bar, flush, and build the summary."""
    label, total, unit, item = bar
    with CheckpointStore(directory) as store, _progress_bar(progress, label, total, unit, item) as pbar:

        def on_progress(completed: int, total: int) -> None:
            if pbar is not None:
                pbar.update(pbar.task_ids[0], completed=completed, total=total, ticks=done())

        report = asyncio.run(run(store, on_progress))
    _flush_and_check(publisher, settings.pulsar.operation_timeout_s)
    summary = dataclasses.asdict(report)
    summary.update(
        ok=report.ok,
        error=report.error,
        published=publisher.stats.events_acked,
        messages=publisher.stats.total_acked,
        topic=target,
        checkpoint_dir=str(directory),
    )
    return report, summary


def _flush_and_check(publisher: EventPublisher, timeout_s: float) -> None:
    """Flush, wait for every send callback, and raise unless the broker acknowledged everything."""
    publisher.flush()
    stats = publisher.stats
    deadline = time.monotonic() + timeout_s
    # The client's callbacks run on its own thread and may trail flush() by a moment.
    while stats.pending > 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    if stats.total_failed:
        raise BusError(
            f"the broker refused {stats.total_failed} backfill event(s) ({stats.last_error}); "
            "the hour or candle file in progress is not checkpointed: re-run the same command to resume"
        )
    if stats.pending:
        raise BusError(
            f"{stats.pending} backfill event(s) still unacknowledged after {timeout_s:g}s "
            "(setting pulsar.operation_timeout_s); the hour or candle file in progress is not checkpointed: "
            "re-run to resume"
        )


class _RateColumn(ProgressColumn):
    """Published events per second since the start (``4,210 ticks/s``)."""

    def __init__(self, events: str) -> None:
        super().__init__()
        self.events = events

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = task.fields.get("ticks", 0) / elapsed if elapsed else 0.0
        return Text(f"{rate:,.0f} {self.events}/s", style="progress.data.speed")


@contextmanager
def _progress_bar(
    enabled: bool, code: str, total: int, unit: str = "hours", events: str = "ticks"
) -> Iterator[Progress | None]:
    """The bar on the log's own console (:func:`pulse.log.console`): log lines print above it, never through it.
    It shows units done, events published, their rate, the time elapsed and the time left."""
    if not enabled:
        yield None
        return
    from pulse.log import console

    bar = Progress(
        TextColumn(f"[bold]{code}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TextColumn(f"{{task.fields[ticks]:,}} {events}"),
        _RateColumn(events),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console(),
        transient=False,
    )
    bar.add_task("backfill", total=total, ticks=0)
    with bar:
        yield bar
