"""Process entry for an ingester: build the bus and context, run until SIGTERM/SIGINT, flush, report.

Only this entry point handles signals. On SIGTERM the ingester closes its venue connection, then flushes
its producers, so every event received before the signal is acknowledged by the broker before exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from ingesters.base.context import IngestContext
from ingesters.base.metrics import ingester_probe, latency_histogram
from pulse.bus import Bus
from pulse.log import get_logger
from pulse.publish_proc import open_publisher
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.supervise import Supervisor

log = get_logger(__name__)


class Runnable(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


def run_ingester(
    settings: Settings,
    endpoints: Endpoints,
    *,
    venue: str,
    namespace: str,
    name: str,
    build: Callable[[IngestContext, Bus], Runnable],
    status_home: Path | None = None,
    extra_tasks: Callable[[Runnable, asyncio.Event], list[Awaitable[Any]]] | None = None,
    metrics_port: int | None = None,
) -> dict[str, Any]:
    """Run an ingester in this process until a signal; returns its final counters.

    ``metrics_port``: ``--metrics-port`` (None: the ``[metrics]`` settings; 0: no server). Under systemd
    (``$NOTIFY_SOCKET``) it says READY=1 once subscribed, pings the watchdog while the feed is healthy and
    STOPPING=1 on SIGTERM (:mod:`pulse.supervise`)."""
    latency, on_ack = latency_histogram(name)
    bus = Bus(settings, endpoints.pulsar_url)  # this process's client: its consumers (the control topic), and
    # its producers unless a publisher process owns them (pulsar.publish_process)
    try:
        publisher = open_publisher(settings, endpoints.pulsar_url, namespace, producer_prefix=name, bus=bus,
                                   on_ack=on_ack)  # type: ignore[arg-type]  # fmt: skip
    except BaseException:
        bus.close()
        raise
    ctx = IngestContext(publisher, venue=venue, name=name, status_home=status_home or settings.home)
    stopping = threading.Event()
    try:
        supervisor = Supervisor(
            ingester_probe(ctx, settings.metrics.stall_after_s, latency),
            settings,
            port=metrics_port,
            stopping=stopping.is_set,
        ).start()
    except BaseException:
        publisher.close()
        bus.close()
        raise

    def on_signal(stop: asyncio.Event) -> None:
        stopping.set()
        stop.set()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, stop)
        ingester = build(ctx, bus)
        aux = [asyncio.ensure_future(a) for a in (extra_tasks(ingester, stop) if extra_tasks else [])]
        try:
            await ingester.run(stop)
        finally:
            for t in aux:
                t.cancel()
            await asyncio.gather(*aux, return_exceptions=True)

    # The Pulsar client's I/O thread needs the GIL for every ack; a shorter switch interval than the default
    # 5 ms lets it in promptly while the event loop parses, which cuts venue-to-ack tail latency (bench/).
    sys.setswitchinterval(0.0005)
    try:
        asyncio.run(main())
    finally:
        stopping.set()
        try:
            publisher.close()  # flushes first: every event received is acknowledged before exit
        finally:
            supervisor.stop()
            bus.close()
            ctx.extra["state"] = "stopped"
            ctx.write_status()
    summary = ctx.snapshot()
    log.info("ingester stopped", name=name, published=summary["published"], failed=summary["publish_failed"])
    return summary
