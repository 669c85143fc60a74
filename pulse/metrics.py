"""Prometheus metrics and health endpoints for every long-running service.

A service describes itself with a :class:`Probe`: how to read its *existing* counters as metric families
(read at scrape time, so the hot paths pay nothing), its readiness conditions (connected, subscribed, feed
moving, …) and a one-line summary. :class:`MetricsServer` serves, on one port:

- ``/metrics`` — Prometheus text (``pulse_*`` families, process metrics as ``pulse_process_*``);
- ``/healthz`` — 200 while the service's loop is alive (its heartbeat is recent), else 503;
- ``/readyz`` — 200 while alive *and* every readiness condition holds, else 503; the JSON body lists them.

Everything served is read-only, so no authentication is needed; bind beyond loopback only where the scrape
network is trusted (``metrics.host``). :mod:`pulse.supervise` adds systemd's notifications on the same checks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pulse.errors import ConfigError
from pulse.log import get_logger

log = get_logger(__name__)

Checks = Callable[[], dict[str, bool]]


@dataclass
class Probe:
    """What a service tells the metrics server and the supervisor about itself."""

    service: str  # the instance name, e.g. ingest-kraken (the ``service`` label)
    collect: Callable[[], Iterable[Metric]]  # its metric families, built from its own counters
    checks: Checks = field(default=lambda: {})  # readiness conditions beyond "the loop is alive"
    beat: Callable[[], float] | None = None  # time.monotonic() of the loop's latest heartbeat
    summary: Callable[[], str] = field(default=lambda: "")  # one line (systemd STATUS=, /readyz)


@dataclass
class Health:
    alive: bool
    ready: bool
    checks: dict[str, bool]
    heartbeat_age_s: float | None
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "ready": self.ready,
            "checks": self.checks,
            "heartbeat_age_s": None if self.heartbeat_age_s is None else round(self.heartbeat_age_s, 3),
            "summary": self.summary,
        }


def evaluate(probe: Probe, stall_after_s: float) -> Health:
    """Alive: the heartbeat is younger than ``stall_after_s``. Ready: alive and every check holds."""
    age = None if probe.beat is None else max(0.0, time.monotonic() - probe.beat())
    alive = age is None or age < stall_after_s
    try:
        checks = {k: bool(v) for k, v in probe.checks().items()}
        summary = probe.summary()
    except Exception as exc:  # a probe reads another thread's state: a failure is "not ready", not a crash
        checks, summary = {"probe": False}, f"probe failed: {type(exc).__name__}: {exc}"
    checks = {"loop_alive": alive, **checks}
    return Health(alive, all(checks.values()), checks, age, summary)


class Progress:
    """How long a counter has not moved: ``idle_s()`` reads it and returns the seconds since it last changed
    (as seen by the calls, which the supervisor makes four times a second)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read
        self._last = read()
        self._since = time.monotonic()
        self.moved = False  # it changed at least once since this object was made

    def idle_s(self) -> float:
        now, value = time.monotonic(), self.read()
        if value != self._last:
            self._last, self._since, self.moved = value, now, True
        return now - self._since


def erroring(errors: Progress, successes: Progress, window_s: float) -> bool:
    """A dependency is failing: ``errors`` moved within ``window_s`` and ``successes`` has not moved since."""
    e = errors.idle_s()
    return errors.moved and e < window_s and successes.idle_s() > e


# -- building families from counters ----------------------------------------------------------------------
def counter(name: str, doc: str, samples: Mapping[tuple[str, ...], float], labels: tuple[str, ...]) -> Metric:
    """A counter family (``name`` without ``_total``) with one sample per label-value tuple."""
    fam = CounterMetricFamily(name, doc, labels=list(labels))
    for values, v in samples.items():
        fam.add_metric(list(values), float(v))
    return fam


def gauge(name: str, doc: str, samples: Mapping[tuple[str, ...], float], labels: tuple[str, ...]) -> Metric:
    fam = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, v in samples.items():
        fam.add_metric(list(values), float(v))
    return fam


def service_counters(service: str, specs: Iterable[tuple[str, str, str]], snap: Mapping[str, Any]) -> list[Metric]:
    """Counters labelled only by ``service``: ``(snapshot key, metric name, help)`` each."""
    return [counter(name, doc, {(service,): snap.get(key, 0) or 0}, ("service",)) for key, name, doc in specs]


# -- the server -------------------------------------------------------------------------------------------
class _Collector:
    def __init__(self, probe: Probe, stall_after_s: float) -> None:
        self.probe = probe
        self.stall_after_s = stall_after_s

    def collect(self) -> Iterable[Metric]:
        h = evaluate(self.probe, self.stall_after_s)
        s = (self.probe.service,)
        yield gauge("pulse_ready", "1 while /readyz answers 200 (alive, connected, subscribed, not stalled)",
                    {s: h.ready}, ("service",))  # fmt: skip
        if h.heartbeat_age_s is not None:
            yield gauge("pulse_heartbeat_age_seconds", "Seconds since the service loop's last heartbeat",
                        {s: h.heartbeat_age_s}, ("service",))  # fmt: skip
        yield from self.probe.collect()


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` for one probe, on a daemon thread. ``port`` 0 binds any free
    port (the settings' 0 means "no server": :mod:`pulse.supervise` does not build one then)."""

    def __init__(self, probe: Probe, host: str, port: int, *, stall_after_s: float = 30.0) -> None:
        self.probe = probe
        self.stall_after_s = stall_after_s
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="pulse", registry=self.registry)
        self.registry.register(_Collector(probe, stall_after_s))  # type: ignore[arg-type]
        handler = _handler(self)
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"metrics port {port} on {host}: {exc.strerror or exc}") from exc
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def url(self) -> str:
        host = self.host if ":" not in str(self.host) else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics server listening", service=self.probe.service, url=self.url)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which only a started server runs
            self._httpd.shutdown()
        self._httpd.server_close()

    def health(self) -> Health:
        return evaluate(self.probe, self.stall_after_s)


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
            elif path in ("/healthz", "/readyz"):
                h = server.health()
                ok = h.alive if path == "/healthz" else h.ready
                body = {"service": server.probe.service, **h.as_dict()}
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz or /readyz\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    """``python -m pulse.metrics http://127.0.0.1:9101/readyz``: exit 0 when it answers 200, else 1 — a
    container healthcheck that needs no curl in the image."""
    import sys
    import urllib.error
    import urllib.request

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].startswith(("http://", "https://")):
        print("usage: python -m pulse.metrics http://HOST:PORT/readyz", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(args[0], timeout=5) as resp:  # http(s) only, checked above
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{args[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
