"""A real `pulse ingest kraken` against the local venue: its /metrics equal its own counters, /readyz and
systemd's notifications (a real NOTIFY_SOCKET datagram socket) follow the feed: READY=1 once subscribed,
WATCHDOG=1 only while data flows, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingesters.kraken.simulator import FaultPlan
from pulse.runtime import Endpoints
from pulse.runtime.procs import free_port
from pulse.settings import Settings
from tests.integration.test_kraken_pipeline import SimThread, symbols_for
from tests.notify import NotifySocket
from tests.procs import process, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:  # not listening (yet)
        return 0, b""


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (sample name, sorted labels)."""
    code, body = get(base + "/metrics")
    assert code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, x) in ls for k, x in labels.items()))


def test_kraken_ingester_metrics_health_and_sd_notify(
    runtime_settings: Settings, endpoints: Endpoints, unique: str, notify_socket: NotifySocket
) -> None:
    symbols = symbols_for(unique)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # malformed frames of its own: the dead-letter topic is shared by the session, and another test counts the
    # hostile frames (deep nesting, invalid UTF-8) it finds there
    bad = (b'{"channel":"trade","type":"update","data":[{"symbol":"X/Y","pri', b"not json, metrics test")
    faults = FaultPlan(malformed_every=40, bad_checksum_every=30, stall_after=900, malformed_frames=bad)
    env = {
        "NOTIFY_SOCKET": notify_socket.path,
        "WATCHDOG_USEC": "1000000",  # ping every 0.5 s
        "PULSE_KRAKEN__STALE_AFTER_S": "120",  # the ingester's own watchdog stays out of the way
        "PULSE_METRICS__STALL_AFTER_S": "3",
    }
    with SimThread(symbols=symbols, rate=300, seed=3, faults=faults) as sim:
        ing = pulse_cmd(runtime_settings, "ingest", "kraken", "--url", sim.url, "--symbols", ",".join(symbols),
                        "--metrics-port", str(port), "--json", env=env)  # fmt: skip
        with process(ing):
            # READY=1 arrives once the venue acknowledged the subscriptions, and /readyz agrees at that moment
            ready_at = wait_for(lambda: notify_socket.times("READY"), "READY=1")[0]
            assert sim.stats["book_snapshots"] >= len(symbols)  # the venue answered the subscriptions
            code, body = get(base + "/readyz")
            doc = json.loads(body)
            assert code == 200 and doc["ready"] and doc["checks"]["connected"], doc
            assert get(base + "/healthz")[0] == 200
            assert total(scrape(base), "pulse_connected", service="ingest-kraken") == 1
            # WATCHDOG=1 keeps coming while data flows
            wait_for(lambda: len([t for t in notify_socket.times("WATCHDOG") if t > ready_at]) >= 3, "3 pings")

            # the venue goes silent after 900 messages: counters settle, then compare the endpoints with the
            # service's own status file and with what the venue injected
            wait_for(lambda: sim.stats["stalls"] == 1, "the venue to stall", timeout=60)
            status_path = runtime_settings.home / "run" / "ingest-kraken.json"

            def settled() -> Any:
                a = json.loads(status_path.read_text())["counters"]
                time.sleep(1.0)
                b = json.loads(status_path.read_text())["counters"]
                return b if a == b else None

            counters = wait_for(settled, "the ingester's counters to settle")
            m = scrape(base)
            assert total(m, "pulse_frames_received_total", service="ingest-kraken") == counters["frames"]
            assert total(m, "pulse_parse_errors_total") == counters["parse_errors"] == sim.stats["malformed"] > 0
            assert total(m, "pulse_checksum_failures_total") == counters["checksum_failures"]
            assert counters["checksum_failures"] == sim.stats["bad_checksums"] > 0
            assert total(m, "pulse_dead_letters_total") == counters["dead_letters"]
            assert total(m, "pulse_reconnects_total") == counters["reconnects"] == 0
            # events out per channel add up to the broker-acknowledged messages, topic by topic
            for t, acked in counters["topics"].items():
                channel = "deadletter" if "/deadletter/" in t else t.rsplit(".", 1)[-1]
                assert total(m, "pulse_events_out_total", channel=channel) >= acked
            assert total(m, "pulse_events_out_total") == counters["published"]
            assert total(m, "pulse_events_in_total") == counters["sent"]
            assert total(m, "pulse_queue_depth", queue="publish") == counters["pending"]
            assert total(m, "pulse_publish_latency_seconds_count") > 0
            assert total(m, "pulse_process_resident_memory_bytes") > 0
            trades = total(m, "pulse_events_in_total", channel="trade")
            assert trades >= sum(sim.stats["trades_per_symbol"].values())  # + their connected markers

            # no frames for 3 s (metrics.stall_after_s): not ready, and the watchdog pings stop
            def stalled() -> Any:
                code, body = get(base + "/readyz")
                return code == 503 and json.loads(body)

            doc = wait_for(stalled, "/readyz to report the stall", timeout=15)
            assert doc["checks"]["feed_moving"] is False and doc["alive"] is True
            assert get(base + "/healthz")[0] == 200  # the loop itself is fine
            time.sleep(0.6)  # a ping may have been on its way when the check flipped
            notify_socket.poll()  # (arrival times are taken when read: read what is queued first)
            quiet_from = time.monotonic()
            time.sleep(2.0)
            assert [t for t in notify_socket.times("WATCHDOG") if t > quiet_from] == []
            assert any("NOT READY" in f.get("STATUS", "") for _, f in notify_socket.poll())

            rc, out, err = stop(ing)
            assert rc == 0, err[-3000:]
            assert notify_socket.times("STOPPING"), notify_socket.got
            summary = json.loads(out)
            assert summary["frames"] == counters["frames"] and summary["sent"] == counters["sent"]
            assert summary["published"] == summary["sent"]  # flushed on SIGTERM: every message acknowledged
