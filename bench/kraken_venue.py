"""A replay Kraken v2 venue for the benchmarks, run as its own process: ``python -m bench.kraken_venue …``.

It generates a :mod:`bench.kraken_corpus` once, prints ``READY {json}`` (port and corpus counts), then serves
every connection the same session: a ``status`` message, Kraken-shaped acks for each ``subscribe`` (one per
pair, ``req_id`` echoed) with the instrument, book and ticker snapshots, ``pong`` for ``ping`` — and, once the
instrument, trade, ticker and book subscriptions are all in, the corpus:

``--mode blast``   the warm-up frames, a heartbeat, the measured frames, a heartbeat — pre-framed into
                   256 KiB writes, as fast as the socket takes them.
``--mode paced``   frames at ``--rate`` events/s (1 ms ticks, asyncio sleeps, no busy-wait) with every
                   timestamp set to the wall-clock time the frame is written; a heartbeat after
                   ``--warmup-s`` seconds and another after ``--duration-s`` more.

The heartbeats are markers: the ingester under test times from the first to the end of acks.

The WebSocket server side is hand-written (RFC 6455 handshake and framing, ~60 lines) on purpose: with the
``websockets`` server each send costs tens of microseconds of Python, which on a 2-core machine would be taken
from the ingester being measured. Here the venue writes pre-framed bytes and costs next to nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import struct
import sys
import time

import msgspec

from bench.kraken_corpus import HEARTBEAT, PLACEHOLDER_BYTES, SYMBOLS, Corpus, generate, synthetic_clock
from ingesters.kraken.protocol import format_rfc3339_ns
from ingesters.kraken.schemas import encoder, request_decoder

log = logging.getLogger("bench.kraken_venue")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHUNK = 256 * 1024
CHANNELS = ("trade", "ticker", "book")


# -- RFC 6455, server side ---------------------------------------------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unfragmented, unmasked server frame (text by default)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.strip().encode() + _GUID).digest()).decode()


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    head = await reader.readuntil(b"\r\n\r\n")
    key = None
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    if key is None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return False
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )
    return True


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of one client frame (clients mask; fragmentation is not used by Kraken clients)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b1 & 0x80 else b""
    data = await reader.readexactly(n)
    if mask:
        data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
    return b0 & 0x0F, data


def chunked(frames: list[bytes]) -> list[bytes]:
    """Pre-framed writes of about :data:`_CHUNK` bytes, each holding whole frames."""
    out, buf, size = [], [], 0
    for f in frames:
        wf = ws_frame(f)
        buf.append(wf)
        size += len(wf)
        if size >= _CHUNK:
            out.append(b"".join(buf))
            buf, size = [], 0
    if buf:
        out.append(b"".join(buf))
    return out


# -- the venue ---------------------------------------------------------------------------------------------------


class ReplayVenue:
    def __init__(self, corpus: Corpus, args: argparse.Namespace) -> None:
        self.corpus = corpus
        self.args = args
        self.connections = 0
        if args.mode == "blast":
            warm = min(args.warmup_frames, len(corpus.frames))
            self.chunks = [
                *chunked(corpus.frames[:warm]),
                ws_frame(HEARTBEAT),
                *chunked(corpus.frames[warm:]),
                ws_frame(HEARTBEAT),
            ]
        else:
            self.templates = [f.split(PLACEHOLDER_BYTES) for f in corpus.frames]

    def _reply(self, body: dict, req_id: int | None) -> bytes:
        now = format_rfc3339_ns(time.time_ns())
        body["time_in"] = body["time_out"] = now
        if req_id is not None:
            body["req_id"] = req_id
        return ws_frame(encoder.encode(body))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        feed: asyncio.Task | None = None
        pending = {"instrument", *CHANNELS}
        stats = {"resubscribes": 0, "pings": 0}
        try:
            if not await handshake(reader, writer):
                return
            status = {"version": "2.0.10-bench", "system": "online", "api_version": "v2", "connection_id": 1}
            writer.write(ws_frame(encoder.encode({"channel": "status", "type": "update", "data": [status]})))
            while True:
                opcode, data = await read_frame(reader)
                if opcode == 0x8:  # close: answer and hang up
                    writer.write(ws_frame(data[:2], 0x8))
                    break
                if opcode == 0x9:
                    writer.write(ws_frame(data, 0xA))
                    continue
                if opcode != 0x1:
                    continue
                try:
                    req = request_decoder.decode(data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    log.warning("ignored a malformed request: %r", data[:200])
                    continue
                if req.method == "ping":
                    stats["pings"] += 1
                    writer.write(self._reply({"method": "pong"}, req.req_id))
                elif req.method in ("subscribe", "unsubscribe") and req.params is not None:
                    channel = req.params.channel
                    if feed is not None:
                        stats["resubscribes"] += 1  # only after a checksum failure: must stay 0
                    self._answer(writer, req.method, channel, req.params.symbol or [], req.req_id)
                    pending.discard(channel)
                    if not pending and feed is None:
                        feed = asyncio.create_task(self._feed(writer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if feed is not None:
                feed.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await feed
            writer.close()
            log.info("connection %d done: %s", self.connections, stats)

    def _answer(self, writer: asyncio.StreamWriter, method: str, channel: str, symbols: list[str], req_id) -> None:
        c = self.corpus
        if channel == "instrument":
            result = {"channel": "instrument", "snapshot": True}
            writer.write(self._reply({"method": method, "result": result, "success": True}, req_id))
            if method == "subscribe":
                writer.write(ws_frame(c.instrument))
            return
        for sym in symbols:
            if sym not in c.symbols:
                error = {"method": method, "success": False, "error": f"Currency pair not supported {sym}"}
                writer.write(self._reply({**error, "symbol": sym}, req_id))
                continue
            result: dict = {"channel": channel, "symbol": sym}
            if method == "subscribe":
                result["snapshot"] = True
            if channel == "book":
                result["depth"] = c.depth
            elif channel == "ticker" and method == "subscribe":
                result["event_trigger"] = "trades"
            writer.write(self._reply({"method": method, "result": result, "success": True}, req_id))
            if method == "subscribe" and channel == "book":
                writer.write(ws_frame(c.book_snapshots[sym]))
            elif method == "subscribe" and channel == "ticker":
                writer.write(ws_frame(c.ticker_snapshots[sym]))

    async def _feed(self, writer: asyncio.StreamWriter) -> None:
        if self.args.mode == "blast":
            for chunk in self.chunks:
                writer.write(chunk)
                await writer.drain()
            return
        await self._paced(writer)

    async def _paced(self, writer: asyncio.StreamWriter) -> None:
        rate, templates, events = self.args.rate, self.templates, self.corpus.events
        loop = asyncio.get_running_loop()
        start = loop.time()
        phase_end, measured = start + self.args.warmup_s, False
        sent, i, n = 0, 0, len(templates)
        while i < n:
            now = loop.time()
            if now >= phase_end:
                writer.write(ws_frame(HEARTBEAT))
                if measured:
                    break
                measured, phase_end = True, now + self.args.duration_s
            due = (now - start) * rate
            while sent < due and i < n:
                stamp = format_rfc3339_ns(time.time_ns()).encode()
                writer.write(ws_frame(stamp.join(templates[i])))
                sent += events[i]
                i += 1
            await writer.drain()
            await asyncio.sleep(0.0005)  # the selector rounds up to its 1 ms resolution
        else:
            writer.write(ws_frame(HEARTBEAT))  # ran out of frames: end the measurement anyway
        await writer.drain()


async def main(args: argparse.Namespace) -> None:
    symbols = [s for s in args.symbols.split(",") if s]
    t0 = time.perf_counter()
    if args.mode == "blast":
        corpus = generate(symbols, frames=args.frames, depth=args.depth, seed=args.seed, stamp=synthetic_clock())
    else:
        target = int(args.rate * (args.warmup_s + args.duration_s) * 1.1) + 100
        corpus = generate(symbols, events=target, depth=args.depth, seed=args.seed, stamp=None)
    venue = ReplayVenue(corpus, args)
    server = await asyncio.start_server(venue.serve, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    info = {
        "url": f"ws://{args.host}:{port}",
        "symbols": symbols,
        "depth": args.depth,
        "generate_s": round(time.perf_counter() - t0, 2),
        "warmup_frames": min(args.warmup_frames, len(corpus.frames)) if args.mode == "blast" else None,
        "events_per_frame": corpus.total_events / max(len(corpus.frames), 1),
        **corpus.counts,
    }
    sys.stdout.write("READY " + json.dumps(info) + "\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.kraken_venue", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("blast", "paced"), default="blast")
    ap.add_argument("--symbols", default=",".join(SYMBOLS))
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=int, default=50_000, help="blast: data frames in the corpus")
    ap.add_argument("--warmup-frames", type=int, default=8_000, help="blast: frames before the first marker")
    ap.add_argument("--rate", type=float, default=5_000.0, help="paced: events per second")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="paced: seconds before the first marker")
    ap.add_argument("--duration-s", type=float, default=10.0, help="paced: seconds between the markers")
    return ap.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main(parse_args()))
