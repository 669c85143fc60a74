"""The HTTP API (JSON everywhere; the contract is :mod:`web.openapi`, served at ``/api/openapi.json``).

Instrument changes are the control plane's ``pulse symbols add|remove|enable|disable``: the same validation
(every symbol of a request is checked against its venue's rules before any is applied: all or nothing), the
same provisioning, registry write and control-topic announcement (:func:`control_plane.symbols.open_symbol_ops`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from pulse.errors import PulseError
from web import data
from web.console import Console
from web.security import json_error

CONSOLE = web.AppKey("console", Console)
MAX_TICKS = 5000


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class AddInstruments(msgspec.Struct, forbid_unknown_fields=True):
    venue: str
    symbols: list[str]
    channels: list[str] | None = None
    price_precision: int | None = None
    size_precision: int | None = None


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


async def _body(request: web.Request, kind: type[Any]) -> Any:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("`$.", 1)[-1].rstrip("`") if "`$." in str(exc) else None
        raise ApiError(400, f"invalid request body: {str(exc).replace('`$.', '`')}", field=field) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None


def _time(request: web.Request, name: str, default: datetime) -> datetime:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ApiError(400, f"{name}: {text!r} is not an ISO 8601 time or Unix seconds", field=name) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: {text!r} is not an integer", field=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}", field=name)
    return value


def _instrument_query(request: web.Request) -> tuple[str | None, str]:
    from pulse.symbols import canonical
    from pulse.venues import resolve

    symbol = request.query.get("symbol")
    if not symbol:
        raise ApiError(400, "symbol is required, e.g. symbol=BTC/USD", field="symbol")
    venue = request.query.get("venue") or None
    try:
        if venue is not None:
            v, r = resolve(venue, symbol)
            return v.name, r.symbol
        return None, canonical(symbol)
    except (PulseError, ValueError) as exc:
        raise ApiError(400, str(exc), field="symbol" if venue is None or "venue" not in str(exc) else "venue") from None


def _range(request: web.Request) -> tuple[datetime, datetime]:
    end = _time(request, "to", datetime.now(UTC))
    start = _time(request, "from", end - timedelta(days=1))
    if end <= start:
        raise ApiError(400, "to must be after from", field="to")
    return start, end


# -- handlers ---------------------------------------------------------------------------------------------
async def list_instruments(request: web.Request) -> web.Response:
    console = _console(request)
    await console.refresh()
    rows = [{**{k: v for k, v in inst.items() if k != "topic_channels"}, "streams": inst["topic_channels"]}
            for inst in console.instruments.values()]  # fmt: skip
    rows.sort(key=lambda r: (r["venue"], r["symbol"]))
    return web.json_response({"instruments": rows})


async def add_instruments(request: web.Request) -> web.Response:
    from control_plane.symbols import open_symbol_ops, plan_instrument

    body: AddInstruments = await _body(request, AddInstruments)
    if not body.symbols:
        raise ApiError(400, "symbols: give at least one", field="symbols")
    kw = {"channels": body.channels, "price_precision": body.price_precision, "size_precision": body.size_precision}
    planned: list[str] = []
    for name in body.symbols:  # every symbol is checked before any is applied
        try:
            _, inst = plan_instrument(body.venue, name, **kw)  # type: ignore[arg-type]
        except PulseError as exc:
            msg = str(exc)
            field = "venue" if msg.startswith("unknown venue") else "channels" if "channel" in msg else (
                "price_precision" if "price-precision" in msg else "size_precision" if "size-precision" in msg
                else "symbols")  # fmt: skip
            raise ApiError(400, msg.replace("--price-precision", "price_precision").replace(
                "--size-precision", "size_precision"), field=field, symbol=name) from None  # fmt: skip
        if inst.symbol in planned:
            raise ApiError(400, f"{inst.symbol} given twice", field="symbols", symbol=name)
        planned.append(inst.symbol)
    console = _console(request)

    def apply() -> list[dict[str, Any]]:
        with open_symbol_ops(console.settings) as ops:
            return [ops.add(body.venue, sym, **kw) for sym in planned]  # type: ignore[arg-type]

    results = await _control_plane(apply)
    await console.refresh()
    return web.json_response({"results": results}, status=201)


async def _control_plane(fn: Any) -> Any:
    from pulse.registry import RegistryError

    try:
        return await asyncio.to_thread(fn)
    except RegistryError as exc:
        status = 404 if "not in the registry" in str(exc) else 503
        raise ApiError(status, str(exc)) from None
    except PulseError as exc:
        raise ApiError(502, str(exc)) from None


def _path_instrument(request: web.Request) -> tuple[str, str]:
    """``/api/instruments/{venue}/{symbol}``: the symbol in any venue spelling, ``-`` standing for ``/``."""
    from pulse.venues import resolve

    venue, text = request.match_info["venue"], request.match_info["symbol"]
    try:
        v, r = resolve(venue, text)
    except PulseError as exc:
        raise ApiError(404 if "unknown venue" in str(exc) else 400, str(exc)) from None
    return v.name, r.symbol


async def remove_instrument(request: web.Request) -> web.Response:
    from control_plane.symbols import open_symbol_ops

    venue, symbol = _path_instrument(request)
    console = _console(request)

    def apply() -> dict[str, Any]:
        with open_symbol_ops(console.settings) as ops:
            return ops.remove(venue, symbol)

    result = await _control_plane(apply)
    await console.refresh()
    return web.json_response(result)


def _set_enabled(enabled: bool) -> Any:
    async def handler(request: web.Request) -> web.Response:
        from control_plane.symbols import open_symbol_ops

        venue, symbol = _path_instrument(request)
        console = _console(request)

        def apply() -> dict[str, Any]:
            with open_symbol_ops(console.settings) as ops:
                return ops.set_enabled(venue, symbol, enabled)

        result = await _control_plane(apply)
        await console.refresh()
        return web.json_response(result)

    return handler


async def get_candles(request: web.Request) -> web.Response:
    venue, symbol = _instrument_query(request)
    start, end = _range(request)
    interval = request.query.get("interval") or None
    points = _int(request, "points", None, 1, data.MAX_POINTS)
    if interval is None and points is None:
        raise ApiError(400, "give interval (1w, 1d, 1h, 5m, 1m, 1s) or points=N (the server picks)", field="interval")
    if interval is not None and points is not None:
        raise ApiError(400, "give interval or points, not both", field="points")
    try:
        doc = await asyncio.to_thread(data.candle_series, _console(request).endpoints.database_url, venue, symbol,
                                      start, end, interval=interval, points=points)  # fmt: skip
    except data.DataError as exc:
        raise ApiError(400, str(exc), field="interval" if "interval" in str(exc) else "venue") from None
    return web.json_response(doc)


async def get_ticks(request: web.Request) -> web.Response:
    venue, symbol = _instrument_query(request)
    start, end = _range(request)
    limit = _int(request, "limit", 1000, 1, MAX_TICKS)
    doc = await asyncio.to_thread(data.tick_series, _console(request).endpoints.database_url, venue, symbol,
                                  start, end, limit)  # fmt: skip
    return web.json_response(doc)


async def get_status(request: web.Request) -> web.Response:
    from app.health import collect_health

    console = _console(request)
    report = await asyncio.to_thread(collect_health, console.settings)
    report["gateway"] = console.status()
    return web.json_response(report, dumps=_dumps)


async def get_alerts(request: web.Request) -> web.Response:
    limit = _int(request, "limit", 50, 1, 1000)
    rows = await asyncio.to_thread(data.recent_alerts, _console(request).endpoints.database_url, limit)
    return web.json_response({"alerts": rows})


async def get_orders(request: web.Request) -> web.Response:
    from consumers.matching.commands import summarise

    account = request.query.get("account") or None
    doc = summarise(list(_console(request).outputs), account)
    return web.json_response(msgspec.to_builtins(doc))


async def get_gateway(request: web.Request) -> web.Response:
    return web.json_response(_console(request).status())


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    console = _console(request)
    ok = console.ready and not console.problems
    return web.json_response({"ready": ok, "problems": console.problems}, status=200 if ok else 503)


def _dumps(doc: Any) -> str:
    import json

    return json.dumps(doc, default=str)


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, str(exc), **{k: v for k, v in exc.extra.items() if v is not None})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/instruments", list_instruments)
    r.add_post("/api/instruments", add_instruments)
    r.add_delete("/api/instruments/{venue}/{symbol}", remove_instrument)
    r.add_post("/api/instruments/{venue}/{symbol}/enable", _set_enabled(True))
    r.add_post("/api/instruments/{venue}/{symbol}/disable", _set_enabled(False))
    r.add_get("/api/candles", get_candles)
    r.add_get("/api/ticks", get_ticks)
    r.add_get("/api/status", get_status)
    r.add_get("/api/alerts", get_alerts)
    r.add_get("/api/orders", get_orders)
    r.add_get("/api/gateway", get_gateway)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
