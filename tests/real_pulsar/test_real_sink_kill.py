"""The sink SIGKILLed mid-batch on Apache Pulsar: the broker redelivers what the dead consumer held.

On pulsar-lite the same kill can leave the dead consumer on the Shared subscription with its messages, so
dispatch stops (issue 17, defect 6). Here the broker notices the closed connection, returns the dead consumer's
unacknowledged messages to the subscription and a restarted sink stores exactly the set, quickly.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from tests.integration.test_sink_reliability import _child, config, publish, trade, trade_ids, wait_for


def test_sigkill_mid_batch_redelivers_and_a_restart_stores_exactly_the_set(
    apache_settings: Settings, apache_endpoints: Endpoints, unique: str
) -> None:
    s, ep = apache_settings, apache_endpoints
    ensure_schema(ep.database_url)
    venue, sym, n = f"k{unique[:8]}", "REL/USD", 30_000
    cfg = config(venue, sym, unique)
    publish(s, ep, [trade(venue, sym, i) for i in range(n)])
    ctx = multiprocessing.get_context("spawn")
    first = ctx.Process(target=_child, args=(s, ep, cfg), daemon=True)
    first.start()
    try:
        wait_for(lambda: len(trade_ids(ep.database_url, venue)) > 0, "the first commits", timeout=120)
        os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
        first.join(10)
    finally:
        if first.is_alive():
            os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
    stored_at_kill = len(trade_ids(ep.database_url, venue))
    assert stored_at_kill < n, "the sink finished before it was killed; kill earlier"
    second = PostgresSink(s, ep, config=cfg, name="rel-second")
    stop = threading.Event()
    th = threading.Thread(target=second.run, args=(stop,), daemon=True)
    th.start()
    try:
        wait_for(lambda: len(trade_ids(ep.database_url, venue)) >= n, "every trade after the restart", timeout=120)
        time.sleep(0.3)  # let redeliveries of unacked messages land (as duplicates the unique keys absorb)
    finally:
        stop.set()
        th.join(20)
    ids = trade_ids(ep.database_url, venue)
    assert len(ids) == n and set(ids) == {f"t{i}" for i in range(n)}
