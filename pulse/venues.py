"""The venue seam: what a venue provides (:class:`Venue`) and the one registry of venues.

A venue package (``ingesters/<venue>/``) describes itself in one :class:`Venue` value — its symbol rules
(canonical ↔ venue symbol, validation, channels, precisions), its market hours, its settings section, its CLI
commands (the ingester service, the local venue, a backfill) and how ``pulse demo`` runs it locally — and
registers it with ONE line in ``pyproject.toml``::

    [project.entry-points."pulse.venues"]
    kraken = "ingesters.kraken.venue:VENUE"

Everything above the venues (``control_plane``, the CLI, the demo, ``pulse status``, the sink) asks this module
(:func:`venues`, :func:`get`, :func:`resolve`, …) and never names a venue, and this module imports no venue
package: the entry points are loaded by name when first asked. :func:`register` adds a venue at run time (a
plugin loaded some other way, or a test's fake venue).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pulse.calendars import ALWAYS, Calendar
from pulse.errors import ConfigError, SymbolError

if TYPE_CHECKING:
    from pulse.control import InstrumentCommand
    from pulse.registry import Instrument

#: the entry-point group venues register in
ENTRY_POINT_GROUP = "pulse.venues"


@dataclass(frozen=True)
class Resolved:
    """A venue's answer for one name: canonical symbol, the venue's own name for it and its precisions."""

    symbol: str
    venue_symbol: str
    asset_class: str
    price_precision: int
    size_precision: int


@dataclass(frozen=True)
class DemoPlan:
    """How ``pulse demo`` runs a venue on this machine, as ``pulse`` command lines (the demo starts each in its
    own process and talks to it only through the CLI and status files).

    ``simulate(port, rate, symbols, faults)`` is the local venue's command line; ``ingest(port, symbols)`` the
    ingester pointed at it (live venues) or ``backfill(port)`` a backfill from it that prints its JSON summary
    (historical venues). ``symbols`` are the canonical symbols it streams; ``check()`` raises if the venue cannot
    run here (missing data). ``group`` says when the demo runs it: ``""`` — always, as the demo's main venue
    (``--symbols`` replaces its symbols; the demo's alert rules and paper orders use it); ``"fx"`` — unless
    ``--no-fx``; ``"backfill"`` — with ``--backfill``; ``"optional"`` — only when ``--venues`` names it
    (``--venues`` runs exactly the venues it names)."""

    symbols: tuple[str, ...]
    simulate: Callable[[int, float, list[str], bool], list[str]]
    ingest: Callable[[int, list[str]], list[str]] | None = None
    backfill: Callable[[int], list[str]] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    group: str = ""
    check: Callable[[], None] | None = None


@dataclass(frozen=True)
class HistorySource:
    """Where a venue's past data can be fetched again, to refill what a live stream missed (``pulse repair``).

    ``fetch(settings, symbol, start, end)`` returns the venue's events (:class:`~pulse.models.Trade` for
    ``channel="trade"``, :class:`~pulse.models.Quote` for ``"quote"``) with ``start <= ts_event < end``, in time
    order, for a canonical ``symbol``; it raises :class:`~pulse.errors.PulseError` when the source failed (the
    range is then not repaired). Trades are told apart by ``trade_id`` (the venue's id), quotes by their stored
    key, so a refetch never stores anything twice. ``label`` names the source where coverage shows it
    (``"kraken REST"``). ``others``: the source also refills the same symbol for venues without a history of
    their own (Dukascopy's FX quotes for OANDA's EUR/USD); the rows keep this venue's name."""

    label: str
    channel: str  # "trade" or "quote"
    fetch: Callable[[Any, str, datetime, datetime], Awaitable[Sequence[Any]]]
    others: bool = False


@dataclass(frozen=True)
class Venue:
    """Everything Pulse needs to know about a venue (see the module docstring)."""

    name: str
    namespace: str  # where its streams are published (crypto, fx, equities, historical)
    channels: tuple[str, ...]  # channels an instrument may subscribe
    default_channels: tuple[str, ...]
    live: bool  # True: a running ingester streams it (and subscribes on `symbols add`); False: backfill only
    resolve: Callable[[str], Resolved]  # symbol rules: any accepted spelling → canonical + venue name; else SymbolError
    channel_topics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # channel → topic channels
    calendar: Calendar = ALWAYS  # market hours
    #: market hours per instrument, when they differ by instrument (Dukascopy: FX closes at the weekend, its
    #: crypto does not); canonical symbol → calendar. None: ``calendar`` for every instrument
    calendar_for: Callable[[str], Calendar] | None = None
    history: HistorySource | None = None  # where past data can be fetched again (pulse repair), if anywhere
    settings_section: str = ""  # its [section] in pulse.toml ("" = none)
    settings_model: type[Any] | None = None  # that section's pulse.settings.Section subclass
    secret_settings: tuple[str, ...] = ()  # its secret keys (each may be given as <key>_file): masked, never logged
    #: more secrets in effect that its section does not hold (OANDA's $OANDA_TOKEN), so log formatters mask them
    extra_secrets: Callable[[Any], list[str]] | None = None
    service: str = ""  # the ingester service's name (its status file): ingest-<name> for live venues
    #: its CLI commands, loaded when the CLI needs them: group name (``ingest``, ``simulate``, ``backfill``) → a
    #: click command named after the venue
    commands: Callable[[], Mapping[str, Any]] | None = None
    demo: DemoPlan | None = None
    description: str = ""

    def topics_of(self, channel: str) -> tuple[str, ...]:
        """The topic channels a subscribed ``channel`` publishes on."""
        return self.channel_topics.get(channel, (channel,))

    def publishes(self, topic_channel: str) -> bool:
        """Whether some channel of this venue publishes on ``topic_channel`` topics (OANDA: no ``trade``)."""
        return any(topic_channel in self.topics_of(ch) for ch in self.channels)


_lock = threading.Lock()
_registered: dict[str, Venue] = {}
_loaded = False


def _load_entry_points() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                v = ep.load()
            except Exception as exc:  # a broken plugin names itself; the others still load
                raise ConfigError(f"venue {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            if not isinstance(v, Venue) or v.name != ep.name:
                raise ConfigError(f"venue entry point {ep.name!r} ({ep.value}) is not a Venue named {ep.name!r}")
            _registered.setdefault(v.name, v)
        _loaded = True


def register(v: Venue) -> None:
    """Add a venue (refused if another venue has its name)."""
    _load_entry_points()
    with _lock:
        if v.name in _registered and _registered[v.name] is not v:
            raise ConfigError(f"a venue named {v.name!r} is already registered")
        _registered[v.name] = v


def unregister(name: str) -> None:
    """Remove a venue added with :func:`register` (tests)."""
    with _lock:
        _registered.pop(name, None)


def venues() -> dict[str, Venue]:
    """Every registered venue by name, in name order."""
    _load_entry_points()
    return dict(sorted(_registered.items()))


def get(name: str) -> Venue:
    """The venue called ``name`` (case-insensitive), or a :class:`SymbolError` listing the known ones."""
    known = venues()
    v = known.get(name.strip().lower() if isinstance(name, str) else name)
    if v is None:
        raise SymbolError(f"unknown venue {name!r}: expected one of {', '.join(known)}")
    return v


def resolve(venue_name: str, text: str) -> tuple[Venue, Resolved]:
    """Validate ``text`` with the venue's symbol rules."""
    v = get(venue_name)
    return v, v.resolve(text)


def check_channels(v: Venue, channels: list[str] | None) -> tuple[str, ...]:
    """The channels to subscribe (the venue's defaults when none are given); unknown ones are refused by name."""
    if not channels:
        return v.default_channels
    bad = [c for c in channels if c not in v.channels]
    if bad:
        raise SymbolError(f"{v.name} has no channel {', '.join(bad)}: choose from {', '.join(v.channels)}")
    return tuple(dict.fromkeys(channels))


def expects_ticks(venue_name: str, now: datetime) -> bool:
    """Whether an instrument of this venue should be ticking at ``now``: a live venue whose market is open.
    Unknown venues are assumed to trade around the clock."""
    v = venues().get(venue_name)
    if v is None:
        return True
    return v.live and v.calendar.is_open(now)


def calendar_of(venue_name: str, symbol: str) -> Calendar:
    """The market hours of one instrument: the venue's per-instrument calendar, else the venue's. Unknown venues
    and symbols their venue does not know are assumed to trade around the clock."""
    v = venues().get(venue_name)
    if v is None:
        return ALWAYS
    if v.calendar_for is not None:
        try:
            return v.calendar_for(symbol)
        except SymbolError:
            return ALWAYS
    return v.calendar


def history_for(venue_name: str, symbol: str) -> tuple[Venue, HistorySource] | None:
    """Where ``venue_name``'s ``symbol`` can be refilled from: the venue's own :class:`HistorySource`, else the
    first venue (by name) whose source serves ``others`` and whose symbol rules accept ``symbol`` with the same
    asset class (Dukascopy's EUR/USD quotes refill OANDA's EUR/USD, never a crypto venue's BTC/USD); else None."""
    v = get(venue_name)
    if v.history is not None:
        return v, v.history
    try:
        asset_class = v.resolve(symbol).asset_class
    except SymbolError:
        return None
    for other in venues().values():
        if other.history is None or not other.history.others:
            continue
        try:
            if other.resolve(symbol).asset_class == asset_class:  # FX quotes for FX, never for a crypto pair
                return other, other.history
        except SymbolError:
            continue
    return None


def instrument_topics(inst: Instrument | InstrumentCommand, tenant: str) -> list[str]:
    """The topics an instrument's streams use, status included (Kraken's ticker channel also feeds the quote
    topic). Takes a registry row or a control command."""
    from pulse.topics import topic

    v = get(inst.venue)
    out: list[str] = []
    for ch in (*inst.channels, "status"):
        for t in v.topics_of(ch):
            name = topic(inst.namespace, inst.venue, inst.symbol, t, tenant)
            if name not in out:
                out.append(name)
    return out
