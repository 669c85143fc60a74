"""Shared fixtures: a real embedded runtime (pulsar-lite + PostgreSQL) per test session, stopped by pid."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulse.runtime import Endpoints, Runtime, attach_runtime, resolve_endpoints
from pulse.runtime.procs import free_port, pid_alive
from pulse.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


#: The broker the session runtime starts: pulsar-lite by default; ``PULSE_TEST_BROKER=apache`` runs the whole
#: suite on Apache Pulsar standalone (the ``real_pulsar`` tier starts its own Apache broker either way).
TEST_BROKER = os.environ.get("PULSE_TEST_BROKER", "lite")


def make_settings(home: Path, **env: str) -> Settings:
    environ = {
        "PULSE_RUNTIME__HOME": str(home),
        "PULSE_RUNTIME__BROKER": TEST_BROKER,
        "PULSE_RUNTIME__BROKER_PORT": str(free_port()),
        "PULSE_RUNTIME__BROKER_METRICS_PORT": str(free_port()),
        "PULSE_RUNTIME__BROKER_ADMIN_PORT": str(free_port()),
        "PULSE_RUNTIME__POSTGRES_PORT": str(free_port()),
        **env,
    }
    return load_settings(environ=environ)


@pytest.fixture(scope="session")
def runtime_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a freshly started embedded runtime; the runtime is stopped (by pid) afterwards."""
    home = tmp_path_factory.mktemp("pulse-home")
    settings = make_settings(home)
    rt = Runtime(settings)
    st = rt.up()
    assert st.running, st.as_dict()
    pids = [st.broker["pid"], st.postgres["pid"]]  # type: ignore[index]
    if TEST_BROKER == "apache":
        from control_plane.provision import provision_base_sync

        provision_base_sync(attach_runtime(settings))
    try:
        yield attach_runtime(settings)  # on Apache Pulsar: pulsar.url and admin_url, as every CLI command sees them
    finally:
        pids += [p["pid"] for p in [rt.status().postgres] if p]  # tests may restart PostgreSQL: a new pid
        rt.down(purge=True)  # as root the cluster lives outside the home (runtime.postgres_system_dir)
        for pid in pids:
            assert not pid_alive(pid), f"runtime process {pid} still alive after `down`"


@pytest.fixture(scope="session")
def endpoints(runtime_settings: Settings) -> Endpoints:
    return resolve_endpoints(runtime_settings)


@pytest.fixture
def unique() -> str:
    """A short unique token for topic, subscription and table names within one test."""
    return uuid.uuid4().hex[:10]
