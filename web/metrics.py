"""``pulse web --metrics-port N``: the gateway's /metrics, /healthz and /readyz on a port of their own, like every
daemon's (through :mod:`pulse.supervise`, so systemd notifications work the same way).

The families are read from :meth:`Console.status` at scrape time (readers, messages received, the hub's counters:
clients, frames sent, conflated quotes, slow clients closed, …) as ``pulse_gateway_<name>``. Ready: the console
started and has no problem (the same verdict as the gateway's own ``/readyz``). Alive: the event loop beats — a
task stores ``time.monotonic()`` every half second, so a blocked loop turns ``/healthz`` 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from prometheus_client.core import Metric

from pulse.metrics import Probe, gauge
from web.console import Console


class LoopBeat:
    """A heartbeat from inside the event loop (start it on the loop)."""

    def __init__(self) -> None:
        self.at = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.at = time.monotonic()
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def gateway_probe(console: Console, beat: LoopBeat, name: str = "gateway") -> Probe:
    def collect() -> Iterable[Metric]:
        st = console.status()
        for key, value in sorted(st.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield gauge(f"pulse_gateway_{key}", f"The gateway's {key.replace('_', ' ')} (Console.status)",
                            {(name,): value}, ("service",))  # fmt: skip

    def checks() -> dict[str, bool]:
        return {"console": bool(console.ready and not console.problems)}

    def summary() -> str:
        st = console.status()
        return f"{st.get('readers', 0)} readers, {st.get('received', 0)} received; problems: {st['problems'] or 'none'}"

    return Probe(name, collect, checks, lambda: beat.at, summary)
