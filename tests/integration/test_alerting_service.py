"""The alerting service as a process against the real broker and PostgreSQL: rules added with the CLI, ticks
published to the live topics, the alert received on the alerts topic, found in the database and at a local
webhook that verifies the signature; state survives a SIGTERM restart; a webhook host off the allow-list is
refused at start. Processes are stopped by pid."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from decimal import Decimal

import pulsar
import pytest
from aiohttp import web

from consumers.alerting.messages import Alert, decode_alert
from consumers.alerting.store import AlertStore
from consumers.alerting.webhooks import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from pulse.topics import service_topic
from tests.procs import process, pulse_cmd, stop, wait_for

SECRET = "integration-webhook-secret"
pytestmark = pytest.mark.slow


class WebhookReceiver:
    """A local HTTP receiver on its own loop in a thread; answers the first request 503 (exercises a retry)."""

    def __init__(self) -> None:
        self.got: list[tuple[bool, bytes, str]] = []
        self.calls = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls += 1
        if self.calls == 1:
            return web.Response(status=503)
        ok = verify(SECRET, request.headers[TIMESTAMP_HEADER], body, request.headers[SIGNATURE_HEADER])
        self.got.append((ok, body, request.headers[ALERT_ID_HEADER]))
        return web.Response(status=200 if ok else 401)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_post("/hook", self.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            return runner

        self.runner = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def alerting_cmd(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`pulse alerts …`, or `pulse consumers alerting run …` for ``run …``."""
    return pulse_cmd(settings, *(["consumers", "alerting", *args] if args[:1] == ("run",) else args), env=env)


def run_cmd(settings: Settings, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = alerting_cmd(settings, *args, env=env)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def quote(symbol: str, bid: str, ask: str) -> Quote:
    now = time.time_ns()
    return Quote(venue="kraken", symbol=symbol, ts_event=now, ts_recv=now, bid=Decimal(bid), bid_size=Decimal(1),
                 ask=Decimal(ask), ask_size=Decimal(1))  # fmt: skip


def receive_alerts(consumer: pulsar.Consumer, n: int, timeout: float = 30.0) -> list[Alert]:
    out: list[Alert] = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(msg)
        out.append(decode_alert(msg.data()))
    return out


def test_alert_flows_to_topic_database_and_webhook_and_survives_restart(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s = runtime_settings
    symbol = f"A{unique[:8].upper()}/USD"
    add = ["alerts", "add", "price-cross", "--venue", "kraken", "--symbol", symbol, "--above", "100"]
    rc, out, err = run_cmd(s, *add, "--cooldown", "0", "--hysteresis", "0.5", "--name", f"t-{unique}", "--json")
    assert rc == 0, err[-2000:]
    rule_id = json.loads(out)["id"]
    rc, out, err = run_cmd(s, "alerts", "add", "price-cross", "--venue", "kraken", "--symbol", symbol, "--above", "x")
    assert rc == 2 and "above" in err, err[-2000:]
    rc, out, _ = run_cmd(s, "alerts", "list", "--json")
    assert rc == 0 and any(r["id"] == rule_id and r["symbol"] == symbol for r in json.loads(out))

    alerts_name = f"events.t{unique}"
    with WebhookReceiver() as hook:
        env = {
            "PULSE_ALERTING__SUBSCRIPTION": f"alerting-{unique}",
            "PULSE_ALERTING__ALERTS_TOPIC": alerts_name,
            "PULSE_ALERTING__WEBHOOKS": hook.url,
            "PULSE_ALERTING__WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "PULSE_ALERTING__WEBHOOK_SECRET": SECRET,
            "PULSE_ALERTING__SNAPSHOT_INTERVAL_S": "0.2",
        }
        bus = Bus(s, endpoints.pulsar_url)
        try:
            alerts_sub = bus.subscribe(service_topic("alerts", alerts_name), f"test-{unique}")
            pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")

            def running() -> bool:
                st = read_status(s.home, "alerting")
                return bool(st and st.get("state") == "running" and st["pid"] == svc.pid)

            svc = alerting_cmd(s, "run", "--json", env=env)
            with process(svc):
                wait_for(running, "the alerting service to run")
                # mids 98.5 99.5 101 (cross) 101.5 100.3 99.5 (re-arm: <= 99.5) 102 (cross) 98.5 (re-armed at stop)
                for bid in ("98", "99", "100.5", "101", "99.8", "99", "101.5", "98"):
                    pub.publish(quote(symbol, bid, str(Decimal(bid) + 1)))
                pub.flush()
                got = receive_alerts(alerts_sub, 2)
                assert [(a.rule_id, a.condition, a.value, a.symbol) for a in got] == [
                    (rule_id, "above", "101.0", symbol),  # the exact mid, (100.5 + 101.5) / 2
                    (rule_id, "above", "102.0", symbol),
                ]
                store = AlertStore(endpoints.database_url)
                try:
                    rows = wait_for(lambda: len(store.alerts(rule_ids=[rule_id])) == 2 and store.alerts(
                        rule_ids=[rule_id]), "2 alert rows")  # fmt: skip
                    assert [r["alert_id"] for r in rows] == [a.alert_id for a in got]
                    wait_for(lambda: len(hook.got) == 2, "2 verified webhook deliveries")
                    assert all(ok for ok, _, _ in hook.got)
                    assert sorted(aid for _, _, aid in hook.got) == sorted(a.alert_id for a in got)
                    assert {decode_alert(body) for _, body, _ in hook.got} == set(got)
                    rc, out, err = stop(svc, timeout=60)
                    assert rc == 0, err[-3000:]
                    counters = json.loads(out)
                    assert counters["alerts"] == 2 and counters["stored"] == 2 and counters["webhook_delivered"] == 2
                    assert counters["webhook_retries"] == 1 and counters["decode_errors"] == 0
                    assert SECRET not in err

                    # restart: the rule was left armed (last mid 98.5), so the first tick above the level fires —
                    # a fresh engine would take it as the first observation (no crossing) and stay silent
                    svc = alerting_cmd(s, "run", "--json", env=env)
                    with process(svc):
                        wait_for(running, "the restarted service to run")
                        for bid in ("102", "103"):
                            pub.publish(quote(symbol, bid, str(Decimal(bid) + 1)))
                        pub.flush()
                        got2 = receive_alerts(alerts_sub, 1)
                        assert [(a.condition, a.value) for a in got2] == [("above", "102.5")]
                        assert receive_alerts(alerts_sub, 1, timeout=1.0) == []
                        rc, out, err = stop(svc, timeout=60)
                        assert rc == 0, err[-3000:]
                        assert json.loads(out)["restored_rules"] >= 1
                    assert len(store.alerts(rule_ids=[rule_id])) == 3
                finally:
                    store.close()
        finally:
            bus.close()
    rc, out, err = run_cmd(s, "alerts", "remove", str(rule_id))
    assert rc == 0 and f"removed #{rule_id}" in out


def test_webhook_host_not_allowed_is_refused_at_start(runtime_settings: Settings) -> None:
    env = {
        "PULSE_ALERTING__WEBHOOKS": "https://hooks.evil.example/x",
        "PULSE_ALERTING__WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "PULSE_ALERTING__WEBHOOK_SECRET": SECRET,
    }
    rc, _, err = run_cmd(runtime_settings, "run", env=env)
    assert rc == 2
    assert "'hooks.evil.example' is not in alerting.webhook_allowed_hosts" in err
    assert SECRET not in err


def test_rules_added_and_removed_while_it_runs_take_effect_without_a_restart(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s = runtime_settings
    sym_a, sym_b = f"RA{unique[:7].upper()}/USD", f"RB{unique[:7].upper()}/USD"

    def add(symbol: str, level: str) -> int:
        rc, out, err = run_cmd(s, "alerts", "add", "price-cross", "--venue", "kraken", "--symbol", symbol,
                               "--above", level, "--cooldown", "0", "--json")  # fmt: skip
        assert rc == 0, err[-2000:]
        return int(json.loads(out)["id"])

    rule_a = add(sym_a, "100")
    alerts_name = f"events.r{unique}"
    env = {
        "PULSE_ALERTING__SUBSCRIPTION": f"alerting-r{unique}",
        "PULSE_ALERTING__ALERTS_TOPIC": alerts_name,
        "PULSE_ALERTING__SNAPSHOT_INTERVAL_S": "0.2",
        "PULSE_ALERTING__RULES_POLL_S": "0.3",
    }
    store = AlertStore(endpoints.database_url)
    bus = Bus(s, endpoints.pulsar_url)
    try:
        alerts_sub = bus.subscribe(service_topic("alerts", alerts_name), f"test-r{unique}")
        pub = EventPublisher(bus, "crypto", producer_prefix=f"test-r{unique}")
        svc = alerting_cmd(s, "run", "--json", env=env)

        def serving_stored_rules() -> bool:
            st = read_status(s.home, "alerting")
            return bool(st and st["pid"] == svc.pid and st.get("state") == "running"
                        and st.get("rules") == len(store.rule_ids()))  # fmt: skip

        def cross(symbol: str, below: str, above: str) -> None:
            for bid in (below, above):
                pub.publish(quote(symbol, bid, str(Decimal(bid) + 1)))
            pub.flush()

        with process(svc):
            wait_for(serving_stored_rules, "the alerting service to run")
            cross(sym_a, "98", "101")  # mids 98.5 → 101.5
            assert [(a.rule_id, a.value) for a in receive_alerts(alerts_sub, 1)] == [(rule_a, "101.5")]

            rule_b = add(sym_b, "50")  # a rule on an instrument the running service does not consume yet
            wait_for(serving_stored_rules, "the new rule to be loaded")
            cross(sym_b, "40", "60")
            assert [(a.rule_id, a.value) for a in receive_alerts(alerts_sub, 1)] == [(rule_b, "60.5")]

            rc, out, err = run_cmd(s, "alerts", "remove", str(rule_a))
            assert rc == 0, err[-2000:]
            wait_for(serving_stored_rules, "the removed rule to be unloaded")
            cross(sym_a, "98", "101")  # would fire rule A again (re-armed below the level)
            cross(sym_b, "40", "70")  # rule B still fires, with its state kept across the reloads
            got = receive_alerts(alerts_sub, 2, timeout=5.0)
            assert [(a.rule_id, a.value) for a in got] == [(rule_b, "70.5")]

            assert svc.poll() is None, "rules changed without restarting the process"
            rc, out, err = stop(svc, timeout=60)
            assert rc == 0, err[-3000:]
            counters = json.loads(out)
            assert counters["alerts"] == 3  # counted across the reloads
            assert "alert rules changed; reloading" in err
    finally:
        bus.close()
        store.close()
    rc, _, err = run_cmd(s, "alerts", "remove", str(rule_b))
    assert rc == 0, err[-2000:]
