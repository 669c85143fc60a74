"""The systemd units `pulse systemd render` writes: the committed ones are current, each carries what the
supervisor needs (notify + watchdog, no restart on a config error, credentials to *_file keys), and systemd's
own tools accept them: `systemd-analyze verify` and `systemd-analyze security` at exposure 3.0 or better."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.systemd import DAEMONS, Layout, render_all
from pulse.settings import load_settings
from tests.procs import REPO

ANALYZE = shutil.which("systemd-analyze")


def _offline_security_supported() -> bool:
    if not ANALYZE:
        return False
    out = subprocess.run([ANALYZE, "security", "--help"], capture_output=True, text=True).stdout
    return "--offline" in out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def keys(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out.setdefault(k, []).append(v)
    return out


def test_committed_units_are_what_render_writes() -> None:
    committed = REPO / "deploy" / "systemd"
    files = render_all(Layout())
    assert sorted(p.name for p in committed.iterdir()) == sorted(files)
    for rel, text in files.items():
        assert (committed / rel).read_text() == text, f"{rel} drifted: run `pulse systemd render`"


def test_every_daemon_has_a_unit_with_the_supervision_contract() -> None:
    files = render_all(Layout(credentials=("database-url", "pulsar-token", "webhook-secret")))
    names = {d.unit for d in DAEMONS}
    assert {"pulse-ingest@.service", "pulse-sink.service", "pulse-matching.service", "pulse-alerting.service",
            "pulse-monitor.service", "pulse-gateway.service"} == names  # fmt: skip
    for d in DAEMONS:
        k = keys(files[d.unit])
        assert k["RestartPreventExitStatus"] == ["2"] and k["Restart"] == ["always"]
        assert k["StateDirectory"] == ["pulse"] and k["User"] == ["pulse"]
        assert k["ExecStart"][0].startswith("/opt/pulse/.venv/bin/pulse --config /etc/pulse/pulse.toml")
        assert k["Type"] == ["notify"] and int(k["WatchdogSec"][0]) > 0 and k["NotifyAccess"] == ["main"]
        # secrets: LoadCredential= files, each mapped to its *_file setting through %d ($CREDENTIALS_DIRECTORY)
        creds = dict(c.split(":", 1) for c in k["LoadCredential"])
        assert creds["database-url"] == "/etc/pulse/credentials/database-url"
        assert "PULSE_DATABASE__URL_FILE=%d/database-url" in k["Environment"]
        assert "PULSE_PULSAR__AUTH_TOKEN_FILE=%d/pulsar-token" in k["Environment"]
    assert (
        "PULSE_ALERTING__WEBHOOK_SECRET_FILE=%d/webhook-secret" in keys(files["pulse-alerting.service"])["Environment"]
    )
    assert "webhook-secret" not in files["pulse-sink.service"]
    assert re.search(r"^u pulse - .* /var/lib/pulse", files["pulse.sysusers.conf"], re.M)


def test_the_credential_mapping_reaches_the_settings(tmp_path: Path) -> None:
    """What %d expands to at run time: settings read each secret from $CREDENTIALS_DIRECTORY/<name>."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "database-url").write_text("postgresql://pulse:s3cret@db:5432/pulse\n")
    (creds / "oanda-token").write_text("tok-123\n")
    files = render_all(Layout(credentials=("database-url", "oanda-token")), ("oanda",))
    env = {}
    for text in (files["pulse-ingest@.service"], files["pulse-ingest@oanda.service.d/credentials.conf"]):
        for assignment in keys(text).get("Environment", []):
            k, _, v = assignment.partition("=")
            env[k] = v.replace("%d", str(creds))
    s = load_settings(environ=env)
    assert s.database_url() == "postgresql://pulse:s3cret@db:5432/pulse"
    assert s.venue_secret("oanda", "token") == "tok-123"
    assert "oanda-token" not in files["pulse-ingest@.service"]  # only the oanda instance gets the OANDA token


def test_render_refuses_bad_input_by_name(tmp_path: Path) -> None:
    res = cli("systemd", "render", "--out", str(tmp_path), "--venue", "nosuch")
    assert res.returncode == 2 and "--venue" in res.stderr and "nosuch" in res.stderr and "kraken" in res.stderr
    res = cli("systemd", "render", "--out", str(tmp_path), "--prefix", "opt/pulse")
    assert res.returncode == 2 and "--prefix" in res.stderr
    res = cli("systemd", "render", "--out", str(tmp_path), "--credentials", "password")
    assert res.returncode == 2 and "--credentials" in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_install_writes_units_and_sysusers(tmp_path: Path) -> None:
    res = cli("systemd", "install", "--unit-dir", str(tmp_path / "units"), "--sysusers-dir", str(tmp_path / "sysusers"),
              "--venue", "kraken")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "units" / "pulse-sink.service").exists() and (tmp_path / "sysusers" / "pulse.conf").exists()
    assert "pulse-ingest@kraken" in res.stdout


@pytest.mark.skipif(not ANALYZE, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    # the ExecStart binary must exist for verify: point the prefix at this checkout's environment (make setup)
    if not (REPO / ".venv" / "bin" / "pulse").exists():
        pytest.skip("no .venv/bin/pulse in this checkout (run make setup)")
    files = render_all(Layout(prefix=str(REPO), credentials=("database-url", "pulsar-token")))
    units = []
    for rel, text in files.items():
        if rel.endswith(".service"):
            name = rel.replace("@.service", "@kraken.service")  # verify a template through an instance
            (tmp_path / name).write_text(text)
            units.append(str(tmp_path / name))
    res = subprocess.run([ANALYZE, "verify", *units], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in res.stderr.splitlines() if str(tmp_path) in ln or "pulse-" in ln]
    assert res.returncode == 0 and not problems, res.stderr


@pytest.mark.skipif(not _offline_security_supported(), reason="systemd-analyze security --offline needs systemd 250+")
def test_systemd_analyze_security_exposure_is_3_or_better(tmp_path: Path) -> None:
    files = render_all(Layout())
    for d in DAEMONS:
        path = tmp_path / d.unit
        path.write_text(files[d.unit])
        res = subprocess.run([ANALYZE, "security", "--offline=yes", str(path)], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
        assert m, res.stdout[-2000:] + res.stderr
        assert float(m.group(1)) <= 3.0, f"{d.unit}: exposure {m.group(1)}\n{res.stdout}"
