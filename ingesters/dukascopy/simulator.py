"""A local stand-in for Dukascopy: the ``.bi5`` datafeed and the JSON data API, from one directory, with faults.

``root`` holds ``{CODE}/{YYYY}/{MM-1}/{DD}/{HH}h_ticks.bi5`` (month zero-based) and candle files, exactly as
``https://datafeed.dukascopy.com/datafeed/`` does; the simulator serves them under ``/datafeed/``. A missing
file is a 404, a 0-byte file a 200 with an empty body — both as the real service answers.

The same directory answers the JSON data API under ``/v1/`` (``/v1/ticks/EUR-USD/2019/2/4/0``,
``/v1/ticks/EUR-USD?from=<ms>``, ``/v1/candles/minute/EUR-USD/BID/2019/2/4``…): each answer is built from the
``.bi5`` file of that hour or period (see :mod:`.simulator_api`); a missing file is a 404, a 0-byte one an
answer with empty columns. :attr:`DukascopySimulator.api_url` is its root.

Faults are keyed by the path below ``/datafeed/`` (``EURUSD/2019/01/04/01h_ticks.bi5``) or ``/v1/``
(``ticks/EUR-USD/2019/2/4/1``) and may be changed while the server runs::

    sim = DukascopySimulator(root, faults=Faults(unavailable={"EURUSD/2019/01/04/01h_ticks.bi5": 2}))
    await sim.start()          # sim.base_url == "http://127.0.0.1:<port>/datafeed"
    ...
    await sim.stop()
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ingesters.dukascopy.simulator_api import NotServed, answer


@dataclass
class Faults:
    """What to do wrong, per path. Counters are consumed: ``unavailable={"p": 2}`` fails twice, then serves."""

    unavailable: dict[str, int] = field(default_factory=dict)  # path → number of 503 answers first
    retry_after_s: float | None = None  # sent as Retry-After with each 503
    empty: dict[str, int] = field(default_factory=dict)  # path → number of 0-byte 200 answers first
    slow: dict[str, int] = field(default_factory=dict)  # path → number of answers delayed by slow_delay_s
    slow_delay_s: float = 2.0
    latency_s: float = 0.0  # added to every answer
    status: dict[str, int] = field(default_factory=dict)  # path → this status, always (e.g. 403, 500)
    corrupt: set[str] = field(default_factory=set)  # path → serve the first half of the file (bad LZMA)


@dataclass
class SimulatorStats:
    requests: int = 0
    served: int = 0  # 200 answers, empty or not
    not_found: int = 0  # 404s
    unavailable: int = 0  # 503s injected
    slow: int = 0  # delayed answers injected
    by_path: Counter[str] = field(default_factory=Counter)


class DukascopySimulator:
    """An aiohttp server for one directory. ``port=0`` picks a free port; read :attr:`base_url`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"simulator root {self.root} is not a directory")
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.stats = SimulatorStats()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port/datafeed`` — what the downloader's ``base_url`` should be."""
        if self._runner is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}/datafeed"

    @property
    def api_url(self) -> str:
        """``http://host:port/v1`` — the root of the JSON data API layout."""
        if self._runner is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        app = web.Application()
        app.router.add_get("/datafeed/{path:.+}", self._handle)
        app.router.add_get("/v1/{path:.+}", self._handle_api)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DukascopySimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    def _take(counter: dict[str, int], path: str) -> bool:
        left = counter.get(path, 0)
        if left > 0:
            counter[path] = left - 1
            return True
        return False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._bi5_body)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._api_body)

    def _bi5_body(self, request: web.Request, path: str) -> tuple[bytes, str] | None:
        file = (self.root / path).resolve()
        if not file.is_relative_to(self.root) or not file.is_file():
            return None
        return file.read_bytes(), "application/octet-stream"

    def _api_body(self, request: web.Request, path: str) -> tuple[bytes, str] | None:
        raw_from = request.query.get("from")
        if raw_from is not None and not raw_from.isdigit():
            return None
        try:
            return answer(self.root, path, int(raw_from) if raw_from else None), "application/json"
        except NotServed:
            return None

    async def _serve(self, request: web.Request, body_of) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        path = request.match_info["path"]
        f = self.faults
        self.stats.requests += 1
        self.stats.by_path[path] += 1
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        if self._take(f.slow, path):
            self.stats.slow += 1
            await asyncio.sleep(f.slow_delay_s)
        if path in f.status:
            return web.Response(status=f.status[path])
        if self._take(f.unavailable, path):
            self.stats.unavailable += 1
            headers = {"Retry-After": f"{f.retry_after_s:g}"} if f.retry_after_s is not None else None
            return web.Response(status=503, headers=headers)
        found = body_of(request, path)
        if found is None:
            self.stats.not_found += 1
            return web.Response(status=404)
        body, content_type = found
        self.stats.served += 1
        if self._take(f.empty, path):
            return web.Response(body=b"", content_type=content_type)
        if path in f.corrupt:
            body = body[: len(body) // 2]
        return web.Response(body=body, content_type=content_type)
