"""`pulse candles` over history and a live stream: one series stitched at an hour boundary, every chart interval
built on the one below, `--venue` for one source, an empty answer that says so. Real PostgreSQL (a database of
its own on the session's server), real Dukascopy ticks."""

from __future__ import annotations

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

from ingesters.dukascopy.bi5 import decode_ticks, seq_base, to_quotes
from pulse.runtime import Endpoints
from sinks.postgres.candles import CandleError, candles, raw_candles_query, seam_of
from sinks.postgres.mapping import to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.stitch import find_seam
from sinks.postgres.writer import CopyWriter
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
DAY = SHARED_DATA / "dukascopy" / "EURUSD" / "2019" / "01" / "04"
pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")
T0 = datetime(2019, 2, 4, tzinfo=UTC)
H = timedelta(hours=1)
LIVE_OFFSET = Decimal("0.00100")  # the "live" venue's prices, so a test can tell the sources apart


def hour_quotes(hour: int, venue: str, *, shift: timedelta = timedelta(0), offset: Decimal = Decimal(0)):
    start_ns = int((T0 + hour * H).timestamp()) * 10**9
    ticks = decode_ticks((DAY / f"{hour:02d}h_ticks.bi5").read_bytes(), hour_start_ns=start_ns, divisor=100_000,
                         symbol="EURUSD")  # fmt: skip
    quotes = to_quotes(ticks, symbol="EUR/USD", first_seq=seq_base(start_ns), volume_multiplier=1_000_000, venue=venue)
    d = int(shift.total_seconds()) * 10**9
    return [
        q.__class__(**{**{f: getattr(q, f) for f in q.__struct_fields__}, "ts_event": q.ts_event + d,
                       "seq": q.seq + d // 360, "bid": q.bid + offset, "ask": q.ask + offset})
        for q in quotes
    ]  # fmt: skip


@pytest.fixture(scope="module")
def db(endpoints: Endpoints) -> str:
    """History: Dukascopy 00:00-04:00. Live ("oanda", prices +0.001): from 01:30 to 04:00, then 04:00-06:00
    (hours 02-03 replayed two hours later), so it reaches later and starts inside an hour."""
    name = f"stitch_{time.time_ns()}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = endpoints.database_url.rsplit("/", 1)[0] + f"/{name}"
    ensure_schema(url)
    rows = [q for h in range(4) for q in hour_quotes(h, "dukascopy")]
    live = [q for h in (1, 2, 3) for q in hour_quotes(h, "oanda", offset=LIVE_OFFSET)]
    live = [q for q in live if q.ts_event >= int((T0 + timedelta(hours=1, minutes=30)).timestamp()) * 10**9]
    live += [q for h in (2, 3) for q in hour_quotes(h, "oanda", shift=2 * H, offset=LIVE_OFFSET)]
    with CopyWriter(url, application_name="stitch-test") as writer:
        table_rows: dict[str, list] = {}
        for q in rows + live:
            table, row = to_row(q)
            table_rows.setdefault(table, []).append(row)
        writer.write(table_rows)
    return url


def test_seam_rule() -> None:
    t = T0
    # live starts inside hour 1: it takes over at 02:00 (history reaches 04:00)
    seam = find_seam({"dukascopy": (t, t + 4 * H - timedelta(seconds=1)), "oanda": (t + 1.5 * H, t + 6 * H)})
    assert (seam.before, seam.after, seam.at) == ("dukascopy", "oanda", t + 2 * H)
    # history ends before the live stream's first whole hour: the live source takes over where history ends
    seam = find_seam({"dukascopy": (t, t + 1 * H + timedelta(minutes=5)), "oanda": (t + 1.5 * H, t + 6 * H)})
    assert seam.at == t + 2 * H  # min(ceil 01:30 → 02:00, floor 01:05 + 1 h = 02:00)
    seam = find_seam({"dukascopy": (t, t + timedelta(minutes=50)), "oanda": (t + 1.5 * H, t + 6 * H)})
    assert seam.at == t + H  # history's last hour ends at 01:00: the live stream from there on
    # the roles follow the data, not the names
    seam = find_seam({"a": (t + 1.5 * H, t + 6 * H), "z": (t, t + 4 * H)})
    assert (seam.before, seam.after) == ("z", "a")


def test_stitched_minutes_no_duplicate_or_missing_bucket_at_the_seam(db: str) -> None:
    end = T0 + 6 * H
    with psycopg.connect(db) as conn:
        seam = seam_of(conn, "EUR/USD", start=T0, end=end)
        both = candles(conn, "EUR/USD", interval="1m", start=T0, end=end)
        hist = candles(conn, "EUR/USD", interval="1m", start=T0, end=end, venue="dukascopy")
        live = candles(conn, "EUR/USD", interval="1m", start=T0, end=end, venue="oanda")
    assert seam is not None and seam.as_dict() == {
        "history": "dukascopy",
        "live": "oanda",
        "seam": "2019-02-04T02:00:00+00:00",
    }
    at = T0 + 2 * H
    want = [r for r in hist if r.bucket < at] + [r for r in live if r.bucket >= at]
    assert both == want
    buckets = [r.bucket for r in both]
    assert len(buckets) == len(set(buckets)) == 360  # every minute of 00:00-06:00 exactly once
    assert buckets == [T0 + timedelta(minutes=i) for i in range(360)]
    assert both[119] == hist[119] and both[120] == live[30]  # 01:59 from history, 02:00 from the live stream
    assert both[120].open - hist[120].open == LIVE_OFFSET


@pytest.mark.parametrize("interval", ["1s", "5m", "15m", "1h", "4h", "12h", "1d", "1w"])
def test_every_interval_is_the_stitched_minutes_rolled_up(db: str, interval: str) -> None:
    end = T0 + 6 * H
    with psycopg.connect(db) as conn:
        if interval == "1s":
            got = candles(conn, "EUR/USD", interval="1s", start=T0 + 2 * H - timedelta(minutes=1),
                          end=T0 + 2 * H + timedelta(minutes=1))  # fmt: skip
            minutes = candles(conn, "EUR/USD", interval="1m", start=T0 + 2 * H - timedelta(minutes=1),
                              end=T0 + 2 * H + timedelta(minutes=1))  # fmt: skip
            assert [sum(r.ticks for r in got if r.bucket.minute == m.bucket.minute) for m in minutes] == [
                m.ticks for m in minutes
            ]
            return
        got = candles(conn, "EUR/USD", interval=interval, start=T0, end=end)
        minutes = candles(conn, "EUR/USD", interval="1m", start=T0, end=end)
    width = {"5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "12h": 43200, "1d": 86400, "1w": 604800}[interval]
    groups: dict[datetime, list] = {}
    for m in minutes:
        origin = datetime(1970, 1, 5, tzinfo=UTC) if interval == "1w" else datetime(1970, 1, 1, tzinfo=UTC)
        key = origin + timedelta(seconds=(m.bucket - origin).total_seconds() // width * width)
        groups.setdefault(key, []).append(m)
    assert [r.bucket for r in got] == sorted(groups)
    for r in got:
        part = groups[r.bucket]
        assert (r.open, r.close, r.high, r.low) == (
            part[0].open, part[-1].close, max(p.high for p in part), min(p.low for p in part)
        )  # fmt: skip
        assert r.volume == sum(p.volume for p in part) and r.ticks == sum(p.ticks for p in part)
    if interval == "1w":
        assert got[0].bucket == T0  # 2019-02-04 is a Monday: weeks start on Monday


@pytest.mark.parametrize(("interval", "width"), [("15m", 900), ("4h", 14_400), ("12h", 43_200)])
def test_built_intervals_equal_one_query_over_the_rows(db: str, interval: str, width: int) -> None:
    """Rolled up from the interval below = computed straight from the raw rows (one venue, so no seam)."""
    with psycopg.connect(db) as conn:
        built = candles(conn, "EUR/USD", interval=interval, start=T0, end=T0 + 4 * H, venue="dukascopy")
        params = {"symbol": "EUR/USD", "start": T0, "end": T0 + 12 * H, "width": timedelta(seconds=width),
                  "venue": "dukascopy"}  # fmt: skip
        raw = conn.execute(raw_candles_query("quotes", "bid", by_venue=False), params).fetchall()
    assert [(r.bucket, r.open, r.high, r.low, r.close, r.volume, r.ticks) for r in built] == [
        (r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in raw
    ]


def test_a_third_venue_is_refused_and_venue_selects_one(db: str) -> None:
    with psycopg.connect(db) as conn:
        only = candles(conn, "EUR/USD", interval="1h", start=T0, end=T0 + 6 * H, venue="dukascopy")
        assert [r.bucket for r in only] == [T0 + h * H for h in range(4)]
        with conn.transaction(force_rollback=True):
            conn.execute(
                "INSERT INTO quotes (venue, symbol, time, ts_event_ns, ts_recv_ns, seq, channel, bid, tradeable)"
                " VALUES ('kraken', 'EUR/USD', %s, %s, 0, 1, 'quote', 1.1, true)",
                (T0, int(T0.timestamp()) * 10**9),
            )
            with pytest.raises(CandleError, match=r"3 venues in this range \(dukascopy, kraken, oanda\): pass venue"):
                candles(conn, "EUR/USD", interval="1m", start=T0, end=T0 + 6 * H)


def test_cli_stitches_and_says_when_there_is_nothing(db: str, tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_DATABASE__URL": db}
    base = [sys.executable, "-m", "cli", "--home", str(tmp_path), "candles", "EUR/USD"]
    res = subprocess.run([*base, "--interval", "4h", "--from", "2019-02-04T00:00", "--to", "2019-02-04T06:00"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "# stitched: dukascopy before 2019-02-04T02:00Z, oanda from then on" in res.stdout
    assert res.stdout.count("2019-02-04T0") == 3  # the stitched line and two 4h buckets
    empty = subprocess.run([*base, "--from", "2030-01-01T00:00", "--to", "2030-01-01T01:00", "--json"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert empty.returncode == 1 and json.loads(empty.stdout) == []
    assert "no EUR/USD candles in [2030-01-01T00:00, 2030-01-01T01:00) UTC" in empty.stderr
