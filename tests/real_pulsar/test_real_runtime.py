"""`pulse up --broker apache` / `pulse status` / `pulse down` as a user runs them, and the failures they must explain.

The broker lifecycle test starts a second Apache standalone of its own (a fresh home, free ports), so it also
proves the start-up path the session fixture relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pulse.runtime.procs import free_port, pid_alive
from tests.procs import REPO


def _pulse(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--home", str(home), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_up_status_down_on_apache_pulsar(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = {
        "PULSE_RUNTIME__BROKER_PORT": str(free_port()),
        "PULSE_RUNTIME__BROKER_ADMIN_PORT": str(free_port()),
        "PULSE_RUNTIME__BROKER_METRICS_PORT": str(free_port()),
        "PULSE_RUNTIME__POSTGRES_PORT": str(free_port()),
        "PULSE_RUNTIME__APACHE_HEAP_MB": "384",
    }
    up = _pulse(home, "up", "--broker", "apache", env=ports)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert "Apache Pulsar 4.0.7" in up.stdout
        admin_port = ports["PULSE_RUNTIME__BROKER_ADMIN_PORT"]
        assert f"admin     http://127.0.0.1:{admin_port}" in up.stdout
        state = json.loads((home / "runtime.json").read_text())
        broker = state["broker"]
        assert (
            broker["kind"] == "apache" and broker["url"] == f"pulsar://127.0.0.1:{ports['PULSE_RUNTIME__BROKER_PORT']}"
        )
        assert pid_alive(broker["pid"])

        # every other command sees the real broker: status asks its admin API, and the tenant was provisioned
        st = _pulse(home, "status", "--json", env=ports)
        report = json.loads(st.stdout)
        assert report["broker"]["ok"] and report["broker"]["kind"] == "apache"
        assert report["broker"]["version"] == "4.0.7"
        assert report["broker"]["admin"]["healthy"] is True, report["broker"]
        assert any("Apache Pulsar 4.0.7" in line for line in report["lines"])
        again = _pulse(home, "up", "--json", env=ports)  # idempotent: the same broker, not a second one
        assert again.returncode == 0 and json.loads(again.stdout)["broker"]["pid"] == broker["pid"]
    finally:
        down = _pulse(home, "down", env=ports)
    assert down.returncode == 0, down.stderr
    assert not pid_alive(broker["pid"]), "the broker must be stopped by pid"


def test_missing_java_is_one_clear_error(tmp_path: Path) -> None:
    # a PATH with Python but neither java nor mvn: what a machine without Java sees
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    res = _pulse(
        tmp_path / "home",
        "up",
        "--broker",
        "apache",
        env={"PATH": str(bare), "PULSE_RUNTIME__BROKER_PORT": str(free_port())},
        timeout=60,
    )
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "needs Java 17+" in res.stderr and "apt-get install" in res.stderr, res.stderr


def test_an_unresolvable_version_names_the_artifact(tmp_path: Path) -> None:
    res = _pulse(
        tmp_path / "home",
        "up",
        "--broker",
        "apache",
        env={
            "PULSE_CACHE_DIR": str(tmp_path / "cache"),
            "PULSE_RUNTIME__APACHE_VERSION": "4.0.99",
            "PULSE_RUNTIME__BROKER_PORT": str(free_port()),
        },
        timeout=240,
    )
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "cannot resolve org.apache.pulsar:pulsar-broker:4.0.99 from Maven Central" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "cache" / "pulse" / "pulsar-4.0.99" / "lib").exists()  # nothing half-resolved is kept
