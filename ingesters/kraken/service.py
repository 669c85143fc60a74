"""The Kraken WebSocket v2 ingester: one connection, many symbols and channels.

Lifecycle of a session: connect → subscribe ``instrument`` (price/qty precisions for checksums), then each data
channel for all symbols → read frames until the connection ends. A watchdog closes the connection when
nothing (data, heartbeat or pong) arrived for ``stale_after_s``; an application ping goes out every
``ping_interval_s``. After any disconnect the next healthy session publishes a ``gap`` marker on every
topic of every instrument and replays all subscriptions; book checksum failures publish ``resync`` and
re-request that book's snapshot. Malformed frames and refused subscriptions are dead-lettered, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable

import websockets
from websockets.asyncio.client import connect

from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from ingesters.base.reconnect import reconnect_loop
from ingesters.kraken import protocol
from ingesters.kraken.parser import KrakenFeedParser, KrakenMessageError, Parsed
from pulse.log import get_logger
from pulse.settings import KrakenSettings

log = get_logger(__name__)

#: topics each subscribed channel publishes on (ticker yields Ticker and Quote events)
CHANNEL_TOPICS = {"trade": ("trade",), "ticker": ("ticker", "quote"), "book": ("book",)}


class KrakenIngester:
    venue = "kraken"

    def __init__(
        self,
        settings: KrakenSettings,
        ctx: IngestContext,
        *,
        symbols: Iterable[str],
        channels: Iterable[str],
        depth: int,
        url: str,
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.symbols: list[str] = list(dict.fromkeys(symbols))
        self.channels: list[str] = list(channels)
        self.depth = depth
        self.url = url
        self.parser = KrakenFeedParser(depth=depth, clock=ctx.clock, venue=self.venue)
        self.rejected: dict[str, str] = {}  # symbol → the venue's reason
        self._req_ids = itertools.count(1)
        self._ws: websockets.asyncio.client.ClientConnection | None = None
        self._need_gap = False
        self._last_msg = time.monotonic()
        self._stop = asyncio.Event()
        ctx.probes.append(lambda: {"checksum_ok": self.parser.checksum_ok})

    # -- public ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; reconnects with capped, jittered backoff on any transport failure."""
        self._stop = stop
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        async with self.ctx.reporting():
            await reconnect_loop(self._session, ctx=self.ctx, stop=stop, backoff=backoff)

    @property
    def active_symbols(self) -> list[str]:
        return [s for s in self.symbols if s not in self.rejected]

    async def add_symbols(self, symbols: Iterable[str]) -> list[str]:
        """Subscribe more symbols on the live connection (and on every later one). Returns the new ones."""
        new = [s for s in symbols if s not in self.symbols]
        self.symbols.extend(new)
        for s in new:
            self.rejected.pop(s, None)
        if new and self._ws is not None:
            await self._subscribe_all(self._ws, new)
        return new

    async def remove_symbols(self, symbols: Iterable[str]) -> list[str]:
        gone = [s for s in symbols if s in self.symbols]
        self.symbols = [s for s in self.symbols if s not in gone]
        if gone and self._ws is not None:
            for ch in self.channels:
                depth = self.depth if ch == "book" else None
                await self._ws.send(protocol.unsubscribe(ch, gone, depth=depth, req_id=next(self._req_ids)))
        for s in gone:
            self.parser.reset_books(s)
        return gone

    # -- one connection --------------------------------------------------------------------------------
    async def _session(self) -> bool:
        healthy = False
        self.parser.reset_books()
        async with connect(
            self.url,
            open_timeout=self.settings.connect_timeout_s,
            ping_interval=None,  # Kraken's application-level ping below, plus our watchdog
            close_timeout=2,
            max_size=2**24,
            max_queue=4096,
            compression=None,
        ) as ws:
            self._ws = ws
            self._last_msg = time.monotonic()
            log.info("connected", venue=self.venue, url=self.url, symbols=len(self.active_symbols))
            await self._subscribe_all(ws, self.active_symbols)
            tasks = [
                asyncio.create_task(self._watchdog(ws)),
                asyncio.create_task(self._pinger(ws)),
                asyncio.create_task(self._close_on_stop(ws)),
            ]
            try:
                async for frame in ws:
                    self._last_msg = time.monotonic()
                    if self._handle(frame) and not healthy:
                        healthy = True
                        self._on_healthy()
            except websockets.ConnectionClosed:
                pass
            finally:
                self._ws = None
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._need_gap = True
        return healthy

    async def _subscribe_all(self, ws: websockets.asyncio.client.ClientConnection, symbols: list[str]) -> None:
        if not symbols:
            return
        await ws.send(protocol.subscribe("instrument", symbols, req_id=next(self._req_ids)))
        for ch in self.channels:
            depth = self.depth if ch == "book" else None
            await ws.send(protocol.subscribe(ch, symbols, depth=depth, req_id=next(self._req_ids)))

    def _on_healthy(self) -> None:
        if self._need_gap:
            self._need_gap = False
            for sym in self.active_symbols:
                self.ctx.status(sym, "gap", "reconnected; data between the markers may be missing", self._topics())
        for sym in self.active_symbols:
            self.ctx.status(sym, "connected", self.url)

    def _topics(self) -> tuple[str, ...]:
        return tuple(t for ch in self.channels for t in CHANNEL_TOPICS[ch])

    def _handle(self, frame: str | bytes) -> bool:
        """Process one frame; True when it proves the session healthy (a subscription acknowledged or data)."""
        ctx = self.ctx
        ctx.counters.frames += 1
        try:
            parsed: Parsed = self.parser.feed(frame)
        except KrakenMessageError as exc:
            ctx.counters.parse_errors += 1
            ctx.dead_letter(frame, str(exc))
            return False
        for ev in parsed.events:
            ctx.publish(ev)
        healthy = bool(parsed.events)
        for ack in parsed.acks:
            if ack.success:
                healthy = healthy or ack.method == "subscribe"
                continue
            refused = ack.method == "subscribe" and ack.symbol and "already subscribed" not in (ack.error or "").lower()
            if refused and ack.symbol not in self.rejected:  # once per symbol, whichever channel said it first
                ctx.counters.rejected += 1
                self.rejected[ack.symbol] = ack.error or "rejected"
                ctx.extra["rejected"] = dict(self.rejected)
                ctx.dead_letter(frame, f"subscription refused: {ack.error}", kind="rejected", symbol=ack.symbol)
        if parsed.resync:
            ctx.counters.checksum_failures += len(parsed.resync)
            self._resync(parsed.resync)
        return healthy

    def _resync(self, symbols: list[str]) -> None:
        ws = self._ws
        for sym in symbols:
            self.ctx.status(sym, "resync", "book checksum mismatch; requesting a fresh snapshot", ("book",))
        if ws is None:
            return
        # Unsubscribe then subscribe again: Kraken answers a fresh snapshot. Sent in order on one connection.
        unsub = protocol.unsubscribe("book", symbols, depth=self.depth, req_id=next(self._req_ids))
        sub = protocol.subscribe("book", symbols, depth=self.depth, req_id=next(self._req_ids))
        asyncio.get_running_loop().create_task(self._send_all(ws, [unsub, sub]))

    @staticmethod
    async def _send_all(ws: websockets.asyncio.client.ClientConnection, messages: list[str]) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for m in messages:
                await ws.send(m)

    async def _watchdog(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        limit = self.settings.stale_after_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            idle = time.monotonic() - self._last_msg
            if idle > limit:
                self.ctx.counters.stale += 1
                log.warning("feed stale; reconnecting", venue=self.venue, idle_s=round(idle, 1))
                for sym in self.active_symbols:
                    self.ctx.status(sym, "stale", f"no message for {idle:.1f}s")
                await ws.close(code=4000, reason="stale feed")
                return

    async def _pinger(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            await ws.send(protocol.ping(next(self._req_ids)))

    async def _close_on_stop(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        await self._stop.wait()
        await ws.close()
