"""Kraken: a dropped connection leaves a hole, `pulse coverage` shows it, `pulse repair` refills it from the local
venue's REST `Trades` history, and afterwards every trade the venue made is stored exactly once and the hour says
"repaired (kraken REST)". Local venue → `pulse ingest kraken` → pulsar-lite → `pulse sink run` → PostgreSQL, then
`pulse coverage` and `pulse repair` — real processes, stopped by pid."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from ingesters.kraken.simulator import FaultPlan
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.integration.test_kraken_pipeline import SimThread
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # five processes on a loaded 2-core machine


def stored(url: str, symbol: str) -> list[tuple[str, int, Decimal, Decimal, str]]:
    with psycopg.connect(url) as conn:
        try:
            return conn.execute(
                "SELECT trade_id, ts_event_ns, price, size, side FROM trades WHERE venue = 'kraken' AND symbol = %s",
                (symbol,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def hours_of(doc: dict) -> dict[str, dict]:
    return {h["hour"]: h for h in doc["hours"]}


def test_a_dropped_connection_is_repaired_from_rest_exactly_once(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    sym = f"R{unique[:6].upper()}/USD"
    total = 1500
    began = datetime.now(UTC)
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50"}
    # the venue drops the connection after 150 messages and trades on; the ingester waits ≥ 4 s to reconnect, so
    # far more than the 50 trades Kraken replays on subscribe happen meanwhile: a real hole
    plan = FaultPlan(disconnect_after=150)
    with SimThread(symbols=[sym], rate=300, seed=11, faults=plan, max_trades=total, keep_trading=True) as sim:
        sink = pulse_cmd(runtime_settings, "sink", "run", "--source", f"crypto/kraken={sym}", "--json", env=env)
        ing = pulse_cmd(runtime_settings, "ingest", "kraken", "--url", sim.url, "--symbols", sym, "--channels",
                        "trade", "--json", env={"PULSE_KRAKEN__BACKOFF_INITIAL_S": "4"})  # fmt: skip
        with process(sink), process(ing):
            wait_for(lambda: sim.stats["connections"] == 2 and len(sim.tape.trade_ids(sym)) >= total,
                     "the venue to drop the connection, the ingester to return, every trade", timeout=240)  # fmt: skip
            streamed = {str(t.trade_id) for t in sim.sent_trades}
            wait_for(lambda: streamed <= {r[0] for r in stored(endpoints.database_url, sym)}, "streamed trades stored")
            counts = [-1]

            def settled() -> bool:  # the trade snapshot replayed on resubscribe lands too
                counts.append(len(stored(endpoints.database_url, sym)))
                time.sleep(0.5)
                return counts[-1] == counts[-2]

            wait_for(settled, "the stored trades to settle")
            rc, out, err = stop(ing)
            assert rc == 0, err[-3000:]
            assert json.loads(out)["reconnects"] == 1
            time.sleep(1.0)
            rc, _out, err = stop(sink)
            assert rc == 0, err[-3000:]
        before = stored(endpoints.database_url, sym)
        tape = sim.tape.entries(sym)
        assert len(tape) == total and len(before) < total - 50  # a hole the replayed snapshot did not fill

        start = began.replace(minute=0, second=0, microsecond=0)
        span = ("--from", f"{start:%Y-%m-%dT%H:%M}", "--to", f"{datetime.now(UTC) + timedelta(hours=1):%Y-%m-%dT%H}")
        cov = pulse(runtime_settings, "coverage", sym, "--venue", "kraken", *span, "--json", timeout=120)
        assert cov.returncode == 1, cov.stderr[-2000:]  # an hour with a gap
        gap_hours = [h for h, v in hours_of(json.loads(cov.stdout)).items() if v["markers"].get("gap")]
        assert gap_hours and all(hours_of(json.loads(cov.stdout))[h]["status"] == "gap" for h in gap_hours)

        rest_env = {"PULSE_KRAKEN__REST_URL": sim.rest_url, "PULSE_KRAKEN__REST_INTERVAL_S": "0"}
        first = pulse(runtime_settings, "repair", f"kraken:{sym}", *span, "--json", env=rest_env, timeout=180)
        assert first.returncode == 0, first.stderr[-3000:]
        second = pulse(runtime_settings, "repair", f"kraken:{sym}", *span, "--json", env=rest_env, timeout=180)
        assert second.returncode == 0, second.stderr[-3000:]
        requests = sim.tape.requests
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["source"] == "kraken REST" and one["fetched"] == total and one["added"] == total - len(before)
    assert two["fetched"] == total and two["added"] == 0  # run twice: nothing new
    assert requests >= 2

    after = stored(endpoints.database_url, sym)
    assert len(after) == len({r[0] for r in after}) == total  # every trade exactly once
    assert sorted((int(r[0]), r[1], r[2], r[3], r[4]) for r in after) == [
        (row[6], ts, Decimal(row[0]), Decimal(row[1]), {"b": "buy", "s": "sell"}[row[3]]) for ts, row in tape
    ]  # the venue's ids, times to the nanosecond, prices, sizes and sides
    cov = pulse(runtime_settings, "coverage", sym, "--venue", "kraken", *span, "--json", timeout=120)
    assert cov.returncode == 0, cov.stdout[-2000:]  # nothing missing or gapped any more
    hours = hours_of(json.loads(cov.stdout))
    for h in gap_hours:
        assert hours[h]["status"] == "repaired" and hours[h]["repaired_by"] == ["kraken REST"]
        assert sum(r["added"] for r in hours[h]["repairs"]) > 0 and len(hours[h]["repairs"]) == 2
    text = pulse(runtime_settings, "coverage", f"kraken:{sym}", *span, timeout=120)  # venue:SYMBOL works too
    assert "repaired (kraken REST)" in text.stdout and "▓" in text.stdout
