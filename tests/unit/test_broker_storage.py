"""The broker's disk as Pulse reports it (pulse.runtime.storage) and the publisher's watch on confirmations
(pulse.broker_watch.AckWatch). The full chain against a broker whose disk fills: tests/faults/test_disk_full.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pulse.broker_watch import AckWatch
from pulse.errors import ConfigError
from pulse.runtime.storage import broker_storage, enospc_in_log, lite_data_dir, seen_by, storage_problem
from pulse.settings import load_settings


def test_storage_is_read_as_the_process_sees_it_and_judged_against_the_setting(tmp_path: Path) -> None:
    data = lite_data_dir(tmp_path / "broker" / "data")
    assert data == tmp_path / "broker" / "data.rocksdb"
    # not written yet: its nearest existing parent's filesystem, through this process's root
    assert seen_by(os.getpid(), tmp_path) == Path(f"/proc/{os.getpid()}/root") / str(tmp_path).lstrip("/")
    st = broker_storage(data, os.getpid())
    vfs = os.statvfs(tmp_path)
    assert st.path == str(data) and st.size_bytes == vfs.f_blocks * vfs.f_frsize and 0 < st.free_bytes <= st.size_bytes
    assert storage_problem(st, 0.001) == ""
    problem = storage_problem(st, st.free_mb + 1)
    assert problem.startswith(f"broker storage full: {data} ") and " free of " in problem
    assert "runtime.broker_min_free_mb" in problem
    assert seen_by(2**22 + 7, tmp_path) == tmp_path  # no such process: the plain path


def test_enospc_lines_are_found_since_the_broker_started(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    assert enospc_in_log(log) is None  # no log yet
    earlier = "[2026-12-05T11:00:00Z ERROR pulsar_lite] write entrylog failed: No space left on device (os error 28)\n"
    log.write_text(
        earlier + "[2026-12-05T12:00:01Z WARN  pulsar_lite] something else\n"
        "[2026-12-05T12:00:02Z ERROR pulsar_lite] write entrylog failed: No space left on device (os error 28)\n"
        "[2026-12-05T12:00:05Z ERROR pulsar_lite] IO error: No space left on device: While appending to file\n"
    )
    found = enospc_in_log(log)
    assert found is not None and found["count"] == 3 and found["first"] == "2026-12-05T11:00:00Z"
    mine = enospc_in_log(log, offset=len(earlier))  # the broker started when the log had only the earlier line
    assert mine is not None and (mine["count"], mine["first"], mine["last"]) == (
        2, "2026-12-05T12:00:02Z", "2026-12-05T12:00:05Z")  # fmt: skip
    assert mine["line"].endswith("While appending to file")
    assert enospc_in_log(log, offset=log.stat().st_size) is None  # a broker started after all of them


def test_the_threshold_setting_is_validated() -> None:
    assert load_settings(environ={"PULSE_RUNTIME__BROKER_MIN_FREE_MB": "64"}).runtime.broker_min_free_mb == 64
    with pytest.raises(ConfigError, match="broker_min_free_mb"):
        load_settings(environ={"PULSE_RUNTIME__BROKER_MIN_FREE_MB": "-1"})


def test_ack_watch_warns_once_a_stall_lasts_repeats_rarely_and_says_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    changes: list[float] = []
    w = AckWatch("ingest-x", "pulsar://b:6650", stall_s=10, repeat_s=60, on_change=changes.append,
                 clock=lambda: now[0])  # fmt: skip
    caplog.set_level(logging.INFO, logger="pulse.broker_watch")

    def step(dt: float, answered: int, pending: int) -> list[str]:
        now[0] += dt
        caplog.clear()
        w.check(answered, pending, connected=False)
        return [r.getMessage() for r in caplog.records]

    assert step(0, 50, 3) == []
    assert step(9, 50, 3) == []  # nothing confirmed for 9 s: not yet
    msgs = step(1.5, 50, 1234)
    assert msgs == [
        "the broker has not confirmed a publish for 10 s, 1,234 pending (the connection keeps dropping): "
        "is its storage full? `pulse status` checks the embedded broker's disk; see also the broker's log"
    ]
    assert len(changes) == 1 and changes[0] > 0
    assert step(30, 50, 2000) == []  # rate-limited
    assert step(30, 50, 2500)[0].startswith("the broker has not confirmed a publish for 70 s, 2,500 pending")
    assert step(5, 51, 2400) == ["the broker confirms publishes again after 76 s"]  # since the last answer, at t=0
    assert changes[-1] == 0.0
    assert step(30, 51, 0) == []  # nothing pending is no stall
    assert step(0.2, 51, 5) == []  # pending again: the clock starts from the last check that saw none
    assert len(step(10, 51, 5)) == 1
