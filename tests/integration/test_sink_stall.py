"""Issue 17, defect 6: a stuck sink looked healthy.

After a sink was SIGKILLed, pulsar-lite kept its consumer on the Shared subscription and dispatched nothing more
(34k backlog, 0 msg/s out) while ``pulse status`` said healthy. The broker-side state is a subscription with a
backlog and a consumer connected that holds the messages and never acknowledges them. Here a real process
creates exactly that state on a sink's subscription — it takes every message and holds it, connected — and the
tests check that ``pulse status`` reports it (exit 1), that the sink's watch (sinks/postgres/watch.py) sees it
in the broker's metrics and tries its recovery, and that all clears once the holder is SIGKILLed (this time
pulsar-lite lets go of it: a sink then subscribes and stores every held message).

pulsar-lite 0.2 lets no second connection join a Shared subscription that has a consumer (the subscribe waits
for the operation timeout; that is why the restarted sinks waited 30 s): so the holder is the subscription's
only consumer, and the watch is checked on its own against the real broker, not from inside a running sink.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from pulse.broker_metrics import fetch_topic_metrics
from pulse.bus import Bus, EventPublisher
from pulse.runtime import Runtime, resolve_endpoints
from pulse.runtime.procs import pid_alive
from pulse.settings import Settings
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from sinks.postgres.stats import SinkStats
from sinks.postgres.watch import SinkWatch
from tests.conftest import REPO, make_settings
from tests.integration.test_sink_reliability import config, trade, trade_ids, wait_for

N = 300


@pytest.fixture(scope="module")
def own_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A runtime of this module's own: ``pulse status`` judges every service under its home."""
    settings = make_settings(tmp_path_factory.mktemp("stall-home"))
    rt = Runtime(settings)
    rt.up()
    try:
        yield settings
    finally:
        pids = [p["pid"] for p in (rt.status().broker, rt.status().postgres) if p]
        rt.down(purge=True)
        assert not any(pid_alive(p) for p in pids)


HOLDER = """
import sys, logging, pulsar
lg = logging.getLogger("holder"); lg.setLevel(logging.ERROR)
client = pulsar.Client(sys.argv[1], logger=lg)
consumer = client.subscribe(sys.argv[2], sys.argv[3], consumer_type=pulsar.ConsumerType.Shared,
                            receiver_queue_size=1000)
print("subscribed", flush=True)
for _ in range(int(sys.argv[4])):
    consumer.receive()  # held, never acknowledged
print("holding", flush=True)
sys.stdin.read()
"""


def pulse_status(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--home", str(settings.home), "status", "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_a_stalled_subscription_is_unhealthy_and_clears(own_runtime: Settings, unique: str) -> None:
    settings = own_runtime
    ep = resolve_endpoints(settings)
    ensure_schema(ep.database_url)
    venue, sym = f"s{unique[:8]}", "STL/USD"
    cfg = config(venue, sym, unique, stall_s=2.0)
    topic = cfg.topic_list(settings.pulsar.tenant)[0]
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), ep.pulsar_url, topic, cfg.subscription, str(N)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    th: threading.Thread | None = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "subscribed"
        bus = Bus(settings, ep.pulsar_url)
        pub = EventPublisher(bus, "historical", producer_prefix=f"stall-{unique}")
        for i in range(N):
            pub.publish(trade(venue, sym, i))
        pub.close()
        bus.close()
        assert holder.stdout.readline().strip() == "holding"
        time.sleep(2.5)  # > --max-stall: nothing dispatched or acknowledged since

        def broker_shows_it() -> bool:  # pulsar-lite refreshes its subscription gauges every few seconds
            subs = fetch_topic_metrics(ep.broker_metrics_url).get(topic)
            sm = subs.subs.get(cfg.subscription) if subs else None
            return sm is not None and sm.backlog > 0 and sm.consumers == 1

        wait_for(broker_shows_it, "the broker's metrics to show the held backlog")

        res = pulse_status(settings, "--max-stall", "2")
        assert res.returncode == 1, res.stdout + res.stderr
        report = json.loads(res.stdout)
        stuck = [s for s in report["stalled"] if s["subscription"] == cfg.subscription]
        # (pulsar-lite counts the backlog in stored entries: batches of messages)
        assert stuck and stuck[0]["topic"] == topic and stuck[0]["backlog"] > 0 and stuck[0]["consumers"] == 1
        unhealthy = [line for line in report["lines"] if line.startswith("UNHEALTHY")]
        assert any(f"subscription {cfg.subscription} on {topic}: backlog" in x and "not draining" in x
                   for x in unhealthy), unhealthy  # fmt: skip

        stats = SinkStats()
        resubscribed: list[float] = []
        watch = SinkWatch("stall-sink", ep.pulsar_url, ep.broker_metrics_url, cfg.subscription, stats,
                          stall_s=cfg.stall_s, every_s=0, probe_every_s=0)  # fmt: skip
        watch.tick([], 10.0, lambda: resubscribed.append(time.monotonic()))
        assert stats.stalled and stats.stalls == 1 and watch.stall is not None and not resubscribed
        assert watch.stall.topic == topic and watch.stall.idle_s > 2
        time.sleep(cfg.stall_s)  # still stalled a stall_s later: the recovery is tried, once per stall_s
        watch.tick([], 12.0, lambda: resubscribed.append(time.monotonic()))
        watch.tick([], 12.1, lambda: resubscribed.append(time.monotonic()))
        assert len(resubscribed) == 1 and stats.resubscribes == 1 and stats.stalls == 1

        os.kill(holder.pid, signal.SIGKILL)  # the holder goes away: its messages go to the sink
        holder.wait(10)
        sink = PostgresSink(settings, ep, config=cfg, name="stall-sink", status_home=settings.home)
        th = threading.Thread(target=sink.run, args=(stop,), daemon=True)
        th.start()
        wait_for(lambda: len(trade_ids(ep.database_url, venue)) == N, "every held trade stored", timeout=60)
        assert not sink.stats.stalled and sink.stats.stalls == 0
        watch.tick([], 20.0, lambda: resubscribed.append(time.monotonic()))
        assert not stats.stalled and watch.stall is None and len(resubscribed) == 1
        wait_for(lambda: pulse_status(settings, "--max-stall", "2").returncode == 0, "pulse status healthy again")
    finally:
        stop.set()
        if th is not None:
            th.join(20)
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    assert sorted(trade_ids(ep.database_url, venue)) == sorted(f"t{i}" for i in range(N))
