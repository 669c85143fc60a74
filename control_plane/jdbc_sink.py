"""The Pulsar IO JDBC sink of the historical namespace: historical quotes → a PostgreSQL table, inside Pulsar.

``pulse pulsar provision --jdbc-table T`` creates table ``T`` (when missing) and the built-in ``jdbc-postgres``
sink ``pulse-historical-jdbc`` on the cluster's functions worker. How the connector works (read from
``pulsar-io/jdbc`` 4.0.x, ``PostgresJdbcAutoSchemaSink``): it consumes with ``AUTO_CONSUME``, so a message must
carry the registered JSON schema's version (Pulse's producers declare it on a cluster with an admin API); it
reads the table's columns once at start and binds each column to the record field of the same name (absent
fields are NULL); strings go through ``setString``, so the JDBC URL carries ``stringtype=unspecified`` and
PostgreSQL casts the decimal strings to ``numeric`` exactly. Upsert on ``(venue, symbol, ts_event, seq)``: the
sink is at-least-once, and a redelivered tick rewrites its own row instead of adding a copy.

The sink reads every topic matching ``persistent://<tenant>/historical/.*\\.quote`` rather than a list: Apache
Pulsar 4.0 refuses to change a sink's input topics (``PUT /admin/v3/sinks/…`` answers 400 "Input Topics cannot
be altered"), while a pattern consumer is told about new topics by the broker. So ``pulse symbols add`` of a
historical instrument needs no sink update; it checks and reports that the sink follows the new topic.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from control_plane.provision import StepResult, provision_jdbc_sink
from control_plane.pulsar_admin import PulsarAdmin
from pulse.errors import ConfigError
from pulse.topics import topic

SINK_NAME = "pulse-historical-jdbc"
NAMESPACE = "historical"

#: Columns of the table: the scalar fields of the registered ``quote`` schema (pulsar/schemas/quote.schema.json),
#: by the same names. The ladders (``bids``/``asks``, arrays) have no column: the connector binds no array type.
QUOTE_COLUMNS: dict[str, str] = {
    "venue": "text NOT NULL",
    "symbol": "text NOT NULL",
    "type": "text NOT NULL",
    "ts_event": "bigint NOT NULL",
    "ts_recv": "bigint NOT NULL",
    "seq": "bigint NOT NULL",
    "bid": "numeric",
    "bid_size": "numeric",
    "ask": "numeric",
    "ask_size": "numeric",
    "tradeable": "boolean",
}
KEY = ("venue", "symbol", "ts_event", "seq")

_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_table(name: str) -> str:
    """A plain lower-case SQL identifier (the connector quotes nothing), else :class:`ConfigError`."""
    if not _TABLE.match(name):
        raise ConfigError(f"--jdbc-table {name!r}: lower-case letters, digits and _ only, not starting with a digit")
    return name


def topics_pattern(tenant: str) -> str:
    """Every historical quote topic of ``tenant`` (a Java regex, matched against whole topic names)."""
    return f"persistent://{tenant}/{NAMESPACE}/.*\\.quote"


def jdbc_url(database_url: str, host: str = "") -> str:
    """The JDBC URL of ``database_url`` (``postgresql://…``), optionally reached as ``host`` (the database as
    the broker sees it, e.g. a compose service name), with ``stringtype=unspecified`` (see the module doc)."""
    u = urlsplit(database_url)
    if u.scheme not in ("postgresql", "postgres") or not u.hostname:
        raise ConfigError("database.url must be postgresql://user:password@host:port/db for the JDBC sink")
    return f"jdbc:postgresql://{host or u.hostname}:{u.port or 5432}{u.path}?stringtype=unspecified"


def create_table_sql(table: str) -> str:
    cols = ", ".join(f"{c} {t}" for c, t in QUOTE_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS {check_table(table)} ({cols}, PRIMARY KEY ({', '.join(KEY)}))"


def ensure_table(database_url: str, table: str) -> StepResult:
    """Create the sink's table when missing (the connector reads its columns at start, so it must exist)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        existed = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        conn.execute(create_table_sql(table))  # type: ignore[arg-type]  # identifier checked by check_table
    return StepResult(f"table {table}", "exists" if existed and existed[0] else "created", "Pulsar IO JDBC sink")


async def provision_historical_sink(
    admin: PulsarAdmin, *, tenant: str, table: str, database_url: str, jdbc_host: str = ""
) -> StepResult:
    """The ``pulse-historical-jdbc`` sink: every historical quote topic → ``table``, upserting by :data:`KEY`."""
    u = urlsplit(database_url)
    return await provision_jdbc_sink(
        admin,
        name=SINK_NAME,
        tenant=tenant,
        namespace=NAMESPACE,
        topics_pattern=topics_pattern(tenant),
        jdbc_url=jdbc_url(database_url, jdbc_host),
        table_name=check_table(table),
        user_name=u.username or "",
        password=u.password or "",
        insert_mode="UPSERT",
        key=",".join(KEY),
        non_key=",".join(c for c in QUOTE_COLUMNS if c not in KEY),
    )


def follows(sink: dict[str, Any], topic_name: str) -> bool:
    """True when ``sink`` (a SinkConfig as the admin API returns it) reads ``topic_name``."""
    if topic_name in (sink.get("inputs") or []):
        return True
    for name, spec in (sink.get("inputSpecs") or {}).items():
        if ((spec or {}).get("regexPattern") and re.fullmatch(name, topic_name)) or name == topic_name:
            return True
    pattern = sink.get("topicsPattern") or ""
    return bool(pattern and re.fullmatch(pattern, topic_name))


async def sink_follows_instrument(admin: PulsarAdmin, tenant: str, venue: str, symbol: str) -> StepResult | None:
    """For ``pulse symbols add`` of a historical instrument: does the JDBC sink (if there is one) read its quote
    topic? None when the cluster has no such sink (or no functions worker). Reported, never raised: the
    instrument itself is fine."""
    from control_plane.pulsar_admin import AdminError

    step = f"sink {tenant}/{NAMESPACE}/{SINK_NAME}"
    try:
        sink = await admin.get_sink(tenant, NAMESPACE, SINK_NAME)
    except AdminError as exc:
        if exc.status in (404, 503):  # no functions worker on this cluster: no sink to follow
            return None
        # it did not answer (a loaded functions worker) or failed otherwise: say so, do not pretend there is none
        return StepResult(step, "unknown", f"could not read it: {exc}")
    if sink is None:
        return None
    name = topic(NAMESPACE, venue, symbol, "quote", tenant)
    if follows(sink, name):
        return StepResult(step, "exists", f"reads {name}")
    return StepResult(
        step,
        "exists",
        f"does NOT read {name}: it lists its input topics, which Apache Pulsar cannot change; delete it and run "
        f"`pulse pulsar provision --jdbc-table …` again (it then reads a topics pattern)",
    )
