"""Small process and port helpers shared by the runtime, the services and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from pulse.errors import PortInUseError


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def require_port_free(setting: str, host: str, port: int) -> None:
    """Raise :class:`PortInUseError` naming the setting when ``port`` is taken."""
    if not port_free(host, port):
        raise PortInUseError(setting, host, port)


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free right now (for tests and the demo's local venues)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, *, pid: int | None = None) -> bool:
    """Wait until something accepts TCP connections on host:port (or the process ``pid`` dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.25):
            return True
        time.sleep(0.05)
    return False


def pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def terminate(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL. Returns True if it exited cleanly in time."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
            proc.wait(5)
        return False


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files and directories created inside are owner-only (umask 077), whatever the caller's umask."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make the directory itself 0700; its parents are left as they are."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def reap(pid: int) -> None:
    """Collect an exited child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
