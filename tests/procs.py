"""Running `pulse` in subprocesses from the tests: start, wait, stop by pid, and a condition poller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pulse.runtime.procs import pid_alive
from pulse.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def _argv(settings: Settings, args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "cli", "--home", str(settings.home), *args]


def pulse_cmd(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`pulse --home <settings.home> ARGS` started in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        _argv(settings, args),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def pulse(
    settings: Settings, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`pulse --home <settings.home> ARGS` run to completion."""
    return subprocess.run(
        _argv(settings, args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@contextmanager
def process(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Kill ``proc`` on the way out if the test did not stop it, and check it is gone."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert not pid_alive(proc.pid)


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    """SIGTERM by pid, wait, return (exit code, stdout, stderr)."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 40.0) -> Any:
    """Poll ``pred`` every 0.1 s until it returns something true (returned), or fail after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
