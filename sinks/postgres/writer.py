"""Idempotent bulk writes: binary COPY into per-connection staging tables, then ``INSERT … ON CONFLICT DO NOTHING``.

A direct COPY into the target would be faster but fails the whole batch on the first duplicate, and a sink
that acknowledges after commit *will* see duplicates (redelivery after a crash, a partially acknowledged Pulsar
batch). So every table gets a ``TEMP`` twin created once per connection (``LIKE target INCLUDING DEFAULTS
ON COMMIT DELETE ROWS``); one :meth:`CopyWriter.write` is one transaction that COPYs each table's rows into
its twin and moves them over, skipping rows whose unique key already exists. ``rowcount`` of each
``INSERT … SELECT`` is the number of new rows; the difference to the rows given is the duplicates.

Per table the conflict rule is ``insert`` (``ON CONFLICT (key) DO NOTHING``: the stored row wins) or ``upsert``
(``ON CONFLICT (key) DO UPDATE SET`` every non-key column ``= EXCLUDED``: the newest row wins). An upsert
batch is de-duplicated on the key first, last row winning, because PostgreSQL refuses to update one row twice
in one statement.

**Optimistic direct COPY** (``insert`` tables): the COPY into the staging twin plus ``INSERT … SELECT`` costs the
server about twice the work of one COPY, and measured, the server was the bottleneck (writer ≈ 51% of the raw
COPY ceiling, the Python side idle two thirds of the time). Most batches hold no duplicate at all (a backfill's
first pass, live data), so each table's rows are first COPYed straight into the target inside a savepoint;
a unique violation (a redelivery, a re-run) rolls back to the savepoint and the same rows take the staging path.
The outcome is the same set of rows either way; after a fallback the table uses staging for the next
:data:`STAGING_AFTER_DUPLICATE` writes (redeliveries come in runs) before trying direct again. ``upsert`` tables
always use staging (a conflict must update, not fail).

Binary COPY applies no casts, so the column types are read from the catalogue on connect and passed to
``Copy.set_types``: ``int`` goes as ``int8``, ``Decimal`` as ``numeric`` (exact digits and scale).

Errors are mapped at the boundary:

::

    WriterError
    ├── DatabaseUnavailable   connection lost/refused or a server-side failure: the connection is dropped and
    │                         the next write reconnects; retry the same rows later
    └── RowsRejected          the server refused the data (DataError / IntegrityError): retrying the same rows
                              cannot succeed; the caller isolates the offending row(s)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pulse import errors
from pulse.errors import PulseError
from pulse.log import get_logger
from sinks.postgres.schema import COLUMNS

log = get_logger(__name__)


class WriterError(PulseError):
    """A batch could not be written."""


class DatabaseUnavailable(WriterError, errors.DatabaseUnavailable):
    """The database cannot be reached or failed; nothing was committed. Retry later."""


class RowsRejected(WriterError):
    """The database refused some row of the batch (bad data); nothing was committed."""


#: After a direct COPY met a duplicate, write this many batches of that table through staging before trying again.
STAGING_AFTER_DUPLICATE = 8


@dataclass(frozen=True)
class _TableSpec:
    copy: sql.Composed
    direct: sql.Composed | None  # COPY straight into the target (insert mode), None: always staging
    insert: sql.Composed
    types: tuple[int, ...]  # type oids for Copy.set_types, in column order
    dedupe_key: tuple[int, ...] | None  # upsert: row positions of the key columns


#: Per table: ("insert" | "upsert", key columns). Absent table: insert, ``ON CONFLICT DO NOTHING`` on any key.
Modes = Mapping[str, tuple[str, Sequence[str]]]


def _staging_name(table: str) -> str:
    return f"_pulse_stage_{table}"


class CopyWriter:
    """Writes ``{table: [row tuple, …]}`` in one transaction and returns the rows inserted per table.

    ``columns`` names, per table, the columns of the row tuples in order (default: every data table of
    :mod:`sinks.postgres.schema`). The connection is opened lazily and re-opened after a failure.
    """

    def __init__(
        self,
        url: str,
        columns: Mapping[str, Sequence[str]] = COLUMNS,
        *,
        modes: Modes | None = None,
        connect_timeout_s: int = 10,
        application_name: str = "pulse-sink-postgres",
        direct: bool = True,  # False: always COPY into staging + INSERT … ON CONFLICT (bench/ compares both)
    ) -> None:
        self.url = url
        self.columns = {t: tuple(cols) for t, cols in columns.items()}
        self.modes = {t: (m, tuple(k)) for t, (m, k) in (modes or {}).items()}
        for t, (m, k) in self.modes.items():
            if m not in ("insert", "upsert") or not set(k) <= set(self.columns.get(t, ())):
                raise WriterError(f"table {t!r}: bad mode {m!r} or key {k!r}")
        self._connect_timeout_s = connect_timeout_s
        self._direct = direct
        self._application_name = application_name
        self._conn: psycopg.Connection | None = None
        self._specs: dict[str, _TableSpec] = {}
        self._staging_left: dict[str, int] = {}  # table → staged writes left before trying direct COPY again
        self.connects = 0  # how many connections were opened (1 + reconnects)
        self.direct_writes = 0  # tables written by a direct COPY (no duplicate in the batch)
        self.direct_fallbacks = 0  # direct COPYs that met a duplicate and were redone through staging

    # -- connection ----------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self.url,
            autocommit=False,
            connect_timeout=self._connect_timeout_s,
            application_name=self._application_name,
        )
        try:
            specs = {}
            with conn.cursor() as cur:
                for table, cols in self.columns.items():
                    specs[table] = self._prepare(cur, table, cols, self.modes.get(table), self._direct)
            conn.commit()  # the staging tables outlive this transaction; their rows do not
        except BaseException:
            conn.close()
            raise
        self._specs = specs
        self.connects += 1
        log.info("database connected", tables=",".join(self.columns), connects=self.connects)
        return conn

    @staticmethod
    def _prepare(
        cur: psycopg.Cursor,
        table: str,
        cols: tuple[str, ...],
        mode: tuple[str, tuple[str, ...]] | None,
        direct: bool = True,
    ) -> _TableSpec:
        cur.execute(
            "SELECT attname, atttypid FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        )
        oids = dict(cur.fetchall())
        missing = [c for c in cols if c not in oids]
        if missing:
            raise WriterError(f"table {table!r} has no column(s) {', '.join(missing)}")
        target, stage = sql.Identifier(table), sql.Identifier(_staging_name(table))
        col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
        cur.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
                stage, target
            )
        )
        ident = sql.Identifier
        if mode is None:
            conflict = sql.SQL("ON CONFLICT DO NOTHING")
        elif mode[0] == "insert":
            conflict = sql.SQL("ON CONFLICT ({}) DO NOTHING").format(sql.SQL(", ").join(map(ident, mode[1])))
        else:
            rest = [c for c in cols if c not in mode[1]]
            conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(
                sql.SQL(", ").join(map(ident, mode[1])),
                sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in rest),
            )
        return _TableSpec(
            copy=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, col_list),
            direct=(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, col_list)
                if direct and (mode is None or mode[0] == "insert")
                else None
            ),
            insert=sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(
                target, col_list, col_list, stage, conflict
            ),
            types=tuple(oids[c] for c in cols),
            dedupe_key=tuple(cols.index(k) for k in mode[1]) if mode and mode[0] == "upsert" else None,
        )

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = self._connect()
            except psycopg.Error as exc:
                self._conn = None
                raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> CopyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------
    def write(self, rows_by_table: Mapping[str, Sequence[tuple]]) -> dict[str, int]:
        """Write all rows in one transaction; return ``{table: rows inserted}`` (duplicates excluded).

        Raises :class:`DatabaseUnavailable` (retry later) or :class:`RowsRejected` (bad data); either way
        nothing was committed. ``KeyError`` for a table this writer was not configured with.
        """
        work = [(t, rows) for t, rows in rows_by_table.items() if rows]
        if not work:
            return {}
        for table, _ in work:
            if table not in self.columns:
                raise KeyError(f"CopyWriter has no table {table!r} (configured: {', '.join(self.columns)})")
        conn = self._connection()
        counts: dict[str, int] = {}
        try:
            with conn.cursor() as cur:
                for table, rows in work:
                    spec = self._specs[table]
                    if spec.dedupe_key is not None:
                        rows = _last_per_key(rows, spec.dedupe_key)
                    if spec.direct is not None and self._try_direct(cur, table, spec, rows):
                        counts[table] = len(rows)
                        continue
                    with cur.copy(spec.copy) as copy:
                        copy.set_types(spec.types)
                        for row in rows:
                            copy.write_row(row)
                    cur.execute(spec.insert)
                    counts[table] = cur.rowcount
            conn.commit()
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            self._rollback()
            raise RowsRejected(f"{type(exc).__name__}: {exc}".strip()) from exc
        except psycopg.Error as exc:
            # Lost connection, server shutdown, or anything unexpected: start afresh on the next write. The
            # outcome of a commit that lost its reply is unknown — the retry is safe (ON CONFLICT DO NOTHING).
            self._drop()
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}".strip()) from exc
        return counts

    def _try_direct(self, cur: psycopg.Cursor, table: str, spec: _TableSpec, rows: Sequence[tuple]) -> bool:
        """COPY ``rows`` straight into ``table`` in a savepoint; False (rolled back) if one of them is a duplicate."""
        left = self._staging_left.get(table, 0)
        if left:
            self._staging_left[table] = left - 1
            return False
        assert spec.direct is not None
        cur.execute("SAVEPOINT pulse_direct")
        try:
            with cur.copy(spec.direct) as copy:
                copy.set_types(spec.types)
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT pulse_direct")
            self._staging_left[table] = STAGING_AFTER_DUPLICATE
            self.direct_fallbacks += 1
            return False
        cur.execute("RELEASE SAVEPOINT pulse_direct")
        self.direct_writes += 1
        return True

    def _rollback(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except psycopg.Error:
            self._drop()


def _last_per_key(rows: Sequence[tuple], key: tuple[int, ...]) -> list[tuple]:
    """``rows`` with one row per key — the last one given — in first-seen key order."""
    last: dict[tuple, tuple] = {}
    for row in rows:
        last[tuple(row[i] for i in key)] = row
    return list(last.values())
