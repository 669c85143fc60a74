"""v3 — ``repairs``: one row per instrument-hour each time ``pulse repair`` refilled it from a historical source.

Frozen as shipped (created only where missing). ``pulse coverage`` reads it to show an hour as repaired, with its
source; the rows themselves went into ``trades``/``quotes`` like any other.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, Table, Text, func
from sqlalchemy.engine import Connection


def _tables() -> MetaData:
    md = MetaData()
    Table(
        "repairs",
        md,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("venue", Text, nullable=False),
        Column("symbol", Text, nullable=False),
        Column("hour", DateTime(timezone=True), nullable=False),
        Column("range_start", DateTime(timezone=True), nullable=False),
        Column("range_end", DateTime(timezone=True), nullable=False),
        Column("source", Text, nullable=False),
        Column("stored_as", Text, nullable=False),
        Column("rows_fetched", Integer, nullable=False),
        Column("rows_added", Integer, nullable=False),
        Column("repaired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("repairs_instrument_hour_idx", "symbol", "hour"),
    )
    return md


def up(conn: Connection) -> None:
    _tables().create_all(conn, checkfirst=True)
