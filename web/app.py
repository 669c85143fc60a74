"""The aiohttp application of ``pulse web``: API, WebSocket, page; and the runner."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from pulse.runtime import Endpoints
from pulse.settings import Settings
from web.api import CONSOLE, add_routes, api_errors
from web.console import Console
from web.openapi import SPEC
from web.security import AccessLogger, Policy, is_loopback, json_error, middlewares
from web.writes import add_routes as add_write_routes
from web.ws import SOCKETS, close_all, ws_handler

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
#: lightweight-charts, installed by `make setup` (npm ci in web/); served from node_modules, never committed
CHARTS_JS = HERE / "node_modules" / "lightweight-charts" / "dist" / "lightweight-charts.standalone.production.js"


async def _index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _charts(_request: web.Request) -> web.StreamResponse:
    if not CHARTS_JS.exists():
        return json_error(
            404, "lightweight-charts is not installed: run `make setup` (npm ci in web/) with Node present"
        )
    return web.FileResponse(CHARTS_JS)


async def _openapi(_request: web.Request) -> web.Response:
    return web.json_response(SPEC)


async def _not_found(request: web.Request) -> web.Response:
    return json_error(404, f"no such endpoint: {request.method} {request.path}")


def build_app(settings: Settings, endpoints: Endpoints, host: str) -> web.Application:
    policy = Policy(settings.web_token(), loopback=is_loopback(host), allowed_origins=settings.web.allowed_origins)
    app = web.Application(middlewares=[*middlewares(policy), api_errors], client_max_size=64 * 1024)
    console = Console(settings, endpoints)
    app[CONSOLE] = console
    app[SOCKETS] = set()
    add_routes(app)
    add_write_routes(app)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/api/openapi.json", _openapi)
    app.router.add_get("/", _index)
    app.router.add_get("/vendor/lightweight-charts.js", _charts)
    app.router.add_static("/static/", STATIC)
    app.router.add_route("*", "/{tail:.*}", _not_found)

    async def start(_app: web.Application) -> None:
        await console.start()

    async def stop(_app: web.Application) -> None:
        await console.close()

    app.on_startup.append(start)
    app.on_shutdown.append(close_all)
    app.on_cleanup.append(stop)
    return app


def serve(settings: Settings, host: str, port: int, metrics_port: int | None = 0) -> None:
    """Run the gateway in the foreground until SIGINT/SIGTERM; prints ``console: http://HOST:PORT/`` once
    listening (the token is never printed). ``metrics_port``: see :mod:`web.metrics` (None: the settings')."""
    import asyncio
    import signal

    from pulse.runtime import resolve_endpoints
    from pulse.supervise import Supervisor
    from web.metrics import LoopBeat, gateway_probe

    ep = resolve_endpoints(settings)

    async def main() -> None:
        app = build_app(settings, ep, host)
        runner = web.AppRunner(app, access_log_class=AccessLogger, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        print(f"console: http://{shown}:{bound}/", flush=True)
        stop = asyncio.Event()
        beat = LoopBeat()
        beat.start()
        sup = Supervisor(gateway_probe(app[CONSOLE], beat), settings, port=metrics_port, stopping=stop.is_set)
        sup.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            sup.stop()
            beat.stop()
            await runner.cleanup()

    asyncio.run(main())
