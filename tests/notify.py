"""A stand-in for systemd's notification socket: a real AF_UNIX datagram socket that records every sd_notify
message a service under test sends (``notify_socket`` is its fixture, in ``tests/conftest.py``)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path


class NotifySocket:
    """A datagram socket standing in for systemd's: a thread receives every notification as it arrives and
    records it with its arrival time (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="pn", dir="/tmp")  # AF_UNIX paths are limited to 107 bytes
        self.path = str(Path(self.dir) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self._lock:
                self.got.append((time.monotonic(), fields))

    def poll(self) -> list[tuple[float, dict[str, str]]]:
        """Every notification so far, oldest first."""
        with self._lock:
            return list(self.got)

    def times(self, key: str) -> list[float]:
        return [t for t, f in self.poll() if key in f]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)
