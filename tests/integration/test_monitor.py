"""`pulse monitor`: the boto3 path against botocore's Stubber (the Lambda API's real request/response shapes),
the function URL's SigV4 signature, the market gate, retries, and the whole chain — the real handler against the
local Dukascopy venue → backfill → broker → sink → candles."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.session
import psycopg
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from app.availability_client import BotoInvoker, LambdaError, LocalInvoker, UrlInvoker
from app.monitor import Monitor
from pulse.runtime import Endpoints
from pulse.settings import Settings
from sinks.postgres.candles import candles
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from sinks.postgres.sources import topics_for_sources
from tests.conftest import SHARED_DATA
from tests.integration.test_lambda_availability import Venue

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "lambda" / "availability" / "handler.py"
NOW = datetime(2019, 2, 4, 5, 10, tzinfo=UTC)
T0 = datetime(2019, 2, 4, tzinfo=UTC)
pytestmark = pytest.mark.skipif(not (SHARED_DATA / "dukascopy").is_dir(), reason="shared Dukascopy files not found")
REPORT = b'{"ok": true, "checked_at": "2019-02-04T05:10:00Z", "feed": "api", "baseline": "EUR/USD", "instruments": {"EUR/USD": {"latest_hour": "2019-02-04T03:00:00Z", "market_open": true, "latest_hour_market_open": true, "probes": 2, "error": null}}}'  # noqa: E501


def stubbed_client():
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x")
    return client, Stubber(client)


def payload(body: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(body), len(body))


EXPECTED = {"FunctionName": "pulse-availability", "InvocationType": "RequestResponse", "Payload": b"{}"}


def test_boto_invoke_reads_the_report_and_maps_failures() -> None:
    client, stub = stubbed_client()
    stub.add_response("invoke", {"StatusCode": 200, "Payload": payload(REPORT)}, EXPECTED)
    stub.add_response(
        "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": payload(b'{"errorMessage": "x"}')},
        EXPECTED,
    )  # fmt: skip
    stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429, expected_params=EXPECTED)
    stub.add_client_error("invoke", "ResourceNotFoundException", "Function not found", 404, expected_params=EXPECTED)
    stub.add_response(
        "invoke", {"StatusCode": 200, "Payload": payload(b'{"statusCode": 400, "error": "bad"}')}, EXPECTED
    )
    inv = BotoInvoker("pulse-availability", client=client)
    with stub:
        assert inv({})["instruments"]["EUR/USD"]["latest_hour"] == "2019-02-04T03:00:00Z"
        with pytest.raises(LambdaError, match="the function failed \\(Unhandled\\)") as failed:
            inv({})
        assert failed.value.retryable
        with pytest.raises(LambdaError, match="throttled: TooManyRequestsException") as throttled:
            inv({})
        assert throttled.value.retryable
        with pytest.raises(LambdaError, match="refused: ResourceNotFoundException") as missing:
            inv({})
        assert not missing.value.retryable
        with pytest.raises(LambdaError, match="HTTP-style 400: bad") as bad:
            inv({})
        assert not bad.value.retryable
        stub.assert_no_pending_responses()


def test_function_url_requests_are_sigv4_signed_for_lambda() -> None:
    session = botocore.session.Session()
    session.set_credentials("AKIDEXAMPLE", "secret-not-logged")
    inv = UrlInvoker("https://abc123.lambda-url.eu-west-1.on.aws/", session=session)
    req = inv.request({"instruments": ["EUR/USD", "GBP/USD"]})
    assert req.full_url == "https://abc123.lambda-url.eu-west-1.on.aws/?instruments=EUR%2FUSD%2CGBP%2FUSD"
    auth = req.get_header("Authorization")
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/lambda/aws4_request" in auth
    assert "secret-not-logged" not in auth and req.get_header("X-amz-date")


def monitor_settings(settings: Settings, tmp: Path, **monitor) -> Settings:
    return settings.with_overrides(
        runtime={"home": str(tmp)}, monitor={"instruments": ["EUR/USD"], **monitor},
        dukascopy={"checkpoint_dir": str(tmp / "ck")},
    )  # fmt: skip


class Counting:
    def __init__(self, answers) -> None:
        self.answers = list(answers)
        self.events: list[dict] = []
        self.name = "counting"

    def __call__(self, event):
        self.events.append(event)
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a


def test_no_call_while_the_market_is_closed_then_one_at_the_reopening(runtime_settings: Settings, tmp_path) -> None:
    import json

    report = json.loads(REPORT)
    inv = Counting([report])
    now = [datetime(2019, 2, 2, 12, tzinfo=UTC)]  # Saturday
    mon = Monitor(monitor_settings(runtime_settings, tmp_path), Endpoints("", "", False), inv, clock=lambda: now[0],
                  backfill=lambda *a: {"ok": True}, refresh=lambda a, b: "-")  # fmt: skip
    assert mon.check_once().skipped and inv.events == []
    now[0] = datetime(2019, 2, 3, 21, 30, tzinfo=UTC)  # Sunday 16:30 New York: still closed
    assert mon.check_once().skipped and inv.events == []
    now[0] = datetime(2019, 2, 3, 22, 5, tzinfo=UTC)  # reopened at 17:00 New York
    first = mon.check_once()
    assert first.asked and len(inv.events) == 1 and inv.events[0]["at"] == "2019-02-03T22:05:00+00:00"


def test_lambda_failures_are_retried_capped_and_reported_unhealthy(runtime_settings: Settings, tmp_path) -> None:
    import json

    client, stub = stubbed_client()
    for _ in range(3):
        stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
    stub.add_response("invoke", {"StatusCode": 200, "Payload": payload(REPORT)})
    for _ in range(6):
        stub.add_client_error("invoke", "ServiceException", "boom", 500)
    settings = monitor_settings(runtime_settings, tmp_path, max_attempts=3, failing_after=2, backoff_max_s=5)
    slept: list[float] = []
    calls: list[tuple] = []
    mon = Monitor(settings, Endpoints("", "", False), BotoInvoker("f", client=client), clock=lambda: NOW,
                  backfill=lambda *a: calls.append(a) or {"ok": True, "ticks_published": 1}, refresh=lambda a, b: "-",
                  sleep=slept.append)  # fmt: skip
    with stub:
        first = mon.check_once()  # throttled 3 times = max_attempts: this check fails
        assert "throttled: TooManyRequestsException" in first.error and first.attempts == 3 and calls == []
        assert mon.failures == 1 and mon.problems() == []
        second = mon.check_once()  # the report: the new hours are backfilled
        assert second.ok and second.attempts == 1 and mon.failures == 0
        third, fourth = mon.check_once(), mon.check_once()
        stub.assert_no_pending_responses()
    end = datetime(2019, 2, 4, 4, tzinfo=UTC)
    assert calls == [("EUR/USD", end - timedelta(hours=24), end)]  # a new instrument: first_hours back
    assert len(slept) == 2 + 0 + 2 + 2 and all(0 <= s <= 5 for s in slept)  # capped backoff between attempts
    assert not third.ok and not fourth.ok and mon.failures == 2
    status = json.loads((tmp_path / "run" / "monitor.json").read_text())
    assert status["problems"] == [f"the availability Lambda failed 2 checks in a row: {fourth.error}"]
    assert status["done_until"] == {"EUR/USD": end.isoformat()}


def test_whole_chain_monitor_backfill_broker_sink_candles(
    runtime_settings: Settings, endpoints: Endpoints, tmp_path: Path, monkeypatch
) -> None:
    with Venue(SHARED_DATA / "dukascopy") as sim:
        monkeypatch.setenv("PULSE_AVAILABILITY_BASE_URL", sim.api_url)
        settings = monitor_settings(runtime_settings, tmp_path, first_hours=6)
        settings = settings.with_overrides(dukascopy={"base_url": sim.api_url, "feed": "api"})
        mon = Monitor(settings, endpoints, LocalInvoker(HANDLER), clock=lambda: NOW)
        first = mon.check_once()
        again = mon.check_once()
    eur = first.instruments["EUR/USD"]
    assert first.ok and eur["latest_hour"] == "2019-02-04T03:00:00+00:00"
    assert eur["backfilled"]["from"] == "2019-02-03T22:00:00+00:00" and eur["backfilled"]["hours"] == 4
    assert eur["backfilled"]["ticks"] == 12_000 and eur["candles"].startswith("plain PostgreSQL")
    assert again.instruments["EUR/USD"]["backfilled"] == "up to date"
    sink_settings = runtime_settings.with_overrides(sink={"subscription": f"monitor-chain-{time.time_ns()}"})
    topics = topics_for_sources(sink_settings, ["historical/dukascopy=EUR/USD"])
    ensure_schema(endpoints.database_url)  # the query below may run before the sink's own migration
    sink = PostgresSink(sink_settings, endpoints, topics, name="sink-monitor-test")
    stop = threading.Event()
    th = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline:
            with psycopg.connect(endpoints.database_url) as conn:
                rows = candles(conn, "EUR/USD", interval="1h", start=T0, end=T0 + timedelta(hours=4), venue="dukascopy")
            if sum(r.ticks for r in rows) == 12_000:
                break
            time.sleep(0.5)
    finally:
        stop.set()
        th.join(30)
    assert [r.bucket.hour for r in rows] == [0, 1, 2, 3] and sum(r.ticks for r in rows) == 12_000


def test_systemd_unit_runs_the_monitor() -> None:
    unit = (REPO / "deploy" / "systemd" / "pulse-monitor.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split()[-1] == "monitor" and "Restart=always" in unit and "WantedBy=multi-user.target" in unit
