"""The embedded runtime keeps other local users out, and loosens nobody's permissions to run.

Issue 17, defect 1: the embedded PostgreSQL trusted every local user (``pg_hba`` ``trust``, socket 0777), its
files were world-readable, and ``pulse up`` as root added o+x to every parent of the home (a 0700 directory
became 0711) so that the unprivileged server user could reach its data.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pulse.runtime import Runtime, resolve_endpoints
from pulse.runtime.postgres import read_password
from pulse.settings import Settings
from tests.conftest import REPO, make_settings


@pytest.fixture(scope="module")
def private_runtime() -> Iterator[tuple[Path, Settings, dict]]:
    """A runtime whose home sits in a 0700 directory, as a clone in /root does."""
    outer = Path(tempfile.mkdtemp(prefix="pulse-private-"))
    outer.chmod(0o700)
    clone = outer / "clone"
    clone.mkdir(mode=0o700)
    settings = make_settings(clone / ".pulse")
    rt = Runtime(settings)
    st = rt.up()
    try:
        assert st.running, st.as_dict()
        yield outer, settings, st.as_dict()
    finally:
        rt.down(purge=True)
        shutil.rmtree(outer, ignore_errors=True)


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_no_parent_directory_is_loosened(private_runtime: tuple[Path, Settings, dict]) -> None:
    outer, settings, _ = private_runtime
    assert mode(outer) == 0o700 and mode(outer / "clone") == 0o700
    with psycopg.connect(resolve_endpoints(settings).database_url) as conn:  # and the database works from there
        assert conn.execute("SELECT current_database()").fetchone() == ("pulse",)


def test_runtime_files_are_owner_only(private_runtime: tuple[Path, Settings, dict]) -> None:
    _, settings, st = private_runtime
    home = settings.home
    pg = st["postgres"]
    assert mode(home) == 0o700
    assert mode(home / "runtime.json") == 0o600
    assert mode(pg["password_file"]) == 0o600 and Path(pg["password_file"]).is_relative_to(home)
    assert mode(pg["socket_dir"]) == 0o700 and mode(pg["data_dir"]) == 0o700
    assert mode(os.path.realpath(pg["log"])) == 0o600
    exposed = [
        f"{p} {oct(mode(p))}"
        for root, dirs, files in os.walk(home)
        for p in (os.path.join(root, n) for n in dirs + files)
        if not os.path.islink(p) and mode(p) & 0o077
    ]
    assert not exposed, exposed  # logs, runtime.json, broker data: nothing readable by group or others


def test_the_password_is_in_no_state_file_or_output(private_runtime: tuple[Path, Settings, dict]) -> None:
    _, settings, st = private_runtime
    password = read_password(st["postgres"]["password_file"])
    assert len(password) >= 32
    assert password in resolve_endpoints(settings).database_url  # every service gets it through the endpoints
    assert password not in (settings.home / "runtime.json").read_text()
    res = subprocess.run(
        [sys.executable, "-m", "cli", "--home", str(settings.home), "up", "--status", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["postgres"]["url"].startswith("postgresql://postgres@")
    assert password not in res.stdout + res.stderr
    for log in (settings.home / "logs").iterdir():
        assert password not in Path(os.path.realpath(log)).read_text(errors="replace"), log


@pytest.fixture
def other_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates a second local user with useradd to probe as")
    name = f"pulse-probe-{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


def as_user(user: str, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    pw = pwd.getpwnam(user)
    return subprocess.run(
        argv,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": "/", **env},
    )


def test_another_local_user_cannot_log_in_or_reach_the_socket(
    private_runtime: tuple[Path, Settings, dict], other_user: str
) -> None:
    _, settings, st = private_runtime
    pg = st["postgres"]
    psql = str(Path(pg["bin_dir"]) / "psql")  # the server's own binaries are reachable by design
    port = str(settings.runtime.postgres_port)
    query = ["-U", "postgres", "-d", "postgres", "-w", "-Atc", "SELECT 1"]
    tcp = as_user(other_user, [psql, "-h", "127.0.0.1", "-p", port, *query])
    assert tcp.returncode != 0 and "1" not in tcp.stdout.split()
    assert "password" in tcp.stderr, tcp.stderr  # refused for want of the password, not for a network reason
    wrong = as_user(other_user, [psql, "-h", "127.0.0.1", "-p", port, *query], PGPASSWORD="guess")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr
    sock = as_user(other_user, [psql, "-h", pg["socket_dir"], "-p", port, *query])
    assert sock.returncode != 0 and "Permission denied" in sock.stderr, sock.stderr
    for secret in (pg["password_file"], str(settings.home / "runtime.json")):
        read = as_user(other_user, ["/bin/cat", secret])
        assert read.returncode != 0 and "Permission denied" in read.stderr, read.stderr
    # the owner still gets in, over TCP and over the socket, with the password from the 0600 file
    pw = read_password(pg["password_file"])
    for host in ("127.0.0.1", pg["socket_dir"]):
        with psycopg.connect(host=host, port=int(port), user="postgres", password=pw, dbname="pulse") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
