"""The Pulsar admin REST client and the provisioning plans against Apache Pulsar 4.0.7 itself (no fake in the path).

Every call ``pulse pulsar provision`` and ``pulse symbols add`` make, checked the way an operator would: what is on
the broker afterwards (read back through its own admin API), what a second run reports, and what the error says
when the broker refuses. Each test works in its own tenant, so it never disturbs the session's ``market-data``.
The answers found here are the ones tests/pulsar_admin_fake.py now gives for what remains tested on the fake.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pulsar
import pytest

from control_plane.provision import (
    SCHEMA_OF_CHANNEL,
    load_namespace_policies,
    provision_base,
    provision_instrument,
    schema_properties,
)
from control_plane.pulsar_admin import AdminError, PulsarAdmin
from pulse.schemas import registered_schema
from pulse.settings import Settings
from pulse.topics import NAMESPACES, topic
from tests.procs import pulse


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def tenant_settings(s: Settings, unique: str) -> Settings:
    return s.with_overrides(pulsar={"tenant": f"t-{unique}"})


async def _provision_twice(s: Settings) -> tuple[list, list, dict[str, dict]]:  # type: ignore[type-arg]
    async with PulsarAdmin.from_settings(s) as admin:
        first = await provision_base(admin, s)
        second = await provision_base(admin, s)
        policies = {ns: await admin.get_policies(f"{s.pulsar.tenant}/{ns}") for ns in NAMESPACES}
        tenant = await admin.get_tenant(s.pulsar.tenant)
    return first, second, {"tenant": tenant, **policies}  # type: ignore[dict-item]


def test_tenant_and_namespaces_with_their_policies_read_back_and_idempotent(
    apache_settings: Settings, unique: str
) -> None:
    s = tenant_settings(apache_settings, unique)
    t = s.pulsar.tenant
    first, second, got = run(_provision_twice(s))

    assert got["tenant"] == {"adminRoles": [], "allowedClusters": ["standalone"]}
    assert {r.outcome for r in first} == {"created"}
    # policies on the broker, compared with pulsar/namespaces.yaml
    for ns, pol in load_namespace_policies().items():
        doc = got[ns]
        if pol.retention_minutes is not None:
            assert doc["retention_policies"] == {
                "retentionTimeInMinutes": pol.retention_minutes,
                "retentionSizeInMB": pol.retention_mb,
            }, ns
        assert doc.get("message_ttl_in_seconds") == pol.message_ttl_seconds, ns  # absent when the yaml has none
        assert doc.get("deduplicationEnabled") == pol.deduplication, ns
        assert doc.get("compaction_threshold") == pol.compaction_threshold_bytes, ns
    # the second run changes nothing and says so, step by step
    assert [r.step for r in second] == [r.step for r in first]
    assert {r.outcome for r in second} == {"exists"}, [str(r) for r in second if r.outcome != "exists"]
    assert second[0].step == f"tenant {t}"


def test_a_changed_policy_is_updated_and_reported(apache_settings: Settings, unique: str, tmp_path: Path) -> None:
    s = tenant_settings(apache_settings, unique)
    t = s.pulsar.tenant
    changed = tmp_path / "namespaces.yaml"
    changed.write_text(
        "namespaces:\n"
        "  fx:\n"
        "    retention: {retentionTimeInMinutes: 60, retentionSizeInMB: 100}\n"
        "    message_ttl_seconds: 600\n"
        "    deduplication: false\n"
        "  derived:\n"
        "    compaction_threshold_bytes: 2048\n"
    )

    async def go() -> tuple[list, dict, dict]:  # type: ignore[type-arg]
        async with PulsarAdmin.from_settings(s) as admin:
            await provision_base(admin, s)
            await admin.set_message_ttl(f"{t}/crypto", 60)  # someone changed it by hand
            healed = await provision_base(admin, s)
            results = await provision_base(admin, s, policies_file=changed)
            return (
                [r for r in healed if r.outcome != "exists"] + [r for r in results if r.outcome != "exists"],
                await admin.get_policies(f"{t}/fx"),
                await admin.get_policies(f"{t}/derived"),
            )

    moved, fx, derived = run(go())
    assert [(r.step, r.outcome, r.detail) for r in moved] == [
        (f"message TTL on {t}/crypto", "updated", "60 → 86400"),
        (f"retention on {t}/fx", "updated", "retentionTimeInMinutes=60, retentionSizeInMB=100"),
        (f"message TTL on {t}/fx", "updated", "86400 → 600"),
        (f"deduplication on {t}/fx", "updated", "True → False"),
        (f"compaction threshold on {t}/derived", "updated", "104857600 → 2048"),
    ]
    assert fx["retention_policies"] == {"retentionTimeInMinutes": 60, "retentionSizeInMB": 100}
    assert (fx["message_ttl_in_seconds"], fx["deduplicationEnabled"]) == (600, False)
    assert derived["compaction_threshold"] == 2048


def test_partitioned_topics_and_schemas_read_back(apache_settings: Settings, unique: str) -> None:
    s = tenant_settings(apache_settings, unique)
    t = s.pulsar.tenant
    sym = f"A{unique[:5].upper()}/USD"
    channels = ["trade", "book", "status"]

    async def go() -> tuple[list, list, list, dict, list]:  # type: ignore[type-arg]
        async with PulsarAdmin.from_settings(s) as admin:
            await provision_base(admin, s)
            first = await provision_instrument(admin, "crypto", "kraken", sym, channels, partitions=2, tenant=t)
            second = await provision_instrument(admin, "crypto", "kraken", sym, channels, partitions=2, tenant=t)
            counts = [await admin.partition_count(topic("crypto", "kraken", sym, ch, t)) for ch in channels]
            schemas = {ch: await admin.get_schema(topic("crypto", "kraken", sym, ch, t)) for ch in channels}
            listed = await admin.list_topics(f"{t}/crypto")
            return first, second, counts, schemas, listed

    first, second, counts, schemas, listed = run(go())
    names = [topic("crypto", "kraken", sym, ch, t) for ch in channels]
    assert [(r.step, r.outcome, r.detail) for r in first] == [
        x
        for ch, name in zip(channels, names, strict=True)
        for x in [
            (f"topic {name}", "created", "2 partitions"),
            (f"schema for {name}", "created", f"JSON ({SCHEMA_OF_CHANNEL[ch]})"),
        ]
    ]
    assert {r.outcome for r in second} == {"exists"}
    assert counts == [2, 2, 2]
    assert listed == sorted(names)  # partitioned topics once each, not their -partition-N members
    for ch in channels:
        got = schemas[ch]
        assert got is not None and got["type"] == "JSON" and got["version"] == 0  # one version: no re-registration
        assert json.loads(got["data"]) == json.loads(registered_schema(ch))
        assert got["properties"] == schema_properties(ch)


def test_existing_topic_with_another_partition_count_is_reported(apache_settings: Settings, unique: str) -> None:
    s = tenant_settings(apache_settings, unique)
    t = s.pulsar.tenant
    sym = f"B{unique[:5].upper()}/USD"
    auto = topic("fx", "oanda", "EUR/GBP", "quote", t)

    async def go() -> tuple[list, list]:  # type: ignore[type-arg]
        async with PulsarAdmin.from_settings(s) as admin:
            await provision_base(admin, s)
            await provision_instrument(admin, "fx", "oanda", sym, ["quote"], partitions=1, tenant=t)
            again = await provision_instrument(
                admin, "fx", "oanda", sym, ["quote"], partitions=4, tenant=t, register_schemas=False
            )
            # a topic a producer created on first use (not partitioned), provisioned afterwards
            client = pulsar.Client(s.pulsar.url)
            try:
                client.create_producer(auto).close()
            finally:
                client.close()
            late = await provision_instrument(
                admin, "fx", "oanda", "EUR/GBP", ["quote"], partitions=3, tenant=t, register_schemas=False
            )
            return again, late

    again, late = run(go())
    assert [(r.outcome, r.detail) for r in again] == [("exists", "1 partitions, not the 4 asked for")]
    assert [(r.outcome, r.detail) for r in late] == [("exists", "0 partitions, not the 3 asked for")]


def test_refusals_carry_the_brokers_reason(apache_settings: Settings, unique: str) -> None:
    s = tenant_settings(apache_settings, unique)
    t = s.pulsar.tenant

    async def refused(coro) -> AdminError:  # type: ignore[no-untyped-def]
        with pytest.raises(AdminError) as err:
            await coro
        return err.value

    async def go() -> dict[str, AdminError]:
        out: dict[str, AdminError] = {}
        async with PulsarAdmin.from_settings(s) as admin:
            out["ns in missing tenant"] = await refused(admin.create_namespace(f"nobody-{unique}/crypto"))
            out["tenant name"] = await refused(admin.create_tenant("bad tenant", ["standalone"]))
            out["no such cluster"] = await refused(admin.create_tenant(f"u-{unique}", ["us-west"]))
            await provision_base(admin, s)
            out["namespace name"] = await refused(admin.create_namespace(f"{t}/bad name"))
            sym = f"C{unique[:5].upper()}/USD"
            await provision_instrument(admin, "crypto", "kraken", sym, ["trade"], partitions=1, tenant=t)
            out["delete non-empty"] = await refused(admin.delete_namespace(f"{t}/crypto"))
            name = topic("crypto", "kraken", sym, "trade", t)
            other = {"type": "record", "name": "Trade", "fields": [{"name": "only", "type": "string"}]}
            out["incompatible schema"] = await refused(admin.upload_schema(name, "JSON", json.dumps(other)))
            out["other schema type"] = await refused(admin.upload_schema(name, "AVRO", registered_schema("trade")))
            out["invalid schema"] = await refused(admin.upload_schema(name, "JSON", "not a schema"))
            out["zero partitions"] = await refused(admin.create_partitioned_topic(f"{t}/crypto/zero-{unique}", 0))
            out["partition name"] = await refused(admin.create_partitioned_topic(f"{t}/crypto/x-partition-1", 2))
            out["ttl"] = await refused(admin.set_message_ttl(f"{t}/fx", -5))
            out["missing topic"] = await refused(admin.partition_count(f"{t}/crypto/none-{unique}"))
            await admin.delete_namespace(f"{t}/alerts")  # an empty one goes
            out["_left"] = await admin.list_namespaces(t)  # type: ignore[assignment]
        return out

    e = run(go())
    expect = {
        "ns in missing tenant": (404, "Tenant does not exist"),
        "tenant name": (412, "Tenant name is not valid"),
        "no such cluster": (412, "Clusters do not exist"),
        "namespace name": (412, "Namespace name is not valid"),
        "delete non-empty": (409, "Cannot delete non empty namespace"),
        "zero partitions": (406, "Number of partitions should be more than 0"),
        "partition name": (412, "Partitioned Topic Name should not contain '-partition-'"),
        "ttl": (412, "Invalid value for message TTL, message TTL must >= 0"),
        "invalid schema": (422, "Invalid schema definition data for JSON schema"),
        "other schema type": (409, "Incompatible schema: exists schema type JSON, new schema type AVRO"),
        "missing topic": (404, f"Topic persistent://{t}/crypto/none-{unique} not found"),
    }
    for what, (status, message) in expect.items():
        assert (e[what].status, e[what].message) == (status, message), what
    assert str(e["ns in missing tenant"]) == (
        f"create namespace nobody-{unique}/crypto failed: HTTP 404: Tenant does not exist"
    )
    # 409 on a schema is an error (never "exists"), with the broker's reason made readable and bounded
    inc = e["incompatible schema"]
    assert inc.status == 409 and inc.step.startswith(f"register schema for persistent://{t}/crypto/kraken.C")
    assert inc.message.startswith("Error during schema compatibility check with strategy FULL:")
    assert "&quot;" not in inc.message and len(inc.message) <= 400
    assert f"{t}/alerts" not in e["_left"] and f"{t}/crypto" in e["_left"]  # type: ignore[operator]


def test_stats_and_health_from_real_answers(apache_settings: Settings, unique: str) -> None:
    s = apache_settings
    sym = f"S{unique[:5].upper()}/USD"
    part = topic("crypto", "kraken", sym, "trade", s.pulsar.tenant)
    plain = f"persistent://{s.pulsar.tenant}/crypto/plain-{unique}"
    client = pulsar.Client(s.pulsar.url)

    async def go() -> tuple:  # type: ignore[type-arg]
        async with PulsarAdmin.from_settings(s) as admin:
            await provision_instrument(admin, "crypto", "kraken", sym, ["trade"], partitions=3, tenant=s.pulsar.tenant)
            sub = client.subscribe(part, f"stats-{unique}", consumer_type=pulsar.ConsumerType.Shared)
            idle = client.subscribe(plain, f"idle-{unique}")
            producer = client.create_producer(part)
            for i in range(30):
                producer.send(json.dumps({"type": "status", "i": i}).encode(), partition_key=f"k{i}")
            for _ in range(10):
                sub.acknowledge(sub.receive(10_000))
            p2 = client.create_producer(plain)
            for _ in range(5):
                p2.send(b"x")
            stats = await admin.stats(part)
            pstats = await admin.stats(plain)
            health = await admin.broker_health()
            producer.close()
            p2.close()
            idle.close()
            sub.close()
            return stats, pstats, health

    try:
        stats, pstats, health = run(go())
    finally:
        client.close()
    # summed over partitions; the broker merges one client's per-partition producer/consumer into one entry
    assert stats.partitions == 3 and stats.msg_in_counter == 30 and stats.publishers == 1
    sub_stats = stats.subscriptions[f"stats-{unique}"]
    assert sub_stats.type == "Shared" and sub_stats.consumers == 1
    # acks are applied asynchronously: 20 unacknowledged, at most the 10 acked in flight
    assert 20 <= stats.backlog <= 30
    assert pstats.partitions == 0 and pstats.msg_in_counter == 5 and pstats.publishers == 1
    assert pstats.subscriptions[f"idle-{unique}"].msg_backlog == 5
    assert pstats.subscriptions[f"idle-{unique}"].type == "Exclusive"
    # what `pulse status` judges a stall by: the idle consumer had its 5 messages dispatched, acknowledged none
    idle_stats = pstats.subscriptions[f"idle-{unique}"]
    assert idle_stats.last_consumed_ms > 1_600_000_000_000 and idle_stats.last_acked_ms == 0
    assert (health.healthy, health.status, health.detail) == (True, 200, "ok")


def test_pulse_symbols_add_then_pulsar_provision_is_idempotent(apache_settings: Settings, unique: str) -> None:
    s = apache_settings
    sym = f"D{unique[:5].upper()}/USD"
    env = {"PULSE_PULSAR__PARTITIONS": "2"}
    first = pulse(s, "symbols", "add", "kraken", sym, "--channels", "trade,ticker", "--json", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    again = pulse(s, "symbols", "add", "kraken", sym, "--channels", "trade,ticker", "--json", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    steps1 = [st["result"] for st in json.loads(first.stdout)["steps"] if st["step"] == "admin"]
    steps2 = [st["result"] for st in json.loads(again.stdout)["steps"] if st["step"] == "admin"]
    local = f"kraken.{sym.replace('/', '-')}"
    base = f"persistent://market-data/crypto/{local}"
    assert f"topic {base}.trade: created (2 partitions)" in steps1
    assert f"schema for {base}.ticker: created (JSON (ticker))" in steps1
    assert len(steps2) == len(steps1) and all(": exists" in x for x in steps2), steps2
    # `pulse pulsar provision` over the whole registry (other tests' instruments too, some maybe provisioned on
    # another broker): a second run finds every step done
    for _ in range(2):
        prov = pulse(s, "pulsar", "provision", "--json", env=env, timeout=300)
        assert prov.returncode == 0, prov.stderr[-2000:]
    outcomes = json.loads(prov.stdout)
    assert {o["outcome"] for o in outcomes} == {"exists"}
    assert {"step": f"topic {base}.trade", "outcome": "exists", "detail": "2 partitions"} in outcomes
