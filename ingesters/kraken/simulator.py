"""A local Kraken venue speaking WebSocket v2, for tests, demos and load runs.

Protocol: ``subscribe``/``unsubscribe`` for ``trade``, ``ticker``, ``book`` (depth 10/25/100/500/1000) and
``instrument``, one ack per symbol with Kraken's shape (``time_in``/``time_out``, ``req_id`` echoed), Kraken's
error for an unknown pair (``Currency pair not supported X/Y``, ``success: false``, ``symbol``), ``ping`` →
``pong``, a ``status`` message on connect, and a ``heartbeat`` after about a second without other traffic once
something is subscribed. Subscribing again to a subscribed book replaces it and sends a fresh snapshot (how a
client resynchronises after a checksum failure).

Data come from :mod:`ingesters.kraken.simulator_feed`: ``rate`` market steps per second, round-robin over the
pairs someone subscribed to; about 30 % of steps are trades (each followed by a ticker update), the rest change
the book. Book updates carry checksums computed with :func:`ingesters.kraken.book.checksum` over the
simulator's own book, and tell each client exactly what changed within its subscribed depth.

REST: ``GET /0/public/Trades`` on the same port answers from :attr:`KrakenSimulator.tape`, every trade the venue
made (:mod:`ingesters.kraken.simulator_rest`). With ``keep_trading`` a pair once subscribed keeps trading while no
client is connected, as a real venue does: what a disconnected client missed is then only in the REST history.

Faults (:class:`FaultPlan`) are injected per connection and counted in :attr:`KrakenSimulator.stats` only when
they actually happen, so a test can compare a client's counters with what was injected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ingesters.base.local_venue import LocalVenue, serve_until_cancelled
from ingesters.kraken.protocol import BOOK_DEPTHS, format_rfc3339_ns
from ingesters.kraken.schemas import Request, encoder, request_decoder
from ingesters.kraken.simulator_feed import (
    MALFORMED_FRAMES,
    TRADE_SHARE,
    FaultPlan,
    SentTrade,
    SymbolMarket,
    diff_view,
    instrument_data,
    with_precisions,
)
from ingesters.kraken.simulator_rest import TradeTape
from pulse.log import get_logger

log = get_logger(__name__)

__all__ = ["DEFAULT_SYMBOLS", "FaultPlan", "KrakenSimulator", "SentTrade", "main", "run"]

DEFAULT_SYMBOLS: dict[str, tuple[int, int]] = {"BTC/USD": (1, 8), "ETH/USD": (2, 8)}
_HEARTBEAT = encoder.encode({"channel": "heartbeat"}).decode()
_TRADE_SNAPSHOT = 50  # Kraken's trade snapshot holds the most recent 50 trades


class _Conn:
    def __init__(self, number: int, ws: ServerConnection) -> None:
        self.number = number
        self.ws = ws
        self.lock = asyncio.Lock()  # one writer at a time; subscribe + ack + snapshot happen under it
        self.trade: set[str] = set()
        self.ticker: set[str] = set()
        self.book: dict[str, int] = {}  # symbol → subscribed depth
        self.views: dict[str, tuple[dict[int, int], dict[int, int]]] = {}  # what the client's book holds
        self.corrupted: set[str] = set()  # books sent a wrong checksum and not re-snapshotted since
        self.instrument = False
        self.data_sent = 0
        self.book_updates = 0
        self.stalled = False
        self.closed = False
        self.last_send = time.monotonic()

    @property
    def live(self) -> bool:
        return not (self.closed or self.stalled)

    def subscribed(self) -> bool:
        return bool(self.trade or self.ticker or self.book or self.instrument)


class KrakenSimulator(LocalVenue):
    """A Kraken v2 WebSocket venue on ``host:port`` (port 0 picks a free one; see :attr:`url`).

    ``symbols`` maps pair → (price_precision, qty_precision); a plain list of pairs gets Kraken's usual
    precisions (:func:`~ingesters.kraken.simulator_feed.with_precisions`). ``max_trades`` stops trades (and
    tickers) after N per pair; book updates and heartbeats go on. :attr:`sent_trades` lists every trade sent
    in a trade message. With ``always_on`` the market moves whether anyone listens or not, as a real venue's does
    (by default it pauses while no client is subscribed; ``keep_trading`` keeps only the pairs someone ever
    subscribed to moving): :attr:`made` lists every trade the venue made, sent or not (with either), and the trade
    snapshot a subscriber gets holds the last 50 of them. :attr:`tape` keeps them in the REST ``Trades`` form.
    """

    disconnect_code = 1012

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        symbols: dict[str, tuple[int, int]] | list[str] | None = None,
        rate: float = 1000.0,
        seed: int = 1,
        faults: FaultPlan | None = None,
        max_trades: int | None = None,
        depth_levels: int = 25,
        keep_trading: bool = False,
        always_on: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, rate=rate, faults=faults or FaultPlan())
        self.max_trades = max_trades
        self.always_on = always_on
        precisions = with_precisions(symbols or DEFAULT_SYMBOLS)
        self._markets = {
            sym: SymbolMarket(sym, pp, qp, seed=seed, levels=depth_levels) for sym, (pp, qp) in precisions.items()
        }
        self.keep_trading = keep_trading
        self._ever: set[str] = set()  # pairs someone subscribed to (they keep trading with keep_trading)
        self.tape = TradeTape(precisions)
        self._instrument = _frame_obj("instrument", "snapshot", instrument_data(self._markets))
        self.sent_trades: list[SentTrade] = []
        self.made: list[SentTrade] = []  # every trade made (with always_on also those nobody received)
        self._recent: dict[str, deque[dict]] = {sym: deque(maxlen=_TRADE_SNAPSHOT) for sym in self._markets}
        counters = ("connections", "data_messages", "trades", "tickers", "book_snapshots", "book_updates",
                    "instrument_snapshots", "heartbeats", "pongs", "malformed", "bad_checksums", "disconnects",
                    "stalls")  # fmt: skip
        self.stats: dict = {**dict.fromkeys(counters, 0), "trades_per_symbol": dict.fromkeys(self._markets, 0)}
        self._conns: list[_Conn] = []

    # ------------------------------------------------------------------------------------------ lifecycle

    def _serve_options(self) -> dict:
        return {"process_request": lambda _conn, req: self.tape.http(req)}  # REST: GET {rest_url}/0/public/Trades

    def _loops(self) -> list:
        return [self._run_market()]

    def trades(self, symbol: str | None = None) -> list[SentTrade]:
        return [t for t in self.sent_trades if symbol is None or t.symbol == symbol]

    # ------------------------------------------------------------------------------------------- sending

    # Frames go out with the caller holding ``conn.lock``; a stalled connection sends nothing.
    def _can_send(self, conn: _Conn) -> bool:
        return conn.live

    def _sent(self, conn: _Conn) -> None:
        conn.last_send = time.monotonic()

    async def _send_data(self, conn: _Conn, text: str) -> bool:
        """Send a data message, then inject whatever faults are due after it."""
        if not await self._send_raw(conn, text):
            return False
        await self._after_data(conn, self.faults.malformed_frames or MALFORMED_FRAMES)
        return True

    async def _venue_faults(self, conn: _Conn, n: int) -> bool:
        """A stall (a stalled connection is not also disconnected by the same message)."""
        f = self.faults
        if f.stall_after == n and conn.number in f.stall_connections:
            conn.stalled = True
            self.stats["stalls"] += 1
            return False
        return True

    def _reply(self, body: dict, time_in: str, req_id: int | None) -> str:
        body["time_in"], body["time_out"] = time_in, _now()
        if req_id is not None:
            body["req_id"] = req_id
        return encoder.encode(body).decode()

    # ------------------------------------------------------------------------------------------ requests

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats["connections"] += 1
        conn = _Conn(self.stats["connections"], ws)
        self._conns.append(conn)
        beat = asyncio.create_task(self._heartbeats(conn))
        status = {"version": "2.0.10-sim", "system": "online", "api_version": "v2", "connection_id": conn.number}
        try:
            async with conn.lock:
                await self._send_raw(conn, _frame("status", "update", status))
            async for raw in ws:
                if not conn.stalled:
                    await self._on_request(conn, raw, _now())
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            self._conns.remove(conn)
            beat.cancel()

    async def _on_request(self, conn: _Conn, raw: str | bytes, time_in: str) -> None:
        try:
            req = request_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError) as exc:
            await self._locked(
                conn, self._reply({"error": f"EGeneral:Invalid arguments: {exc}", "success": False}, time_in, None)
            )
            return
        if req.method == "ping":
            if await self._locked(conn, self._reply({"method": "pong"}, time_in, req.req_id)):
                self.stats["pongs"] += 1
        elif req.method in ("subscribe", "unsubscribe") and req.params is not None:
            await self._on_subscription(conn, req, time_in)
        else:
            error = {"error": "EGeneral:Invalid arguments", "method": req.method, "success": False}
            await self._locked(conn, self._reply(error, time_in, req.req_id))

    async def _locked(self, conn: _Conn, text: str) -> bool:
        async with conn.lock:
            return await self._send_raw(conn, text)

    async def _on_subscription(self, conn: _Conn, req: Request, time_in: str) -> None:
        params, method = req.params, req.method
        assert params is not None
        channel, subscribe = params.channel, method == "subscribe"
        fail = {"method": method, "success": False}
        if channel == "instrument":
            async with conn.lock:
                was, conn.instrument = conn.instrument, subscribe
                if not subscribe and not was:
                    await self._send_raw(
                        conn, self._reply({**fail, "error": "Subscription Not Found"}, time_in, req.req_id)
                    )
                    return
                result = {"channel": "instrument", **({"snapshot": params.snapshot is not False} if subscribe else {})}
                await self._send_raw(
                    conn, self._reply({"method": method, "result": result, "success": True}, time_in, req.req_id)
                )
                if subscribe and params.snapshot is not False and await self._send_data(conn, self._instrument):
                    self.stats["instrument_snapshots"] += 1
            return
        depth = params.depth if params.depth is not None else 10
        problem = None
        if channel not in ("trade", "ticker", "book"):
            problem = f"EGeneral:Invalid arguments:channel {channel}"
        elif channel == "book" and depth not in BOOK_DEPTHS:
            problem = "EGeneral:Invalid arguments:depth"
        elif not params.symbol:
            problem = "EGeneral:Invalid arguments:symbol"
        if problem:
            await self._locked(conn, self._reply({**fail, "error": problem}, time_in, req.req_id))
            return
        for sym in params.symbol or ():
            async with conn.lock:
                if sym not in self._markets:
                    error = {**fail, "error": f"Currency pair not supported {sym}", "symbol": sym}
                    await self._send_raw(conn, self._reply(error, time_in, req.req_id))
                elif subscribe:
                    await self._subscribe(conn, channel, sym, depth, params.snapshot is not False, time_in, req.req_id)
                else:
                    await self._unsubscribe(conn, channel, sym, time_in, req.req_id)

    async def _subscribe(
        self, conn: _Conn, channel: str, sym: str, depth: int, snapshot: bool, time_in: str, req_id: int | None
    ) -> None:
        market = self._markets[sym]
        self._ever.add(sym)
        result: dict = {"channel": channel, "snapshot": snapshot, "symbol": sym}
        if channel == "book":
            result["depth"] = depth
            conn.book[sym] = depth
            conn.views[sym] = market.view(depth)
        elif channel == "ticker":
            result["event_trigger"] = "trades"
            conn.ticker.add(sym)
        else:
            conn.trade.add(sym)
        await self._send_raw(
            conn, self._reply({"method": "subscribe", "result": result, "success": True}, time_in, req_id)
        )
        if not snapshot:
            return
        if channel == "book":
            bids, asks = conn.views[sym]
            data = {
                "symbol": sym,
                "bids": market.wire_levels(bids.items()),
                "asks": market.wire_levels(asks.items()),
                "checksum": market.checksum(),
                "timestamp": _now(),
            }
            if await self._send_data(conn, _frame("book", "snapshot", data)):
                self.stats["book_snapshots"] += 1
                conn.corrupted.discard(sym)
        elif channel == "ticker":
            await self._send_data(conn, _frame("ticker", "snapshot", {**market.ticker(), "timestamp": _now()}))
        elif self._recent[sym]:
            await self._send_data(conn, _frame("trade", "snapshot", *self._recent[sym]))

    async def _unsubscribe(self, conn: _Conn, channel: str, sym: str, time_in: str, req_id: int | None) -> None:
        subs = conn.book if channel == "book" else conn.ticker if channel == "ticker" else conn.trade
        if sym not in subs:
            error = {"method": "unsubscribe", "success": False, "error": "Subscription Not Found", "symbol": sym}
            await self._send_raw(conn, self._reply(error, time_in, req_id))
            return
        result: dict = {"channel": channel, "symbol": sym}
        if channel == "book":
            result["depth"] = conn.book.pop(sym)
            conn.views.pop(sym, None)
        else:
            subs.discard(sym)  # type: ignore[union-attr]
        await self._send_raw(
            conn, self._reply({"method": "unsubscribe", "result": result, "success": True}, time_in, req_id)
        )

    async def _heartbeats(self, conn: _Conn) -> None:
        while not conn.closed:
            await asyncio.sleep(0.25)
            if conn.live and conn.subscribed() and time.monotonic() - conn.last_send >= 1.0:
                async with conn.lock:
                    if await self._send_raw(conn, _HEARTBEAT):
                        self.stats["heartbeats"] += 1

    # -------------------------------------------------------------------------------------------- market

    async def _run_market(self) -> None:
        try:
            await self._market_loop()
        except Exception:
            log.exception("kraken simulator market loop failed")
            raise

    def _active(self) -> list[str]:
        return [
            s
            for s in self._markets
            if self.always_on
            or (self.keep_trading and s in self._ever)
            or any(s in c.trade or s in c.ticker or s in c.book for c in self._conns)
        ]

    async def _step(self, sym: str) -> None:
        market = self._markets[sym]
        wants_trade = market.rng.random() < TRADE_SHARE
        traders = [c for c in self._conns if c.live and sym in c.trade]
        tickers = [c for c in self._conns if c.live and sym in c.ticker]
        quota_left = self.max_trades is None or market.trades_generated < self.max_trades
        if wants_trade and quota_left and (traders or tickers or self.keep_trading or self.always_on):
            await self._trade(market, traders, tickers)
        else:
            market.step_book()
            await self._book_update(market)

    async def _trade(self, market: SymbolMarket, traders: list[_Conn], tickers: list[_Conn]) -> None:
        stamp = _now()
        data = market.make_trade(stamp)
        self.tape.add(data)
        frame, sent = _frame("trade", "update", data), False
        for conn in traders:
            async with conn.lock:
                sent = await self._send_data(conn, frame) or sent
        if sent or self.always_on or self.keep_trading:  # a venue that trades on replays what it made
            made = SentTrade(**data)
            self.made.append(made)
            self._recent[market.symbol].append(data)
            if sent:
                self.sent_trades.append(made)
                self.stats["trades"] += 1
                self.stats["trades_per_symbol"][market.symbol] += 1
        ticker = _frame("ticker", "update", {**market.ticker(), "timestamp": stamp})
        for conn in tickers:
            async with conn.lock:
                if await self._send_data(conn, ticker):
                    self.stats["tickers"] += 1

    async def _book_update(self, market: SymbolMarket) -> None:
        sym, views, checksum = market.symbol, {}, None
        for conn in [c for c in self._conns if c.live and sym in c.book]:
            async with conn.lock:
                depth = conn.book.get(sym)
                if depth is None or not conn.live:
                    continue
                if depth not in views:
                    views[depth] = market.view(depth)
                bids, asks = diff_view(conn.views[sym], views[depth])
                if not bids and not asks:
                    continue  # nothing changed within this client's depth
                conn.views[sym] = views[depth]
                if checksum is None:
                    checksum = market.checksum()
                conn.book_updates += 1
                f = self.faults
                # A client ignores updates between a failed checksum and its fresh snapshot, so inject the
                # next wrong checksum for this book only after that snapshot: every injected one is observable.
                corrupt = bool(
                    f.bad_checksum_every
                    and conn.book_updates % f.bad_checksum_every == 0
                    and sym not in conn.corrupted
                    and _under(self.stats["bad_checksums"], f.max_bad_checksums)
                )
                data = {
                    "symbol": sym,
                    "bids": market.wire_levels(bids),
                    "asks": market.wire_levels(asks),
                    "checksum": checksum ^ 0x5A5A5A5A if corrupt else checksum,
                    "timestamp": _now(),
                }
                if await self._send_data(conn, _frame("book", "update", data)):
                    self.stats["book_updates"] += 1
                    if corrupt:
                        self.stats["bad_checksums"] += 1
                        conn.corrupted.add(sym)


def _under(count: int, cap: int | None) -> bool:
    return cap is None or count < cap


def _now() -> str:
    return format_rfc3339_ns(time.time_ns())


def _frame(channel: str, kind: str, *data: dict) -> str:
    return _frame_obj(channel, kind, list(data))


def _frame_obj(channel: str, kind: str, data: object) -> str:
    return encoder.encode({"channel": channel, "type": kind, "data": data}).decode()


# -------------------------------------------------------------------------------------------------- entry


async def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    rate: float = 1000.0,
    seed: int = 1,
    symbols: dict[str, tuple[int, int]] | list[str] | None = None,
    *,
    faults: FaultPlan | None = None,
    max_trades: int | None = None,
    depth_levels: int = 25,
    on_ready: Callable[[KrakenSimulator], None] | None = None,
    keep_trading: bool = False,
) -> None:
    """Serve until cancelled (what ``pulse simulate kraken`` runs); ``on_ready`` gets the started simulator."""
    sim = KrakenSimulator(
        host=host,
        port=port,
        symbols=symbols,
        rate=rate,
        seed=seed,
        faults=faults,
        max_trades=max_trades,
        depth_levels=depth_levels,
        keep_trading=keep_trading,
    )
    await serve_until_cancelled(sim, on_ready)


def parse_symbols(text: str) -> dict[str, tuple[int, int]]:
    """``"BTC/USD:1:8,ETH/USD:2:8"`` → ``{"BTC/USD": (1, 8), "ETH/USD": (2, 8)}``."""
    out: dict[str, tuple[int, int]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        sym, pp, qp = item.rsplit(":", 2)
        out[sym] = (int(pp), int(qp))
    return out


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kraken-simulator", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--rate", type=float, default=1000.0, help="market steps per second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--symbols", type=parse_symbols, default=DEFAULT_SYMBOLS, help="PAIR:PRICE_DP:QTY_DP,...")
    ap.add_argument("--max-trades", type=int, default=None)
    ap.add_argument("--depth-levels", type=int, default=25)
    args = ap.parse_args(argv)

    def ready(sim: KrakenSimulator) -> None:
        print(f"kraken simulator listening on {sim.url}", flush=True)

    with contextlib.suppress(asyncio.CancelledError):
        await run(
            args.host,
            args.port,
            args.rate,
            args.seed,
            args.symbols,
            max_trades=args.max_trades,
            depth_levels=args.depth_levels,
            on_ready=ready,
        )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(asyncio.run(main()))
