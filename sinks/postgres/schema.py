"""The sink's tables, declared once with SQLAlchemy Core, and :func:`ensure_schema` that creates what is missing.

Every table starts with the same six columns — ``venue, symbol, time, ts_event_ns, ts_recv_ns, seq`` — where
``time`` is ``ts_event`` truncated to microseconds (``timestamptz`` resolution) and ``ts_event_ns`` keeps the
exact nanoseconds. Unique keys include ``time`` because a TimescaleDB hypertable partitioned on ``time`` only
accepts unique keys that contain it; they are also what makes the sink idempotent (``ON CONFLICT DO NOTHING``).

Prices and sizes are unconstrained ``numeric``: a :class:`~decimal.Decimal` goes in and the same digits and scale
come back (``45283.50000001`` stays ``45283.50000001``, ``1.50`` stays ``1.50``).

:func:`ensure_schema` is the one place DDL runs. It is idempotent and serialised by an advisory lock, and records
:data:`SCHEMA_VERSION` in ``pulse_schema_version``; a migration tool (Alembic) can take its place later by
reading the same :data:`metadata`.
"""

from __future__ import annotations

import psycopg
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.pool import NullPool

from pulse.log import get_logger

log = get_logger(__name__)

#: Bump with every change to the tables below (and write the migration that gets there).
SCHEMA_VERSION = 1

# Any fixed 64-bit number: serialises concurrent ensure_schema() calls (two sinks starting at once).
_DDL_LOCK_KEY = 0x50554C534501

metadata = MetaData()


def _price() -> Numeric:
    return Numeric(asdecimal=True)  # no precision/scale: the venue's digits are kept as they are


def _head() -> list[Column]:
    """The columns every data table starts with, in this order (mapping.py builds rows in column order)."""
    return [
        Column("venue", Text, nullable=False),
        Column("symbol", Text, nullable=False),
        Column("time", DateTime(timezone=True), nullable=False),  # ts_event, µs
        Column("ts_event_ns", BigInteger, nullable=False),
        Column("ts_recv_ns", BigInteger, nullable=False),
        Column("seq", BigInteger, nullable=False),
    ]


trades = Table(
    "trades",
    metadata,
    *_head(),
    Column("trade_id", Text, nullable=False),
    Column("price", _price(), nullable=False),
    Column("size", _price(), nullable=False),
    Column("side", Text),  # buy / sell (aggressor), when the venue says
    Column("ord_type", Text),  # market / limit, when the venue says
    UniqueConstraint("venue", "symbol", "trade_id", "time", name="trades_natural_key"),
    Index("trades_symbol_time_idx", "symbol", "time"),
)

quotes = Table(
    "quotes",
    metadata,
    *_head(),
    # Which stream the row came from: "quote" (Quote events) or "ticker" (a Ticker's top of book). Part of the
    # key because seq counts per channel, so a quote and a ticker may share (time, ts_event_ns, seq).
    Column("channel", Text, nullable=False),
    Column("bid", _price()),
    Column("bid_size", _price()),
    Column("ask", _price()),
    Column("ask_size", _price()),
    Column("tradeable", Boolean, nullable=False),
    UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", "channel", name="quotes_natural_key"),
    Index("quotes_symbol_time_idx", "symbol", "time"),
)

book_top = Table(
    "book_top",
    metadata,
    *_head(),
    Column("bid", _price()),
    Column("bid_size", _price()),
    Column("ask", _price()),
    Column("ask_size", _price()),
    UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", name="book_top_natural_key"),
    Index("book_top_symbol_time_idx", "symbol", "time"),
)

gaps = Table(
    "gaps",
    metadata,
    *_head(),
    Column("kind", Text, nullable=False),  # a pulse.models.StatusKind
    Column("detail", Text, nullable=False),
    UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", "kind", name="gaps_natural_key"),
    Index("gaps_symbol_time_idx", "symbol", "time"),
)

schema_version = Table(
    "pulse_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("description", Text, nullable=False),
)

#: The tables the sink writes events into.
DATA_TABLES: tuple[Table, ...] = (trades, quotes, book_top, gaps)

#: Column names per data table, in table order: the order of the row tuples mapping.py produces.
COLUMNS: dict[str, tuple[str, ...]] = {t.name: tuple(c.name for c in t.columns) for t in DATA_TABLES}


def ensure_schema(url: str) -> None:
    """Create whatever tables and indexes are missing and record the schema version. Safe to run concurrently.

    ``url`` is a libpq connection string. SQLAlchemy errors propagate (``OperationalError``: not reachable).
    """
    # libpq parses ``url`` (a postgresql:// URL or a key=value DSN), exactly as the writer's connection does.
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(_DDL_LOCK_KEY)))
            metadata.create_all(conn, checkfirst=True)
            conn.execute(
                insert(schema_version)
                .values(version=SCHEMA_VERSION, description="trades, quotes, book_top, gaps")
                .on_conflict_do_nothing(index_elements=["version"])
            )
            newest = conn.execute(select(func.max(schema_version.c.version))).scalar_one()
    finally:
        engine.dispose()
    if newest > SCHEMA_VERSION:
        log.warning("database schema is newer than this sink", database_version=newest, sink_version=SCHEMA_VERSION)
