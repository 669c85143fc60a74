"""TimescaleDB reconciliation: hypertables, compression and retention, written against the 2.x documented API.

Run after the numbered migrations, in the same transaction and advisory lock, whenever the ``timescaledb``
extension is installed. Every call is idempotent, so running it on each sink start converges the database
on the config:

- ``create_hypertable`` — 2.13+: ``create_hypertable(rel, by_range('time', <chunk interval>), if_not_exists
  => TRUE, migrate_data => TRUE)``; older 2.x: the legacy ``create_hypertable(rel, 'time', chunk_time_interval
  => …, if_not_exists => TRUE, migrate_data => TRUE)``. ``migrate_data`` moves the rows of a table that
  already holds data (a plain-PostgreSQL database moving to TimescaleDB). A changed chunk interval goes
  through ``set_chunk_time_interval`` (applies to new chunks).
- compression — ``ALTER TABLE … SET (timescaledb.compress, timescaledb.compress_segmentby = 'venue, symbol',
  timescaledb.compress_orderby = 'time DESC')`` then ``add_compression_policy(rel, compress_after => …,
  if_not_exists => TRUE)``; a policy whose interval differs from the config is replaced
  (``remove_compression_policy`` + add), ``compress_after: null`` removes it.
- retention — ``add_retention_policy(rel, drop_after => …, if_not_exists => TRUE)``, replaced/removed the same way.

The unique natural keys all contain ``time``, as hypertables require.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pulse.log import get_logger

if TYPE_CHECKING:
    from sinks.postgres.config import SinkConfig
    from sinks.postgres.mode import DbMode

log = get_logger(__name__)


def _scalar(conn: Connection, query: str, **params: object) -> object:
    return conn.execute(text(query), params).scalar()


def _policy_interval(conn: Connection, table: str, proc: str, key: str) -> str | None:
    """The configured interval of ``proc``'s job on ``table`` (as text), or None when there is none."""
    return _scalar(  # type: ignore[return-value]
        conn,
        "SELECT (config ->> :key) FROM timescaledb_information.jobs"
        " WHERE proc_name = :proc AND hypertable_schema = current_schema() AND hypertable_name = :t",
        key=key,
        proc=proc,
        t=table,
    )


def _same_interval(conn: Connection, current: str, wanted: str) -> bool:
    return bool(_scalar(conn, "SELECT CAST(:a AS interval) = CAST(:b AS interval)", a=current, b=wanted))


def apply(conn: Connection, config: SinkConfig, mode: DbMode) -> list[str]:
    """Converge hypertables and policies on ``config``; return a description of each change made."""
    changes: list[str] = []
    ts = config.timescale
    segment_by = ", ".join(ts.segment_by)
    for table in sorted({t.table for t in config.tables.values()}):
        pol = config.policies(table)
        is_ht = _scalar(
            conn,
            "SELECT count(*) FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = current_schema() AND hypertable_name = :t",
            t=table,
        )
        if not is_ht:
            if mode.by_range:
                conn.execute(
                    text(
                        "SELECT create_hypertable(CAST(:t AS regclass), by_range('time', CAST(:i AS interval)),"
                        " if_not_exists => TRUE, migrate_data => TRUE)"
                    ),
                    {"t": table, "i": pol.chunk_interval},
                )
            else:
                conn.execute(
                    text(
                        "SELECT create_hypertable(CAST(:t AS regclass), 'time',"
                        " chunk_time_interval => CAST(:i AS interval), if_not_exists => TRUE, migrate_data => TRUE)"
                    ),
                    {"t": table, "i": pol.chunk_interval},
                )
            changes.append(f"{table}: hypertable on time, chunks of {pol.chunk_interval}")
        else:
            current = _scalar(
                conn,
                "SELECT time_interval FROM timescaledb_information.dimensions"
                " WHERE hypertable_schema = current_schema() AND hypertable_name = :t AND column_name = 'time'",
                t=table,
            )
            if current is not None and not _same_interval(conn, str(current), pol.chunk_interval):
                conn.execute(
                    text("SELECT set_chunk_time_interval(CAST(:t AS regclass), CAST(:i AS interval))"),
                    {"t": table, "i": pol.chunk_interval},
                )
                changes.append(f"{table}: chunk interval {pol.chunk_interval} for new chunks")
        compressed = _scalar(
            conn,
            "SELECT compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = current_schema() AND hypertable_name = :t",
            t=table,
        )
        if pol.compress_after is not None and not compressed:
            # identifiers and the two option strings come from the validated config (column names checked
            # against the metadata; order_by is a fixed-form config value) — ALTER TABLE takes no bind params
            conn.execute(
                text(
                    f'ALTER TABLE "{table}" SET (timescaledb.compress, '
                    f"timescaledb.compress_segmentby = '{segment_by}', "
                    f"timescaledb.compress_orderby = '{_order_by(ts.order_by)}')"
                )
            )
            changes.append(f"{table}: compression segment by {segment_by}")
        changes += _policy(
            conn,
            table,
            "policy_compression",
            "compress_after",
            pol.compress_after,
            "add_compression_policy",
            "remove_compression_policy",
            "compress_after",
        )
        changes += _policy(
            conn,
            table,
            "policy_retention",
            "drop_after",
            pol.retention,
            "add_retention_policy",
            "remove_retention_policy",
            "drop_after",
        )
    for c in changes:
        log.info("timescaledb", change=c)
    return changes


def _policy(
    conn: Connection, table: str, proc: str, key: str, wanted: str | None, add: str, remove: str, arg: str
) -> list[str]:
    current = _policy_interval(conn, table, proc, key)
    if current is not None and (wanted is None or not _same_interval(conn, current, wanted)):
        conn.execute(text(f"SELECT {remove}(CAST(:t AS regclass), if_exists => TRUE)"), {"t": table})
        current = None
        if wanted is None:
            return [f"{table}: {proc} removed"]
    if wanted is not None and current is None:
        conn.execute(
            text(f"SELECT {add}(CAST(:t AS regclass), {arg} => CAST(:i AS interval), if_not_exists => TRUE)"),
            {"t": table, "i": wanted},
        )
        return [f"{table}: {proc} after {wanted}"]
    return []


def _order_by(value: str) -> str:
    import re

    if not re.match(r"^[a-z_][a-z0-9_]*( (ASC|DESC))?( NULLS (FIRST|LAST))?$", value):
        raise ValueError(f"timescale.order_by {value!r}: expected e.g. 'time DESC'")
    return value
