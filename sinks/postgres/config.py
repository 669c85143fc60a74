"""The sink's own config (``pulse sink run --config sinks.yaml``): JDBC-sink style, validated before anything starts.

It says, like Pulsar IO's JDBC sink, which topics to read, where each event type goes, on which key fields
rows are unique, whether a redelivered or corrected row is skipped (``insert``) or overwrites the stored one
(``upsert``: ``ON CONFLICT (key) DO UPDATE`` of the other columns), how big a batch may grow and how long it
may wait, and where undecodable or refused messages go. ``timescale`` holds the hypertable policies used when
the ``timescaledb`` extension is present. ``sinks/postgres/sinks.example.yaml`` documents every key.

:func:`load_sink_config` parses the YAML (unknown keys refused), then :meth:`SinkConfig.validate` checks it
against the SQLAlchemy metadata of :mod:`sinks.postgres.schema`: an unknown event type, table, column or mode
raises :class:`~pulse.errors.ConfigError` naming it. Without a file, :func:`default_config` gives the same
behaviour the sink had before (settings' ``[sink]`` section, ``--source`` options).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml
from msgspec import Meta

from pulse.errors import ConfigError, PulseError
from pulse.settings import Settings
from pulse.symbols import canonical
from pulse.topics import CHANNELS, NAMESPACES, dead_letter_topic, reading_channels, topic
from sinks.postgres.mapping import EVENT_TABLES
from sinks.postgres.schema import COLUMNS, metadata

PosInt = Annotated[int, Meta(ge=1)]
# A PostgreSQL interval literal as TimescaleDB takes it: "1 day", "7 days", "12 hours", "30 minutes".
Interval = Annotated[
    str, Meta(pattern=r"^\d+ ?(microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|months?|years?)$")
]
InsertMode = Literal["insert", "upsert"]

DEAD_LETTER_SOURCE = "sink.postgres"
# Not "ticker": the Kraken ingester publishes each ticker's top of book as a Quote on the quote topic already.
DEFAULT_CHANNELS = ("trade", "quote", "book", "status")

#: Event types that carry instrument time series — partitioned on ``time`` as hypertables.
HYPERTABLES = ("trades", "quotes", "book_top", "gaps")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Source(_Strict, kw_only=True):
    """One venue's streams in one namespace: every (symbol, channel) pair becomes an explicit topic."""

    namespace: str = "historical"  # backfills; live namespaces (crypto, fx) are opt-in
    venue: str
    symbols: list[str]
    channels: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CHANNELS))


class TableTimescale(_Strict, kw_only=True):
    """Per-table overrides of the global :class:`Timescale` policies (``null``/absent: inherit)."""

    chunk_interval: Interval | None = None
    compress_after: Interval | None = None
    retention: Interval | None = None


class Target(_Strict, kw_only=True):
    """Where one event type is written and how duplicates are resolved."""

    table: str
    key: list[str]  # must equal the columns of a unique constraint of ``table``
    mode: str = "insert"  # insert | upsert (validated, so the error names a wrong value)
    timescale: TableTimescale = msgspec.field(default_factory=TableTimescale)


class Timescale(_Strict, kw_only=True):
    """TimescaleDB policies; ignored on plain PostgreSQL. ``enabled``: auto = use the extension when present."""

    enabled: Literal["auto", "on", "off"] = "auto"
    chunk_interval: Interval = "1 day"
    compress_after: Interval | None = "7 days"  # None: no compression policy
    retention: Interval | None = None  # None: keep forever
    segment_by: list[str] = msgspec.field(default_factory=lambda: ["venue", "symbol"])
    order_by: str = "time DESC"


def _default_targets() -> dict[str, Target]:
    out = {}
    for event_type, table in EVENT_TABLES.items():
        out[event_type] = Target(table=table, key=list(_unique_keys(table)[0]), mode="insert")
    return out


class SinkConfig(_Strict, kw_only=True):
    """The whole sink configuration (see the module docstring)."""

    sources: list[Source] = msgspec.field(default_factory=list)
    topics: list[str] = msgspec.field(default_factory=list)  # extra explicit topics, as they are
    subscription: str = "pulse-sink-postgres"
    batch_size: PosInt = 5000
    max_latency_ms: PosInt = 200
    retry_max_s: Annotated[float, Meta(gt=0)] = 10.0
    stall_s: Annotated[float, Meta(gt=0)] = 30.0  # see sinks/postgres/watch.py
    dead_letter_topic: str = ""  # empty: persistent://<tenant>/deadletter/sink.postgres
    tables: dict[str, Target] = msgspec.field(default_factory=_default_targets)
    timescale: Timescale = msgspec.field(default_factory=Timescale)

    # -- derived -------------------------------------------------------------------------------------
    def topic_list(self, tenant: str) -> list[str]:
        out: list[str] = []
        for src in self.sources:
            for sym in src.symbols:
                for ch in reading_channels(src.namespace, src.channels):
                    t = topic(src.namespace, src.venue, sym, ch, tenant)
                    if t not in out:
                        out.append(t)
        out += [t for t in self.topics if t not in out]
        return out

    def dead_letter(self, tenant: str) -> str:
        return self.dead_letter_topic or dead_letter_topic(DEAD_LETTER_SOURCE, tenant)

    def table_of(self, event_type: str) -> str:
        return self.tables[event_type].table

    def table_modes(self) -> dict[str, tuple[InsertMode, tuple[str, ...]]]:
        """``{table: (mode, key columns)}`` for every target table (validated to agree across event types)."""
        return {t.table: (t.mode, tuple(t.key)) for t in self.tables.values()}  # type: ignore[misc]

    def policies(self, table: str) -> TableTimescale:
        """The effective Timescale policies of ``table`` (per-table overrides over the global ones)."""
        ts = self.timescale
        over = next((t.timescale for t in self.tables.values() if t.table == table), TableTimescale())
        return TableTimescale(
            chunk_interval=over.chunk_interval or ts.chunk_interval,
            compress_after=over.compress_after if over.compress_after is not None else ts.compress_after,
            retention=over.retention if over.retention is not None else ts.retention,
        )

    # -- validation ----------------------------------------------------------------------------------
    def validate(self, tenant: str = "market-data") -> SinkConfig:
        """Check every name against the schema metadata; raise :class:`ConfigError` naming what is wrong."""
        for i, src in enumerate(self.sources):
            where = f"sources[{i}]"
            if src.namespace not in NAMESPACES:
                raise ConfigError(f"{where}: unknown namespace {src.namespace!r} (one of {', '.join(NAMESPACES)})")
            if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", src.venue):
                raise ConfigError(f"{where}: invalid venue {src.venue!r}")
            if not src.symbols:
                raise ConfigError(f"{where}: no symbols")
            for sym in src.symbols:
                try:
                    if canonical(sym) != sym:
                        raise ConfigError(f"{where}: symbol {sym!r} is not canonical (write {canonical(sym)!r})")
                except PulseError as exc:
                    if isinstance(exc, ConfigError):
                        raise
                    raise ConfigError(f"{where}: {exc}") from exc
            for ch in src.channels:
                if ch not in CHANNELS:
                    raise ConfigError(f"{where}: unknown channel {ch!r} (one of {', '.join(CHANNELS)})")
        try:
            self.topic_list(tenant)
        except PulseError as exc:
            raise ConfigError(f"sink sources: {exc}") from exc
        if not self.topic_list(tenant):
            raise ConfigError("sink config: no sources or topics to consume")
        for ev, target in self.tables.items():
            self._validate_target(ev, target)
        seen: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        for ev, target in self.tables.items():
            prev = seen.setdefault(target.table, (ev, target.mode, tuple(target.key)))
            if prev[1:] != (target.mode, tuple(target.key)):
                raise ConfigError(
                    f"tables.{ev} and tables.{prev[0]} both write table {target.table!r} but with different mode or key"
                )
        if not re.match(r"^[a-z_][a-z0-9_]*( (ASC|DESC))?( NULLS (FIRST|LAST))?$", self.timescale.order_by):
            raise ConfigError(f"timescale.order_by: {self.timescale.order_by!r} is not like 'time DESC'")
        for col in self.timescale.segment_by:
            for table in {t.table for t in self.tables.values()}:
                if col not in metadata.tables[table].c:
                    raise ConfigError(f"timescale.segment_by: table {table!r} has no column {col!r}")
        return self

    def _validate_target(self, ev: str, target: Target) -> None:
        where = f"tables.{ev}"
        if ev not in EVENT_TABLES:
            raise ConfigError(f"{where}: unknown event type {ev!r} (one of {', '.join(EVENT_TABLES)})")
        if target.mode not in ("insert", "upsert"):
            raise ConfigError(f"{where}.mode: unknown insert mode {target.mode!r} (insert or upsert)")
        table = metadata.tables.get(target.table)
        if table is None or target.table not in COLUMNS:
            raise ConfigError(f"{where}.table: unknown table {target.table!r} (one of {', '.join(COLUMNS)})")
        needed = COLUMNS[EVENT_TABLES[ev]]
        missing = [c for c in needed if c not in table.c]
        if missing:
            raise ConfigError(f"{where}.table: table {target.table!r} has no column(s) {', '.join(missing)}")
        for col in target.key:
            if col not in table.c:
                raise ConfigError(f"{where}.key: unknown field {col!r} in table {target.table!r}")
        if set(target.key) not in [set(k) for k in _unique_keys(target.table)]:
            keys = " or ".join("(" + ", ".join(k) + ")" for k in _unique_keys(target.table))
            raise ConfigError(f"{where}.key: ({', '.join(target.key)}) is not a unique key of {target.table!r}: {keys}")
        if "time" not in target.key:
            raise ConfigError(f"{where}.key: must contain 'time' (hypertables partition on it)")


def _unique_keys(table: str) -> list[tuple[str, ...]]:
    from sqlalchemy import UniqueConstraint

    t = metadata.tables[table]
    return [tuple(str(c.name) for c in con.columns) for con in t.constraints if isinstance(con, UniqueConstraint)]


def load_sink_config(path: str | Path, settings: Settings | None = None) -> SinkConfig:
    """Read and validate a YAML sink config; :class:`ConfigError` names the file and the offending key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"sink config {p} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"sink config {p} is not valid YAML: {exc}") from exc
    return parse_sink_config(raw, str(p), settings)


def parse_sink_config(raw: object, source: str = "sink config", settings: Settings | None = None) -> SinkConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    if "tables" in raw and isinstance(raw["tables"], dict):
        # Tables not mentioned keep their defaults; a mentioned one may give just the keys it changes.
        defaults = msgspec.to_builtins(_default_targets())
        merged = {**defaults}
        for ev, val in raw["tables"].items():
            merged[ev] = {**defaults.get(ev, {}), **val} if isinstance(val, dict) else val
        raw = {**raw, "tables": merged}
    try:
        cfg = msgspec.convert(raw, SinkConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid {source}: {str(exc).replace('`$.', '`').replace('$.', '')}") from exc
    return cfg.validate(settings.pulsar.tenant if settings else "market-data")


def default_config(settings: Settings, topics: Sequence[str]) -> SinkConfig:
    """The config the sink runs with when no ``--config`` is given: settings' [sink] values, these topics."""
    s = settings.sink
    return SinkConfig(
        topics=list(topics),
        subscription=s.subscription,
        batch_size=s.batch_size,
        max_latency_ms=s.max_latency_ms,
        retry_max_s=s.retry_max_s,
        stall_s=s.stall_s,
    ).validate(settings.pulsar.tenant)
