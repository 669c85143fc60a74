"""Child processes of the console bench (:mod:`bench.web`): ``python -m bench.web_proc ROLE`` with JSON on stdin.

``publish``  — publishes trades and quotes of the bench instruments to their live topics at a fixed rate
               (``ts_recv`` = send time), in 10 ms ticks, until SIGTERM; prints READY once publishing.
``baseline`` — the bare broadcast: an aiohttp server with the same ``/ws`` subscribe message that generates
               the same events at the same rate itself and sends each to its subscribers (``await
               ws.send_str`` per client), with no broker, no conflation and no bounds; READY once listening.
``hubcast``  — the gateway's fan-out (``web.hub`` in direct or tasks mode) fed by the same generator, no broker.
``clients``  — N WebSocket clients (aiohttp), client i on instrument i mod 10 (trade + quote); after a warm-up,
               counts the events received in the window and each one's latency (receive time - ``ts_recv``),
               and samples the server's CPU time over the same window (its pid in the config). RESULT at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from decimal import Decimal
from typing import Any

from bench.harness import READY_PREFIX, cpu_seconds, emit_result, latency_summary
from pulse.models import Quote, Trade

_enc_cache: dict[str, Any] = {}


def events(instruments: list[str], rate: int, tick_s: float = 0.01) -> Any:
    """Generator of lists: the events of one tick (rate * tick_s of them), alternating trade / quote, round-robin
    over ``instruments``, prices walking."""
    per_tick = max(1, round(rate * tick_s))
    i = 0
    while True:
        batch = []
        for _ in range(per_tick):
            sym = instruments[(i // 2) % len(instruments)]
            now = time.time_ns()
            px = Decimal(1000 + (i % 997)) / 10
            if i % 2 == 0:
                batch.append(Trade(venue="kraken", symbol=sym, ts_event=now, ts_recv=now, seq=i, price=px,
                                   size=Decimal("0.015"), side="buy", trade_id=f"b{i}"))  # fmt: skip
            else:
                ask = px + Decimal("0.1")
                batch.append(Quote(venue="kraken", symbol=sym, ts_event=now, ts_recv=now, seq=i, bid=px,
                                   bid_size=Decimal("1.5"), ask=ask, ask_size=Decimal("2")))  # fmt: skip
            i += 1
        yield batch


def _paced(cfg: dict[str, Any], send: Any, stop: Any) -> None:
    """Call ``send(events)`` once per 10 ms tick at the configured rate (sleeping to the next tick)."""
    gen = events(cfg["instruments"], cfg["rate"])
    next_t = time.monotonic()
    while not stop():
        send(next(gen))
        next_t += 0.01
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1:  # hopelessly behind: do not burst to catch up
            next_t = time.monotonic()


def publish(cfg: dict[str, Any]) -> None:
    from pulse.bus import Bus, EventPublisher
    from pulse.settings import load_settings

    settings = load_settings(environ={}).with_overrides(runtime={"home": cfg["home"]})
    pub = EventPublisher(Bus(settings, cfg["pulsar_url"]), "crypto", producer_prefix="bench-web", owns_bus=True)
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    print(READY_PREFIX + json.dumps({"rate": cfg["rate"]}), flush=True)

    def send(batch: list[Any]) -> None:
        for e in batch:
            pub.publish(e)

    _paced(cfg, send, lambda: stopping)
    pub.close()


def baseline(cfg: dict[str, Any]) -> None:
    import threading

    import msgspec
    from aiohttp import web

    enc = msgspec.json.Encoder(decimal_format="string")
    subs: dict[str, set[web.WebSocketResponse]] = {s: set() for s in cfg["instruments"]}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        mine: list[str] = []
        try:
            async for msg in ws:
                doc = json.loads(msg.data)
                if doc.get("op") == "subscribe" and doc.get("symbol") in subs:
                    subs[doc["symbol"]].add(ws)
                    mine.append(doc["symbol"])
                    await ws.send_str(json.dumps({"type": "ack", "op": "subscribe"}))
        finally:
            for s in mine:
                subs[s].discard(ws)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/ws", ws_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", cfg["port"]).start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=100)
        stop = threading.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # generated on a thread, paced exactly like the publisher, handed to the loop like the gateway's reader
        gen = threading.Thread(
            target=_paced, args=(cfg, lambda b: loop.call_soon_threadsafe(queue.put_nowait, b), stop.is_set),
            daemon=True,
        )  # fmt: skip
        gen.start()
        print(READY_PREFIX + json.dumps({"port": cfg["port"]}), flush=True)
        while not stop.is_set():
            try:
                batch = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            for e in batch:
                frame = enc.encode(e).decode()
                for ws in list(subs[e.symbol]):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_str(frame)
        await runner.cleanup()

    asyncio.run(main())


def hubcast(cfg: dict[str, Any]) -> None:
    """The gateway's fan-out alone (``web.hub.Hub`` in ``cfg["mode"]``: direct or tasks, with its writer from
    :mod:`web.ws`) fed by the same paced generator as the bare broadcast, no broker: what the fan-out design
    costs, against the bare broadcast on equal input."""
    import threading
    from types import SimpleNamespace

    import msgspec
    from aiohttp import web

    from web.hub import Hub
    from web.ws import _write

    enc = msgspec.json.Encoder(decimal_format="string")
    hub = Hub(max_pending=2000, direct=cfg["mode"] == "direct")
    syms = set(cfg["instruments"])

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        box = hub.outbox()
        writer = None
        if hub.direct:
            box.transport = request.transport
        else:
            writer = asyncio.create_task(_write(ws, box, SimpleNamespace(hub=hub)))
        loop = asyncio.get_running_loop()
        box.on_give_up = lambda reason: loop.create_task(ws.close(code=4008, message=reason.encode()))
        try:
            async for msg in ws:
                doc = json.loads(msg.data)
                if doc.get("op") == "subscribe" and doc.get("symbol") in syms:
                    snapshot = hub.subscribe(box, [f"{doc['symbol']}.trade", f"{doc['symbol']}.quote"])
                    box.put(json.dumps({"type": "ack", "op": "subscribe"}))
                    for frame in snapshot:
                        box.put_frame(frame)
        finally:
            hub.drop(box)
            box.transport = None
            if writer is not None:
                writer.cancel()
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/ws", ws_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", cfg["port"]).start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=100)
        stop = threading.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        gen = threading.Thread(
            target=_paced, args=(cfg, lambda b: loop.call_soon_threadsafe(queue.put_nowait, b), stop.is_set),
            daemon=True,
        )  # fmt: skip
        gen.start()
        print(READY_PREFIX + json.dumps({"port": cfg["port"]}), flush=True)
        while not stop.is_set():
            try:
                batch = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            for e in batch:
                quote = type(e) is Quote
                topic = f"{e.symbol}.{'quote' if quote else 'trade'}"
                hub.dispatch(topic, hub.encode(enc.encode(e).decode()), conflate=quote, remember=True)
        await runner.cleanup()

    asyncio.run(main())


def clients(cfg: dict[str, Any]) -> None:
    import aiohttp

    n, instruments = cfg["clients"], cfg["instruments"]
    warmup, window = cfg["warmup_s"], cfg["window_s"]
    lat: list[int] = []
    counts = {"received": 0, "closed": 0, "close_codes": {}}
    measuring = False

    async def one(session: aiohttp.ClientSession, i: int, connected: asyncio.Event, ready: list[int]) -> None:
        sym = instruments[i % len(instruments)]
        async with session.ws_connect(cfg["url"], max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "venue": "kraken", "symbol": sym,
                                          "channels": ["trade", "quote"]}))  # fmt: skip
            ready.append(i)
            if len(ready) == n:
                connected.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                if measuring:
                    data = msg.data
                    k = data.find('"ts_recv":')
                    if k >= 0:
                        now = time.time_ns()
                        end = data.find(",", k)
                        lat.append(now - int(data[k + 10 : end if end > 0 else None].strip("} ")))
                        counts["received"] += 1
            code = str(ws.close_code)
            counts["closed"] += 1
            counts["close_codes"][code] = counts["close_codes"].get(code, 0) + 1  # type: ignore[index]

    async def main() -> dict[str, Any]:
        nonlocal measuring
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            connected, ready = asyncio.Event(), []
            tasks = [asyncio.create_task(one(session, i, connected, ready)) for i in range(n)]
            await asyncio.wait_for(connected.wait(), 120)
            await asyncio.sleep(warmup)
            cpu0, t0, own0 = cpu_seconds(cfg["server_pid"]), time.monotonic(), time.process_time()
            measuring = True
            await asyncio.sleep(window)
            measuring = False
            wall = time.monotonic() - t0
            cpu = cpu_seconds(cfg["server_pid"]) - cpu0
            own = time.process_time() - own0
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"clients": n, "received": counts["received"], "wall_s": wall, "rate": counts["received"] / wall,
                "server_cores": cpu / wall, "client_cores": own / wall,
                "closed_during": counts["closed"], "close_codes": counts["close_codes"],
                "latency": latency_summary(lat)}  # fmt: skip

    emit_result(asyncio.run(main()))


if __name__ == "__main__":
    # long-running roles: ROLE JSON on the command line (bench.harness.Child); clients: JSON on stdin (run_child)
    role, config = (sys.argv[1], json.loads(sys.argv[2])) if len(sys.argv) > 2 else ("clients", json.load(sys.stdin))
    {"publish": publish, "baseline": baseline, "hubcast": hubcast, "clients": clients}[role](config)
