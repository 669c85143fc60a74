"""The instrument registry's write side: ``pulse symbols add|remove|enable|disable`` change it here.

The table, the :class:`~pulse.registry.Instrument` row and the reads are the core's (:mod:`pulse.registry`);
every change is one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa

from pulse.registry import (
    Instrument,
    NotRegistered,
    RegistryError,
    RegistryReader,
    error_reason,
    instrument_from_row,
    instruments,
)

__all__ = ["Instrument", "Registry", "RegistryError"]


class Registry(RegistryReader):
    """Read and change the registry. Every change is one transaction; reads see committed state."""

    def upsert(self, inst: Instrument) -> tuple[Instrument, str]:
        """Insert ``inst`` or update the existing row's channels/precisions/enabled. Returns the row and
        ``"created"``, ``"updated"`` or ``"unchanged"``."""
        self.ensure_schema()
        values = {
            "venue_symbol": inst.venue_symbol,
            "asset_class": inst.asset_class,
            "namespace": inst.namespace,
            "price_precision": inst.price_precision,
            "size_precision": inst.size_precision,
            "channels": list(inst.channels),
            "enabled": inst.enabled,
        }
        c = instruments.c
        try:
            with self.engine.begin() as conn:
                old = conn.execute(
                    sa.select(instruments).where(c.venue == inst.venue, c.symbol == inst.symbol).with_for_update()
                ).first()
                if old is None:
                    row = conn.execute(
                        sa.insert(instruments)
                        .values(venue=inst.venue, symbol=inst.symbol, **values)
                        .returning(*instruments.c)
                    ).one()
                    return instrument_from_row(row), "created"
                if all(getattr(old, k) == v for k, v in values.items()):
                    return instrument_from_row(old), "unchanged"
                row = conn.execute(
                    sa.update(instruments)
                    .where(c.id == old.id)
                    .values(**values, updated=sa.func.now())
                    .returning(*instruments.c)
                ).one()
                return instrument_from_row(row), "updated"
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryError(f"cannot write instrument {inst.key}: {error_reason(exc)}") from exc

    def set_enabled(self, venue: str, symbol: str, enabled: bool) -> tuple[Instrument, bool]:
        """Enable or disable; returns the row and whether it changed. Unknown instruments are refused."""
        self.ensure_schema()
        c = instruments.c
        try:
            with self.engine.begin() as conn:
                old = conn.execute(
                    sa.select(instruments).where(c.venue == venue, c.symbol == symbol).with_for_update()
                ).first()
                if old is None:
                    raise NotRegistered(f"instrument {venue}:{symbol} is not in the registry (add it first)")
                if old.enabled == enabled:
                    return instrument_from_row(old), False
                row = conn.execute(
                    sa.update(instruments)
                    .where(c.id == old.id)
                    .values(enabled=enabled, updated=sa.func.now())
                    .returning(*instruments.c)
                ).one()
                return instrument_from_row(row), True
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryError(f"cannot update instrument {venue}:{symbol}: {error_reason(exc)}") from exc

    def remove(self, venue: str, symbol: str) -> Instrument:
        self.ensure_schema()
        c = instruments.c
        try:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.delete(instruments).where(c.venue == venue, c.symbol == symbol).returning(*instruments.c)
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise RegistryError(f"cannot remove instrument {venue}:{symbol}: {error_reason(exc)}") from exc
        if row is None:
            raise NotRegistered(f"instrument {venue}:{symbol} is not in the registry")
        return instrument_from_row(row)
