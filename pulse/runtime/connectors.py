"""Pulsar IO connector archives (NAR) built here from Maven Central jars, for the Apache runtime's functions worker.

Apache Pulsar publishes its connectors as ``.nar`` files on its download site only: Maven Central serves
``org.apache.pulsar:pulsar-io-jdbc-postgres`` as a plain jar (the ``.nar`` answers 404 for every 4.0.x). A NAR is
a zip the worker unpacks (``NarUnpacker``) and loads with a ``NarClassLoader`` whose class path is the unpacked
root plus every ``META-INF/bundled-dependencies/*.jar``; the worker finds a connector by the
``META-INF/services/pulsar-io.yaml`` at the root (``name``, ``sinkClass``, ``sinkConfigClass``) of each ``*.nar``
in ``connectorsDirectory``, and ``builtin://<name>`` then names it. So :func:`build_jdbc_postgres` resolves the
connector jar and its runtime dependencies with Maven into the Pulse cache and zips them into that layout with
our own ``pulsar-io.yaml``.

The NarClassLoader delegates to its parent first (it is a plain ``URLClassLoader``), and on the thread runtime
the parent is the broker's class path: a bundled copy of a jar the broker already has would never be loaded, so
only the jars the broker lacks are bundled (the connector, ``pulsar-io-common`` and the PostgreSQL driver).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from pulse.errors import RuntimeStateError
from pulse.runtime.apache import _MVN_FAILURE, _maven_settings, _require_tool, cache_root

REPO = Path(__file__).resolve().parents[2]
#: The committed build inputs, shared with docker-compose.yml's ``connectors`` service: the jars (a POM) and the
#: connector definition. The POM pins pulsar-io-jdbc-* 4.0.6: Central serves 4.0.6 and 4.0.8, not 4.0.7.
JDBC_POSTGRES_DIR = REPO / "pulsar" / "connectors" / "jdbc-postgres"
JDBC_POSTGRES = "jdbc-postgres"

_ARTIFACT = re.compile(r"^(?P<artifact>.+?)-\d[^/]*\.jar$")
_VERSION = re.compile(r"<connector\.version>([^<]+)</connector\.version>")


def connector_version(src: Path = JDBC_POSTGRES_DIR) -> str:
    m = _VERSION.search((src / "pom.xml").read_text())
    if m is None:
        raise RuntimeStateError(f"{src / 'pom.xml'} names no <connector.version>")
    return m.group(1)


def connectors_dir() -> Path:
    """Where the built archives live (the functions worker's ``connectorsDirectory``)."""
    return cache_root() / "connectors"


def jdbc_postgres_nar(version: str | None = None) -> Path:
    return connectors_dir() / f"pulsar-io-{JDBC_POSTGRES}-{version or connector_version()}.nar"


def artifact_id(jar_name: str) -> str:
    """``postgresql-42.5.5.jar`` → ``postgresql``; a name without a version is returned without ``.jar``."""
    m = _ARTIFACT.match(jar_name)
    return m.group("artifact") if m else jar_name.removesuffix(".jar")


def write_nar(target: Path, jars: list[Path], service_yaml: str, *, provided: set[str] = frozenset()) -> list[str]:
    """Zip ``jars`` (minus artifacts in ``provided``) into a NAR at ``target``; return the bundled jar names."""
    bundled = sorted(j.name for j in jars if artifact_id(j.name) not in provided)
    by_name = {j.name: j for j in jars}
    tmp = target.with_suffix(".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:  # jars are compressed already
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: pulse\n")
        z.writestr("META-INF/services/pulsar-io.yaml", service_yaml)
        for name in bundled:
            z.write(by_name[name], f"META-INF/bundled-dependencies/{name}")
    tmp.replace(target)
    return bundled


def build_jdbc_postgres(
    broker_lib: Path,
    *,
    src: Path = JDBC_POSTGRES_DIR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The ``jdbc-postgres`` connector archive, built once into :func:`connectors_dir`; its path.

    The jars are those of ``src/pom.xml``, the definition ``src/pulsar-io.yaml``. ``broker_lib`` is the resolved
    broker class path: a jar it already holds is not bundled. Raises :class:`RuntimeStateError` naming the
    artifact Maven could not resolve.
    """
    version = connector_version(src)
    nar = jdbc_postgres_nar(version)
    if nar.exists():
        return nar
    mvn = _require_tool("mvn", "Apache Maven")
    work = cache_root() / f"pulsar-io-jdbc-postgres-{version}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "settings.xml").write_text(_maven_settings())
    lib = work / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    say = progress or (lambda _m: None)
    say(f"building the {JDBC_POSTGRES} connector archive from Maven Central (pulsar-io-jdbc-postgres {version})")
    cmd = [mvn, "-B", "-q", "-s", str(work / "settings.xml"), "-f", str(src / "pom.xml"),
           "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={lib}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    if proc.returncode != 0:
        found = _MVN_FAILURE.findall(proc.stdout + proc.stderr)
        detail = found[0] if found else f"exit code {proc.returncode}"
        raise RuntimeStateError(
            f"cannot resolve org.apache.pulsar:pulsar-io-jdbc-postgres:{version} from Maven Central: {detail}"
        )
    jars = sorted(lib.glob("*.jar"))
    if not any(j.name == f"pulsar-io-jdbc-postgres-{version}.jar" for j in jars):
        raise RuntimeStateError(f"Maven finished but pulsar-io-jdbc-postgres-{version}.jar is missing from {lib}")
    provided = {artifact_id(j.name) for j in broker_lib.glob("*.jar")}
    nar.parent.mkdir(parents=True, exist_ok=True)
    bundled = write_nar(nar, jars, (src / "pulsar-io.yaml").read_text(), provided=provided)
    say(f"built {nar.name}: {', '.join(bundled)}")
    return nar
