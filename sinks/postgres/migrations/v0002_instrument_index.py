"""v2 — (venue, symbol, time DESC) per table instead of (symbol, time).

Per-instrument range reads filter on venue too, and this is the order TimescaleDB compression segments and
sorts by. ``IF EXISTS``/``IF NOT EXISTS`` keep the step safe on a database someone already fixed by hand.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

TABLES = ("trades", "quotes", "book_top", "gaps")


def up(conn: Connection) -> None:
    for t in TABLES:  # fixed identifiers from this module, not input
        conn.execute(text(f'DROP INDEX IF EXISTS "{t}_symbol_time_idx"'))
        conn.execute(text(f'CREATE INDEX IF NOT EXISTS "{t}_instrument_time_idx" ON "{t}" (venue, symbol, time DESC)'))
