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
from tests.notify import NotifySocket

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


def _artifacts() -> Path:
    return Path(os.environ.get("PULSE_TEST_ARTIFACTS", REPO / "test-artifacts"))


def _worker(config: pytest.Config) -> str | None:
    """The pytest-xdist worker id (gw0, gw1, …) of this process, None in the controller or without xdist."""
    return getattr(config, "workerinput", {}).get("workerid")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``-n 2 --dist loadgroup``) a group runs on one worker, in order: each
    module is a group (its module-scoped gateway, page or fuzz run and the tests after it stay together), the
    Apache Pulsar tier is one (one broker) and so is the fault suite (its cases time recoveries; one at a time)."""
    for item in items:
        path = str(item.fspath)
        if "/real_pulsar/" in path:
            group = "apache"
        elif "/faults/" in path:
            group = "faults"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionstart(session: pytest.Session) -> None:
    if _worker(session.config) is None:  # a new run: no worker's fault table from an earlier one
        for old in _artifacts().glob("faults.gw*.json"):
            old.unlink()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker hands its fault-suite rows to the controller through a file (xdist workers are processes)."""
    chain = __import__("sys").modules.get("tests.faults.chain")
    worker = _worker(session.config)
    if worker and chain is not None and chain.RESULTS:
        chain.save_results(_artifacts() / f"faults.{worker}.json")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault suite's table (tests/faults/chain.py): one row per case that ran, also in test-artifacts/."""
    if _worker(terminalreporter.config):
        return
    import json

    from tests.faults import chain

    rows = [*chain.RESULTS]
    for part in sorted(_artifacts().glob("faults.gw*.json")):
        rows += [chain.Outcome(**d) for d in json.loads(part.read_text())]
        part.unlink()
    if not rows:
        return
    terminalreporter.write_sep("=", "fault injection: the database against what the venue sent")
    terminalreporter.write_line(chain.table(rows))
    chain.RESULTS[:] = rows
    chain.save_results(_artifacts() / "faults.json")


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    ns = NotifySocket()
    try:
        yield ns
    finally:
        ns.close()
