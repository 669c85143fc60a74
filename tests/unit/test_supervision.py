"""sd_notify's datagram protocol against a real AF_UNIX socket, the supervisor's READY/WATCHDOG/STATUS/STOPPING
decisions on a probe's checks, the metrics server's endpoints, and the [metrics]/[status] settings."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pulse.errors import ConfigError
from pulse.metrics import MetricsServer, Probe, Progress, counter, erroring
from pulse.sdnotify import Notifier
from pulse.settings import load_settings
from pulse.supervise import Supervisor


class Receiver:
    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)

    def drain(self, wait: float = 0.0) -> list[dict[str, str]]:
        time.sleep(wait)
        out = []
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return out
            out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    d = tempfile.mkdtemp(prefix="sd", dir="/tmp")
    path = str(Path(d) / "notify")
    r = Receiver(path)
    try:
        yield r, path
    finally:
        r.sock.close()
        os.unlink(path)
        os.rmdir(d)


def test_notifier_speaks_the_datagram_protocol(receiver: tuple[Receiver, str]) -> None:
    r, path = receiver
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    assert n.enabled and n.watchdog_s == 1.5  # half of WatchdogSec, as sd_watchdog_enabled(3) advises
    assert n.ready("connected; 3 symbols") and n.watchdog() and n.status("line one\nline two") and n.stopping()
    assert r.drain() == [
        {"READY": "1", "STATUS": "connected; 3 symbols"},
        {"WATCHDOG": "1"},
        {"STATUS": "line one line two"},  # one line: a newline would start a new assignment
        {"STOPPING": "1"},
    ]
    n.close()


def test_notifier_abstract_socket_and_no_socket() -> None:
    name = f"pulse-test-{os.getpid()}-{time.monotonic_ns()}"
    r = Receiver(b"\0" + name.encode())
    try:
        n = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        assert n.ready() and r.drain() == [{"READY": "1"}]
    finally:
        r.sock.close()
    off = Notifier({})
    assert not off.enabled and off.ready() is False and off.watchdog_s is None
    # the watchdog belongs to another process: do not ping
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_s is None


def test_supervisor_pings_only_while_ready_and_says_stopping(receiver: tuple[Receiver, str]) -> None:
    r, path = receiver
    state = {"connected": False, "stop": False}
    probe = Probe("svc", lambda: [], lambda: {"connected": state["connected"]}, None, lambda: f"c={state['connected']}")
    s = load_settings(environ={})
    sup = Supervisor(probe, s, port=0, stopping=lambda: state["stop"],
                     environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}).start()  # fmt: skip
    try:
        assert r.drain(0.8) == []  # not connected: no READY, no WATCHDOG
        state["connected"] = True
        got = r.drain(1.0)
        assert got[0] == {"READY": "1", "STATUS": "c=True"}
        assert sum("WATCHDOG" in g for g in got) >= 3  # every 0.2 s
        state["connected"] = False
        got = r.drain(0.6)
        assert any(g.get("STATUS", "").startswith("NOT READY (connected)") for g in got)
        assert sum("WATCHDOG" in g for g in r.drain(1.0)) == 0
        state["stop"] = True
        assert {"STOPPING": "1", "STATUS": "stopping: c=False"} in r.drain(0.6)
    finally:
        sup.stop()
    assert r.drain() == []  # said once


def test_metrics_server_endpoints() -> None:
    state = {"ok": True, "beat": time.monotonic()}
    probe = Probe(
        "svc-1",
        lambda: [counter("pulse_things", "Things", {("svc-1", "a"): 3}, ("service", "kind"))],
        lambda: {"subscribed": state["ok"]},
        lambda: state["beat"],
        lambda: "all good",
    )
    server = MetricsServer(probe, "127.0.0.1", 0, stall_after_s=5).start()

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(server.url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        code, body = get("/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(body.decode()) for s in f.samples}  # fmt: skip
        assert code == 200 and samples[("pulse_things_total", (("kind", "a"), ("service", "svc-1")))] == 3
        assert samples[("pulse_ready", (("service", "svc-1"),))] == 1
        assert ("pulse_process_cpu_seconds_total", ()) in samples
        code, body = get("/readyz")
        assert code == 200 and json.loads(body)["summary"] == "all good"
        state["ok"] = False
        code, body = get("/readyz")
        assert code == 503 and json.loads(body)["checks"] == {"loop_alive": True, "subscribed": False}
        assert get("/healthz")[0] == 200
        state["beat"] = time.monotonic() - 10  # the loop stopped beating 10 s ago (stall_after_s 5)
        code, body = get("/healthz")
        assert code == 503 and json.loads(body)["alive"] is False
        assert get("/nope")[0] == 404
    finally:
        server.stop()


def test_a_taken_metrics_port_is_a_clear_error() -> None:
    probe = Probe("svc", lambda: [])
    first = MetricsServer(probe, "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=f"metrics port {first.port} on 127.0.0.1"):
            MetricsServer(probe, "127.0.0.1", first.port)
    finally:
        first.stop()


def test_metrics_and_status_settings() -> None:
    s = load_settings(environ={"PULSE_METRICS__PORTS": "ingest-kraken=9101, sink-postgres=9110",
                               "PULSE_METRICS__PORT": "9199"})  # fmt: skip
    assert s.metrics.port_for("ingest-kraken") == 9101 and s.metrics.port_for("matching") == 9199
    with pytest.raises(ConfigError, match="PULSE_METRICS__PORTS"):
        load_settings(environ={"PULSE_METRICS__PORTS": "9101"})
    with pytest.raises(ConfigError, match=r"metrics\.ports"):
        load_settings(environ={"PULSE_METRICS__PORTS": "sink-postgres=70000"})
    with pytest.raises(ConfigError, match=r"status\.services"):
        load_settings(environ={"PULSE_STATUS__SERVICES": "ftp://host:9101"})


def test_a_dependency_is_failing_from_an_error_until_the_next_success() -> None:
    c = {"errors": 0, "ok": 0}
    errors, successes = Progress(lambda: c["errors"]), Progress(lambda: c["ok"])
    assert not erroring(errors, successes, 5.0)  # no error yet
    c["errors"] += 1
    time.sleep(0.01)
    assert erroring(errors, successes, 5.0)
    time.sleep(0.01)
    c["ok"] += 1
    assert not erroring(errors, successes, 5.0)  # a success after the error
    time.sleep(0.01)
    c["errors"] += 1
    assert erroring(errors, successes, 5.0)
    time.sleep(0.02)
    assert not erroring(errors, successes, 0.01)  # the error is older than the window
