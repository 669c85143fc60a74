"""``pulse up`` / ``pulse down`` / ``pulse up --status``: the embedded runtime's lifecycle and state file.

State lives in ``<home>/runtime.json`` (pids and URLs, never the database password). The home and everything
the runtime writes in it are owner-only (0700 / 0600); nothing outside the home changes mode. Processes are
started in their own session so they outlive the command that started them, and are stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pulse.errors import RuntimeStateError
from pulse.runtime.apache import ApacheBrokerInfo, start_apache
from pulse.runtime.broker import BrokerInfo, start_broker
from pulse.runtime.postgres import PostgresInfo, postmaster_pid, purge_postgres, start_postgres, stop_postgres
from pulse.runtime.procs import pid_alive, private_dir, private_files, terminate
from pulse.runtime.storage import lite_data_dir
from pulse.settings import Settings

STATE_FILE = "runtime.json"


@dataclass
class RuntimeStatus:
    home: str
    broker: dict[str, Any] | None = None
    postgres: dict[str, Any] | None = None
    broker_running: bool = False
    postgres_running: bool = False
    started_at: float | None = None
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.broker_running and self.postgres_running

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "running": self.running}


class Runtime:
    """The embedded broker + database living under ``settings.runtime.home``."""

    def __init__(self, settings: Settings, *, broker_launcher: Sequence[str] = ()) -> None:
        self.settings = settings
        self.home = settings.home
        self.broker_launcher = tuple(broker_launcher)  # pulsar-lite's command prefix (see start_broker)

    @property
    def state_path(self) -> Path:
        return self.home / STATE_FILE

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        private_dir(self.home)
        tmp = self.state_path.with_suffix(".tmp")
        with private_files():
            tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)
        os.replace(tmp, self.state_path)

    def status(self) -> RuntimeStatus:
        state = self._read_state()
        st = RuntimeStatus(home=str(self.home), started_at=state.get("started_at"))
        if b := state.get("broker"):
            st.broker = {"kind": "lite", **b}
            if st.broker["kind"] == "lite":  # a state file from before data_dir was recorded
                st.broker.setdefault("data_dir", str(lite_data_dir(self.home / "broker" / "data")))
            st.broker_running = pid_alive(b["pid"])
        if p := state.get("postgres"):
            p = {**p, "pid": postmaster_pid(p["data_dir"]) or p["pid"]}  # a restart changes the pid
            st.postgres = p
            st.postgres_running = pid_alive(p["pid"])
        return st

    def up(self, progress: Callable[[str], None] | None = None) -> RuntimeStatus:
        """Start whatever is not running yet. Idempotent; refuses a taken port before starting anything.

        ``runtime.broker`` chooses the broker: pulsar-lite, or Apache Pulsar standalone (resolved from Maven
        Central into a cache on first use; ``progress`` receives one line per step)."""
        current = self.status()
        if current.running:
            return current
        state = self._read_state()
        private_dir(self.home)
        with private_files():
            state = self._start(state, current, progress)
        state["started_at"] = time.time()
        self._write_state(state)
        return self.status()

    def _start(
        self, state: dict[str, Any], current: RuntimeStatus, progress: Callable[[str], None] | None
    ) -> dict[str, Any]:
        rt = self.settings.runtime
        broker: BrokerInfo | ApacheBrokerInfo | None = None
        try:
            if not current.broker_running:
                if rt.broker == "apache":
                    broker = start_apache(
                        self.home,
                        host=rt.host,
                        port=rt.broker_port,
                        admin_port=rt.broker_admin_port,
                        version=rt.apache_version,
                        heap_mb=rt.apache_heap_mb,
                        extra_conf=list(rt.apache_conf),
                        admin_token=self.settings.pulsar_token(),
                        functions=rt.apache_functions,
                        progress=progress,
                        fresh=False,  # a restart keeps its topics, policies and messages (pulsar-lite's do too)
                    )
                    state["broker"] = asdict(broker)
                else:
                    broker = start_broker(
                        self.home,
                        host=rt.host,
                        port=rt.broker_port,
                        metrics_port=rt.broker_metrics_port,
                        launcher=self.broker_launcher,
                    )
                    state["broker"] = {**asdict(broker), "kind": "lite"}
            if not current.postgres_running:
                pg: PostgresInfo = start_postgres(
                    self.home,
                    host=rt.host,
                    port=rt.postgres_port,
                    database=rt.database,
                    bin_path=rt.postgres_bin_dir,
                    options=rt.postgres_options,
                    system_dir=rt.postgres_system_dir,
                )
                state["postgres"] = asdict(pg)
        except BaseException:
            if broker is not None:  # do not leave half a runtime behind
                terminate(broker.pid)
            raise
        return state

    def down(self, *, purge: bool = False) -> RuntimeStatus:
        """Stop both servers by pid. ``purge`` also deletes the database cluster (wherever it lives: as root it
        is outside the home) and its password; the home itself is left to the caller."""
        state = self._read_state()
        if not state:
            raise RuntimeStateError(f"no embedded runtime under {self.home} (nothing to stop)")
        if p := state.get("postgres"):
            # stop by data directory: the server may have been restarted since `up` recorded its pid
            pid = postmaster_pid(p["data_dir"]) or p["pid"]
            bins = p.get("bin_dir") or self.settings.runtime.postgres_bin_dir
            if not stop_postgres(p["data_dir"], bins) and pid_alive(pid):
                terminate(pid)
        if b := state.get("broker"):
            terminate(b["pid"], timeout=30.0 if b.get("kind") == "apache" else 10.0)
        st = self.status()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        if purge:
            purge_postgres(self.home, self.settings.runtime.postgres_system_dir)
        return st
