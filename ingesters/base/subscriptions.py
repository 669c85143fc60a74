"""What every streaming venue ingester shares: its subscription set (symbol → channels, in the venue's channel
order), live adds and removes from the control topic, the reconnect-loop entry, the gap / restart / status markers
of a healthy session, the stale-feed watchdog and one WebSocket session's skeleton.

A venue's ingester subclasses :class:`StreamIngester` and keeps only its wire protocol: how it subscribes
(``_on_connected``, ``add_symbols``, ``remove_symbols``) and what a frame means (``_handle``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from ingesters.base.reconnect import reconnect_loop
from pulse.control import InstrumentCommand
from pulse.log import StructLogger

__all__ = ["StreamIngester", "ordered_channels"]


def ordered_channels(channels: Iterable[str], order: Iterable[str], venue_label: str) -> tuple[str, ...]:
    """``channels`` in the venue's subscription ``order``; an unknown one is refused, naming it."""
    chs, known = set(channels), tuple(order)
    bad = chs - set(known)
    if bad:
        raise ValueError(f"unknown {venue_label} channel(s) {', '.join(sorted(bad))}")
    return tuple(c for c in known if c in chs)


class StreamIngester:
    """The venue-agnostic half of a streaming ingester (see the module doc)."""

    venue: str  # the venue's name in topics and commands ("kraken")
    venue_label: str  # how messages name it ("Kraken")
    channel_order: tuple[str, ...]  # the venue's channels, in subscription order
    channel_topics: Mapping[str, tuple[str, ...]]  # channel → the topics it feeds
    idle_what = "message"  # what the stale watchdog says is missing ("no message for 12.0s")
    _log: StructLogger  # the venue module's logger (its name shows in every line)

    settings: Any
    ctx: IngestContext
    url: str
    subs: dict[str, tuple[str, ...]]
    rejected: dict[str, str]

    def _init_state(self) -> None:
        """The live-change and connection state every session shares."""
        self.rejected = {}  # symbol → the venue's (or our) reason
        self._pending_on: set[str] = set()  # added live: a "subscribed" marker once the venue confirms it
        self._pending_off: set[str] = set()  # removed live: an "unsubscribed" marker once confirmed
        self._ws: ClientConnection | None = None
        self._need_gap = False
        self._last_msg = time.monotonic()
        self._stop = asyncio.Event()

    def _ordered(self, channels: Iterable[str]) -> tuple[str, ...]:
        return ordered_channels(channels, self.channel_order, self.venue_label)

    def _subscriptions(
        self,
        symbols: Iterable[str] | Mapping[str, Iterable[str]],
        default: tuple[str, ...],
        canonical: Callable[[str], str] = str,
    ) -> dict[str, tuple[str, ...]]:
        """symbol → channels: a mapping names each symbol's own channels, a plain list gets ``default``."""
        if isinstance(symbols, Mapping):
            return {canonical(s): self._ordered(chs) for s, chs in symbols.items()}
        return {canonical(s): default for s in symbols}

    # -- public ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; reconnects with capped, jittered backoff on any transport failure."""
        self._stop = stop
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        try:
            async with self.ctx.reporting():
                await reconnect_loop(self._session, ctx=self.ctx, stop=stop, backoff=backoff)
        finally:
            await self._stopped()

    async def _stopped(self) -> None:
        """Release what the ingester holds beyond its connections (REST clients, tasks)."""

    @property
    def symbols(self) -> list[str]:
        return list(self.subs)

    @property
    def active_symbols(self) -> list[str]:
        return [s for s in self.subs if s not in self.rejected]

    async def add_symbols(self, symbols: Iterable[str], channels: Iterable[str] | None = None) -> list[str]:
        raise NotImplementedError

    async def remove_symbols(self, symbols: Iterable[str]) -> list[str]:
        """Unsubscribe symbols (an ``unsubscribed`` marker follows the venue's acknowledgement)."""
        gone = {s: self.subs.pop(s) for s in dict.fromkeys(symbols) if s in self.subs}
        if gone and self._ws is not None:
            self._pending_off.update(gone)
            await self._send_subs("unsubscribe", gone)
        for s in gone:
            self._pending_on.discard(s)
            self._forget(s)
        self._publish_subs()
        return list(gone)

    async def _send_subs(self, method: str, subs: Mapping[str, tuple[str, ...]]) -> None:
        """Send ``method`` (``subscribe``/``unsubscribe``) for every symbol's channels in ``subs``."""
        raise NotImplementedError

    def _forget(self, symbol: str) -> None:
        """Drop what is kept for a removed symbol (its book)."""

    async def apply(self, cmd: InstrumentCommand) -> None:
        """Apply a registry change from the control topic (add/enable subscribe, remove/disable unsubscribe)."""
        if cmd.venue != self.venue:
            return
        chs = [c for c in cmd.channels if c in self.channel_topics] or None
        if cmd.subscribes:
            changed = await self.add_symbols([cmd.symbol], chs)
        else:
            changed = await self.remove_symbols([cmd.symbol])
        self._log.info("control command applied", op=cmd.op, symbol=cmd.symbol, changed=bool(changed), channels=chs)

    # -- markers ---------------------------------------------------------------------------------------
    def _publish_subs(self) -> None:
        self.ctx.extra["subscriptions"] = {s: list(c) for s, c in self.subs.items()}

    def _topics(self, symbol: str) -> tuple[str, ...]:
        return tuple(t for ch in self.subs.get(symbol, ()) for t in self.channel_topics[ch])

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

    # -- one connection --------------------------------------------------------------------------------
    async def _session(self) -> bool:
        """One WebSocket connection: subscribe, read frames until it ends; True once it proved healthy."""
        healthy = False
        await self._before_connect()
        async with connect(
            self.url,
            open_timeout=self.settings.connect_timeout_s,
            ping_interval=None,  # the venue's heartbeats (or our application pings) and the watchdog
            close_timeout=2,
            max_size=2**24,
            max_queue=4096,
            compression=None,
        ) as ws:
            self._ws = ws
            self._last_msg = time.monotonic()
            self._log.info("connected", venue=self.venue, url=self.url, symbols=len(self.active_symbols))
            await self._on_connected(ws)
            tasks = [asyncio.create_task(c) for c in self._session_tasks(ws)]
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

    async def _before_connect(self) -> None:
        """Called before each connection (reset books, check symbols, …)."""

    async def _on_connected(self, ws: ClientConnection) -> None:
        """Subscribe everything active on the new connection."""
        raise NotImplementedError

    def _session_tasks(self, ws: ClientConnection) -> list[Coroutine[Any, Any, None]]:
        """What runs beside the reader for the connection's life."""
        return [self._watchdog(ws), self._close_on_stop(ws)]

    def _handle(self, frame: str | bytes) -> bool:
        """Process one frame; True when it proves the session healthy."""
        raise NotImplementedError

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Close the connection when nothing arrived for ``stale_after_s`` (or :meth:`_overdue` says so)."""
        limit = self.settings.stale_after_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            idle = now - self._last_msg
            if idle > limit:
                self.ctx.counters.stale += 1
                self._log.warning("feed stale; reconnecting", venue=self.venue, idle_s=round(idle, 1))
                for sym in self.active_symbols:
                    self.ctx.status(sym, "stale", f"no {self.idle_what} for {idle:.1f}s")
                await ws.close(code=4000, reason="stale feed")
                return
            if await self._overdue(ws, now):
                return

    async def _overdue(self, ws: ClientConnection, now: float) -> bool:
        """A venue's own liveness check beside staleness; True when it closed the connection."""
        return False

    async def _close_on_stop(self, ws: ClientConnection) -> None:
        await self._stop.wait()
        await ws.close()
