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
            # removed once the new gateway is ready, in the background
            wait_for(lambda: after.stats()["stale_removed"] >= len(topics), "the dead gateway's subscriptions removed")
            assert not Path(str(rec["path"])).exists()
            after_rec = record_of(home, after)
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
            # and the new gateway kept its own (its record is written before the clean-up runs)
            assert set(after_rec["topics"]) <= on_broker.get(str(after_rec["subscription"]), set())  # type: ignore[arg-type]
            assert Path(str(after_rec["path"])).exists()
            assert Path(str(live_rec["path"])).exists()
            assert live.request("GET", "/readyz")[0] == 200
        # a clean stop unsubscribes and removes its record
        after_rec = [p for p in records_dir(home).glob("*.json") if json.loads(p.read_text())["pid"] == after.proc.pid]
        assert after_rec == []


async def test_the_gateway_is_ready_while_the_clean_up_is_still_running(
    runtime_settings: Settings, endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a broker that keeps a killed consumer, each removal can take the client's operation timeout: a gateway
    # restarted in the fault suite served only after minutes when the clean-up ran before readiness. A clean-up
    # that does not return stands in for that broker; the gateway and its broker are real.
    import asyncio
    import threading

    import web.console
    from web.console import Console

    release, entered = threading.Event(), threading.Event()

    def slow_remove(client: object, home: Path, keep: str = "") -> list[tuple[str, str]]:
        entered.set()
        release.wait(60)
        return [("pulse-web-dead", "persistent://t/ns/x")]

    monkeypatch.setattr(web.console, "remove_stale", slow_remove)
    console = Console(runtime_settings, endpoints)
    try:
        await asyncio.wait_for(console.start(), 60)
        assert console.ready
        assert await asyncio.to_thread(entered.wait, 30), "the clean-up did not start"
        assert console.status()["stale_removed"] == 0  # still running, and the gateway is ready
        release.set()
        for _ in range(100):
            if console.status()["stale_removed"] == 1:
                break
            await asyncio.sleep(0.1)
        assert console.status()["stale_removed"] == 1
    finally:
        release.set()
        await console.close()
