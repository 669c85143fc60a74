"""What the venues' ``pulse ingest <venue>`` commands share (see ``ingesters/<venue>/commands.py``)."""

from __future__ import annotations

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
