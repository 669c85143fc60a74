"""Versioned schema migrations: an ordered list of steps, applied once each, recorded in ``pulse_schema_version``.

Why not Alembic: the schema is four tables and one version table; an ordered list of SQLAlchemy-DDL steps in
one transaction (PostgreSQL DDL is transactional) under an advisory lock gives the same guarantees — a
database at any earlier version moves forward exactly once, two sinks starting together do not race, a failed
step leaves the database at its previous version — without an env.py, a script directory and a second
metadata. Each step is *frozen*: it builds what it needs itself and never reads :mod:`sinks.postgres.schema`
(whose metadata is the current shape and would change under an old step). ``test_migrated_schema_matches_
metadata`` checks that the steps end where the metadata is.

Steps:

====  =========================================================================================================
 v1   trades, quotes, book_top, gaps + unique natural keys, (symbol, time) indexes (the foundation sink's schema)
 v2   per-instrument indexes (venue, symbol, time DESC) replace (symbol, time)
 v3   repairs: what ``pulse repair`` refilled, per instrument-hour and source (read by ``pulse coverage``)
====  =========================================================================================================

TimescaleDB (hypertables, compression, retention) is not a numbered step: whether it applies depends on the
server, and its policies on the sink config. :func:`sinks.postgres.migrations.timescale.apply` reconciles
it idempotently after the steps, in the same lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, create_engine, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from pulse.log import get_logger
from sinks.postgres.migrations import v0001_initial, v0002_instrument_index, v0003_repairs

if TYPE_CHECKING:
    from sinks.postgres.config import SinkConfig
    from sinks.postgres.mode import DbMode

log = get_logger(__name__)

# Any fixed 64-bit number: serialises concurrent migrations (two sinks starting at once). Same key as schema v1.
LOCK_KEY = 0x50554C534501


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    up: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "trades, quotes, book_top, gaps", v0001_initial.up),
    Migration(2, "per-instrument (venue, symbol, time DESC) indexes", v0002_instrument_index.up),
    Migration(3, "repairs: refills by pulse repair, per instrument-hour", v0003_repairs.up),
)

LATEST = MIGRATIONS[-1].version

_version_meta = MetaData()
version_table = Table(
    "pulse_schema_version",
    _version_meta,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("description", Text, nullable=False),
)


def engine_for(url: str):
    """A SQLAlchemy engine over libpq ``url`` (a postgresql:// URL or key=value DSN), one connection, no pool."""
    return create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool)


def applied_versions(conn: Connection) -> set[int]:
    if not inspect(conn).has_table(version_table.name):
        return set()
    return set(conn.execute(select(version_table.c.version)).scalars())


def migrate_conn(conn: Connection, after: Callable[[Connection], None] | None = None) -> int:
    """Apply the missing steps on ``conn`` (inside its transaction, under the advisory lock); return the version."""
    conn.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
    _version_meta.create_all(conn, checkfirst=True)
    done = applied_versions(conn)
    for m in MIGRATIONS:
        if m.version in done:
            continue
        log.info("applying schema migration", version=m.version, description=m.description)
        m.up(conn)
        conn.execute(version_table.insert().values(version=m.version, description=m.description))
    if after is not None:
        after(conn)
    newest = max(done | {LATEST})
    if newest > LATEST:
        log.warning("database schema is newer than this sink", database_version=newest, sink_version=LATEST)
    return newest


def migrate(url: str, after: Callable[[Connection], None] | None = None) -> int:
    """Bring the database at ``url`` to :data:`LATEST` in one transaction; ``after`` runs in it (Timescale).

    Safe to run concurrently and repeatedly. SQLAlchemy errors propagate (``OperationalError``: not reachable).
    """
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '30s'"))
            return migrate_conn(conn, after)
    finally:
        engine.dispose()


def prepare(url: str, config: SinkConfig | None = None) -> DbMode:
    """Everything the sink needs before its first write: detect the mode (installing the Timescale extensions
    when available and permitted), run the numbered migrations, and on TimescaleDB converge hypertables and
    policies on ``config`` (default: :class:`~sinks.postgres.config.SinkConfig` defaults) — one transaction.

    Raises ``sqlalchemy.exc.OperationalError`` / ``psycopg.OperationalError`` when the database is unreachable,
    :class:`~pulse.errors.ConfigError` when the config demands TimescaleDB and there is none.
    """
    from pulse.errors import ConfigError
    from sinks.postgres.config import SinkConfig
    from sinks.postgres.migrations import timescale
    from sinks.postgres.mode import detect_mode_url

    cfg = config or SinkConfig()
    mode = detect_mode_url(url, create=cfg.timescale.enabled != "off")
    if cfg.timescale.enabled == "on" and not mode.timescaledb:
        raise ConfigError("timescale.enabled is 'on' but the timescaledb extension is not available")
    use_ts = mode.timescaledb and cfg.timescale.enabled != "off"
    migrate(url, after=(lambda conn: timescale.apply(conn, cfg, mode)) if use_ts else None)
    return mode
