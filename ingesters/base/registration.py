"""What the venues' registrations (``ingesters/<venue>/venue.py``) share: loaders that import a venue's commands
or history fetch only when they are used (so building the venue registry stays cheap), and a ``resolve`` from a
venue's symbol rules.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from pulse.venues import Resolved

__all__ = ["demo_ingest", "demo_simulate", "lazy_commands", "lazy_history", "resolver"]


class _VenueSymbol(Protocol):
    symbol: str
    venue_symbol: str
    price_precision: int
    size_precision: int


def lazy_commands(module: str) -> Callable[[], Mapping[str, Any]]:
    """``module``'s ``COMMANDS`` (``{"ingest": …, "simulate": …}``), imported on first call."""

    def commands() -> Mapping[str, Any]:
        return importlib.import_module(module).COMMANDS

    return commands


def lazy_history(module: str) -> Callable[[Any, str, datetime, datetime], Awaitable[Sequence[Any]]]:
    """``module``'s ``fetch_history(settings, symbol, start, end)``, imported on first call."""

    async def fetch(settings: Any, symbol: str, start: datetime, end: datetime) -> Sequence[Any]:
        return await importlib.import_module(module).fetch_history(settings, symbol, start, end)

    return fetch


def resolver(resolve: Callable[[str], _VenueSymbol], asset_class: str) -> Callable[[str], Resolved]:
    """A venue's ``resolve`` for the registry, from its symbol rules (any accepted spelling → its symbol)."""

    def resolved(text: str) -> Resolved:
        s = resolve(text)
        return Resolved(s.symbol, s.venue_symbol, asset_class, s.price_precision, s.size_precision)

    return resolved


def demo_simulate(venue: str, faults: Sequence[str]) -> Callable[[int, float, list[str], bool], list[str]]:
    """A ``DemoPlan.simulate``: ``pulse simulate <venue>`` on the port, at the rate, for the symbols (with
    ``faults``, the venue's fault options, when the demo injects faults)."""

    def simulate(port: int, rate: float, symbols: list[str], with_faults: bool) -> list[str]:
        args = ["simulate", venue, "--port", str(port), "--rate", str(rate), "--symbols", ",".join(symbols)]
        return args + list(faults) if with_faults else args

    return simulate


def demo_ingest(venue: str, *, path: str = "", rest: bool = False) -> Callable[[int, list[str]], list[str]]:
    """A ``DemoPlan.ingest``: ``pulse ingest <venue>`` against the local venue's WebSocket (``ws://…{path}``) and,
    with ``rest``, its REST base on the same port."""

    def ingest(port: int, symbols: list[str]) -> list[str]:
        args = ["ingest", venue, "--url", f"ws://127.0.0.1:{port}{path}"]
        if rest:
            args += ["--rest-url", f"http://127.0.0.1:{port}"]
        return [*args, "--symbols", ",".join(symbols)]

    return ingest
