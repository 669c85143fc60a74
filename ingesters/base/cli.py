"""What the venues' ``pulse ingest <venue>`` commands share (see ``ingesters/<venue>/commands.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from pulse.errors import PulseError
from pulse.settings import Settings


def registry_url(s: Settings, explicit: list[str] | None) -> str | None:
    """The database holding the registry, unless symbols were given on the command line (they win) or no
    database is configured or running (then the settings' symbols are used)."""
    if explicit:
        return None
    from pulse.runtime import resolve_endpoints

    try:
        return resolve_endpoints(s, need_pulsar=False).database_url
    except PulseError:
        return None


def log_start(venue: str, source: str, subs: dict[str, tuple[str, ...]]) -> None:
    from pulse.log import get_logger

    get_logger("pulse.ingest").info("instruments", venue=venue, source=source, symbols=",".join(subs) or "-")


def run_live_ingester(
    s: Settings,
    *,
    venue: str,
    namespace: str,
    explicit: list[str] | None,
    initial: Callable[[], Mapping[str, tuple[str, ...]]],
    make: Callable[[Any, dict[str, tuple[str, ...]]], Any],
    as_json: bool,
    metrics_port: int | None,
) -> None:
    """What ``pulse ingest <venue>`` runs once its settings are checked: the instruments from the command line, else
    the registry's enabled ones, else ``initial()`` (the settings'); ``make(ctx, subs)`` builds the venue's ingester,
    which then follows ``pulse symbols add|remove|enable|disable`` from the control topic until stopped."""
    from ingesters.base.app import run_ingester
    from ingesters.base.control import LiveInstruments
    from pulse.clitools import emit_json
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(s, need_database=False)
    name = f"ingest-{venue}"
    live: dict[str, Any] = {}

    def build(ctx: Any, bus: Any) -> Any:
        li = live["li"] = LiveInstruments(bus, name, venue, registry_url(s, explicit))
        subs = li.initial(dict(initial()))
        log_start(venue, li.source, subs)
        return make(ctx, subs)

    summary = run_ingester(
        s,
        ep,
        venue=venue,
        namespace=namespace,
        name=name,
        build=build,
        extra_tasks=lambda ing, stop: [live["li"].follow(ing.apply, stop)],
        metrics_port=metrics_port,
    )
    if as_json:
        emit_json(summary)


def serve_local_venue(main: Coroutine[Any, Any, None]) -> None:
    """What ``pulse simulate <venue>`` runs: the local venue until Ctrl-C."""
    import asyncio

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main)
