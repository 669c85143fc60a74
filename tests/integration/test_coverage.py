"""`pulse coverage`: per hour what is stored, from which source, the in-band gap markers, and closed vs missing
hours — on real PostgreSQL (a database of its own) with real Dukascopy ticks and a live venue's gap marker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from app.coverage import coverage, strip, summary
from ingesters.dukascopy.bi5 import decode_ticks, seq_base, to_quotes
from pulse.models import Status
from pulse.runtime import Endpoints
from sinks.postgres.mapping import to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.writer import CopyWriter
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
DAY = SHARED_DATA / "dukascopy" / "EURUSD" / "2019" / "01" / "04"
pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")
T0 = datetime(2019, 2, 4, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def db(endpoints: Endpoints) -> str:
    """Dukascopy hours 00-02 of Monday 2019-02-04 (03 left out), an OANDA gap marker at 01:20."""
    name = f"coverage_{time.time_ns()}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = endpoints.database_url.rsplit("/", 1)[0] + f"/{name}"
    ensure_schema(url)
    rows: dict[str, list] = {}
    for hour in range(3):
        start_ns = int((T0 + timedelta(hours=hour)).timestamp()) * 10**9
        ticks = decode_ticks((DAY / f"{hour:02d}h_ticks.bi5").read_bytes(), hour_start_ns=start_ns,
                             divisor=100_000, symbol="EURUSD")  # fmt: skip
        for q in to_quotes(ticks, symbol="EUR/USD", first_seq=seq_base(start_ns), volume_multiplier=1_000_000):
            table, row = to_row(q)
            rows.setdefault(table, []).append(row)
    gap_ns = int((T0 + timedelta(hours=1, minutes=20)).timestamp()) * 10**9
    gap = Status(
        venue="oanda", symbol="EUR/USD", ts_event=gap_ns, ts_recv=gap_ns, seq=1, kind="gap", detail="reconnect"
    )
    table, row = to_row(gap)
    rows.setdefault(table, []).append(row)
    with CopyWriter(url, application_name="coverage-test") as writer:
        writer.write(rows)
    return url


def test_hours_are_ok_gap_missing_or_closed(db: str) -> None:
    with psycopg.connect(db) as conn:
        week = coverage(conn, "EUR/USD", T0 - timedelta(days=2), T0 + timedelta(hours=5))  # from Saturday
    by_hour = {h.start: h for h in week}
    assert len(week) == 48 + 5
    assert (
        by_hour[T0].status == "ok"
        and by_hour[T0].sources == ["dukascopy"]
        and by_hour[T0].quotes == {"dukascopy": 3733}
    )
    assert by_hour[T0 + timedelta(hours=1)].status == "gap" and by_hour[T0 + timedelta(hours=1)].markers == {"gap": 1}
    assert by_hour[T0 + timedelta(hours=3)].status == "missing"  # Monday 03:00, market open, nothing stored
    assert by_hour[T0 - timedelta(days=1, hours=12)].status == "closed"  # Saturday noon
    # Sunday 22:00 UTC (17:00 New York): the FX market reopened, so it is missing, not closed
    assert by_hour[T0 - timedelta(hours=2)].status == "missing" and by_hour[T0 - timedelta(hours=3)].status == "closed"
    counts = summary(week)
    assert counts == {"ok": 2, "repaired": 0, "gap": 1, "closed": 46, "missing": 4}
    assert strip(week).endswith(" █▒█✗✗")


def test_cli_table_json_and_exit_status(db: str, tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_DATABASE__URL": db}
    base = [sys.executable, "-m", "cli", "--home", str(tmp_path), "coverage", "EUR/USD"]
    res = subprocess.run([*base, "--from", "2019-02-04T00", "--to", "2019-02-04T03", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    doc = json.loads(res.stdout)
    assert res.returncode == 1  # an hour with a gap marker
    assert [h["status"] for h in doc["hours"]] == ["ok", "gap", "ok"] and doc["summary"]["gap"] == 1
    clean = subprocess.run([*base, "--from", "2019-02-04T02", "--to", "2019-02-04T03"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    rows = [line.split() for line in clean.stdout.splitlines() if line.startswith("2019-02-04T02")]
    assert clean.returncode == 0 and rows == [["2019-02-04T02", "ok", "dukascopy:2474", "-"]]  # hour, quotes, trades
