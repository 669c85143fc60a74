"""Kraken end to end, as it runs in production: local venue → `pulse ingest kraken` process → pulsar-lite →
`pulse sink run` process → PostgreSQL. Real broker, real database, real processes stopped by pid.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pulsar
import pytest

from ingesters.kraken.simulator import FaultPlan, KrakenSimulator
from pulse.codec import decode_any
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from pulse.topics import dead_letter_topic, topic
from tests.procs import process, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow


class SimThread:
    """The local Kraken venue on its own event loop in a thread, so the test can read its exact counts."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.kwargs = kwargs
        self.sim: KrakenSimulator

    def __enter__(self) -> KrakenSimulator:
        self.thread.start()

        async def start() -> KrakenSimulator:
            sim = KrakenSimulator(**self.kwargs)
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
                "SELECT symbol, trade_id, price, size, side FROM trades WHERE venue='kraken' AND symbol = ANY(%s)",
                (symbols,),
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []  # the sink process has not created its schema yet


def symbols_for(unique: str, n: int = 2) -> list[str]:
    return [f"K{i}{unique[:6].upper()}/USD" for i in range(n)]


def sent(sim: KrakenSimulator) -> list[tuple[str, str, Decimal, Decimal, str]]:
    return [(t.symbol, str(t.trade_id), t.price, t.qty, t.side) for t in sim.sent_trades]


def run_pipeline(
    settings: Settings,
    endpoints: Endpoints,
    unique: str,
    *,
    faults: FaultPlan | None,
    max_trades: int,
    done: Callable[[KrakenSimulator], bool],
) -> tuple[KrakenSimulator, dict[str, Any], list[str]]:
    symbols = symbols_for(unique)
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50"}
    with SimThread(symbols=symbols, rate=400, seed=7, faults=faults, max_trades=max_trades) as sim:
        sink = pulse_cmd(settings, "sink", "run", "--source", f"crypto/kraken={','.join(symbols)}", "--json", env=env)
        ing = pulse_cmd(
            settings,
            "ingest",
            "kraken",
            "--url",
            sim.url,
            "--symbols",
            ",".join(symbols),
            "--json",
            env={"PULSE_KRAKEN__BACKOFF_INITIAL_S": "0.2"},
        )
        with process(sink), process(ing):
            wait_for(lambda: done(sim), "the venue to send everything planned")
            time.sleep(0.5)  # book updates keep flowing; let the last trades' frames arrive
            rc, out, err = stop(ing)
            assert rc == 0, err[-3000:]
            summary = json.loads(out)
            expected = len(sent(sim))
            wait_for(lambda: len(stored_trades(endpoints.database_url, symbols)) >= expected, "trades stored")
            time.sleep(0.5)  # anything extra (a duplicate) would land now
            rc, _out, err = stop(sink)
            assert rc == 0, err[-3000:]
    return sim, summary, symbols


def test_every_trade_stored_exactly_once_bit_exact(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    per_symbol = 60
    sim, summary, symbols = run_pipeline(
        runtime_settings,
        endpoints,
        unique,
        faults=None,
        max_trades=per_symbol,
        done=lambda s: all(n >= per_symbol for n in s.stats["trades_per_symbol"].values()),
    )
    rows = stored_trades(endpoints.database_url, symbols)
    assert len(rows) == len(set(rows)) == 2 * per_symbol  # exactly once
    assert sorted(rows) == sorted(sent(sim))  # same ids, same prices and sizes to the last digit
    assert summary["checksum_failures"] == 0 and summary["checksum_ok"] > 0  # every book update verified
    assert summary["parse_errors"] == 0 and summary["publish_failed"] == 0 and summary["pending"] == 0
    assert summary["published"] == summary["sent"] == summary["events"] + summary["markers"]
    for sym in symbols:
        trade_topic = topic("crypto", "kraken", sym, "trade")
        assert summary["topics"][trade_topic] >= per_symbol  # trades plus the in-band markers


def test_faults_are_recovered_and_counted_exactly(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    plan = FaultPlan(
        disconnect_after=250, malformed_every=40, max_malformed=3, bad_checksum_every=25, max_bad_checksums=2
    )
    per_symbol = 80

    def done(s: KrakenSimulator) -> bool:
        st = s.stats
        return (
            st["disconnects"] == 1
            and st["malformed"] == 3
            and st["bad_checksums"] == 2
            and all(n >= per_symbol for n in st["trades_per_symbol"].values())
        )

    sim, summary, symbols = run_pipeline(
        runtime_settings, endpoints, unique, faults=plan, max_trades=per_symbol, done=done
    )
    assert summary["reconnects"] == sim.stats["disconnects"] == 1
    assert summary["parse_errors"] == summary["dead_letters"] == sim.stats["malformed"] == 3
    assert summary["checksum_failures"] == sim.stats["bad_checksums"] == 2
    assert summary["gaps"] == len(symbols)  # one gap marker per instrument after the reconnect
    rows = stored_trades(endpoints.database_url, symbols)
    assert len(rows) == len(set(rows))  # the venue's replayed trade snapshot was not stored twice
    assert sorted(rows) == sorted(set(sent(sim)))
    # the malformed frames are on the dead-letter topic with their error
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        dlq = client.subscribe(
            dead_letter_topic("ingest.kraken"),
            f"dlq-{unique}",
            initial_position=pulsar.InitialPosition.Earliest,
            consumer_type=pulsar.ConsumerType.Shared,
        )
        seen = []
        while True:
            try:
                msg = dlq.receive(timeout_millis=1000)
            except pulsar.Timeout:
                break
            seen.append(msg.properties())
        assert sum(1 for p in seen if p.get("kind") == "parse_error") >= 3
        # the gap markers went in-band on the trade topics, between the two sessions' trades
        sub = client.subscribe(
            topic("crypto", "kraken", symbols[0], "trade"),
            f"gap-{unique}",
            initial_position=pulsar.InitialPosition.Earliest,
            consumer_type=pulsar.ConsumerType.Shared,
        )
        kinds = []
        while True:
            try:
                msg = sub.receive(timeout_millis=1000)
            except pulsar.Timeout:
                break
            kinds.append(type(decode_any(msg.data(), msg.properties())).__name__)
        gap_at = kinds.index("Status")
        assert 0 < gap_at < len(kinds) - 1 and kinds.count("Status") == 1
    finally:
        client.close()


def test_sigterm_flushes_everything_received(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    symbols = symbols_for(unique, 3)
    with SimThread(symbols=symbols, rate=3000, seed=3) as sim:
        ing = pulse_cmd(
            runtime_settings, "ingest", "kraken", "--url", sim.url, "--symbols", ",".join(symbols), "--json"
        )
        with process(ing):
            wait_for(lambda: sim.stats["trades"] > 500, "a busy feed")
            rc, out, err = stop(ing)  # mid-stream, at ~3,000 venue steps/s
    assert rc == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["events"] > 500 and summary["pending"] == 0 and summary["publish_failed"] == 0
    # every event handed over before the signal was acked
    assert summary["published"] == summary["sent"] == summary["events"] + summary["markers"]
    # ...and it is really on the broker: read every topic back from the start
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        for t, n in summary["topics"].items():
            consumer = client.subscribe(
                t,
                f"count-{unique}",
                initial_position=pulsar.InitialPosition.Earliest,
                consumer_type=pulsar.ConsumerType.Shared,
            )
            got = 0
            while True:
                try:
                    consumer.acknowledge(consumer.receive(timeout_millis=1500))
                    got += 1
                except pulsar.Timeout:
                    break
            assert got == n, f"{t}: broker holds {got}, ingester reported {n}"
    finally:
        client.close()


def test_a_restarted_ingester_marks_the_gap_since_its_previous_run(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    # A new process once started with nothing to say: the hole between the killed process's last event and
    # the new one's first event went unmarked.
    symbols = symbols_for(unique, 2)
    home = runtime_settings.home

    def status() -> dict[str, Any]:
        return read_status(home, "ingest-kraken") or {}

    with SimThread(symbols=symbols, rate=500, seed=6) as sim:
        args = ("ingest", "kraken", "--url", sim.url, "--symbols", ",".join(symbols), "--channels", "trade")
        first = pulse_cmd(runtime_settings, *args)
        with process(first):
            wait_for(lambda: status().get("pid") == first.pid and set(symbols) <= set(status()["last_tick"]), "ticks")
            first.kill()  # SIGKILL: no goodbye, no final status write
            first.wait(10)
        second = pulse_cmd(runtime_settings, *args, "--json")
        with process(second):
            wait_for(lambda: status().get("pid") == second.pid and status()["counters"]["events"] > 50, "new events")
            rc, out, err = stop(second)
    assert rc == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["gaps"] == len(symbols) and summary["reconnects"] == 0
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        for sym in symbols:
            consumer = client.subscribe(
                topic("crypto", "kraken", sym, "trade"),
                f"restart-{unique}",
                initial_position=pulsar.InitialPosition.Earliest,
                consumer_type=pulsar.ConsumerType.Shared,
            )
            events = []
            while True:
                try:
                    msg = consumer.receive(timeout_millis=1500)
                except pulsar.Timeout:
                    break
                events.append(decode_any(msg.data(), msg.properties()))
            gaps = [i for i, ev in enumerate(events) if getattr(ev, "kind", None) == "gap"]
            assert len(gaps) == 1, f"{sym}: {[getattr(ev, 'kind', 'trade') for ev in events]}"
            assert "restarted" in events[gaps[0]].detail  # type: ignore[attr-defined]
            assert 0 < gaps[0] < len(events) - 1  # trades of the first run before it, of the second after it
    finally:
        client.close()
