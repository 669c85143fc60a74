"""Token authentication on Apache Pulsar: a second standalone broker of its own, with JWT (HS256) auth on.

Pulse connects with ``pulsar.auth_token``: ``pulse pulsar provision`` (admin client) and ``pulse symbols add`` (admin
client, then the binary client publishing the control command) succeed, and a Pulse consumer reads that command.
A wrongly signed token fails with an error that says authentication failed, and no token ever appears in a log
file, stdout/stderr, or a status file. Broker keys from Pulsar's ``ServiceConfiguration`` and its token-auth docs
(https://pulsar.apache.org/docs/4.0.x/security-jwt/): ``authenticationEnabled``, ``authenticationProviders``
(``AuthenticationProviderToken``), ``tokenSecretKey`` (``file://`` or ``data:;base64,``), ``superUserRoles``, and
``brokerClientAuthenticationPlugin``/``…Parameters`` for the broker's own internal client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest

from control_plane.commands import decode
from pulse.bus import Bus
from pulse.errors import BusError
from pulse.runtime.apache import start_apache
from pulse.runtime.procs import free_port, pid_alive, terminate
from pulse.settings import Settings
from tests.procs import pulse

SUPERUSER = "pulse-admin"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(subject: str, key: bytes) -> str:
    """An HS256 JWT with ``sub`` = the role, as Pulsar's ``bin/pulsar tokens create --secret-key`` makes."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps({"sub": subject}, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(sig)}"


def _secret_file(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    path.chmod(0o600)
    return path


def _files_with(root: Path, needle: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if not p.is_file() or any(part in skip for part in p.parts):
            continue
        try:
            if needle.encode() in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue
    return hits


def test_token_auth_connects_refuses_a_wrong_token_and_never_logs_it(
    apache_settings: Settings, unique: str, tmp_path: Path
) -> None:
    key = os.urandom(32)
    token = make_jwt(SUPERUSER, key)
    wrong = make_jwt(SUPERUSER, os.urandom(32))  # right role, signed with another key
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    key_file = _secret_file(secrets / "hs256.key", key)
    token_file = _secret_file(secrets / "superuser.jwt", token)
    extra = [
        "authenticationEnabled=true",
        "authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
        f"tokenSecretKey=file://{key_file}",
        f"superUserRoles={SUPERUSER}",
        "brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken",
        f"brokerClientAuthenticationParameters=file://{token_file}",  # the token stays out of standalone.conf
    ]
    bhome = tmp_path / "auth-broker"
    info = start_apache(
        bhome, host="127.0.0.1", port=free_port(), admin_port=free_port(), heap_mb=384, extra_conf=extra,
        admin_token=token, timeout=240,
    )  # fmt: skip
    try:
        s = apache_settings  # its home has the registry (PostgreSQL); the broker is the authenticated one
        env = {
            "PULSE_PULSAR__URL": info.url,
            "PULSE_PULSAR__ADMIN_URL": info.admin_url,
            "PULSE_PULSAR__AUTH_TOKEN": token,
            "PULSE_PULSAR__OPERATION_TIMEOUT_S": "20",
        }
        outputs: list[str] = []

        # the admin client with the token: tenant and namespaces on the authenticated broker
        prov = pulse(s, "pulsar", "provision", "--json", env=env, timeout=300)
        outputs += [prov.stdout, prov.stderr]
        assert prov.returncode == 0, prov.stderr[-2000:]
        assert {"step": "tenant market-data", "outcome": "created", "detail": "clusters standalone"} in json.loads(
            prov.stdout
        )

        # a Pulse consumer with the token, subscribed before `symbols add` publishes its control command
        auth = s.with_overrides(
            pulsar={"url": info.url, "admin_url": info.admin_url, "auth_token": token, "operation_timeout_s": 20}
        )
        bus = Bus(auth, info.url)
        try:
            control = bus.subscribe(f"persistent://{s.pulsar.tenant}/control/instruments", f"auth-{unique}")
            sym = f"K{unique[:5].upper()}/USD"
            added = pulse(s, "symbols", "add", "kraken", sym, "--channels", "trade", "--json", env=env)
            outputs += [added.stdout, added.stderr]
            assert added.returncode == 0, added.stderr[-2000:]
            steps = [st["result"] for st in json.loads(added.stdout)["steps"]]
            assert any(x.startswith("topic persistent://market-data/crypto/kraken.") and "created" in x for x in steps)
            cmd = decode(control.receive(30_000).data())
            assert (cmd.op, cmd.venue, cmd.symbol) == ("add", "kraken", sym)
        finally:
            bus.close()

        # a wrongly signed token: the CLI fails, saying authentication failed, without printing any token
        bad_env = {**env, "PULSE_PULSAR__AUTH_TOKEN": wrong}
        refused = pulse(s, "symbols", "add", "kraken", f"W{unique[:5].upper()}/USD", env=bad_env)
        outputs += [refused.stdout, refused.stderr]
        assert refused.returncode != 0
        assert "authentication failed" in refused.stderr and "HTTP 401" in refused.stderr, refused.stderr
        # the binary client alone (no admin call before it): the same words, not a bare TimeOut
        bad = s.with_overrides(
            pulsar={"url": info.url, "admin_url": info.admin_url, "auth_token": wrong, "operation_timeout_s": 5}
        )
        bad_bus = Bus(bad, info.url)
        try:
            with pytest.raises(BusError) as err:
                bad_bus.producer(f"persistent://{s.pulsar.tenant}/crypto/auth-{unique}")
        finally:
            bad_bus.client.close()
        assert "authentication failed" in str(err.value)
        outputs.append(str(err.value))
        # without any token, the admin API says so too
        anon = pulse(s, "pulsar", "provision", env={**env, "PULSE_PULSAR__AUTH_TOKEN": ""})
        outputs += [anon.stdout, anon.stderr]
        assert anon.returncode != 0 and "authentication failed" in anon.stderr

        broker_log = Path(info.log).read_text(errors="replace")
        assert "Failed to authenticate" in broker_log  # the broker did see (and reject) the wrong token
        assert f"role={SUPERUSER}" in broker_log  # ... and accepted the right one
    finally:
        terminate(info.pid, timeout=30)
    assert not pid_alive(info.pid)

    for secret in (token, wrong):
        for out in outputs:
            assert secret not in out
        assert _files_with(bhome, secret, skip=("data",)) == []  # broker log, standalone.conf, log4j2
        # Pulse's logs and status files (PostgreSQL's and the session broker's data are not ours to scan)
        assert _files_with(s.home, secret, skip=("data", "pgdata", "postgres", "broker-apache")) == []
        assert secret.rsplit(".", 1)[1] not in Path(info.log).read_text(errors="replace")  # not even the signature
