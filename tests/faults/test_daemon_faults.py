"""SIGKILL and restart of each daemon while the chain runs at a steady rate (see tests/faults/chain.py).

The venue keeps its last 50 trades per pair (Kraken's trade snapshot): a restart within that window loses
nothing, and the restarted ingester marks the hole it cannot see into with a gap marker per pair.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pulse.settings import Settings
from pulse.status import read_status
from tests.faults.chain import Chain, chain, wait_for

pytestmark = pytest.mark.timeout(420)


def test_no_fault_baseline(fault_runtime: Settings, tmp_path: Path) -> None:
    with chain(fault_runtime, tmp_path, "baseline") as c:
        mark, t0 = c.mark(), time.monotonic()
        time.sleep(4)
        out = c.finish(c.recovery(mark, t0))
    assert out.sent > 20 and (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert out.gaps == 0, out


def all_pairs_recorded(c: Chain) -> None:
    """Wait until the ingester's status file (written twice a second) has a last tick for every pair: the
    restarted process marks the hole of each pair the killed one recorded (a pair subscribed but not recorded
    yet gets no marker, see the README's "Not done yet")."""
    wait_for(lambda: set(c.symbols) <= set((read_status(c.settings.home, "ingest-kraken") or {}).get("last_tick", {})),
             "every pair in the ingester's status file")  # fmt: skip


def test_ingester_sigkill_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    with chain(fault_runtime, tmp_path, "kill ingester") as c:
        all_pairs_recorded(c)
        c.kill("ingest")
        mark, t0 = c.mark(), time.monotonic()
        c.spawn("ingest")
        out = c.finish(c.recovery(mark, t0), gaps=len(c.symbols))
    assert out.sent > 20 and (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
    assert out.gaps == len(c.symbols), out  # the restart's hole, marked once per pair


def test_sink_sigkill_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    with chain(fault_runtime, tmp_path, "kill sink") as c:
        c.kill("sink")
        mark, t0 = c.mark(), time.monotonic()
        c.spawn("sink")
        out = c.finish(c.recovery(mark, t0))
    assert (out.duplicates, out.extra, out.gaps) == (0, 0, 0), out
    if out.lost:
        # Seen about one run in three on pulsar-lite (never on Apache Pulsar, tests/real_pulsar): the restarted
        # sink's first subscribe waits 30 s, and afterwards the subscription has two consumers, one of which
        # holds a few messages (one per topic or so) without ever receiving them while the rest flows to the
        # sink. Not silent: the sink's watch sees the backlog that does not drain and says so (stalled, in its
        # status file and `pulse status`); the messages come back when the broker restarts.
        sink = c.summary("sink")
        assert out.broker == "lite" and sink["stalls"] >= 1 and sink["stalled"], (out, sink)
        out.note = f"{out.lost} held by a phantom consumer: flagged stalled (pulsar-lite)"


@pytest.mark.slow
def test_ingester_down_longer_than_the_venue_keeps(fault_runtime: Settings, tmp_path: Path) -> None:
    # Down while the venue made more than its 50-trade snapshot per pair: what it no longer has is lost, and
    # the restarted ingester's gap marker covers exactly that hole — every lost trade was made while it was down.
    with chain(fault_runtime, tmp_path, "ingester down > snapshot", rate=80.0) as c:
        all_pairs_recorded(c)
        c.kill("ingest")
        down_from = c.mark()

        def venue_moved_on() -> bool:
            made = c.tape[down_from:]
            return all(sum(1 for s, _ in made if s == sym) > 60 for sym in c.symbols)

        wait_for(venue_moved_on, "the venue to make 60+ trades per pair", timeout=180)
        down_to, t0 = c.mark(), time.monotonic()
        c.spawn("ingest")
        out = c.finish(c.recovery(down_to, t0), gaps=len(c.symbols))
    tape, stored = c.tape, set(c.rows())
    # the hole: after the last trade stored from before the kill (what the killed process had in flight is
    # in it too), before the first stored from after the restart
    before = max(i for i in range(down_from) if tape[i] in stored)
    after = min(i for i in range(down_to, len(tape)) if tape[i] in stored)
    lost_at = [i for i, t in enumerate(tape) if t not in stored]
    assert out.lost > 0 and all(before < i < after for i in lost_at), (out, before, after, lost_at[:5], lost_at[-5:])
    assert out.gaps == len(c.symbols) and (out.duplicates, out.extra) == (0, 0), out
    out.note = f"{down_to - down_from} made while down; {out.lost} lost, all inside the marked hole"
