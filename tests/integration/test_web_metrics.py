"""`pulse web --metrics-port N`: the gateway's Prometheus metrics and health on a port of their own, like every
daemon's; a real `pulse web` process on the session's broker, stopped by pid."""

from __future__ import annotations

import json

import pytest

from pulse.runtime.procs import free_port
from pulse.settings import Settings
from tests.integration.test_ingester_metrics import get
from tests.procs import wait_for
from tests.web_gateway import gateway

pytestmark = pytest.mark.timeout(180)


def test_the_gateway_serves_metrics_and_readiness(runtime_settings: Settings) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with gateway(runtime_settings, "--metrics-port", str(port)) as gw:
        wait_for(lambda: get(base + "/readyz")[0] == 200, "the gateway's metrics server to say ready", 60)
        body = get(base + "/readyz")[1]
        doc = json.loads(body)
        assert doc["checks"] == {"loop_alive": True, "console": True}, doc
        assert get(base + "/healthz")[0] == 200
        metrics = get(base + "/metrics")[1].decode()
        readers = gw.stats()["readers"]  # the gateway's own API agrees with what /metrics says
        assert f'pulse_gateway_readers{{service="gateway"}} {float(readers)}' in metrics
        assert 'pulse_ready{service="gateway"} 1.0' in metrics and "pulse_process_cpu_seconds_total" in metrics
