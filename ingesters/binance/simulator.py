"""A local Binance spot venue on one port, for tests, the demo and load runs: the combined WebSocket streams and
the REST endpoints a market-data client reads.

WebSocket: ``/stream?streams=a/b/…`` (combined payloads ``{"stream", "data"}``) with ``<symbol>@trade``,
``@aggTrade``, ``@bookTicker``, ``@depth@100ms`` and ``@depth``; live ``SUBSCRIBE``/``UNSUBSCRIBE``/
``LIST_SUBSCRIPTIONS`` answered ``{"result": …, "id": n}``; errors as ``{"error": {"code", "msg"}, "id"}``; at most
1024 streams per connection and 5 incoming JSON messages per second (a connection over the rate is closed, as
Binance does). A stream name for a symbol the venue does not list is accepted and stays silent, as on Binance.
The venue pings every ``ping_interval_s`` and closes a client that has not answered within ``ping_timeout_s``
(Binance: 20 s and one minute); ``connection_lifetime_s`` ends connections like Binance's 24-hour limit.

REST: ``GET /api/v3/depth?symbol=&limit=`` (``lastUpdateId`` consistent with the diff stream),
``GET /api/v3/trades?symbol=&limit=`` and ``GET /api/v3/exchangeInfo[?symbol=|symbols=[…]]``; an unknown symbol
answers HTTP 400 ``{"code": -1121, "msg": "Invalid symbol."}``.

Data come from :mod:`ingesters.binance.simulator_market`: ``rate`` market steps per second, round-robin over the
symbols someone streams; diffs are flushed every ``depth_interval_s`` (both depth speeds get the same cadence
here). Faults (:class:`FaultPlan`) are per connection and counted in :attr:`BinanceSimulator.stats` when they
actually happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingesters.base.local_venue import LocalVenue, json_response, serve_until_cancelled
from ingesters.binance.simulator_market import MALFORMED_FRAMES, FaultPlan, SentTrade, SymbolMarket, wire
from ingesters.binance.symbols import resolve
from pulse.log import get_logger

log = get_logger(__name__)

__all__ = ["DEFAULT_SYMBOLS", "BinanceSimulator", "FaultPlan", "SentTrade", "run"]

DEFAULT_SYMBOLS: dict[str, tuple[int, int]] = {"BTC/USDT": (2, 5), "ETH/USDT": (2, 4)}
MAX_STREAMS = 1024
MAX_MESSAGES_PER_S = 5
_STREAM = re.compile(r"^([a-z0-9]{2,20})@(trade|aggTrade|bookTicker|depth@100ms|depth)$")
_REST_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_RECENT = 1000  # trades kept for GET /api/v3/trades


class _Conn:
    def __init__(self, number: int, ws: ServerConnection, streams: set[str]) -> None:
        self.number = number
        self.ws = ws
        self.streams = streams
        self.data_sent = 0
        self.diffs = 0
        self.held: dict[str, dict] = {}  # a diff held back per stream (reorder fault), sent after the next
        self.received: deque[float] = deque()
        self.deaf = False  # stopped reading (no pongs)
        self.closed = False


class BinanceSimulator(LocalVenue):
    """A Binance venue on ``host:port`` (port 0 picks a free one); :attr:`url` is both the WebSocket base
    (``ws://…``) and, as :attr:`rest_url`, the REST base. ``symbols`` maps canonical symbol → (price decimals,
    size decimals), or is a list of canonical symbols (2 and 5 decimals). ``max_trades`` stops trades after N per
    symbol (book changes go on)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        symbols: dict[str, tuple[int, int]] | list[str] | None = None,
        rate: float = 500.0,
        seed: int = 1,
        faults: FaultPlan | None = None,
        max_trades: int | None = None,
        depth_interval_s: float = 0.1,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 60.0,
        connection_lifetime_s: float | None = None,
    ) -> None:
        super().__init__(host=host, port=port, rate=rate, faults=faults or FaultPlan())
        self.max_trades = max_trades
        self.depth_interval_s = depth_interval_s
        self.ping_interval_s, self.ping_timeout_s = ping_interval_s, ping_timeout_s
        self.connection_lifetime_s = connection_lifetime_s
        spec = symbols or DEFAULT_SYMBOLS
        if isinstance(spec, list):
            spec = dict.fromkeys(spec, (2, 5))
        self.markets: dict[str, SymbolMarket] = {}  # by Binance name (BTCUSDT)
        for sym, (pp, sp) in spec.items():
            r = resolve(sym)
            self.markets[r.venue_symbol] = SymbolMarket(r.symbol, r.venue_symbol, pp, sp, seed=seed)
        self.sent_trades: list[SentTrade] = []
        self._recent: dict[str, deque[dict]] = {v: deque(maxlen=_RECENT) for v in self.markets}
        names = (
            "connections",
            "data_messages",
            "trades",
            "book_tickers",
            "diffs",
            "requests",
            "rest_requests",
            "malformed",
            "skipped_updates",
            "reordered_updates",
            "disconnects",
            "deaf",
            "shutdowns",
            "pings",
            "pongs",
            "pong_timeouts",
            "rate_limited",
            "lifetime_closes",
        )
        self.stats: dict = {
            **dict.fromkeys(names, 0),
            "trades_per_symbol": {m.symbol: 0 for m in self.markets.values()},
        }
        self.paused = False
        self._conns: list[_Conn] = []

    def _loops(self) -> list:
        return [self._market_loop(), self._depth_loop()]

    def market(self, symbol: str) -> SymbolMarket:
        return self.markets[resolve(symbol).venue_symbol]

    # ---------------------------------------------------------------------------------------------- REST

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/stream" or parts.path == "/stream/":
            return None  # the WebSocket handshake goes on
        self.stats["rest_requests"] += 1
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/api/v3/exchangeInfo":
            return self._exchange_info(q)
        if parts.path in ("/api/v3/depth", "/api/v3/trades"):
            m, err = self._rest_symbol(q)
            if err is not None:
                return err
            assert m is not None
            depth = parts.path == "/api/v3/depth"
            limit, err = _limit(q, 100 if depth else 500, 5000 if depth else 1000)
            if err is not None:
                return err
            if depth:
                return _json(HTTPStatus.OK, m.snapshot(limit))
            return _json(HTTPStatus.OK, list(self._recent[m.venue_symbol])[-limit:])
        return _json(HTTPStatus.NOT_FOUND, {"code": -1, "msg": f"unknown path {parts.path[:60]}"})

    def _rest_symbol(self, q: dict[str, str]) -> tuple[SymbolMarket | None, Response | None]:
        name = q.get("symbol")
        if not name:
            return None, _json(
                HTTPStatus.BAD_REQUEST,
                {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
            )
        if not _REST_SYMBOL.match(name):
            msg = "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            return None, _json(HTTPStatus.BAD_REQUEST, {"code": -1100, "msg": msg})
        m = self.markets.get(name)
        if m is None:
            return None, _json(HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})
        return m, None

    def _exchange_info(self, q: dict[str, str]) -> Response:
        if "symbols" in q:
            try:
                names = json.loads(q["symbols"])
                assert isinstance(names, list) and all(isinstance(n, str) for n in names)
            except (ValueError, AssertionError):
                return _json(
                    HTTPStatus.BAD_REQUEST, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'."}
                )
        elif "symbol" in q:
            names = [q["symbol"]]
        else:
            names = list(self.markets)
        if any(n not in self.markets for n in names):
            return _json(HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol."})
        body = {
            "timezone": "UTC",
            "serverTime": time.time_ns() // 1_000_000,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [self.markets[n].symbol_info() for n in names],
        }
        return _json(HTTPStatus.OK, body)

    # ----------------------------------------------------------------------------------------- WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request else "/stream")
        names = [n for n in parse_qs(parts.query).get("streams", [""])[-1].split("/") if n]
        bad = [n for n in names if not _STREAM.match(n)]
        if bad or len(names) > MAX_STREAMS:
            await ws.close(1008, "Invalid request: invalid stream" if bad else "too many streams")
            return
        self.stats["connections"] += 1
        conn = _Conn(self.stats["connections"], ws, set(names))
        self._conns.append(conn)
        keepalive = asyncio.create_task(self._keepalive(conn))
        lifetime = asyncio.create_task(self._lifetime(conn)) if self.connection_lifetime_s else None
        try:
            async for raw in ws:
                await self._on_request(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            self._conns.remove(conn)
            keepalive.cancel()
            if lifetime is not None:
                lifetime.cancel()

    async def _keepalive(self, conn: _Conn) -> None:
        """Binance's pings: one every ping_interval_s; no pong within ping_timeout_s closes the connection."""
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            while not conn.closed:
                await asyncio.sleep(self.ping_interval_s)
                waiter = await conn.ws.ping()
                self.stats["pings"] += 1
                try:
                    await asyncio.wait_for(waiter, self.ping_timeout_s)
                except TimeoutError:
                    self.stats["pong_timeouts"] += 1
                    conn.closed = True
                    # a client that does not pong: the socket is dropped (it may not be reading either)
                    conn.ws.transport.abort()
                    return
                self.stats["pongs"] += 1

    async def _lifetime(self, conn: _Conn) -> None:
        assert self.connection_lifetime_s is not None
        await asyncio.sleep(self.connection_lifetime_s)
        if not conn.closed:
            self.stats["lifetime_closes"] += 1
            conn.closed = True
            await conn.ws.close(1000, "connection lifetime reached")

    async def _on_request(self, conn: _Conn, raw: str | bytes) -> None:
        now = time.monotonic()
        conn.received.append(now)
        while conn.received and now - conn.received[0] >= 1.0:
            conn.received.popleft()
        if len(conn.received) > MAX_MESSAGES_PER_S:
            self.stats["rate_limited"] += 1
            conn.closed = True
            await conn.ws.close(1008, "Too many requests")
            return
        self.stats["requests"] += 1
        try:
            req = json.loads(raw)
        except (ValueError, UnicodeError) as exc:
            await self._send_raw(conn, json.dumps({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}))
            return
        rid = req.get("id") if isinstance(req, dict) else None
        method = req.get("method") if isinstance(req, dict) else None
        params = req.get("params") if isinstance(req, dict) else None
        if method == "LIST_SUBSCRIPTIONS":
            await self._send_raw(conn, json.dumps({"result": sorted(conn.streams), "id": rid}))
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            error = {
                "code": 2,
                "msg": f"Invalid request: unknown variant {method!r}, expected one of `SUBSCRIBE`, "
                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`",
            }
            await self._send_raw(conn, json.dumps({"error": error, "id": rid}))
            return
        if not isinstance(params, list) or not all(isinstance(p, str) and _STREAM.match(p) for p in params):
            await self._send_raw(
                conn, json.dumps({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": rid})
            )
            return
        if method == "SUBSCRIBE":
            if len(conn.streams | set(params)) > MAX_STREAMS:
                await self._send_raw(
                    conn, json.dumps({"error": {"code": 2, "msg": "Invalid request: too many streams"}, "id": rid})
                )
                return
            conn.streams |= set(params)
        else:
            conn.streams -= set(params)
        await self._send_raw(conn, json.dumps({"result": None, "id": rid}))

    async def _send_data(self, conn: _Conn, stream: str, data: dict) -> bool:
        """Send one stream event, then inject whatever faults are due after it."""
        if not await self._send_raw(conn, json.dumps({"stream": stream, "data": data}, separators=(",", ":"))):
            return False
        await self._after_data(conn, MALFORMED_FRAMES)
        return True

    async def _venue_faults(self, conn: _Conn, n: int) -> bool:
        """A serverShutdown event; a connection that stops reading (and so ponging)."""
        f, st = self.faults, self.stats
        if f.shutdown_after == n and conn.number in f.shutdown_connections:
            payload = {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": _ms()}}
            if await self._send_raw(conn, json.dumps(payload)):
                st["shutdowns"] += 1
        if f.stop_ponging_after == n and conn.number in f.stop_ponging_connections and not conn.deaf:
            conn.deaf = True
            st["deaf"] += 1
            conn.ws.transport.pause_reading()  # pings from the client go unanswered; data keeps flowing
        return True

    # -------------------------------------------------------------------------------------------- market

    def _listening(self, m: SymbolMarket) -> bool:
        prefix = m.venue_symbol.lower() + "@"
        return any(s.startswith(prefix) for c in self._conns if not c.closed for s in c.streams)

    def _active(self) -> list[SymbolMarket]:
        return [m for m in self.markets.values() if self._listening(m)] if not self.paused else []

    async def _step(self, m: SymbolMarket) -> None:
        quota = self.max_trades is None or m.trades_generated < self.max_trades
        if quota and m.rng.random() < 0.3:
            trade, agg = m.make_trade()
            t_ms = _ms()
            maker = trade.side == "sell"
            name = m.venue_symbol.lower()
            raw = {
                "e": "trade",
                "E": t_ms,
                "s": m.venue_symbol,
                "t": trade.trade_id,
                "p": f"{trade.price:.8f}",
                "q": f"{trade.qty:.8f}",
                "T": t_ms,
                "m": maker,
                "M": True,
            }
            aggregated = {
                "e": "aggTrade",
                "E": t_ms,
                "s": m.venue_symbol,
                "a": agg,
                "p": raw["p"],
                "q": raw["q"],
                "f": trade.trade_id,
                "l": trade.trade_id,
                "T": t_ms,
                "m": maker,
                "M": True,
            }
            sent = False
            for c in list(self._conns):
                if f"{name}@trade" in c.streams:
                    sent = await self._send_data(c, f"{name}@trade", raw) or sent
                if f"{name}@aggTrade" in c.streams:
                    sent = await self._send_data(c, f"{name}@aggTrade", aggregated) or sent
            if sent:
                self.sent_trades.append(trade)
                self.stats["trades"] += 1
                self.stats["trades_per_symbol"][m.symbol] += 1
            self._recent[m.venue_symbol].append(
                {
                    "id": trade.trade_id,
                    "price": raw["p"],
                    "qty": raw["q"],
                    "quoteQty": f"{trade.price * trade.qty:.8f}",
                    "time": t_ms,
                    "isBuyerMaker": maker,
                    "isBestMatch": True,
                }
            )
            return
        before = m.top()
        m.step_book()
        if m.top() != before:
            await self._book_ticker(m)

    async def _book_ticker(self, m: SymbolMarket) -> None:
        name = f"{m.venue_symbol.lower()}@bookTicker"
        bid, bq, ask, aq = m.top()
        data = {
            "u": m.update_id,
            "s": m.venue_symbol,
            "b": wire(bid, m.pp),
            "B": wire(bq, m.sp),
            "a": wire(ask, m.pp),
            "A": wire(aq, m.sp),
        }
        for c in list(self._conns):
            if name in c.streams and await self._send_data(c, name, data):
                self.stats["book_tickers"] += 1

    async def _depth_loop(self) -> None:
        while True:
            await asyncio.sleep(self.depth_interval_s)
            for m in self.markets.values():
                diff = m.take_diff()
                if diff is None:
                    continue
                first, last, bids, asks = diff
                base = m.venue_symbol.lower()
                data = {
                    "e": "depthUpdate",
                    "E": _ms(),
                    "s": m.venue_symbol,
                    "U": first,
                    "u": last,
                    "b": bids,
                    "a": asks,
                }
                for c in list(self._conns):
                    for kind in ("depth@100ms", "depth"):
                        name = f"{base}@{kind}"
                        if name not in c.streams:
                            continue
                        c.diffs += 1
                        f = self.faults
                        if (
                            f.skip_update_every
                            and c.diffs % f.skip_update_every == 0
                            and (f.max_skips is None or self.stats["skipped_updates"] < f.max_skips)
                        ):
                            self.stats["skipped_updates"] += 1  # this connection never sees [U, u]
                            continue
                        if (
                            f.reorder_update_every
                            and c.diffs % f.reorder_update_every == 0
                            and name not in c.held
                            and (f.max_reorders is None or self.stats["reordered_updates"] < f.max_reorders)
                        ):
                            c.held[name] = data  # goes out after the next diff of this stream
                            self.stats["reordered_updates"] += 1
                            continue
                        if await self._send_data(c, name, data):
                            self.stats["diffs"] += 1
                            late = c.held.pop(name, None)
                            if late is not None and await self._send_data(c, name, late):
                                self.stats["diffs"] += 1


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _json(status: HTTPStatus, body: object) -> Response:
    return json_response(status, body, "application/json;charset=UTF-8")


def _limit(q: dict[str, str], default: int, maximum: int) -> tuple[int, Response | None]:
    raw = q.get("limit")
    if raw is None:
        return default, None
    if not raw.isdigit() or int(raw) < 1:
        return 0, _json(
            HTTPStatus.BAD_REQUEST, {"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}
        )
    return min(int(raw), maximum), None


async def run(
    host: str = "127.0.0.1", port: int = 9443, *, on_ready: Callable[[BinanceSimulator], None] | None = None, **kwargs
) -> None:
    """Serve until cancelled (what ``pulse simulate binance`` runs); ``on_ready`` gets the started venue."""
    await serve_until_cancelled(BinanceSimulator(host=host, port=port, **kwargs), on_ready)
