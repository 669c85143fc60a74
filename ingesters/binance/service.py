"""The Binance spot ingester: one combined-stream connection for every symbol and channel, books kept in sync
with REST snapshots, and connections renewed before Binance's 24-hour limit without a gap.

A session: validate the symbols against exchangeInfo (unknown ones are refused and dead-lettered: Binance itself
accepts a stream for any name and stays silent) → connect to ``/stream?streams=…`` → read until the connection
ends. Books: the first diff of a symbol asks for its REST snapshot (:mod:`ingesters.binance.book`); a sequence
break publishes ``resync`` on that symbol's book topic and starts its book over — other symbols are untouched.
``symbols add``/``remove`` send SUBSCRIBE/UNSUBSCRIBE on the open connection, paced under Binance's 5 messages/s.

Liveness: Binance pings every 20 s and the websockets library answers each ping with a pong carrying its payload;
our own pings (``ping_interval_s``) find a dead transport, and a watchdog reconnects when no data arrived for
``stale_after_s``. After any reconnect the next healthy session publishes a ``gap`` marker on every topic.

Renewal: ``renew_after_s`` after a connection opened (or at once on ``serverShutdown``) a second connection opens
with the same streams; its frames are held until it has delivered every stream the old one delivered meanwhile
(at most ``renew_overlap_max_s``), then the old one is closed and the held frames are processed. Trades and book
tickers seen on both are dropped by id, diffs by update id, so nothing is lost and nothing doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable, Mapping

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from ingesters.base.subscriptions import StreamIngester
from ingesters.binance import protocol
from ingesters.binance.parser import BinanceMessageError, BinanceParser, Parsed
from ingesters.binance.rest import BinanceRest, RestFailure, UnknownSymbol
from ingesters.binance.schemas import frame_decoder
from ingesters.binance.settings import BinanceSettings
from ingesters.binance.symbols import CHANNEL_TOPICS, CHANNELS, precisions_of, resolve
from pulse.log import get_logger

log = get_logger(__name__)


class _Link:
    """One WebSocket connection: its streams, its reader, and (while it is the renewal) its held frames."""

    def __init__(self, number: int, ws: ClientConnection, streams: set[str]) -> None:
        self.number = number
        self.ws = ws
        self.streams = streams
        self.opened = time.monotonic()
        self.pacer: protocol.Pacer | None = None
        self.lock = asyncio.Lock()
        self.held: list[str | bytes] | None = None  # a renewal's frames until the switch
        self.seen: set[str] = set()  # streams it delivered (while held)
        self.reader: asyncio.Task[None] | None = None


def _canonical(symbol: str) -> str:
    return resolve(symbol).symbol


class BinanceIngester(StreamIngester):
    venue = "binance"
    venue_label = "Binance"
    channel_order = tuple(CHANNELS)
    channel_topics = CHANNEL_TOPICS
    _log = log

    def __init__(
        self,
        settings: BinanceSettings,
        ctx: IngestContext,
        *,
        symbols: Iterable[str] | Mapping[str, Iterable[str]],
        channels: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.channels = self._ordered(settings.channels if channels is None else channels)
        self.subs = self._subscriptions(symbols, self.channels, _canonical)
        self.parser = BinanceParser(venue=self.venue, clock=ctx.clock, depth=settings.depth_limit)
        self.rest = BinanceRest(settings.rest_url, timeout_s=settings.rest_timeout_s)
        self.rejected: dict[str, str] = {}
        self.validated: dict[str, tuple[int, int]] = {}  # symbol → (price, size) decimals from exchangeInfo
        self.renewals = 0
        self._ids = itertools.count(1)
        self._links = itertools.count(1)
        self._current: _Link | None = None
        self._pending: _Link | None = None
        self._lost = asyncio.Event()
        self._renew_now = asyncio.Event()
        self._switched = asyncio.Event()
        self._requests: dict[int, tuple[str, list[str]]] = {}  # request id → (method, symbols)
        self._snapshots: dict[str, asyncio.Task[None]] = {}
        self._need_gap = False
        self._healthy = False
        self._last_data = time.monotonic()
        self._old_seen: set[str] = set()  # streams the current link delivered since a renewal opened
        self._stop = asyncio.Event()
        ctx.probes.append(
            lambda: {
                "resyncs": self.parser.resyncs,
                "duplicates": self.parser.duplicates,
                "renewals": self.renewals,
                "rest_requests": self.rest.requests,
                "rest_failures": self.rest.failures,
            }
        )
        for sym, chs in self.subs.items():
            if "book" in chs:
                self.parser.track_book(sym)
        self._publish_subs()

    # -- public ----------------------------------------------------------------------------------------
    async def _stopped(self) -> None:
        for t in self._snapshots.values():
            t.cancel()
        await asyncio.gather(*self._snapshots.values(), return_exceptions=True)
        await self.rest.close()

    def streams_of(self, symbol: str, channels: Iterable[str] | None = None) -> list[str]:
        venue_symbol = resolve(symbol).venue_symbol
        cfg = self.settings
        return [
            protocol.stream_name(
                venue_symbol, protocol.stream_kind(ch, trade_stream=cfg.trade_stream, depth_speed=cfg.depth_speed)
            )
            for ch in (self.subs.get(symbol, ()) if channels is None else channels)
        ]

    def all_streams(self) -> list[str]:
        return [s for sym in self.active_symbols for s in self.streams_of(sym)]

    async def add_symbols(self, symbols: Iterable[str], channels: Iterable[str] | None = None) -> list[str]:
        """Subscribe symbols on the open connection (and every later one); a symbol already streaming gets its
        channels changed to ``channels`` when given. Returns the symbols whose subscriptions changed."""
        chs = self._ordered(self.channels if channels is None else channels)
        changed: list[str] = []
        for sym in dict.fromkeys(resolve(s).symbol for s in symbols):
            old = self.subs.get(sym)
            if old is not None and (channels is None or old == chs) and sym not in self.rejected:
                continue
            if not await self._validate([sym]):
                continue
            total = len(self.all_streams()) - len(self.streams_of(sym, old or ())) + len(chs)
            if total > protocol.MAX_STREAMS:
                self._reject(sym, f"a connection carries at most {protocol.MAX_STREAMS} streams")
                continue
            self.subs[sym] = chs
            self.rejected.pop(sym, None)
            changed.append(sym)
            dropped = [s for s in self.streams_of(sym, old or ()) if s not in self.streams_of(sym, chs)]
            added = [s for s in self.streams_of(sym, chs) if s not in self.streams_of(sym, old or ())]
            if "book" in chs:
                self.parser.track_book(sym)
            elif old and "book" in old:
                self.parser.drop_book(sym)
            if dropped:
                await self._request("UNSUBSCRIBE", dropped, [])
            if added:
                await self._request("SUBSCRIBE", added, [sym])
        self._publish_subs()
        return changed

    async def remove_symbols(self, symbols: Iterable[str]) -> list[str]:
        """Unsubscribe symbols (an ``unsubscribed`` marker follows Binance's acknowledgement)."""
        gone: list[str] = []
        streams: list[str] = []
        for sym in dict.fromkeys(resolve(s).symbol for s in symbols):
            if sym in self.subs:
                if sym not in self.rejected:
                    streams += self.streams_of(sym)
                self.subs.pop(sym)
                self.rejected.pop(sym, None)
                self.parser.drop_book(sym)
                task = self._snapshots.pop(sym, None)
                if task is not None:
                    task.cancel()
                gone.append(sym)
        if streams:
            await self._request("UNSUBSCRIBE", streams, gone)
        self._publish_subs()
        return gone

    def _publish_subs(self) -> None:
        self.ctx.extra["subscriptions"] = {s: list(c) for s, c in self.subs.items()}
        self.ctx.extra["rejected"] = dict(self.rejected)

    def _reject(self, symbol: str, reason: str) -> None:
        if symbol in self.rejected:
            return
        self.rejected[symbol] = reason
        self.ctx.counters.rejected += 1
        body = msgspec.json.encode({"symbol": symbol, "reason": reason})
        self.ctx.dead_letter(body, f"subscription refused: {reason}", kind="rejected", symbol=symbol)
        log.warning("symbol refused", venue=self.venue, symbol=symbol, reason=reason)
        self._publish_subs()

    async def _validate(self, symbols: list[str]) -> list[str]:
        """The symbols exchangeInfo lists (the others are refused); all of them when it cannot be asked."""
        todo = [s for s in symbols if s not in self.validated and s not in self.rejected]
        if todo:
            try:
                await self._exchange_info(todo)
            except UnknownSymbol:
                for sym in todo:  # find which: one at a time
                    with contextlib.suppress(UnknownSymbol, RestFailure):
                        await self._exchange_info([sym])
            except RestFailure as exc:
                log.warning("exchangeInfo unavailable; subscribing without it", venue=self.venue, error=str(exc))
                return [s for s in symbols if s not in self.rejected]
        ok = [s for s in symbols if s in self.validated]
        for sym in symbols:
            if sym not in self.validated and sym not in self.rejected:
                self._reject(sym, "Invalid symbol. (not listed by exchangeInfo)")
        return ok

    async def _exchange_info(self, symbols: list[str]) -> None:
        names = {resolve(s).venue_symbol: s for s in symbols}
        try:
            info = await self.rest.exchange_info(list(names))
        except UnknownSymbol:
            if len(symbols) == 1:
                self._reject(symbols[0], "Invalid symbol. (exchangeInfo -1121)")
            raise
        for s in info.symbols:
            if s.symbol in names:
                self.validated[names[s.symbol]] = precisions_of(s)
                if s.status != "TRADING":
                    log.warning("symbol not trading", venue=self.venue, symbol=names[s.symbol], status=s.status)
        log.info(
            "exchangeInfo", venue=self.venue, precisions={k: self.validated[k] for k in symbols if k in self.validated}
        )

    # -- requests ---------------------------------------------------------------------------------------
    async def _request(self, method: str, streams: list[str], symbols: list[str]) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE for ``streams`` on every open link, paced; ``symbols`` get a marker when
        the current link acknowledges."""
        for link in [lnk for lnk in (self._current, self._pending) if lnk is not None]:
            for part in protocol.chunks(streams):
                rid = next(self._ids)
                if link is self._current:
                    self._requests[rid] = (method, symbols)
                await self._send(link, protocol.request(method, part, rid))
            if method == "SUBSCRIBE":
                link.streams |= set(streams)
            else:
                link.streams -= set(streams)

    async def _send(self, link: _Link, text: str) -> None:
        async with link.lock:
            if link.pacer is None:
                link.pacer = protocol.Pacer(self.settings.max_messages_per_s)
            delay = link.pacer.delay()
            if delay > 0:
                await asyncio.sleep(delay)
            link.pacer.sent()
            with contextlib.suppress(websockets.ConnectionClosed):
                await link.ws.send(text)

    # -- connections ------------------------------------------------------------------------------------
    async def _open(self, streams: list[str]) -> _Link:
        url = protocol.stream_url(self.settings.url, streams[: protocol.URL_STREAMS])
        cfg = self.settings
        ws = await connect(
            url,
            open_timeout=cfg.connect_timeout_s,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_timeout_s,
            close_timeout=2,
            max_size=2**24,
            max_queue=4096,
            compression=None,
        )
        link = _Link(next(self._links), ws, set(streams[: protocol.URL_STREAMS]))
        rest = streams[protocol.URL_STREAMS :]
        if rest:
            asyncio.get_running_loop().create_task(self._subscribe_rest(link, rest))
        return link

    async def _subscribe_rest(self, link: _Link, streams: list[str]) -> None:
        for part in protocol.chunks(streams):
            await self._send(link, protocol.request("SUBSCRIBE", part, next(self._ids)))
            link.streams |= set(part)

    async def _session(self) -> bool:
        self._healthy = False
        self.parser.reset_books()
        for t in self._snapshots.values():
            t.cancel()
        self._snapshots.clear()
        await self._validate(list(self.subs))
        link = await self._open(self.all_streams())
        self._current, self._lost = link, asyncio.Event()
        self._last_data = time.monotonic()
        log.info(
            "connected",
            venue=self.venue,
            url=self.settings.url,
            symbols=len(self.active_symbols),
            streams=len(link.streams),
            connection=link.number,
        )
        link.reader = asyncio.create_task(self._read(link))
        tasks = [asyncio.create_task(c) for c in (self._watchdog(), self._renewer(), self._close_on_stop())]
        try:
            await self._lost.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for lnk in (self._current, self._pending):
                if lnk is not None:
                    await self._close(lnk)
            self._current = self._pending = None
            self._requests.clear()
            self._need_gap = True
        return self._healthy

    async def _read(self, link: _Link) -> None:
        try:
            async for frame in link.ws:
                if link is self._current:
                    self._handle(frame, link)
                elif link is self._pending and link.held is not None:
                    self._hold(link, frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            if link is self._current:
                self._lost.set()
            elif link is self._pending:
                self._pending = None
                log.warning("renewal connection closed before the switch", venue=self.venue, connection=link.number)

    async def _close(self, link: _Link) -> None:
        with contextlib.suppress(Exception):
            await link.ws.close()
        if link.reader is not None and link.reader is not asyncio.current_task():
            link.reader.cancel()
            await asyncio.gather(link.reader, return_exceptions=True)

    # -- frames -----------------------------------------------------------------------------------------
    def _handle(self, frame: str | bytes, link: _Link) -> None:
        ctx = self.ctx
        ctx.counters.frames += 1
        try:
            parsed = self.parser.feed(frame)
        except BinanceMessageError as exc:
            ctx.counters.parse_errors += 1
            ctx.dead_letter(frame, str(exc))
            return
        if parsed.stream:
            self._last_data = time.monotonic()
            if self._pending is not None:
                self._old_seen.add(parsed.stream)
            if not self._healthy:
                self._on_healthy()
        self._apply(parsed)
        for ack in parsed.acks:
            self._acknowledged(ack.id, ack.ok, ack.error, frame)
        if parsed.shutdown:
            log.warning("server shutdown announced; renewing the connection now", venue=self.venue)
            self._renew_now.set()

    def _apply(self, parsed: Parsed) -> None:
        for ev in parsed.events:
            self.ctx.publish(ev)
        for sym, reason in parsed.resync:
            log.warning("book out of sequence; resyncing", venue=self.venue, symbol=sym, reason=reason)
            self.ctx.status(sym, "resync", reason, ("book",))
            task = self._snapshots.pop(sym, None)
            if task is not None:
                task.cancel()
        for sym in parsed.snapshots:
            self._fetch_snapshot(sym, 0.0)
        for sym in parsed.retry_snapshot:
            self._fetch_snapshot(sym, self.settings.snapshot_retry_s)

    def _acknowledged(self, rid: int | str | None, ok: bool, error: str, frame: str | bytes) -> None:
        req = self._requests.pop(rid, None) if isinstance(rid, int) else None
        if not ok:
            self.ctx.counters.rejected += 1
            self.ctx.dead_letter(frame, f"request refused: {error}", kind="rejected")
            return
        if req is None:
            return
        if not self._healthy:
            self._on_healthy()
        method, symbols = req
        for sym in symbols:
            self.ctx.status(
                sym, "subscribed" if method == "SUBSCRIBE" else "unsubscribed", ",".join(self.subs.get(sym, ()))
            )

    @property
    def url(self) -> str:  # the venue's base URL: each link connects to a stream URL under it
        return self.settings.url

    def _on_healthy(self) -> None:
        self._healthy = True
        super()._on_healthy()  # the shared markers: a reconnect's gap, the restart's gap, connected

    # -- books ------------------------------------------------------------------------------------------
    def _fetch_snapshot(self, symbol: str, delay: float) -> None:
        old = self._snapshots.get(symbol)
        if old is not None and not old.done():
            return
        self._snapshots[symbol] = asyncio.get_running_loop().create_task(self._snapshot(symbol, delay))

    async def _snapshot(self, symbol: str, delay: float) -> None:
        backoff = Backoff(self.settings.snapshot_retry_s, 30.0)
        while True:
            if delay:
                await asyncio.sleep(delay)
            sync = self.parser.book(symbol)
            if sync is None or sync.synced:
                return
            try:
                body = await self.rest.depth(resolve(symbol).venue_symbol, self.settings.depth_limit)
            except UnknownSymbol as exc:
                self._reject(symbol, str(exc))
                await self._request("UNSUBSCRIBE", self.streams_of(symbol), [])
                return
            except RestFailure as exc:
                delay = backoff.next_delay()
                log.warning(
                    "depth snapshot failed; retrying",
                    venue=self.venue,
                    symbol=symbol,
                    error=str(exc),
                    retry_s=round(delay, 2),
                )
                continue
            try:
                parsed = self.parser.apply_snapshot(symbol, body)
            except BinanceMessageError as exc:
                self.ctx.counters.parse_errors += 1
                self.ctx.dead_letter(body, str(exc), symbol=symbol)
                delay = backoff.next_delay()
                continue
            self._snapshots.pop(symbol, None)
            self._apply(parsed)
            if symbol in parsed.retry_snapshot:
                continue_delay = self.settings.snapshot_retry_s
                self._snapshots[symbol] = asyncio.get_running_loop().create_task(self._snapshot(symbol, continue_delay))
            return

    # -- renewal ----------------------------------------------------------------------------------------
    def _hold(self, link: _Link, frame: str | bytes) -> None:
        assert link.held is not None
        link.held.append(frame)
        with contextlib.suppress(Exception):
            stream = frame_decoder.decode(frame).stream
            if stream:
                link.seen.add(stream)
        if link.seen and self._old_seen <= link.seen:
            self._switch()

    def _switch(self) -> None:
        """Make the renewal the current link: the held frames are processed, the old link is closed."""
        old, new = self._current, self._pending
        if new is None or new.held is None:
            return
        self._current, self._pending = new, None
        self._switched.set()
        held, new.held = new.held, None
        self.parser.rebase_books()
        self.renewals += 1
        log.info(
            "connection renewed",
            venue=self.venue,
            old=old.number if old else None,
            new=new.number,
            held_frames=len(held),
        )
        for frame in held:
            self._handle(frame, new)
        if old is not None:
            asyncio.get_running_loop().create_task(self._close(old))

    async def _renewer(self) -> None:
        cfg = self.settings
        while True:
            link = self._current
            assert link is not None
            wait = max(0.0, link.opened + cfg.renew_after_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renew_now.wait(), timeout=wait)
            self._renew_now.clear()
            try:
                new = await self._open(sorted(link.streams))
            except Exception as exc:
                log.warning(
                    "renewal connection failed; retrying", venue=self.venue, error=f"{type(exc).__name__}: {exc}"
                )
                await asyncio.sleep(min(5.0, cfg.renew_overlap_max_s))
                self._renew_now.set()
                continue
            new.held = []
            self._old_seen = set()
            self._pending = new
            new.reader = asyncio.create_task(self._read(new))
            self._switched = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._switched.wait(), timeout=cfg.renew_overlap_max_s)
            if self._pending is new:
                log.warning(
                    "renewal did not deliver every stream in time; switching anyway",
                    venue=self.venue,
                    missing=sorted(self._old_seen - new.seen)[:10],
                )
                self._switch()
            if self._current is link:  # the renewal closed before it could switch: try again shortly
                await asyncio.sleep(1.0)
                self._renew_now.set()

    async def _watchdog(self) -> None:
        limit = self.settings.stale_after_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            idle = time.monotonic() - self._last_data
            if idle > limit and self._current is not None:
                self.ctx.counters.stale += 1
                log.warning("feed stale; reconnecting", venue=self.venue, idle_s=round(idle, 1))
                for sym in self.active_symbols:
                    self.ctx.status(sym, "stale", f"no message for {idle:.1f}s")
                await self._current.ws.close(code=4000, reason="stale feed")
                return

    async def _close_on_stop(self) -> None:
        await self._stop.wait()
        self._lost.set()
