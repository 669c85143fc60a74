"""The OANDA v20 pricing-stream ingester: one HTTP stream for all instruments, quotes into the ``fx`` namespace.

A session waits while the FX market is closed for the weekend (``market_closed`` marker, no connection), then
opens one :class:`~ingesters.oanda.stream.OandaStream` for the instruments OANDA has not refused and reads it
until it drops, goes stale or the weekly close arrives. ``PRICE`` lines become :class:`~pulse.models.Quote`
events (non-tradeable ones too, flagged ``tradeable=False``); heartbeats only keep the stream's stale watchdog
quiet. After an unplanned disconnect the next connection first publishes a ``gap`` marker on every quote
topic. Malformed lines are counted and dead-lettered; the connection stays up.

Errors: 401 (and other non-retryable 4xx) raise :class:`~pulse.errors.FatalVenueError` out of :meth:`run`;
a 400 naming instruments drops those (counted, dead-lettered) and reconnects at once with the rest; 5xx,
408, 429, drops and stalls reconnect with capped, jittered backoff, never sooner than a ``Retry-After``.
The token goes only into the request header: no log line, error, status file or summary carries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from ingesters.base.reconnect import reconnect_loop
from ingesters.oanda.parser import OandaMessageError, OandaStreamParser
from ingesters.oanda.settings import OandaSettings
from ingesters.oanda.stream import InvalidInstrumentError, OandaStream, OandaTransportError, StaleStreamError
from ingesters.oanda.symbols import instrument_to_symbol
from pulse.calendars import is_open, next_close, next_open
from pulse.control import InstrumentCommand
from pulse.errors import ConfigError, FatalVenueError
from pulse.log import get_logger, register_secret
from pulse.models import StatusKind

__all__ = ["OandaIngester"]

log = get_logger(__name__)

#: Longest wait a server's Retry-After may impose (a hostile or broken header must not park us for days).
MAX_RETRY_AFTER_S = 300.0


class _SessionBackoff(Backoff):
    """The reconnect loop's backoff, stretched once to a venue's ``Retry-After`` when one was given."""

    def __init__(self, initial: float, maximum: float) -> None:
        super().__init__(initial, maximum)
        self.retry_after: float | None = None

    def next_delay(self) -> float:
        delay = super().next_delay()
        retry_after, self.retry_after = self.retry_after, None
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay


class _Restream(Exception):
    """The instrument list changed (control topic): reopen the stream with the new list."""


class _MarketClosed(Exception):
    """The weekly close arrived while connected: end the stream on purpose (no gap, no backoff)."""


class OandaIngester:
    """Stream OANDA prices for ``instruments`` (OANDA names, ``EUR_USD``) into ``ctx`` until ``stop``.

    ``clock`` stamps ``ts_recv`` (ns); ``now`` is the wall clock the market-hours rule is evaluated with.
    ``api_url`` overrides ``settings.api_url`` and the practice/live host (the local venue in tests).
    """

    venue = "oanda"
    #: How often a closed market (and the approaching weekly close) is re-checked against ``now()``; sleeping
    #: in bounded steps keeps the schedule right across clock changes and suspends.
    market_recheck_s: float = 60.0

    def __init__(
        self,
        settings: OandaSettings,
        ctx: IngestContext,
        *,
        instruments: Iterable[str],
        token: str,
        api_url: str | None,
        clock: Callable[[], int] = time.time_ns,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.instruments: list[str] = list(instruments)
        self.api_url = api_url or settings.api_url or None
        self.now = now
        self.parser = OandaStreamParser(clock=clock, venue=self.venue)
        self.rejected: dict[str, str] = {}  # instrument → OANDA's reason
        self.market_state: str = "unknown"  # "open" | "closed"
        self._token = token
        self._need_gap = False
        self._stop = asyncio.Event()
        self._restream = asyncio.Event()
        self._announce: dict[str, StatusKind] = {}  # instrument → marker to publish once the new stream is open
        self._backoff = _SessionBackoff(settings.backoff_initial_s, settings.backoff_max_s)
        register_secret(token)
        if not token:
            raise ConfigError("OANDA token is empty (setting oanda.token, oanda.token_file or $OANDA_TOKEN)")
        self._symbols = {name: instrument_to_symbol(name) for name in self.instruments}  # raises SymbolError
        self._new_stream(self.instruments)  # validates account id, instruments and URL before anything starts
        ctx.extra["instruments"] = list(self.instruments)

    def __repr__(self) -> str:
        return f"OandaIngester(instruments={','.join(self.active_instruments)}, api_url={self.api_url!r})"

    @property
    def active_instruments(self) -> list[str]:
        """The requested instruments OANDA has not refused."""
        return [i for i in self.instruments if i not in self.rejected]

    # -- public ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Raises :class:`FatalVenueError` when retrying cannot help."""
        self._stop = stop
        async with self.ctx.reporting():
            try:
                await reconnect_loop(self._session, ctx=self.ctx, stop=stop, backoff=self._backoff)
            except FatalVenueError as exc:
                log.error("OANDA ingester stopped", venue=self.venue, error=str(exc))
                raise
            finally:
                self.ctx.extra["rejected"] = dict(self.rejected)

    async def apply(self, cmd: InstrumentCommand) -> None:
        """Apply a registry change from the control topic. The v20 stream's instrument list is fixed per
        request, so a change reopens the stream at once (no backoff) with the new list; the other instruments
        get a ``gap`` marker for the moment between the two streams, the changed one ``subscribed`` or
        ``unsubscribed`` once the new stream is open."""
        if cmd.venue != self.venue:
            return
        name = cmd.venue_symbol
        if cmd.subscribes:
            if name in self.active_instruments:
                return
            self._symbols[name] = instrument_to_symbol(name)  # raises SymbolError: the registry validated it
            self.rejected.pop(name, None)
            if name not in self.instruments:
                self.instruments.append(name)
            self._announce[name] = "subscribed"
        else:
            if name not in self.instruments:
                return
            self.instruments.remove(name)
            self.rejected.pop(name, None)
            self._announce[name] = "unsubscribed"
        self.ctx.extra["instruments"] = self.active_instruments
        log.info("instrument list changed; reopening the stream", op=cmd.op, instrument=name)
        self._restream.set()

    # -- one session: wait for the market, connect, read until the stream ends --------------------------
    async def _session(self) -> bool:
        """Returns True when it got a stream opened (the backoff then resets); raises when it could not."""
        healthy = False
        while not self._stop.is_set():
            if not self.active_instruments:  # every instrument removed live: wait for one to be added
                self._flush_announcements()
                waits = {asyncio.create_task(self._restream.wait()), asyncio.create_task(self._stop.wait())}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for t in waits:
                    t.cancel()
                self._restream.clear()
                continue
            if not await self._wait_for_market():
                return healthy
            self._restream.clear()
            stream = await self._open()
            healthy = True
            self._on_connected(stream)
            self._flush_announcements()
            try:
                await self._read_until_over(stream)
            except _MarketClosed:
                continue  # planned: the weekend wait comes next, then a fresh connection without a gap marker
            except _Restream:
                self._need_gap = True
                continue
            except StaleStreamError as exc:
                self.ctx.counters.stale += 1
                for sym in self._active_symbols():
                    self.ctx.status(sym, "stale", str(exc))
                self._lost(exc)
                return healthy
            except OandaTransportError as exc:
                self._lost(exc)
                return healthy
            finally:
                await stream.close()
        return healthy

    async def _open(self) -> OandaStream:
        """Open a stream for the active instruments, dropping any OANDA refuses (at once, no backoff)."""
        while True:
            stream = self._new_stream(self.active_instruments)
            try:
                await stream.open()
                return stream
            except InvalidInstrumentError as exc:
                self._refuse(exc)
            except OandaTransportError as exc:
                self._backoff.retry_after = exc.retry_after_s
                raise

    def _new_stream(self, instruments: list[str]) -> OandaStream:
        s = self.settings
        return OandaStream(
            account_id=s.account_id,
            token=self._token,
            instruments=instruments,
            environment=s.environment,
            api_url=self.api_url,
            stale_after_s=s.stale_after_s,
            connect_timeout_s=s.connect_timeout_s,
        )

    def _refuse(self, exc: InvalidInstrumentError) -> None:
        active = self.active_instruments
        bad = [i for i in exc.instruments if i in active]
        if not bad:
            raise FatalVenueError(f"{exc} — cannot tell which instrument to drop (setting oanda.instruments)") from exc
        ctx = self.ctx
        for name in bad:
            self.rejected[name] = str(exc)
            ctx.counters.rejected += 1
            record = {"instrument": name, "symbol": self._symbols[name], "requested": active, "error": str(exc)}
            ctx.dead_letter(json.dumps(record), f"instrument refused by OANDA: {exc}", kind="rejected", instrument=name)
        ctx.extra["rejected"] = dict(self.rejected)
        ctx.extra["instruments"] = self.active_instruments
        remaining = ",".join(self.active_instruments)
        log.warning("OANDA refused instruments; continuing without them", refused=",".join(bad), remaining=remaining)
        if not self.active_instruments:
            raise FatalVenueError(
                f"OANDA refused every requested instrument ({','.join(self.instruments)}); "
                "fix setting oanda.instruments / --instruments"
            ) from exc

    def _on_connected(self, stream: OandaStream) -> None:
        ctx = self.ctx
        if self._need_gap:
            self._need_gap = False
            for sym in self._active_symbols():
                ctx.gap(sym, "reconnected; quotes between the markers may be missing", ("quote",))
        for sym in self._active_symbols():
            ctx.restart_gap(sym, ("quote",))
        for sym in self._active_symbols():
            ctx.status(sym, "connected", stream.url)
        ctx.extra["connected"] = True
        log.info("connected", venue=self.venue, url=stream.url, instruments=",".join(stream.instruments))

    def _flush_announcements(self) -> None:
        for name, kind in self._announce.items():
            if kind == "subscribed" and name not in self.active_instruments:
                continue  # refused by OANDA on open: dead-lettered instead
            self.ctx.status(self._symbols[name], kind, name)
        self._announce.clear()

    def _lost(self, exc: Exception) -> None:
        self._need_gap = True
        self.ctx.extra["connected"] = False
        log.warning("OANDA stream lost", venue=self.venue, reason=f"{type(exc).__name__}: {exc}")

    async def _read_until_over(self, stream: OandaStream) -> None:
        """Read lines until the stream raises, ``stop`` is set (returns) or the weekly close (``_MarketClosed``)."""
        reader = asyncio.create_task(self._read(stream))
        stopper = asyncio.create_task(self._stop.wait())
        closer = asyncio.create_task(self._until_weekly_close())
        changed = asyncio.create_task(self._restream.wait())
        try:
            await asyncio.wait({reader, stopper, closer, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, stopper, closer, changed):
                t.cancel()
            await asyncio.gather(reader, stopper, closer, changed, return_exceptions=True)
        failure = reader.exception() if reader.done() and not reader.cancelled() else None
        if failure is not None:
            raise failure
        if self._restream.is_set() and not self._stop.is_set():
            raise _Restream
        if closer.done() and not closer.cancelled() and not self._stop.is_set():
            raise _MarketClosed

    async def _read(self, stream: OandaStream) -> None:
        ctx, parser = self.ctx, self.parser
        counters = ctx.counters
        async for line in stream.lines():
            counters.frames += 1
            try:
                parsed = parser.feed_line(line)
            except OandaMessageError as exc:
                counters.parse_errors += 1
                ctx.dead_letter(line, str(exc))
                continue
            if parsed.event is not None:
                ctx.publish(parsed.event)

    # -- market hours ------------------------------------------------------------------------------------
    async def _wait_for_market(self) -> bool:
        """Return at once while the market is open; otherwise mark it closed and sleep until it opens.
        False when ``stop`` was set while waiting."""
        if self.settings.market_hours == "always":
            return not self._stop.is_set()
        while not is_open(self.now()):
            if self.market_state != "closed":
                opens = next_open(self.now())
                self._mark_market("closed", f"FX weekend close; reopens {opens.isoformat()}")
                log.info("market closed; not connecting", venue=self.venue, reopens=opens.isoformat())
            delay = (next_open(self.now()) - self.now()).total_seconds()
            if await self._sleep(max(0.0, min(delay, self.market_recheck_s))):
                return False
        if self.market_state == "closed":
            self._mark_market("open", "FX market open")
            log.info("market open; connecting", venue=self.venue)
        self.market_state = "open"
        self.ctx.extra["market"] = "open"
        return not self._stop.is_set()

    async def _until_weekly_close(self) -> None:
        if self.settings.market_hours == "always":
            await self._stop.wait()
            return
        while True:
            now = self.now()
            if not is_open(now):
                break
            await asyncio.sleep(max(0.0, min((next_close(now) - now).total_seconds(), self.market_recheck_s)))
        opens = next_open(self.now())
        self._mark_market("closed", f"FX weekend close; reopens {opens.isoformat()}")
        log.info("market closed; disconnecting until it reopens", venue=self.venue, reopens=opens.isoformat())

    def _mark_market(self, state: str, detail: str) -> None:
        self.market_state = state
        self.ctx.extra["market"] = state
        kind = "market_closed" if state == "closed" else "market_open"
        for sym in self._active_symbols():
            self.ctx.status(sym, kind, detail, ("quote", "status"))

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, interrupted by ``stop``; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self._stop.is_set()

    def _active_symbols(self) -> list[str]:
        return [self._symbols[i] for i in self.active_instruments]
