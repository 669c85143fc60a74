"""A local OANDA v20 pricing-stream venue for tests, demos and load runs (``pulse simulate oanda``).

It speaks the real protocol: ``GET /v3/accounts/{accountID}/pricing/stream?instruments=EUR_USD,USD_JPY``
with ``Authorization: Bearer <token>``; 401 ``{"errorMessage": "Insufficient authorization to perform
request."}`` for a wrong or missing token, 403 for another account id, 400 ``{"errorMessage": "Invalid
Instrument XXX_YYY"}`` for an instrument it does not list (400 ``Invalid value specified for
'instruments'`` when the list is missing or empty); then a chunked body of newline-delimited ``PRICE``
objects (prices from a seeded random walk: 5 decimals, 3 for JPY pairs; 2-3 bucket ladders with liquidity)
and a ``HEARTBEAT`` every ``heartbeat_s``. With ``snapshot`` (OANDA's default) each connection starts with
one price per instrument.

Faults (:class:`OandaFaults`) are counted per connection, in lines written (prices, heartbeats and
malformed lines alike): drop the connection after N lines, stall (send nothing, not even heartbeats) after
N lines, insert a malformed line every N lines, split writes into small chunks, or run ``closed``: a
snapshot of non-tradeable prices and then heartbeats only, as OANDA does over the weekend.
Everything sent or injected is counted in :attr:`OandaSimulator.stats`; the last lines sent are kept in
:attr:`OandaSimulator.sent` so tests can compare what they parsed with what went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from ingesters.oanda.symbols import instrument_to_symbol
from pulse.log import get_logger

__all__ = ["DEFAULT_INSTRUMENTS", "OandaFaults", "OandaSimulator", "SimulatorStats", "run"]

log = get_logger(__name__)

DEFAULT_INSTRUMENTS = ("EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD", "USD_CHF", "USD_CAD", "EUR_JPY")

# Starting mid prices (as decimal strings, so the walk starts on an exact, known value).
_START_MID = {
    "EUR_USD": "1.10000",
    "GBP_USD": "1.27000",
    "USD_JPY": "150.000",
    "AUD_USD": "0.66000",
    "USD_CHF": "0.88000",
    "USD_CAD": "1.36000",
    "NZD_USD": "0.61000",
    "EUR_JPY": "162.000",
    "EUR_GBP": "0.86000",
    "GBP_JPY": "190.000",
}
_UNAUTHORIZED = {"errorMessage": "Insufficient authorization to perform request."}
_FORBIDDEN = {"errorMessage": "The provided request was forbidden."}
_BAD_INSTRUMENTS = {"errorMessage": "Invalid value specified for 'instruments'"}
_MALFORMED = (
    b'{"type":"PRICE","instrument":"EUR_',  # truncated object
    b"this is not json",
    b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-01T00:00:00.000000000Z",'
    b'"bids":[{"price":"abc","liquidity":1}],"asks":[],"tradeable":true}',  # bad decimal
    b'{"type":"SURPRISE","time":"2024-01-01T00:00:00.000000000Z"}',  # unknown message type
    b'{"type":"PRICE","bids":' + b"[" * 1000 + b"]" * 1000 + b"}",  # nested 1,000 deep
    b'{"type":"HEARTBEAT","time":"2024-01-01T00:00:00.000000000Z\xff"}',  # not UTF-8
)


@dataclass(frozen=True, slots=True)
class OandaFaults:
    """Fault injection, per connection. Counts are in lines written on that connection."""

    disconnect_after: int | None = None  # close the TCP connection after N lines (body left unfinished)
    stall_after: int | None = None  # after N lines send nothing more, keeping the connection open
    malformed_every: int | None = None  # every Nth line written is a malformed one (inserted)
    closed: bool = False  # market closed: non-tradeable snapshot, then heartbeats only
    chunk_bytes: int | None = None  # write the body in pieces of this size (lines split across chunks)
    reject_status: int | None = None  # answer with this HTTP status (e.g. 503) and an OANDA error body
    connections: int | None = None  # apply the faults to the first N valid requests only (None: all);
    # `closed` is a market state, not a fault, and stays on for every connection
    malformed_lines: tuple[bytes, ...] = ()  # the lines malformed_every injects, cycled (default: a built-in set)

    def __post_init__(self) -> None:
        for name in ("disconnect_after", "stall_after", "malformed_every", "chunk_bytes", "connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"OandaFaults.{name} must be at least 1, got {value}")
        if self.reject_status is not None and not 400 <= self.reject_status <= 599:
            raise ValueError(f"OandaFaults.reject_status must be a 4xx or 5xx status, got {self.reject_status}")


@dataclass(slots=True)
class SimulatorStats:
    connections: int = 0  # accepted stream connections
    active: int = 0  # streams being served now
    rejected_auth: int = 0  # 401s
    rejected_account: int = 0  # 403s
    rejected_instruments: int = 0  # 400s
    rejected_injected: int = 0  # answered with OandaFaults.reject_status
    lines: int = 0  # every line written
    prices: int = 0
    non_tradeable_prices: int = 0
    heartbeats: int = 0
    malformed: int = 0
    disconnects: int = 0  # connections dropped by the disconnect fault
    stalls: int = 0  # connections stalled by the stall fault
    client_gone: int = 0  # connections the client closed
    prices_by_instrument: dict[str, int] = field(default_factory=dict)


class _Walk:
    """Random-walk state of one instrument, in integer points (10^-decimals) so no float touches a price."""

    __slots__ = ("decimals", "mid", "spread")

    def __init__(self, instrument: str) -> None:
        self.decimals = 3 if "JPY" in instrument.split("_") else 5
        start = _START_MID.get(instrument, "100.000" if self.decimals == 3 else "1.00000")
        whole, _, frac = start.partition(".")
        self.mid = int(whole) * 10**self.decimals + int(frac.ljust(self.decimals, "0")[: self.decimals])
        self.spread = 14 if self.decimals == 5 else 16  # points: 1.4 pips (EUR_USD-like), 1.6 for JPY

    def fmt(self, points: int) -> str:
        whole, frac = divmod(points, 10**self.decimals)
        return f"{whole}.{frac:0{self.decimals}d}"


def format_time(ns: int) -> str:
    """Nanoseconds since the epoch → OANDA's RFC 3339 form with nine fractional digits."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class _Connection:
    __slots__ = ("faults", "lines", "pending")

    def __init__(self, faults: OandaFaults | None) -> None:
        self.faults = faults
        self.lines = 0
        self.pending: list[bytes] = []


class _Disconnect(Exception):
    pass


class _Stall(Exception):
    pass


class OandaSimulator:
    """The local venue. ``await start()``, use :attr:`base_url` as the client's ``api_url``, ``await stop()``.

    ``rate`` is price lines per second across all requested instruments (round-robin); OANDA itself sends
    at most 4 per second per instrument, higher rates are for load tests. The random walk is seeded and
    shared by all connections, so a reconnect continues where the last one stopped.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sim-token",
        account_id: str = "101-004-1234567-001",
        instruments: Iterable[str] = DEFAULT_INSTRUMENTS,
        rate: float = 20.0,
        seed: int = 1,
        heartbeat_s: float = 5.0,
        faults: OandaFaults | None = None,
        clock: Callable[[], int] = time.time_ns,
        history: int = 10_000,
    ) -> None:
        if rate <= 0 or heartbeat_s <= 0:
            raise ValueError("rate and heartbeat_s must be positive")
        names = list(instruments)
        for name in names:
            instrument_to_symbol(name)
        self.host = host
        self.port = port
        self.token = token
        self.account_id = account_id
        self.instruments: tuple[str, ...] = tuple(names)
        self.rate = rate
        self.heartbeat_s = heartbeat_s
        self.faults = faults or OandaFaults()
        self.stats = SimulatorStats()
        self.sent: deque[bytes] = deque(maxlen=history)
        self._clock = clock
        self._rng = random.Random(seed)
        self._walks = {name: _Walk(name) for name in names}
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[object]] = set()
        self._attempts = 0  # authorised, valid requests: what OandaFaults.connections counts
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"OandaSimulator(base_url={self.base_url if self._runner else None!r})"

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("OandaSimulator is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("OandaSimulator already started")
        self._stopping.clear()
        app = web.Application()
        app.router.add_get("/v3/accounts/{account_id}/pricing/stream", self._handle_stream)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        sockets = runner.addresses
        if sockets:
            self.port = sockets[0][1]
        log.info("local OANDA venue listening", url=self.base_url)

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> OandaSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- price generation ---------------------------------------------------------------------------------

    def _price(self, instrument: str, tradeable: bool, move: bool = True) -> bytes:
        walk, rng = self._walks[instrument], self._rng
        if move:
            walk.mid += rng.choice((-2, -1, -1, 0, 0, 0, 1, 1, 2))
        spread = walk.spread + (rng.randint(0, 4) if move else 0)
        bid = walk.mid - spread // 2
        ask = bid + spread
        depth = rng.randint(2, 3) if move else 2
        first = rng.choice((250_000, 500_000, 1_000_000)) if move else 1_000_000
        liquidity = (first, 2_000_000, 5_000_000)[:depth]
        bids, asks = [], []
        b, a = bid, ask
        for i, liq in enumerate(liquidity):
            if i:
                step = rng.randint(1, 2) if move else 1
                b, a = b - step, a + step
            bids.append({"price": walk.fmt(b), "liquidity": liq})
            asks.append({"price": walk.fmt(a), "liquidity": liq})
        msg = {
            "type": "PRICE",
            "time": format_time(self._clock()),
            "bids": bids,
            "asks": asks,
            "closeoutBid": walk.fmt(b),
            "closeoutAsk": walk.fmt(a),
            "status": "tradeable" if tradeable else "non-tradeable",
            "tradeable": tradeable,
            "instrument": instrument,
        }
        return msgspec.json.encode(msg)

    def _heartbeat(self) -> bytes:
        return b'{"type":"HEARTBEAT","time":"' + format_time(self._clock()).encode() + b'"}'

    # -- HTTP ---------------------------------------------------------------------------------------------

    async def _handle_stream(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.stats.rejected_auth += 1
            return web.json_response(_UNAUTHORIZED, status=401)
        if request.match_info["account_id"] != self.account_id:
            self.stats.rejected_account += 1
            return web.json_response(_FORBIDDEN, status=403)
        requested = [n for n in request.query.get("instruments", "").split(",") if n]
        if not requested:
            self.stats.rejected_instruments += 1
            return web.json_response(_BAD_INSTRUMENTS, status=400)
        for name in requested:
            if name not in self._walks:
                self.stats.rejected_instruments += 1
                return web.json_response({"errorMessage": f"Invalid Instrument {name}"}, status=400)
        snapshot = request.query.get("snapshot", "true").lower() != "false"

        self._attempts += 1
        faults = self.faults
        if faults.connections is not None and self._attempts > faults.connections:
            faults = OandaFaults(closed=faults.closed)
        if faults.reject_status is not None:
            self.stats.rejected_injected += 1
            body = {"errorMessage": f"Injected failure (HTTP {faults.reject_status})"}
            return web.json_response(body, status=faults.reject_status)
        self.stats.connections += 1
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.stats.active += 1
        conn = _Connection(faults)
        try:
            await self._serve(resp, conn, list(dict.fromkeys(requested)), snapshot)
        except _Disconnect:
            self.stats.disconnects += 1
            with contextlib.suppress(ConnectionError):
                await self._flush(resp, conn)
            if request.transport is not None:
                request.transport.close()  # after the buffered lines, without the final empty chunk
        except _Stall:
            self.stats.stalls += 1
            with contextlib.suppress(ConnectionError):
                await self._flush(resp, conn)
                await self._wait_client_gone(request)
        except ConnectionError:
            self.stats.client_gone += 1
        finally:
            self.stats.active -= 1
            self._handlers.discard(task)
        return resp

    async def _serve(
        self,
        resp: web.StreamResponse,
        conn: _Connection,
        instruments: list[str],
        snapshot: bool,
    ) -> None:
        faults = conn.faults
        assert faults is not None
        loop = asyncio.get_running_loop()
        if snapshot:
            for name in instruments:
                self._queue(conn, self._price(name, not faults.closed, move=False), name, not faults.closed)
            await self._flush(resp, conn)
        start = loop.time()
        next_heartbeat = start + self.heartbeat_s
        prices_sent = 0
        turn = 0
        while not self._stopping.is_set():
            now = loop.time()
            if not faults.closed:
                due = int((now - start) * self.rate) - prices_sent
                for _ in range(min(due, 10_000)):
                    name = instruments[turn % len(instruments)]
                    self._queue(conn, self._price(name, True), name, True)
                    turn += 1
                    prices_sent += 1
            if now >= next_heartbeat:
                self._queue(conn, self._heartbeat(), None, None)
                next_heartbeat += self.heartbeat_s
                if next_heartbeat <= now:
                    next_heartbeat = now + self.heartbeat_s
            await self._flush(resp, conn)
            wake = next_heartbeat
            if not faults.closed:
                wake = min(wake, start + (prices_sent + 1) / self.rate)
            await asyncio.sleep(min(max(wake - loop.time(), 0.0005), 0.25))

    def _queue(self, conn: _Connection, line: bytes, instrument: str | None, tradeable: bool | None) -> None:
        """Add a line (a price of ``instrument``, or a heartbeat when it is None) to the connection's next
        write, applying the line-counted faults; counts only what is actually queued."""
        faults = conn.faults
        assert faults is not None
        if faults.malformed_every is not None and (conn.lines + 1) % faults.malformed_every == 0:
            bad = faults.malformed_lines or _MALFORMED
            self._add(conn, bad[self.stats.malformed % len(bad)])
            self.stats.malformed += 1
        self._add(conn, line)
        stats = self.stats
        if instrument is None:
            stats.heartbeats += 1
            return
        stats.prices += 1
        if not tradeable:
            stats.non_tradeable_prices += 1
        stats.prices_by_instrument[instrument] = stats.prices_by_instrument.get(instrument, 0) + 1

    def _add(self, conn: _Connection, line: bytes) -> None:
        faults = conn.faults
        assert faults is not None
        if faults.disconnect_after is not None and conn.lines >= faults.disconnect_after:
            raise _Disconnect
        if faults.stall_after is not None and conn.lines >= faults.stall_after:
            raise _Stall
        conn.lines += 1
        self.stats.lines += 1
        self.sent.append(line)
        conn.pending.append(line + b"\n")

    async def _flush(self, resp: web.StreamResponse, conn: _Connection) -> None:
        if not conn.pending:
            return
        data = b"".join(conn.pending)
        conn.pending.clear()
        size = conn.faults.chunk_bytes if conn.faults else None
        if size is None:
            await resp.write(data)
            return
        for i in range(0, len(data), size):
            await resp.write(data[i : i + size])

    async def _wait_client_gone(self, request: web.Request) -> None:
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.05)


async def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str = "sim-token",
    account_id: str = "101-004-1234567-001",
    instruments: Iterable[str] = DEFAULT_INSTRUMENTS,
    rate: float = 20.0,
    seed: int = 1,
    heartbeat_s: float = 5.0,
    faults: OandaFaults | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[OandaSimulator], None] | None = None,
) -> SimulatorStats:
    """Serve until ``stop`` is set (or the task is cancelled); return the counts. For ``pulse simulate oanda``.

    Point the ingester at it with ``api_url = http://{host}:{port}`` and the same token and account id.
    """
    sim = OandaSimulator(
        host=host,
        port=port,
        token=token,
        account_id=account_id,
        instruments=instruments,
        rate=rate,
        seed=seed,
        heartbeat_s=heartbeat_s,
        faults=faults,
    )
    await sim.start()
    try:
        if on_ready is not None:
            on_ready(sim)
        await (stop or asyncio.Event()).wait()
    finally:
        await sim.stop()
    return sim.stats
