"""Running `pulse web` from the tests: a real gateway process on a free port, stopped by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pulse.runtime.procs import pid_alive
from pulse.settings import Settings
from tests.procs import pulse_cmd

TOKEN = "test-console-token-0123456789"


@dataclass
class Gateway:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[str]
    token: str

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/ws"

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:  # fmt: skip
        """(status, decoded JSON body) of one HTTP request."""
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/api/gateway", token=self.token)[1]


class Checked:
    """A gateway whose every answer is validated against its own /api/openapi.json (openapi-core)."""

    def __init__(self, gw: Gateway) -> None:
        from openapi_core import OpenAPI

        self.gw = gw
        status, spec = gw.request("GET", "/api/openapi.json")
        assert status == 200
        self.api = OpenAPI.from_dict(spec)  # also validates the document itself
        self.checked = 0

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        from openapi_core.testing import MockRequest, MockResponse

        status, doc = self.gw.request(method, path, body, **kw)
        parts = urllib.parse.urlsplit(path)
        req = MockRequest(self.gw.url, method.lower(), parts.path, args=dict(urllib.parse.parse_qsl(parts.query)))
        self.api.validate_response(req, MockResponse(json.dumps(doc).encode(), status_code=status))
        self.checked += 1
        return status, doc


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        LOG_TAIL.append(line)


LOG_TAIL: deque[str] = deque(maxlen=500)  # the last log lines of the gateways started by the tests


@contextmanager
def gateway(settings: Settings, *args: str, extra_env: dict[str, str] | None = None, **env: str) -> Iterator[Gateway]:
    """`pulse web --port 0 ARGS` with ``PULSE_WEB__*`` settings from ``env`` (and any other variables from
    ``extra_env``); yields once it listens."""
    token = env.pop("token", TOKEN)
    environ = {f"PULSE_WEB__{k.upper()}": v for k, v in env.items()} | (extra_env or {})
    if token:
        environ["PULSE_WEB__TOKEN"] = token
    proc = pulse_cmd(settings, "web", "--port", "0", *args, env=environ)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("console: "):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"pulse web did not start: {line!r} {err[-2000:]}")
        url = line.split(" ", 1)[1].strip().rstrip("/")
        # drain its log: a pipe nobody reads fills up (64 KiB, a few hundred access-log lines) and then blocks
        # the gateway's event loop on its next log write
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()
        yield Gateway(url.replace("0.0.0.0", "127.0.0.1"), proc, token)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        assert not pid_alive(proc.pid)
