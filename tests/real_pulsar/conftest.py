"""The ``real_pulsar`` tier: Apache Pulsar standalone (resolved from Maven Central) + the embedded PostgreSQL.

One broker per test session, in its own runtime home, provisioned like a fresh cluster (tenant, namespaces and
their policies through the admin API) and stopped by pid afterwards. Without Java 17 and Maven the tier is
skipped with the reason; CI sets ``PULSE_REQUIRE_REAL_PULSAR=1`` (``.ci/run`` installs both), which turns the
skip into a failure so the tier can never silently not run there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from pulse.runtime import Endpoints, Runtime, attach_runtime, resolve_endpoints
from pulse.runtime.procs import pid_alive
from pulse.settings import Settings
from tests.conftest import make_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/real_pulsar/" in str(item.fspath):
            item.add_marker(pytest.mark.real_pulsar)
            item.add_marker(pytest.mark.slow)
            if item.get_closest_marker("timeout") is None:  # the first test also waits for the broker to start
                item.add_marker(pytest.mark.timeout(600))


def _missing_tools() -> list[str]:
    return [t for t in ("java", "mvn") if shutil.which(t) is None]


def require_java_and_maven() -> None:
    """Skip without Java 17 and Maven, or fail when CI says the tier must run (PULSE_REQUIRE_REAL_PULSAR)."""
    missing = _missing_tools()
    if missing:
        msg = f"real_pulsar tier needs {' and '.join(missing)} (Java 17 + Maven; .ci/run installs them)"
        if os.environ.get("PULSE_REQUIRE_REAL_PULSAR"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def apache_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running Apache Pulsar standalone + PostgreSQL, with ``pulsar.url``/``admin_url`` set."""
    require_java_and_maven()
    from control_plane.provision import provision_base_sync

    home = tmp_path_factory.mktemp("pulse-apache-home")
    settings = make_settings(home, PULSE_RUNTIME__BROKER="apache")
    rt = Runtime(settings)
    st = rt.up()
    assert st.running and st.broker and st.broker["kind"] == "apache", st.as_dict()
    pids = [st.broker["pid"], st.postgres["pid"]]  # type: ignore[index]
    try:
        attached = attach_runtime(settings)
        provision_base_sync(attached)
        yield attached
    finally:
        pids += [p["pid"] for p in [rt.status().postgres] if p]
        rt.down(purge=True)  # as root the cluster lives outside the home (runtime.postgres_system_dir)
        for pid in pids:
            assert not pid_alive(pid), f"runtime process {pid} still alive after `down`"


@pytest.fixture(scope="session")
def apache_endpoints(apache_settings: Settings) -> Endpoints:
    return resolve_endpoints(apache_settings)
