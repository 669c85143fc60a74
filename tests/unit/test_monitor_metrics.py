"""`pulse monitor --metrics-port`: /metrics counts its checks and /readyz follows the availability Lambda (ready
until `monitor.failing_after` checks in a row failed), served by the real metrics server on a real port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from app.availability_client import LambdaError
from app.monitor import Monitor
from app.monitor_metrics import monitor_probe
from pulse.metrics import MetricsServer
from pulse.runtime import Endpoints
from tests.conftest import make_settings

NOW = datetime(2019, 2, 4, 5, 10, tzinfo=UTC)  # a Monday: the FX market is open
REPORT = {"ok": True, "checked_at": "2019-02-04T05:10:00Z", "instruments": {"EUR/USD": {
    "latest_hour": "2019-02-04T03:00:00Z", "market_open": True, "error": None}}}  # fmt: skip


class Lambda:
    def __init__(self) -> None:
        self.fail = False
        self.name = "scripted"

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise LambdaError("unreachable: connection refused")
        return REPORT


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_and_readiness_follow_the_lambda(tmp_path: Path) -> None:
    s = make_settings(tmp_path).with_overrides(
        monitor={"instruments": ["EUR/USD"], "failing_after": 2, "max_attempts": 1},
        dukascopy={"checkpoint_dir": str(tmp_path / "ck")},
    )
    lam = Lambda()
    mon = Monitor(s, Endpoints("", "", False), lam, clock=lambda: NOW, sleep=lambda _s: None, refresh=lambda a, b: "-",
                  backfill=lambda *a: {"ok": True, "ticks_published": 10, "hours_downloaded": 24})  # fmt: skip
    server = MetricsServer(monitor_probe(mon), "127.0.0.1", 0).start()
    try:
        assert mon.check_once().ok
        status, body = get(server.url + "/readyz")
        assert status == 200 and json.loads(body)["checks"] == {"loop_alive": True, "lambda": True}
        lam.fail = True
        mon.check_once()
        assert get(server.url + "/readyz")[0] == 200  # one failure is not yet a problem
        mon.check_once()
        status, body = get(server.url + "/readyz")
        doc = json.loads(body)
        assert status == 503 and doc["checks"] == {"loop_alive": True, "lambda": False}
        assert "2 failed in a row" in doc["summary"]
        assert get(server.url + "/healthz")[0] == 200  # alive: it is the Lambda that fails, not the loop
        text = get(server.url + "/metrics")[1]
        assert 'pulse_monitor_checks_total{service="monitor"} 3.0' in text
        assert 'pulse_monitor_check_failures_total{service="monitor"} 2.0' in text
        assert 'pulse_monitor_hours_backfilled_total{service="monitor"} 24.0' in text
        assert 'pulse_monitor_consecutive_failures{service="monitor"} 2.0' in text
        lam.fail = False
        mon.check_once()
        assert get(server.url + "/readyz")[0] == 200
    finally:
        server.stop()


def test_the_command_takes_metrics_port() -> None:
    from cli import cli

    out = CliRunner().invoke(cli, ["monitor", "--help"])
    assert out.exit_code == 0 and "--metrics-port" in out.output
    bad = CliRunner().invoke(cli, ["monitor", "--metrics-port", "70000"])
    assert bad.exit_code == 2 and "--metrics-port" in bad.output
