"""Tell the supervisor the truth: the metrics server and systemd's notifications, on one set of checks.

A :class:`Supervisor` runs beside a service (its own daemon thread) and, four times a second, evaluates the
service's :class:`~pulse.metrics.Probe`:

- ``READY=1`` (with ``STATUS=``) the first time the service is ready: connected and subscribed;
- ``WATCHDOG=1`` every half ``WatchdogSec`` *only while* ready — a stuck loop (no heartbeat) or a stalled feed
  stops the pings, and systemd restarts the service once ``WatchdogSec`` passes;
- ``STATUS=`` whenever the one-line summary changes (at most every 2 s) or readiness flips;
- ``STOPPING=1`` as soon as the service's stop flag is set (SIGTERM), before it flushes.

Outside systemd (no ``$NOTIFY_SOCKET``) only the metrics server runs, and only with a port.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from pulse.log import get_logger
from pulse.metrics import Health, MetricsServer, Probe, evaluate
from pulse.sdnotify import Notifier
from pulse.settings import Settings
from pulse.status import PROCESS_META

log = get_logger(__name__)

_TICK_S = 0.25
_STATUS_EVERY_S = 2.0


class Supervisor:
    def __init__(
        self,
        probe: Probe,
        settings: Settings,
        *,
        port: int | None = None,
        stopping: Callable[[], bool] = lambda: False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``port``: the ``--metrics-port`` option (None: the settings' ``metrics.ports``/``metrics.port``;
        0: no server). ``stopping``: the service's stop flag. The metrics URL goes into this process's status
        files, so a local ``pulse status`` finds the endpoints."""
        self.probe = probe
        self.stall_after_s = settings.metrics.stall_after_s
        self.port = settings.metrics.port_for(probe.service) if port is None else port
        self.host = settings.metrics.host
        self.stopping = stopping
        self.notifier = Notifier(environ)
        self.server: MetricsServer | None = None
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._ready_sent = self._stopping_sent = False
        self._last_status = ("", 0.0, None)  # text, time sent, readiness
        self._next_ping = 0.0
        self.pings = 0

    def start(self) -> Supervisor:
        """Bind the metrics server (a taken port is a ConfigError naming it) and start the checks."""
        if self.port:
            self.server = MetricsServer(self.probe, self.host, self.port, stall_after_s=self.stall_after_s).start()
            PROCESS_META["metrics_url"] = self.server.url
        if self.server is not None or self.notifier.enabled:
            self._thread.start()
        return self

    def health(self) -> Health:
        return evaluate(self.probe, self.stall_after_s)

    def stop(self) -> None:
        """Say STOPPING=1 (if not said yet), end the checks and the server."""
        self._say_stopping()
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self.server is not None:
            self.server.stop()
        self.notifier.close()

    # -- the loop ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._halt.wait(_TICK_S):
            try:
                self._tick()
            except Exception as exc:  # never let a check kill the thread that keeps systemd informed
                log.warning("supervisor check failed", error=f"{type(exc).__name__}: {exc}")

    def _tick(self) -> None:
        if not self.notifier.enabled:
            return
        if self.stopping():
            self._say_stopping()
            return
        h = self.health()
        now = time.monotonic()
        if h.ready and not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(h.summary or "ready")
            self._last_status = (h.summary, now, True)
            log.info("ready", service=self.probe.service, summary=h.summary)
        text, sent_at, was_ready = self._last_status
        if self._ready_sent and (h.ready != was_ready or (h.summary != text and now - sent_at >= _STATUS_EVERY_S)):
            failing = ",".join(k for k, ok in h.checks.items() if not ok)
            line = h.summary if h.ready else f"NOT READY ({failing}) {h.summary}".strip()
            self.notifier.status(line)
            self._last_status = (h.summary, now, h.ready)
        wd = self.notifier.watchdog_s
        if wd and h.ready and now >= self._next_ping:
            self.notifier.watchdog()
            self.pings += 1
            self._next_ping = now + wd

    def _say_stopping(self) -> None:
        if not self._stopping_sent and self.notifier.enabled:
            self._stopping_sent = True
            self.notifier.stopping(f"stopping: {self.probe.summary()}")


@contextlib.contextmanager
def supervised(
    probe: Probe, settings: Settings, *, port: int | None, stopping: Callable[[], bool]
) -> Iterator[Supervisor]:
    """A started :class:`Supervisor` for the body (a service's run), stopped (STOPPING=1) after it."""
    sup = Supervisor(probe, settings, port=port, stopping=stopping).start()
    try:
        yield sup
    finally:
        sup.stop()
