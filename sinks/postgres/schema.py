"""The sink's tables, declared once with SQLAlchemy Core: the *current* shape of the schema.

Every table starts with the same six columns — ``venue, symbol, time, ts_event_ns, ts_recv_ns, seq`` — where
``time`` is ``ts_event`` truncated to microseconds (``timestamptz`` resolution) and ``ts_event_ns`` keeps the
exact nanoseconds. Unique keys include ``time`` because a TimescaleDB hypertable partitioned on ``time`` only
accepts unique keys that contain it; they are also what makes the sink idempotent (``ON CONFLICT``).

Prices and sizes are unconstrained ``numeric``: a :class:`~decimal.Decimal` goes in and the same digits and scale
come back (``45283.50000001`` stays ``45283.50000001``, ``1.50`` stays ``1.50``).

Nothing here runs DDL: :mod:`sinks.postgres.migrations` gets a database of any earlier version to this one
(``SCHEMA_VERSION``), and a test checks that a migrated database matches this metadata. Change a table here
*and* add the migration step that gets there.
"""

from __future__ import annotations

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
    func,
)

from pulse.log import get_logger

log = get_logger(__name__)

#: Bump with every change to the tables below (and write the migration that gets there).
SCHEMA_VERSION = 3


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
)

gaps = Table(
    "gaps",
    metadata,
    *_head(),
    Column("kind", Text, nullable=False),  # a pulse.models.StatusKind
    Column("detail", Text, nullable=False),
    UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", "kind", name="gaps_natural_key"),
)

# Per-instrument time-range reads (candles, replays): (venue, symbol, time DESC) — the same order as the
# TimescaleDB compression segment-by/order-by, so a compressed chunk is read in index order. (Schema v2.)
for _t in (trades, quotes, book_top, gaps):
    Index(f"{_t.name}_instrument_time_idx", _t.c.venue, _t.c.symbol, _t.c.time.desc())

# What `pulse repair` refilled: one row per instrument-hour and run (schema v3). Not a data table: no event maps
# to it; `pulse coverage` reads it to show an hour as repaired, with its source.
repairs = Table(
    "repairs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("venue", Text, nullable=False),  # the instrument repaired (its gap markers name this venue)
    Column("symbol", Text, nullable=False),
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("range_start", DateTime(timezone=True), nullable=False),  # the part of the hour asked of the source
    Column("range_end", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=False),  # e.g. "kraken REST", "dukascopy"
    Column("stored_as", Text, nullable=False),  # the venue name the refilled rows carry
    Column("rows_fetched", Integer, nullable=False),
    Column("rows_added", Integer, nullable=False),
    Column("repaired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("repairs_instrument_hour_idx", repairs.c.symbol, repairs.c.hour)

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


def ensure_schema(url: str) -> str:
    """Migrate the database at ``url`` to :data:`SCHEMA_VERSION` and, on TimescaleDB, make the tables hypertables
    with the default policies (:func:`sinks.postgres.migrations.prepare`). Returns the mode's name."""
    from sinks.postgres.migrations import prepare

    return prepare(url).name
