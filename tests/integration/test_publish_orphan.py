"""A publisher process whose ingester was SIGKILLed while the broker confirms nothing (frozen here; a full disk in
the fault suite) flushes for ``pulsar.exit_flush_timeout_s``, then exits 1 naming what was never confirmed — it
used to wait in its final flush for ever (the disk-full case left such orphans). Its own broker: the test freezes
it with SIGSTOP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulse.runtime import Runtime, resolve_endpoints
from pulse.runtime.procs import pid_alive
from pulse.settings import Settings
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)

PARENT = """
import os, sys, time
from decimal import Decimal
from pulse.models import Trade
from pulse.publish_proc import OffloadedPublisher
from pulse.settings import load_settings

s = load_settings()
pub = OffloadedPublisher(s, s.pulsar.url, "crypto", producer_prefix=os.environ["ORPHAN_PREFIX"], max_batch=1)
def trade(i):
    return Trade(venue="kraken", symbol="ORPH/USD", ts_event=time.time_ns(), ts_recv=time.time_ns(), seq=i,
                 price=Decimal("1.5"), size=Decimal(1), side="buy", trade_id=str(i))
pub.publish(trade(0))
pub.flush()  # the producer exists and the broker confirmed: all is well so far
print(pub.pid, flush=True)
sys.stdin.readline()
for i in range(1, 201):
    pub.publish(trade(i))
print("sent", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def own_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, int]]:
    settings = make_settings(tmp_path_factory.mktemp("orphan-home"))
    rt = Runtime(settings)
    rt.up()
    broker = rt.status().broker
    assert broker is not None
    try:
        yield settings, broker["pid"]
    finally:
        os.kill(broker["pid"], signal.SIGCONT)
        pids = [p["pid"] for p in (rt.status().broker, rt.status().postgres) if p]
        rt.down(purge=True)
        assert not any(pid_alive(p) for p in pids)


def test_a_killed_ingesters_publisher_process_exits_after_its_final_flush_deadline(
    own_runtime: tuple[Settings, int], unique: str
) -> None:
    settings, broker_pid = own_runtime
    env = {**os.environ, "PULSE_PULSAR__URL": resolve_endpoints(settings).pulsar_url,
           "PULSE_PULSAR__EXIT_FLUSH_TIMEOUT_S": "3", "ORPHAN_PREFIX": f"orphan-{unique}"}  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    child = 0
    try:
        assert parent.stdout is not None and parent.stdin is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), (line, parent.stderr.read() if parent.poll() is not None else "")  # type: ignore[union-attr]
        child = int(line)
        os.kill(broker_pid, signal.SIGSTOP)  # from now on the broker confirms nothing
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "sent"
        os.kill(parent.pid, signal.SIGKILL)  # the ingester dies: the publisher process reads the end of its pipe
        parent.wait(10)
        deadline = time.monotonic() + 60
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(child), "the publisher process still waits in its final flush"
        _, err = parent.communicate(timeout=10)  # the child wrote its log to the stderr it shared with the parent
        assert "the broker confirmed nothing in the final flush" in err and "unconfirmed=200" in err, err[-2000:]
    finally:
        os.kill(broker_pid, signal.SIGCONT)
        for pid in (parent.pid, child):
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
