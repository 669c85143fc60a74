"""Which database the sink is talking to: plain PostgreSQL, TimescaleDB, or TimescaleDB with the toolkit.

:func:`detect_mode` looks at the installed extensions and, when ``timescaledb`` / ``timescaledb_toolkit`` is
*available* on the server but not yet installed in this database, tries ``CREATE EXTENSION IF NOT EXISTS``.
That fails harmlessly (logged, mode stays plain) when the role may not create extensions, or when the
``timescaledb`` library is not in ``shared_preload_libraries``. The sink logs the mode at start; ``pulse
status`` reports :attr:`DbMode.name`.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from pulse.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class DbMode:
    timescaledb: bool
    toolkit: bool
    version: str | None  # timescaledb's extversion, e.g. "2.17.2"; None on plain PostgreSQL
    server_version: str = ""  # e.g. "15.18"
    toolkit_version: str | None = None

    @property
    def name(self) -> str:
        """``timescaledb+toolkit``, ``timescaledb`` or ``postgresql`` (what ``pulse status`` prints)."""
        if self.timescaledb:
            return "timescaledb+toolkit" if self.toolkit else "timescaledb"
        return "postgresql"

    @property
    def by_range(self) -> bool:
        """True when ``create_hypertable`` takes the 2.13+ dimension-builder form (``by_range``)."""
        return self.timescaledb and _version_tuple(self.version) >= (2, 13)


def _version_tuple(v: str | None) -> tuple[int, ...]:
    out = []
    for part in (v or "0").split("-")[0].split("."):
        out.append(int(part) if part.isdigit() else 0)
    return tuple(out)


def _installed(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())


def _try_create(conn: psycopg.Connection, name: str) -> bool:
    try:
        with conn.transaction():  # a savepoint when a transaction is open: a failure leaves it usable
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
        return True
    except psycopg.Error as exc:
        log.warning("extension available but not usable", extension=name, error=str(exc).strip().splitlines()[0])
        return False


def detect_mode(conn: psycopg.Connection, *, create: bool = True) -> DbMode:
    """The database's mode; with ``create`` install available Timescale extensions first (when permitted)."""
    available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
    installed = _installed(conn)
    if create:
        for ext in ("timescaledb", "timescaledb_toolkit"):
            wanted = ext in available and ext not in installed
            if wanted and (ext == "timescaledb" or "timescaledb" in installed) and _try_create(conn, ext):
                installed = _installed(conn)
    server = conn.execute("SHOW server_version").fetchone()
    return DbMode(
        timescaledb="timescaledb" in installed,
        toolkit="timescaledb_toolkit" in installed,
        version=installed.get("timescaledb"),
        server_version=str(server[0]).split()[0] if server else "",
        toolkit_version=installed.get("timescaledb_toolkit"),
    )


def detect_mode_url(url: str, *, create: bool = True) -> DbMode:
    """:func:`detect_mode` over a fresh autocommit connection to ``url``."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return detect_mode(conn, create=create)
