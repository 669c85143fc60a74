"""Whether what the demo's ingesters published and what its sink stored reconcile, and if not, the difference.

Three checks, each a count a user can verify in the demo's own database (which holds only this run's rows):

1. **delivered**: every message published on a topic the sink stores reached the sink (``sink_received``);
2. **accounted**: every event in them was stored once or recognised as a repeat (a venue's replay after a
   reconnect): ``stored + duplicates`` equals the events published (a backfill's ``QuoteBatch`` message carries
   many ticks, so its ticks count, not its messages);
3. **in the database**: each table holds exactly the rows the sink says it inserted.
"""

from __future__ import annotations

from typing import Any


def differences(snap: dict[str, Any]) -> list[str]:
    """What does not reconcile in a final demo snapshot (empty when everything does), each naming the counts."""
    out: list[str] = []
    published, received = int(snap["published_data"]), int(snap["sink_received"])
    if received != published:
        verb = "missing" if received < published else "more than published"
        out.append(
            f"published {published:,} messages on the topics the sink stores, the sink received {received:,} "
            f"({abs(published - received):,} {verb})"
        )
    backfill = snap.get("backfill") or {}
    events = published - int(backfill.get("messages", 0)) + int(backfill.get("ticks_published", 0))
    stored, duplicates = int(snap["stored"]), int(snap["duplicates"])
    if stored + duplicates != events:
        out.append(
            f"published {events:,} events, the sink stored {stored:,} and skipped {duplicates:,} repeats "
            f"({events - stored - duplicates:+,} unaccounted)"
        )
    in_db: dict[str, int] = snap.get("rows_in_database") or {}
    for table, n in sorted((snap.get("sink_stored") or {}).items()):
        if in_db.get(table) != n:
            out.append(f"the sink inserted {n:,} rows into {table}, the table holds {in_db.get(table, 0):,}")
    return out


def table_counts(url: str, tables: list[str]) -> dict[str, int]:
    """``count(*)`` of each table (the demo's database is its own: every row is this run's)."""
    import psycopg
    from psycopg import sql

    out: dict[str, int] = {}
    with psycopg.connect(url, connect_timeout=10) as conn:
        for table in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            out[table] = int(row[0]) if row else 0
    return out
