"""Migrations on a real PostgreSQL: a foundation (v1) database moves forward with its rows, a fresh one ends
where the metadata is, and (marked ``timescale``) the TimescaleDB path makes hypertables with policies."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import inspect, text

from pulse.runtime import Endpoints
from sinks.postgres.config import parse_sink_config
from sinks.postgres.migrations import LATEST, engine_for, migrate, prepare, v0001_initial, version_table
from sinks.postgres.mode import detect_mode_url
from sinks.postgres.schema import DATA_TABLES, repairs


@pytest.fixture
def fresh_db(endpoints: Endpoints, unique: str) -> Iterator[str]:
    name = f"mig_{unique}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield psycopg.conninfo.make_conninfo(endpoints.database_url, dbname=name)
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _indexes(url: str) -> dict[str, set[str]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            return {t.name: {i["name"] for i in insp.get_indexes(t.name)} for t in (*DATA_TABLES, repairs)}
    finally:
        engine.dispose()


def test_v1_database_migrates_forward_keeping_rows(fresh_db: str) -> None:
    engine = engine_for(fresh_db)
    with engine.begin() as conn:  # what the foundation sink's ensure_schema left behind
        v0001_initial.up(conn)
        version_table.create(conn)
        conn.execute(version_table.insert().values(version=1, description="trades, quotes, book_top, gaps"))
        conn.execute(
            text("INSERT INTO trades VALUES ('kraken','BTC/USD','2025-01-01T00:00:00Z',1,2,3,'t1',1.50,2,'buy',NULL)")
        )
    engine.dispose()
    assert migrate(fresh_db) == LATEST
    assert migrate(fresh_db) == LATEST  # idempotent
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT array_agg(version ORDER BY version) FROM pulse_schema_version").fetchone() == (
            list(range(1, LATEST + 1)),
        )
        assert conn.execute("SELECT trade_id, price::text FROM trades").fetchall() == [("t1", "1.50")]
    idx = _indexes(fresh_db)
    assert "trades_instrument_time_idx" in idx["trades"] and "trades_symbol_time_idx" not in idx["trades"]


def test_fresh_database_ends_where_the_metadata_is(fresh_db: str) -> None:
    mode = prepare(fresh_db)
    assert mode.name == detect_mode_url(fresh_db, create=False).name
    idx = _indexes(fresh_db)
    for t in DATA_TABLES:
        assert {i.name for i in t.indexes} <= idx[t.name], t.name
    with psycopg.connect(fresh_db) as conn:  # v3: the repairs table, with the metadata's columns
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'repairs' ORDER BY ordinal_position"
        ).fetchall()
    assert [c for (c,) in cols] == [c.name for c in repairs.columns]
    assert "repairs_instrument_hour_idx" in idx["repairs"]


TIMESCALE_URL = os.environ.get("PULSE_TEST_TIMESCALE_URL", "")


@pytest.fixture
def timescale_url() -> str:
    if not TIMESCALE_URL:
        pytest.skip("PULSE_TEST_TIMESCALE_URL not set (no TimescaleDB)")
    with psycopg.connect(TIMESCALE_URL, connect_timeout=5):
        pass
    return TIMESCALE_URL


@pytest.mark.timescale
def test_timescale_hypertables_and_policies(timescale_url: str) -> None:
    cfg = parse_sink_config(
        {
            "topics": ["persistent://market-data/historical/dukascopy.EUR-USD.quote"],
            "timescale": {"enabled": "on", "chunk_interval": "1 day", "compress_after": "7 days"},
            "tables": {"status": {"timescale": {"retention": "30 days"}}},
        }
    )
    mode = prepare(timescale_url, cfg)
    assert mode.timescaledb and mode.version
    prepare(timescale_url, cfg)  # converged: a second run changes nothing and does not fail
    with psycopg.connect(timescale_url) as conn:
        hts = dict(
            conn.execute(
                "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
            ).fetchall()
        )
        assert {"trades", "quotes", "book_top", "gaps"} <= set(hts) and all(hts[t] for t in ("trades", "gaps"))
        seg = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'trades' AND segmentby_column_index IS NOT NULL ORDER BY segmentby_column_index"
        ).fetchall()
        assert [r[0] for r in seg] == ["venue", "symbol"]
        jobs = set(
            conn.execute(
                "SELECT hypertable_name, proc_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
            ).fetchall()
        )
        assert ("trades", "policy_compression") in jobs and ("gaps", "policy_retention") in jobs
        assert ("trades", "policy_retention") not in jobs
