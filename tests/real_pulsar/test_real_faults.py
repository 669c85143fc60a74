"""The fault suite on Apache Pulsar (a representative subset of tests/faults/, the same harness and table):
SIGKILL and restart of the sink and of the ingester, a dropped venue connection, PostgreSQL and the broker
stopped and restarted. Here a SIGKILLed sink's unacknowledged messages come back to the restarted sink (on
pulsar-lite they can stay with a phantom consumer), so every case must lose and double nothing.

The broker case found that `pulse up` started Apache Pulsar on a fresh data directory: the restarted broker had
no tenant, namespace or message and the chain could not recover. It now keeps its data (and its bookie's port,
which the ledgers name)."""

from __future__ import annotations

import time
from pathlib import Path

from ingesters.kraken.simulator import FaultPlan
from pulse.runtime import Runtime
from pulse.runtime.postgres import pg_ctl
from pulse.runtime.procs import terminate
from pulse.settings import Settings
from tests.faults.chain import chain, wait_for
from tests.faults.test_daemon_faults import all_pairs_recorded


def test_sink_sigkill_and_restart_on_apache(apache_settings: Settings, tmp_path: Path) -> None:
    with chain(apache_settings, tmp_path, "kill sink") as c:
        c.kill("sink")
        mark, t0 = c.mark(), time.monotonic()
        c.spawn("sink")
        out = c.finish(c.recovery(mark, t0))
    assert (out.lost, out.duplicates, out.extra, out.gaps) == (0, 0, 0, 0), out


def test_ingester_sigkill_and_restart_on_apache(apache_settings: Settings, tmp_path: Path) -> None:
    with chain(apache_settings, tmp_path, "kill ingester") as c:
        all_pairs_recorded(c)
        c.kill("ingest")
        mark, t0 = c.mark(), time.monotonic()
        c.spawn("ingest")
        out = c.finish(c.recovery(mark, t0), gaps=len(c.symbols))
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert out.gaps == len(c.symbols), out


def test_venue_drop_on_apache(apache_settings: Settings, tmp_path: Path) -> None:
    with chain(apache_settings, tmp_path, "venue drop", faults=FaultPlan(disconnect_after=60)) as c:
        wait_for(lambda: c.venue.sim.stats["disconnects"] == 1, "the venue to drop the connection")
        mark, t0 = c.mark(), time.monotonic()
        out = c.finish(c.recovery(mark, t0), gaps=len(c.symbols))
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert out.gaps == len(c.symbols), out


def test_postgres_stop_and_restart_on_apache(apache_settings: Settings, tmp_path: Path) -> None:
    rt = Runtime(apache_settings)
    pg = rt.status().postgres
    assert pg is not None
    with chain(apache_settings, tmp_path, "postgres stop/restart") as c:
        res = pg_ctl(pg["data_dir"], ["-m", "fast", "-w", "-t", "60", "stop"], pg["bin_dir"])
        assert res.returncode == 0, res.stderr
        try:
            time.sleep(5)
        finally:
            mark, t0 = c.mark(), time.monotonic()
            assert rt.up().postgres_running
        out = c.finish(c.recovery(mark, t0), note="5s outage")
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out


def test_broker_stop_and_restart_on_apache(apache_settings: Settings, tmp_path: Path) -> None:
    # last in the module: the other real_pulsar tests share this broker (its data and policies survive)
    rt = Runtime(apache_settings)
    with chain(apache_settings, tmp_path, "broker stop/restart") as c:
        terminate(rt.status().broker["pid"], timeout=30)  # type: ignore[index]
        mark, t0 = c.mark(), time.monotonic()
        assert rt.up().broker_running  # Apache Pulsar takes a while to start: the outage is that long
        rec = c.recovery(mark, t0, timeout=300)
        out = c.finish(rec, note="outage = the broker's start")
        assert c.alive("ingest") and c.alive("sink")
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
