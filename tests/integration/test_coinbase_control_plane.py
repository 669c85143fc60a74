"""`pulse symbols add/remove coinbase:…` against a running Coinbase ingester and sink (real processes, the local
Coinbase venue, pulsar-lite and PostgreSQL; every process stopped by pid); a bare `BTC/USD` is refused as ambiguous
before anything changes."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.integration.test_coinbase_pipeline import SimThread, stored_trades
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # several processes on a loaded 2-core machine


def markers(url: str, symbol: str, kind: str) -> list[int]:
    with psycopg.connect(url) as conn:
        try:
            rows = conn.execute("SELECT ts_recv_ns FROM gaps WHERE venue='coinbase' AND symbol=%s AND kind=%s "
                                "ORDER BY 1", (symbol, kind)).fetchall()  # fmt: skip
        except psycopg.errors.UndefinedTable:
            return []
    return [r[0] for r in rows]


def trades_after(url: str, symbol: str, ts_recv_ns: int) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM trades WHERE venue='coinbase' AND symbol=%s AND ts_recv_ns > %s",
                            (symbol, ts_recv_ns)).fetchone()[0]  # fmt: skip


def test_symbols_add_and_remove_reach_a_running_coinbase_ingester_and_sink(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s, url = runtime_settings, endpoints.database_url
    old, new = f"CA{unique[:6].upper()}/USD", f"CB{unique[:6].upper()}/USD"
    res = pulse(s, "symbols", "add", "BTC/USD")
    assert res.returncode == 2 and "ambiguous" in res.stderr and "coinbase:BTC/USD" in res.stderr
    assert "kraken:BTC/USD" in res.stderr
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50"}
    with SimThread(symbols=[old, new], rate=300.0, seed=9) as sim:
        sink = pulse_cmd(s, "sink", "run", "--source", f"crypto/coinbase={old}", env=env)
        ing = pulse_cmd(s, "ingest", "coinbase", "--symbols", old, "--channels", "trade", "--url", sim.url,
                        "--rest-url", sim.rest_url, "--json")  # fmt: skip
        with process(sink), process(ing):
            # generous timeouts: the machine is shared (what is asserted is correctness, not speed)
            wait_for(lambda: stored_trades(url, [old]), f"{old} trades in the database", timeout=120.0)
            assert stored_trades(url, [new]) == []  # not subscribed yet

            added = pulse(s, "symbols", "add", f"coinbase:{new.replace('/', '-')}", "--channels", "trade", "--json")
            assert added.returncode == 0, added.stderr
            doc = json.loads(added.stdout)
            assert doc["instrument"]["instrument"] == f"coinbase:{new}"
            assert doc["instrument"]["venue_symbol"] == new.replace("/", "-")
            wait_for(lambda: stored_trades(url, [new]), f"{new} trades in the database", timeout=60.0)
            assert wait_for(lambda: markers(url, new, "subscribed"), "the subscribed marker")

            removed = pulse(s, "symbols", "remove", f"coinbase:{new}")
            assert removed.returncode == 0, removed.stderr
            gone_at = wait_for(lambda: markers(url, new, "unsubscribed"), "the unsubscribed marker")[-1]
            time.sleep(1.0)  # the old instrument keeps streaming meanwhile
            assert trades_after(url, new, gone_at) == 0

            code, out, err = stop(ing)
            assert code == 0, err
            summary = json.loads(out)
            old_sent = [t for t in sim.sent_trades if t.symbol == old]
            wait_for(lambda: len(stored_trades(url, [old])) >= len(old_sent), "every trade of the old instrument")
            stop(sink)
    # the old instrument was never interrupted: one session, no gap, every trade the venue sent stored once
    assert summary["reconnects"] == 0 and summary["gaps"] == 0
    assert sorted(stored_trades(url, [old])) == sorted(
        (t.symbol, t.trade_id, t.price, t.size, t.side) for t in old_sent
    )
    assert markers(url, old, "gap") == []
