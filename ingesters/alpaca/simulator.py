"""A local Alpaca market data v2 venue (US stocks), for tests, the demo and load runs: the real stream protocol.

``ws://host:port/v2/{feed}`` (``iex``, ``sip``, ``delayed_sip``; any other path answers HTTP 404). On connect it
sends ``[{"T":"success","msg":"connected"}]``; the client then has ``auth_timeout_s`` (Alpaca: 10 s) to
authenticate, with ``{"action":"auth","key","secret"}`` or the ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY``
handshake headers → ``[{"T":"success","msg":"authenticated"}]``. Errors as Alpaca sends them,
``[{"T":"error","code":N,"msg":…}]``: 400 invalid syntax, 401 not authenticated (an action before auth), 402 auth
failed (then closed), 403 already authenticated, 404 auth timeout (then closed), 405 symbol limit exceeded (more
trade/quote symbols than ``symbol_limit``; the subscribe is not applied), 406 connection limit exceeded (a second
authenticated connection with the same key; closed), 409 insufficient subscription (a feed the key may not use;
closed). ``subscribe``/``unsubscribe`` with ``trades``/``quotes``/``bars`` lists answer the session's whole
``subscription``.

Data: ``rate`` market steps per second, round-robin over the symbols someone subscribed; a step is one trade
(``t``) and one quote (``q``) for that symbol, sent together in one array to every connection subscribed to them.
A minute bar (``b``) per symbol is built exactly from its trades every ``bar_interval_s`` (60 s as on Alpaca; less in
tests) and sent to connections subscribed to its bars. Faults (per connection, counted in :attr:`stats` when they
happen): ``disconnect_after`` data frames, a ``malformed_every``-th frame (alternately a frame that is not JSON
and an array with one bad element among good ones), ``stall_after`` (stops sending, stays connected),
``amend_every`` (a trade correction ``c`` or cancel ``x`` of every N-th trade, as the venue sends them).
``keep_trading``: symbols once subscribed trade on while no connection is subscribed (what a reconnecting client
misses). ``clock`` stamps the trades (tests put them in an NYSE session).

REST on the same port: ``GET /v2/stocks/{symbol}/trades?start&end&limit&feed&page_token`` with the
``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers serves every trade the market made (``start``/``end``
inclusive, pages of ``limit`` with an opaque ``next_page_token``); 401 ``{"message": "unauthorized."}``, 403 for a
feed not in ``feeds``, 422 for a bad parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from urllib.parse import parse_qs

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingesters.alpaca.parser import parse_rfc3339_ns
from ingesters.alpaca.symbols import resolve
from ingesters.base.local_venue import LocalVenue, serve_until_cancelled
from pulse.errors import SymbolError
from pulse.log import get_logger

log = get_logger(__name__)
_WS_LOG = logging.getLogger("ingesters.alpaca.simulator.websocket")  # frames carry credentials: never at debug
_WS_LOG.setLevel(logging.WARNING)

__all__ = ["AlpacaSimulator", "FaultPlan", "SentTrade", "run"]

FEEDS = ("iex", "sip", "delayed_sip")
_EXCHANGES = {"iex": ("V",), "sip": ("V", "Q", "N", "P", "Z", "D"), "delayed_sip": ("V", "Q", "N", "P", "Z", "D")}
_START = {"AAPL": Decimal("190.00"), "TSLA": Decimal("250.00"), "SPY": Decimal("450.00"), "BRK.B": Decimal("410.00")}
_CENT = Decimal("0.01")


@dataclass
class FaultPlan:
    disconnect_after: int | None = None  # close each connection after N data frames
    malformed_every: int | None = None  # every N-th data frame is malformed (alternating kinds)
    stall_after: int | None = None  # stop sending data on a connection after N data frames
    amend_every: int | None = None  # after every N-th trade, a correction or (alternately) a cancel of it


@dataclass(frozen=True)
class SentTrade:
    symbol: str
    trade_id: str  # as Pulse stores it: <exchange>-<id>
    price: Decimal
    size: int
    ts_ns: int


def rfc3339(ns: int) -> str:
    """Nanoseconds → ``2021-02-22T15:51:45.335689322Z``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


@dataclass
class _Market:
    symbol: str
    price: Decimal
    rng: random.Random
    next_id: int = 1
    bar: list = field(default_factory=list)  # trades of the running bar: (price, size)
    bar_start: int = 0

    def step(self, exchanges: tuple[str, ...], now_ns: int) -> tuple[dict, dict, SentTrade]:
        self.price = max(_CENT, self.price + self.rng.choice((-1, 0, 1)) * _CENT * self.rng.randint(1, 5))
        price = self.price
        if self.rng.random() < 0.1:  # a sub-penny print (a midpoint execution)
            price = price + Decimal(self.rng.randint(1, 99)) / Decimal(10_000)
        size = self.rng.choice((1, 5, 10, 100, 200, 37))
        x = self.rng.choice(exchanges)
        tid = self.next_id
        self.next_id += 1
        ts = rfc3339(now_ns)
        trade = {"T": "t", "S": self.symbol, "i": tid, "x": x, "p": float_text(price), "s": size, "t": ts,
                 "c": ["@"], "z": "C"}  # fmt: skip
        bid, ask = self.price - _CENT, self.price + _CENT
        quote = {"T": "q", "S": self.symbol, "bx": x, "bp": float_text(bid), "bs": self.rng.randint(1, 9), "ax": x,
                 "ap": float_text(ask), "as": self.rng.randint(1, 9), "t": ts, "c": ["R"], "z": "C"}  # fmt: skip
        self.bar.append((price, size))
        return trade, quote, SentTrade(self.symbol, f"{x}-{tid}", price, size, now_ns)

    def close_bar(self, start_ns: int) -> dict | None:
        trades, self.bar = self.bar, []
        if not trades:
            return None
        prices = [p for p, _ in trades]
        volume = sum(s for _, s in trades)
        vwap = (sum(p * s for p, s in trades) / volume).quantize(Decimal("0.000001"))
        return {"T": "b", "S": self.symbol, "o": float_text(prices[0]), "h": float_text(max(prices)),
                "l": float_text(min(prices)), "c": float_text(prices[-1]), "v": volume, "t": rfc3339(start_ns),
                "n": len(trades), "vw": float_text(vwap)}  # fmt: skip


def _json(status: HTTPStatus, doc: dict) -> Response:
    body = dumps(doc)  # type: ignore[arg-type]
    return Response(status.value, status.phrase, Headers([("Content-Type", "application/json")]), body)


def float_text(d: Decimal) -> Decimal:
    """A price as Alpaca writes it: a JSON number (the encoder writes a Decimal as its exact digits)."""
    return d


_ENC = msgspec.json.Encoder(decimal_format="number")


def dumps(messages: list | dict) -> bytes:
    return _ENC.encode(messages)


class _Conn:
    def __init__(self, number: int, ws: ServerConnection, feed: str) -> None:
        self.number = number
        self.ws = ws
        self.feed = feed
        self.key: str | None = None
        self.subs: dict[str, set[str]] = {"trades": set(), "quotes": set(), "bars": set()}
        self.data_sent = 0
        self.stalled = False
        self.closed = False


class AlpacaSimulator(LocalVenue):
    """An Alpaca stream on ``host:port`` (port 0 picks a free one); :attr:`url` is the ``…/v2`` base.

    ``credentials`` maps key id → secret; ``feeds`` are the feeds those keys may use (others: 409)."""

    ws_path = "/v2"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: dict[str, str] | None = None,
        feeds: tuple[str, ...] = FEEDS,
        symbols: list[str] | None = None,
        rate: float = 200.0,
        seed: int = 1,
        faults: FaultPlan | None = None,
        bar_interval_s: float = 60.0,
        auth_timeout_s: float = 10.0,
        symbol_limit: int | None = None,
        max_trades: int | None = None,
        keep_trading: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(host=host, port=port, rate=rate, faults=faults or FaultPlan())
        self.credentials = dict(credentials or {})
        self.feeds = tuple(feeds)
        self.bar_interval_s = bar_interval_s
        self.auth_timeout_s = auth_timeout_s
        self.symbol_limit = symbol_limit
        self.max_trades = max_trades
        self.keep_trading = keep_trading  # symbols once subscribed trade on while no connection is subscribed
        self._ever: set[str] = set()
        self.clock = clock
        self._seed = seed
        self.markets: dict[str, _Market] = {}
        for s in symbols or []:
            self._market(s)
        self.sent_trades: list[SentTrade] = []  # every trade the market made
        self.delivered: list[SentTrade] = []  # trades sent on some connection subscribed to them
        names = ("connections", "authenticated", "auth_failed", "auth_timeouts", "connection_limited", "frames",
                 "trades", "quotes", "bars", "malformed", "disconnects", "stalls", "errors", "subscribes",
                 "rest_requests", "amendments")  # fmt: skip
        self.stats: dict[str, int] = dict.fromkeys(names, 0)
        self._conns: list[_Conn] = []
        self._malformed_kind = 0

    # ------------------------------------------------------------------------------------------ lifecycle
    def _serve_options(self) -> dict:
        return {**super()._serve_options(), "logger": _WS_LOG}

    def _loops(self) -> list:
        return [self._market_loop(), self._bar_loop()]

    def _market(self, symbol: str) -> _Market:
        m = self.markets.get(symbol)
        if m is None:
            rng = random.Random(f"{self._seed}:{symbol}")
            m = self.markets[symbol] = _Market(symbol, _START.get(symbol, Decimal(rng.randint(10, 500))), rng)
        return m

    # ------------------------------------------------------------------------------------------ connections
    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "v2" and parts[1] in FEEDS:
            return None
        if len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] == "trades":
            return self._rest_trades(request, parts[2], {k: v[-1] for k, v in parse_qs(query).items()})
        return Response(HTTPStatus.NOT_FOUND, "Not Found", Headers([("Content-Type", "text/plain")]), b"not found\n")

    def _rest_trades(self, request: Request, symbol: str, q: dict[str, str]) -> Response:
        """``GET /v2/stocks/{symbol}/trades?start&end&limit&feed&page_token``: every trade the market made."""
        self.stats["rest_requests"] += 1
        key = request.headers.get("APCA-API-KEY-ID", "")
        expected = self.credentials.get(key)
        secret = request.headers.get("APCA-API-SECRET-KEY", "")
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            return _json(HTTPStatus.UNAUTHORIZED, {"message": "unauthorized."})
        if q.get("feed", "iex") not in self.feeds:
            return _json(HTTPStatus.FORBIDDEN, {"message": "subscription does not permit querying recent SIP data"})
        try:
            resolve(symbol)
            start = parse_rfc3339_ns(q["start"]) if "start" in q else 0
            end = parse_rfc3339_ns(q["end"]) if "end" in q else 2**63 - 1
            limit = int(q.get("limit", "1000"))
            offset = int(q.get("page_token", "0"))
            if not 1 <= limit <= 10_000 or offset < 0:
                raise ValueError("limit or page_token out of range")
        except (SymbolError, ValueError, KeyError) as exc:
            return _json(HTTPStatus.UNPROCESSABLE_ENTITY, {"message": f"invalid request: {exc}"})
        rows = [t for t in self.sent_trades if t.symbol == symbol and start <= t.ts_ns <= end]
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        trades = [{"t": rfc3339(t.ts_ns), "x": t.trade_id.split("-")[0], "p": t.price, "s": t.size, "c": ["@"],
                   "i": int(t.trade_id.split("-")[1]), "z": "C"} for t in page]  # fmt: skip
        return _json(HTTPStatus.OK, {"trades": trades or None, "symbol": symbol,
                                     "next_page_token": str(offset + limit) if more else None})  # fmt: skip

    async def _handle(self, ws: ServerConnection) -> None:
        feed = ws.request.path.split("?")[0].strip("/").split("/")[1] if ws.request else "iex"
        self.stats["connections"] += 1
        conn = _Conn(self.stats["connections"], ws, feed)
        self._conns.append(conn)
        try:
            await self._send(conn, [{"T": "success", "msg": "connected"}])
            headers = ws.request.headers if ws.request else Headers()
            if "APCA-API-KEY-ID" in headers and not await self._auth(
                conn, headers["APCA-API-KEY-ID"], headers.get("APCA-API-SECRET-KEY", "")
            ):
                return
            deadline = time.monotonic() + self.auth_timeout_s
            while True:
                timeout = deadline - time.monotonic() if conn.key is None else None
                if timeout is not None and timeout <= 0:
                    self.stats["auth_timeouts"] += 1
                    await self._error(conn, 404, "auth timeout")
                    return
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout) if timeout is not None else await ws.recv()
                except TimeoutError:
                    continue
                if not await self._on_message(conn, raw):
                    return
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            self._conns.remove(conn)
            with contextlib.suppress(Exception):
                await ws.close()

    async def _on_message(self, conn: _Conn, raw: str | bytes) -> bool:
        """Handle one client message; False ends the connection."""
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
                raise ValueError("no action")
        except (ValueError, UnicodeDecodeError):
            await self._error(conn, 400, "invalid syntax")
            return True
        action = msg["action"]
        if action == "auth":
            if conn.key is not None:
                await self._error(conn, 403, "already authenticated")
                return True
            return await self._auth(conn, str(msg.get("key", "")), str(msg.get("secret", "")))
        if conn.key is None:
            await self._error(conn, 401, "not authenticated")
            return True
        if action not in ("subscribe", "unsubscribe"):
            await self._error(conn, 400, "invalid syntax")
            return True
        lists: dict[str, list[str]] = {}
        for ch in ("trades", "quotes", "bars"):
            names = msg.get(ch, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                await self._error(conn, 400, "invalid syntax")
                return True
            for n in names:
                try:
                    resolve(n)
                except SymbolError:
                    await self._error(conn, 400, "invalid syntax")
                    return True
            lists[ch] = names
        self.stats["subscribes"] += 1
        if action == "subscribe":
            after = {ch: conn.subs[ch] | set(lists[ch]) for ch in conn.subs}
            if self.symbol_limit is not None and len(after["trades"] | after["quotes"]) > self.symbol_limit:
                await self._error(conn, 405, "symbol limit exceeded")
                return True
            for ch, names in lists.items():
                conn.subs[ch].update(names)
                for n in names:
                    self._market(n)
        else:
            for ch, names in lists.items():
                conn.subs[ch].difference_update(names)
        s = {ch: sorted(v) for ch, v in conn.subs.items()}
        await self._send(conn, [{"T": "subscription", **s, "updatedBars": [], "dailyBars": [], "statuses": [],
                                 "lulds": [], "corrections": s["trades"], "cancelErrors": s["trades"]}])  # fmt: skip
        return True

    async def _auth(self, conn: _Conn, key: str, secret: str) -> bool:
        expected = self.credentials.get(key)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            self.stats["auth_failed"] += 1
            await self._error(conn, 402, "auth failed")
            return False
        if conn.feed not in self.feeds:
            await self._error(conn, 409, "insufficient subscription")
            return False
        if any(c.key == key and not c.closed for c in self._conns if c is not conn):
            self.stats["connection_limited"] += 1
            await self._error(conn, 406, "connection limit exceeded")
            return False
        conn.key = key
        self.stats["authenticated"] += 1
        await self._send(conn, [{"T": "success", "msg": "authenticated"}])
        return True

    async def _error(self, conn: _Conn, code: int, msg: str) -> None:
        self.stats["errors"] += 1
        await self._send(conn, [{"T": "error", "code": code, "msg": msg}])

    @staticmethod
    async def _send(conn: _Conn, messages: list[dict]) -> None:
        await conn.ws.send(dumps(messages).decode())

    # ------------------------------------------------------------------------------------------ data
    def _wanted(self) -> list[str]:
        now = {s for c in self._conns if c.key for ch in ("trades", "quotes") for s in c.subs[ch]}
        self._ever |= now
        return sorted(self._ever if self.keep_trading else now)

    async def _market_loop(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while True:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_at = time.monotonic()  # far behind (a loaded machine): do not burst
            symbols = self._wanted()
            if not symbols:
                continue
            self._rr = (self._rr + 1) % len(symbols)
            m = self._market(symbols[self._rr])
            if self.max_trades is not None and m.next_id > self.max_trades:
                continue
            feed_x = _EXCHANGES["sip"]
            trade, quote, sent = m.step(feed_x, self.clock())
            self.sent_trades.append(sent)
            self.stats["trades"] += 1
            self.stats["quotes"] += 1
            for conn in list(self._conns):
                msgs = [x for ch, x in (("trades", trade), ("quotes", quote)) if m.symbol in conn.subs[ch]]
                if conn.key and msgs and await self._data(conn, msgs) and m.symbol in conn.subs["trades"]:
                    self.delivered.append(sent)
                    await self._amend(conn, trade)

    async def _bar_loop(self) -> None:
        while True:
            start = self.clock()
            await asyncio.sleep(self.bar_interval_s)
            for m in list(self.markets.values()):
                bar = m.close_bar(start)
                if bar is None:
                    continue
                self.stats["bars"] += 1
                for conn in list(self._conns):
                    if conn.key and m.symbol in conn.subs["bars"]:
                        await self._data(conn, [bar])

    async def _amend(self, conn: _Conn, trade: dict) -> None:
        """The ``amend_every`` fault: Alpaca's correction (``c``) or cancel (``x``) of a trade just sent."""
        n = self.faults.amend_every
        if not n or trade["i"] % n:
            return
        self.stats["amendments"] += 1
        if (trade["i"] // n) % 2:
            msg = {"T": "c", "S": trade["S"], "x": trade["x"], "oi": trade["i"], "op": trade["p"], "os": trade["s"],
                   "oc": ["@"], "ci": trade["i"] + 1_000_000, "cp": trade["p"] + _CENT, "cs": trade["s"], "cc": ["@"],
                   "z": "C", "t": trade["t"]}  # fmt: skip
        else:
            msg = {"T": "x", "S": trade["S"], "i": trade["i"], "x": trade["x"], "p": trade["p"], "s": trade["s"],
                   "a": "C", "z": "C", "t": trade["t"]}  # fmt: skip
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(dumps([msg]).decode())

    async def _data(self, conn: _Conn, msgs: list[dict]) -> bool:
        """Send ``msgs`` as one array to ``conn`` (with the connection's faults); True when they went out."""
        if conn.closed or conn.stalled:
            return False
        f = self.faults
        conn.data_sent += 1
        try:
            if f.malformed_every and conn.data_sent % f.malformed_every == 0:
                self.stats["malformed"] += 1
                self._malformed_kind ^= 1
                if self._malformed_kind:  # a frame cut off (not JSON), then the real one
                    await conn.ws.send('[{"T":"t","S":"AAPL","p":1.0,')
                    await conn.ws.send(dumps(msgs).decode())
                else:  # one bad element (a quote without its ask) among the good ones
                    await conn.ws.send(dumps([{"T": "q", "S": "AAPL", "bx": "V", "bp": 1, "bs": 1}, *msgs]).decode())
            else:
                await conn.ws.send(dumps(msgs).decode())
            self.stats["frames"] += 1
        except ConnectionClosed:
            return False
        if f.stall_after and conn.data_sent >= f.stall_after and not conn.stalled:
            conn.stalled = True
            self.stats["stalls"] += 1
        if f.disconnect_after and conn.data_sent >= f.disconnect_after:
            self.stats["disconnects"] += 1
            conn.closed = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1011, reason="simulated disconnect")
        return True


async def run(host: str, port: int, *, on_ready: Callable[[AlpacaSimulator], None] | None = None,
              **kwargs) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    await serve_until_cancelled(AlpacaSimulator(host=host, port=port, **kwargs), on_ready)
