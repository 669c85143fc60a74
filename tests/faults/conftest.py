"""The fault suite (``faults`` marker) runs on a runtime of its own: its cases stop and restart the broker and
PostgreSQL, which must not happen under the rest of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pulse.runtime import Runtime, attach_runtime
from pulse.runtime.procs import pid_alive
from pulse.settings import Settings
from tests.conftest import make_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = make_settings(tmp_path_factory.mktemp("faults-home"))
    rt = Runtime(settings)
    st = rt.up()
    assert st.running, st.as_dict()
    try:
        yield attach_runtime(settings)
    finally:
        pids = [p["pid"] for p in (rt.status().broker, rt.status().postgres) if p]
        rt.down(purge=True)
        assert not any(pid_alive(p) for p in pids)
