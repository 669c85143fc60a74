"""systemd's notification protocol (``sd_notify(3)``), written against the documented datagram protocol.

A service started with ``Type=notify`` finds ``$NOTIFY_SOCKET``: a filesystem path, or an abstract socket when
it starts with ``@``. Each notification is one ``AF_UNIX``/``SOCK_DGRAM`` datagram of newline-separated
``KEY=VALUE`` assignments (``READY=1``, ``WATCHDOG=1``, ``STATUS=…``, ``STOPPING=1``). With ``WatchdogSec=``
systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the pid meant to ping) and expects ``WATCHDOG=1`` at
least that often; the documented advice is to ping at half the interval. Without ``$NOTIFY_SOCKET`` every call
is a no-op, so services run the same outside systemd.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from pulse.log import get_logger

log = get_logger(__name__)


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET`` (taken from ``environ`` at construction)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram (``notify(READY=1, STATUS="…")``); False when not under systemd or the send failed
        (a supervisor that went away must not stop the service, so failures are logged, never raised)."""
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(f"{k}={_one_line(str(v))}" for k, v in fields.items())
        try:
            self._sock.sendto(text.encode(), self.address)
            return True
        except OSError as exc:
            log.warning("sd_notify failed", socket=str(self.address), error=str(exc))
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def stopping(self, status: str = "") -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):  # abstract namespace: a leading NUL byte
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET is neither a path nor an abstract socket; not notifying", socket=value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, when the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2e6


def _one_line(text: str) -> str:
    return text.replace("\n", " ")[:400]
