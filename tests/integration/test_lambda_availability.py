"""The availability Lambda (lambda/availability/handler.py) called directly, as AWS would, against the local
Dukascopy venue serving both feeds; its SAM template through cfn-lint; its reproducible deployment zip."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import zipfile
import zipimport
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.lambda_package import build
from ingesters.dukascopy.simulator import DukascopySimulator, Faults

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data" / "dukascopy"
HANDLER = REPO / "lambda" / "availability" / "handler.py"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared Dukascopy files not found at {SHARED}")


def load_handler():
    spec = importlib.util.spec_from_file_location("availability_handler", HANDLER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


H = load_handler()


class Context:
    """What Lambda passes as ``context`` (only the method the handler uses)."""

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class Venue:
    """The local Dukascopy venue on its own thread and event loop (the handler's urllib calls block)."""

    def __init__(self, root: Path, faults: Faults | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.sim = DukascopySimulator(root, faults=faults)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DukascopySimulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(10)
        return self.sim

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The shared EUR/USD hours 00-03 of 2019-02-04, plus GBP/USD with hours 00-02 only."""
    out = tmp_path_factory.mktemp("dukascopy")
    shutil.copytree(SHARED / "EURUSD", out / "EURUSD")
    day = out / "GBPUSD" / "2019" / "01" / "04"
    day.mkdir(parents=True)
    for h in range(3):
        shutil.copy(SHARED / "EURUSD" / "2019" / "01" / "04" / f"{h:02d}h_ticks.bi5", day)
    return out


def invoke(sim: DukascopySimulator, feed: str, **event):
    url = sim.api_url if feed == "api" else sim.base_url
    return H.lambda_handler({"feed": feed, "base_url": url, **event}, Context())


@pytest.mark.parametrize("feed", ["api", "bi5"])
def test_latest_hour_per_instrument_with_both_feeds(root: Path, feed: str) -> None:
    with Venue(root) as sim:
        out = invoke(sim, feed, instruments=["EUR/USD", "GBPUSD"], at="2019-02-04T05:10:00Z", lookback_hours=8)
    assert out["ok"] and out["checked_at"] == "2019-02-04T05:10:00Z" and out["feed"] == feed
    assert out["baseline"] == "EUR/USD"
    eur, gbp = out["instruments"]["EUR/USD"], out["instruments"]["GBP/USD"]
    # baseline: 04h (missing), then 03h (ticks); GBP confirmed at 03h (missing), then 02h
    assert (eur["latest_hour"], eur["probes"], eur["error"]) == ("2019-02-04T03:00:00Z", 2, None)
    assert (gbp["latest_hour"], gbp["probes"], gbp["error"]) == ("2019-02-04T02:00:00Z", 2, None)
    assert eur["market_open"] is True and eur["latest_hour_market_open"] is True
    hits = sim.stats.by_path
    first = "ticks/EUR-USD/2019/2/4/4" if feed == "api" else "EURUSD/2019/01/04/04h_ticks.bi5"
    assert hits[first] == 1 and sim.stats.requests == 4


def test_one_instruments_failure_does_not_fail_the_others(root: Path) -> None:
    faults = Faults(status={f"ticks/GBP-USD/2019/2/4/{h}": 500 for h in range(4)})
    with Venue(root, faults) as sim:
        out = invoke(sim, "api", instruments=["EURUSD", "GBPUSD"], at="2019-02-04T04:10:00Z", lookback_hours=4)
    assert not out["ok"]
    assert out["instruments"]["EUR/USD"]["latest_hour"] == "2019-02-04T03:00:00Z"
    gbp = out["instruments"]["GBP/USD"]
    assert gbp["latest_hour"] is None and "HTTP 500" in gbp["error"]


def test_short_timeouts(root: Path) -> None:
    faults = Faults(slow={"ticks/EUR-USD/2019/2/4/3": 1}, slow_delay_s=2.0)
    with Venue(root, faults) as sim:
        out = invoke(sim, "api", at="2019-02-04T04:10:00Z", lookback_hours=2, timeout_s=0.3)
    eur = out["instruments"]["EUR/USD"]
    assert eur["latest_hour"] == "2019-02-04T02:00:00Z" and eur["error"] is None  # 03h timed out, 02h answered


def test_weekend_hours_are_not_probed_and_market_closed_is_reported(root: Path) -> None:
    with Venue(root) as sim:
        out = invoke(sim, "api", at="2019-02-03T12:00:00Z", lookback_hours=24)  # Sunday noon UTC
    eur = out["instruments"]["EUR/USD"]
    assert eur["market_open"] is False and eur["latest_hour"] is None and eur["probes"] == 0
    assert sim.stats.requests == 0 and "no hour with ticks in the last 24 hours" in eur["error"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1, 2], "the event must be a JSON object, got list"),
        ({"instrument": ["EURUSD"]}, "unknown key(s) instrument"),
        ({"instruments": ["EUR/USD;rm -rf"]}, "instrument 'EUR/USD;rm -rf' is not BASE/QUOTE"),
        ({"instruments": []}, "instruments must be a non-empty list"),
        ({"feed": "csv"}, "feed must be 'api' or 'bi5'"),
        ({"at": "2999-01-01T00:00:00Z"}, "is in the future"),
        ({"at": "yesterday"}, "at must be an ISO 8601 time"),
        ({"lookback_hours": "abc"}, "lookback_hours must be a number between 1 and 240"),
        ({"timeout_s": 60}, "timeout_s must be between 0.1 and 10"),
        ({"base_url": "file:///etc/passwd"}, "base_url must be an http(s) URL"),
        ({"instruments": ["EURUSD"], "baseline": "GBPUSD"}, "baseline GBP/USD is not one of the instruments"),
    ],
)
def test_malformed_events_get_a_400_body(event, message: str) -> None:
    out = H.lambda_handler(event, Context())
    assert out["statusCode"] == 400 and not out["ok"] and message in out["error"]
    assert "Traceback" not in json.dumps(out)


def url_event(path: str, method: str = "GET", query: dict | None = None) -> dict:
    """A function URL request (payload format 2.0), trimmed to the fields Lambda always sends."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"host": "abc.lambda-url.eu-west-1.on.aws"},
        **({"queryStringParameters": query} if query else {}),
        "requestContext": {"http": {"method": method, "path": path}, "domainName": "abc.lambda-url.eu-west-1.on.aws"},
        "isBase64Encoded": False,
    }


def test_function_url_health_report_and_errors(root: Path, monkeypatch) -> None:
    health = H.lambda_handler(url_event("/health"), Context())
    assert health["statusCode"] == 200 and json.loads(health["body"])["status"] == "ok"
    assert health["headers"]["content-type"] == "application/json"
    with Venue(root) as sim:
        monkeypatch.setenv("PULSE_AVAILABILITY_BASE_URL", sim.api_url)
        query = {"instruments": "EURUSD,GBPUSD", "at": "2019-02-04T04:10:00Z", "lookback_hours": "3"}
        got = H.lambda_handler(url_event("/", query=query), Context())
        assert got["statusCode"] == 200
        body = json.loads(got["body"])
        assert body["instruments"]["EUR/USD"]["latest_hour"] == "2019-02-04T03:00:00Z"
        refused = H.lambda_handler(url_event("/", query={"base_url": sim.api_url}), Context())
    assert refused["statusCode"] == 400 and "only be set by a direct invocation" in json.loads(refused["body"])["error"]
    assert H.lambda_handler(url_event("/", "POST"), Context())["statusCode"] == 405
    assert H.lambda_handler(url_event("/nope"), Context())["statusCode"] == 404


def test_an_unexpected_failure_is_a_500_without_details(monkeypatch) -> None:
    def broken(*_a, **_k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(H, "check", broken)
    out = H.lambda_handler({}, Context())
    assert out["statusCode"] == 500 and "secret" not in json.dumps(out) and "Traceback" not in json.dumps(out)


def test_new_york_time_and_the_fx_week() -> None:
    eur = H.parse_instrument("EUR/USD")
    btc = H.parse_instrument("BTC-USD")
    t = datetime  # UTC instants
    assert H.new_york_offset(t(2026, 3, 8, 6, 59, tzinfo=UTC)).total_seconds() == -5 * 3600
    assert H.new_york_offset(t(2026, 3, 8, 7, 0, tzinfo=UTC)).total_seconds() == -4 * 3600
    assert H.new_york_offset(t(2026, 11, 1, 5, 59, tzinfo=UTC)).total_seconds() == -4 * 3600
    assert H.new_york_offset(t(2026, 11, 1, 6, 0, tzinfo=UTC)).total_seconds() == -5 * 3600
    assert H.market_open(eur, t(2026, 7, 10, 20, 59, tzinfo=UTC))  # Friday 16:59 EDT
    assert not H.market_open(eur, t(2026, 7, 10, 21, 0, tzinfo=UTC))  # Friday 17:00 EDT
    assert not H.market_open(eur, t(2026, 7, 12, 20, 59, tzinfo=UTC))  # Sunday 16:59 EDT
    assert H.market_open(eur, t(2026, 7, 12, 21, 0, tzinfo=UTC))
    assert H.market_open(eur, t(2026, 1, 9, 21, 59, tzinfo=UTC))  # winter: Friday 16:59 EST
    assert not H.market_open(eur, t(2026, 1, 9, 22, 0, tzinfo=UTC))  # Friday 17:00 EST
    assert H.market_open(btc, t(2026, 7, 11, 12, tzinfo=UTC))  # crypto on a Saturday


def test_the_function_imports_nothing_but_the_standard_library() -> None:
    tree = ast.parse(HANDLER.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules and modules <= set(sys.stdlib_module_names) | {"__future__"}, modules


def test_template_passes_cfn_lint_and_says_what_the_issue_asks() -> None:
    template = REPO / "lambda" / "template.yaml"
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the dev dependency's console script
    lint = subprocess.run([str(cfn_lint), str(template)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    from cfnlint.decode import decode

    doc, errors = decode(str(template))
    assert not errors
    fn = doc["Resources"]["AvailabilityFunction"]["Properties"]
    assert (fn["Runtime"], fn["MemorySize"], fn["Timeout"], fn["Handler"]) == (
        "python3.12",
        128,
        30,
        "handler.lambda_handler",
    )
    event = fn["Events"]["Hourly"]
    assert event["Type"] == "ScheduleV2" and doc["Parameters"]["ScheduleExpression"]["Default"] == "cron(10 * * * ? *)"
    assert fn["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
    role = doc["Resources"]["AvailabilityRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in role] == [["logs:CreateLogStream", "logs:PutLogEvents"]]
    poller = doc["Resources"]["PollerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert poller[0]["Resource"] == {"Fn::GetAtt": ["AvailabilityFunction", "Arn"]}


def test_package_is_reproducible_and_runs_from_the_zip(tmp_path: Path) -> None:
    a = build(tmp_path / "a" / "availability.zip")
    b = build(tmp_path / "b" / "availability.zip")
    assert a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    with zipfile.ZipFile(a.path) as zf:
        assert [(i.filename, i.date_time) for i in zf.infolist()] == [("handler.py", (1980, 1, 1, 0, 0, 0))]
        assert zf.read("handler.py") == HANDLER.read_bytes()
    importer = zipimport.zipimporter(str(a.path))
    spec = importer.find_spec("handler")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.lambda_handler(url_event("/health"), Context())["statusCode"] == 200
    cli = subprocess.run(
        [sys.executable, "-m", "cli", "lambda", "package", "-o", str(tmp_path / "c.zip"), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["sha256"] == a.sha256
