"""Shared benchmark plumbing: a throwaway embedded runtime, timing and percentile maths, child processes, reporting.

Nothing here asserts on timings: benchmarks print figures and compare them with targets and with a baseline
measured in the same run; the test suite only checks the pure helpers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pulse.runtime import Endpoints, Runtime, attach_runtime, resolve_endpoints
from pulse.runtime.procs import free_port, terminate, wait_for_port
from pulse.settings import Settings

#: The repository root: child processes run ``python -m bench.…`` from here (``bench`` is not installed).
REPO = Path(__file__).resolve().parents[1]
#: A child prints its result as one line starting with this, then exits.
RESULT_PREFIX = "RESULT "
#: A long-running child (a venue) prints this once it listens, followed by a JSON object.
READY_PREFIX = "READY "


@contextlib.contextmanager
def bench_runtime(base: Settings) -> Iterator[tuple[Settings, Endpoints]]:
    """A fresh broker + database on free ports in a temp dir (never the user's `pulse up` runtime)."""
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        s = base.with_overrides(
            runtime={
                "home": str(Path(tmp) / "home"),
                "broker_port": free_port(),
                "broker_metrics_port": free_port(),
                "broker_admin_port": free_port(),
                "postgres_port": free_port(),
            },
            pulsar={"url": "", "admin_url": ""},
            database={"url": ""},
        )
        rt = Runtime(s)
        st = rt.up(progress=lambda m: print(m, file=sys.stderr))
        try:
            if st.broker and st.broker.get("kind") == "apache":
                from control_plane.provision import provision_base_sync

                s = attach_runtime(s)  # pulsar.url/admin_url: every child sees the real broker, as in production
                provision_base_sync(s)
            yield s, resolve_endpoints(s)
        finally:
            rt.down()


def broker_label(settings: Settings, ep: Endpoints) -> str:
    """``pulsar-lite`` or ``Apache Pulsar <version>`` (asked of the admin API)."""
    if ep.broker_kind != "apache":
        return "pulsar-lite"
    from pulse.runtime.apache import broker_version

    return f"Apache Pulsar {broker_version(ep.admin_url, settings.pulsar_token()) or '(version unknown)'}"


def broker_footprint(settings: Settings) -> dict[str, float]:
    """The embedded broker's resident memory (MB) and CPU time so far (s): what it costs beside everything else."""
    import psutil

    pid = broker_pid(settings)
    if pid is None:
        return {}
    try:
        p = psutil.Process(pid)
        cpu = p.cpu_times()
        return {"rss_mb": round(p.memory_info().rss / 2**20, 1), "cpu_s": round(cpu.user + cpu.system, 1)}
    except psutil.Error:
        return {}


def broker_pid(settings: Settings) -> int | None:
    """The embedded broker's pid (to sample its CPU), if the runtime under ``settings.home`` runs one."""
    st = Runtime(settings).status()
    return int(st.broker["pid"]) if st.broker_running and st.broker else None


# -- numbers -------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank on the sorted values; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def latency_summary(latencies_ns: Sequence[int]) -> dict[str, float]:
    """Count, p50, p99 and max of latencies given in ns, reported in milliseconds."""
    ordered = sorted(latencies_ns)
    return {
        "count": len(ordered),
        "p50_ms": percentile(ordered, 50) / 1e6,
        "p99_ms": percentile(ordered, 99) / 1e6,
        "max_ms": (ordered[-1] / 1e6) if ordered else float("nan"),
    }


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``; NaN when either is missing or the baseline is not positive."""
    if not baseline or baseline <= 0 or math.isnan(baseline) or math.isnan(value):
        return float("nan")
    return value / baseline


def fmt_rate(per_s: float) -> str:
    """``31234.5`` → ``"31,235"``; ``1_234_567`` → ``"1.23M"`` (no unit, the caller adds it)."""
    if math.isnan(per_s):
        return "n/a"
    if per_s >= 1_000_000:
        return f"{per_s / 1_000_000:.2f}M"
    return f"{per_s:,.0f}"


def fmt_num(x: float) -> str:
    """``52340.7`` → ``"52,341"``, ``9.876`` → ``"9.88"``, NaN → ``"n/a"``."""
    if math.isnan(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def fmt_runs(values: Sequence[float]) -> str:
    """Each repetition, short: ``"30.1k 31.2k 33.0k"``."""
    return " ".join(f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}" for v in values)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.t0


# -- processes -----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process (all its threads) has used; NaN if it cannot be read (not Linux)."""
    if pid is None:
        return float("nan")
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: fields after it start at the last ')'.
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return float("nan")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tail(path: Path, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


def run_child(module: str, config: dict[str, Any], *, log: Path, timeout: float) -> dict[str, Any]:
    """Run ``python -m module`` with ``config`` as JSON on stdin; return the JSON of its ``RESULT`` line.

    The child's stderr (logs) goes to ``log``; on failure the error names the log and quotes its end.
    """
    with open(log, "ab") as err:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", module],
                input=json.dumps(config).encode(),
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=REPO,
                env=child_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{module} did not finish within {timeout:.0f}s; log {log}:\n{_tail(log)}") from exc
    for line in reversed(proc.stdout.decode(errors="replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"{module} exited {proc.returncode} without a result; log {log}:\n{_tail(log)}")


def emit_result(doc: dict[str, Any]) -> None:
    """What a child calls last: one ``RESULT {json}`` line on stdout."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(doc) + "\n")
    sys.stdout.flush()


class Child:
    """A long-running child (a venue): started with ``python -m module args…``, ready once it prints ``READY``
    (its JSON is :attr:`info`) or, with ``port``, once something listens there.

    Use as a context manager; it is stopped by its pid (SIGTERM, then SIGKILL) on exit.
    """

    def __init__(
        self,
        module: str,
        args: Sequence[str],
        *,
        log: Path,
        ready_timeout: float = 120.0,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.module = module
        self.log = log
        self._err: IO[bytes] = open(log, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=child_env() | (env or {}),
        )
        if port is None:
            self.info: dict[str, Any] = self._wait_ready(ready_timeout)
        elif wait_for_port("127.0.0.1", port, ready_timeout, pid=self.proc.pid):
            self.info = {"port": port}
        else:
            self.stop()
            raise RuntimeError(
                f"{module} did not listen on {port} within {ready_timeout:.0f}s; log {log}:\n{_tail(log)}"
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        found: list[str] = []
        stdout = self.proc.stdout
        assert stdout is not None

        def read() -> None:
            for raw in stdout:
                line = raw.decode(errors="replace")
                if line.startswith(READY_PREFIX):
                    found.append(line[len(READY_PREFIX) :])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            self.stop()
            raise RuntimeError(
                f"{self.module} did not get ready within {timeout:.0f}s; log {self.log}:\n{_tail(self.log)}"
            )
        return json.loads(found[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc.pid, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- reporting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    op: Literal[">=", "<"]
    threshold: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        if math.isnan(self.value):
            return False
        return self.value >= self.threshold if self.op == ">=" else self.value < self.threshold

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        target = f"{self.op} {fmt_num(self.threshold)}{self.unit}"
        return f"{verdict}  {self.name}: {fmt_num(self.value)}{self.unit} (target {target})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _json_number(self.value),
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "pass": self.passed,
        }


def _json_number(v: Any) -> Any:
    return None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v


def _clean(doc: Any) -> Any:
    """NaN/inf → null so the document is valid JSON."""
    if isinstance(doc, dict):
        return {k: _clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_clean(v) for v in doc]
    return _json_number(doc)


@dataclass
class Report:
    """Collects figures (printed one line each as they come) and targets; :meth:`document` is the JSON."""

    results: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stream: IO[str] | None = None  # default: stdout

    def line(self, text: str) -> None:
        """Print a line that is not a figure of its own (detail under the previous one)."""
        self.lines.append(text)
        print(text, file=self.stream or sys.stdout, flush=True)

    def add(self, key: str, value: Any, line: str) -> None:
        self.results[key] = value
        self.line(line)

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.line(f"  note: {line}")

    def section(self, title: str) -> None:
        self.line(f"\n== {title}")

    def target(self, name: str, value: float, op: Literal[">=", "<"], threshold: float, unit: str = "") -> Target:
        t = Target(name, value, op, threshold, unit)
        self.targets.append(t)
        self.line(f"  {t.describe()}")
        return t

    def summary(self) -> None:
        self.line("\n== targets")
        for t in self.targets:
            self.line(f"  {t.describe()}")

    def document(self, meta: dict[str, Any]) -> dict[str, Any]:
        return _clean(
            {
                "meta": meta,
                "figures": self.results,
                "targets": [t.as_dict() for t in self.targets],
                "all_targets_pass": all(t.passed for t in self.targets),
                "notes": self.notes,
            }
        )
