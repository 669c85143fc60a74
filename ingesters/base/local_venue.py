"""What every local venue (``pulse simulate <venue>``) shares: one WebSocket + REST server on one port, its
lifecycle, its paced market loop and the per-connection fault bookkeeping.

A venue's simulator subclasses :class:`LocalVenue` and keeps only its wire protocol: the WebSocket handler
(``_handle``), the REST routing (``_http``, answered with :func:`json_response`), what a market step sends
(``_step``) and which markets are active (``_active``). Connections are objects with ``number`` (1, 2, … in the
order accepted), ``ws``, ``data_sent`` and ``closed``; the fault plan has ``malformed_every``/``max_malformed``
and ``disconnect_after``/``disconnect_connections``, counted in :attr:`LocalVenue.stats` when they happen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["LocalVenue", "json_response", "serve_until_cancelled"]

V = TypeVar("V", bound="LocalVenue")


class LocalVenue:
    """A local venue on ``host:port`` (port 0 picks a free one): :attr:`url` is the WebSocket URL (plus
    :attr:`ws_path`), :attr:`rest_url` the REST base on the same port. ``rate`` is market steps per second."""

    ws_path = ""  # appended to ws://host:port
    disconnect_code = 1001  # the close code of a simulated disconnect

    def __init__(self, *, host: str, port: int, rate: float, faults: Any) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.host, self._port = host, port
        self.rate = rate
        self.faults = faults
        self.stats: dict = {}
        self._conns: list = []
        self._server: Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._rr = 0

    # ------------------------------------------------------------------------------------------ lifecycle

    def _serve_options(self) -> dict[str, Any]:
        """Keyword arguments of ``websockets.serve`` (REST through ``_http`` on the same port)."""
        return {"process_request": self._http, "ping_interval": None, "compression": None, "max_size": 2**20}

    def _loops(self) -> list[Coroutine[Any, Any, None]]:
        """The background loops started with the server (the market, heartbeats, …)."""
        return [self._market_loop()]

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = await serve(self._handle, self.host, self._port, **self._serve_options())
        for loop in self._loops():
            self._spawn(loop)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def rest_url(self) -> str:
        """The REST API's base URL (same port as the WebSocket)."""
        return f"http://{self.host}:{self.port}"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connections(self) -> int:
        return sum(1 for c in self._conns if not c.closed)

    # ------------------------------------------------------------------------------------- the protocol

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        return None  # no REST: every request is a WebSocket handshake

    def _active(self) -> list:
        """The markets the next step is taken round-robin among (none: no step)."""
        raise NotImplementedError

    async def _step(self, market: Any) -> None:
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- market

    async def _market_loop(self) -> None:
        """``rate`` steps per second over :meth:`_active`, never bursting to catch up when far behind."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        due = loop.time()
        steps = 0
        while True:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:
                due = now  # far behind (a slow client): don't burst to catch up
            due += interval
            active = self._active()
            if active:
                self._rr += 1
                await self._step(active[self._rr % len(active)])
            steps += 1
            if steps % 64 == 0:
                await asyncio.sleep(0)  # let handlers in even when behind schedule

    # ---------------------------------------------------------------------------------------- sending

    async def _send_raw(self, conn: Any, text: str | bytes) -> bool:
        """Send one frame as it is; False if the connection is gone (or may not send, :meth:`_can_send`)."""
        if not self._can_send(conn):
            return False
        try:
            await conn.ws.send(text)
        except ConnectionClosed:
            conn.closed = True
            return False
        self._sent(conn)
        return True

    def _can_send(self, conn: Any) -> bool:
        return not conn.closed

    def _sent(self, conn: Any) -> None:
        """A frame went out on ``conn``."""

    async def _after_data(self, conn: Any, malformed: Sequence[str | bytes]) -> None:
        """Count one data message sent on ``conn``, then inject the faults due after it: a malformed frame (cycled
        from ``malformed``), the venue's own (:meth:`_venue_faults`), a disconnect."""
        conn.data_sent += 1
        self.stats["data_messages"] += 1
        n, f, st = conn.data_sent, self.faults, self.stats
        due = f.malformed_every and n % f.malformed_every == 0
        under = f.max_malformed is None or st["malformed"] < f.max_malformed
        if due and under and await self._send_raw(conn, malformed[st["malformed"] % len(malformed)]):
            st["malformed"] += 1
        if not await self._venue_faults(conn, n):
            return
        if f.disconnect_after == n and conn.number in f.disconnect_connections and not conn.closed:
            conn.closed = True
            st["disconnects"] += 1
            self._spawn(conn.ws.close(self.disconnect_code, "simulated disconnect"))

    async def _venue_faults(self, conn: Any, n: int) -> bool:
        """The venue's own faults after the ``n``-th data message of ``conn``; False skips the disconnect check."""
        return True


def json_response(status: HTTPStatus, body: object, content_type: str = "application/json; charset=utf-8") -> Response:
    """A compact JSON answer that closes the connection (what the local venues' REST endpoints send)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(status.value, status.phrase, headers, data)


async def serve_until_cancelled(venue: V, on_ready: Callable[[V], None] | None = None) -> None:
    """Start ``venue``, hand it to ``on_ready``, serve until cancelled (what ``pulse simulate <venue>`` runs)."""
    await venue.start()
    try:
        if on_ready is not None:
            on_ready(venue)
        await asyncio.Event().wait()
    finally:
        await venue.stop()
