"""The `pulse` command as a user runs it: runtime lifecycle, health, refusals, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from pulse.runtime.procs import free_port, pid_alive
from pulse.settings import Settings
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]


def pulse(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def port_env() -> dict[str, str]:
    return {
        "PULSE_RUNTIME__BROKER_PORT": str(free_port()),
        "PULSE_RUNTIME__BROKER_METRICS_PORT": str(free_port()),
        "PULSE_RUNTIME__POSTGRES_PORT": str(free_port()),
    }


def test_up_status_down(tmp_path: Path) -> None:
    env = port_env()
    home = str(tmp_path / "home")
    st = pulse("--home", home, "up", "--status", env=env)
    assert st.returncode == 1 and "stopped" in st.stdout
    up = pulse("--home", home, "up", "--json", env=env)
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    pids = [doc["broker"]["pid"], doc["postgres"]["pid"]]
    try:
        assert doc["running"] and doc["broker"]["url"].endswith(env["PULSE_RUNTIME__BROKER_PORT"])
        again = pulse("--home", home, "up", "--json", env=env)  # idempotent: same processes
        assert [json.loads(again.stdout)["broker"]["pid"], json.loads(again.stdout)["postgres"]["pid"]] == pids
        health = pulse("--home", home, "status", "--json", env=env)
        assert health.returncode == 0, health.stdout + health.stderr
        report = json.loads(health.stdout)
        assert report["healthy"] and report["broker"]["ok"] and report["database"]["mode"] == "postgresql"
        assert pulse("--home", home, "up", "--status", env=env).returncode == 0
    finally:
        down = pulse("--home", home, "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p) for p in pids)
    health = pulse("--home", home, "status", env=env)
    assert health.returncode == 1 and "pulse up" in health.stdout


def test_dead_service_makes_status_unhealthy(runtime_settings: Settings) -> None:
    run = runtime_settings.home / "run"
    run.mkdir(exist_ok=True)
    dead = run / "ingest-ghost.json"
    dead.write_text(
        json.dumps(
            {"name": "ingest-ghost", "pid": 999_999_999, "started": 0, "updated": 0, "counters": {}, "last_tick": {}}
        )
    )
    try:
        res = pulse("--home", str(runtime_settings.home), "status")
        assert res.returncode == 1 and "ingest-ghost DEAD" in res.stdout
    finally:
        dead.unlink()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["ingest", "kraken", "--symbols", "BTC/USD,BTCUSD"], "--symbols"),
        (["ingest", "kraken", "--depth", "7"], "--depth"),
        (["ingest", "kraken", "--url", "http://example.invalid"], "--url"),
        (["ingest", "oanda", "--symbols", "EUR/USDX"], "--symbols"),
        (["ingest", "oanda", "--instruments", "kraken:BTC/USD"], "is not on oanda"),
        (["backfill", "dukascopy", "NOPE", "--from", "2019-02-04T00", "--to", "2019-02-04T01"], "unknown Dukascopy"),
        (["sink", "run", "--source", "crypto/kraken"], "invalid sink source"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(tmp_path: Path, args: list[str], needle: str) -> None:
    res = pulse("--home", str(tmp_path), *args, env=port_env())
    assert res.returncode == 2 and needle in (res.stderr + res.stdout)
    assert not (tmp_path / "runtime.json").exists() and not (tmp_path / "run").exists()


def test_bad_settings_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "pulse.toml"
    cfg.write_text("[kraken]\nstale_after = 3\n")
    res = pulse("--config", str(cfg), "--home", str(tmp_path), "up")
    assert res.returncode == 2 and "stale_after" in res.stderr
    assert not (tmp_path / "runtime.json").exists()


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {
        "PULSE_PULSAR__AUTH_TOKEN": "tok-abcdef123",
        "OANDA_TOKEN": "oanda-secret-999",
        "PULSE_DATABASE__URL": "postgresql://u:pw-s3cret@db/x",
    }
    res = pulse("--home", str(tmp_path), "config", "show", "--json", env=env)
    assert res.returncode == 0
    for secret in ("tok-abcdef123", "pw-s3cret", "oanda-secret-999"):
        assert secret not in res.stdout
    assert json.loads(res.stdout)["settings"]["pulsar"]["auth_token"] == "***"
    text = pulse("--home", str(tmp_path), "config", "show", env={**env, "PULSE_OANDA__TOKEN": "oanda-tok-777"})
    assert text.returncode == 0, text.stderr
    for secret in ("tok-abcdef123", "pw-s3cret", "oanda-tok-777"):
        assert secret not in text.stdout + text.stderr
    assert tomllib.loads(text.stdout)["oanda"]["token"] == "***"  # a venue's own secret, masked the same way


def test_config_show_says_where_each_value_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "pulse.toml"
    cfg.write_text("[kraken]\ndepth = 25\n[sink]\nbatch_size = 777\n")
    env = {"PULSE_OANDA__STALE_AFTER_S": "3.5", "PULSE_SINK__BATCH_SIZE": "888"}
    res = pulse("--config", str(cfg), "--home", str(tmp_path), "config", "show", env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert f"depth = 25  # file {cfg}" in lines
    assert "stale_after_s = 3.5  # environment variable PULSE_OANDA__STALE_AFTER_S" in lines
    assert "batch_size = 888  # environment variable PULSE_SINK__BATCH_SIZE" in lines  # the environment wins
    assert (
        f'home = "{tmp_path.resolve()}"  # option --home' in lines or f'home = "{tmp_path}"  # option --home' in lines
    )
    assert "max_latency_ms = 200" in lines  # a default carries no comment
    doc = tomllib.loads(res.stdout)  # the text form is TOML: it can seed a settings file
    assert doc["kraken"]["depth"] == 25 and doc["sink"]["batch_size"] == 888
    js = json.loads(pulse("--config", str(cfg), "--home", str(tmp_path), "config", "show", "--json", env=env).stdout)
    assert js["sources"]["kraken.depth"] == f"file {cfg}"
    assert js["sources"]["sink.batch_size"] == "environment variable PULSE_SINK__BATCH_SIZE"
    assert "sink.max_latency_ms" not in js["sources"] and js["settings"]["sink"]["max_latency_ms"] == 200


@pytest.mark.parametrize(
    ("env", "key", "source", "allowed"),
    [
        ({"PULSE_KRAKEN__DEPTH": "7"}, "kraken.depth", "PULSE_KRAKEN__DEPTH", "10, 25, 100, 500, 1000"),
        ({"PULSE_RUNTIME__BROKER": "kafka"}, "runtime.broker", "PULSE_RUNTIME__BROKER", "'lite', 'apache'"),
        ({"PULSE_PULSAR__PARTITIONS": "0"}, "pulsar.partitions", "PULSE_PULSAR__PARTITIONS", ">= 1 and <= 128"),
    ],
)
def test_a_bad_value_names_the_key_its_source_once_and_the_allowed_values(
    tmp_path: Path, env: dict[str, str], key: str, source: str, allowed: str
) -> None:
    res = pulse("--home", str(tmp_path), "config", "show", env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert key in res.stderr and res.stderr.count(source) == 1 and f"allowed: {allowed}" in res.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@db/x?password=pw-s3cret",  # in the query
        "host=db user=u password=pw-s3cret dbname=x",  # a libpq keyword string
        "host=db user=u password='pw s3cret' dbname=x",
        "postgresql://u:pw-s3cret@db/x?sslmode=require",
        "postgresql://u:pw@s3cret@db/x",  # an unencoded @ in the password
    ],
)
def test_config_show_masks_the_database_password_in_every_form(tmp_path: Path, url: str) -> None:
    res = pulse("--home", str(tmp_path), "config", "show", "--json", env={"PULSE_DATABASE__URL": url})
    assert res.returncode == 0, res.stderr
    assert "s3cret" not in res.stdout + res.stderr
    assert json.loads(res.stdout)["settings"]["database"]["url"].startswith("postgresql://u:***@db")


def test_a_password_with_an_at_sign_does_not_leak_into_connection_errors(tmp_path: Path) -> None:
    # libpq split "u:PASS@SECRET@host" at the first @ and said: failed to resolve host 'SECRET@127.0.0.1'
    url = f"postgresql://u:PASS-x@SECRET-y@127.0.0.1:{free_port()}/db"
    res = pulse("--home", str(tmp_path), "symbols", "list", env={"PULSE_DATABASE__URL": url})
    assert res.returncode != 0 and "127.0.0.1" in res.stderr
    assert "PASS-x" not in res.stdout + res.stderr and "SECRET-y" not in res.stdout + res.stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://u:p@[::1/db", "IPv6"),
        ("postgresql://u:p@db:port/x", "port"),
        ("postgresql://u:p@db:99999/x", "port"),
        ("host=db password", "keyword"),
        ("mysql://u:p@db/x", "postgresql://"),
    ],
)
def test_a_malformed_database_url_is_refused_naming_the_key(tmp_path: Path, url: str, needle: str) -> None:
    res = pulse("--home", str(tmp_path), "config", "show", env={"PULSE_DATABASE__URL": url})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "database.url" in res.stderr and needle in res.stderr
    assert ":p@" not in res.stderr  # never the value itself


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'[runtime]\nhome = "\xff\xfe"\n', "not UTF-8"),
        (b"a = " + b"[" * 1000 + b"]" * 1000 + b"\n", "nested too deeply"),
        (b"x = {" * 1000 + b"}" * 1000, "not valid TOML"),
    ],
)
def test_an_unreadable_settings_file_is_refused_naming_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    cfg = tmp_path / "pulse.toml"
    cfg.write_bytes(content)
    res = pulse("--config", str(cfg), "--home", str(tmp_path), "config", "show")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert str(cfg) in res.stderr and needle in res.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)  # the demo's own runtime, five services and a backfill on a loaded 2-core machine
def test_demo_runs_the_whole_pipeline_and_reports_json(tmp_path: Path) -> None:
    backfill = (SHARED_DATA / "dukascopy").is_dir()
    args = ["--home", str(tmp_path / "home"), "demo", "--duration", "6", "--json", "--faults"]
    res = pulse(*args, *(["--backfill"] if backfill else []), env=port_env(), timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["exit_codes"] == {
        "ingester-kraken": 0, "ingester-oanda": 0, "alerting": 0, "matching": 0, "sink": 0
    }  # fmt: skip
    # the consumers ran on the live ticks: paper market orders were filled against the venue's quotes
    assert doc["paper_orders"] >= 1 and 1 <= doc["paper_fills"] <= doc["paper_orders"]
    assert doc["alerts_stored"] == doc["alerts"]
    for key in ("published", "stored", "parse_errors", "checksum_failures", "reconnects", "topics"):
        assert key in doc
    assert doc["published"] > 0 and doc["stored"] > 0
    assert doc["sink_received"] >= doc["published_data"]  # the sink drained what the ingesters published
    assert doc["parse_errors"] >= 1 and doc["parse_errors"] == doc["dead_letters"]  # --faults injected some
    assert any(t.endswith("kraken.BTC-USD.trade") for t in doc["topics"])
    assert any(t.endswith("oanda.EUR-USD.quote") for t in doc["topics"])
    # last prices are keyed by instrument id (venue:SYMBOL), so two venues' EUR/USD cannot collide
    assert "kraken:BTC/USD" in doc["last_price"] and "oanda:EUR/USD" in doc["last_price"]
    assert all(":" in k for k in doc["last_price"])
    if backfill:
        assert doc["backfill"]["ticks_published"] == 12_000 and doc["backfill"]["ok"]
    # it served the console and said where (the URL printed once it listened)
    assert doc["console"].startswith("http://127.0.0.1:") and f"console: {doc['console']}" in res.stderr
    # published and stored reconcile (every event stored once or skipped as a repeat; the tables hold it)
    assert doc["differences"] == [] and doc["stored"] + doc["duplicates"] >= doc["published_data"]
    assert doc["rows_in_database"] == doc["sink_stored"]
    # the user's state is as it was: the demo ran in a home of its own, on its own runtime, stopped again
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["demo"]
    assert not (tmp_path / "home" / "demo" / "runtime.json").exists()
    assert doc["logs"] == str(tmp_path / "home" / "demo" / "logs")


@pytest.mark.skipif(not (SHARED_DATA / "dukascopy").is_dir(), reason="shared Dukascopy files not present")
def test_backfill_ticks_and_candles_through_the_cli(runtime_settings: Settings, tmp_path: Path) -> None:
    """`pulse simulate dukascopy` serves the shipped files; `pulse backfill dukascopy` publishes them."""
    home = str(runtime_settings.home)
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "--home",
            home,
            "simulate",
            "dukascopy",
            "--port",
            str(port),
            "--root",
            str(SHARED_DATA / "dukascopy"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {"PULSE_DUKASCOPY__CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    base = [
        "--home",
        home,
        "backfill",
        "dukascopy",
        "EURUSD",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",  # the JSON data API layout, the default feed
        "--json",
    ]
    try:
        from pulse.runtime.procs import wait_for_port

        assert wait_for_port("127.0.0.1", port, 15, pid=server.pid)
        ticks = pulse(*base, "--from", "2019-02-04T00", "--to", "2019-02-04T02", env=env)
        assert ticks.returncode == 0, ticks.stderr[-2000:]
        doc = json.loads(ticks.stdout)
        assert doc["ok"] and doc["hours_downloaded"] == 2 and doc["published"] == doc["ticks_published"] > 0
        assert doc["feed"] == "api" and doc["error"] is None
        assert doc["registry"].startswith(("registered dukascopy EUR/USD", "already registered (enabled)"))
        api_ticks = doc["ticks_published"]
        candles = pulse(*base, "--from", "2019-02-04T00", "--to", "2019-02-05T00", "--candles", "1m", env=env)
        assert candles.returncode == 0, candles.stderr[-2000:]
        doc = json.loads(candles.stdout)
        assert doc["ok"] and doc["published"] == 1440 and doc["topic"].endswith("dukascopy.EUR-USD.candle")
        again = json.loads(pulse(*base, "--from", "2019-02-04T00", "--to", "2019-02-04T02", env=env).stdout)
        assert again["published"] == 0 and again["hours_skipped"] == 2  # resumed from the checkpoints
        # the .bi5 layout of the same server gives the same hours (other checkpoint: nothing is skipped)
        bi5 = [*base[:-2], f"http://127.0.0.1:{port}/datafeed", "--feed", "bi5", "--json"]
        env_bi5 = {"PULSE_DUKASCOPY__CHECKPOINT_DIR": str(tmp_path / "ckpt-bi5")}
        other = json.loads(pulse(*bi5, "--from", "2019-02-04T00", "--to", "2019-02-04T02", env=env_bi5).stdout)
        assert other["ok"] and other["feed"] == "bi5" and other["ticks_published"] == api_ticks
        # every hour missing (the API asked on the .bi5 root): an error, not `ok: true`
        env_new = {"PULSE_DUKASCOPY__CHECKPOINT_DIR": str(tmp_path / "ckpt-new")}
        wrong = pulse(*bi5[:-3], "--json", "--from", "2019-02-04T00", "--to", "2019-02-04T02", env=env_new)
        assert wrong.returncode == 1, wrong.stdout
        report = json.loads(wrong.stdout)
        assert not report["ok"] and report["hours_not_found"] == 2 and report["feed"] == "api"
        assert "no tick data" in report["error"] and "--url" in wrong.stderr
    finally:
        server.terminate()
        server.wait(10)
    assert not pid_alive(server.pid)

    # a sink process stores the two hours; `pulse candles` then matches Dukascopy's own minute file
    sub_env = {"PULSE_SINK__SUBSCRIPTION": f"cli-candles-{tmp_path.name[-12:]}"}
    sink = subprocess.Popen(
        # default settings: the backfill registered EUR/USD, and the sink follows the historical namespace
        [sys.executable, "-m", "cli", "--home", home, "sink", "run"],
        cwd=REPO,
        env={**os.environ, **sub_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    args = [
        "--home",
        home,
        "candles",
        "EUR/USD",
        "--interval",
        "1m",
        "--from",
        "2019-02-04T00:00",
        "--to",
        "2019-02-04T02:00",
        "--json",
    ]  # no --side, no --venue: what a user types after a backfill
    try:
        from pulse.status import read_status

        deadline = time.monotonic() + 60
        while (doc := read_status(Path(home), "sink-postgres")) is None or doc.get("pid") != sink.pid:
            assert time.monotonic() < deadline and sink.poll() is None, "the sink did not start"
            time.sleep(0.2)  # running (signal handlers installed) once it writes its status file
        rows: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            res = pulse(*args)
            rows = json.loads(res.stdout) if res.returncode == 0 else []
            if len(rows) == 120 and sum(int(r["ticks"]) for r in rows) == doc_ticks(home):
                break
            time.sleep(0.5)
    finally:
        sink.terminate()
        assert sink.wait(30) == 0
    from ingesters.dukascopy.bi5 import decode_candles

    day = (SHARED_DATA / "dukascopy" / "EURUSD" / "2019" / "01" / "04" / "BID_candles_min_1.bi5").read_bytes()
    ref = decode_candles(day, period_start_ns=1549238400 * 10**9, divisor=100_000, symbol="EUR/USD")[:120]
    assert [(r["open"], r["high"], r["low"], r["close"]) for r in rows] == [
        (str(c.open), str(c.high), str(c.low), str(c.close)) for c in ref
    ]


def doc_ticks(home: str) -> int:
    """Ticks in the shipped 00h and 01h files (decoded independently of the database)."""
    from ingesters.dukascopy.bi5 import decode_ticks

    base = SHARED_DATA / "dukascopy" / "EURUSD" / "2019" / "01" / "04"
    total = 0
    for hour in (0, 1):
        data = (base / f"{hour:02d}h_ticks.bi5").read_bytes()
        total += len(
            decode_ticks(data, hour_start_ns=(1549238400 + 3600 * hour) * 10**9, divisor=100_000, symbol="EUR/USD")
        )
    return total


def test_sink_config_is_refused_naming_the_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "sinks.yaml"
    cfg.write_text("sources:\n  - {venue: dukascopy, symbols: [EUR/USD]}\ntables:\n  quote: {table: quotez}\n")
    res = pulse("--home", str(tmp_path), "sink", "run", "--config", str(cfg), env=port_env())
    assert res.returncode == 2 and "quotez" in res.stderr
    assert not (tmp_path / "run").exists()
