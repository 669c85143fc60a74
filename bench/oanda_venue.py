"""A replay OANDA v20 pricing-stream venue for the benchmarks, run as its own process: ``python -m bench.oanda_venue``.

Why not :class:`~ingesters.oanda.simulator.OandaSimulator` itself: it builds every price line on the fly (random
walk, dict, msgspec encode), a few microseconds each, which at the rates measured here would take a good part
of one of the machine's two cores from the ingester under test. So the lines are *recorded* from the simulator
once — a real ``GET …/pricing/stream`` against it, in this process, before anything is timed — and replayed,
cycled to the requested count.

The replay speaks the same protocol: ``GET /v3/accounts/{accountID}/pricing/stream`` with ``Authorization:
Bearer <token>`` (401 otherwise), then a ``Transfer-Encoding: chunked`` body of newline-delimited JSON: the
warm-up lines, a ``HEARTBEAT`` (the first marker), the measured lines, another ``HEARTBEAT`` (the end marker),
pre-chunked in 256 KiB chunks and written as fast as the socket takes them. The connection then stays open
until the client closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time

import aiohttp

from ingesters.oanda.simulator import OandaSimulator, format_time

log = logging.getLogger("bench.oanda_venue")

TOKEN = "bench-token"
ACCOUNT = "101-004-1234567-001"
INSTRUMENTS = ("EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD")
_CHUNK = 256 * 1024


async def record(instruments: list[str], count: int) -> list[bytes]:
    """``count`` PRICE lines as the local OANDA venue streams them."""
    sim = OandaSimulator(
        token=TOKEN, account_id=ACCOUNT, instruments=instruments, rate=100_000, heartbeat_s=3600, history=count + 64
    )
    await sim.start()
    try:
        url = f"{sim.base_url}/v3/accounts/{ACCOUNT}/pricing/stream"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        got = 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params={"instruments": ",".join(instruments)}, headers=headers) as resp,
        ):
            resp.raise_for_status()
            async for _line in resp.content:
                got += 1
                if got >= count + len(instruments):  # the snapshot comes first
                    break
    finally:
        await sim.stop()
    lines = [line for line in sim.sent if line.startswith(b'{"type":"PRICE"')]
    return lines[-count:]


def heartbeat() -> bytes:
    return b'{"type":"HEARTBEAT","time":"' + format_time(time.time_ns()).encode() + b'"}\n'


def chunks(lines: list[bytes]) -> list[bytes]:
    """HTTP/1.1 chunks of about :data:`_CHUNK` bytes, each holding whole lines."""
    out, buf, size = [], [], 0
    for line in lines:
        buf.append(line + b"\n")
        size += len(line) + 1
        if size >= _CHUNK:
            out.append(_chunk(b"".join(buf)))
            buf, size = [], 0
    if buf:
        out.append(_chunk(b"".join(buf)))
    return out


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class ReplayVenue:
    def __init__(self, warm: list[bytes], measured: list[bytes]) -> None:
        self.warm = chunks(warm)
        self.measured = chunks(measured)
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            headers = {}
            for h in header_lines:
                name, _, value = h.partition(":")
                headers[name.strip().lower()] = value.strip()
            path = request_line.split(" ")[1] if " " in request_line else ""
            if not path.startswith(f"/v3/accounts/{ACCOUNT}/pricing/stream"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if headers.get("authorization") != f"Bearer {TOKEN}":
                body = b'{"errorMessage": "Insufficient authorization to perform request."}'
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n")
                writer.write(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for part in (self.warm, [_chunk(heartbeat())], self.measured, [_chunk(heartbeat())]):
                for c in part:
                    writer.write(c)
                    await writer.drain()
            await reader.read()  # until the client hangs up
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            log.info("connection %d done", self.connections)


async def main(args: argparse.Namespace) -> None:
    instruments = [i for i in args.instruments.split(",") if i]
    t0 = time.perf_counter()
    recorded = await record(instruments, min(args.record, args.lines))
    lines = [recorded[i % len(recorded)] for i in range(args.lines)]
    warm = min(args.warmup_lines, len(lines))
    venue = ReplayVenue(lines[:warm], lines[warm:])
    server = await asyncio.start_server(venue.serve, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    info = {
        "url": f"http://{args.host}:{port}",
        "instruments": instruments,
        "token": TOKEN,
        "account_id": ACCOUNT,
        "lines": len(lines),
        "warmup_lines": warm,
        "recorded": len(recorded),
        "bytes_per_line": sum(map(len, recorded)) / max(len(recorded), 1),
        "record_s": round(time.perf_counter() - t0, 2),
    }
    sys.stdout.write("READY " + json.dumps(info) + "\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.oanda_venue", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--instruments", default=",".join(INSTRUMENTS))
    ap.add_argument("--lines", type=int, default=100_000, help="price lines per connection")
    ap.add_argument("--warmup-lines", type=int, default=20_000, help="lines before the first marker")
    ap.add_argument("--record", type=int, default=20_000, help="distinct lines recorded from the simulator")
    return ap.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main(parse_args()))
