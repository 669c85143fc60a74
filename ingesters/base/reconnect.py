"""The reconnect loop every streaming ingester runs.

``session()`` opens the transport, subscribes and reads until the connection ends; it returns ``True`` when
it got as far as a healthy subscription (the backoff then resets) and raises
:class:`~pulse.errors.FatalVenueError` when retrying cannot help. Any other exception is a transport failure:
count it, wait (capped, jittered) and reconnect. ``stop`` interrupts the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ingesters.base.backoff import Backoff
from ingesters.base.context import IngestContext
from pulse.errors import FatalVenueError
from pulse.log import get_logger

log = get_logger(__name__)


async def reconnect_loop(
    session: Callable[[], Awaitable[bool]],
    *,
    ctx: IngestContext,
    stop: asyncio.Event,
    backoff: Backoff,
    on_reconnect: Callable[[], None] | None = None,
) -> None:
    first = True
    while not stop.is_set():
        if not first:
            ctx.counters.reconnects += 1
            if on_reconnect:
                on_reconnect()
        first = False
        healthy = False
        try:
            healthy = await session()
            reason = "connection closed"
        except FatalVenueError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transport failures of any library: reconnect, never crash
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            ctx.extra["connected"] = False  # a venue sets it True once its session is subscribed (readiness)
        if stop.is_set():
            break
        if healthy:
            backoff.reset()
        delay = backoff.next_delay()
        log.warning("disconnected; reconnecting", venue=ctx.venue, reason=reason, delay_s=round(delay, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
