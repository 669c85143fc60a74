"""Apache Pulsar standalone from Maven Central: resolve it once into a cache, start it, wait for readiness.

``pulse up --broker apache`` (or ``runtime.broker = "apache"``) runs the real broker instead of pulsar-lite:
``org.apache.pulsar.PulsarStandaloneStarter`` with RocksDB metadata and an in-process bookie, in its own JVM with
bounded memory. Nothing ships a ``conf/`` directory in the jars, so Pulse writes its own ``standalone.conf`` (the
committed ``pulsar/standalone.conf``, which ``docker-compose.yml`` mounts too, plus this run's ports) and
``log4j2.yaml``, with keys from Pulsar's ``conf/standalone.conf``. With ``runtime.apache_functions`` the functions
worker runs too (thread runtime, ``pulsar/functions_worker.yml``) with the ``jdbc-postgres`` Pulsar IO connector
that :mod:`pulse.runtime.connectors` builds from Maven Central jars.

Resolution: Maven (``mvn dependency:copy-dependencies``) fetches ``org.apache.pulsar:pulsar-broker`` and its
runtime tree into ``~/.cache/pulse/pulsar-<version>/lib`` once, through Maven Central only (Pulsar's POMs list
other repositories that these machines cannot reach). Readiness is the admin API answering
``GET /admin/v2/namespaces/public/default`` — the standalone creates that namespace last — not the port opening.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from pulse.errors import RuntimeStateError
from pulse.runtime.procs import free_port, port_free, require_port_free, terminate

DEFAULT_VERSION = "4.0.7"  # 4.0.x LTS; 4.0.8's jetcd-core-shaded is not served by Maven Central (404)
LOG4J_VERSION = "2.23.1"  # Pulsar 4.0's own; Maven's nearest-wins would otherwise mix 2.18 core with 2.23 bindings
MAIN_CLASS = "org.apache.pulsar.PulsarStandaloneStarter"
CENTRAL = "https://repo.maven.apache.org/maven2"
COMPLETE_MARK = ".resolved"
#: The committed broker and functions worker settings (docker-compose.yml mounts the same files)
CONF_DIR = Path(__file__).resolve().parents[2] / "pulsar"

# The JVM flags Pulsar's own bin/pulsar passes on Java 17 (module access for metrics and netty), plus ours.
ADD_OPENS = [
    "java.base/java.io",
    "java.base/java.util.zip",
    "java.base/sun.net",
    "java.base/jdk.internal.platform",
    "java.management/sun.management",
    "jdk.management/com.sun.management.internal",
]


@dataclass(frozen=True)
class ApacheBrokerInfo:
    pid: int
    url: str
    admin_url: str
    metrics_url: str
    log: str
    version: str
    kind: str = "apache"
    data_dir: str = ""
    started_s: float = 0.0  # seconds from the JVM's start to a ready admin API


def cache_root() -> Path:
    base = os.environ.get("PULSE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pulse"


def lib_dir(version: str) -> Path:
    return cache_root() / f"pulsar-{version}" / "lib"


def is_resolved(version: str) -> bool:
    return (lib_dir(version) / COMPLETE_MARK).exists()


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeStateError(
            f"--broker apache needs {what} (`{name}` is not on PATH); install it, e.g. "
            f"`apt-get install -y openjdk-17-jre-headless maven`, or use the default broker (runtime.broker = lite)"
        )
    return path


def _pom(version: str) -> str:
    log4j = "".join(
        f"<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>{a}</artifactId>"
        f"<version>{LOG4J_VERSION}</version></dependency>"
        for a in ("log4j-api", "log4j-core", "log4j-slf4j2-impl", "log4j-1.2-api")
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>dev.pulse</groupId><artifactId>pulsar-standalone-runtime</artifactId><version>1</version>"
        f"<dependencyManagement><dependencies>{log4j}</dependencies></dependencyManagement>"
        "<dependencies>"
        f"<dependency><groupId>org.apache.pulsar</groupId><artifactId>pulsar-broker</artifactId>"
        f"<version>{version}</version></dependency>"
        "<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId></dependency>"
        "<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>"
        "</dependency>"
        "</dependencies></project>\n"
    )


def _maven_settings() -> str:
    # Every repository a POM names goes to Maven Central: the others are unreachable from these machines.
    return (
        "<settings><mirrors><mirror><id>central-only</id><mirrorOf>*</mirrorOf>"
        f"<url>{CENTRAL}</url></mirror></mirrors></settings>\n"
    )


_MVN_FAILURE = re.compile(r"(Could not (?:resolve|find|transfer) [^\n]*|Failure to find [^\n]*|Unknown host [^\s]+)")


def resolve(version: str = DEFAULT_VERSION, *, progress: Callable[[str], None] | None = None) -> Path:
    """Download the broker's jars into the cache once; return the directory holding them.

    Raises :class:`RuntimeStateError` naming what to install (Java, Maven) or which artifact failed.
    """
    _require_tool("java", "Java 17+")
    target = lib_dir(version)
    if is_resolved(version):
        return target
    mvn = _require_tool("mvn", "Apache Maven")
    work = target.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_pom(version))
    (work / "settings.xml").write_text(_maven_settings())
    tmp = work / "lib.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-s",
        str(work / "settings.xml"),
        "-f",
        str(work / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    say = progress or (lambda _m: None)
    say(f"resolving Apache Pulsar {version} from Maven Central into {target} (once)")
    downloaded = 0
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail[-200:], line.rstrip()]
        if "Downloaded from" in line and ".jar " in line:  # "[INFO] Downloaded from central: …x.jar (…)"
            downloaded += 1
            if downloaded % 25 == 0:
                say(f"  {downloaded} jars downloaded")
    rc = proc.wait()
    if rc != 0:
        text = "\n".join(tail)
        found = _MVN_FAILURE.findall(text)
        detail = found[0] if found else (tail[-1] if tail else f"exit code {rc}")
        raise RuntimeStateError(
            f"cannot resolve org.apache.pulsar:pulsar-broker:{version} from Maven Central: {detail}"
        )
    jars = list(tmp.glob("*.jar"))
    if not any(j.name.startswith("pulsar-broker-") for j in jars):
        raise RuntimeStateError(f"Maven finished but pulsar-broker-{version}.jar is missing from {tmp}")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    (target / COMPLETE_MARK).write_text(f"{len(jars)} jars\n")
    say(f"resolved {len(jars)} jars")
    return target


def write_config(
    path: Path,
    *,
    host: str,
    port: int,
    admin_port: int,
    extra: list[str] | None = None,
    functions: bool = False,
    base: Path | None = None,
) -> None:
    """``standalone.conf``: the committed ``pulsar/standalone.conf`` (the file docker-compose.yml uses too), then
    this run's lines — loopback address and ports, the functions worker switch, ``runtime.apache_conf`` — which
    win over the base's (a later line replaces an earlier key when the broker loads the properties)."""
    src = base or CONF_DIR / "standalone.conf"
    try:
        text = src.read_text()
    except OSError as exc:
        raise RuntimeStateError(f"cannot read the broker settings {src}: {exc}") from exc
    lines = [
        "",
        "# -- this run: written by `pulse up --broker apache` (settings [runtime]) --",
        f"bindAddress={host}",
        f"advertisedAddress={host}",
        f"brokerServicePort={port}",
        f"webServicePort={admin_port}",
        f"functionsWorkerEnabled={'true' if functions else 'false'}",
        # package storage of the functions worker (FileSystemPackagesStorage), under the fresh data directory
        f"STORAGE_PATH={path.parent / 'data' / 'packages'}",
        *(extra or []),
    ]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")


def write_functions_worker(path: Path, *, connectors: Path, work: Path, base: Path | None = None) -> None:
    """``functions_worker.yml``: the committed ``pulsar/functions_worker.yml`` with its directories moved under
    ``work`` and ``connectorsDirectory`` at ``connectors`` (where the built connector archives are)."""
    src = base or CONF_DIR / "functions_worker.yml"
    try:
        doc = yaml.safe_load(src.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RuntimeStateError(f"cannot read the functions worker settings {src}: {exc}") from exc
    doc.update(
        connectorsDirectory=str(connectors),
        narExtractionDirectory=str(work / "nar"),
        downloadDirectory=str(work / "download"),
        functionsDirectory=str(work / "functions"),
    )
    header = f"# Written by `pulse up --broker apache` from {src.name}; see that file.\n"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: Console
      target: SYSTEM_OUT
      PatternLayout:
        Pattern: "%d{yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}{UTC} %-5level [%t] %logger{36} - %msg%n"
  Loggers:
    Logger:
      - name: org.eclipse.jetty.server.RequestLog
        level: warn
      - name: org.apache.bookkeeper
        level: warn
      - name: org.apache.pulsar.broker.loadbalance
        level: warn
    Root:
      level: info
      AppenderRef:
        - ref: Console
"""


def jvm_command(
    lib: Path,
    conf: Path,
    log4j: Path,
    *,
    heap_mb: int,
    bookie_port: int,
    data: Path,
    functions_worker: Path | None = None,
) -> list[str]:
    direct_mb = max(128, heap_mb // 2)
    return [
        _require_tool("java", "Java 17+"),
        "-Xms64m",
        f"-Xmx{heap_mb}m",
        f"-XX:MaxDirectMemorySize={direct_mb}m",
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:TieredStopAtLevel=1" if heap_mb < 384 else "-XX:+UseStringDeduplication",
        *[f"--add-opens={m}=ALL-UNNAMED" for m in ADD_OPENS],
        "-Dio.netty.recycler.maxCapacityPerThread=4096",
        "-Dpulsar.allocator.exit_on_oom=true",
        f"-Dlog4j.configurationFile={log4j}",
        "-cp",
        f"{lib}/*",
        MAIN_CLASS,
        "--config",
        str(conf),
        *(["--functions-worker-conf", str(functions_worker)] if functions_worker else ["--no-functions-worker"]),
        "--no-stream-storage",
        "--bookkeeper-port",
        str(bookie_port),
        "--metadata-dir",
        str(data / "metadata"),
        "--bookkeeper-dir",
        str(data / "bookkeeper"),
    ]


def _bookie_port(data: Path, host: str) -> int:
    """The in-process bookie's port: the one this data directory was written with, when it is free again (the
    ledgers name their bookie by host:port, so a restart on kept data must reuse it), else a new free one."""
    saved = data / "bookie-port"
    try:
        port = int(saved.read_text())
        if port_free(host, port):
            return port
    except (OSError, ValueError):
        pass
    port = free_port(host)
    saved.write_text(str(port))
    return port


def _get(url: str, token: str, timeout: float) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError):
        return 0, ""


def admin_ready(admin_url: str, token: str = "", timeout: float = 2.0) -> bool:
    """The standalone has created ``public/default`` (its last start-up step) and the admin API answers it."""
    return _get(f"{admin_url}/admin/v2/namespaces/public/default", token, timeout)[0] == 200


def start_apache(
    home: Path,
    *,
    host: str,
    port: int,
    admin_port: int,
    version: str = DEFAULT_VERSION,
    heap_mb: int = 512,
    extra_conf: list[str] | None = None,
    admin_token: str = "",
    functions: bool = False,
    fresh: bool = True,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> ApacheBrokerInfo:
    """Resolve (once), then start the standalone broker in its own session and wait until it is ready.

    ``functions`` runs the functions worker inside it (thread runtime) with the ``jdbc-postgres`` connector
    archive built from Maven Central (:mod:`pulse.runtime.connectors`); ready then also means the worker
    answers ``GET /admin/v2/worker/cluster``."""
    if functions:  # the worker's start-up (metadata topics, connector scan) took 60-140 s on a loaded 2-core machine
        timeout = max(timeout, 300.0)
    require_port_free("runtime.broker_port", host, port)
    require_port_free("runtime.broker_admin_port", host, admin_port)
    lib = resolve(version, progress=progress)
    bdir = home / "broker-apache"
    data = bdir / "data"
    if fresh:
        shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    conf = bdir / "standalone.conf"
    write_config(conf, host=host, port=port, admin_port=admin_port, extra=extra_conf, functions=functions)
    worker_conf: Path | None = None
    if functions:
        from pulse.runtime.connectors import build_jdbc_postgres

        nar = build_jdbc_postgres(lib, progress=progress)
        worker_conf = bdir / "functions_worker.yml"
        write_functions_worker(worker_conf, connectors=nar.parent, work=data / "functions-worker")
    log4j = bdir / "log4j2.yaml"
    log4j.write_text(LOG4J2)
    log_path = home / "logs" / "broker.log"
    cmd = jvm_command(
        lib, conf, log4j, heap_mb=heap_mb, bookie_port=_bookie_port(data, host), data=data, functions_worker=worker_conf
    )
    t0 = time.monotonic()
    with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=bdir,
            umask=0o077,  # its data and files: owner-only
            start_new_session=True,  # outlives `pulse up`; stopped by pid on `pulse down`
        )
    admin_url = f"http://{host}:{admin_port}"
    say = progress or (lambda _m: None)
    say(f"starting Apache Pulsar {version} (pid {proc.pid}); waiting for its admin API")
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if admin_ready(admin_url, admin_token) and (not functions or worker_ready(admin_url, admin_token)):
            return ApacheBrokerInfo(
                pid=proc.pid,
                url=f"pulsar://{host}:{port}",
                admin_url=admin_url,
                metrics_url=f"{admin_url}/metrics/",
                log=str(log_path),
                version=version,
                data_dir=str(data),
                started_s=round(time.monotonic() - t0, 2),
            )
        time.sleep(0.25)
    alive = proc.poll() is None
    terminate(proc.pid, timeout=15)
    tail = log_path.read_text(errors="replace")[-3000:]
    why = f"not ready after {timeout:.0f} s" if alive else f"exited with code {proc.returncode}"
    raise RuntimeStateError(f"Apache Pulsar {version} {why} (log {log_path}); last log lines:\n{tail}")


def worker_ready(admin_url: str, token: str = "", timeout: float = 2.0) -> bool:
    """The functions worker has joined its cluster (it answers 503 until it is done initializing)."""
    return _get(f"{admin_url}/admin/v2/worker/cluster", token, timeout)[0] == 200


def broker_version(admin_url: str, token: str = "") -> str:
    status, body = _get(f"{admin_url}/admin/v2/brokers/version", token, 3.0)
    return body.strip().strip('"') if status == 200 else ""


def main() -> None:  # pragma: no cover - `python -m pulse.runtime.apache [version]`: resolve only (CI warm-up)
    version = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_VERSION
    try:
        print(resolve(version, progress=print))
    except RuntimeStateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(69)


if __name__ == "__main__":  # pragma: no cover
    main()
