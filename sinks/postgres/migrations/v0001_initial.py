"""v1 — the foundation sink's tables, frozen as they were shipped (created only where missing)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Connection


def _head() -> list[Column]:
    return [
        Column("venue", Text, nullable=False),
        Column("symbol", Text, nullable=False),
        Column("time", DateTime(timezone=True), nullable=False),
        Column("ts_event_ns", BigInteger, nullable=False),
        Column("ts_recv_ns", BigInteger, nullable=False),
        Column("seq", BigInteger, nullable=False),
    ]


def _num() -> Numeric:
    return Numeric(asdecimal=True)


def _tables() -> MetaData:
    md = MetaData()
    Table(
        "trades",
        md,
        *_head(),
        Column("trade_id", Text, nullable=False),
        Column("price", _num(), nullable=False),
        Column("size", _num(), nullable=False),
        Column("side", Text),
        Column("ord_type", Text),
        UniqueConstraint("venue", "symbol", "trade_id", "time", name="trades_natural_key"),
        Index("trades_symbol_time_idx", "symbol", "time"),
    )
    Table(
        "quotes",
        md,
        *_head(),
        Column("channel", Text, nullable=False),
        Column("bid", _num()),
        Column("bid_size", _num()),
        Column("ask", _num()),
        Column("ask_size", _num()),
        Column("tradeable", Boolean, nullable=False),
        UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", "channel", name="quotes_natural_key"),
        Index("quotes_symbol_time_idx", "symbol", "time"),
    )
    Table(
        "book_top",
        md,
        *_head(),
        Column("bid", _num()),
        Column("bid_size", _num()),
        Column("ask", _num()),
        Column("ask_size", _num()),
        UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", name="book_top_natural_key"),
        Index("book_top_symbol_time_idx", "symbol", "time"),
    )
    Table(
        "gaps",
        md,
        *_head(),
        Column("kind", Text, nullable=False),
        Column("detail", Text, nullable=False),
        UniqueConstraint("venue", "symbol", "time", "ts_event_ns", "seq", "kind", name="gaps_natural_key"),
        Index("gaps_symbol_time_idx", "symbol", "time"),
    )
    return md


def up(conn: Connection) -> None:
    _tables().create_all(conn, checkfirst=True)
