"""The sink, matching and alerting services as processes with --metrics-port: /metrics equals each service's own
counters (its status file), /readyz says ready once subscribed, and `pulse status` reads the endpoints of
services listed in settings (one that does not answer is unhealthy). Real broker and database; stopped by pid."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from consumers.alerting.store import AlertStore
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.runtime.procs import free_port
from pulse.settings import Settings
from pulse.status import read_status
from pulse.topics import topic
from tests.integration.test_consumers_cli import matching_env, publish_quote
from tests.integration.test_ingester_metrics import get, scrape, total
from tests.integration.test_sink_postgres import count, trade
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow


def stored(db_url: str, sym: str) -> int:
    try:
        return count(db_url, "trades", sym)
    except psycopg.errors.UndefinedTable:  # the sink has not created its schema yet
        return 0


def settled(s: Settings, name: str) -> Any:
    """The service's status-file counters once two reads 1 s apart agree (aside from what moves with time: CPU
    time, and the alerting service's snapshots, taken every ``alerting.snapshot_interval_s`` even when idle)."""

    def read() -> dict[str, Any]:
        c = dict((read_status(s.home, name) or {}).get("counters") or {})
        c.pop("cpu_s", None)
        c.pop("snapshots", None)
        return c

    def same() -> Any:
        a = read()
        time.sleep(1.0)
        b = read()
        return b if a and a == b else None

    return wait_for(same, f"{name}'s counters to settle")


def test_sink_metrics_equal_its_counters_and_pulse_status_reads_listed_endpoints(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s = runtime_settings
    sym = f"SM{unique[:6].upper()}/USD"
    n = 700
    bus = Bus(s, endpoints.pulsar_url)
    try:
        pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
        for i in range(n):
            pub.publish(trade(sym, i))
        pub.publish_raw(topic("crypto", "kraken", sym, "trade"), b"not an event", {"type": "trade"})
        pub.flush()
    finally:
        bus.close()
    port, dead_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    name = "sink-postgres"
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__BATCH_SIZE": "200"}
    sink = pulse_cmd(s, "sink", "run", "--source", f"crypto/kraken={sym}", "--no-follow", "--metrics-port", str(port),
                     env=env)  # fmt: skip
    with process(sink):
        wait_for(lambda: stored(endpoints.database_url, sym) == n, f"{n} trades stored")
        counters = settled(s, name)
        m = scrape(base)
        assert total(m, "pulse_sink_rows_stored_total", table="trades") == counters["stored"]["trades"] == n
        assert total(m, "pulse_sink_received_total") == counters["received"] == n + 1
        assert total(m, "pulse_dead_letters_total", service=name) == counters["dead_lettered"] == 1
        assert total(m, "pulse_sink_batches_total") == counters["batches"] == total(m, "pulse_sink_batch_rows_count")
        assert total(m, "pulse_sink_batch_rows_sum") == n + counters["duplicates"]
        assert total(m, "pulse_sink_batch_rows_bucket", le="250.0") == counters["batches"]  # batch_size 200
        assert total(m, "pulse_dependency_errors_total", dependency="database") == counters["db_errors"]
        assert total(m, "pulse_sink_lag_seconds") > 0
        code, body = get(base + "/readyz")
        doc = json.loads(body)
        assert code == 200 and doc["checks"] == {
            "loop_alive": True,
            "subscribed": True,
            "database": True,
            "broker": True,
        }

        # pulse status asks the listed endpoints: the sink answers ready, the dead one is unhealthy
        env_status = {"PULSE_STATUS__SERVICES": f"{base},http://127.0.0.1:{dead_port}"}
        res = pulse(s, "status", "--json", env=env_status)
        report = json.loads(res.stdout)
        by_url = {e["url"]: e for e in report["endpoints"]}
        assert by_url[base]["ready"] is True and by_url[base]["service"] == name
        dead = by_url[f"http://127.0.0.1:{dead_port}"]
        assert dead["ready"] is False and "error" in dead
        assert res.returncode == 1 and not report["healthy"]
        assert any(line.startswith("UNHEALTHY") and str(dead_port) in line for line in report["lines"])
        assert any(line.startswith("ok") and f"{name} at {base} ready" in line for line in report["lines"])
        rc, _, err = stop(sink)
        assert rc == 0, err[-3000:]


def test_matching_metrics_count_orders_and_fills(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    s = runtime_settings
    sym = f"MM{unique[:6].upper()}/USD"
    env = matching_env(s, f"m{unique}")
    added = pulse(s, "symbols", "add", "kraken", sym, "--channels", "ticker", "--price-precision", "1")
    assert added.returncode == 0, added.stderr
    name, port = f"matching-{unique}", free_port()
    base = f"http://127.0.0.1:{port}"
    svc = pulse_cmd(s, "consumers", "matching", "run", "--name", name, "--metrics-port", str(port), env=env)
    try:
        with process(svc):
            wait_for(lambda: get(base + "/readyz")[0] == 200, "matching to be ready")
            time.sleep(1.0)  # its market-data subscription starts at the latest message
            publish_quote(s, endpoints, unique, sym, bid=99.9, bid_size=5, ask=100.0, ask_size=1.5)
            wait_for(lambda: (read_status(s.home, name) or {}).get("last_tick", {}), "the quote")
            res = pulse(s, "orders", "submit", f"kraken:{sym}", "buy", "1", "--price", "100.0", "--json", env=env)
            assert res.returncode == 0, res.stderr
            counters = settled(s, name)
            m = scrape(base)
            assert total(m, "pulse_orders_total", service=name) == counters["orders"] == 1
            assert total(m, "pulse_fills_total", service=name) == counters["fills"] == 1
            assert total(m, "pulse_matching_executions_total") == counters["executions"]
            assert total(m, "pulse_matching_received_total") == counters["received"]
            assert total(m, "pulse_ready", service=name) == 1
            rc, _, err = stop(svc)
            assert rc == 0, err[-3000:]
    finally:
        pulse(s, "symbols", "remove", "kraken", sym)


def test_alerting_metrics_count_alerts_fired(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    s = runtime_settings
    sym = f"AM{unique[:6].upper()}/USD"
    add = pulse(s, "alerts", "add", "price-cross", "--venue", "kraken", "--symbol", sym, "--above", "100",
                "--cooldown", "0", "--json")  # fmt: skip
    assert add.returncode == 0, add.stderr
    rule_id = json.loads(add.stdout)["id"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PULSE_ALERTING__SUBSCRIPTION": f"alerting-{unique}", "PULSE_ALERTING__ALERTS_TOPIC": f"events.t{unique}"}
    name = f"alerting-{unique}"
    svc = pulse_cmd(s, "consumers", "alerting", "run", "--name", name, "--metrics-port", str(port), env=env)
    try:
        with process(svc):
            wait_for(lambda: get(base + "/readyz")[0] == 200, "alerting to be ready")
            bus = Bus(s, endpoints.pulsar_url)
            try:
                pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
                for bid in ("98", "101", "98", "101"):  # mids 98.5, 101.5 (cross), 98.5, 101.5 (cross)
                    now = time.time_ns()
                    pub.publish(Quote(venue="kraken", symbol=sym, ts_event=now, ts_recv=now, bid=Decimal(bid),
                                      bid_size=Decimal(1), ask=Decimal(bid) + 1, ask_size=Decimal(1)))  # fmt: skip
                pub.flush()
            finally:
                bus.close()
            # other tests' rules share the database: count this rule's alerts, compare all counters
            store = AlertStore(endpoints.database_url)
            try:
                wait_for(lambda: len(store.alerts(rule_ids=[rule_id])) == 2, "this rule's 2 alerts stored")
            finally:
                store.close()
            counters = settled(s, name)
            m = scrape(base)
            assert total(m, "pulse_alerts_fired_total", service=name) == counters["alerts"] >= 2
            assert total(m, "pulse_alerts_stored_total", service=name) == counters["stored"] >= 2
            assert total(m, "pulse_alerting_received_total", service=name) == counters["received"]
            rc, _, err = stop(svc, timeout=60)
            assert rc == 0, err[-3000:]
    finally:
        pulse(s, "alerts", "remove", str(rule_id))
