"""A local Coinbase Advanced Trade venue on one port, for tests, the demo and load runs: the market-data WebSocket and
the public products endpoint.

WebSocket (any path but ``/api/…``): a client must send a ``subscribe`` within ``subscribe_timeout_s`` (Coinbase: 5
s) or it is disconnected. One channel per ``subscribe``/``unsubscribe`` message (``heartbeats``, ``level2``,
``market_trades``, ``ticker``); each is answered by a ``subscriptions`` message listing everything the connection
now has, then, for the products it added, a snapshot: the whole book (``l2_data`` ``snapshot``), the recent trades
(``market_trades`` ``snapshot``, newest first) and the ticker (``ticker`` ``snapshot``). ``unsubscribe`` without
``product_ids`` drops the channel. Every message carries the connection's ``sequence_num`` (0, 1, 2, …). A request
naming an unknown channel or product, or that is not JSON, is answered ``{"type": "error", "message": …}`` (the
local venue's wording). ``heartbeats`` arrive every ``heartbeat_interval_s`` (Coinbase: 1 s) with a growing
``heartbeat_counter``.

REST: ``GET /api/v3/brokerage/market/products[?product_ids=…&product_ids=…]`` lists the venue's products (an unknown
id is simply absent, as on Coinbase); ``GET /api/v3/brokerage/market/products/{product_id}/ticker?limit=&start=&end=``
answers the product's public market trades with ``start <= time < end`` (UNIX seconds), newest first, at most
``limit`` (1..1000), plus ``best_bid``/``best_ask`` — from the venue's tape of every trade it made
(:attr:`CoinbaseSimulator.tape`), streamed or not.

Data come from :mod:`ingesters.coinbase.simulator_market`: ``rate`` market steps per second, round-robin over the
products someone streams; each book step is one ``l2_data`` update, each trade one ``market_trades`` update and one
``ticker`` update; with ``keep_trading`` a product someone streamed once keeps trading while nobody streams it (a
real hole for a reconnecting client). Faults (:class:`FaultPlan`) are per connection and counted in
:attr:`CoinbaseSimulator.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingesters.base.local_venue import LocalVenue, serve_until_cancelled
from ingesters.base.local_venue import json_response as _json
from ingesters.coinbase.rest import PRODUCTS_PATH
from ingesters.coinbase.schemas import format_time
from ingesters.coinbase.simulator_market import MALFORMED_FRAMES, FaultPlan, ProductMarket, SentTrade, wire
from ingesters.coinbase.symbols import resolve
from pulse.log import get_logger

log = get_logger(__name__)

__all__ = ["DEFAULT_SYMBOLS", "CoinbaseSimulator", "FaultPlan", "SentTrade", "run"]

DEFAULT_SYMBOLS: dict[str, tuple[int, int]] = {"BTC/USD": (2, 8), "ETH/USD": (2, 8)}
CHANNELS = ("heartbeats", "level2", "market_trades", "ticker")
_WIRE_CHANNEL = {"level2": "l2_data"}  # level2 arrives as l2_data
_RECENT = 50  # trades a market_trades snapshot carries


class _Conn:
    def __init__(self, number: int, ws: ServerConnection) -> None:
        self.number = number
        self.ws = ws
        self.subs: dict[str, set[str]] = {}  # channel → product ids
        self.seq = 0
        self.data_sent = 0
        self.l2_updates = 0
        self.subscribed = asyncio.Event()
        self.stalled_until = 0.0
        self.closed = False


class CoinbaseSimulator(LocalVenue):
    """A Coinbase venue on ``host:port`` (port 0 picks a free one); :attr:`url` is the WebSocket URL and
    :attr:`rest_url` the REST base. ``symbols`` maps canonical symbol → (price decimals, size decimals), or is a list
    of canonical symbols (2 and 8 decimals). ``max_trades`` stops trades after N per product (book changes go on)."""

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
        heartbeat_interval_s: float = 1.0,
        subscribe_timeout_s: float = 5.0,
        keep_trading: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, rate=rate, faults=faults or FaultPlan())
        self.max_trades = max_trades
        self.heartbeat_interval_s = heartbeat_interval_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.keep_trading = keep_trading
        self._streamed: set[str] = set()  # products someone has streamed (keep_trading: they trade on from then)
        spec = symbols or DEFAULT_SYMBOLS
        if isinstance(spec, list):
            spec = dict.fromkeys(spec, (2, 8))
        self.markets: dict[str, ProductMarket] = {}  # by product id
        for sym, (pp, sp) in spec.items():
            r = resolve(sym)
            self.markets[r.venue_symbol] = ProductMarket(r.symbol, r.venue_symbol, pp, sp, seed=seed)
        self.sent_trades: list[SentTrade] = []
        self._recent: dict[str, deque[dict]] = {p: deque(maxlen=_RECENT) for p in self.markets}
        #: every trade each product made, in order, as (time in ns, the wire form) — what the REST trades answer
        self.tape: dict[str, list[tuple[int, dict]]] = {p: [] for p in self.markets}
        names = ("connections", "data_messages", "trades", "tickers", "l2_updates", "snapshots", "requests",
                 "rest_requests", "rest_trades", "errors", "heartbeats", "malformed", "skipped_sequences",
                 "disconnects", "stalls", "subscribe_timeouts")  # fmt: skip
        self.stats: dict = {
            **dict.fromkeys(names, 0),
            "trades_per_symbol": {m.symbol: 0 for m in self.markets.values()},
        }
        self.paused = False
        self._conns: list[_Conn] = []

    def _loops(self) -> list:
        return [self._market_loop(), self._heartbeat_loop()]

    def market(self, symbol: str) -> ProductMarket:
        return self.markets[resolve(symbol).venue_symbol]

    # ---------------------------------------------------------------------------------------------- REST

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if not parts.path.startswith("/api/"):
            return None  # the WebSocket handshake goes on
        self.stats["rest_requests"] += 1
        if parts.path.startswith(PRODUCTS_PATH + "/") and parts.path.endswith("/ticker"):
            return self._market_trades(parts.path[len(PRODUCTS_PATH) + 1 : -len("/ticker")], parse_qs(parts.query))
        if parts.path != PRODUCTS_PATH:
            return _json(HTTPStatus.NOT_FOUND, {"error": "NOT_FOUND", "message": f"unknown path {parts.path[:60]}"})
        wanted = parse_qs(parts.query).get("product_ids")
        products = [m.product() for pid, m in self.markets.items() if wanted is None or pid in wanted]
        return _json(HTTPStatus.OK, {"products": products, "num_products": len(products)})

    def _market_trades(self, product_id: str, q: dict[str, list[str]]) -> Response:
        m = self.markets.get(product_id)
        if m is None:
            return _json(HTTPStatus.NOT_FOUND, {"error": "NOT_FOUND", "message": "ProductID is invalid"})
        try:
            limit = int(q["limit"][-1])
            start = int(q["start"][-1]) * 1_000_000_000 if "start" in q else 0
            end = int(q["end"][-1]) * 1_000_000_000 if "end" in q else 2**63
        except (KeyError, ValueError):
            return _json(HTTPStatus.BAD_REQUEST, {"error": "INVALID_ARGUMENT", "message": "limit (and integer "
                                                  "start/end) required"})  # fmt: skip
        if not 1 <= limit <= 1000:
            return _json(HTTPStatus.BAD_REQUEST, {"error": "INVALID_ARGUMENT", "message": "limit must be 1..1000"})
        self.stats["rest_trades"] += 1
        picked = [raw for ns, raw in reversed(self.tape[product_id]) if start <= ns < end][:limit]
        b, _, a, _ = m.top()
        body = {"trades": picked, "best_bid": wire(b, m.pp), "best_ask": wire(a, m.pp)}
        return _json(HTTPStatus.OK, body)

    # ----------------------------------------------------------------------------------------- WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats["connections"] += 1
        conn = _Conn(self.stats["connections"], ws)
        self._conns.append(conn)
        deadline = asyncio.create_task(self._subscribe_deadline(conn))
        try:
            async for raw in ws:
                await self._on_request(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            self._conns.remove(conn)
            deadline.cancel()

    async def _subscribe_deadline(self, conn: _Conn) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.subscribed.wait(), self.subscribe_timeout_s)
            return
        self.stats["subscribe_timeouts"] += 1
        conn.closed = True
        await conn.ws.close(1008, "no subscribe within 5 seconds")

    async def _error(self, conn: _Conn, message: str) -> None:
        self.stats["errors"] += 1
        await self._send_raw(conn, json.dumps({"type": "error", "message": message}))

    async def _on_request(self, conn: _Conn, raw: str | bytes) -> None:
        self.stats["requests"] += 1
        try:
            req = json.loads(raw)
        except (ValueError, UnicodeError):
            await self._error(conn, "invalid JSON")
            return
        kind = req.get("type") if isinstance(req, dict) else None
        channel = req.get("channel") if isinstance(req, dict) else None
        ids = req.get("product_ids", []) if isinstance(req, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._error(conn, f"unknown message type {str(kind)[:40]!r}: expected subscribe or unsubscribe")
            return
        if channel not in CHANNELS:
            await self._error(conn, f"unknown channel {str(channel)[:40]!r}")
            return
        if not isinstance(ids, list) or not all(isinstance(p, str) for p in ids):
            await self._error(conn, "product_ids must be a list of product ids")
            return
        unknown = [p for p in ids if p not in self.markets]
        if unknown:
            await self._error(conn, f"Failure to subscribe: unknown product {unknown[0][:40]!r}")
            return
        if kind == "subscribe":
            if channel != "heartbeats" and not ids:
                await self._error(conn, f"subscribe {channel}: product_ids required")
                return
            have = conn.subs.setdefault(channel, set())
            added = [p for p in ids if p not in have]
            have.update(ids)
            conn.subscribed.set()
            await self._subscriptions(conn)
            for pid in added:
                await self._snapshot(conn, channel, self.markets[pid])
        else:
            if ids:
                conn.subs.get(channel, set()).difference_update(ids)
            else:
                conn.subs.pop(channel, None)
            await self._subscriptions(conn)

    async def _subscriptions(self, conn: _Conn) -> None:
        subs = {ch: sorted(ids) for ch, ids in conn.subs.items() if ids or ch == "heartbeats"}
        await self._send(conn, "subscriptions", [{"subscriptions": subs}])

    async def _snapshot(self, conn: _Conn, channel: str, m: ProductMarket) -> None:
        now = format_time(time.time_ns())
        if channel == "level2":
            event = {"type": "snapshot", "product_id": m.product_id, "updates": m.l2_snapshot(now)}
            if await self._send(conn, "level2", [event]):
                self.stats["snapshots"] += 1
        elif channel == "market_trades":
            trades = list(reversed(self._recent[m.product_id]))
            await self._send(conn, "market_trades", [{"type": "snapshot", "trades": trades}])
        elif channel == "ticker":
            await self._send(conn, "ticker", [{"type": "snapshot", "tickers": [m.ticker()]}])

    async def _send(self, conn: _Conn, channel: str, events: list[dict]) -> bool:
        """One envelope with the connection's next sequence_num (nothing while the connection is stalled)."""
        if conn.closed or time.monotonic() < conn.stalled_until:
            return False
        stamp = format_time(time.time_ns())
        env = {"channel": _WIRE_CHANNEL.get(channel, channel), "client_id": "", "timestamp": stamp,
               "sequence_num": conn.seq, "events": events}  # fmt: skip
        conn.seq += 1
        return await self._send_raw(conn, json.dumps(env, separators=(",", ":")))

    async def _send_data(self, conn: _Conn, channel: str, events: list[dict]) -> bool:
        """Send one data message, then inject whatever faults are due after it."""
        if not await self._send(conn, channel, events):
            return False
        await self._after_data(conn, MALFORMED_FRAMES)
        return True

    async def _venue_faults(self, conn: _Conn, n: int) -> bool:
        """A stall: the connection goes silent for ``stall_s``."""
        f = self.faults
        if f.stall_after == n and conn.number in f.stall_connections:
            self.stats["stalls"] += 1
            conn.stalled_until = time.monotonic() + f.stall_s
        return True

    # -------------------------------------------------------------------------------------------- market

    def _listening(self, m: ProductMarket) -> bool:
        return any(m.product_id in ids for c in self._conns if not c.closed for ch, ids in c.subs.items()
                   if ch != "heartbeats")  # fmt: skip

    async def _heartbeat_loop(self) -> None:
        counter = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            counter += 1
            now = time.time_ns()
            text = format_time(now).replace("T", " ").replace("Z", " +0000 UTC")
            event = [{"current_time": text, "heartbeat_counter": counter}]
            for c in list(self._conns):
                if "heartbeats" in c.subs and await self._send(c, "heartbeats", event):
                    self.stats["heartbeats"] += 1

    def _active(self) -> list[ProductMarket]:
        for m in self.markets.values():
            if m.product_id not in self._streamed and self._listening(m):
                self._streamed.add(m.product_id)
        keep = self.keep_trading
        active = [m for m in self.markets.values() if (keep and m.product_id in self._streamed) or self._listening(m)]
        return [] if self.paused else active

    async def _step(self, m: ProductMarket) -> None:
        quota = self.max_trades is None or m.trades_generated < self.max_trades
        now_ns = time.time_ns()
        now = format_time(now_ns)
        if quota and m.rng.random() < 0.3:
            t = m.make_trade()
            raw = {"trade_id": t.trade_id, "product_id": m.product_id, "price": str(t.price), "size": str(t.size),
                   "side": "SELL" if t.side == "buy" else "BUY", "time": now}  # fmt: skip
            self._recent[m.product_id].append(raw)
            self.tape[m.product_id].append((now_ns, raw))
            sent = False
            for c in list(self._conns):
                if m.product_id in c.subs.get("market_trades", ()):
                    sent = await self._send_data(c, "market_trades", [{"type": "update", "trades": [raw]}]) or sent
            if sent:
                self.sent_trades.append(t)
                self.stats["trades"] += 1
                self.stats["trades_per_symbol"][m.symbol] += 1
            ticker = [{"type": "update", "tickers": [m.ticker()]}]
            for c in list(self._conns):
                if m.product_id in c.subs.get("ticker", ()) and await self._send_data(c, "ticker", ticker):
                    self.stats["tickers"] += 1
            return
        changes = m.step_book()
        if not changes:
            return
        event = [{"type": "update", "product_id": m.product_id, "updates": m.l2_updates(changes, now)}]
        for c in list(self._conns):
            if m.product_id not in c.subs.get("level2", ()):
                continue
            c.l2_updates += 1
            f = self.faults
            if (f.skip_sequence_every and c.l2_updates % f.skip_sequence_every == 0
                    and (f.max_skips is None or self.stats["skipped_sequences"] < f.max_skips)):  # fmt: skip
                self.stats["skipped_sequences"] += 1
                c.seq += 1  # the message is lost: its sequence_num is used up, the client sees the jump
                continue
            if await self._send_data(c, "level2", event):
                self.stats["l2_updates"] += 1


async def run(
    host: str = "127.0.0.1", port: int = 8768, *, on_ready: Callable[[CoinbaseSimulator], None] | None = None, **kwargs
) -> None:
    """Serve until cancelled (what ``pulse simulate coinbase`` runs); ``on_ready`` gets the started venue."""
    await serve_until_cancelled(CoinbaseSimulator(host=host, port=port, **kwargs), on_ready)
