"""Exactly the valid set, whatever happens: the sink SIGKILLed mid-batch and restarted, PostgreSQL restarted
mid-stream, duplicates and poison messages. Real broker, real PostgreSQL; the killed sink is a separate process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pulse.bus import Bus, EventPublisher
from pulse.models import Trade
from pulse.runtime import Endpoints, Runtime, resolve_endpoints
from pulse.runtime.postgres import pg_ctl
from pulse.runtime.procs import pid_alive, terminate
from pulse.settings import Settings
from pulse.topics import topic
from sinks.postgres.config import SinkConfig, parse_sink_config
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from tests.conftest import make_settings

T0 = 1_763_700_000_000_000_000


def wait_for(pred: Any, what: str, timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while not (v := pred()):
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return v


def trade(venue: str, sym: str, i: int, **kw: Any) -> Trade:
    f: dict[str, Any] = {
        "venue": venue, "symbol": sym, "ts_event": T0 + i * 1_000_000, "ts_recv": T0 + i * 1_000_000 + 1,
        "seq": i, "price": Decimal("100.25"), "size": Decimal("1.5"), "side": "buy", "trade_id": f"t{i}",
    }  # fmt: skip
    f.update(kw)
    return Trade(**f)


def config(venue: str, sym: str, unique: str, **over: Any) -> SinkConfig:
    raw = {
        "sources": [{"namespace": "historical", "venue": venue, "symbols": [sym], "channels": ["trade"]}],
        "subscription": f"rel-{unique}", "batch_size": 1000, "max_latency_ms": 50, "retry_max_s": 0.5, **over,
    }  # fmt: skip
    return parse_sink_config(raw)


def publish(settings: Settings, endpoints: Endpoints, events: list[Any], raw: list[tuple[str, bytes]] = ()) -> None:
    bus = Bus(settings, endpoints.pulsar_url)
    try:
        pub = EventPublisher(bus, "historical", producer_prefix=f"rel-{os.getpid()}")
        for e in events:
            pub.publish(e)
        for t, payload in raw:
            pub.publish_raw(t, payload, {"format": "json"})
        pub.flush()
        wait_for(lambda: pub.stats.pending == 0, "publish acks")
        assert pub.stats.total_failed == 0
    finally:
        bus.close()


def trade_ids(url: str, venue: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT trade_id FROM trades WHERE venue = %s", (venue,)).fetchall()]


def _child(settings: Settings, endpoints: Endpoints, cfg: SinkConfig) -> None:
    PostgresSink(settings, endpoints, config=cfg, name="rel-child").run(threading.Event())


@pytest.fixture(scope="module", autouse=True)
def schema(endpoints: Endpoints) -> None:
    ensure_schema(endpoints.database_url)


@pytest.fixture(scope="module")
def fresh_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Endpoints]]:
    """A runtime of the SIGKILL test's own. Late in a full session, on the shared pulsar-lite broker (many topics,
    earlier SIGKILLed consumers), pulsar-lite 0.2 was seen to keep the killed sink's consumer for good: the restarted
    sink's watch reported the stall and recreated its consumer, and nothing was dispatched for 180 s (CI, session 6).
    That broker defect is detected and shown by the sink (tests/integration/test_sink_stall.py); the Apache Pulsar
    tier shows the broker redelivering (tests/real_pulsar/test_real_sink_kill.py). Here the sink's own exactly-once
    rule is under test, so it runs on a broker no earlier test has worn."""
    settings = make_settings(tmp_path_factory.mktemp("rel-home"))
    rt = Runtime(settings)
    rt.up()
    try:
        ensure_schema(resolve_endpoints(settings).database_url)
        yield settings, resolve_endpoints(settings)
    finally:
        pids = [p["pid"] for p in (rt.status().broker, rt.status().postgres) if p]
        rt.down(purge=True)
        assert not any(pid_alive(p) for p in pids)


@pytest.mark.timeout(420)  # see the restart deadlines below
def test_sigkill_mid_batch_then_restart_stores_exactly_the_set(
    fresh_runtime: tuple[Settings, Endpoints], unique: str
) -> None:
    runtime_settings, endpoints = fresh_runtime
    venue, sym, n = f"k{unique[:8]}", "REL/USD", 30_000
    cfg = config(venue, sym, unique)
    publish(runtime_settings, endpoints, [trade(venue, sym, i) for i in range(n)])
    ctx = multiprocessing.get_context("spawn")
    first = ctx.Process(target=_child, args=(runtime_settings, endpoints, cfg), daemon=True)
    first.start()
    try:
        wait_for(lambda: len(trade_ids(endpoints.database_url, venue)) > 0, "the first commits")
        os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
        first.join(10)
    finally:
        if first.is_alive():
            os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
    stored_at_kill = len(trade_ids(endpoints.database_url, venue))
    assert stored_at_kill < n, "the sink finished before it was killed; kill earlier"
    second = PostgresSink(runtime_settings, endpoints, config=cfg, name="rel-second")
    stop = threading.Event()
    th = threading.Thread(target=second.run, args=(stop,), daemon=True)
    th.start()
    try:
        # pulsar-lite can stall a subscribe for ~30 s after a SIGKILL, and late in a full test session (a broker
        # holding many topics and earlier SIGKILLed consumers) the sink's first retry was seen to stall as well:
        # the deadline allows a few operation timeouts (30 s each); the assertion is exactly-once, not speed
        done = lambda: len(trade_ids(endpoints.database_url, venue)) >= n  # noqa: E731
        end = time.monotonic() + 120
        while not done() and time.monotonic() < end:
            time.sleep(0.2)
        if not done():
            # pulsar-lite 0.2 can keep the SIGKILLed sink's consumer, and what it held, for good (seen in CI with two
            # test workers, even on this broker of its own); its remedy, as the README says, is a broker restart,
            # which the sink rides out. Exactly-once must then hold across the kill and the restart together.
            rt = Runtime(runtime_settings)
            terminate(rt.status().broker["pid"])  # type: ignore[index]
            assert rt.up().broker_running
            wait_for(done, "every trade after the broker restart", timeout=150)
        time.sleep(0.3)  # let redeliveries of unacked messages land (as duplicates)
    finally:
        stop.set()
        th.join(20)
    ids = trade_ids(endpoints.database_url, venue)
    assert len(ids) == n and set(ids) == {f"t{i}" for i in range(n)}


def test_postgres_restart_mid_stream_is_exactly_once(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    venue, sym, n = f"r{unique[:8]}", "REL/USD", 6_000
    cfg = config(venue, sym, unique, batch_size=500)
    sink = PostgresSink(runtime_settings, endpoints, config=cfg, name="rel-pg")
    stop = threading.Event()
    th = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    th.start()
    try:
        wait_for(lambda: sink.stats.mode, "the sink to start")
        publish(runtime_settings, endpoints, [trade(venue, sym, i) for i in range(n // 2)])
        wait_for(lambda: len(trade_ids(endpoints.database_url, venue)) > 0, "first commits")
        pg = Runtime(runtime_settings).status().postgres
        assert pg is not None
        log = os.path.realpath(pg["log"])  # -l: else the server holds our stdout pipe (as root: a link to its log)
        res = pg_ctl(pg["data_dir"], ["-l", log, "-m", "immediate", "-w", "-t", "30", "restart"], pg["bin_dir"])
        assert res.returncode == 0, res.stderr
        publish(runtime_settings, endpoints, [trade(venue, sym, i) for i in range(n // 2, n)])
        wait_for(lambda: len(trade_ids(endpoints.database_url, venue)) >= n, "every trade after the restart")
    finally:
        stop.set()
        th.join(20)
    ids = trade_ids(endpoints.database_url, venue)
    assert len(ids) == n and set(ids) == {f"t{i}" for i in range(n)}
    assert sink.stats.db_errors >= 1


def test_duplicates_and_poison_leave_exactly_the_valid_set(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    venue, sym, n = f"d{unique[:8]}", "REL/USD", 2_000
    cfg = config(venue, sym, unique, batch_size=300)
    valid = [trade(venue, sym, i) for i in range(n)]
    t = topic("historical", venue, sym, "trade")
    poison = [
        (t, b"not json at all"),
        (t, b'{"type":"trade","venue":"x"}'),  # missing fields
        (t, b"\x00\xff"),
    ]
    bad_events = [
        trade(venue, sym, n + 1, trade_id=""),  # refused by the mapper
        trade(venue, sym, n + 2, price=Decimal("1E+131072")),  # refused by PostgreSQL (numeric overflow)
    ]
    publish(runtime_settings, endpoints, valid[: n // 2] + bad_events + valid + valid[::7], poison)
    sink = PostgresSink(runtime_settings, endpoints, config=cfg, name="rel-dup")
    stop = threading.Event()
    th = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    th.start()
    try:
        wait_for(lambda: sink.stats.dead_lettered >= 5 and len(trade_ids(endpoints.database_url, venue)) >= n, "all")
        wait_for(lambda: sink.stats.received == n // 2 + 2 + n + len(valid[::7]) + 3, "every message received")
    finally:
        stop.set()
        th.join(20)
    ids = trade_ids(endpoints.database_url, venue)
    assert len(ids) == n and set(ids) == {f"t{i}" for i in range(n)}
    assert sink.stats.dead_lettered == 5
    assert sink.stats.duplicates == n // 2 + len(valid[::7])
