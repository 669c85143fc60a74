"""Poll a source until what it returns changes: how the consumers notice registry and rule changes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from pulse.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")


def poll_until_changed(
    read: Callable[[], T],
    same: Callable[[T], bool],
    *,
    every_s: float,
    halt: threading.Event,
    errors: tuple[type[BaseException], ...],
    what: str,
) -> T | None:
    """Call ``read()`` every ``every_s`` until ``same(value)`` is false, and return that value; None once ``halt``
    is set. A read failing with one of ``errors`` (the database is away) is logged and tried again next time."""
    while not halt.wait(every_s):
        try:
            value = read()
        except errors as exc:
            log.debug(f"{what} check failed; trying again", error=str(exc)[:300])
            continue
        if not same(value):
            return value
    return None
