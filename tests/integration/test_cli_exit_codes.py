"""The `pulse` command's contract with scripts: documented exit codes, `--version`, and errors as JSON with --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from pulse.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE, exit_code_for
from pulse.runtime.procs import free_port
from pulse.settings import Settings
from tests.integration.test_cli import REPO, port_env, pulse


def unreachable_env() -> dict[str, str]:
    """A broker and a database that nobody listens on (ports just found free)."""
    return {
        "PULSE_PULSAR__URL": f"pulsar://127.0.0.1:{free_port()}",
        "PULSE_PULSAR__OPERATION_TIMEOUT_S": "5",
        "PULSE_DATABASE__URL": f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/db",
    }


def json_error(res: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The one JSON object a failed --json command printed on stderr (its last line: logs may precede it)."""
    doc = json.loads(res.stderr.strip().splitlines()[-1])
    assert set(doc) == {"error", "exit_code", "kind"}
    return doc


def test_version() -> None:
    res = pulse("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"pulse {version('pulse-market-data')}"


def test_an_unreachable_broker_exits_69(tmp_path: Path) -> None:
    res = pulse("--home", str(tmp_path), "orders", "list", env=unreachable_env())
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "broker unreachable" in res.stderr


def test_an_unreachable_broker_with_json_is_a_json_error(tmp_path: Path) -> None:
    res = pulse("--home", str(tmp_path), "orders", "list", "--json", env=unreachable_env())
    assert res.returncode == EXIT_UNAVAILABLE and res.stdout == ""
    doc = json_error(res)
    assert doc["exit_code"] == EXIT_UNAVAILABLE and doc["kind"] == "unavailable" and "broker" in str(doc["error"])


def test_an_unreachable_database_exits_69_without_its_password(tmp_path: Path) -> None:
    res = pulse("--home", str(tmp_path), "symbols", "list", "--json", env=unreachable_env())
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr[-2000:]
    doc = json_error(res)
    assert "database unreachable" in str(doc["error"]) and "secret-pw" not in res.stderr


def test_no_running_runtime_exits_69_and_names_pulse_up(tmp_path: Path) -> None:
    res = pulse("--home", str(tmp_path), "alerts", "list", env=port_env())
    assert res.returncode == EXIT_UNAVAILABLE and "pulse up" in res.stderr


def test_a_bad_setting_exits_2_and_is_a_json_error_with_json(tmp_path: Path) -> None:
    env = {"PULSE_KRAKEN__DEPTH": "7"}
    text = pulse("--home", str(tmp_path), "config", "show", env=env)
    assert text.returncode == EXIT_USAGE and text.stderr.startswith("error: invalid setting kraken.depth")
    res = pulse("--home", str(tmp_path), "config", "show", "--json", env=env)
    assert res.returncode == EXIT_USAGE and res.stdout == ""
    doc = json_error(res)
    assert doc["kind"] == "usage" and "kraken.depth" in str(doc["error"]) and "PULSE_KRAKEN__DEPTH" in str(doc["error"])


def test_a_bad_option_exits_2_and_is_a_json_error_with_json(tmp_path: Path) -> None:
    res = pulse("--home", str(tmp_path), "status", "--json", "--max-stall", "0")
    assert res.returncode == EXIT_USAGE and res.stdout == ""
    assert json_error(res)["kind"] == "usage" and "--max-stall" in res.stderr
    text = pulse("--home", str(tmp_path), "status", "--no-such-option")
    assert text.returncode == EXIT_USAGE and "No such option" in text.stderr and "Usage:" in text.stderr


def test_down_with_json(tmp_path: Path) -> None:
    res = pulse("--home", str(tmp_path), "down", "--json")
    assert res.returncode == EXIT_FAILED and json_error(res)["error"].startswith("no embedded runtime")  # type: ignore[union-attr]


def test_ctrl_c_exits_130(runtime_settings: Settings, tmp_path: Path) -> None:
    """Ctrl-C while `orders submit` waits for the matching service's answer (none runs for this instrument)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--home", str(runtime_settings.home), "orders", "submit",
         "kraken:BTC/USD", "buy", "1", "--type", "market", "--wait", "300"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(8)  # imports, settings, client, subscription: then it waits in its receive loop
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
        (ConnectionRefusedError(111, "refused"), EXIT_UNAVAILABLE),
        (RuntimeError("a bug"), EXIT_FAILED),
        (BrokenPipeError(32, "the reader of our output left"), EXIT_FAILED),  # not an unreachable dependency
    ],
)
def test_exit_code_for_library_errors(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_exit_code_follows_the_cause_of_a_pulse_error() -> None:
    from pulse.errors import ConfigError, PulseError, SymbolError

    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as low:
            raise PulseError("cannot read the registry") from low
    except PulseError as exc:
        assert exit_code_for(exc) == EXIT_UNAVAILABLE
    assert exit_code_for(SymbolError("BTC/USDX")) == EXIT_USAGE  # a refused input
    assert exit_code_for(ConfigError("bad")) == EXIT_USAGE
    assert exit_code_for(PulseError("failed")) == EXIT_FAILED


def test_a_stopped_service_is_unhealthy_and_historical_data_reads_as_a_date(runtime_settings: Settings) -> None:
    """A sink that stopped cleanly (state "stopped", its pid gone) after storing a backfill of July 2026."""
    from datetime import UTC, datetime

    newest = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    run = runtime_settings.home / "run"
    run.mkdir(exist_ok=True)
    doc = {"name": "sink-retro", "pid": 999_999_998, "started": 0, "updated": 0, "state": "stopped",
           "counters": {}, "last_event_ns": {"quotes": int(newest.timestamp() * 1e9)}}  # fmt: skip
    path = run / "sink-retro.json"
    path.write_text(json.dumps(doc))
    home = str(runtime_settings.home)
    try:
        res = pulse("--home", home, "status")
        report = json.loads(pulse("--home", home, "status", "--json").stdout)
        unknown = pulse("--home", home, "status", "--forget", "../runtime")
        forgot = pulse("--home", home, "status", "--forget", "sink-retro")
    finally:
        path.unlink(missing_ok=True)
    assert res.returncode == EXIT_FAILED, res.stdout
    assert any(line.startswith("UNHEALTHY") and "sink-retro STOPPED" in line and "--forget sink-retro" in line
               for line in res.stdout.splitlines())  # fmt: skip
    assert "sink-retro newest stored event 2026-07-01 12:00 UTC (historical)" in res.stdout
    sink = next(s for s in report["services"] if s["name"] == "sink-retro")
    assert sink["newest_stored"] == "2026-07-01T12:00:00+00:00" and not report["healthy"]
    # a service retired on purpose is forgotten (its file deleted); a name that is no service is refused
    assert unknown.returncode == EXIT_USAGE and "no such service" in unknown.stderr
    assert "sink-retro" not in forgot.stdout and not path.exists() and (runtime_settings.home / "runtime.json").exists()


@pytest.mark.parametrize(
    ("age", "text"),
    [(3.21, "3.2s ago"), (600, "10 min ago"), (5 * 3600, "2026-07-01 07:00 UTC, 5 h ago"),
     (30 * 86400, "2026-06-01 12:00 UTC (historical)")],
)  # fmt: skip
def test_describe_time(age: float, text: str) -> None:
    from datetime import UTC, datetime

    from app.health import describe_time

    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    assert describe_time(now - age, now) == text


def test_ctrl_c_ends_a_command_blocked_in_the_pulsar_client_with_130(tmp_path: Path) -> None:
    """`orders list` against a broker that never answers waits inside the C++ client (operation timeout 120 s);
    the client notices Ctrl-C and ends the call: the command exits 130, saying so, without a traceback."""
    env = {**unreachable_env(), "PULSE_PULSAR__OPERATION_TIMEOUT_S": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--home", str(tmp_path), "orders", "list"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip
    try:
        time.sleep(8)  # imports and settings: then it waits in the client's subscribe
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err and time.monotonic() - t0 < 60


def test_a_configured_port_in_use_is_a_setting_to_change_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = pulse(
            "--home", str(tmp_path), "up", "--json", env={**port_env(), "PULSE_RUNTIME__BROKER_PORT": str(port)}
        )
    assert res.returncode == EXIT_USAGE, res.stderr[-2000:]
    doc = json_error(res)
    assert doc["kind"] == "usage" and f"port {port}" in str(doc["error"]) and "runtime.broker_port" in str(doc["error"])
    assert not (tmp_path / "runtime.json").exists()
