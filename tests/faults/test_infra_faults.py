"""The broker and PostgreSQL stopped and restarted under the running chain (see tests/faults/chain.py)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import psycopg
import pytest

from pulse.runtime import Runtime, resolve_endpoints
from pulse.runtime.postgres import pg_ctl
from pulse.runtime.procs import terminate
from pulse.settings import Settings
from tests.faults.chain import chain

pytestmark = pytest.mark.timeout(420)

OUTAGE_S = 5.0


def test_broker_stop_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    rt = Runtime(fault_runtime)
    with chain(fault_runtime, tmp_path, "broker stop/restart") as c:
        terminate(rt.status().broker["pid"])  # type: ignore[index]
        time.sleep(OUTAGE_S)  # the venue goes on; the ingester holds what it receives
        mark, t0 = c.mark(), time.monotonic()
        assert rt.up().broker_running
        rec = c.recovery(mark, t0)
        out = c.finish(rec, note=f"{OUTAGE_S:.0f}s outage")
        assert c.alive("ingest") and c.alive("sink")  # both rode it out
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    ing = c.summary("ingest")
    assert ing["publish_failed"] == 0 and ing["pending"] == 0, ing
    assert c.summary("sink")["broker_errors"] >= 1  # the outage was seen and counted


def test_postgres_stop_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    rt = Runtime(fault_runtime)
    pg = rt.status().postgres
    assert pg is not None
    with chain(fault_runtime, tmp_path, "postgres stop/restart") as c:
        res = pg_ctl(pg["data_dir"], ["-m", "fast", "-w", "-t", "60", "stop"], pg["bin_dir"])
        assert res.returncode == 0, res.stderr
        try:
            time.sleep(OUTAGE_S)
        finally:
            mark, t0 = c.mark(), time.monotonic()
            assert rt.up().postgres_running  # the same cluster, port and options
        rec = c.recovery(mark, t0)
        out = c.finish(rec, note=f"{OUTAGE_S:.0f}s outage")
        assert c.alive("sink")
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert c.summary("sink")["db_errors"] >= 1


def test_a_slow_sink_keeps_memory_bounded_and_drops_nothing(fault_runtime: Settings, tmp_path: Path) -> None:
    # The database stops accepting the sink's writes for 20 s (a lock on the trades table: its COPY waits,
    # nothing fails) while the venue goes on at ~60 trades/s: the backlog waits on the broker, not in the sink.
    db = resolve_endpoints(fault_runtime).database_url
    with chain(fault_runtime, tmp_path, "slow sink (db locked)", rate=200.0) as c:
        sink = psutil.Process(c.daemons["sink"].proc.pid)  # type: ignore[union-attr]
        rss0, peak = sink.memory_info().rss, 0
        with psycopg.connect(db) as lock:
            lock.execute("LOCK TABLE trades IN ACCESS EXCLUSIVE MODE")
            held_from = c.mark()
            end = time.monotonic() + 20
            while time.monotonic() < end:
                peak = max(peak, sink.memory_info().rss)
                time.sleep(0.5)
            during = c.mark() - held_from
            mark, t0 = c.mark(), time.monotonic()
        rec = c.recovery(mark, t0)  # the lock is gone with the connection
        grew_mb = (peak - rss0) / 2**20
        out = c.finish(rec, note=f"{during} trades while held; sink RSS +{grew_mb:.0f} MB")
    assert during > 300, out
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert grew_mb < 64, out
