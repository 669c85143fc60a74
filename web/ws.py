"""``/ws``: one WebSocket session — a reader of control messages and a writer draining the client's outbox."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from aiohttp import WSMsgType, web

from pulse.log import get_logger
from web.api import CONSOLE
from web.hub import Outbox
from web.protocol import CLOSE_GOING_AWAY, CLOSE_SLOW_CONSUMER, MAX_FRAME_BYTES, error

log = get_logger(__name__)

SOCKETS = web.AppKey("sockets", set)


async def _write(ws: web.WebSocketResponse, box: Outbox, console: object) -> None:
    stats = console.hub.stats  # type: ignore[attr-defined]
    while True:
        await box.wake.wait()
        frames = box.take()
        box.busy_since = time.monotonic()
        for frame in frames:
            await ws.send_str(frame)
        box.busy_since = None
        stats.delivered += len(frames)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    console = request.app[CONSOLE]
    hub = console.hub
    if hub.stats.clients >= console.settings.web.max_clients:
        raise web.HTTPServiceUnavailable(
            text=f"too many clients (web.max_clients = {console.settings.web.max_clients})"
        )
    # no per-message compression: frames are built once and written to every client as they are (web.hub)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES * 4, compress=False)
    await ws.prepare(request)
    sndbuf = console.settings.web.send_buffer_bytes
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sndbuf and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    box = hub.outbox()
    writer: asyncio.Task[None] | None = None
    if hub.direct:  # the hub writes to the transport itself (web.hub.Hub.flush)
        box.transport = request.transport
    else:
        writer = asyncio.create_task(_write(ws, box, console))
    closing: list[asyncio.Task[None]] = []

    async def close_slow(reason: str) -> None:
        box.transport = None
        if writer is not None:
            writer.cancel()
        log.warning("closing slow client", remote=request.remote or "-", reason=reason)
        try:
            await asyncio.wait_for(ws.close(code=CLOSE_SLOW_CONSUMER, message=reason.encode()), 5)
        except (TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()

    box.on_give_up = lambda reason: closing.append(asyncio.get_running_loop().create_task(close_slow(reason)))
    hub.stats.clients += 1
    hub.stats.clients_total += 1
    request.app[SOCKETS].add(ws)
    try:
        async for msg in ws:
            if box.closed_reason is not None:
                break
            if msg.type == WSMsgType.TEXT:
                await console.control(box, msg.data)
            elif msg.type == WSMsgType.BINARY:
                hub.stats.bad_messages += 1
                box.put(error("binary frames are not accepted: send JSON text"))
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        hub.stats.clients -= 1
        request.app[SOCKETS].discard(ws)
        hub.drop(box)
        box.transport = None
        if not closing and writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        for task in closing:
            with contextlib.suppress(Exception):
                await task
    return ws


async def close_all(app: web.Application) -> None:
    """On shutdown: every open socket gets 1001 (going away)."""
    app[CONSOLE].hub.closing = True  # no event frame after a close frame
    for ws in list(app[SOCKETS]):
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_GOING_AWAY, message=b"gateway shutting down")
