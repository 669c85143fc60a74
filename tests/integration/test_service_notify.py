"""`pulse web` and `pulse monitor` under systemd's notify protocol (a real NOTIFY_SOCKET datagram socket), as
their `Type=notify` units run them: READY=1 once ready, WATCHDOG=1 while the service is alive — for the monitor
also through a check that outlasts the stall limit — and STOPPING=1 on SIGTERM, then a clean exit."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pulse.settings import Settings
from tests.notify import NotifySocket
from tests.procs import process, pulse_cmd, stop, wait_for
from tests.web_gateway import gateway

pytestmark = pytest.mark.timeout(240)


def test_gateway_reports_ready_pings_and_stopping(runtime_settings: Settings, notify_socket: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000", "PULSE_METRICS__STALL_AFTER_S": "3"}
    with gateway(runtime_settings, extra_env=env) as gw:
        ready_at = wait_for(lambda: notify_socket.times("READY"), "READY=1 from the gateway", timeout=60)[0]
        status, doc = gw.request("GET", "/readyz")
        assert status == 200 and doc["ready"], doc  # READY=1 means what /readyz says
        wait_for(lambda: len([t for t in notify_socket.times("WATCHDOG") if t > ready_at]) >= 3, "3 pings")
        assert next(f for _, f in notify_socket.poll() if "READY" in f).get("STATUS")  # a one-line summary
        rc, _, err = stop(gw.proc)
    assert rc == 0, err[-2000:]
    assert notify_socket.times("STOPPING"), "no STOPPING=1 on SIGTERM"


class Blackhole:
    """A TCP server that accepts and never answers: a history source that hangs until the client's timeout."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[float] = []
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    b = Blackhole()
    try:
        yield b
    finally:
        b.close()


def test_monitor_keeps_the_watchdog_fed_through_a_long_check(
    runtime_settings: Settings, notify_socket: NotifySocket, blackhole: Blackhole
) -> None:
    """A repair whose source hangs 6 s (twice the 3 s stall limit) is a check in progress, not a stuck loop: the
    pings go on through it; the check fails by name and the monitor stays up until SIGTERM."""
    env = {
        "NOTIFY_SOCKET": notify_socket.path,
        "WATCHDOG_USEC": "1000000",  # a ping every 0.5 s
        "PULSE_METRICS__STALL_AFTER_S": "3",
        "PULSE_MONITOR__REPAIR": "kraken:BTC/USD",
        "PULSE_MONITOR__REPAIR_HOURS": "1",
        "PULSE_KRAKEN__REST_URL": f"http://127.0.0.1:{blackhole.port}",
        "PULSE_KRAKEN__REST_TIMEOUT_S": "6",
        "PULSE_KRAKEN__REST_MAX_ATTEMPTS": "1",
    }
    started = datetime.now(UTC)
    mon = pulse_cmd(runtime_settings, "monitor", "--interval", "1h", "--json", env=env)
    with process(mon):
        wait_for(lambda: notify_socket.times("READY"), "READY=1 from the monitor", timeout=60)
        hung_at = wait_for(lambda: blackhole.accepted, "the repair to ask the source", timeout=60)[0]
        status_path = runtime_settings.home / "run" / "monitor.json"

        def checked() -> bool:  # this monitor's check (the session's home may hold an earlier one's)
            last = json.loads(status_path.read_text()).get("last_check") if status_path.exists() else None
            return bool(last) and datetime.fromisoformat(last["checked_at"]) >= started

        wait_for(checked, "the check to end (the source's 6 s timeout)", timeout=60)
        pings = [t for t in notify_socket.times("WATCHDOG") if hung_at + 3.5 < t < hung_at + 5.5]
        assert len(pings) >= 2, f"the watchdog went quiet during the check: {notify_socket.times('WATCHDOG')}"
        last = json.loads(status_path.read_text())["last_check"]
        assert "/0/public/Trades: TimeoutError" in (last["repairs"]["kraken:BTC/USD"]["error"] or ""), last
        rc, out, err = stop(mon, timeout=60)
    assert rc == 1 and json.loads(out)["repairs"]["kraken:BTC/USD"]["error"], err[-2000:]  # exit 1: it failed
    assert notify_socket.times("STOPPING"), "no STOPPING=1 on SIGTERM"
