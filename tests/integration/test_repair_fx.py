"""`pulse repair` for FX from Dukascopy, and coverage's market calendar for a Dukascopy-only instrument — real
PostgreSQL (a database of its own), real Dukascopy hours served by the local Dukascopy venue (JSON data API), the
`pulse` command in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from app.coverage import coverage
from app.repair import repair
from ingesters.dukascopy.bi5 import decode_ticks, seq_base, to_quotes
from ingesters.dukascopy.simulator import DukascopySimulator
from pulse.models import Status
from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.mapping import to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.writer import CopyWriter
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
ROOT = SHARED_DATA / "dukascopy"
DAY = ROOT / "EURUSD" / "2019" / "01" / "04"
pytestmark = [
    pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}"),
    pytest.mark.timeout(420),  # several `pulse` processes on a loaded machine
]
T0 = datetime(2019, 2, 4, tzinfo=UTC)  # a Monday
TOTAL = 12_000  # ticks in the four shipped hours


def quotes_of(hour: int) -> list:
    start_ns = int((T0 + timedelta(hours=hour)).timestamp()) * 10**9
    ticks = decode_ticks((DAY / f"{hour:02d}h_ticks.bi5").read_bytes(), hour_start_ns=start_ns, divisor=100_000,
                         symbol="EURUSD")  # fmt: skip
    return list(to_quotes(ticks, symbol="EUR/USD", first_seq=seq_base(start_ns), volume_multiplier=1_000_000))


def own_db(endpoints: Endpoints) -> str:
    name = f"repair_fx_{time.time_ns()}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = endpoints.database_url.rsplit("/", 1)[0] + f"/{name}"
    ensure_schema(url)
    return url


@pytest.fixture
def db(endpoints: Endpoints) -> str:
    """What a backfill and a live stream left: Dukascopy hours 00 and 02 whole, 01 only its first half, 03 not at
    all; an OANDA gap marker at 01:20."""
    url = own_db(endpoints)
    one = quotes_of(1)
    stored = [*quotes_of(0), *one[: len(one) // 2], *quotes_of(2)]
    gap_ns = int((T0 + timedelta(hours=1, minutes=20)).timestamp()) * 10**9
    marker = Status(venue="oanda", symbol="EUR/USD", ts_event=gap_ns, ts_recv=gap_ns, seq=1, kind="gap", detail="x")
    rows: dict[str, list] = {}
    for ev in [*stored, marker]:
        table, row = to_row(ev)
        rows.setdefault(table, []).append(row)
    with CopyWriter(url, application_name="repair-test") as writer:
        writer.write(rows)
    return url


def stored_quotes(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT ts_event_ns, seq, bid, ask, bid_size, ask_size FROM quotes WHERE venue = 'dukascopy'"
            " AND symbol = 'EUR/USD' ORDER BY ts_event_ns, seq"
        ).fetchall()


async def pulse_repair(url: str, api_url: str, tmp: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PULSE_DATABASE__URL": url, "PULSE_DUKASCOPY__BASE_URL": api_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "--home", str(tmp), "repair", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


def test_dukascopy_only_fx_weekends_are_closed_not_missing(db: str) -> None:
    with psycopg.connect(db) as conn:  # only the Dukascopy rows: no OANDA calendar to lean on
        week = coverage(conn, "EUR/USD", T0 - timedelta(days=2), T0 + timedelta(hours=5), venue="dukascopy")
    by = {h.start: h.status for h in week}
    assert by[T0 - timedelta(days=1, hours=12)] == "closed"  # Saturday noon: Dukascopy's weekly close
    assert by[T0 - timedelta(hours=3)] == "closed"  # Sunday 21:00 UTC (winter): still closed
    assert by[T0 - timedelta(hours=2)] == "missing"  # Sunday 22:00 UTC: FX reopened, nothing stored
    assert by[T0 + timedelta(hours=3)] == "missing" and by[T0] == "ok"
    with psycopg.connect(db) as conn:  # a Dukascopy crypto instrument trades through the weekend: no closed hours
        btc = coverage(conn, "BTC/USD", T0 - timedelta(days=2), T0, venue="dukascopy")
    assert {h.status for h in btc} == {"missing"}


async def test_repair_refills_fx_from_dukascopy_once(db: str, tmp_path: Path) -> None:
    expected = sorted((q.ts_event, q.seq, q.bid, q.ask, q.bid_size, q.ask_size) for h in range(4) for q in quotes_of(h))
    before = stored_quotes(db)
    async with DukascopySimulator(ROOT) as sim:
        args = ("oanda:EUR/USD", "--from", "2019-02-04T00", "--to", "2019-02-04T04", "--json")
        rc, out, err = await pulse_repair(db, sim.api_url, tmp_path, *args)
        assert rc == 0, err[-2000:]
        first = json.loads(out)
        rc, out, err = await pulse_repair(db, sim.api_url, tmp_path, *args)
        assert rc == 0, err[-2000:]
        second = json.loads(out)
        asked = sum(sim.stats.by_path.values())
        weekend = ("oanda:EUR/USD", "--from", "2019-02-02T00", "--to", "2019-02-03T22", "--json")
        rc, out, err = await pulse_repair(db, sim.api_url, tmp_path, *weekend)
        assert rc == 0, err[-2000:]
        closed = json.loads(out)
        assert sum(sim.stats.by_path.values()) == asked  # the weekly close is not asked for
        # Sunday 22:00 UTC: the market is open, and the local venue has no file for it (404): failed, named
        rc, out, err = await pulse_repair(db, sim.api_url, tmp_path, "oanda:EUR/USD", "--from", "2019-02-03T22",
                                          "--to", "2019-02-03T23", "--json")  # fmt: skip
        assert rc == 1 and "404" in json.loads(out)["hours"][0]["error"]
    assert (first["source"], first["stored_as"], first["instrument"]) == ("dukascopy", "dukascopy", "oanda:EUR/USD")
    assert first["fetched"] == TOTAL and first["added"] == TOTAL - len(before)  # exactly what was missing
    assert [h["status"] for h in first["hours"]] == ["repaired"] * 4
    assert second["fetched"] == TOTAL and second["added"] == 0  # run twice: nothing new
    assert [h["status"] for h in closed["hours"]] == ["closed"] * 46 and closed["fetched"] == 0
    after = stored_quotes(db)
    assert sorted(after) == expected and len(after) == len(set(after)) == TOTAL  # every tick once, exact
    with psycopg.connect(db) as conn:
        hours = {h.start: h for h in coverage(conn, "EUR/USD", T0, T0 + timedelta(hours=4))}
        recorded = conn.execute("SELECT count(*), sum(rows_added) FROM repairs").fetchone()
    assert recorded == (8, TOTAL - len(before))  # 4 hours, twice (closed and failed hours are not recorded)
    one, three = hours[T0 + timedelta(hours=1)], hours[T0 + timedelta(hours=3)]
    assert one.markers == {"gap": 1} and one.status == "repaired" and one.repaired_by == ["dukascopy"]
    assert three.status == "repaired" and three.quotes == {"dukascopy": 12_000 - 3733 - 2474 - len(quotes_of(1))}
    assert hours[T0].status == "ok"  # nothing was missing there: the repair added nothing
    env = {**os.environ, "PULSE_DATABASE__URL": db}
    text = subprocess.run([sys.executable, "-m", "cli", "--home", str(tmp_path), "coverage", "EUR/USD", "--from",  # noqa: ASYNC221
                           "2019-02-04T00", "--to", "2019-02-04T04"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120).stdout  # fmt: skip
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in text.splitlines() if line.startswith("2019-")}
    assert rows["2019-02-04T00"].startswith("ok (checked: dukascopy)")  # columns aligned however the table pads
    assert rows["2019-02-04T01"].startswith("repaired (dukascopy)")


def test_repair_refuses_what_it_cannot_do(db: str, tmp_path: Path) -> None:
    async def run(*args: str) -> tuple[int, str, str]:
        return await pulse_repair(db, "http://127.0.0.1:9/v1", tmp_path, *args)

    rc, _out, err = asyncio.run(run("binance:BTC/USDT", "--from", "2019-02-04T00", "--to", "2019-02-04T01"))
    assert rc == 2 and "binance:BTC/USDT has no history source" in err
    rc, _out, err = asyncio.run(run("oanda:EUR/USD", "--from", "2019-02-04T02", "--to", "2019-02-04T01"))
    assert rc == 2 and "nothing to repair" in err
    rc, _out, err = asyncio.run(run("nosuch:EUR/USD", "--from", "2019-02-04T00", "--to", "2019-02-04T01"))
    assert rc == 2 and "unknown venue" in err
    rc, out, err = asyncio.run(run("oanda:EUR/USD", "--from", "2019-02-04T00", "--to", "2019-02-04T01", "--json"))
    doc = json.loads(out)  # the source does not answer: the hour failed, named, nothing recorded
    assert rc == 1 and doc["hours"][0]["status"] == "failed" and doc["hours"][0]["error"]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM repairs").fetchone() == (0,)


def test_any_venue_with_a_history_source_is_repaired_through_the_seam(
    endpoints: Endpoints, runtime_settings: Settings
) -> None:
    """A venue defined here (no other file edited) declares a history source: `pulse repair`'s code refills it,
    dedupes by trade id on the second run and coverage shows the hours repaired by its label."""
    from pulse import venues
    from pulse.models import Trade
    from pulse.venues import HistorySource, Resolved, Venue

    url = own_db(endpoints)
    calls: list[tuple[str, datetime, datetime]] = []

    async def fetch(settings: object, symbol: str, start: datetime, end: datetime) -> list[Trade]:
        calls.append((symbol, start, end))
        base = int(start.timestamp()) * 10**9
        return [Trade(venue="fakehist", symbol=symbol, ts_event=base + i * 10**9, ts_recv=0, seq=0,
                      price=Decimal("1.5"), size=Decimal(i + 1), side="buy", trade_id=f"{start:%H}-{i}")
                for i in range(3)]  # fmt: skip

    fake = Venue(name="fakehist", namespace="crypto", channels=("trade",), default_channels=("trade",), live=True,
                 resolve=lambda t: Resolved("AAA/BBB", "AAABBB", "crypto", 4, 2),
                 history=HistorySource(label="fake REST", channel="trade", fetch=fetch))  # fmt: skip
    venues.register(fake)
    try:
        first = repair(
            runtime_settings, url, "fakehist:AAA/BBB", T0, T0 + timedelta(hours=2), now=T0 + timedelta(hours=5)
        )
        second = repair(runtime_settings, url, "fakehist:AAA/BBB", T0, T0 + timedelta(hours=2))
        with psycopg.connect(url) as conn:
            hours = coverage(conn, "AAA/BBB", T0, T0 + timedelta(hours=2))
            rows = conn.execute("SELECT count(*), count(DISTINCT trade_id) FROM trades").fetchone()
    finally:
        venues.unregister("fakehist")
    assert [(c[1], c[2]) for c in calls[:2]] == [
        (T0, T0 + timedelta(hours=1)),
        (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
    ]
    assert (first.added, second.added, second.fetched, rows) == (6, 0, 6, (6, 6))
    assert [(h.status, h.repaired_by) for h in hours] == [("repaired", ["fake REST"])] * 2
