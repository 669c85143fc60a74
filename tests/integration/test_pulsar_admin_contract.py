"""Contract: every admin call Pulse makes is an endpoint of the Pulsar admin REST API, with a documented answer.

The reference list is ``tests/fixtures/pulsar_admin/endpoints.json``, a small hand-made extract of the
Pulsar REST reference (its ``_source`` says where each entry comes from). The test drives every public
method of :class:`PulsarAdmin` and the provisioning plans against the fake server and checks each recorded
request — method and path — against that list, and that the fake only answered with documented statuses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from control_plane.provision import provision_base, provision_instrument, provision_jdbc_sink
from control_plane.pulsar_admin import AdminError, PulsarAdmin
from pulse.settings import PulsarSettings, Settings
from pulse.topics import topic
from tests.pulsar_admin_fake import FakePulsarAdmin

SPEC = json.loads((Path(__file__).parents[1] / "fixtures" / "pulsar_admin" / "endpoints.json").read_text())


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", re.escape(path)) + "$")


ENDPOINTS = [(e["method"], _template(e["path"]), e) for e in SPEC["endpoints"]]


def _match(method: str, path: str) -> dict | None:
    for m, rx, e in ENDPOINTS:
        if m == method and rx.match(path):
            return e
    return None


async def test_every_call_is_a_documented_endpoint() -> None:
    t = "market-data"
    async with FakePulsarAdmin() as fake, PulsarAdmin(fake.url, backoff_initial_s=0.001) as admin:
        settings = Settings(pulsar=PulsarSettings(admin_url=fake.url, tenant=t))
        for _ in range(2):  # the second run takes the "exists" paths
            await provision_base(admin, settings)
            await provision_instrument(admin, "crypto", "kraken", "BTC/USD", ["trade", "book"], 2, tenant=t)
            await provision_jdbc_sink(
                admin,
                name="s",
                inputs=[topic("historical", "dukascopy", "EUR/USD", "quote", t)],
                jdbc_url="jdbc:postgresql://db/pulse",
                table_name="quotes",
                tenant=t,
            )
        trade = topic("crypto", "kraken", "BTC/USD", "trade", t)
        fake.topics.add(f"{t}/crypto/kraken.ETH-USD.trade")
        await admin.get_tenant(t)
        await admin.list_namespaces(t)
        await admin.list_topics(f"{t}/crypto")
        await admin.stats(trade)
        await admin.stats(topic("crypto", "kraken", "ETH/USD", "trade", t))
        await admin.broker_health()
        await admin.delete_namespace(f"{t}/alerts")
        with pytest.raises(AdminError):
            await admin.delete_namespace(f"{t}/crypto")

    undocumented = [f"{r.method} {r.path}" for r in fake.requests if _match(r.method, r.path) is None]
    assert not undocumented, undocumented
    off_spec = [
        f"{r.method} {r.path} → {r.status}"
        for r in fake.requests
        if r.status not in (_match(r.method, r.path) or {}).get("statuses", [])
    ]
    assert not off_spec, off_spec
    used = {(_match(r.method, r.path) or {}).get("path", "") + " " + r.method for r in fake.requests}
    assert len(used) == len(SPEC["endpoints"]), "an endpoint in the extract is never exercised"


def test_the_extract_names_its_source() -> None:
    assert "apache/pulsar" in SPEC["_source"] and "admin-rest-api" in SPEC["_source"]
    for e in SPEC["endpoints"]:
        assert e["path"].startswith(("/admin/v2/", "/admin/v3/")) and e["source"] and e["statuses"]
