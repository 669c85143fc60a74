"""A local stand-in for the Pulsar admin REST API (the endpoints Pulse uses), with in-memory state.

Only for what a real broker cannot easily be made to answer: 5xx, stalls/timeouts, refused connections, the
Pulsar IO sink endpoints of a function worker. Everything else is tested against Apache Pulsar itself
(tests/real_pulsar/test_real_admin.py); where this fake and the broker disagreed, the broker won.

**Verified against Apache Pulsar 4.0.7** (statuses and reasons copied from its answers): tenants — PUT 204, 409
"Tenant already exist", 412 "Tenant name is not valid" / "Clusters cannot be empty or blank" / "Clusters do not
exist"; namespaces — PUT 204, 404 "Tenant does not exist" (missing tenant), 409 "Namespace already exists", 412
"Namespace name is not valid", DELETE 409 "Cannot delete non empty namespace", a policy never set is *absent*
from the Policies document (not null); policy setters — 204, 404 "Namespace does not exist", 412 "Invalid value
for message TTL, message TTL must >= 0", 412 "compactionThreshold must be 0 or more", 400 for an incomplete
retention body, 400 Jackson plain text for a non-boolean deduplication body, and 415 for a bodiless PUT/POST
without ``Content-Type: application/json``; topics — PUT …/partitions 204, 409 "This topic already exists"
(partitioned or not), 406 "Number of partitions should be more than 0", 404 "Namespace not found", 412
"Partitioned Topic Name should not contain '-partition-'" (other characters, even spaces, are accepted), GET
…/partitions ``{"partitions": N, "deleted": false}`` (0 when not partitioned) or 404 "Topic … not found",
stats / partitioned-stats 200 or 404; schemas — POST 200 ``{"version": {"version": n}}`` (the same version for
an identical schema), 404 "Namespace does not exist", and **409/422 as Jetty error pages**, not
``{"reason": …}`` (for ``Accept: application/json`` a JSON object whose ``message`` is HTML-escaped, else HTML
with it in the ``<title>``): "Incompatible schema: exists schema type …", "Error during schema compatibility check with
strategy FULL: …" (a field without a default added; one with a default is compatible), "Invalid schema
definition data for JSON schema"; brokers/health 200 ``ok``; authentication — 401 with Jetty's error page
"Authentication required" for a missing or wrongly signed token.

Not verified on the real broker (written from the REST reference and the JAX-RS resources in ``apache/pulsar``
``pulsar-broker/src/main/java/org/apache/pulsar/broker/admin/``, ``pulsar-functions/worker/…/SinksImpl.java``):
403 "Don't have admin permission" for a non-super-user role (needs ``authorizationEnabled``); the sinks
(``/admin/v3``) — POST multipart 200, 400 "Sink … already exists" / "Tenant does not exist" / "Namespace does not
exist" / missing config, GET 404; the compatibility check here is simplified (fields without defaults may be
neither added nor removed).

Fault injection: :meth:`FakePulsarAdmin.fail` makes matching requests answer a status (e.g. 503) N times (or
forever), or stall, so retries and timeouts can be tested. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from aiohttp import web

_NAME = re.compile(r"^[-=:.\w]+$")  # Pulsar NamedEntity.checkName: letters, digits, - = : . _


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int | None  # None: forever
    reason: str
    delay_s: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    authorization: str | None
    content_type: str
    body: bytes
    status: int = 0  # the answer's status


@dataclass
class FakePulsarAdmin:
    """``async with FakePulsarAdmin() as fake: … fake.url …``."""

    clusters: list[str] = field(default_factory=lambda: ["standalone"])
    tokens: dict[str, str] = field(default_factory=dict)  # token → role; empty: authentication disabled
    superusers: set[str] = field(default_factory=lambda: {"admin"})
    healthy: bool = True
    max_partitions: int = 0  # maxNumPartitionsPerPartitionedTopic; 0 = unlimited

    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)  # "t/ns" → Policies
    partitioned: dict[str, int] = field(default_factory=dict)  # "t/ns/local" → partitions
    topics: set[str] = field(default_factory=set)  # non-partitioned "t/ns/local" (e.g. created by first use)
    schemas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "t/ns/local" → versions
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)  # "t/ns/name" → SinkConfig
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # "t/ns/local" → TopicStats override
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    url: str = ""
    _runner: web.AppRunner | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    async def __aenter__(self) -> FakePulsarAdmin:
        app = web.Application(middlewares=[self._record, self._faults, self._auth])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int = 503,
        times: int | None = 1,
        reason: str = "Service unavailable",
        delay_s: float = 0.0,
    ) -> None:
        """Answer requests matching ``method`` and ``path_regex`` (searched) with ``status`` ``times`` times."""
        self.faults.append(Fault(method.upper(), re.compile(path_regex), status, times, reason, delay_s))

    def calls(self, method: str, path_regex: str) -> list[Recorded]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and rx.search(r.path)]

    # -- middlewares ------------------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        rec = Recorded(
            request.method,
            request.path,
            request.query_string,
            request.headers.get("Authorization"),
            request.headers.get("Content-Type", ""),
            body,
        )
        self.requests.append(rec)
        resp = await handler(request)
        rec.status = resp.status
        return resp

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        for f in self.faults:
            if f.method == request.method and f.pattern.search(request.path) and (f.times is None or f.times > 0):
                if f.times is not None:
                    f.times -= 1
                if f.delay_s:
                    await asyncio.sleep(f.delay_s)
                return _err(f.status, f.reason)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.tokens:
            header = request.headers.get("Authorization", "")
            token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
            role = self.tokens.get(token or "")
            if role is None:  # AuthenticationFilter's sendError(401, "Authentication required")
                return _jetty_error(request, 401, "Authentication required")
            if role not in self.superusers:
                return _err(403, "Don't have admin permission")
        return await handler(request)

    # -- routes -----------------------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        r = app.router
        v2 = "/admin/v2"
        r.add_get(f"{v2}/clusters", self.list_clusters)
        r.add_get(f"{v2}/brokers/health", self.health)
        r.add_get(f"{v2}/tenants", self.list_tenants)
        r.add_get(f"{v2}/tenants/{{tenant}}", self.get_tenant)
        r.add_put(f"{v2}/tenants/{{tenant}}", self.create_tenant)
        r.add_delete(f"{v2}/tenants/{{tenant}}", self.delete_tenant)
        r.add_get(f"{v2}/namespaces/{{tenant}}", self.list_namespaces)
        ns = f"{v2}/namespaces/{{tenant}}/{{ns}}"
        r.add_get(ns, self.get_policies)
        r.add_put(ns, self.create_namespace)
        r.add_delete(ns, self.delete_namespace)
        r.add_post(f"{ns}/retention", self.set_retention)
        r.add_post(f"{ns}/messageTTL", self.set_ttl)
        r.add_post(f"{ns}/deduplication", self.set_dedup)
        r.add_put(f"{ns}/compactionThreshold", self.set_compaction)
        pt = f"{v2}/persistent/{{tenant}}/{{ns}}"
        r.add_get(pt, self.list_topics)
        r.add_get(f"{pt}/partitioned", self.list_partitioned)
        r.add_put(f"{pt}/{{topic}}/partitions", self.create_partitioned)
        r.add_get(f"{pt}/{{topic}}/partitions", self.get_partitions)
        r.add_get(f"{pt}/{{topic}}/stats", self.topic_stats)
        r.add_get(f"{pt}/{{topic}}/partitioned-stats", self.partitioned_stats)
        sc = f"{v2}/schemas/{{tenant}}/{{ns}}/{{topic}}/schema"
        r.add_get(sc, self.get_schema)
        r.add_post(sc, self.post_schema)
        sk = "/admin/v3/sinks/{tenant}/{ns}/{name}"
        r.add_get(sk, self.get_sink)
        r.add_post(sk, self.create_sink)

    # -- clusters, brokers ------------------------------------------------------------------------------
    async def list_clusters(self, request: web.Request) -> web.Response:
        return web.json_response(self.clusters)

    async def health(self, request: web.Request) -> web.Response:
        if not self.healthy:
            return _err(500, "Timed out reading the health-check topic")
        return web.Response(text="ok", content_type="application/json")

    # -- tenants ----------------------------------------------------------------------------------------
    async def list_tenants(self, request: web.Request) -> web.Response:
        return web.json_response(sorted(self.tenants))

    async def get_tenant(self, request: web.Request) -> web.Response:
        t = self.tenants.get(request.match_info["tenant"])
        return web.json_response(t) if t is not None else _err(404, "Tenant does not exist")

    async def create_tenant(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        info = await _json(request)
        clusters = (info or {}).get("allowedClusters") or []
        if not isinstance(info, dict) or not [c for c in clusters if str(c).strip()]:
            return _err(412, "Clusters cannot be empty or blank")
        if any(c not in self.clusters and c != "global" for c in clusters):
            return _err(412, "Clusters do not exist")
        if not _NAME.match(tenant):
            return _err(412, "Tenant name is not valid")
        if tenant in self.tenants:
            return _err(409, "Tenant already exist")
        self.tenants[tenant] = {"adminRoles": list(info.get("adminRoles") or []), "allowedClusters": clusters}
        return web.Response(status=204)

    async def delete_tenant(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant not in self.tenants:
            return _err(404, "Tenant doesn't exist")
        if any(n.startswith(f"{tenant}/") for n in self.namespaces):
            return _err(409, "The tenant still has active namespaces")
        del self.tenants[tenant]
        return web.Response(status=204)

    # -- namespaces -------------------------------------------------------------------------------------
    def _ns(self, request: web.Request) -> tuple[str, web.Response | None]:
        t, ns = request.match_info["tenant"], request.match_info["ns"]
        fq = f"{t}/{ns}"
        if t not in self.tenants:
            return fq, _err(404, "Tenant does not exist")
        if fq not in self.namespaces:
            return fq, _err(404, "Namespace does not exist")
        return fq, None

    async def list_namespaces(self, request: web.Request) -> web.Response:
        t = request.match_info["tenant"]
        if t not in self.tenants:
            return _err(404, "Tenant does not exist")
        return web.json_response(sorted(n for n in self.namespaces if n.startswith(f"{t}/")))

    async def create_namespace(self, request: web.Request) -> web.Response:
        t, ns = request.match_info["tenant"], request.match_info["ns"]
        if not _NAME.match(ns):
            return _err(412, "Namespace name is not valid")
        if t not in self.tenants:
            return _err(404, "Tenant does not exist")
        fq = f"{t}/{ns}"
        if fq in self.namespaces:
            return _err(409, "Namespace already exists")
        # Apache Pulsar leaves a policy that was never set out of the document (not null)
        self.namespaces[fq] = {
            "bundles": {"boundaries": ["0x00000000", "0x40000000", "0x80000000", "0xc0000000", "0xffffffff"],
                        "numBundles": 4},
            "schema_compatibility_strategy": "UNDEFINED",
            "is_allow_auto_update_schema": True,
            "schema_validation_enforced": False,
        }  # fmt: skip
        return web.Response(status=204)

    async def get_policies(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        return err or web.json_response(self.namespaces[fq])

    async def delete_namespace(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        prefix = f"{fq}/"
        if any(k.startswith(prefix) for k in [*self.partitioned, *self.topics]):
            return _err(409, "Cannot delete non empty namespace")
        del self.namespaces[fq]
        return web.Response(status=204)

    async def set_retention(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        body = await _json(request)
        if not isinstance(body, dict) or not {"retentionTimeInMinutes", "retentionSizeInMB"} <= set(body):
            return _err(
                400,
                "Invalid retention policy: Setting a single time or size limit to 0 is invalid when one of the "
                "limits has a non-zero value. Use the value of -1 instead of 0 to ignore a specific limit. To "
                "disable retention both limits must be set to 0.",
            )
        self.namespaces[fq]["retention_policies"] = {
            "retentionTimeInMinutes": int(body["retentionTimeInMinutes"]),
            "retentionSizeInMB": int(body["retentionSizeInMB"]),
        }
        return web.Response(status=204)

    async def set_ttl(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        body = await _json(request)
        if isinstance(body, bool) or not isinstance(body, int) or body < 0:
            return _err(412, "Invalid value for message TTL, message TTL must >= 0")
        self.namespaces[fq]["message_ttl_in_seconds"] = body
        return web.Response(status=204)

    async def set_dedup(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        body = await _json(request)
        if not isinstance(body, bool):  # Jackson's message as plain text, not {"reason": …}
            return web.Response(status=400, text="Cannot deserialize value of type `boolean`")
        self.namespaces[fq]["deduplicationEnabled"] = body
        return web.Response(status=204)

    async def set_compaction(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        body = await _json(request)
        if isinstance(body, bool) or not isinstance(body, int) or body < 0:
            return _err(412, "compactionThreshold must be 0 or more")
        self.namespaces[fq]["compaction_threshold"] = body
        return web.Response(status=204)

    # -- topics -----------------------------------------------------------------------------------------
    async def list_topics(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        out = [f"persistent://{k}" for k in sorted(self.topics) if k.startswith(f"{fq}/")]
        for k, n in sorted(self.partitioned.items()):
            if k.startswith(f"{fq}/"):
                out += [f"persistent://{k}-partition-{i}" for i in range(n)]
        return web.json_response(out)

    async def list_partitioned(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        return web.json_response([f"persistent://{k}" for k in sorted(self.partitioned) if k.startswith(f"{fq}/")])

    async def create_partitioned(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return _err(404, "Namespace not found") if err.status == 404 else err
        local = request.match_info["topic"]
        if "-partition-" in local:  # Apache Pulsar accepts other characters in a topic's local name (even spaces)
            return _err(412, "Partitioned Topic Name should not contain '-partition-'")
        n = await _json(request)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            return _err(406, "Number of partitions should be more than 0")
        if self.max_partitions and n > self.max_partitions:
            return _err(406, f"Number of partitions should be less than or equal to {self.max_partitions}")
        key = f"{fq}/{local}"
        if key in self.partitioned or key in self.topics:
            return _err(409, "This topic already exists")  # the same answer for partitioned and non-partitioned
        self.partitioned[key] = n
        return web.Response(status=204)

    async def get_partitions(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        key = f"{fq}/{request.match_info['topic']}"
        if key not in self.partitioned and key not in self.topics:
            return _err(404, f"Topic persistent://{key} not found")
        return web.json_response({"partitions": self.partitioned.get(key, 0), "deleted": False})

    def _stats_doc(self, key: str) -> dict[str, Any]:
        doc = {
            "msgRateIn": 0.0,
            "msgRateOut": 0.0,
            "msgThroughputIn": 0.0,
            "msgThroughputOut": 0.0,
            "msgInCounter": 0,
            "bytesInCounter": 0,
            "storageSize": 0,
            "backlogSize": 0,
            "publishers": [],
            "subscriptions": {},
            "replication": {},
        }
        doc.update(self.stats.get(key, {}))
        return doc

    async def topic_stats(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        local = request.match_info["topic"]
        key = f"{fq}/{local}"
        base = re.sub(r"-partition-\d+$", "", key)
        if key not in self.topics and not (base != key and base in self.partitioned):
            return _err(404, f"Topic persistent://{key} not found")
        return web.json_response(self._stats_doc(key))

    async def partitioned_stats(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        key = f"{fq}/{request.match_info['topic']}"
        if key not in self.partitioned:
            return _err(404, f"Partitioned Topic persistent://{key} not found")
        doc = self._stats_doc(key)
        doc["metadata"] = {"partitions": self.partitioned[key]}
        if request.query.get("perPartition", "true") != "false":
            doc["partitions"] = {
                f"persistent://{key}-partition-{i}": self._stats_doc(f"{key}-partition-{i}")
                for i in range(self.partitioned[key])
            }
        return web.json_response(doc)

    # -- schemas ----------------------------------------------------------------------------------------
    async def get_schema(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return err
        versions = self.schemas.get(f"{fq}/{request.match_info['topic']}")
        if not versions:
            return _err(404, "Schema not found")
        return web.json_response(versions[-1])

    async def post_schema(self, request: web.Request) -> web.Response:
        fq, err = self._ns(request)
        if err:
            return _err(404, "Namespace does not exist") if err.status == 404 else err
        payload = await _json(request)
        if not isinstance(payload, dict) or "type" not in payload or "schema" not in payload:
            return _err(422, "Invalid schema data")
        stype, data, props = payload["type"], payload["schema"], payload.get("properties") or {}
        record = _avro_record(data) if stype in ("JSON", "AVRO") else None
        if stype in ("JSON", "AVRO") and record is None:
            return _jetty_error(request, 422, f"Invalid schema definition data for {stype} schema")
        key = f"{fq}/{request.match_info['topic']}"
        versions = self.schemas.setdefault(key, [])
        for v in versions:
            if v["type"] == stype and v["data"] == data:
                return web.json_response({"version": {"version": v["version"]}})
        if versions and versions[-1]["type"] != stype:
            old_type = versions[-1]["type"]
            return _jetty_error(
                request, 409, f"Incompatible schema: exists schema type {old_type}, new schema type {stype}"
            )
        if versions and versions[-1]["type"] in ("JSON", "AVRO") and record is not None:
            old = _avro_record(versions[-1]["data"]) or {}
            if not _compatible(old, record):
                return _jetty_error(
                    request,
                    409,
                    "Error during schema compatibility check with strategy FULL: org.apache.avro."
                    f"SchemaValidationException: Unable to read schema: {json.dumps(old, indent=2)} using schema: "
                    f"{json.dumps(record, indent=2)}",
                )
        version = len(versions)
        versions.append({"version": version, "type": stype, "timestamp": 0, "data": data, "properties": dict(props)})
        return web.json_response({"version": {"version": version}})

    # -- sinks ------------------------------------------------------------------------------------------
    async def get_sink(self, request: web.Request) -> web.Response:
        t, ns, name = (request.match_info[k] for k in ("tenant", "ns", "name"))
        cfg = self.sinks.get(f"{t}/{ns}/{name}")
        return web.json_response(cfg) if cfg is not None else _err(404, f"Sink {name} doesn't exist")

    async def create_sink(self, request: web.Request) -> web.Response:
        t, ns, name = (request.match_info[k] for k in ("tenant", "ns", "name"))
        if not request.content_type.startswith("multipart/"):
            return web.Response(status=415, text="Unsupported Media Type")
        parts = _multipart(request.headers["Content-Type"], await request.read())
        if t not in self.tenants:
            return _err(400, "Tenant does not exist")
        if f"{t}/{ns}" not in self.namespaces:
            return _err(400, "Namespace does not exist")
        if f"{t}/{ns}/{name}" in self.sinks:
            return _err(400, f"Sink {name} already exists")
        try:
            cfg = json.loads(parts["sinkConfig"])
        except (KeyError, ValueError):
            return _err(400, "Sink config is not provided")
        if not parts.get("url") and not parts.get("data") and not str(cfg.get("archive", "")).startswith("builtin://"):
            return _err(400, "Sink package is not provided")
        if not cfg.get("inputs") and not cfg.get("topicsPattern"):
            return _err(400, "Must specify at least one topic of input via topicToSerdeClassName, topicsPattern, …")
        configs = cfg.get("configs") or {}
        if cfg.get("archive") == "builtin://jdbc-postgres":
            missing = [k for k in ("jdbcUrl", "tableName") if not configs.get(k)]
            if missing:
                return _err(400, f"Could not validate sink config: {', '.join(missing)} cannot be null")
        self.sinks[f"{t}/{ns}/{name}"] = cfg
        return web.Response(status=200)


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    """Form parts by name (the body was already read by the recording middleware)."""
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    out: dict[str, str] = {}
    for part in msg.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        out[str(name)] = (part.get_payload(decode=True) or b"").decode()
    return out


def _err(status: int, reason: str) -> web.Response:
    return web.json_response({"reason": reason}, status=status)


def _jetty_error(request: web.Request, status: int, message: str) -> web.Response:
    """Jetty's error page, as Apache Pulsar answers 401 and the schema 409/422: for ``Accept: application/json``
    (what PulsarAdmin sends) a JSON object with the HTML-escaped ``message``, else HTML with it in the title."""
    text = html.escape(message, quote=True)
    if "application/json" in request.headers.get("Accept", ""):
        doc = {"servlet": "org.glassfish.jersey.servlet.ServletContainer-0", "message": text, "url": request.path,
               "status": str(status)}  # fmt: skip
        return web.json_response(doc, status=status)
    page = (
        '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>\n'
        f"<title>Error {status} {text}</title>\n</head>\n<body><h2>HTTP ERROR {status} {text}</h2>\n</body>\n</html>\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _avro_record(data: Any) -> dict[str, Any] | None:
    try:
        doc = json.loads(data) if isinstance(data, str) else None
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != "record" or not isinstance(doc.get("fields"), list):
        return None
    if not all(isinstance(f, dict) and f.get("name") and "type" in f for f in doc["fields"]):
        return None
    return doc


def _compatible(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Simplified FULL compatibility: fields without defaults may be neither added nor removed."""
    o = {f["name"]: f for f in old.get("fields", [])}
    n = {f["name"]: f for f in new.get("fields", [])}
    removed = [k for k in o.keys() - n.keys() if "default" not in o[k]]
    added = [k for k in n.keys() - o.keys() if "default" not in n[k]]
    return not removed and not added
