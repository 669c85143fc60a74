"""The candle fast path: Dukascopy's own minute/hour/day candle files as :class:`~pulse.models.Candle` events.

A long range costs one file per day (``1m``), per month (``1h``) or per year (``1d``) instead of one per hour
of ticks, and the candles double as a check of the tick backfill (Dukascopy computes them from the same
ticks: bid/ask OHLC and summed volume, exactly; see ``tests/integration/test_dukascopy_backfill.py``).

Files (month zero-based in the URL, see :func:`.downloader.candle_url`)::

    1m  {CODE}/{YYYY}/{MM-1}/{DD}/{BID|ASK}_candles_min_1.bi5   one UTC day,   1,440 records
    1h  {CODE}/{YYYY}/{MM-1}/{BID|ASK}_candles_hour_1.bi5       one UTC month, 24 per day
    1d  {CODE}/{YYYY}/{BID|ASK}_candles_day_1.bi5               one UTC year,  365/366 records

or, with the JSON data API (``feed="api"``, the default; see :mod:`.jsonapi`), ``candles/minute|hour|day/
{BASE-QUOTE}/{BID|ASK}/{Y}[/{M}[/{D}]]`` for the same periods and ``…?from=<period start ms>`` for the period
still running. The API sends no closed-market placeholders, so the same candles are published either way
(tested on Dukascopy's answers in both forms).

What we found in real files (EUR/USD minute candles of 2019-02-04/05, hour candles of January and February
2019, day candles of 2018 and 2019, from dukascopy-node's test data) and how each fact is handled:

* **Full grids with placeholders.** Every file holds every slot of its period. Slots where the market was
  closed (the weekend from Friday 22:00 UTC, New Year's Day, every Saturday in day files) are *flat
  placeholders*: volume 0 and open = high = low = close = the previous close. They are not market data, so
  they are skipped (counted in ``candles_flat``); dukascopy-node drops them too (``ignoreFlats``). Only
  candles with volume 0 **and** no range are skipped: a flat candle *with* volume (2 of 1,440 on
  2019-02-04) is a real quiet minute and is published.
* **Volume unit.** Candle volumes are in the same unit as tick volumes (millions of base currency for
  currency pairs): the 00h-03h minute candles of 2019-02-04 equal the summed bid tick volumes exactly. So
  ``Candle.volume`` is the float32 volume (as the shortest round-trip decimal, see
  :func:`.bi5.float32_to_decimal`) times ``instrument.volume_multiplier``, in base-currency units like
  ``Quote`` sizes: 293.76 → ``293760000``. ``Candle.volume`` cannot be ``None``, so an instrument whose
  volume unit is unverified is refused.
* **No tick count** in the files: ``Candle.ticks`` stays 0 (unknown).

Guarantees (as in :mod:`.backfill`):

* **Range.** ``[start, end)`` must lie on the timeframe's boundaries (minute, hour, UTC midnight); a candle is
  published iff ``start <= ts_event < end``, so every published candle lies wholly inside the range.
* **Order.** Files are downloaded ``2 * concurrency`` ahead but published strictly in period order, each
  file's candles in time order.
* **Identical re-runs.** ``seq`` is the period index, ``ts_event // interval``: the same candle always gets
  the same ``seq``, strictly increasing within one (interval, side) stream. A candle's identity downstream
  is (venue, symbol, side, interval_s, ts_event); bid and ask, 1m and 1h share the ``candle`` topic.
* **Durability before checkpoint; resumable.** After a file's last publish, ``flush()`` is awaited, then the
  file is recorded under :func:`checkpoint_key` (``EURUSD:candles:1m:bid``, never a tick hour's key) and
  the period start. A file only partly inside the range is recorded under a key that also names the clipped
  window, so a later, wider run still fetches it. Not recorded: 404/empty answers (not published yet, or a
  transient 0-byte reply), periods wholly inside the weekly close (not requested) and periods not over yet
  (by ``clock``): their candles are published, the file is asked again next time.
* **Failures** (retries exhausted, other 4xx, corrupt file) are counted and listed; the run goes on unless
  ``fail_fast``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from ingesters.dukascopy.backfill import CheckpointStore
from ingesters.dukascopy.bi5 import VENUE, CandleRecord
from ingesters.dukascopy.downloader import (
    DukascopyDownloader,
    RetryPolicy,
    fetch_ahead,
    hours_between,
    normalise_base_url,
)
from ingesters.dukascopy.feeds import Feed, get_feed
from ingesters.dukascopy.instruments import Instrument, lookup
from pulse.errors import CodecError, ConfigError
from pulse.log import get_logger
from pulse.models import Candle
from pulse.symbols import canonical

log = get_logger(__name__)

Timeframe = Literal["1m", "1h", "1d"]
CandleSide = Literal["bid", "ask"]
Publish = Callable[[Candle], Awaitable[None] | None]
Flush = Callable[[], Awaitable[None] | None]

_NS_PER_S = 1_000_000_000
_ONE = Decimal(1)

#: timeframe → (candle length in seconds, the datafeed's file name part)
_TIMEFRAMES: dict[str, tuple[int, Literal["min_1", "hour_1", "day_1"]]] = {
    "1m": (60, "min_1"),
    "1h": (3_600, "hour_1"),
    "1d": (86_400, "day_1"),
}
_SIDES: dict[str, Literal["BID", "ASK"]] = {"bid": "BID", "ask": "ASK"}
FileStatus = Literal["ok", "empty", "missing", "closed"]


def interval_s(timeframe: str) -> int:
    """Candle length of ``timeframe`` in seconds; ConfigError for anything but ``1m``, ``1h``, ``1d``."""
    try:
        return _TIMEFRAMES[timeframe][0]
    except KeyError:
        raise ConfigError(f"unknown candle timeframe {timeframe!r}: expected 1m, 1h or 1d") from None


def check_range(
    start: datetime, end: datetime, timeframe: str, *, names: tuple[str, str] = ("start", "end")
) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC (naive means UTC), refused unless both lie on the timeframe's boundaries and
    ``start < end``."""
    step = interval_s(timeframe)
    out = []
    for t, name in zip((start, end), names, strict=True):
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
        if t.microsecond or int(t.timestamp()) % step:
            unit = {60: "a whole minute", 3_600: "a whole hour", 86_400: "UTC midnight"}[step]
            raise ConfigError(f"{name} {t.isoformat()} is not on {unit}: {timeframe} candles start there")
        out.append(t)
    if out[0] >= out[1]:
        raise ConfigError(f"empty range: {names[0]} {out[0].isoformat()} is not before {names[1]} {out[1].isoformat()}")
    return out[0], out[1]


def check_request(
    symbol: str, start: datetime, end: datetime, timeframe: str, side: str, *, names: tuple[str, str] = ("start", "end")
) -> tuple[Instrument, datetime, datetime]:
    """Everything a candle backfill refuses, checked before any I/O: the instrument (``SymbolError``), the
    timeframe, side and range, and an unverified volume unit (``ConfigError``: ``Candle.volume`` is
    required, and a number in an unknown unit would be wrong data). Returns the instrument and the UTC range.
    """
    instrument = lookup(symbol)
    start, end = check_range(start, end, timeframe, names=names)
    if side not in _SIDES:
        raise ConfigError(f"unknown candle side {side!r}: expected bid or ask")
    if instrument.volume_multiplier is None:
        raise ConfigError(
            f"{instrument.code}: the volume unit of its Dukascopy candles is unverified and Candle.volume "
            "cannot be left out; verify it (see ingesters/dukascopy/instruments.py) before backfilling candles"
        )
    return instrument, start, end


def _period_start(t: datetime, timeframe: str) -> datetime:
    if timeframe == "1m":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if timeframe == "1h":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_period(p: datetime, timeframe: str) -> datetime:
    if timeframe == "1m":
        return p + timedelta(days=1)
    if timeframe == "1h":
        return p.replace(year=p.year + 1, month=1) if p.month == 12 else p.replace(month=p.month + 1)
    return p.replace(year=p.year + 1)


def candle_periods(start: datetime, end: datetime, timeframe: str) -> list[tuple[datetime, datetime]]:
    """``(period start, period end)`` of every file that holds candles of ``[start, end)`` (aware, UTC)."""
    interval_s(timeframe)
    out = []
    p = _period_start(start.astimezone(UTC), timeframe)
    while p < end:
        nxt = _next_period(p, timeframe)
        out.append((p, nxt))
        p = nxt
    return out


def checkpoint_key(code: str, timeframe: str, side: str) -> str:
    """The checkpoint ``code`` of a candle stream, e.g. ``EURUSD:candles:1m:bid`` (tick hours use ``EURUSD``)."""
    return f"{code}:candles:{timeframe}:{side}"


def _window_key(base: str, lo: datetime, hi: datetime) -> str:
    return f"{base}@{int(lo.timestamp())}-{int(hi.timestamp())}"


def is_placeholder(r: CandleRecord) -> bool:
    """Dukascopy's filler for a closed-market slot: no volume and no range (O = H = L = C)."""
    return r.volume == 0 and r.open == r.high == r.low == r.close


def to_candles(
    records: Iterable[CandleRecord],
    *,
    symbol: str,
    interval_s: int,
    side: CandleSide,
    volume_multiplier: int,
    clock: Callable[[], int] = time.time_ns,
    venue: str = VENUE,
) -> list[Candle]:
    """Turn decoded candle records into :class:`Candle` events (placeholders are the caller's to drop).

    ``seq`` is ``ts_event // interval`` (the period index since the epoch); ``volume`` is the record's volume
    times ``volume_multiplier``, exact; ``clock`` (ns) is read once, so a file's candles share ``ts_recv``.
    """
    symbol = canonical(symbol)
    ts_recv = clock()
    interval_ns = interval_s * _NS_PER_S
    mult = Decimal(volume_multiplier)
    return [
        Candle(
            venue=venue,
            symbol=symbol,
            ts_event=r.ts_event,
            ts_recv=ts_recv,
            seq=r.ts_event // interval_ns,
            interval_s=interval_s,
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            volume=_units(r.volume * mult),
            side=side,
        )
        for r in records
    ]


def _units(d: Decimal) -> Decimal:
    """2.9376E+8 → 293760000, 2.50 → 2.5: plain, without trailing zeros or an exponent."""
    d = d.normalize()
    return d.quantize(_ONE) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]


@dataclass
class CandleReport:
    """What a run did. ``files_requested`` = skipped + closed + empty + downloaded + failed."""

    symbol: str  # canonical, e.g. EUR/USD
    code: str  # Dukascopy code, e.g. EURUSD
    timeframe: str  # 1m | 1h | 1d
    side: str  # bid | ask
    files_requested: int = 0  # files whose period meets [start, end)
    files_downloaded: int = 0  # fetched, decoded and published
    files_incomplete: int = 0  # of those, period not over yet: published but not checkpointed
    files_empty: int = 0  # 404 or 0 bytes (not checkpointed)
    files_not_found: int = 0  # of those, 404s
    files_closed: int = 0  # window wholly inside the weekly close: not requested
    files_skipped: int = 0  # already in the checkpoint
    files_failed: int = 0
    candles_published: int = 0
    candles_flat: int = 0  # closed-market placeholders skipped (volume 0, O=H=L=C)
    bytes_downloaded: int = 0
    requests: int = 0
    retries: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (period ISO, reason)
    elapsed_s: float = 0.0
    feed: str = "api"
    base_url: str = ""

    @property
    def nothing_found(self) -> bool:
        """Files were asked for and every one was missing or empty: a wrong URL or feed, not a success."""
        asked = self.files_requested - self.files_skipped - self.files_closed - self.files_failed
        return asked > 0 and self.files_downloaded == 0

    @property
    def error(self) -> str | None:
        """Why the run is not ``ok``, in one sentence; None when it is."""
        if self.nothing_found:
            return (
                f"no candle data: every one of the {self.files_empty} {self.code} {self.timeframe} file(s) asked "
                f"for was missing ({self.files_not_found} answered 404 Not Found, "
                f"{self.files_empty - self.files_not_found} empty) at {self.base_url} ({self.feed} feed). Check "
                "--url and --feed (api: the JSON data API; bi5: the .bi5 datafeed layout)"
            )
        if self.files_failed:
            return f"{self.files_failed} file(s) failed (see failures); re-run to fill them"
        return None

    @property
    def ok(self) -> bool:
        return self.files_failed == 0 and not self.nothing_found


@dataclass(frozen=True, slots=True)
class _File:
    start: datetime  # period start
    end: datetime  # period end
    lo: datetime  # clipped window: [lo, hi) = [start, end) ∩ requested range
    hi: datetime
    url: str
    key: str  # checkpoint code
    running: bool = False  # the period is not over: asked for with the data API's ?from= URL


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None and inspect.isawaitable(result):
        await result


async def backfill_candles(
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    timeframe: Timeframe,
    side: CandleSide,
    base_url: str | None = None,
    feed: str = "api",
    publish: Publish,
    flush: Flush | None = None,
    checkpoint: CheckpointStore,
    concurrency: int = 8,
    clock: Callable[[], int] = time.time_ns,
    progress: Callable[[int, int], None] | None = None,
    retry: RetryPolicy | None = None,
    skip_closed: bool = True,
    fail_fast: bool = False,
) -> CandleReport:
    """Publish Dukascopy's ``timeframe`` ``side`` candles of ``symbol`` in ``[start, end)``, in time order.

    ``symbol``: Dukascopy code or Pulse symbol. ``start``/``end``: on the timeframe's boundaries; naive means
    UTC. What is refused, before any request: see :func:`check_request`. ``publish(candle)`` may return an
    awaitable; ``flush()`` is awaited after each file, before its checkpoint. ``clock`` gives ``ts_recv`` (ns)
    and "now" for the not-over-yet rule. ``progress(files_done, files_total)`` is called after every file.
    """
    began = time.monotonic()
    source = get_feed(feed)
    instrument, start, end = check_request(symbol, start, end, timeframe, side)
    step = interval_s(timeframe)
    base = checkpoint_key(instrument.code, timeframe, side)
    root = normalise_base_url(base_url or source.default_url)
    now_ns = clock()
    files: list[_File] = []
    for p_start, p_end in candle_periods(start, end, timeframe):
        lo, hi = max(start, p_start), min(end, p_end)
        whole = (lo, hi) == (p_start, p_end)
        running = source.name == "api" and p_start.timestamp() * _NS_PER_S <= now_ns < p_end.timestamp() * _NS_PER_S
        url = source.candle_url(root, instrument, p_start, step_s=step, side=_SIDES[side], open_period=running)
        key = base if whole else _window_key(base, lo, hi)
        files.append(_File(p_start, p_end, lo, hi, url, key, running))
    report = CandleReport(
        instrument.symbol, instrument.code, timeframe, side, files_requested=len(files), feed=source.name,
        base_url=root,
    )  # fmt: skip
    todo = [f for f in files if not (checkpoint.is_done(base, f.start) or checkpoint.is_done(f.key, f.start))]
    report.files_skipped = len(files) - len(todo)
    finished = report.files_skipped
    if progress is not None and finished:
        progress(finished, len(files))

    async with DukascopyDownloader(root, concurrency=concurrency, retry=retry) as downloader:
        files_ahead = fetch_ahead(
            todo, lambda f: _fetch(downloader, f.url, skip_closed and _closed(instrument, f)), 2 * concurrency
        )
        try:
            async with contextlib.aclosing(files_ahead) as results:
                async for f, got, error in results:
                    if error is not None:
                        _fail(report, f, error, fail_fast)
                    if got is not None:
                        await _publish_file(
                            instrument,
                            source,
                            f,
                            step,
                            side,
                            got,
                            report,
                            publish,
                            flush,
                            checkpoint,
                            clock,
                            fail_fast,
                        )
                    finished += 1
                    if progress is not None:
                        progress(finished, len(files))
        finally:
            report.requests = downloader.stats.requests
            report.retries = downloader.stats.retries
            report.elapsed_s = time.monotonic() - began

    # the command prints the summary (once): this line is for a caller's debug log
    log.debug("candle backfill finished", code=instrument.code, timeframe=timeframe, side=side,
              start=start.isoformat(), end=end.isoformat(), files=report.files_requested,
              published=report.files_downloaded, incomplete=report.files_incomplete, empty=report.files_empty,
              closed=report.files_closed, skipped=report.files_skipped, failed=report.files_failed,
              candles=report.candles_published, placeholders_skipped=report.candles_flat,
              requests=report.requests, elapsed_s=round(report.elapsed_s, 1))  # fmt: skip
    return report


def _closed(instrument: Instrument, f: _File) -> bool:
    """True when every hour of the file's window is inside the weekly close (a Saturday of minute candles).
    Only windows of up to two days are checked: a month or year always holds open hours."""
    if instrument.weekly_close is None or f.hi - f.lo > timedelta(days=2):
        return False
    lo = f.lo.replace(minute=0)
    hours = hours_between(lo, f.hi if f.hi.minute == 0 else f.hi.replace(minute=0) + timedelta(hours=1))
    return all(instrument.certainly_closed(h) for h in hours)


async def _fetch(downloader: DukascopyDownloader, url: str, closed: bool) -> tuple[FileStatus, bytes]:
    """One candle file, asking again after an empty answer as the tick path does (Dukascopy's 0-byte bug)."""
    if closed:
        return "closed", b""
    body: bytes | None = None
    for attempt in range(downloader.retry.empty_retries + 1):
        if attempt:
            downloader.stats.empty_retries += 1
            await asyncio.sleep(downloader.retry.backoff(attempt))
        body, _ = await downloader.fetch(url)
        if body:
            return "ok", body
    return ("missing" if body is None else "empty"), b""


def _fail(report: CandleReport, f: _File, exc: Exception, fail_fast: bool) -> None:
    if fail_fast:
        raise exc
    report.files_failed += 1
    report.failures.append((f.start.isoformat(), str(exc)))
    log.warning("candle file failed, left for a re-run", url=f.url, error=str(exc)[:300])


async def _publish_file(
    instrument: Instrument,
    source: Feed,
    f: _File,
    step: int,
    side: CandleSide,
    got: tuple[FileStatus, bytes],
    report: CandleReport,
    publish: Publish,
    flush: Flush | None,
    checkpoint: CheckpointStore,
    clock: Callable[[], int],
    fail_fast: bool,
) -> None:
    status, data = got
    if status == "closed":
        report.files_closed += 1
        return
    if status != "ok":
        report.files_empty += 1
        report.files_not_found += status == "missing"
        return
    start_ns = int(f.start.timestamp()) * _NS_PER_S
    try:
        records = source.decode_candles(
            data, period_start_ns=start_ns, step_s=step, instrument=instrument, source=f.url, open_period=f.running
        )
        _check_grid(records, f, step)
    except CodecError as exc:
        _fail(report, f, exc, fail_fast)
        return
    if not records:  # the data API's answer for a period without candles (the .bi5 file would be absent)
        report.files_empty += 1
        return
    now_ns = clock()
    lo_ns, hi_ns = int(f.lo.timestamp()) * _NS_PER_S, int(f.hi.timestamp()) * _NS_PER_S
    step_ns = step * _NS_PER_S
    inside = [r for r in records if lo_ns <= r.ts_event < hi_ns and r.ts_event + step_ns <= now_ns]
    real = [r for r in inside if not is_placeholder(r)]
    mult = instrument.volume_multiplier
    assert mult is not None  # refused by check_request
    candles = to_candles(
        real, symbol=instrument.symbol, interval_s=step, side=side, volume_multiplier=mult, clock=clock
    )
    for candle in candles:
        await _maybe_await(publish(candle))
    if flush is not None:
        await _maybe_await(flush())
    report.files_downloaded += 1
    report.candles_published += len(candles)
    report.candles_flat += len(inside) - len(real)
    report.bytes_downloaded += len(data)
    if int(f.end.timestamp()) * _NS_PER_S > now_ns:
        report.files_incomplete += 1  # the period is not over: ask again next time
        return
    checkpoint.mark_done(f.key, f.start, ticks=len(candles), nbytes=len(data))


def _check_grid(records: list[CandleRecord], f: _File, step: int) -> None:
    """Offsets must be distinct multiples of the candle length inside the period, else the file is corrupt
    (two candles with one ``seq``, or a candle outside its file)."""
    length = int((f.end - f.start).total_seconds())
    previous = -1
    for i, r in enumerate(records):
        if r.offset_s % step or r.offset_s >= length or r.offset_s <= previous:
            raise CodecError(f"{f.url}: record {i}: offset {r.offset_s} s is not a new {step} s slot of the period")
        previous = r.offset_s
