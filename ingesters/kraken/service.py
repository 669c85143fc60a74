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
from collections.abc import Iterable, Mapping

import websockets
from websockets.asyncio.client import connect

from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from ingesters.base.reconnect import reconnect_loop
from ingesters.kraken import protocol
from ingesters.kraken.parser import KrakenFeedParser, KrakenMessageError, Parsed
from ingesters.kraken.symbols import CHANNEL_TOPICS
from pulse.control import InstrumentCommand
from pulse.log import get_logger
from pulse.settings import KrakenSettings

log = get_logger(__name__)

CHANNEL_ORDER = tuple(CHANNEL_TOPICS)


def _ordered(channels: Iterable[str]) -> tuple[str, ...]:
    chs = set(channels)
    bad = chs - set(CHANNEL_TOPICS)
    if bad:
        raise ValueError(f"unknown Kraken channel(s) {', '.join(sorted(bad))}")
    return tuple(c for c in CHANNEL_ORDER if c in chs)


class KrakenIngester:
    venue = "kraken"

    def __init__(
        self,
        settings: KrakenSettings,
        ctx: IngestContext,
        *,
        symbols: Iterable[str] | Mapping[str, Iterable[str]],
        channels: Iterable[str],
        depth: int,
        url: str,
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.channels: list[str] = list(channels)  # the default for symbols that do not name their own
        # symbol → its channels, in subscription order (the registry may give each symbol its own channels)
        self.subs: dict[str, tuple[str, ...]] = (
            {s: _ordered(chs) for s, chs in symbols.items()}
            if isinstance(symbols, Mapping)
            else dict.fromkeys(symbols, _ordered(self.channels))
        )
        self._pending_on: set[str] = set()  # added live: a "subscribed" marker once the venue acknowledges
        self._pending_off: set[str] = set()  # removed live: an "unsubscribed" marker once acknowledged
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
        self._publish_subs()

    # -- public ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; reconnects with capped, jittered backoff on any transport failure."""
        self._stop = stop
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        async with self.ctx.reporting():
            await reconnect_loop(self._session, ctx=self.ctx, stop=stop, backoff=backoff)

    @property
    def symbols(self) -> list[str]:
        return list(self.subs)

    @property
    def active_symbols(self) -> list[str]:
        return [s for s in self.subs if s not in self.rejected]

    async def add_symbols(self, symbols: Iterable[str], channels: Iterable[str] | None = None) -> list[str]:
        """Subscribe symbols on the live connection (and on every later one), with ``channels`` (default: the
        ingester's). A symbol already streaming gets its channel set changed to ``channels`` when given.
        Returns the symbols whose subscriptions changed. Nothing else is touched: other symbols keep streaming.
        """
        chs = _ordered(self.channels if channels is None else channels)
        changed: list[str] = []
        for sym in dict.fromkeys(symbols):
            old = self.subs.get(sym)
            if old is not None and (channels is None or old == chs) and sym not in self.rejected:
                continue
            self.subs[sym] = chs
            self.rejected.pop(sym, None)
            self.ctx.extra["rejected"] = dict(self.rejected)
            changed.append(sym)
            if self._ws is None:
                continue
            dropped = [c for c in (old or ()) if c not in chs]
            if dropped:
                await self._send_subs("unsubscribe", {sym: tuple(dropped)})
            self._pending_on.add(sym)
            await self._subscribe_all(self._ws, [sym], only=None if old is None else [c for c in chs if c not in old])
        self._publish_subs()
        return changed

    async def remove_symbols(self, symbols: Iterable[str]) -> list[str]:
        """Unsubscribe symbols (an ``unsubscribed`` marker follows the venue's acknowledgement)."""
        gone = {s: self.subs.pop(s) for s in dict.fromkeys(symbols) if s in self.subs}
        if gone and self._ws is not None:
            self._pending_off.update(gone)
            await self._send_subs("unsubscribe", gone)
        for s in gone:
            self._pending_on.discard(s)
            self.parser.reset_books(s)
        self._publish_subs()
        return list(gone)

    async def apply(self, cmd: InstrumentCommand) -> None:
        """Apply a registry change from the control topic (add/enable subscribe, remove/disable unsubscribe)."""
        if cmd.venue != self.venue:
            return
        chs = [c for c in cmd.channels if c in CHANNEL_TOPICS] or None
        if cmd.subscribes:
            changed = await self.add_symbols([cmd.symbol], chs)
        else:
            changed = await self.remove_symbols([cmd.symbol])
        log.info("control command applied", op=cmd.op, symbol=cmd.symbol, changed=bool(changed), channels=chs)

    def _publish_subs(self) -> None:
        self.ctx.extra["subscriptions"] = {s: list(c) for s, c in self.subs.items()}

    async def _send_subs(self, method: str, subs: Mapping[str, tuple[str, ...]]) -> None:
        """One request per channel for every symbol in ``subs`` that has it."""
        ws = self._ws
        if ws is None:
            return
        build = protocol.subscribe if method == "subscribe" else protocol.unsubscribe
        for ch in CHANNEL_ORDER:
            syms = [s for s, chs in subs.items() if ch in chs]
            if syms:
                depth = self.depth if ch == "book" else None
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(build(ch, syms, depth=depth, req_id=next(self._req_ids)))

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

    async def _subscribe_all(
        self, ws: websockets.asyncio.client.ClientConnection, symbols: list[str], only: list[str] | None = None
    ) -> None:
        """Subscribe ``symbols`` to their channels (or just ``only``), after the instrument channel that
        carries the precisions the book checksums need."""
        if not symbols:
            return
        if only is None:
            await ws.send(protocol.subscribe("instrument", symbols, req_id=next(self._req_ids)))
        await self._send_subs(
            "subscribe", {s: tuple(c for c in self.subs[s] if only is None or c in only) for s in symbols}
        )

    def _on_healthy(self) -> None:
        self.ctx.extra["connected"] = True  # connected and subscribed: what /readyz and READY=1 wait for
        if self._need_gap:
            self._need_gap = False
            for sym in self.active_symbols:
                self.ctx.gap(sym, "reconnected; data between the markers may be missing", self._topics(sym))
        for sym in self.active_symbols:
            self.ctx.restart_gap(sym, self._topics(sym))
        for sym in self.active_symbols:
            self.ctx.status(sym, "connected", self.url)

    def _topics(self, symbol: str) -> tuple[str, ...]:
        return tuple(t for ch in self.subs.get(symbol, ()) for t in CHANNEL_TOPICS[ch])

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
                self._acknowledged(ack.method, ack.symbol)
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

    def _acknowledged(self, method: str | None, symbol: str | None) -> None:
        """A live add or remove is in effect once the venue acknowledges it: say so in-band, once."""
        if method == "subscribe" and symbol in self._pending_on:
            self._pending_on.discard(symbol)
            self.ctx.status(symbol, "subscribed", ",".join(self.subs.get(symbol, ())))
        elif method == "unsubscribe" and symbol in self._pending_off:
            self._pending_off.discard(symbol)
            self.ctx.status(symbol, "unsubscribed")

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
