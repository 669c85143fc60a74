"""systemd units for every Pulse daemon: ``pulse systemd render|install`` writes them (``deploy/systemd/`` holds
the rendered defaults).

Each daemon runs as the ``pulse`` system user (``pulse.sysusers.conf``), under ``Type=notify`` with a
watchdog where the command reports readiness (:mod:`pulse.supervise`): READY=1 once connected and subscribed,
WATCHDOG=1 only while its loop and feed are healthy. A configuration error exits 2 and is not restarted
(``RestartPreventExitStatus=2``). Secrets come from ``LoadCredential=`` and reach the settings' ``*_file`` keys
through ``%d`` (``$CREDENTIALS_DIRECTORY``), so they never sit in the unit, the environment or the logs. The
hardening directives bring ``systemd-analyze security`` to an exposure of 3.0 or better per unit (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: secret → the settings key (as an environment override) that reads it from a file: the core's; each venue's come
#: from its declared secret settings (:func:`venue_credentials`), so the list grows with the venue registry
CREDENTIALS = {
    "pulsar-token": "PULSE_PULSAR__AUTH_TOKEN_FILE",
    "database-url": "PULSE_DATABASE__URL_FILE",
    "webhook-secret": "PULSE_ALERTING__WEBHOOK_SECRET_FILE",
    "web-token": "PULSE_WEB__TOKEN_FILE",
}


def venue_credentials() -> dict[str, dict[str, str]]:
    """Venue → {credential name → its ``*_file`` override} for every secret setting the venue declares
    (``Venue.secret_settings``): ``oanda-token`` → ``PULSE_OANDA__TOKEN_FILE``, ``alpaca-secret`` →
    ``PULSE_ALPACA__SECRET_FILE``. Each goes into that venue's ingester drop-in only."""
    from pulse.venues import venues

    out: dict[str, dict[str, str]] = {}
    for name, v in venues().items():
        section = (v.settings_section or name).upper()
        creds = {f"{name}-{k.replace('_', '-')}": f"PULSE_{section}__{k.upper()}_FILE" for k in v.secret_settings}
        if creds:
            out[name] = creds
    return out


def all_credentials() -> dict[str, str]:
    """Every credential name a deployment may have (the core's and every venue's) → its ``*_file`` override."""
    out = dict(CREDENTIALS)
    for creds in venue_credentials().values():
        out.update(creds)
    return out


@dataclass(frozen=True)
class Daemon:
    unit: str  # file name
    description: str
    args: str  # pulse arguments after the global options
    credentials: tuple[str, ...] = ()  # beyond pulsar-token and database-url
    stop_timeout_s: int = 30
    restart_sec: int = 2
    notes: tuple[str, ...] = field(default=())


DAEMONS = (
    Daemon(
        "pulse-ingest@.service",
        "Pulse %i ingester",
        "ingest %i",
        notes=(
            "One instance per venue: systemctl enable --now pulse-ingest@kraken pulse-ingest@oanda",
            "SIGTERM closes the venue connection and flushes; the publisher child (same cgroup) ignores",
            "it and exits once the ingester has flushed through it.",
        ),
    ),
    Daemon(
        "pulse-sink.service",
        "Pulse PostgreSQL sink",
        "sink run",
        notes=("SIGTERM commits and acknowledges the batch in hand, then exits 0.",),
    ),
    Daemon(
        "pulse-matching.service",
        "Pulse paper-trading matching service",
        "consumers matching run",
        notes=("SIGTERM flushes, snapshots the state and exits 0.",),
    ),
    Daemon(
        "pulse-alerting.service",
        "Pulse alerting service",
        "consumers alerting run",
        ("webhook-secret",),
        notes=("SIGTERM writes the final state snapshot, acknowledges and exits 0.",),
    ),
    Daemon(
        "pulse-monitor.service",
        "Pulse history monitor (availability -> backfill -> candles)",
        "monitor",
        stop_timeout_s=120,
        restart_sec=30,
        notes=(
            "READY=1 once it runs; WATCHDOG=1 while its loop beats (a check counts as alive until it has run"
            " monitor.check_timeout_s).",
            "SIGTERM ends the wait between checks (a check in progress finishes first).",
        ),
    ),
    Daemon(
        "pulse-gateway.service",
        "Pulse console (WebSocket gateway, HTTP API)",
        "web",
        ("web-token",),
        notes=(
            "READY=1 once connected to the broker and the registry read (its /readyz); WATCHDOG=1 while the"
            " event loop beats.",
        ),
    ),
)

#: Sandboxing, each line scored by `systemd-analyze security` (exposure weights in systemd's analyze-security.c).
#: Network stays open (venues, broker, database); the runtime home is the only writable path.
HARDENING = """\
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
PrivateUsers=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
PrivateMounts=yes
KeyringMode=private
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources @mount @obsolete
SystemCallErrorNumber=EPERM
UMask=0077"""

SYSUSERS = """\
# systemd-sysusers(8): the system user every Pulse unit runs as (no login, home = the state directory)
u pulse - "Pulse market data" /var/lib/pulse -
"""


@dataclass(frozen=True)
class Layout:
    prefix: str = "/opt/pulse"  # the project, installed with `uv sync --frozen` (its .venv/bin/pulse)
    config: str = "/etc/pulse/pulse.toml"
    credentials_dir: str = "/etc/pulse/credentials"  # one file per secret, root-owned, mode 0600
    credentials: tuple[str, ...] = ("database-url",)  # the secrets this deployment has
    watchdog_s: int = 60

    @property
    def pulse(self) -> str:
        return f"{self.prefix}/.venv/bin/pulse"


def render_unit(d: Daemon, lay: Layout) -> str:
    creds = [c for c in ("pulsar-token", "database-url", *d.credentials) if c in lay.credentials]
    lines = [f"# {n}" for n in (f"Rendered by `pulse systemd render`: {d.description}.", *d.notes)]
    lines += [
        "[Unit]",
        f"Description={d.description}",
        "After=network-online.target",
        "Wants=network-online.target",
        # a config error exits 2 and is not restarted; anything else is, without giving up
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
    ]
    lines += [
        # every daemon reports readiness and liveness through sd_notify (pulse.supervise.Supervisor)
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={lay.watchdog_s}",
        "TimeoutStartSec=120",
        "User=pulse",
        "Group=pulse",
        "StateDirectory=pulse",
        "StateDirectoryMode=0750",
        f"WorkingDirectory={lay.prefix}",
        f"ExecStart={lay.pulse} --config {lay.config} --home /var/lib/pulse {d.args}",
        "KillMode=control-group",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={d.stop_timeout_s}",
        "Restart=always",
        f"RestartSec={d.restart_sec}",
        "RestartPreventExitStatus=2",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    for c in creds:
        lines += [f"LoadCredential={c}:{lay.credentials_dir}/{c}", f"Environment={CREDENTIALS[c]}=%d/{c}"]
    lines += ["", "# Sandboxing: `systemd-analyze security` exposure <= 3.0 (tests/unit/test_systemd_units.py)"]
    lines += [*HARDENING.splitlines(), "", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def render_dropin(venue: str, lay: Layout) -> str | None:
    """``pulse-ingest@<venue>.service.d/credentials.conf`` when the venue needs secrets of its own."""
    own = venue_credentials().get(venue, {})
    creds = [c for c in own if c in lay.credentials]
    if not creds:
        return None
    lines = [f"# Rendered by `pulse systemd render --venue {venue}`: the {venue} ingester's own secrets.", "[Service]"]
    for c in creds:
        lines += [f"LoadCredential={c}:{lay.credentials_dir}/{c}", f"Environment={own[c]}=%d/{c}"]
    return "\n".join([*lines, ""])


def render_all(lay: Layout, venues: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path → text: every unit, the sysusers file and each venue's drop-in."""
    out = {d.unit: render_unit(d, lay) for d in DAEMONS}
    out["pulse.sysusers.conf"] = SYSUSERS
    for v in venues:
        dropin = render_dropin(v, lay)
        if dropin is not None:
            out[f"pulse-ingest@{v}.service.d/credentials.conf"] = dropin
    return out


def write_all(files: dict[str, str], unit_dir: Path, sysusers_dir: Path | None = None) -> list[Path]:
    written = []
    for rel, text in files.items():
        target = (sysusers_dir / "pulse.conf") if (rel == "pulse.sysusers.conf" and sysusers_dir) else unit_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written
