"""The instrument registry's read side: which instruments Pulse ingests, stored in the database (SQLAlchemy Core).

One row per (venue, canonical symbol): the venue's own name for it, asset class, the namespace its streams go
to, price/size precision (decimal places), the channels to subscribe, enabled, created and updated times.
Rows are only written by ``pulse symbols`` (:class:`control_plane.registry.Registry`, after the venue's symbol
rules accepted the name), so a symbol in the registry is always safe in a topic name and a venue request.
Running services learn about changes from the control topic (:mod:`pulse.control`); a service that starts later
reads this table through :class:`RegistryReader`. This is a core contract: ingesters, consumers and the sink
read the registry through this module only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from pulse.errors import PulseError

metadata = sa.MetaData()

instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("venue", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("venue_symbol", sa.Text, nullable=False),
    sa.Column("asset_class", sa.Text, nullable=False),
    sa.Column("namespace", sa.Text, nullable=False),
    sa.Column("price_precision", sa.SmallInteger, nullable=False),
    sa.Column("size_precision", sa.SmallInteger, nullable=False),
    sa.Column("channels", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("venue", "symbol", name="instruments_venue_symbol_key"),
    sa.CheckConstraint("price_precision BETWEEN 0 AND 18", name="instruments_price_precision_check"),
    sa.CheckConstraint("size_precision BETWEEN 0 AND 18", name="instruments_size_precision_check"),
)


class RegistryError(PulseError):
    """The registry could not be read or written."""


class NotRegistered(RegistryError, ValueError):
    """The instrument named is not in the registry (a refused input: exit 2)."""


@dataclass(frozen=True)
class Instrument:
    venue: str
    symbol: str  # canonical, e.g. BTC/USD
    venue_symbol: str  # the venue's name, e.g. EUR_USD (OANDA) or EURUSD (Dukascopy)
    asset_class: str
    namespace: str
    price_precision: int
    size_precision: int
    channels: tuple[str, ...]
    enabled: bool
    created: datetime | None = None
    updated: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"

    @property
    def price_increment(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_precision)

    @property
    def size_increment(self) -> Decimal:
        return Decimal(1).scaleb(-self.size_precision)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.key,
            "venue": self.venue,
            "symbol": self.symbol,
            "venue_symbol": self.venue_symbol,
            "asset_class": self.asset_class,
            "namespace": self.namespace,
            "price_precision": self.price_precision,
            "size_precision": self.size_precision,
            "channels": list(self.channels),
            "enabled": self.enabled,
            "created": self.created.isoformat() if self.created else None,
            "updated": self.updated.isoformat() if self.updated else None,
        }


def sqlalchemy_url(database_url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (psycopg 3, the driver the rest of Pulse uses)."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


def instrument_from_row(r: Any) -> Instrument:
    """A registry row (SQLAlchemy) as an :class:`Instrument`."""
    return Instrument(
        venue=r.venue,
        symbol=r.symbol,
        venue_symbol=r.venue_symbol,
        asset_class=r.asset_class,
        namespace=r.namespace,
        price_precision=r.price_precision,
        size_precision=r.size_precision,
        channels=tuple(r.channels),
        enabled=r.enabled,
        created=r.created,
        updated=r.updated,
    )


class RegistryReader:
    """Read the registry (reads see committed state). The table is created on first use."""

    def __init__(self, database_url: str, *, engine: Engine | None = None) -> None:
        self.engine = engine or sa.create_engine(
            sqlalchemy_url(database_url), pool_pre_ping=True, pool_size=2, max_overflow=2
        )
        self._ready = False

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def ensure_schema(self) -> None:
        if self._ready:
            return
        try:
            with self.engine.begin() as conn:
                # concurrent first runs (an ingester and `symbols add`) must not race on CREATE TABLE
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('pulse.instruments'))"))
                metadata.create_all(conn, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryError(f"cannot prepare the instrument registry: {error_reason(exc)}") from exc
        self._ready = True

    # -- reads ---------------------------------------------------------------------------------------
    def list(self, venue: str | None = None, *, enabled_only: bool = False) -> list[Instrument]:
        self.ensure_schema()
        q = sa.select(instruments).order_by(instruments.c.venue, instruments.c.symbol)
        if venue is not None:
            q = q.where(instruments.c.venue == venue)
        if enabled_only:
            q = q.where(instruments.c.enabled)
        return [instrument_from_row(r) for r in self._rows(q)]

    def get(self, venue: str, symbol: str) -> Instrument | None:
        self.ensure_schema()
        rows = self._rows(sa.select(instruments).where(instruments.c.venue == venue, instruments.c.symbol == symbol))
        return instrument_from_row(rows[0]) if rows else None

    def _rows(self, q: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(q))
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryError(f"cannot read the instrument registry: {error_reason(exc)}") from exc


def error_reason(exc: BaseException) -> str:
    """The first line of a database error (the driver's message when there is one)."""
    orig = getattr(exc, "orig", None)
    return str(orig or exc).strip().splitlines()[0]
