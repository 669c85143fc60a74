"""Async downloader for Dukascopy's public datafeed (``.bi5`` files over HTTPS).

URL layout (month **zero-based**, everything UTC)::

    {base}/{CODE}/{YYYY}/{MM-1:02}/{DD:02}/{HH:02}h_ticks.bi5            ticks of one hour
    {base}/{CODE}/{YYYY}/{MM-1:02}/{DD:02}/{BID|ASK}_candles_min_1.bi5   minute candles of one day
    {base}/{CODE}/{YYYY}/{MM-1:02}/{BID|ASK}_candles_hour_1.bi5          hour candles of one month
    {base}/{CODE}/{YYYY}/{BID|ASK}_candles_day_1.bi5                     day candles of one year

with ``base = https://datafeed.dukascopy.com/datafeed``. How answers are read:

* 200 with a body → data; 200 with an empty body or 404 → "no ticks". Dukascopy is known to answer an
  existing file with 0 bytes now and then (dukascopy-node issue #130), so an empty answer for an hour the
  market should be open is asked again ``RetryPolicy.empty_retries`` times before it is believed.
* 5xx, 408, 429, timeouts, connection and payload errors → retried with capped, fully jittered exponential
  backoff (tenacity), honouring ``Retry-After`` up to the cap. Other 4xx → :class:`DownloadError` at once.
* Hours wholly inside the instrument's weekly close (see :mod:`.instruments`) are not requested at all.

Concurrency is bounded by a semaphore around each request; a retrying request waits outside it.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from ingesters.dukascopy.bi5 import datafeed_path
from ingesters.dukascopy.instruments import Instrument
from pulse.errors import ConfigError, VenueError
from pulse.log import get_logger

log = get_logger(__name__)

DATAFEED_URL = "https://datafeed.dukascopy.com/datafeed"
USER_AGENT = "pulse-market-data/0.1 (historical backfill)"

_RETRY_STATUSES = frozenset({408, 429})

FetchStatus = Literal["ok", "empty", "missing", "closed"]


class DownloadError(VenueError):
    """A file could not be fetched: a 4xx other than 404, or retries exhausted."""

    def __init__(self, url: str, reason: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(f"GET {url}: {reason} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.url = url
        self.status = status
        self.attempts = attempts


class _Retryable(Exception):
    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. ``max_attempts`` counts the first request; waits are uniform in
    ``[0, min(max_s, initial_s * 2**n))`` ("full jitter"), never longer than ``max_s``."""

    max_attempts: int = 6
    initial_s: float = 0.5
    max_s: float = 30.0
    timeout_s: float = 30.0  # whole request, connect to last byte
    empty_retries: int = 1  # extra requests for a 0-byte/404 answer when the market should be open

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.empty_retries < 0:
            raise ConfigError("retry policy: max_attempts must be >= 1 and empty_retries >= 0")
        if not (0 <= self.initial_s <= self.max_s) or self.timeout_s <= 0:
            raise ConfigError("retry policy: need 0 <= initial_s <= max_s and timeout_s > 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_s, self.initial_s * 2 ** (attempt - 1)))


class HourFetch(NamedTuple):
    """What the datafeed said about one hour. ``data`` is the raw ``.bi5`` (``b""`` unless ``ok``)."""

    hour: datetime
    url: str
    status: FetchStatus  # ok | empty (200, 0 bytes) | missing (404) | closed (not requested)
    data: bytes
    requests: int


@dataclass(slots=True)
class DownloadStats:
    requests: int = 0
    retries: int = 0  # requests repeated after a retryable failure
    empty_retries: int = 0  # requests repeated after an empty answer
    bytes: int = 0
    not_found: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def normalise_base_url(base_url: str) -> str:
    """Validate ``--url`` (http or https, with a host) and drop a trailing slash."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"invalid Dukascopy base URL {base_url!r}: expected http(s)://host[:port]/path")
    return base_url.rstrip("/")


def tick_url(base_url: str, code: str, hour_start: datetime) -> str:
    """URL of one hour of ticks; ``hour_start`` must be an aware datetime on the hour."""
    return f"{normalise_base_url(base_url)}/{datafeed_path(code, _utc_hour(hour_start))}"


def candle_url(
    base_url: str,
    code: str,
    period_start: datetime,
    *,
    timeframe: Literal["min_1", "hour_1", "day_1"] = "min_1",
    side: Literal["BID", "ASK"] = "BID",
) -> str:
    """URL of a candle file: minute candles per day, hour candles per month, day candles per year."""
    p = period_start.astimezone(UTC)
    path = f"{code}/{p.year:04d}/"
    if timeframe == "min_1":
        path += f"{p.month - 1:02d}/{p.day:02d}/"
    elif timeframe == "hour_1":
        path += f"{p.month - 1:02d}/"
    return f"{normalise_base_url(base_url)}/{path}{side}_candles_{timeframe}.bi5"


def _utc_hour(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{t!r} has no time zone; pass an aware UTC datetime")
    t = t.astimezone(UTC)
    if (t.minute, t.second, t.microsecond) != (0, 0, 0):
        raise ValueError(f"{t.isoformat()} is not on the hour")
    return t


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour start in ``[start, end)``; both must be aware and on the hour."""
    t, stop = _utc_hour(start), _utc_hour(end)
    out = []
    while t < stop:
        out.append(t)
        t += timedelta(hours=1)
    return out


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare here, and the jittered backoff covers it


class DukascopyDownloader:
    """Fetches ``.bi5`` files. Use as ``async with DukascopyDownloader(...) as dl:``; once stopped it
    cannot be restarted. ``session`` may be given (then it is not closed here)."""

    def __init__(
        self,
        base_url: str = DATAFEED_URL,
        *,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = normalise_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self.stats = DownloadStats()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._session = session
        self._own_session = session is None
        self._user_agent = user_agent
        self._state: Literal["new", "running", "stopped"] = "new"

    async def start(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"downloader is {self._state}; create a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                timeout=aiohttp.ClientTimeout(total=self.retry.timeout_s),
                headers={"User-Agent": self._user_agent},
            )
        self._state = "running"

    async def stop(self) -> None:
        if self._state == "running" and self._own_session and self._session is not None:
            await self._session.close()
        self._state = "stopped"

    async def __aenter__(self) -> DukascopyDownloader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def fetch_hour(
        self, instrument: Instrument, hour_start: datetime, *, skip_closed: bool = True, url: str | None = None
    ) -> HourFetch:
        """Fetch one hour of ticks (from ``url``, default: its ``.bi5`` path below the base URL). Raises
        :class:`DownloadError` when the file cannot be had."""
        hour = _utc_hour(hour_start)
        url = url or f"{self.base_url}/{datafeed_path(instrument.code, hour)}"
        if skip_closed and instrument.certainly_closed(hour):
            return HourFetch(hour, url, "closed", b"", 0)
        requests = 0
        for attempt in range(self.retry.empty_retries + 1):
            if attempt:
                self.stats.empty_retries += 1
                await asyncio.sleep(self.retry.backoff(attempt))
            body, made = await self.fetch(url)
            requests += made
            if body:
                return HourFetch(hour, url, "ok", body, requests)
        return HourFetch(hour, url, "missing" if body is None else "empty", b"", requests)

    async def fetch(self, url: str) -> tuple[bytes | None, int]:
        """GET one URL with retries: ``(body, requests made)``; body ``None`` means 404."""
        if self._state != "running" or self._session is None:
            raise RuntimeError("downloader not started")
        made = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.retry.max_attempts),
                wait=self._wait,
                retry=retry_if_exception_type(_Retryable),
                before_sleep=self._before_sleep,
                reraise=True,
            ):
                with attempt:
                    made += 1
                    return await self._get_once(url), made
        except _Retryable as exc:
            raise DownloadError(url, str(exc), status=exc.status, attempts=made) from exc
        except DownloadError as exc:
            raise DownloadError(url, f"HTTP {exc.status}", status=exc.status, attempts=made) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        delay = self.retry.backoff(state.attempt_number)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.retry.max_s)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("download retrying", attempt=state.attempt_number, error=str(exc)[:300])

    async def _get_once(self, url: str) -> bytes | None:
        assert self._session is not None
        async with self._semaphore:
            self.stats.requests += 1
            try:
                async with self._session.get(url, allow_redirects=True) as resp:
                    status = resp.status
                    self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
                    if status == 200:
                        body = await resp.read()
                        self.stats.bytes += len(body)
                        return body
                    if status == 404:
                        self.stats.not_found += 1
                        return None
                    if status >= 500 or status in _RETRY_STATUSES:
                        retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
                        raise _Retryable(f"HTTP {status}", status=status, retry_after=retry_after)
                    raise DownloadError(url, f"HTTP {status}", status=status)
            except TimeoutError as exc:
                raise _Retryable(f"timed out after {self.retry.timeout_s:g} s") from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc


_T = TypeVar("_T")
_R = TypeVar("_R")


async def fetch_ahead(
    items: Iterable[_T], fetch: Callable[[_T], Awaitable[_R]], window: int
) -> AsyncIterator[tuple[_T, _R | None, DownloadError | None]]:
    """Yield ``(item, result, error)`` in the order of ``items`` while up to ``window`` later fetches run.

    The next fetches start before each result is handed over, so downloads continue while the caller decodes and
    publishes. A :class:`DownloadError` comes back as ``error`` (result None); anything else propagates. Use it
    under ``contextlib.aclosing`` so fetches still in flight are cancelled when the caller stops early.
    """
    pending: deque[tuple[_T, asyncio.Task[_R]]] = deque()
    upcoming = iter(items)

    def refill() -> None:
        while len(pending) < window:
            item = next(upcoming, None)
            if item is None:
                return
            pending.append((item, asyncio.ensure_future(fetch(item))))

    try:
        refill()
        while pending:
            item, task = pending.popleft()
            try:
                result, error = await task, None
            except DownloadError as exc:
                result, error = None, exc
            refill()
            yield item, result, error
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
