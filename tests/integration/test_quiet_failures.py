"""Issue 17, defect 8: failures and counters a user could not see.

* A broker outage showed only in the C++ client's own log file: the services now log it (structured) and count
  it — the sink's ``broker_errors``, the publishers' ``broker_disconnects``.
* The published/pending counters went stale on a topic that went quiet: acks were sampled only when a later
  message was sent. A settle timer flushes quiet producers, so ``pending`` reaches 0 and ``acked`` equals
  ``sent`` within a second of the last publish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulse.bus import Bus, EventPublisher
from pulse.publish_proc import OffloadedPublisher
from pulse.runtime import Endpoints, Runtime, resolve_endpoints
from pulse.runtime.procs import pid_alive, terminate
from pulse.settings import Settings
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from tests.conftest import make_settings
from tests.integration.test_sink_reliability import config, trade, trade_ids, wait_for


def quiet_topic_settles(pub: Any, unique: str) -> tuple[float, Any]:
    venue = f"q{unique[:8]}"
    for i in range(10):  # 10 < ack_every (64), all within ack_interval_s: only the first one is sampled
        pub.publish(trade(venue, "QT/USD", i))
    last = time.monotonic()
    while time.monotonic() - last < 1.0:
        st = pub.stats
        if st.pending == 0 and st.total_acked == 10:
            return time.monotonic() - last, st
        time.sleep(0.02)
    return time.monotonic() - last, pub.stats


def test_a_quiet_topic_settles_in_process(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    bus = Bus(runtime_settings, endpoints.pulsar_url)
    try:
        pub = EventPublisher(bus, "historical", producer_prefix=f"quiet-{unique}")
        took, st = quiet_topic_settles(pub, unique)
        assert (st.pending, st.total_acked) == (0, 10), f"after {took:.2f}s: pending {st.pending} acked {st.acked}"
        assert sum(st.sent.values()) == 10
        pub.close()
    finally:
        bus.close()


def test_a_quiet_topic_settles_through_the_publisher_process(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    pub = OffloadedPublisher(runtime_settings, endpoints.pulsar_url, "historical", producer_prefix=f"qp-{unique}")
    try:
        took, st = quiet_topic_settles(pub, unique)
        assert (st.pending, st.total_acked) == (0, 10), f"after {took:.2f}s: pending {st.pending} acked {st.acked}"
    finally:
        pub.close()


# -- a broker outage, on a runtime of this module's own (the session's broker is not stopped under others) ----
@pytest.fixture(scope="module")
def own_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = make_settings(tmp_path_factory.mktemp("outage-home"))
    rt = Runtime(settings)
    rt.up()
    try:
        yield settings
    finally:
        pids = [p["pid"] for p in (rt.status().broker, rt.status().postgres) if p]
        rt.down(purge=True)
        assert not any(pid_alive(p) for p in pids)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == event]


def test_a_broker_outage_is_logged_and_counted(
    own_runtime: Settings, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings, rt = own_runtime, Runtime(own_runtime)
    ep = resolve_endpoints(settings)
    ensure_schema(ep.database_url)
    venue, sym = f"o{unique[:8]}", "OUT/USD"
    sink = PostgresSink(settings, ep, config=config(venue, sym, unique), name="outage-sink", status_home=settings.home)
    stop = threading.Event()
    th = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    th.start()
    bus = Bus(settings, ep.pulsar_url)
    pub = EventPublisher(bus, "historical", producer_prefix=f"outage-{unique}")
    try:
        wait_for(lambda: sink.stats.mode, "the sink to start")
        for i in range(100):
            pub.publish(trade(venue, sym, i))
        wait_for(lambda: len(trade_ids(ep.database_url, venue)) == 100, "the first 100 trades stored")
        assert sink.stats.broker_errors == 0 and pub.stats.broker_disconnects == 0

        broker_pid = rt.status().broker["pid"]  # type: ignore[index]
        terminate(broker_pid)
        wait_for(lambda: sink.stats.broker_errors >= 1, "the sink to count the outage", timeout=10)
        wait_for(lambda: pub.stats.broker_disconnects >= 1, "the publisher to count the outage", timeout=10)
        lost = logged(caplog, "broker connection lost")
        assert {f["service"] for f in lost} >= {"outage-sink", f"outage-{unique}"}
        assert all(f["broker"] == ep.pulsar_url for f in lost)
        wait_for(lambda: Path(settings.home / "run" / "outage-sink.json").read_text().count(
            '"broker_connected": false'), "the sink's status file to say so")  # fmt: skip

        rt.up()  # the broker again, same port and data
        assert rt.status().broker_running and rt.status().broker["pid"] != broker_pid  # type: ignore[index]
        wait_for(lambda: len(logged(caplog, "broker connection restored")) >= 2, "both to reconnect", timeout=30)
        assert all(f["down_s"] > 0 for f in logged(caplog, "broker connection restored"))
        for i in range(100, 200):
            pub.publish(trade(venue, sym, i))
        wait_for(lambda: len(trade_ids(ep.database_url, venue)) == 200, "every trade after the outage", timeout=30)
        assert sink.stats.broker_errors == 1  # one outage, counted once
    finally:
        stop.set()
        th.join(20)
        pub.close()
        bus.close()
    assert sorted(trade_ids(ep.database_url, venue)) == sorted(f"t{i}" for i in range(200))
