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
from collections.abc import Iterable, Mapping

import websockets

from ingesters.base.context import IngestContext
from ingesters.base.subscriptions import StreamIngester
from ingesters.kraken import protocol
from ingesters.kraken.parser import KrakenFeedParser, KrakenMessageError, Parsed
from ingesters.kraken.settings import KrakenSettings
from ingesters.kraken.symbols import CHANNEL_TOPICS
from pulse.log import get_logger

log = get_logger(__name__)

CHANNEL_ORDER = tuple(CHANNEL_TOPICS)


class KrakenIngester(StreamIngester):
    venue = "kraken"
    venue_label = "Kraken"
    channel_order = CHANNEL_ORDER
    channel_topics = CHANNEL_TOPICS
    _log = log

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
        self.subs = self._subscriptions(symbols, self._ordered(self.channels))
        self._init_state()
        self.depth = depth
        self.url = url
        self.parser = KrakenFeedParser(depth=depth, clock=ctx.clock, venue=self.venue)
        self._req_ids = itertools.count(1)
        ctx.probes.append(lambda: {"checksum_ok": self.parser.checksum_ok})
        self._publish_subs()

    # -- public ----------------------------------------------------------------------------------------
    async def add_symbols(self, symbols: Iterable[str], channels: Iterable[str] | None = None) -> list[str]:
        """Subscribe symbols on the live connection (and on every later one), with ``channels`` (default: the
        ingester's). A symbol already streaming gets its channel set changed to ``channels`` when given.
        Returns the symbols whose subscriptions changed. Nothing else is touched: other symbols keep streaming.
        """
        chs = self._ordered(self.channels if channels is None else channels)
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

    def _forget(self, symbol: str) -> None:
        self.parser.reset_books(symbol)

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
    async def _before_connect(self) -> None:
        self.parser.reset_books()

    async def _on_connected(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        await self._subscribe_all(ws, self.active_symbols)

    def _session_tasks(self, ws: websockets.asyncio.client.ClientConnection) -> list:
        return [*super()._session_tasks(ws), self._pinger(ws)]  # Kraken's application-level ping

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

    async def _pinger(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            await ws.send(protocol.ping(next(self._req_ids)))
