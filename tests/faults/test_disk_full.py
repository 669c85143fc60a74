"""The broker's disk fills up under the running chain, then space returns (issue 17); pulsar-lite only.

The case runs a runtime of its own: ``pulse up``'s pulsar-lite started through a launcher that first mounts a
small tmpfs on its data directory inside a user + mount namespace of its own (``unshare -Urm``: the mount is the
broker's alone and goes away with it), and PostgreSQL. A filler file written through ``/proc/<broker pid>/root``
(the broker's view of its mounts) leaves it a few hundred kB; the chain fills the rest, the broker's writes fail
with ENOSPC, the disk stays full for ``HOLD_S``, then the filler is deleted. Asserted: what the user sees while
the disk is full (``pulse status`` names the broker's storage, the ingester's log says the broker stopped
confirming publishes), nothing duplicated, and every trade the venue made before the disk filled is stored; the
table reports what was lost after it and the time to recover, if the chain recovers (pulsar-lite 0.2.0 often
does not: README, "Fault injection"; when it loses data, ``pulse status`` must say so and what to do).

The second case follows that advice: the tmpfs is held by a process of the test's own (so it outlives the
broker), the broker is started into its namespaces with ``nsenter``, stopped while the disk is full, space is
freed and ``pulse up`` starts it again: nothing may be lost or duplicated.

Without user namespaces (or ``unshare``) the case skips with the reason; ``PULSE_REQUIRE_NAMESPACES=1`` turns that skip
into a failure (a kernel or container may forbid user namespaces, and nothing can install them, so CI does not).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from pulse.runtime import Runtime
from pulse.runtime.procs import pid_alive, terminate
from pulse.runtime.storage import broker_storage, enospc_in_log, seen_by
from pulse.settings import Settings
from pulse.status import read_status
from tests.conftest import make_settings
from tests.faults.chain import REPO, Chain, chain, wait_for

pytestmark = pytest.mark.timeout(600)

SIZE_MB = 24  # the broker's tmpfs
LEAVE_KB = 256  # what the filler leaves the broker
MIN_FREE_MB = 4  # runtime.broker_min_free_mb for this case: above LEAVE_KB, well below SIZE_MB
HOLD_S = 20.0  # the disk stays full this long after the broker's first failed write


def tmpfs_launcher(mount: Path, size_mb: int) -> list[str]:
    """A ``start_broker`` launcher: a user + mount namespace of its own with a tmpfs on ``mount``, then the broker."""
    script = f'mkdir -p "$1" && mount -t tmpfs -o size={size_mb}m,mode=0700 tmpfs "$1" && shift && exec "$@"'
    return ["unshare", "-Urm", "sh", "-c", script, "sh", str(mount)]


def namespaces_or_skip(probe_dir: Path) -> None:
    """Skip (fail under PULSE_REQUIRE_NAMESPACES=1) unless a tmpfs can be mounted in a namespace of our own."""
    probe_dir.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run([*tmpfs_launcher(probe_dir, 1), "true"], capture_output=True, text=True, timeout=30)
        reason = "" if res.returncode == 0 else f"exit {res.returncode}: {res.stderr.strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        msg = f"cannot mount a tmpfs in a user + mount namespace (`unshare -Urm`): {reason}"
        if os.environ.get("PULSE_REQUIRE_NAMESPACES") == "1":
            pytest.fail(msg + " (PULSE_REQUIRE_NAMESPACES=1)")
        pytest.skip(msg)


def pulse_status(home: Path) -> tuple[int, dict[str, Any]]:
    """``pulse status --json`` as a user runs it against this runtime (exit code, report)."""
    res = subprocess.run(
        [sys.executable, "-m", "cli", "--home", str(home), "status", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PULSE_RUNTIME__BROKER_MIN_FREE_MB": str(MIN_FREE_MB)},
    )
    return res.returncode, json.loads(res.stdout)


def diagnose(c: Chain) -> str:
    """What the chain looked like when a wait timed out: the ingester's status file and log tail."""
    doc = read_status(c.settings.home, "ingest-kraken") or {}
    age = time.time() - doc.get("updated", 0)
    counters = {k: doc.get("counters", {}).get(k) for k in ("sent", "published", "pending", "unconfirmed_s")}
    return f"ingester status file {age:.0f}s old {counters}; its log:\n{c.tail('ingest', 1500)}"


def fill(path: Path, leave: int) -> int:
    """Write ``path`` until its filesystem has ``leave`` bytes free; returns its size."""
    st = os.statvfs(path.parent)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(path, "wb") as f:
        chunk = b"\0" * (1 << 20)
        left = size
        while left > 0:
            left -= f.write(chunk[: min(left, len(chunk))])
    return size


def holder_launcher(holder: int, workdir: Path) -> list[str]:
    """A ``start_broker`` launcher into the namespaces of ``holder`` (a process that keeps the tmpfs mounted), so a
    broker stopped and started again finds its data where it left it."""
    return ["nsenter", "-t", str(holder), "-U", "-m", "--preserve-credentials", f"--wd={workdir}"]


@contextmanager
def tmpfs_holder(mount: Path, size_mb: int) -> Iterator[int]:
    """A process of the test's own holding a namespace with a tmpfs on ``mount``; stopped by pid at the end."""
    proc = subprocess.Popen([*tmpfs_launcher(mount, size_mb), "sleep", "3600"], stdin=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: broker_storage(mount, proc.pid).size_bytes <= size_mb * 2**20, "the holder's tmpfs", 30)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        assert not pid_alive(proc.pid)


@contextmanager
def own_runtime(tmp_path: Path, launcher: Callable[[Path], list[str]]) -> Iterator[tuple[Settings, Runtime]]:
    """``pulse up`` in a home of the case's own, its pulsar-lite started through ``launcher(data dir)`` (a tmpfs of
    ``SIZE_MB`` as the broker sees it); ``pulse down`` (by pid) at the end."""
    home = tmp_path / "home"
    settings = make_settings(home, PULSE_RUNTIME__BROKER="lite",
                             PULSE_RUNTIME__BROKER_MIN_FREE_MB=str(MIN_FREE_MB))  # fmt: skip
    data_dir = home / "broker" / "data.rocksdb"  # where pulsar-lite writes (beside its db_path)
    (home / "broker").mkdir(parents=True, exist_ok=True)
    rt = Runtime(settings, broker_launcher=launcher(data_dir))
    pids: list[int] = []
    try:
        st = rt.up()
        assert st.running, st.as_dict()
        broker = st.broker or {}
        pids = [broker["pid"], (st.postgres or {})["pid"]]
        assert broker["data_dir"] == str(data_dir)
        storage = broker_storage(data_dir, broker["pid"])
        assert SIZE_MB - 1 <= storage.size_bytes / 2**20 <= SIZE_MB, storage  # the broker's own tmpfs
        assert broker_storage(data_dir).size_bytes > 2 * storage.size_bytes  # not what the host sees there
        yield settings, rt
    finally:
        pids += [p["pid"] for p in [(rt.status().broker or {}), (rt.status().postgres or {})] if p]
        if rt.state_path.exists():
            rt.down(purge=True)
        for pid in pids:
            assert not pid_alive(pid), f"runtime process {pid} still alive after `down`"


def test_broker_disk_full_then_space_returns(tmp_path: Path) -> None:
    namespaces_or_skip(tmp_path / "probe")
    with own_runtime(tmp_path, lambda d: tmpfs_launcher(d, SIZE_MB)) as (settings, rt):
        run_case(settings, tmp_path, (rt.status().broker or {}))


def run_case(settings: Settings, tmp_path: Path, broker: dict[str, Any]) -> None:
    home, pid, log = settings.home, broker["pid"], broker["log"]
    filler = seen_by(pid, broker["data_dir"]) / "filler"
    with chain(settings, tmp_path / "chain", "broker disk full", rate=100.0) as c:
        code, before = pulse_status(home)
        assert before["broker"]["storage"]["problem"] == "", before["broker"]
        assert not enospc_in_log(log)

        fill_mark = c.mark()  # every trade made before this is stored before the disk fills
        fill(filler, LEAVE_KB * 1024)
        wait_for(lambda: enospc_in_log(log), "the broker's first write failing with ENOSPC", 180,
                 diagnose=lambda: diagnose(c))  # fmt: skip
        full_at = time.monotonic()

        # what the user sees while the disk is full
        code, during = pulse_status(home)
        assert code == 1 and not during["healthy"]
        lines = "\n".join(during["lines"])
        assert f"UNHEALTHY  broker storage full: {broker['data_dir']} " in lines, lines
        assert 'writes failed with "No space left on device" since it started' in lines, lines
        storage = during["broker"]["storage"]
        assert storage["free_mb"] < MIN_FREE_MB and storage["enospc"]["count"] >= 1, storage
        warned = wait_for(lambda: "the broker has not confirmed a publish for" in c.tail("ingest", 200_000),
                          "the ingester's warning that the broker stopped confirming", 90)  # fmt: skip
        assert warned
        code, stalled = pulse_status(home)
        ingest = [d for d in stalled["services"] if d["name"] == "ingest-kraken"]
        assert ingest and ingest[0]["counters"]["unconfirmed_s"] >= 10, ingest
        assert any("the broker has not confirmed a publish for" in ln for ln in stalled["lines"]), stalled["lines"]
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - full_at)))

        os.unlink(filler)  # space returns
        mark, t0 = c.mark(), time.monotonic()
        freed = broker_storage(broker["data_dir"], pid).free_mb
        try:
            rec: float | None = c.recovery(mark, t0, timeout=90)
        except pytest.fail.Exception:
            rec = None
        resumed = "the broker confirms publishes again" in c.tail("ingest", 200_000)
        code, after = pulse_status(home)  # after space returned (and the recovery wait)
        data = seen_by(pid, broker["data_dir"])
        biggest = max(data.rglob("*"), key=lambda f: f.stat().st_size if f.is_file() else 0)
        note = f"{SIZE_MB} MB tmpfs full {HOLD_S:.0f}s, space returned under the running broker"
        out = c.finish(rec, settle_s=60, note=note)
        lines = "\n".join(after["lines"])
        acked_unreadable = "sink-postgres stalled: subscription" in lines
        unconfirmed = "ingest-kraken: the broker has not confirmed a publish for" in lines
        if out.lost:  # pulsar-lite 0.2.0: see the README (Fault injection)
            how = [w for w, seen in (("acked what it cannot deliver", acked_unreadable),
                                     ("kept failing writes", unconfirmed)) if seen]  # fmt: skip
            size = biggest.stat().st_size / 2**20
            out.note = (f"{note}: it {' and '.join(how) or '?'}; {after['broker']['storage']['free_mb']} MB free "
                        f"after ({biggest.relative_to(data)} {size:.0f} MB)")  # fmt: skip
        assert c.alive("ingest") and c.alive("sink")
        tape, rows = c.tape, c.rows()
        publisher = [p.pid for p in psutil.Process(c.daemons["ingest"].proc.pid).children()]  # type: ignore[union-attr]
    for kid in publisher:  # killed with its ingester, whose final flush waited for the broker, it waits on (README)
        if pid_alive(kid):
            os.kill(kid, signal.SIGKILL)
            out.note += "; its publisher process outlived the ingester (stopped by pid)"
    assert freed > MIN_FREE_MB  # deleting the filler gave the space back
    assert (out.duplicates, out.extra) == (0, 0), out
    lost = {f"{s}:{i}" for s, i in set(tape) - set(rows)}
    before_full = {f"{s}:{i}" for s, i in tape[:fill_mark]}
    assert not lost & before_full, sorted(lost & before_full)[:10]  # what was stored before the disk filled stays
    if out.lost:  # the user is told where, what to do, and what it did to the chain
        assert not after["healthy"]
        assert 'writes failed with "No space left on device" since it started' in lines, lines
        assert "stop it (`pulse down`), free space, `pulse up`" in lines, lines
        assert acked_unreadable or unconfirmed, lines
    else:
        assert rec is not None and resumed, lines


def test_broker_disk_full_stopped_then_restarted_once_space_returns(tmp_path: Path) -> None:
    """The procedure that loses nothing on pulsar-lite 0.2.0: stop the broker while its disk is full, free space,
    start it again (a broker left running when space returns stores what follows unreadably, see above)."""
    namespaces_or_skip(tmp_path / "probe")
    data_dir = tmp_path / "home" / "broker" / "data.rocksdb"
    with (
        tmpfs_holder(data_dir, SIZE_MB) as holder,
        own_runtime(tmp_path, lambda _d: holder_launcher(holder, data_dir.parent)) as (settings, rt),
    ):
        broker = rt.status().broker or {}
        filler = seen_by(holder, data_dir) / "filler"
        with chain(settings, tmp_path / "chain", "broker disk full, restarted", rate=100.0) as c:
            fill(filler, LEAVE_KB * 1024)
            wait_for(lambda: enospc_in_log(broker["log"]), "the broker's first write failing with ENOSPC", 180,
                     diagnose=lambda: diagnose(c))  # fmt: skip
            code, during = pulse_status(settings.home)
            assert code == 1 and any(ln.startswith("UNHEALTHY  broker storage full: ") for ln in during["lines"])
            time.sleep(5)
            terminate(broker["pid"])  # stopped while full: nothing stored after ENOSPC is acknowledged
            os.unlink(filler)  # space returns
            mark, t0 = c.mark(), time.monotonic()
            restarted = rt.up()  # the same launcher: into the holder's namespace, onto the same tmpfs
            assert restarted.broker_running and restarted.broker["pid"] != broker["pid"]  # type: ignore[index]
            rec = c.recovery(mark, t0)
            out = c.finish(rec, note=f"{SIZE_MB} MB tmpfs full; broker stopped, space freed, broker started")
            assert c.alive("ingest") and c.alive("sink")
            code, after = pulse_status(settings.home)
        assert (out.lost, out.duplicates, out.extra) == (0, 0, 0), out
        assert c.summary("ingest")["publish_failed"] == 0
        lines = "\n".join(after["lines"])
        assert after["broker"]["storage"]["problem"] == "" and "No space left" not in lines, lines
