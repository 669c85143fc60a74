"""Binance end to end, as it runs in production: local venue → `pulse ingest binance` process → broker →
`pulse sink run` process → PostgreSQL, through a disconnect, a forced book resync and connection renewals; then
SIGTERM, after which everything the ingester received is on the broker. Real processes stopped by pid."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
import pulsar
import pytest

from ingesters.binance.simulator import BinanceSimulator, FaultPlan
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.procs import process, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow


class SimThread:
    """The local Binance venue on its own event loop in a thread, so the test can read its exact counts."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.kwargs = kwargs

    def __enter__(self) -> BinanceSimulator:
        self.thread.start()

        async def start() -> BinanceSimulator:
            sim = BinanceSimulator(**self.kwargs)
            await sim.start()
            return sim

        self.sim = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self.sim

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def stored_trades(url: str, symbols: list[str]) -> list[tuple[str, str, Decimal, Decimal, str]]:
    with psycopg.connect(url) as conn:
        try:
            return conn.execute(
                "SELECT symbol, trade_id, price, size, side FROM trades WHERE venue='binance' AND symbol = ANY(%s)",
                (symbols,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def test_every_trade_stored_exactly_once_and_sigterm_flushes(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    symbols = [f"E{i}{unique[:6].upper()}/USDT" for i in range(2)]
    per_symbol = 80
    faults = FaultPlan(disconnect_after=100, skip_update_every=10, max_skips=1, malformed_every=50, max_malformed=2)
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50",
           "PULSE_BINANCE__BACKOFF_INITIAL_S": "0.2", "PULSE_BINANCE__SNAPSHOT_RETRY_S": "0.2"}  # fmt: skip
    with SimThread(symbols=symbols, rate=300, seed=11, faults=faults, max_trades=per_symbol,
                   depth_interval_s=0.05) as sim:  # fmt: skip
        sink = pulse_cmd(runtime_settings, "sink", "run", "--source", f"crypto/binance={','.join(symbols)}", "--json",
                         env=env)  # fmt: skip
        ing = pulse_cmd(runtime_settings, "ingest", "binance", "--url", sim.url, "--rest-url", sim.rest_url,
                        "--symbols", ",".join(symbols), "--renew-after", "1.0", "--json", env=env)  # fmt: skip
        with process(sink), process(ing):

            def planned() -> bool:
                st = sim.stats
                if ing.poll() is not None:
                    pytest.fail(f"the ingester exited: {ing.communicate()[1][-3000:]}")
                return (
                    all(n >= per_symbol for n in st["trades_per_symbol"].values())
                    and st["disconnects"] == 1
                    and (st["skipped_updates"] == 1)
                )

            try:
                wait_for(planned, "the planned feed")
            except BaseException:
                print("venue stats:", sim.stats)
                raise
            time.sleep(0.5)  # book updates and quotes keep flowing: SIGTERM lands mid-stream
            rc, out, err = stop(ing)
            assert rc == 0, err[-3000:]
            summary = json.loads(out)
            expected = len(sim.sent_trades)
            wait_for(lambda: len(stored_trades(endpoints.database_url, symbols)) >= expected, "trades stored")
            time.sleep(0.5)  # a duplicate would land now
            rc, _, err = stop(sink)
            assert rc == 0, err[-3000:]
    rows = stored_trades(endpoints.database_url, symbols)
    sent = [(t.symbol, str(t.trade_id), t.price, t.qty, t.side) for t in sim.sent_trades]
    assert len(rows) == len(set(rows)) == len(sent) == 2 * per_symbol  # exactly once
    assert sorted(rows) == sorted(sent)  # same ids, prices and sizes to the last digit
    assert summary["reconnects"] == 1 and summary["gaps"] == len(symbols)
    assert summary["parse_errors"] == summary["dead_letters"] == 2 and summary["resyncs"] >= 1
    assert summary["renewals"] >= 1
    # SIGTERM flushed: everything handed over was acknowledged, and the broker holds exactly that per topic
    assert summary["pending"] == 0 and summary["publish_failed"] == 0
    assert summary["published"] == summary["sent"] == summary["events"] + summary["markers"] + summary["dead_letters"]
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        for t, n in summary["topics"].items():
            if "deadletter" in t:
                continue  # shared with the other Binance tests
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
