"""The venue misbehaving under the running chain (see tests/faults/chain.py): a dropped connection, a stalled
one, malformed frames and wrong book checksums. The venue's trade snapshot (its last 50 trades per pair) covers
what a reconnect missed; every fault is counted by the ingester exactly as the venue injected it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingesters.binance.simulator_market import FaultPlan as BinanceFaultPlan
from ingesters.kraken.simulator import FaultPlan
from pulse.settings import Settings
from tests.faults.chain import BinanceChain, chain, wait_for

pytestmark = pytest.mark.timeout(420)


def test_venue_drops_the_connection(fault_runtime: Settings, tmp_path: Path) -> None:
    plan = FaultPlan(disconnect_after=60)
    with chain(fault_runtime, tmp_path, "venue drop", faults=plan) as c:
        sim = c.venue.sim
        wait_for(lambda: sim.stats["disconnects"] == 1, "the venue to drop the connection")
        mark, t0 = c.mark(), time.monotonic()
        out = c.finish(c.recovery(mark, t0), gaps=len(c.symbols))
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert out.gaps == len(c.symbols), out  # a gap marker per pair at the reconnect
    assert c.summary("ingest")["reconnects"] == 1


def test_venue_stalls(fault_runtime: Settings, tmp_path: Path) -> None:
    # the socket stays open and nothing comes, not even heartbeats: the ingester gives up on it after 3 s
    plan = FaultPlan(stall_after=60)
    env = {"PULSE_KRAKEN__STALE_AFTER_S": "3"}
    with chain(fault_runtime, tmp_path, "venue stall", faults=plan, ingest_env=env) as c:
        sim = c.venue.sim
        wait_for(lambda: sim.stats["stalls"] == 1, "the venue to stall")
        mark, t0 = c.mark(), time.monotonic()
        out = c.finish(c.recovery(mark, t0), note="stale after 3s", gaps=len(c.symbols))
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert out.gaps == len(c.symbols), out
    ing = c.summary("ingest")
    assert ing["reconnects"] == 1 and ing["stale"] >= 1, ing


def test_venue_sends_malformed_frames(fault_runtime: Settings, tmp_path: Path) -> None:
    # the five kinds, hostile ones included (1,000-deep nesting, invalid UTF-8): counted, dead-lettered, no reconnect
    plan = FaultPlan(malformed_every=15, max_malformed=5)
    with chain(fault_runtime, tmp_path, "malformed frames", faults=plan) as c:
        sim = c.venue.sim
        wait_for(lambda: sim.stats["malformed"] == 5, "five malformed frames")
        mark, t0 = c.mark(), time.monotonic()
        out = c.finish(c.recovery(mark, t0), note="5 frames")
    assert (out.lost, out.duplicates, out.extra, out.gaps) == (0, 0, 0, 0), out
    ing = c.summary("ingest")
    assert ing["parse_errors"] == ing["dead_letters"] == 5 and ing["reconnects"] == 0, ing


def test_venue_sends_wrong_checksums(fault_runtime: Settings, tmp_path: Path) -> None:
    plan = FaultPlan(bad_checksum_every=20, max_bad_checksums=3)
    with chain(fault_runtime, tmp_path, "wrong checksums", channels="trade,book", faults=plan) as c:
        sim = c.venue.sim
        wait_for(lambda: sim.stats["bad_checksums"] == 3, "three wrong checksums")
        mark, t0 = c.mark(), time.monotonic()
        out = c.finish(c.recovery(mark, t0), note="3 books resynced")
    assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    ing = c.summary("ingest")
    assert ing["checksum_failures"] == 3 and ing["reconnects"] == 0, ing


def test_venue_sends_depth_updates_out_of_order(fault_runtime: Settings, tmp_path: Path) -> None:
    # Binance's diff ids: every 15th diff of a stream comes after the next one; the book resyncs from REST
    plan = BinanceFaultPlan(reorder_update_every=15, max_reorders=3)
    with chain(fault_runtime, tmp_path, "out-of-order sequence", kind=BinanceChain, channels="trade,book",
               faults=plan) as c:  # fmt: skip
        sim = c.venue.sim
        wait_for(lambda: sim.stats["reordered_updates"] == 3, "three diffs out of order")
        mark, t0 = c.mark(), time.monotonic()
        out = c.finish(c.recovery(mark, t0), note="3 diffs swapped (Binance)")
    assert (out.lost, out.duplicates, out.extra, out.gaps) == (0, 0, 0, 0), out
    ing = c.summary("ingest")
    assert ing["resyncs"] == 3 and ing["reconnects"] == 0, ing
