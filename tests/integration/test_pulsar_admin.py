"""The Pulsar admin client and the provisioning plans against a local fake of the admin REST API.

Only what a real broker cannot easily be made to answer stays here: 5xx and retries, stalls and timeouts, an
unreachable API, 403 for a non-super-user role, the Pulsar IO sink endpoints, failing health. Provisioning,
idempotency, refusals, schemas, stats and health against Apache Pulsar itself are in
tests/real_pulsar/test_real_admin.py; the fake (tests/pulsar_admin_fake.py) answers as that broker did.
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
    assert str(err.value) == (
        "list clusters failed: HTTP 401: Authentication required: authentication failed "
        "(the broker rejected pulsar.auth_token)"
    )
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
            assert err.value.status == 403 and err.value.message.startswith("Don't have admin permission: ")
            assert "authorization failed" in err.value.message
        assert fake.tenants == {}


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


async def test_failing_health_is_reported_and_never_retried() -> None:
    async with FakePulsarAdmin(healthy=False) as fake, fast_admin(fake.url) as admin:
        health = await admin.broker_health()
    assert not health.healthy and health.status == 500
    assert "Timed out reading the health-check topic" in health.detail
    assert len(fake.calls("GET", "/brokers/health$")) == 1
