"""The Pulsar admin client and the provisioning plans against a local fake of the admin REST API.

The fake (tests/pulsar_admin_fake.py) answers with the documented status codes and ``{"reason": …}`` bodies of
Pulsar 3.x/4.x; these tests check what an operator would: what exists on the cluster afterwards, what a
second run reports, and what the error message says when something fails.
"""

from __future__ import annotations

import json
import logging

import pytest

from control_plane.provision import (
    EMBEDDED_NOTE,
    SCHEMA_OF_CHANNEL,
    admin_configured,
    avro_schema,
    load_namespace_policies,
    provision_base,
    provision_instrument,
    provision_jdbc_sink,
)
from control_plane.pulsar_admin import AdminError, PulsarAdmin
from pulse.runtime.procs import free_port
from pulse.settings import PulsarSettings, Settings
from pulse.topics import NAMESPACES, topic
from tests.pulsar_admin_fake import FakePulsarAdmin

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c3VwZXJ1c2Vy.s3cr3t-signature"
TENANT = "market-data"


def settings_for(url: str, token: str = "") -> Settings:
    return Settings(pulsar=PulsarSettings(admin_url=url, auth_token=token, tenant=TENANT))


def fast_admin(url: str, token: str = "", **kw: object) -> PulsarAdmin:
    kw.setdefault("backoff_initial_s", 0.001)
    kw.setdefault("backoff_max_s", 0.005)
    return PulsarAdmin(url, token, **kw)  # type: ignore[arg-type]


async def test_full_provisioning_then_second_run_reports_everything_existing() -> None:
    async with FakePulsarAdmin(tokens={TOKEN: "admin"}) as fake:
        settings = settings_for(fake.url, TOKEN)
        async with PulsarAdmin.from_settings(settings) as admin:
            first = await provision_base(admin, settings)
            first += await provision_instrument(
                admin, "crypto", "kraken", "BTC/USD", ["trade", "book", "status"], partitions=2, tenant=TENANT
            )

            # what an operator checks on the cluster
            assert fake.tenants[TENANT]["allowedClusters"] == ["standalone"]
            assert sorted(fake.namespaces) == sorted(f"{TENANT}/{ns}" for ns in NAMESPACES)
            crypto = await admin.get_policies(f"{TENANT}/crypto")
            assert crypto["retention_policies"] == {"retentionTimeInMinutes": 4320, "retentionSizeInMB": 20480}
            assert crypto["message_ttl_in_seconds"] == 86400
            assert crypto["deduplicationEnabled"] is True
            derived = await admin.get_policies(f"{TENANT}/derived")
            assert derived["compaction_threshold"] == 104857600
            assert derived["message_ttl_in_seconds"] is None  # not in namespaces.yaml: broker default kept
            trading = await admin.get_policies(f"{TENANT}/trading")
            assert trading["retention_policies"] == {"retentionTimeInMinutes": -1, "retentionSizeInMB": -1}

            trade_topic = topic("crypto", "kraken", "BTC/USD", "trade", TENANT)
            assert trade_topic == "persistent://market-data/crypto/kraken.BTC-USD.trade"
            assert await admin.partition_count(trade_topic) == 2
            assert await admin.list_topics(f"{TENANT}/crypto") == [
                f"persistent://market-data/crypto/kraken.BTC-USD.{ch}" for ch in ("book", "status", "trade")
            ]
            schema = await admin.get_schema(trade_topic)
            assert schema is not None and schema["type"] == "JSON"
            record = json.loads(schema["data"])
            assert record["type"] == "record" and record["name"] == "Trade"
            assert {"price", "size", "ts_event", "venue", "symbol"} <= {f["name"] for f in record["fields"]}
            assert schema["properties"]["pulse.event_types"] == "status,trade"

            assert {r.outcome for r in first} == {"created"}
            assert all(str(r).startswith(r.step) for r in first)

            # second run: nothing new, nothing changed, no error
            n_requests = len(fake.requests)
            second = await provision_base(admin, settings)
            second += await provision_instrument(
                admin, "crypto", "kraken", "BTC/USD", ["trade", "book", "status"], partitions=2, tenant=TENANT
            )
        assert [r.step for r in second] == [r.step for r in first]
        assert {r.outcome for r in second} == {"exists"}, [str(r) for r in second if r.outcome != "exists"]
        later = fake.requests[n_requests:]
        assert not [r for r in later if r.method == "POST"], "a second run must not re-set policies or schemas"
        assert len(fake.schemas[f"{TENANT}/crypto/kraken.BTC-USD.trade"]) == 1


async def test_changed_policy_is_updated_and_reported() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        settings = settings_for(fake.url)
        await provision_base(admin, settings)
        await admin.set_message_ttl(f"{TENANT}/fx", 60)  # someone changed it by hand
        results = await provision_base(admin, settings)
    changed = [r for r in results if r.outcome != "exists"]
    assert [(r.step, r.outcome, r.detail) for r in changed] == [
        ("message TTL on market-data/fx", "updated", "60 → 86400")
    ]
    assert fake.namespaces[f"{TENANT}/fx"]["message_ttl_in_seconds"] == 86400


async def test_409_already_exists_is_success() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        assert await admin.create_tenant(TENANT, ["standalone"]) == "created"
        assert await admin.create_tenant(TENANT, ["standalone"]) == "exists"
        assert await admin.create_namespace(f"{TENANT}/crypto") == "created"
        assert await admin.create_namespace(f"{TENANT}/crypto") == "exists"
        t = topic("crypto", "kraken", "ETH/USD", "trade", TENANT)
        assert await admin.create_partitioned_topic(t, 1) == "created"
        assert await admin.create_partitioned_topic(t, 1) == "exists"
    assert [r.method for r in fake.calls("PUT", "/partitions$")] == ["PUT", "PUT"]


async def test_existing_topic_with_other_partition_count_is_reported() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        await provision_base(admin, settings_for(fake.url))
        await provision_instrument(admin, "fx", "oanda", "EUR/USD", ["quote"], partitions=1, tenant=TENANT)
        again = await provision_instrument(
            admin, "fx", "oanda", "EUR/USD", ["quote"], partitions=4, tenant=TENANT, register_schemas=False
        )
    assert [(r.outcome, r.detail) for r in again] == [("exists", "1 partitions, not the 4 asked for")]


async def test_5xx_is_retried_then_succeeds() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url, retries=3) as admin:
        fake.fail("PUT", r"/namespaces/market-data/crypto$", status=503, times=2)
        fake.fail("POST", r"/namespaces/market-data/fx/retention$", status=500, times=1, reason="ZooKeeper hiccup")
        results = await provision_base(admin, settings_for(fake.url))
    assert {r.outcome for r in results} == {"created"}
    assert len(fake.calls("PUT", r"/namespaces/market-data/crypto$")) == 3
    assert len(fake.calls("POST", r"/namespaces/market-data/fx/retention$")) == 2
    assert fake.namespaces[f"{TENANT}/crypto"]["deduplicationEnabled"] is True


async def test_5xx_forever_stops_with_the_step_and_status() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url, retries=2) as admin:
        fake.fail("POST", r"/namespaces/market-data/fx/retention$", status=500, times=None, reason="Store down")
        with pytest.raises(AdminError) as err:
            await provision_base(admin, settings_for(fake.url))
    exc = err.value
    assert exc.step == "set retention on market-data/fx" and exc.status == 500
    assert str(exc) == "set retention on market-data/fx failed: HTTP 500: Store down"
    assert len(fake.calls("POST", r"/fx/retention$")) == 3  # 1 + 2 retries, then stop
    # the first failure stops the plan: nothing after it was attempted; what was done before is reported
    assert not fake.calls("POST", r"/fx/messageTTL$")
    assert f"{TENANT}/historical" not in fake.namespaces
    assert [r.step for r in exc.completed][-1] == "namespace market-data/fx"


async def test_401_is_fatal_and_not_retried() -> None:
    async with FakePulsarAdmin(tokens={TOKEN: "admin"}) as fake, fast_admin(fake.url, "wrong-token") as admin:
        with pytest.raises(AdminError) as err:
            await provision_base(admin, settings_for(fake.url))
    assert err.value.status == 401
    assert str(err.value) == "list clusters failed: HTTP 401: Error 401 Authentication required"
    assert len(fake.requests) == 1


async def test_missing_token_is_401_and_non_superuser_token_is_403() -> None:
    async with FakePulsarAdmin(tokens={TOKEN: "admin", "reader-token": "reader"}) as fake:
        async with fast_admin(fake.url) as anonymous:
            with pytest.raises(AdminError) as err:
                await anonymous.create_tenant(TENANT, ["standalone"])
            assert err.value.status == 401
        async with fast_admin(fake.url, "reader-token") as reader:
            with pytest.raises(AdminError) as err:
                await reader.create_tenant(TENANT, ["standalone"])
            assert (err.value.status, err.value.message) == (403, "Don't have admin permission")
        assert fake.tenants == {}


async def test_404_for_a_namespace_whose_tenant_is_missing() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        with pytest.raises(AdminError) as err:
            await admin.create_namespace("nobody/crypto")
    assert str(err.value) == "create namespace nobody/crypto failed: HTTP 404: Tenant does not exist"
    assert len(fake.requests) == 1


async def test_412_cases_are_errors_with_the_server_reason() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        with pytest.raises(AdminError) as err:
            await admin.create_tenant(TENANT, ["us-west"])
        assert (err.value.status, err.value.message) == (412, "Clusters do not exist")
        await admin.create_tenant(TENANT, ["standalone"])
        with pytest.raises(AdminError) as err:
            await admin.create_namespace(f"{TENANT}/bad name")
        assert (err.value.status, err.value.message) == (412, "Namespace name is not valid")


async def test_deleting_a_non_empty_namespace_is_refused() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        await provision_base(admin, settings_for(fake.url))
        await provision_instrument(admin, "crypto", "kraken", "BTC/USD", ["trade"], tenant=TENANT)
        with pytest.raises(AdminError) as err:
            await admin.delete_namespace(f"{TENANT}/crypto")
        assert (err.value.status, err.value.message) == (409, "Namespace is not empty")
        await admin.delete_namespace(f"{TENANT}/alerts")
        assert f"{TENANT}/alerts" not in fake.namespaces


async def test_incompatible_schema_409_is_an_error_not_success() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        await provision_base(admin, settings_for(fake.url))
        t = topic("crypto", "kraken", "BTC/USD", "trade", TENANT)
        await provision_instrument(admin, "crypto", "kraken", "BTC/USD", ["trade"], tenant=TENANT)
        other = {"type": "record", "name": "Trade", "fields": [{"name": "only", "type": "string"}]}
        with pytest.raises(AdminError) as err:
            await admin.upload_schema(t, "JSON", json.dumps(other))
        assert err.value.status == 409 and "Incompatible schema" in err.value.message
        with pytest.raises(AdminError) as err:
            await admin.upload_schema(t, "JSON", "not a schema")
        assert err.value.status == 422


async def test_token_is_sent_as_bearer_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakePulsarAdmin(tokens={TOKEN: "admin"}) as fake:
        settings = settings_for(fake.url, TOKEN)
        fake.fail("PUT", r"/tenants/", status=502, times=1)  # a retry logs a warning
        async with PulsarAdmin.from_settings(settings, backoff_initial_s=0.001) as admin:
            await provision_base(admin, settings)
            assert TOKEN not in repr(admin)
            fake.fail("GET", r"/clusters$", status=500, times=None, reason="boom")
            with pytest.raises(AdminError) as err:
                await fast_admin(fake.url, TOKEN, retries=1).list_clusters()
    assert {r.authorization for r in fake.requests} == {f"Bearer {TOKEN}"}
    assert TOKEN not in str(err.value)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "admin retry" in logged and "admin call" in logged
    assert TOKEN not in logged


async def test_stats_and_health_parsing() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        await provision_base(admin, settings_for(fake.url))
        await provision_instrument(admin, "crypto", "kraken", "BTC/USD", ["trade"], partitions=3, tenant=TENANT)
        t = topic("crypto", "kraken", "BTC/USD", "trade", TENANT)
        fake.stats[f"{TENANT}/crypto/kraken.BTC-USD.trade"] = {
            "msgRateIn": 512.5,
            "msgRateOut": 1025.0,
            "msgThroughputIn": 81920.0,
            "msgInCounter": 123456,
            "storageSize": 9_000_000,
            "backlogSize": 4096,
            "publishers": [{"producerName": "kraken-1"}],
            "subscriptions": {
                "pulse-sink-postgres": {"msgBacklog": 40, "msgRateOut": 512.5, "consumers": [{}], "type": "Shared"},
                "pulse-alerting": {"msgBacklog": 2, "msgRateOut": 512.5, "consumers": [], "type": "Failover"},
            },
        }
        s = await admin.stats(t)
        assert (s.msg_rate_in, s.msg_rate_out, s.msg_in_counter, s.partitions) == (512.5, 1025.0, 123456, 3)
        assert s.publishers == 1 and s.backlog == 42
        assert s.subscriptions["pulse-sink-postgres"].consumers == 1
        assert s.subscriptions["pulse-alerting"].type == "Failover"
        assert fake.calls("GET", "/partitioned-stats$")[-1].query == "perPartition=false"

        # a topic created by first use (not partitioned): stats() falls back to /stats
        fake.topics.add(f"{TENANT}/crypto/kraken.SOL-USD.trade")
        plain = await admin.stats(topic("crypto", "kraken", "SOL/USD", "trade", TENANT))
        assert plain.partitions == 0 and plain.backlog == 0
        with pytest.raises(AdminError) as err:
            await admin.topic_stats(topic("crypto", "kraken", "XRP/USD", "trade", TENANT))
        assert err.value.status == 404

        health = await admin.broker_health()
        assert (health.healthy, health.status, health.detail) == (True, 200, "ok")
        fake.healthy = False
        health = await admin.broker_health()
        assert not health.healthy and health.status == 500
        assert "Timed out reading the health-check topic" in health.detail
        assert len(fake.calls("GET", "/brokers/health$")) == 2  # health is never retried


async def test_unreachable_admin_api_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with fast_admin(url, retries=2) as admin:
        health = await admin.broker_health()
        assert not health.healthy and health.status == 0
        with pytest.raises(AdminError) as err:
            await admin.list_clusters()
    assert err.value.status == 0 and "no response" in str(err.value)


async def test_a_stalled_answer_times_out_and_is_retried() -> None:
    async with FakePulsarAdmin() as fake, fast_admin(fake.url, timeout_s=0.2, retries=1) as admin:
        fake.fail("GET", r"/clusters$", status=200, times=1, delay_s=1.0)
        assert await admin.list_clusters() == ["standalone"]
        assert len(fake.calls("GET", r"/clusters$")) == 2


async def test_jdbc_sink_for_the_historical_namespace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "pg-s3cret-pw"
    async with FakePulsarAdmin() as fake, fast_admin(fake.url) as admin:
        await provision_base(admin, settings_for(fake.url))
        t = topic("historical", "dukascopy", "EUR/USD", "quote", TENANT)
        kwargs = {
            "name": "quotes-to-postgres",
            "inputs": [t],
            "jdbc_url": "jdbc:postgresql://db:5432/pulse",
            "table_name": "quotes",
            "user_name": "pulse",
            "password": password,
            "tenant": TENANT,
        }
        first = await provision_jdbc_sink(admin, **kwargs)  # type: ignore[arg-type]
        second = await provision_jdbc_sink(admin, **kwargs)  # type: ignore[arg-type]
        fake.sinks.clear()
        fake.fail("GET", r"/admin/v3/sinks/", status=404, times=1, reason="Sink quotes-to-postgres doesn't exist")
        fake.sinks[f"{TENANT}/historical/quotes-to-postgres"] = {}
        raced = await admin.create_sink(TENANT, "historical", "quotes-to-postgres", {"archive": "builtin://x"})
        with pytest.raises(AdminError) as err:
            await admin.create_sink("nobody", "historical", "s", {"archive": "builtin://jdbc-postgres"})
    assert (first.outcome, second.outcome, raced) == ("created", "exists", "exists")
    assert (err.value.status, err.value.message) == (400, "Tenant does not exist")
    post = fake.calls("POST", r"/admin/v3/sinks/market-data/historical/quotes-to-postgres$")[0]
    assert post.content_type.startswith("multipart/form-data")
    assert b'name="sinkConfig"' in post.body and b"builtin://jdbc-postgres" in post.body
    cfg = json.loads(post.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0])
    assert cfg["inputs"] == [t] and cfg["archive"] == "builtin://jdbc-postgres"
    assert {"userName", "password", "jdbcUrl", "tableName", "batchSize", "timeoutMs"} <= set(cfg["configs"])
    assert password not in "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def test_embedded_broker_has_no_admin_api() -> None:
    assert not admin_configured(Settings())
    assert admin_configured(settings_for("http://broker:8080"))
    assert EMBEDDED_NOTE == "embedded broker: topics are created on first use"


def test_namespace_policies_file_covers_every_namespace() -> None:
    policies = load_namespace_policies()
    assert set(policies) == set(NAMESPACES)
    assert policies["control"].compaction_threshold_bytes == 1048576


_AVRO_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _check_avro(t: object, names: set[str]) -> None:
    if isinstance(t, str):
        assert t in _AVRO_PRIMITIVES or t in names, t
    elif isinstance(t, list):
        assert len({json.dumps(x, sort_keys=True) for x in t}) == len(t), f"duplicate union branch {t}"
        for x in t:
            assert not isinstance(x, list), "nested union"
            _check_avro(x, names)
    else:
        assert isinstance(t, dict)
        if t["type"] == "record":
            names.add(f"pulse.events.{t['name']}")
            seen = set()
            for f in t["fields"]:
                assert f["name"].isidentifier() and f["name"] not in seen
                seen.add(f["name"])
                _check_avro(f["type"], names)
                if "default" in f and isinstance(f["type"], list):
                    assert f["type"][0] == "null" and f["default"] is None
        elif t["type"] == "array":
            _check_avro(t["items"], names)
        elif t["type"] == "map":
            _check_avro(t["values"], names)
        else:
            raise AssertionError(t)


@pytest.mark.parametrize("tag", sorted(set(SCHEMA_OF_CHANNEL.values()) | {"quote_batch", "book_snapshot"}))
def test_registered_schemas_are_valid_avro_records(tag: str) -> None:
    record = avro_schema(tag)
    assert record["type"] == "record"
    _check_avro(record, set())
    by_name = {f["name"]: f for f in record["fields"]}
    assert by_name["ts_event"]["type"] == "long" and by_name["symbol"]["type"] == "string"


async def test_a_token_over_plain_http_warns_once_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with FakePulsarAdmin(tokens={TOKEN: "admin"}) as fake:
        for _ in range(3):
            async with fast_admin(fake.url, TOKEN) as admin:
                await admin.list_clusters()
        async with fast_admin(fake.url) as admin:  # no token: nothing to warn about (and refused)
            with pytest.raises(AdminError):
                await admin.list_clusters()
    warnings = [r for r in caplog.records if "clear text" in r.getMessage()]
    assert len(warnings) == 1 and fake.url.startswith("http://")
    assert "https://" in warnings[0].getMessage() and TOKEN not in f"{warnings[0].getMessage()} {warnings[0].__dict__}"
