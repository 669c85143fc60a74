"""The Coinbase Advanced Trade ingester: one market-data WebSocket for every product and channel.

A session: check the products against the public products endpoint (an unlisted one is refused, counted and
dead-lettered; the others stream) → connect → one ``subscribe`` per channel (``heartbeats``, ``market_trades``,
``ticker``, ``level2``) → read until the connection ends. Coinbase's ``subscriptions`` answer proves the session
healthy (and confirms a live add or remove: ``subscribed`` / ``unsubscribed`` markers).

Gaps: every message carries the connection's ``sequence_num``. A jump publishes a ``gap`` marker on every topic of
every product (any channel's message may be the lost one), invalidates the books and resubscribes ``level2`` and
``market_trades`` on the open connection: the fresh ``level2`` snapshot rebuilds each book, and the trades snapshot
refills trades the gap swallowed (the ones already published are dropped by id). A book still without its snapshot
``resync_timeout_s`` later forces a reconnect.

Liveness: ``heartbeats`` arrive every second, so the watchdog (``stale_after_s``) reconnects a silent connection
quickly even when a product is quiet. After any reconnect the next healthy session publishes a ``gap`` marker on
every topic and subscribes everything again. Malformed messages are counted, logged truncated and dead-lettered,
never fatal; Coinbase's error messages likewise (kind ``venue_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping

import websockets
from websockets.asyncio.client import ClientConnection

from ingesters.base.context import IngestContext
from ingesters.base.subscriptions import StreamIngester
from ingesters.coinbase import protocol
from ingesters.coinbase.parser import CoinbaseMessageError, CoinbaseParser, Parsed
from ingesters.coinbase.rest import CoinbaseRest, RestFailure
from ingesters.coinbase.settings import CoinbaseSettings
from ingesters.coinbase.symbols import CHANNEL_TOPICS, CHANNELS, VENUE_CHANNELS, precisions_of, resolve
from pulse.log import get_logger

log = get_logger(__name__)


def _canonical(symbol: str) -> str:
    return resolve(symbol).symbol


class CoinbaseIngester(StreamIngester):
    venue = "coinbase"
    venue_label = "Coinbase"
    channel_order = tuple(CHANNELS)
    channel_topics = CHANNEL_TOPICS
    _log = log

    def __init__(
        self,
        settings: CoinbaseSettings,
        ctx: IngestContext,
        *,
        symbols: Iterable[str] | Mapping[str, Iterable[str]],
        channels: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.url = settings.url
        self.channels = self._ordered(settings.channels if channels is None else channels)
        self.subs = self._subscriptions(symbols, self.channels, _canonical)
        self._init_state()
        self.parser = CoinbaseParser(venue=self.venue, clock=ctx.clock, depth=settings.depth)
        self.rest = CoinbaseRest(settings.rest_url, timeout_s=settings.rest_timeout_s)
        self.validated: dict[str, tuple[int, int]] = {}  # symbol → (price, size) decimals from the venue
        self.resyncs = 0
        self.venue_errors = 0
        self._resyncing: dict[str, float] = {}  # book symbol → deadline (monotonic) for its fresh snapshot
        ctx.probes.append(
            lambda: {
                "resyncs": self.resyncs,
                "sequence_gaps": self.parser.gaps,
                "duplicates": self.parser.duplicates,
                "out_of_order": self.parser.out_of_order,
                "heartbeats": self.parser.heartbeats,
                "venue_errors": self.venue_errors,
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
        await self.rest.close()

    async def add_symbols(self, symbols: Iterable[str], channels: Iterable[str] | None = None) -> list[str]:
        """Subscribe symbols on the open connection (and every later one); a symbol already streaming gets its
        channels changed to ``channels`` when given. Returns the symbols whose subscriptions changed."""
        chs = self._ordered(self.channels if channels is None else channels)
        changed: list[str] = []
        for sym in dict.fromkeys(resolve(s).symbol for s in symbols):
            old = self.subs.get(sym)
            if old is not None and (channels is None or old == chs) and sym not in self.rejected:
                continue
            self.subs[sym] = chs
            self.rejected.pop(sym, None)
            if not await self._validate([sym]):
                continue
            changed.append(sym)
            if "book" in chs:
                self.parser.track_book(sym)
            elif old and "book" in old:
                self.parser.drop_book(sym)
            product = resolve(sym).venue_symbol
            dropped = [c for c in (old or ()) if c not in chs]
            added = [c for c in chs if c not in (old or ())]
            if self._ws is not None:
                await self._send([protocol.unsubscribe(VENUE_CHANNELS[c], [product]) for c in dropped])
                self._pending_on.add(sym)
                await self._send([protocol.subscribe(VENUE_CHANNELS[c], [product]) for c in added])
        self._publish_subs()
        return changed

    async def remove_symbols(self, symbols: Iterable[str]) -> list[str]:
        """Unsubscribe symbols (an ``unsubscribed`` marker follows Coinbase's subscriptions answer)."""
        gone: list[str] = []
        for sym in dict.fromkeys(resolve(s).symbol for s in symbols):
            chs = self.subs.pop(sym, None)
            if chs is None:
                continue
            was_rejected = self.rejected.pop(sym, None) is not None
            self.parser.drop_book(sym)
            self._resyncing.pop(sym, None)
            self._pending_on.discard(sym)
            gone.append(sym)
            if self._ws is not None and not was_rejected:
                self._pending_off.add(sym)
                product = resolve(sym).venue_symbol
                await self._send([protocol.unsubscribe(VENUE_CHANNELS[c], [product]) for c in chs])
        self._publish_subs()
        return gone

    # -- products ----------------------------------------------------------------------------------------
    async def _validate(self, symbols: list[str]) -> list[str]:
        """The symbols Coinbase lists (precisions logged); the others are refused, counted and dead-lettered. When
        the products endpoint cannot be read the symbols are kept: the subscription itself will tell."""
        todo = [s for s in symbols if s not in self.validated]
        if not self.settings.validate_products or not todo:
            return list(symbols)
        products = {resolve(s).venue_symbol: s for s in todo}
        try:
            listed = await self.rest.products(list(products))
        except RestFailure as exc:
            log.warning("product metadata unavailable; subscribing unchecked", venue=self.venue, error=str(exc))
            return list(symbols)
        for pid, sym in products.items():
            p = listed.get(pid)
            if p is None:
                self._reject(sym, f"Coinbase lists no product {pid}")
            elif p.trading_disabled or p.status not in ("", "online"):
                self._reject(sym, f"product {pid} is {p.status or 'disabled'}")
            else:
                self.validated[sym] = precisions_of(p)
                pp, sp = self.validated[sym]
                log.info("product", venue=self.venue, symbol=sym, price_decimals=pp, size_decimals=sp)
        return [s for s in symbols if s not in self.rejected]

    def _reject(self, sym: str, reason: str) -> None:
        if sym in self.rejected:
            return
        self.rejected[sym] = reason
        self.ctx.counters.rejected += 1
        self.ctx.extra["rejected"] = dict(self.rejected)
        self.ctx.dead_letter(sym.encode(), f"symbol refused: {reason}", kind="rejected", symbol=sym)

    # -- one connection --------------------------------------------------------------------------------
    def _requests(self, symbols: list[str]) -> list[bytes]:
        """A new connection's subscriptions: heartbeats, then one subscribe per channel with every product that has
        it."""
        out = [protocol.subscribe(protocol.HEARTBEATS)] if self.settings.heartbeats else []
        for ch in CHANNELS:
            ids = [resolve(s).venue_symbol for s in symbols if ch in self.subs.get(s, ())]
            if ids:
                out.append(protocol.subscribe(VENUE_CHANNELS[ch], ids))
        return out

    async def _send(self, messages: list[bytes]) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            for m in messages:
                await ws.send(m.decode())

    async def _before_connect(self) -> None:
        await self._validate(self.active_symbols)
        self.parser.new_connection()
        self._resyncing.clear()

    async def _on_connected(self, ws: ClientConnection) -> None:
        await self._send(self._requests(self.active_symbols))

    def _handle(self, frame: str | bytes) -> bool:
        """Process one message; True when it proves the session healthy (a subscriptions answer or data)."""
        ctx = self.ctx
        ctx.counters.frames += 1
        try:
            parsed: Parsed = self.parser.feed(frame)
        except CoinbaseMessageError as exc:
            if exc.parsed.gap is not None:
                self._on_gap(*exc.parsed.gap)
            ctx.counters.parse_errors += 1
            ctx.dead_letter(frame, str(exc))
            return False
        if parsed.gap is not None:
            self._on_gap(*parsed.gap)
        for ev in parsed.events:
            ctx.publish(ev)
        for sym in parsed.snapshots:
            if self._resyncing.pop(sym, None) is not None:
                log.info("book resynced", venue=self.venue, symbol=sym)
        if parsed.error is not None:
            self.venue_errors += 1
            ctx.dead_letter(frame, f"venue error: {parsed.error}", kind="venue_error")
        if parsed.subscriptions is not None:
            self._acknowledged(parsed.subscriptions)
            return True
        return bool(parsed.events)

    def _acknowledged(self, subs: dict[str, list[str]]) -> None:
        """A live add or remove is in effect once Coinbase's subscriptions answer says so: say it in-band, once."""
        listed = {pid for ids in subs.values() for pid in ids}
        for sym in list(self._pending_on):
            product = resolve(sym).venue_symbol
            if all(product in subs.get(VENUE_CHANNELS[c], ()) for c in self.subs.get(sym, ())):
                self._pending_on.discard(sym)
                self.ctx.status(sym, "subscribed", ",".join(self.subs.get(sym, ())))
        for sym in list(self._pending_off):
            if resolve(sym).venue_symbol not in listed:
                self._pending_off.discard(sym)
                self.ctx.status(sym, "unsubscribed")

    def _on_gap(self, expected: int, got: int) -> None:
        """Messages were lost: mark it on every topic, then resubscribe the books and trades for fresh snapshots."""
        detail = f"sequence_num jumped from {expected} to {got}; {got - expected} message(s) lost"
        log.warning("sequence gap; resubscribing", venue=self.venue, expected=expected, received=got)
        for sym in self.active_symbols:
            self.ctx.gap(sym, detail, self._topics(sym))
        books = [s for s in self.active_symbols if "book" in self.subs[s]]
        self.parser.invalidate_books(books)
        deadline = time.monotonic() + self.settings.resync_timeout_s
        for sym in books:
            self.resyncs += 1
            self._resyncing[sym] = deadline
            self.ctx.status(sym, "resync", "sequence gap; resubscribing level2 for a fresh snapshot", ("book",))
        messages: list[bytes] = []
        for ch in ("book", "trade"):
            ids = [resolve(s).venue_symbol for s in self.active_symbols if ch in self.subs[s]]
            if ids:
                messages += [protocol.unsubscribe(VENUE_CHANNELS[ch], ids), protocol.subscribe(VENUE_CHANNELS[ch], ids)]
        if messages and self._ws is not None:
            asyncio.get_running_loop().create_task(self._send(messages))

    async def _overdue(self, ws: ClientConnection, now: float) -> bool:
        """A book still without its fresh snapshot ``resync_timeout_s`` after resubscribing: reconnect."""
        late = [s for s, deadline in self._resyncing.items() if now > deadline]
        if late:
            log.warning("no fresh snapshot after resubscribing; reconnecting", venue=self.venue, symbols=late)
            await ws.close(code=4001, reason="resync timeout")
            return True
        return False
