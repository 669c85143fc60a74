"""Service status files: the periodic-write pacing and a write failure that must not stop a service."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pulse.status import StatusFile, read_status


def test_periodic_writes_are_paced_and_force_writes_at_once(tmp_path: Path) -> None:
    st = StatusFile(tmp_path, "svc", every_s=0.2)
    assert st.due()  # the first write is due at once
    assert not st.due()  # … and the next one only after every_s
    assert st.next_due > time.monotonic()
    assert st.due(force=True)  # a final write never waits
    time.sleep(0.25)
    assert st.due()


def test_write_or_log_writes_the_document_and_survives_an_unwritable_home(tmp_path: Path) -> None:
    st = StatusFile(tmp_path, "svc")
    st.write_or_log({"received": 3}, state="running")
    doc = read_status(tmp_path, "svc")
    assert doc is not None and doc["counters"] == {"received": 3} and doc["state"] == "running"
    assert doc["pid"] == os.getpid() and doc["alive"]

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")  # <home>/run cannot be created under a file
    bad = StatusFile(blocked, "svc")
    bad.write_or_log({"received": 1})  # logged, not raised
    assert blocked.is_file() and blocked.read_text() == "x"  # nothing written, nothing raised
