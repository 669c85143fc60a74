"""Live instrument changes for a running ingester: the registry at start, the control topic after that.

Order matters so no change is missed: subscribe to the control topic first (at the latest command), then read
the registry. A command that lands between the two is both in the registry and on the topic; applying it
twice is harmless. Without a database (``--symbols`` only, or none reachable) the ingester keeps its command-
line/settings symbols and still follows the control topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from pulse.bus import Bus
from pulse.control import ControlListener, InstrumentCommand
from pulse.errors import PulseError
from pulse.log import get_logger

log = get_logger(__name__)


class LiveInstruments:
    def __init__(self, bus: Bus, service: str, venue: str, database_url: str | None) -> None:
        self.venue = venue
        self.database_url = database_url
        self.listener = ControlListener(bus, service)
        self.source = "settings"
        self.applied = 0

    def initial(self, fallback: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """The venue's enabled instruments (symbol → channels) from the registry, or ``fallback`` when the
        registry has no row for this venue or cannot be read."""
        if not self.database_url:
            return dict(fallback)
        from pulse.registry import RegistryReader

        try:
            with RegistryReader(self.database_url) as reg:
                rows = reg.list(self.venue)
        except PulseError as exc:
            log.warning("instrument registry unavailable; using configured symbols", error=str(exc))
            return dict(fallback)
        if not rows:
            return dict(fallback)
        self.source = "registry"
        return {r.symbol: r.channels for r in rows if r.enabled}

    async def follow(self, apply: Callable[[InstrumentCommand], Awaitable[None]], stop: asyncio.Event) -> None:
        """Apply this venue's commands until ``stop``; a failing apply is logged, never fatal."""
        try:
            while not stop.is_set():
                cmd = await asyncio.to_thread(self.listener.receive, 250)
                if cmd is None or cmd.venue != self.venue:
                    continue
                try:
                    await apply(cmd)
                    self.applied += 1
                except Exception as exc:
                    log.error("control command failed", op=cmd.op, symbol=cmd.symbol, error=str(exc))
        finally:
            await asyncio.to_thread(self.listener.close)
