"""The Alpaca market data v2 ingester: one WebSocket for every symbol and channel, events into ``equities``.

A session: wait while the market is closed (``market_closed`` marker on every instrument, no connection, sleep until
the next NYSE open by the venue's calendar; ``market_open`` when it opens) → connect to ``<url>/<feed>`` → the
venue's ``connected`` → ``auth`` with key and secret (answered ``authenticated`` within ``auth_timeout_s``) →
one ``subscribe`` with every symbol's trades/quotes/bars → read frames until the connection ends, the feed goes
stale or the session closes (``market_closed``, then a planned disconnect: no gap). After an unplanned disconnect the
next healthy session publishes a ``gap`` marker on each instrument's topics; a restart marks the hole since the
previous run. Malformed frames and messages are counted, logged (truncated) and dead-lettered, never fatal.

Errors: 402 (auth failed) and 409 (insufficient subscription: the feed) raise :class:`~pulse.errors.FatalVenueError`
naming the setting to fix — never the key or secret; 406 (connection limit), 404 (auth timeout), 407 (slow client)
and transport failures reconnect with capped, jittered backoff; 405 (symbol limit exceeded) refuses the symbols of
that subscribe (counted, dead-lettered; the others stream on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ingesters.alpaca.calendar import UsEquityCalendar
from ingesters.alpaca.parser import AlpacaMessageError, AlpacaParser, Control
from ingesters.alpaca.schemas import ERRORS, FATAL_ERRORS, Auth, SubscribeRequest, encoder
from ingesters.alpaca.settings import AlpacaSettings
from ingesters.alpaca.symbols import CHANNEL_TOPICS, WIRE_CHANNELS
from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from ingesters.base.reconnect import reconnect_loop
from ingesters.base.subscriptions import StreamIngester
from pulse.errors import ConfigError, FatalVenueError
from pulse.log import get_logger, register_secret

log = get_logger(__name__)

CHANNEL_ORDER = tuple(CHANNEL_TOPICS)
#: the WebSocket library's own logger for our connection, kept at WARNING whatever the log level: its debug lines
#: show frames, and the auth frame carries the key and secret
_WS_LOG = logging.getLogger("ingesters.alpaca.websocket")
_WS_LOG.setLevel(logging.WARNING)


class AlpacaError(Exception):
    """The venue sent ``[{"T": "error", …}]`` where the session cannot go on (before or during auth)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"Alpaca error {code}: {msg}")
        self.code, self.msg = code, msg


class _MarketClosed(Exception):
    """The session closed while connected: end the connection on purpose (no gap, no backoff)."""


class AlpacaIngester(StreamIngester):
    venue = "alpaca"
    venue_label = "Alpaca"
    channel_order = CHANNEL_ORDER
    channel_topics = CHANNEL_TOPICS
    idle_what = "data"  # the watchdog counts data only (control frames do not prove the feed alive)
    _log = log
    #: how often a closed market (and the coming close) is re-checked against ``now()``
    market_recheck_s: float = 60.0

    def __init__(
        self,
        settings: AlpacaSettings,
        ctx: IngestContext,
        *,
        key: str,
        secret: str,
        symbols: Iterable[str] | Mapping[str, Iterable[str]],
        channels: Iterable[str] | None = None,
        url: str | None = None,
        calendar: UsEquityCalendar | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not key or not secret:
            raise ConfigError("Alpaca credentials missing: set alpaca.key and alpaca.secret (or alpaca.key_file and "
                              "alpaca.secret_file)")  # fmt: skip
        register_secret(key)
        register_secret(secret)
        self._key, self._secret = key, secret
        self.settings = settings
        self.ctx = ctx
        self.channels = self._ordered(channels if channels is not None else settings.channels)
        self.subs = self._subscriptions(symbols, self.channels)
        self._init_state()
        self.url = f"{(url or settings.url).rstrip('/')}/{settings.feed}"
        self.calendar = calendar or UsEquityCalendar("extended" if settings.market_hours == "extended" else "regular")
        self.now = now
        self.parser = AlpacaParser(clock=ctx.clock, venue=self.venue)
        self.amendments: dict[str, int] = {}  # trade_correction / trade_cancel messages received
        ctx.probes.append(lambda: {"trade_corrections": self.amendments.get("trade_correction", 0),
                                   "trade_cancels": self.amendments.get("trade_cancel", 0)})  # fmt: skip
        self.market_state = "unknown"
        self._requested: list[tuple[str, dict[str, tuple[str, ...]]]] = []  # subscribe/unsubscribe awaiting an answer
        self._publish_subs()

    def __repr__(self) -> str:  # never the credentials
        return f"AlpacaIngester(url={self.url!r}, symbols={','.join(self.subs)})"

    # -- public ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        async with self.ctx.reporting():
            try:
                await reconnect_loop(self._session, ctx=self.ctx, stop=stop, backoff=backoff)
            except FatalVenueError as exc:
                log.error("Alpaca ingester stopped", venue=self.venue, error=str(exc))
                raise

    async def add_symbols(self, symbols: Iterable[str], channels: Iterable[str] | None = None) -> list[str]:
        """Subscribe symbols on the live connection (and every later one); others keep streaming."""
        chs = self._ordered(self.channels if channels is None else channels)
        changed = []
        for sym in dict.fromkeys(symbols):
            old = self.subs.get(sym)
            if old == chs and sym not in self.rejected:
                continue
            self.subs[sym] = chs
            self.rejected.pop(sym, None)
            changed.append(sym)
            if self._ws is not None:
                dropped = tuple(c for c in (old or ()) if c not in chs)
                if dropped:
                    await self._send_subs("unsubscribe", {sym: dropped})
                self._pending_on.add(sym)
                await self._send_subs("subscribe", {sym: chs})
        self.ctx.extra["rejected"] = dict(self.rejected)
        self._publish_subs()
        return changed

    # -- one session -------------------------------------------------------------------------------------
    async def _session(self) -> bool:
        healthy = False
        while not self._stop.is_set():
            if not await self._wait_for_market():
                return healthy
            try:
                healthy = await self._connection() or healthy
            except _MarketClosed:
                continue  # planned: wait for the next open, then a fresh connection without a gap marker
            return healthy
        return healthy

    async def _connection(self) -> bool:
        healthy = False
        s = self.settings
        async with connect(self.url, open_timeout=s.connect_timeout_s, ping_interval=s.ping_interval_s,
                           ping_timeout=s.ping_timeout_s, close_timeout=2, max_size=2**22, max_queue=4096,
                           compression=None, logger=_WS_LOG) as ws:  # fmt: skip
            await self._handshake(ws)
            self._ws = ws
            self._last_msg = time.monotonic()
            log.info("connected", venue=self.venue, url=self.url, symbols=len(self.active_symbols))
            self._requested.clear()
            await self._send_subs("subscribe", {s: self.subs[s] for s in self.active_symbols})
            tasks = [asyncio.create_task(self._watchdog(ws)), asyncio.create_task(self._close_on_stop(ws))]
            closer = asyncio.create_task(self._until_close(ws))
            try:
                async for frame in ws:
                    if self._handle(frame) and not healthy:
                        healthy = True
                        self._on_healthy()
            except websockets.ConnectionClosed:
                pass
            finally:
                self._ws = None
                for t in (*tasks, closer):
                    t.cancel()
                await asyncio.gather(*tasks, closer, return_exceptions=True)
            if closer.done() and not closer.cancelled() and closer.exception() is None and not self._stop.is_set():
                # after the last frame of this connection was handled, so the marker follows every event
                opens = self.calendar.next_open(self.now())
                self._mark_market("closed", f"US equity market closed; opens {opens.isoformat()}")
                log.info("market closed; disconnected until it opens", venue=self.venue, opens=opens.isoformat())
                raise _MarketClosed
            self._need_gap = True
        return healthy

    async def _handshake(self, ws: ClientConnection) -> None:
        """``connected`` → auth → ``authenticated``; raises on an error answer or a timeout."""
        deadline = time.monotonic() + self.settings.auth_timeout_s
        sent = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no authentication answer within {self.settings.auth_timeout_s:g}s")
            frame = await asyncio.wait_for(ws.recv(), left)
            self.ctx.counters.frames += 1
            try:
                parsed = self.parser.feed(frame)
            except AlpacaMessageError as exc:
                self.ctx.counters.parse_errors += 1
                self.ctx.dead_letter(frame, str(exc))
                continue
            for raw, why in parsed.bad:
                self.ctx.counters.parse_errors += 1
                self.ctx.dead_letter(raw, why)
            for c in parsed.controls:
                if c.kind == "error":
                    self._fatal_or_raise(c)
                if c.kind == "connected" and not sent:
                    await ws.send(encoder.encode(Auth("auth", self._key, self._secret)))
                    sent = True
                elif c.kind == "authenticated":
                    return

    def _fatal_or_raise(self, c: Control) -> None:
        if c.code in FATAL_ERRORS:
            fix = "alpaca.key / alpaca.secret" if c.code == 402 else f"alpaca.feed ({self.settings.feed})"
            raise FatalVenueError(f"Alpaca refused the session: {c.code} {c.msg}; check setting {fix}")
        raise AlpacaError(c.code, c.msg)

    def _handle(self, frame: str | bytes) -> bool:
        """Process one frame; True when it proves the session healthy (a subscription answered, or data)."""
        ctx = self.ctx
        ctx.counters.frames += 1
        try:
            parsed = self.parser.feed(frame)
        except AlpacaMessageError as exc:
            ctx.counters.parse_errors += 1
            ctx.dead_letter(frame, str(exc))
            return False
        for raw, why in parsed.bad:
            ctx.counters.parse_errors += 1
            ctx.dead_letter(raw, why)
        for raw, kind, sym, trade_id in parsed.amendments:
            # no event amends a stored trade: counted, and the venue's message kept where an operator finds it
            self.amendments[kind] = self.amendments.get(kind, 0) + 1
            ctx.dead_letter(raw, f"{kind.replace('_', ' ')} of {sym} trade {trade_id} (not applied)", kind=kind,
                            symbol=sym, trade_id=trade_id)  # fmt: skip
        if parsed.events:
            self._last_msg = time.monotonic()
        for ev in parsed.events:
            ctx.publish(ev)
        healthy = bool(parsed.events)
        for c in parsed.controls:
            if c.kind == "subscription":
                healthy = True
                self._answered(c)
            elif c.kind == "error":
                self._on_error(c, frame)
        return healthy

    def _answered(self, c: Control) -> None:
        """The session's subscription after a request: in-band markers for live adds and removes."""
        if self._requested:
            self._requested.pop(0)
        sub = c.subscription
        if sub is None:
            return
        have = {"trade": set(sub.trades), "quote": set(sub.quotes), "bar": set(sub.bars)}
        for sym in list(self._pending_on):
            if all(sym in have[ch] for ch in self.subs.get(sym, ())):
                self._pending_on.discard(sym)
                self.ctx.status(sym, "subscribed", ",".join(self.subs.get(sym, ())))
        for sym in list(self._pending_off):
            if not any(sym in names for names in have.values()):
                self._pending_off.discard(sym)
                self.ctx.status(sym, "unsubscribed")

    def _on_error(self, c: Control, frame: str | bytes) -> None:
        ctx = self.ctx
        if c.code == 405 and self._requested:  # the symbol limit: the request was not applied
            action, subs = self._requested.pop(0)
            if action == "subscribe":
                for sym in subs:
                    if sym not in self.rejected:
                        ctx.counters.rejected += 1
                        self.rejected[sym] = f"{c.code} {c.msg}"
                        self._pending_on.discard(sym)
                ctx.extra["rejected"] = dict(self.rejected)
                ctx.dead_letter(frame, f"subscription refused: {c.code} {c.msg}", kind="rejected",
                                symbol=",".join(subs))  # fmt: skip
                return
        known = ERRORS.get(c.code, "unknown error")
        ctx.dead_letter(frame, f"Alpaca error {c.code}: {c.msg} ({known})", kind="venue_error")
        log.warning("venue error", venue=self.venue, code=c.code, msg=c.msg)

    async def _send_subs(self, action: str, subs: Mapping[str, tuple[str, ...]]) -> None:
        ws = self._ws
        if ws is None or not subs:
            return
        lists = {WIRE_CHANNELS[ch]: [s for s, chs in subs.items() if ch in chs] for ch in CHANNEL_ORDER}
        req = SubscribeRequest(action, **lists)
        self._requested.append((action, dict(subs)))
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(encoder.encode(req))

    # -- market hours ------------------------------------------------------------------------------------
    async def _wait_for_market(self) -> bool:
        """At once while the market is open; otherwise ``market_closed`` and sleep until the open. False when
        stopped while waiting."""
        if self.settings.market_hours == "always":
            return not self._stop.is_set()
        while not await asyncio.to_thread(self.calendar.is_open, self.now()):
            if self.market_state != "closed":
                opens = self.calendar.next_open(self.now())
                self._mark_market("closed", f"US equity market closed; opens {opens.isoformat()}")
                log.info("market closed; not connecting", venue=self.venue, opens=opens.isoformat())
            delay = (self.calendar.next_open(self.now()) - self.now()).total_seconds()
            if await self._sleep(max(0.0, min(delay, self.market_recheck_s))):
                return False
        if self.market_state == "closed":
            self._mark_market("open", "US equity market open")
            log.info("market open; connecting", venue=self.venue)
        self.market_state = "open"
        self.ctx.extra["market"] = "open"
        return not self._stop.is_set()

    async def _until_close(self, ws: ClientConnection) -> None:
        """Closes the connection when the session closes (on purpose: the caller then marks the market closed)."""
        if self.settings.market_hours == "always":
            await asyncio.Event().wait()
        while True:
            now = self.now()
            if not self.calendar.is_open(now):
                break
            left = (self.calendar.next_close(now) - now).total_seconds()
            await asyncio.sleep(max(0.0, min(left, self.market_recheck_s)))
        await ws.close()

    def _mark_market(self, state: str, detail: str) -> None:
        self.market_state = state
        self.ctx.extra["market"] = state
        kind: Any = "market_closed" if state == "closed" else "market_open"
        for sym in self.active_symbols:
            self.ctx.status(sym, kind, detail, (*self._topics(sym), "status"))

    async def _sleep(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self._stop.is_set()
