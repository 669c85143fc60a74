"""Provisioning plans for a real Pulsar cluster: idempotent steps over :class:`.pulsar_admin.PulsarAdmin`.

* :func:`provision_base` — the tenant (allowed on every cluster the admin API lists) and every namespace of
  ``pulsar/namespaces.yaml`` with its policies (retention, message TTL, deduplication, compaction threshold).
  Policies are read back first (``GET /admin/v2/namespaces/{tenant}/{ns}``) and only the ones that differ are
  set, so a second run changes nothing and reports every step as ``exists``.
* :func:`provision_instrument` — one partitioned topic per channel of an instrument, and the channel's JSON
  schema registered on it (``POST /admin/v2/schemas/…/schema``).
* :func:`provision_jdbc_sink` — optionally, a Pulsar IO ``jdbc-postgres`` sink on historical topics
  (``POST /admin/v3/sinks/…``; config keys from the Pulsar IO JDBC sink reference,
  https://pulsar.apache.org/docs/next/io-jdbc-sink/: ``userName``, ``password``, ``jdbcUrl``, ``tableName``,
  ``nonKey``, ``key``, ``timeoutMs``, ``batchSize``).

Each step returns a :class:`StepResult` (``created`` / ``exists`` / ``updated``); the first failure raises
:class:`~control_plane.pulsar_admin.AdminError` naming the step and the HTTP status, with the results of the
steps done before it in ``exc.completed``. On the embedded broker (no ``pulsar.admin_url``) there is no admin
API: :func:`admin_configured` says so and callers print :data:`EMBEDDED_NOTE`.

Schemas: Pulsar's ``JSON`` schema type stores an **Avro record definition** (the broker validates the schema
data with Avro's parser first, then falls back to Jackson's legacy JSON-schema model —
``pulsar-broker/…/service/schema/validator/StructSchemaDataValidator.java``), and Pulsar IO sinks read fields
from that record. So the JSON Schema documents in ``pulsar/schemas/`` are translated to Avro records by
:func:`pulse.schemas.avro_schema` (decimals stay strings, nanosecond timestamps are longs, nullable fields are
``["null", T]`` unions). On a cluster with an admin API, Pulse's producers declare the same definition
(:func:`pulse.schemas.registered_schema`, byte for byte) so each message carries the schema version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from control_plane.pulsar_admin import AdminError, Outcome, PulsarAdmin
from pulse.errors import ConfigError
from pulse.log import get_logger, register_secret
from pulse.models import SCHEMA_VERSION
from pulse.schemas import SCHEMA_DIR, SCHEMA_OF_CHANNEL, avro_schema, registered_schema
from pulse.topics import CHANNEL_OF_EVENT, CHANNELS, DEFAULT_TENANT, NAMESPACES, namespace_name, topic

log = get_logger(__name__)

REPO = Path(__file__).resolve().parents[1]
NAMESPACES_FILE = REPO / "pulsar" / "namespaces.yaml"

EMBEDDED_NOTE = "embedded broker: topics are created on first use"


StepOutcome = Literal["created", "exists", "updated", "unknown"]  # unknown: the cluster did not say


@dataclass(frozen=True)
class StepResult:
    step: str
    outcome: StepOutcome
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.step}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class NamespacePolicy:
    """One namespace's entry in ``pulsar/namespaces.yaml``; ``None`` leaves the broker default alone."""

    name: str
    retention_minutes: int | None = None
    retention_mb: int | None = None
    message_ttl_seconds: int | None = None
    deduplication: bool | None = None
    compaction_threshold_bytes: int | None = None


def admin_configured(settings: Any) -> bool:
    """True when ``pulsar.admin_url`` names an admin API; False on the embedded broker (print EMBEDDED_NOTE)."""
    return bool(settings.pulsar.admin_url.strip())


def load_namespace_policies(path: Path | str = NAMESPACES_FILE) -> dict[str, NamespacePolicy]:
    """Parse ``pulsar/namespaces.yaml``; unknown namespaces or keys are refused by name."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read namespace policies {p}: {exc}") from exc
    out: dict[str, NamespacePolicy] = {}
    for name, spec in (doc.get("namespaces") or {}).items():
        if name not in NAMESPACES:
            raise ConfigError(f"{p}: unknown namespace {name!r} (expected one of {', '.join(NAMESPACES)})")
        spec = spec or {}
        unknown = set(spec) - {"retention", "message_ttl_seconds", "deduplication", "compaction_threshold_bytes"}
        if unknown:
            raise ConfigError(f"{p}: namespace {name}: unknown keys {', '.join(sorted(unknown))}")
        ret = spec.get("retention") or {}
        out[name] = NamespacePolicy(
            name=name,
            retention_minutes=_opt_int(ret.get("retentionTimeInMinutes")),
            retention_mb=_opt_int(ret.get("retentionSizeInMB")),
            message_ttl_seconds=_opt_int(spec.get("message_ttl_seconds")),
            deduplication=None if spec.get("deduplication") is None else bool(spec["deduplication"]),
            compaction_threshold_bytes=_opt_int(spec.get("compaction_threshold_bytes")),
        )
    return out


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


class _Plan:
    """Runs steps in order, collecting results; the first AdminError carries them in ``completed``."""

    def __init__(self) -> None:
        self.results: list[StepResult] = []

    def add(self, step: str, outcome: Outcome | StepOutcome, detail: str = "") -> None:
        r = StepResult(step, outcome, detail)
        self.results.append(r)
        log.info("provision step", step=step, outcome=outcome, detail=detail)

    def fail(self, exc: AdminError) -> AdminError:
        exc.completed = list(self.results)
        return exc


async def provision_base(
    admin: PulsarAdmin,
    settings: Any,
    *,
    policies_file: Path | str = NAMESPACES_FILE,
    admin_roles: Sequence[str] = (),
) -> list[StepResult]:
    """Tenant ``settings.pulsar.tenant`` and every namespace of ``policies_file`` with its policies."""
    tenant = settings.pulsar.tenant
    policies = load_namespace_policies(policies_file)
    plan = _Plan()
    try:
        clusters = await admin.list_clusters()
        if not clusters:
            raise AdminError("list clusters", 200, "the admin API lists no clusters to allow the tenant on")
        outcome = await admin.create_tenant(tenant, clusters, list(admin_roles))
        plan.add(f"tenant {tenant}", outcome, f"clusters {', '.join(clusters)}" if outcome == "created" else "")
        for ns in policies.values():
            await _namespace(admin, plan, namespace_name(ns.name, tenant), ns)
    except AdminError as exc:
        raise plan.fail(exc) from None
    return plan.results


async def _namespace(admin: PulsarAdmin, plan: _Plan, fq: str, pol: NamespacePolicy) -> None:
    plan.add(f"namespace {fq}", await admin.create_namespace(fq))
    current = await admin.get_policies(fq)

    if pol.retention_minutes is not None or pol.retention_mb is not None:
        want = {"retentionTimeInMinutes": pol.retention_minutes or 0, "retentionSizeInMB": pol.retention_mb or 0}
        have = current.get("retention_policies")
        have_n = {k: int(v) for k, v in have.items() if k in want} if isinstance(have, dict) else None
        step = f"retention on {fq}"
        if have_n == want:
            plan.add(step, "exists")
        else:
            await admin.set_retention(fq, want["retentionTimeInMinutes"], want["retentionSizeInMB"])
            plan.add(step, "created" if have is None else "updated", _fmt(want))

    if pol.message_ttl_seconds is not None:
        await _scalar(
            plan,
            f"message TTL on {fq}",
            current.get("message_ttl_in_seconds"),
            pol.message_ttl_seconds,
            lambda v: admin.set_message_ttl(fq, v),
            unset=(None, 0),
        )
    if pol.deduplication is not None:
        await _scalar(
            plan,
            f"deduplication on {fq}",
            current.get("deduplicationEnabled"),
            pol.deduplication,
            lambda v: admin.set_deduplication(fq, v),
            unset=(None,),
        )
    if pol.compaction_threshold_bytes is not None:
        await _scalar(
            plan,
            f"compaction threshold on {fq}",
            current.get("compaction_threshold"),
            pol.compaction_threshold_bytes,
            lambda v: admin.set_compaction_threshold(fq, v),
            unset=(None, 0),
        )


async def _scalar(plan: _Plan, step: str, have: Any, want: Any, setter: Any, unset: tuple[Any, ...]) -> None:
    if have == want and have is not None:
        plan.add(step, "exists")
        return
    await setter(want)
    plan.add(step, "created" if have in unset else "updated", f"{have} → {want}" if have not in unset else str(want))


def _fmt(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


async def provision_instrument(
    admin: PulsarAdmin,
    namespace: str,
    venue: str,
    symbol: str,
    channels: Iterable[str],
    partitions: int = 1,
    *,
    tenant: str = DEFAULT_TENANT,
    register_schemas: bool = True,
) -> list[StepResult]:
    """A partitioned topic per channel (``partitions`` each) and, unless disabled, the channel's JSON schema.

    Set ``register_schemas=False`` when producers use the msgpack codec (the registered schema would lie).
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be at least 1, got {partitions}")
    plan = _Plan()
    try:
        for channel in channels:
            if channel not in CHANNELS:
                raise ConfigError(f"unknown channel {channel!r}: expected one of {', '.join(CHANNELS)}")
            name = topic(namespace, venue, symbol, channel, tenant)
            outcome = await admin.create_partitioned_topic(name, partitions)
            detail = f"{partitions} partitions"
            if outcome == "exists":
                have = await admin.partition_count(name)
                detail = f"{have} partitions" + (f", not the {partitions} asked for" if have != partitions else "")
            plan.add(f"topic {name}", outcome, detail)
            if register_schemas:
                tag = SCHEMA_OF_CHANNEL[channel]
                outcome = await admin.upload_schema(
                    name, "JSON", registered_schema(channel), schema_properties(channel)
                )
                plan.add(f"schema for {name}", outcome, f"JSON ({tag})")
    except AdminError as exc:
        raise plan.fail(exc) from None
    return plan.results


def schema_properties(channel: str) -> dict[str, str]:
    kinds = sorted({t for t, ch in CHANNEL_OF_EVENT.items() if ch == channel} | {"status"})
    return {
        "pulse.schema_version": str(SCHEMA_VERSION),
        "pulse.event_type": SCHEMA_OF_CHANNEL[channel],
        "pulse.event_types": ",".join(kinds),
        "pulse.message_property": "type",
    }


# -- Pulsar IO JDBC sink --------------------------------------------------------------------------------------
async def provision_jdbc_sink(
    admin: PulsarAdmin,
    *,
    name: str,
    jdbc_url: str,
    table_name: str,
    inputs: Sequence[str] = (),
    topics_pattern: str = "",
    user_name: str = "",
    password: str = "",
    tenant: str = DEFAULT_TENANT,
    namespace: str = "historical",
    key: str = "",
    non_key: str = "",
    insert_mode: Literal["INSERT", "UPSERT", "UPDATE"] = "INSERT",
    batch_size: int = 200,
    timeout_ms: int = 500,
    parallelism: int = 1,
    extra_configs: dict[str, Any] | None = None,
) -> StepResult:
    """A built-in ``jdbc-postgres`` Pulsar IO sink reading ``inputs`` (topics) or every topic matching
    ``topics_pattern`` (a Java regex over full topic names) into ``table_name``, from the earliest message.

    A pattern follows topics created later (the broker tells pattern consumers about new topics): Apache Pulsar
    4.0 refuses to change a sink's input topics once created ("Input Topics cannot be altered"), so that is how a
    sink follows instruments added afterwards. ``insert_mode="UPSERT"`` needs ``key`` and ``non_key`` (column
    lists) and a unique index on the key: a redelivered message then rewrites its row instead of adding one.

    ``jdbc_url`` is a JDBC URL (``jdbc:postgresql://host:5432/db``). The password is registered as a secret
    (masked in every log line) and never logged. Needs the function worker (``/admin/v3``) on the cluster.
    """
    if not jdbc_url.startswith("jdbc:postgresql://"):
        raise ConfigError(f"jdbc_url must start with jdbc:postgresql://, got {jdbc_url.split('?')[0]!r}")
    if bool(inputs) == bool(topics_pattern):
        raise ConfigError("the JDBC sink needs input topics or a topics pattern (exactly one of them)")
    if insert_mode == "UPSERT" and not (key and non_key):
        raise ConfigError("insert_mode UPSERT needs key and non_key (the connector refuses it otherwise)")
    register_secret(password)
    configs: dict[str, Any] = {
        "userName": user_name,
        "password": password,
        "jdbcUrl": jdbc_url,
        "tableName": table_name,
        "batchSize": batch_size,
        "timeoutMs": timeout_ms,
        "insertMode": insert_mode,
    }
    if key:
        configs["key"] = key
    if non_key:
        configs["nonKey"] = non_key
    configs.update(extra_configs or {})
    sink_config: dict[str, Any] = {
        "tenant": tenant,
        "namespace": namespace,
        "name": name,
        "archive": "builtin://jdbc-postgres",
        "parallelism": parallelism,
        "processingGuarantees": "ATLEAST_ONCE",
        "sourceSubscriptionPosition": "Earliest",  # a topic found later by the pattern is read from its start
        "configs": configs,
    }
    if topics_pattern:
        sink_config["topicsPattern"] = topics_pattern
    else:
        sink_config["inputs"] = list(inputs)
    outcome = await admin.create_sink(tenant, namespace, name, sink_config)
    result = StepResult(f"sink {tenant}/{namespace}/{name}", outcome, "builtin://jdbc-postgres")
    log.info("provision step", step=result.step, outcome=outcome)
    return result


def provision_base_sync(settings: Any) -> list[StepResult]:
    """:func:`provision_base` through ``pulsar.admin_url``, for callers without an event loop.

    ``pulse up --broker apache`` runs it once the broker is ready: unlike pulsar-lite, Apache Pulsar creates a
    topic on first use only in a namespace that exists, so the tenant and namespaces come first."""
    import asyncio

    async def go() -> list[StepResult]:
        async with PulsarAdmin.from_settings(settings) as admin:
            return await provision_base(admin, settings)

    return asyncio.run(go())


__all__ = ["SCHEMA_DIR", "SCHEMA_OF_CHANNEL", "avro_schema"]  # re-exported: they live in pulse.schemas
