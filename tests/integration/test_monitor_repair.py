"""`pulse monitor` repairs recent gaps (``monitor.repair``): a hole behind a gap marker in the last hours is refilled
from the local Kraken venue's REST history by `pulse monitor --once` (no Lambda configured: repairs only), every
trade then stored once; the next check finds nothing to repair and asks the venue nothing. Real PostgreSQL (a
database of its own), the real local venue, the `pulse` command in a subprocess."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from websockets.asyncio.client import connect

from app.coverage import coverage
from app.monitor import Monitor
from ingesters.kraken import protocol
from pulse.errors import ConfigError
from pulse.models import Status, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.mapping import to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.writer import CopyWriter
from tests.integration.test_kraken_pipeline import SimThread
from tests.procs import pulse, wait_for

pytestmark = pytest.mark.timeout(420)  # a `pulse monitor` process on a loaded machine
SIDES = {"b": "buy", "s": "sell"}


def own_database(endpoints: Endpoints) -> str:
    name = f"monitor_repair_{time.time_ns()}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = endpoints.database_url.rsplit("/", 1)[0] + f"/{name}"
    ensure_schema(url)
    return url


def trade(sym: str, ts: int, row: list) -> Trade:
    return Trade(venue="kraken", symbol=sym, ts_event=ts, ts_recv=ts, seq=row[6], price=Decimal(row[0]),
                 size=Decimal(row[1]), side=SIDES[row[3]], trade_id=str(row[6]), ord_type="market")  # fmt: skip


def stored(url: str, sym: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT trade_id, ts_event_ns FROM trades WHERE symbol = %s", (sym,)).fetchall()


def test_the_monitor_repairs_recent_gaps(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    sym = f"M{unique[:6].upper()}/USD"
    url = own_database(endpoints)
    with SimThread(symbols=[sym], rate=2000, seed=5, max_trades=900, keep_trading=True) as sim:

        async def touch() -> None:  # subscribe once and leave: the venue trades on, into its REST history
            async with connect(sim.url) as ws:
                await ws.send(protocol.subscribe("trade", [sym], req_id=1, snapshot=False))
                await ws.recv()

        asyncio.run(touch())
        wait_for(lambda: len(sim.tape.trade_ids(sym)) >= 900, "the venue's trades", timeout=120)
        tape = sim.tape.entries(sym)
        # what a live stream that lost its connection left: trades 1-300 and 601-900, a gap marker at trade 601
        kept = tape[:300] + tape[600:]
        marker_ns = tape[600][0]
        marker = Status(venue="kraken", symbol=sym, ts_event=marker_ns, ts_recv=marker_ns, seq=1, kind="gap",
                        detail="reconnected")  # fmt: skip
        rows: dict[str, list] = {}
        for ev in [*(trade(sym, ts, row) for ts, row in kept), marker]:
            table, row = to_row(ev)
            rows.setdefault(table, []).append(row)
        with CopyWriter(url, application_name="monitor-repair-test") as writer:
            writer.write(rows)

        env = {"PULSE_DATABASE__URL": url, "PULSE_MONITOR__REPAIR": f"kraken:{sym}", "PULSE_MONITOR__REPAIR_HOURS": "2",
               "PULSE_KRAKEN__REST_URL": sim.rest_url, "PULSE_KRAKEN__REST_INTERVAL_S": "0"}  # fmt: skip
        res = pulse(runtime_settings, "monitor", "--once", "--json", env=env, timeout=180)
        assert res.returncode == 0, res.stderr[-3000:]
        doc = json.loads(res.stdout)
        assert doc["skipped"] == "no availability Lambda configured: repairs only" and doc["ok"]
        assert doc["repairs"][f"kraken:{sym}"]["added"] == 300 and doc["repairs"][f"kraken:{sym}"]["error"] is None
        after = stored(url, sym)
        assert sorted((int(i), ts) for i, ts in after) == [(row[6], ts) for ts, row in tape]  # each trade once
        hour = datetime.fromtimestamp(marker_ns / 1e9, UTC).replace(minute=0, second=0, microsecond=0)
        with psycopg.connect(url) as conn:
            h = {x.start: x for x in coverage(conn, sym, hour, hour + timedelta(hours=1), venue="kraken")}[hour]
        assert h.status == "repaired" and h.repaired_by == ["kraken REST"]

        # the next check: nothing gapped or missing in the window, so nothing is asked of the venue
        requests = sim.tape.requests
        settings = runtime_settings.with_overrides(
            "test", monitor={"repair": [f"kraken:{sym}"], "repair_hours": 2},
            kraken={"rest_url": sim.rest_url, "rest_interval_s": 0.0},
        )  # fmt: skip
        mon = Monitor(settings, Endpoints(endpoints.pulsar_url, url, False), None)
        result = mon.check_once()
        assert result.repairs == {f"kraken:{sym}": {"hours": [], "added": 0, "error": None}} and result.ok
        assert sim.tape.requests == requests and len(stored(url, sym)) == 900

    with pytest.raises(ConfigError, match="binance:BTC/USDT has no history source"):
        Monitor(runtime_settings.with_overrides("test", monitor={"repair": ["binance:BTC/USDT"]}), endpoints, None)
