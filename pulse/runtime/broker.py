"""Start and stop the embedded pulsar-lite broker.

pulsar-lite speaks the Pulsar binary protocol to the official ``pulsar-client``; it has no admin REST and no
schema registry. Its Prometheus endpoint would listen on :8080 — the real Pulsar admin port — so we always
write a ``pulsar-lite.toml`` that moves it to ``runtime.broker_metrics_port``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pulsar_lite.binary_finder import find_pulsar_lite_binary

from pulse.errors import RuntimeStateError
from pulse.runtime.procs import require_port_free, terminate, wait_for_port
from pulse.runtime.storage import lite_data_dir


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    url: str
    metrics_url: str
    log: str
    data_dir: str = ""  # where it writes (pulsar-lite: ``<db_path>.rocksdb``); ``pulse status`` checks its free space
    log_offset: int = 0  # the log's size when it started: what follows is this broker's (``pulse status`` reads it)


def write_config(path: Path, *, host: str, port: int, metrics_port: int, db_path: Path) -> None:
    path.write_text(
        "# Written by `pulse up`; see pulsar/pulsar-lite.toml for the annotated template.\n"
        f'addr = "{host}:{port}"\n'
        f'db_path = "{db_path}"\n'
        "default_partitions = 0\n"
        'log_level = "warn"\n'
        "max_pending_publish_requests_per_connection = 5000\n"
        "\n[metrics]\n"
        "enabled = true\n"
        f'addr = "{host}:{metrics_port}"\n'
    )


def start_broker(
    home: Path, *, host: str, port: int, metrics_port: int, timeout: float = 20.0, launcher: Sequence[str] = ()
) -> BrokerInfo:
    """Start pulsar-lite on ``<home>/broker``. ``launcher``: a command prefix that ends by exec'ing the broker's
    command line it is given (e.g. ``unshare`` with a script that mounts its data volume first, as the disk-full
    fault case does); the pid recorded is the broker's, since the prefix execs it."""
    require_port_free("runtime.broker_port", host, port)
    require_port_free("runtime.broker_metrics_port", host, metrics_port)
    bdir = home / "broker"
    bdir.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    cfg = bdir / "pulsar-lite.toml"
    write_config(cfg, host=host, port=port, metrics_port=metrics_port, db_path=bdir / "data")
    log_path = home / "logs" / "broker.log"
    binary = find_pulsar_lite_binary()
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        proc = subprocess.Popen(
            [*launcher, binary, "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=bdir,
            umask=0o077,  # its data and files: owner-only
            start_new_session=True,  # survives the `pulse up` process; stopped by pid on `pulse down`
        )
    if not wait_for_port(host, port, timeout, pid=proc.pid):
        terminate(proc.pid)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeStateError(f"pulsar-lite did not start on {host}:{port}; last log lines:\n{tail}")
    return BrokerInfo(
        pid=proc.pid,
        url=f"pulsar://{host}:{port}",
        metrics_url=f"http://{host}:{metrics_port}/metrics",
        log=str(log_path),
        data_dir=str(lite_data_dir(bdir / "data")),
        log_offset=log_offset,
    )
