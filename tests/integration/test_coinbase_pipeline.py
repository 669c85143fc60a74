"""Coinbase end to end, as it runs in production: local venue → `pulse ingest coinbase` process → broker →
`pulse sink run` process → PostgreSQL, through a disconnect, a lost message (a skipped sequence_num → resubscription)
and malformed messages; then SIGTERM, after which everything the ingester received is on the broker. Real processes
stopped by pid."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pulsar
import pytest

from ingesters.coinbase.simulator import CoinbaseSimulator, FaultPlan
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # several processes on a loaded 2-core machine


class SimThread:
    """The local Coinbase venue on its own event loop in a thread, so the test can read its exact counts."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.kwargs = kwargs

    def __enter__(self) -> CoinbaseSimulator:
        self.thread.start()

        async def start() -> CoinbaseSimulator:
            sim = CoinbaseSimulator(**self.kwargs)
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
                "SELECT symbol, trade_id, price, size, side FROM trades WHERE venue='coinbase' AND symbol = ANY(%s)",
                (symbols,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def test_every_trade_stored_exactly_once_and_sigterm_flushes(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    symbols = [f"E{i}{unique[:6].upper()}/USD" for i in range(2)]
    per_symbol = 80
    faults = FaultPlan(disconnect_after=150, skip_sequence_every=40, max_skips=1, malformed_every=50, max_malformed=2)
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50",
           "PULSE_COINBASE__BACKOFF_INITIAL_S": "0.2"}  # fmt: skip
    with SimThread(symbols=symbols, rate=300, seed=11, faults=faults, max_trades=per_symbol) as sim:
        sink = pulse_cmd(runtime_settings, "sink", "run", "--source", f"crypto/coinbase={','.join(symbols)}", "--json",
                         env=env)  # fmt: skip
        ing = pulse_cmd(runtime_settings, "ingest", "coinbase", "--url", sim.url, "--rest-url", sim.rest_url,
                        "--symbols", ",".join(symbols), "--json", env=env)  # fmt: skip
        with process(sink), process(ing):

            def planned() -> bool:
                st = sim.stats
                if ing.poll() is not None:
                    pytest.fail(f"the ingester exited: {ing.communicate()[1][-3000:]}")
                return (
                    all(n >= per_symbol for n in st["trades_per_symbol"].values())
                    and st["disconnects"] == 1
                    and st["skipped_sequences"] == 1
                )

            try:
                wait_for(planned, "the planned feed", timeout=180.0)
            except BaseException:
                print("venue stats:", sim.stats)
                raise
            time.sleep(0.5)  # book updates and heartbeats keep flowing: SIGTERM lands mid-stream
            rc, out, err = stop(ing)
            assert rc == 0, err[-3000:]
            summary = json.loads(out)
            expected = len(sim.sent_trades)
            wait_for(
                lambda: len(stored_trades(endpoints.database_url, symbols)) >= expected, "trades stored", timeout=120.0
            )
            time.sleep(0.5)  # a duplicate would land now
            rc, _, err = stop(sink)
            assert rc == 0, err[-3000:]
    rows = stored_trades(endpoints.database_url, symbols)
    sent = [(t.symbol, t.trade_id, t.price, t.size, t.side) for t in sim.sent_trades]
    assert len(rows) == len(set(rows)) == len(sent) == 2 * per_symbol  # exactly once
    assert sorted(rows) == sorted(sent)  # same ids, prices and sizes to the last digit
    # the candles of a Coinbase instrument, through the same command as every venue's: every stored trade counted
    today = datetime.now(UTC).date()
    res = pulse(runtime_settings, "candles", f"coinbase:{symbols[0]}", "--interval", "1d", "--from",
                str(today - timedelta(days=1)), "--to", str(today + timedelta(days=2)), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    candles = json.loads(res.stdout)
    mine = [t for t in sim.sent_trades if t.symbol == symbols[0]]
    assert sum(c["ticks"] for c in candles) == len(mine) == per_symbol
    assert sum(Decimal(c["volume"]) for c in candles) == sum(t.size for t in mine)
    assert max(Decimal(c["high"]) for c in candles) == max(t.price for t in mine)
    # one gap per product for the reconnect, one for the lost message
    assert summary["reconnects"] == 1 and summary["gaps"] == 2 * len(symbols) and summary["sequence_gaps"] == 1
    assert summary["parse_errors"] == summary["dead_letters"] == 2 and summary["resyncs"] == len(symbols)
    assert summary["duplicates"] > 0  # the trades snapshots after the reconnect and the gap repeated published trades
    # SIGTERM flushed: everything handed over was acknowledged, and the broker holds exactly that per topic
    assert summary["pending"] == 0 and summary["publish_failed"] == 0
    assert summary["published"] == summary["sent"] == summary["events"] + summary["markers"] + summary["dead_letters"]
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        for t, n in summary["topics"].items():
            if "deadletter" in t:
                continue  # shared with the other Coinbase tests
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
