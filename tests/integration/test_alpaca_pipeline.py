"""Alpaca end to end, as it runs in production: `pulse symbols add alpaca A B` with a running `pulse ingest alpaca`
(credentials from a file) and a `pulse sink run` that names no source: the ingester subscribes the tickers on its
live connection to the local venue, the sink follows the new instruments into the ``equities`` namespace, and
every trade the venue delivered is in PostgreSQL exactly once — through a disconnect and malformed frames —; then
SIGTERM, after which the broker holds everything the ingester reported; `pulse candles` reads the minute candles
of the stored trades. Real processes, stopped by pid."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pulsar
import pytest

from ingesters.alpaca.simulator import AlpacaSimulator, FaultPlan
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow

KEY, SECRET = "PKPIPELINE000001", "pipeline-secret-7a6b5c4d3e2f"


class SimThread:
    """The local Alpaca venue on its own event loop in a thread, so the test can read its exact counts."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.kwargs = kwargs

    def __enter__(self) -> AlpacaSimulator:
        self.thread.start()

        async def start() -> AlpacaSimulator:
            sim = AlpacaSimulator(**self.kwargs)
            await sim.start()
            return sim

        self.sim = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self.sim

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def stored_trades(url: str, symbols: list[str]) -> list[tuple[str, str, Decimal, Decimal, int]]:
    with psycopg.connect(url) as conn:
        try:
            rows = conn.execute(
                "SELECT symbol, trade_id, price, size, time FROM trades WHERE venue='alpaca' AND symbol = ANY(%s)",
                (symbols,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(s, t, p, z, int(tm.timestamp() * 1_000_000)) for s, t, p, z, tm in rows]


def test_symbols_add_alpaca_streams_every_trade_into_postgres_once_and_sigterm_flushes(
    runtime_settings: Settings, endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    s, url = runtime_settings, endpoints.database_url
    a, b = ("Q" + "".join(chr(ord("A") + int(c, 16)) for c in unique[i : i + 4]) for i in (0, 4))
    per_symbol = 120
    secret_file = tmp_path / "alpaca-secret"
    secret_file.write_text(SECRET + "\n")
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50",
           "PULSE_ALPACA__KEY": KEY, "PULSE_ALPACA__SECRET_FILE": str(secret_file), "PULSE_ALPACA__SYMBOLS": "",
           "PULSE_ALPACA__MARKET_HOURS": "always", "PULSE_ALPACA__BACKOFF_INITIAL_S": "0.2"}  # fmt: skip
    faults = FaultPlan(disconnect_after=150, malformed_every=60)
    with SimThread(credentials={KEY: SECRET}, rate=300, seed=21, faults=faults, max_trades=per_symbol,
                   bar_interval_s=0.5) as sim:  # fmt: skip
        sink = pulse_cmd(s, "sink", "run", "--json", env=env)
        ing = pulse_cmd(s, "ingest", "alpaca", "--url", sim.url, "--json", env=env)
        with process(sink), process(ing):
            wait_for(lambda: sim.stats["connections"] >= 1, "the ingester connected")
            added = pulse(s, "symbols", "add", "alpaca", a, b, "--json")
            assert added.returncode == 0, added.stderr
            doc = json.loads(added.stdout)
            rows = [d["instrument"] for d in doc]
            assert {(r["instrument"], r["namespace"]) for r in rows} == {(f"alpaca:{a}", "equities"),
                                                                         (f"alpaca:{b}", "equities")}  # fmt: skip

            def planned() -> bool:
                if ing.poll() is not None:
                    pytest.fail(f"the ingester exited: {ing.communicate()[1][-3000:]}")
                made = [sim.markets[x].next_id - 1 for x in (a, b) if x in sim.markets]
                return len(made) == 2 and min(made) >= per_symbol and sim.stats["disconnects"] >= 1

            try:
                wait_for(planned, "the planned feed", timeout=90)
            except BaseException:
                print("venue stats:", sim.stats)
                raise
            wait_for(lambda: sim.stats["bars"] >= 2, "minute bars")
            time.sleep(0.5)
            rc, out, err = stop(ing)
            assert rc == 0, err[-3000:]
            summary = json.loads(out)
            delivered = sorted((t.symbol, t.trade_id, t.price, Decimal(t.size), t.ts_ns // 1000) for t in sim.delivered)
            wait_for(lambda: len(stored_trades(url, [a, b])) >= len(delivered), "trades stored", timeout=60)
            time.sleep(0.5)  # a duplicate would land now
            rc, _, err = stop(sink)
            assert rc == 0, err[-3000:]
    rows = sorted(stored_trades(url, [a, b]))
    assert len(rows) == len(set(rows)) == len(delivered) >= per_symbol  # exactly once
    assert rows == delivered  # same ids, prices and sizes to the last digit, times to the microsecond
    assert {r[0] for r in rows} == {a, b}
    assert summary["reconnects"] >= 1 and summary["gaps"] >= 2
    assert summary["parse_errors"] == summary["dead_letters"] >= 1
    # SIGTERM flushed: everything handed over was acknowledged, and the broker holds exactly that per topic
    assert summary["pending"] == 0 and summary["publish_failed"] == 0
    assert summary["published"] == summary["sent"] == summary["events"] + summary["markers"] + summary["dead_letters"]
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        for t, n in summary["topics"].items():
            if "deadletter" in t:
                continue  # shared with the other Alpaca tests
            assert "/equities/alpaca." in t
            consumer = client.subscribe(t, f"count-{unique}", initial_position=pulsar.InitialPosition.Earliest,
                                        consumer_type=pulsar.ConsumerType.Shared)  # fmt: skip
            got = 0
            while True:
                try:
                    consumer.acknowledge(consumer.receive(timeout_millis=300 if got else 5000))
                    got += 1
                except pulsar.Timeout:
                    break
            assert got == n, f"{t}: broker holds {got}, ingester reported {n}"
    finally:
        client.close()
    # candles from the stored trades: one series per ticker, volumes summing to the shares traded
    first = min(r[4] for r in rows) // 1_000_000
    start = datetime.fromtimestamp(first, UTC).replace(second=0) - timedelta(minutes=1)
    end = start + timedelta(minutes=10)
    out = pulse(s, "candles", f"alpaca:{a}", "--interval", "1m", "--from", start.strftime("%Y-%m-%dT%H:%M"),
                "--to", end.strftime("%Y-%m-%dT%H:%M"), "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    candles = json.loads(out.stdout)
    series = candles["candles"] if isinstance(candles, dict) else candles
    mine = [r for r in rows if r[0] == a]
    assert sum(Decimal(str(c["volume"])) for c in series) == sum(r[3] for r in mine)
    assert sum(int(c["ticks"]) for c in series) == len(mine)


def test_demo_venues_runs_alpaca_beside_kraken(tmp_path: Path) -> None:
    """`pulse demo --venues kraken,alpaca`: Alpaca's DemoPlan starts its local venue and its ingester (the local
    venue's credentials, through the environment), and the sink stores its trades beside Kraken's."""
    from tests.integration.test_cli import port_env

    args = ["--home", str(tmp_path / "home"), "demo", "--venues", "kraken,alpaca", "--duration", "6", "--json",
            "--no-consumers"]  # fmt: skip
    res = pulse_run(args, env=port_env())
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["exit_codes"] == {"ingester-kraken": 0, "ingester-alpaca": 0, "sink": 0}
    assert {"alpaca:AAPL", "alpaca:TSLA"} <= set(doc["last_price"])
    assert any(t.endswith("/equities/alpaca.AAPL.trade") for t in doc["topics"])
    assert doc["sink_received"] >= doc["published_data"] and doc["parse_errors"] == 0
    assert "demo-local-venue-secret" not in res.stdout + res.stderr


def pulse_run(args: list[str], env: dict[str, str]) -> Any:
    import os
    import subprocess
    import sys

    from tests.procs import REPO

    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})  # fmt: skip


def test_bad_credentials_and_symbols_are_refused_before_anything_starts(
    runtime_settings: Settings, unique: str
) -> None:
    empty = {"PULSE_ALPACA__KEY": "", "PULSE_ALPACA__SECRET": ""}
    no_key = pulse(runtime_settings, "ingest", "alpaca", "--symbols", "AAPL", env=empty)
    assert no_key.returncode == 2 and "set alpaca.key and alpaca.secret" in no_key.stderr
    no_file = {"PULSE_ALPACA__KEY": "PKX", "PULSE_ALPACA__SECRET_FILE": f"/nonexistent/{unique}"}
    missing = pulse(runtime_settings, "ingest", "alpaca", env=no_file)
    assert missing.returncode == 2 and "alpaca.secret_file" in missing.stderr and "Traceback" not in missing.stderr
    for bad in ("*", "AAPL;DROP", "AAPL,TSLA", "BRK/B", "../x"):
        res = pulse(runtime_settings, "symbols", "add", "alpaca", bad, "--json")
        assert res.returncode == 2 and "invalid Alpaca symbol" in res.stdout + res.stderr, bad
    listed = pulse(runtime_settings, "symbols", "list", "--venue", "alpaca", "--json")
    assert listed.returncode == 0 and not any(r["symbol"] in ("*", "AAPL;DROP") for r in json.loads(listed.stdout))


def test_pulse_repair_refills_what_a_disconnect_missed_from_alpacas_rest_trades(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    """The venue trades on while the ingester reconnects (the missed trades are not replayed by the stream);
    `pulse repair alpaca:A` fetches the hour from the REST history (same trade ids) and stores exactly what is
    missing; a second run adds nothing. The local venue's clock puts the trades in an NYSE session (Thursday
    2026-12-03, 15:00 UTC), so the calendar lets the repair fetch that hour."""
    s, url = runtime_settings, endpoints.database_url
    a = "R" + "".join(chr(ord("A") + int(c, 16)) for c in unique[:4])
    base, t0 = int(datetime(2026, 12, 3, 15, 0, 5, tzinfo=UTC).timestamp()) * 10**9, time.time_ns()
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50",
           "PULSE_ALPACA__KEY": KEY, "PULSE_ALPACA__SECRET": SECRET, "PULSE_ALPACA__MARKET_HOURS": "always",
           "PULSE_ALPACA__BACKOFF_INITIAL_S": "1.0", "PULSE_ALPACA__BACKOFF_MAX_S": "1.5"}  # fmt: skip
    with SimThread(credentials={KEY: SECRET}, rate=200, seed=31, faults=FaultPlan(disconnect_after=60),
                   keep_trading=True, max_trades=250, clock=lambda: base + time.time_ns() - t0) as sim:  # fmt: skip
        sink = pulse_cmd(s, "sink", "run", "--source", f"equities/alpaca={a}", "--json", env=env)
        ing = pulse_cmd(s, "ingest", "alpaca", "--url", sim.url, "--symbols", a, "--channels", "trade", "--json",
                        env=env)  # fmt: skip
        with process(sink), process(ing):
            wait_for(lambda: a in sim.markets and sim.markets[a].next_id > 250, "every trade made", timeout=90)
            time.sleep(0.5)
            rc, _, err = stop(ing)
            assert rc == 0, err[-3000:]
            delivered = {t.trade_id for t in sim.delivered}
            wait_for(lambda: len(stored_trades(url, [a])) >= len(delivered), "delivered trades stored", timeout=60)
            time.sleep(0.3)
            rc, _, err = stop(sink)
            assert rc == 0, err[-3000:]
        made = sorted((t.symbol, t.trade_id, t.price, Decimal(t.size), t.ts_ns // 1000) for t in sim.sent_trades)
        before = sorted(stored_trades(url, [a]))
        assert len(made) == 250 and len(before) == len(delivered) < len(made)  # the disconnects missed some
        rest = {"PULSE_ALPACA__REST_URL": sim.url.replace("ws://", "http://").removesuffix("/v2"),
                "PULSE_ALPACA__KEY": KEY, "PULSE_ALPACA__SECRET": SECRET}  # fmt: skip
        args = ["repair", f"alpaca:{a}", "--from", "2026-12-03T15:00", "--to", "2026-12-03T16:00", "--json"]
        first = pulse(s, *args, env=rest, timeout=120)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        doc = json.loads(first.stdout)
        assert doc["source"] == "alpaca REST" and doc["ok"] and doc["fetched"] == 250
        assert doc["added"] == len(made) - len(before)
        assert sorted(stored_trades(url, [a])) == made  # every trade once, exact values, the stream's ids
        again = json.loads(pulse(s, *args, env=rest, timeout=120).stdout)
        assert again["added"] == 0 and sorted(stored_trades(url, [a])) == made
        wrong = pulse(s, *args, env={**rest, "PULSE_ALPACA__SECRET": "wrong-secret-0000"}, timeout=120)
        assert wrong.returncode == 1 and "HTTP 401" in wrong.stdout + wrong.stderr
        assert "wrong-secret-0000" not in wrong.stdout + wrong.stderr and SECRET not in wrong.stdout + wrong.stderr
