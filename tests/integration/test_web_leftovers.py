"""A gateway killed with SIGKILL cannot unsubscribe: the next gateway removes what it left on the broker, and
leaves a running gateway's subscriptions alone. What is on the broker is read from the broker's own metrics: a
subscription's backlog grows with every message published while it exists (pulsar-lite keeps exporting the
last value of a removed subscription's gauge, Apache Pulsar drops it: either way, it stops growing)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pulsar
import pytest

from pulse.broker_metrics import parse_topic_metrics
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.procs import wait_for
from tests.web_gateway import Gateway, gateway
from web.leftovers import records_dir

pytestmark = pytest.mark.timeout(300)


def metrics(endpoints: Endpoints) -> dict[str, dict[str, float]]:
    """topic → subscription → backlog, as the broker exports them."""
    with urllib.request.urlopen(endpoints.broker_metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    return {topic: dict(tm.subscriptions) for topic, tm in parse_topic_metrics(text).items()}


def subscriptions(endpoints: Endpoints) -> dict[str, set[str]]:
    """subscription name → the topics the broker lists it on."""
    out: dict[str, set[str]] = {}
    for topic, subs in metrics(endpoints).items():
        for sub in subs:
            out.setdefault(sub, set()).add(topic)
    return out


def backlog(endpoints: Endpoints, topic: str, sub: str) -> float:
    return metrics(endpoints).get(topic, {}).get(sub, 0.0)


def publish_alerts(s: Settings, endpoints: Endpoints, n: int) -> str:
    """``n`` alert documents on the alerts topic (every gateway reads it); returns the topic."""
    from pulse.topics import service_topic

    topic = service_topic("alerts", s.alerting.alerts_topic, s.pulsar.tenant)
    client = pulsar.Client(endpoints.pulsar_url)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(n):
            producer.send(json.dumps({"alert_id": f"leftover-{time.time_ns()}-{i}", "message": "test"}).encode())
        producer.close()
    finally:
        client.close()
    return topic


def record_of(home: Path, gw: Gateway) -> dict[str, object]:
    """The subscription record the gateway process wrote (its pid inside)."""

    def find() -> dict[str, object] | None:
        for path in records_dir(home).glob("*.json"):
            doc = json.loads(path.read_text())
            if doc["pid"] == gw.proc.pid and len(doc["topics"]) >= 3:  # control, alerts, fills
                return doc | {"path": str(path)}
        return None

    return wait_for(find, "the gateway's subscription record")


def test_a_killed_gateways_subscriptions_are_removed_by_the_next_one(
    runtime_settings: Settings, endpoints: Endpoints
) -> None:
    home = runtime_settings.home
    with gateway(runtime_settings) as live:
        live_rec = record_of(home, live)
        with gateway(runtime_settings) as killed:
            rec = record_of(home, killed)
            name, topics = str(rec["subscription"]), set(rec["topics"])  # type: ignore[arg-type]
            wait_for(lambda: topics <= subscriptions(endpoints).get(name, set()), "the broker to list them", 60)
            os.kill(killed.proc.pid, signal.SIGKILL)
            killed.proc.wait(10)
        # the subscriptions stay, and messages pile up for them
        base = backlog(endpoints, next(t for t in topics if "alerts" in t), name)
        alerts = publish_alerts(runtime_settings, endpoints, 5)
        wait_for(lambda: backlog(endpoints, alerts, name) >= base + 5, "a backlog on the dead subscription", 60)
        assert topics <= subscriptions(endpoints).get(name, set())
        assert Path(str(rec["path"])).exists()

        with gateway(runtime_settings) as after:
            assert after.stats()["stale_removed"] >= len(topics)
            assert not Path(str(rec["path"])).exists()
            left = backlog(endpoints, alerts, name)
            delivered = live.stats()["events_in"]
            publish_alerts(runtime_settings, endpoints, 5)
            # the running gateways read the new alerts (and ack them), the removed subscription gets none
            wait_for(lambda: live.stats()["events_in"] >= delivered + 5, "the live gateway to read the alerts", 60)
            time.sleep(8)  # pulsar-lite refreshes its subscription gauges every few seconds
            assert backlog(endpoints, alerts, name) <= left
            # the running gateway's are untouched, and it still serves
            on_broker = subscriptions(endpoints)
            assert set(live_rec["topics"]) <= on_broker.get(str(live_rec["subscription"]), set())  # type: ignore[arg-type]
            assert Path(str(live_rec["path"])).exists()
            assert live.request("GET", "/readyz")[0] == 200
        # a clean stop unsubscribes and removes its record
        after_rec = [p for p in records_dir(home).glob("*.json") if json.loads(p.read_text())["pid"] == after.proc.pid]
        assert after_rec == []
