"""An async client for the Pulsar admin REST API (the endpoints the control plane and ``pulse status`` use).

Written from the Pulsar 3.x/4.x REST reference and the broker's JAX-RS resource classes it is generated from
(``https://pulsar.apache.org/admin-rest-api/``; ``apache/pulsar`` ``pulsar-broker/src/main/java/org/apache/
pulsar/broker/admin/``: ``impl/TenantsBase.java``, ``v2/Namespaces.java``, ``v2/PersistentTopics.java``,
``v2/SchemasResource.java``, ``impl/BrokersBase.java``, ``impl/SinksBase.java``; swagger
``apache/pulsar-site`` ``static/swagger/4.0.11/v2/swagger.json``). What each status means, per endpoint:

==============================================================  ========================================================
endpoint                                                        documented answers
==============================================================  ========================================================
``GET  /admin/v2/clusters``                                     200 ``["standalone", …]``; 403
``PUT  /admin/v2/tenants/{tenant}`` (TenantInfo)                204; 403; 409 "Tenant already exist(s)"; 412 "Tenant
                                                                name is not valid" / "Clusters can not be empty" /
                                                                "Clusters do not exist"
``PUT  /admin/v2/namespaces/{tenant}/{ns}`` (Policies, opt.)    204; 403; 404 "Tenant or cluster doesn't exist"; 409
                                                                "Namespace already exists"; 412 "Namespace name is not
                                                                valid"
``GET  /admin/v2/namespaces/{tenant}/{ns}``                     200 Policies (``retention_policies``,
                                                                ``message_ttl_in_seconds``, ``deduplicationEnabled``,
                                                                ``compaction_threshold``, …); 403; 404
``DELETE /admin/v2/namespaces/{tenant}/{ns}``                   204; 403; 404; 405; **409 "Namespace is not empty"**
``POST …/retention`` (RetentionPolicies)                        204; 403; 404; 409 concurrent modification; 412
                                                                "Retention Quota must exceed backlog quota"
``POST …/messageTTL`` (int)                                     204; 403; 404; 412 "Invalid TTL"
``POST …/deduplication`` (bool)                                 204; 403; 404
``PUT  …/compactionThreshold`` (long)                           204; 403; 404; 409; 412
``PUT  /admin/v2/persistent/{t}/{ns}/{topic}/partitions`` (int) 204; 401; 403; 404 "Tenant or namespace doesn't
                                                                exist"; 406 partitions out of range; 409 "Partitioned
                                                                topic already exists"; 412 invalid name / no clusters
``GET  /admin/v2/persistent/{t}/{ns}`` and ``…/partitioned``    200 list of topic names; 404 namespace missing
``GET  …/{topic}/stats``, ``…/{topic}/partitioned-stats``       200 TopicStats / PartitionedTopicStats; 404 topic
``GET/POST /admin/v2/schemas/{t}/{ns}/{topic}/schema``          GET 200 ``{type, data, properties, version}`` / 404;
                                                                POST (PostSchemaPayload ``{type, schema, properties}``)
                                                                200 ``{"version": …}`` — posting the same schema again
                                                                returns the existing version; **409 "Incompatible
                                                                schema"** (a failure, not "exists"); 422 invalid data
``GET  /admin/v2/brokers/health``                               200 ``ok``; 403; 404; 500; 503 while closing
``GET/POST /admin/v3/sinks/{t}/{ns}/{name}``                    POST multipart (``sinkConfig`` JSON part): 200; **400
                                                                "Sink … already exists"** (Pulsar Functions answer 400,
                                                                not 409); 401; 500; 503 worker initialising. GET 200
                                                                SinkConfig / 404
==============================================================  ========================================================

Every error answer carries ``{"reason": "…"}`` (the broker's ``ErrorData``); :class:`AdminError` quotes it.

Behaviour: one ``aiohttp`` session; ``Authorization: Bearer <token>`` on every request when a token is set (the
token is never logged: it is registered with :func:`pulse.log.register_secret` and never put in a message);
a per-request timeout; retries (tenacity) with capped, jittered exponential backoff on 5xx answers and
connection errors/timeouts only — 4xx answers are final. Creation calls return ``"created"`` or ``"exists"``
(409, or the endpoint's own "already exists" answer); any other failure raises :class:`AdminError` naming the
step and the HTTP status.
"""

from __future__ import annotations

import html
import json
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from control_plane.admin_stats import BrokerHealth, TopicStats, parse_stats
from pulse.errors import EXIT_UNAVAILABLE, PulseError, TopicError
from pulse.log import get_logger, mask, register_secret

log = get_logger(__name__)

_warned_cleartext: set[str] = set()  # admin URLs already warned about (once per URL and process)


def _warn_cleartext_token(base_url: str) -> None:
    """A token sent over plain HTTP can be read by anyone on the path: say so once, without the token."""
    if base_url in _warned_cleartext:
        return
    _warned_cleartext.add(base_url)
    log.warning(
        "pulsar.auth_token is sent in clear text: pulsar.admin_url is http://, use https:// on any network "
        "you do not fully trust",
        admin_url=base_url,
    )


Outcome = Literal["created", "exists", "updated"]

_TOPIC = re.compile(r"^(?:persistent://)?(?P<tenant>[^/]+)/(?P<namespace>[^/]+)/(?P<local>[^/]+)$")


class AdminError(PulseError):
    """A Pulsar admin call failed. ``status`` is the HTTP status, or 0 when no answer came (connection, timeout)."""

    def __init__(self, step: str, status: int, message: str) -> None:
        self.step = step
        self.status = status
        self.message = message
        self.completed: list[Any] = []  # provisioning steps done before this failure (control_plane.provision)
        where = f"HTTP {status}" if status else "no response"
        if not status:  # nothing answered: the admin API cannot be reached (exit 69)
            self.exit_code = EXIT_UNAVAILABLE
            self.unreachable = "broker admin API"
        super().__init__(f"{step} failed: {where}: {message}")


def split_topic(topic: str) -> tuple[str, str, str]:
    """``persistent://t/ns/local`` (or ``t/ns/local``) → ``(t, ns, local)``."""
    m = _TOPIC.match(topic)
    if not m or topic.startswith("non-persistent://"):
        raise TopicError(f"not a persistent topic name: {topic!r}")
    return m["tenant"], m["namespace"], m["local"]


def split_namespace(namespace: str) -> tuple[str, str]:
    """``tenant/ns`` → ``(tenant, ns)``."""
    tenant, sep, ns = namespace.partition("/")
    if not sep or not tenant or not ns or "/" in ns:
        raise TopicError(f"not a namespace name (tenant/namespace): {namespace!r}")
    return tenant, ns


def _seg(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any  # parsed JSON, or text when the answer is not JSON


class PulsarAdmin:
    """Async Pulsar admin REST client. Use as ``async with PulsarAdmin.from_settings(settings) as admin: …``."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout_s: float = 10.0,
        retries: int = 4,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        ssl_context: ssl.SSLContext | bool | None = None,
    ) -> None:
        if not re.match(r"^https?://[^/]+", base_url or ""):
            raise PulseError(f"pulsar.admin_url must be http(s)://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        register_secret(token)
        if token and self.base_url.startswith("http://"):
            _warn_cleartext_token(self.base_url)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> PulsarAdmin:
        """Base URL ``pulsar.admin_url``, token ``settings.pulsar_token()``, TLS from the ``pulsar.tls_*`` keys."""
        p = settings.pulsar
        ctx: ssl.SSLContext | bool | None = None
        if p.admin_url.startswith("https://"):
            if p.tls_allow_insecure_connection:
                ctx = False
            else:
                ctx = ssl.create_default_context(cafile=p.tls_trust_certs_file or None)
                ctx.check_hostname = p.tls_validate_hostname
        kwargs.setdefault("timeout_s", float(min(p.operation_timeout_s, 30)))
        return cls(p.admin_url, settings.pulsar_token(), ssl_context=ctx, **kwargs)

    def __repr__(self) -> str:  # never the token
        return f"PulsarAdmin({self.base_url!r}, token={'***' if self._token else 'none'})"

    async def __aenter__(self) -> PulsarAdmin:
        self._ensure_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"Accept": "application/json"},
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _explain(self, status: int, reason: str) -> str:
        """Say what a 401/403 means for the operator (Apache Pulsar answers 401 with Jetty's bare HTML page)."""
        if status == 401:
            why = "the broker rejected pulsar.auth_token" if self._token else "the broker requires pulsar.auth_token"
            return f"{reason}: authentication failed ({why})"
        if status == 403:
            return f"{reason}: the role of pulsar.auth_token is not allowed to do this (authorization failed)"
        return reason

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * (2**attempt))
        return base * (0.5 + random.random() / 2)

    # -- the one request path ---------------------------------------------------------------------------
    async def _call(
        self,
        step: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        ok: tuple[int, ...] = (200, 204),
        accept: tuple[int, ...] = (),
        retry: bool = True,
    ) -> _Answer:
        """Send one request (retrying 5xx/connection failures); return answers in ``ok`` or ``accept``.

        Anything else raises :class:`AdminError` with the step, the status and the server's ``reason``.
        """
        session = self._ensure_session()
        url = self.base_url + path

        def wait(state: RetryCallState) -> float:
            return self._backoff(state.attempt_number - 1)

        def retrying(state: RetryCallState) -> None:
            last = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                "admin retry", step=step, attempt=state.attempt_number, after=str(last), sleep_s=round(delay, 3)
            )

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, AdminError) and (e.status == 0 or e.status >= 500)),
            stop=stop_after_attempt((self.retries + 1) if retry else 1),
            wait=wait,
            before_sleep=retrying,
            reraise=True,
        ):
            with attempt:
                return await self._request(session, step, method, url, path, json_body, form, ok + accept)
        raise AssertionError("unreachable: the last attempt returned or raised")

    async def _request(
        self,
        session: aiohttp.ClientSession,
        step: str,
        method: str,
        url: str,
        path: str,
        json_body: Any,
        form: Callable[[], aiohttp.FormData] | None,
        answered: tuple[int, ...],
    ) -> _Answer:
        """One attempt: the answer when its status is in ``answered``, else :class:`AdminError` (status 0: no
        answer)."""
        kwargs: dict[str, Any] = {"headers": self._headers()}
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        if form is not None:
            kwargs["data"] = form()  # a fresh body per attempt: FormData can be sent only once
        elif json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            kwargs["headers"]["Content-Type"] = "application/json"
        elif method in ("PUT", "POST"):
            # JAX-RS resources consume application/json even with no body: Apache Pulsar answers 415 to a
            # bodiless PUT without it (found on the real broker; its Java admin client sends "" as JSON)
            kwargs["data"] = b""
            kwargs["headers"]["Content-Type"] = "application/json"
        try:
            async with session.request(method, url, **kwargs) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise AdminError(step, 0, f"{method} {url}: {type(exc).__name__}: {mask(str(exc)) or 'timeout'}") from exc
        body = _decode(text)
        log.debug("admin call", step=step, method=method, path=path, status=status)
        if status in answered:
            return _Answer(status, body)
        raise AdminError(step, status, self._explain(status, _reason(status, body)))  # 5xx retried, 4xx final

    # -- clusters, tenants ------------------------------------------------------------------------------
    async def list_clusters(self) -> list[str]:
        """``GET /admin/v2/clusters``."""
        ans = await self._call("list clusters", "GET", "/admin/v2/clusters")
        return [str(c) for c in ans.body or []]

    async def get_tenant(self, tenant: str) -> dict[str, Any] | None:
        """``GET /admin/v2/tenants/{tenant}``: TenantInfo, or None (404)."""
        ans = await self._call(f"get tenant {tenant}", "GET", f"/admin/v2/tenants/{_seg(tenant)}", accept=(404,))
        return None if ans.status == 404 else ans.body

    async def create_tenant(
        self, tenant: str, allowed_clusters: list[str], admin_roles: list[str] | None = None
    ) -> Outcome:
        """``PUT /admin/v2/tenants/{tenant}`` with TenantInfo ``{adminRoles, allowedClusters}``; 409 → exists."""
        ans = await self._call(
            f"create tenant {tenant}",
            "PUT",
            f"/admin/v2/tenants/{_seg(tenant)}",
            json_body={"adminRoles": list(admin_roles or []), "allowedClusters": list(allowed_clusters)},
            accept=(409,),
        )
        return "exists" if ans.status == 409 else "created"

    # -- namespaces -------------------------------------------------------------------------------------
    def _ns_path(self, namespace: str, suffix: str = "") -> str:
        tenant, ns = split_namespace(namespace)
        return f"/admin/v2/namespaces/{_seg(tenant)}/{_seg(ns)}{suffix}"

    async def list_namespaces(self, tenant: str) -> list[str]:
        """``GET /admin/v2/namespaces/{tenant}`` → ``["tenant/ns", …]``."""
        ans = await self._call(f"list namespaces of {tenant}", "GET", f"/admin/v2/namespaces/{_seg(tenant)}")
        return [str(n) for n in ans.body or []]

    async def create_namespace(self, namespace: str) -> Outcome:
        """``PUT /admin/v2/namespaces/{tenant}/{ns}``; 409 → exists, 404 → the tenant is missing (error)."""
        ans = await self._call(f"create namespace {namespace}", "PUT", self._ns_path(namespace), accept=(409,))
        return "exists" if ans.status == 409 else "created"

    async def delete_namespace(self, namespace: str) -> None:
        """``DELETE /admin/v2/namespaces/{tenant}/{ns}``; 409 (not empty) and 404 are errors."""
        await self._call(f"delete namespace {namespace}", "DELETE", self._ns_path(namespace))

    async def get_policies(self, namespace: str) -> dict[str, Any]:
        """``GET /admin/v2/namespaces/{tenant}/{ns}``: the namespace's Policies document."""
        ans = await self._call(f"get policies of {namespace}", "GET", self._ns_path(namespace))
        return dict(ans.body or {})

    async def set_retention(self, namespace: str, minutes: int, size_mb: int) -> None:
        """``POST …/retention`` with RetentionPolicies; -1 means unlimited."""
        await self._call(
            f"set retention on {namespace}",
            "POST",
            self._ns_path(namespace, "/retention"),
            json_body={"retentionTimeInMinutes": int(minutes), "retentionSizeInMB": int(size_mb)},
        )

    async def set_message_ttl(self, namespace: str, seconds: int) -> None:
        """``POST …/messageTTL`` with an int body (seconds)."""
        await self._call(
            f"set message TTL on {namespace}", "POST", self._ns_path(namespace, "/messageTTL"), json_body=int(seconds)
        )

    async def set_deduplication(self, namespace: str, enabled: bool) -> None:
        """``POST …/deduplication`` with a bool body."""
        await self._call(
            f"set deduplication on {namespace}",
            "POST",
            self._ns_path(namespace, "/deduplication"),
            json_body=bool(enabled),
        )

    async def set_compaction_threshold(self, namespace: str, threshold_bytes: int) -> None:
        """``PUT …/compactionThreshold`` with a long body (bytes; 0 disables automatic compaction)."""
        await self._call(
            f"set compaction threshold on {namespace}",
            "PUT",
            self._ns_path(namespace, "/compactionThreshold"),
            json_body=int(threshold_bytes),
        )

    # -- topics -----------------------------------------------------------------------------------------
    def _topic_path(self, topic: str, suffix: str = "") -> str:
        tenant, ns, local = split_topic(topic)
        return f"/admin/v2/persistent/{_seg(tenant)}/{_seg(ns)}/{_seg(local)}{suffix}"

    async def create_partitioned_topic(self, topic: str, partitions: int) -> Outcome:
        """``PUT …/{topic}/partitions`` with the partition count; 409 → exists."""
        ans = await self._call(
            f"create partitioned topic {topic}",
            "PUT",
            self._topic_path(topic, "/partitions"),
            json_body=int(partitions),
            accept=(409,),
        )
        return "exists" if ans.status == 409 else "created"

    async def partition_count(self, topic: str) -> int:
        """``GET …/{topic}/partitions`` → ``{"partitions": N}`` (0 for a non-partitioned topic; Apache Pulsar 4.0
        answers 404 for a topic that does not exist, raised as :class:`AdminError`)."""
        ans = await self._call(f"get partitions of {topic}", "GET", self._topic_path(topic, "/partitions"))
        return int((ans.body or {}).get("partitions") or 0)

    async def list_partitioned_topics(self, namespace: str) -> list[str]:
        """``GET /admin/v2/persistent/{tenant}/{ns}/partitioned``."""
        tenant, ns = split_namespace(namespace)
        ans = await self._call(
            f"list partitioned topics of {namespace}",
            "GET",
            f"/admin/v2/persistent/{_seg(tenant)}/{_seg(ns)}/partitioned",
        )
        return [str(t) for t in ans.body or []]

    async def list_topics(self, namespace: str) -> list[str]:
        """Every persistent topic of a namespace, partitioned ones once (without ``-partition-N``), sorted.

        ``GET /admin/v2/persistent/{tenant}/{ns}`` lists non-partitioned topics and the partitions of
        partitioned ones; ``…/partitioned`` lists the partitioned topics themselves.
        """
        tenant, ns = split_namespace(namespace)
        ans = await self._call(f"list topics of {namespace}", "GET", f"/admin/v2/persistent/{_seg(tenant)}/{_seg(ns)}")
        names = {re.sub(r"-partition-\d+$", "", str(t)) for t in ans.body or []}
        names.update(await self.list_partitioned_topics(namespace))
        return sorted(names)

    async def topic_stats(self, topic: str) -> TopicStats:
        """``GET …/{topic}/stats`` (a non-partitioned topic or one partition)."""
        ans = await self._call(f"get stats of {topic}", "GET", self._topic_path(topic, "/stats"))
        return parse_stats(topic, ans.body or {})

    async def partitioned_stats(self, topic: str) -> TopicStats:
        """``GET …/{topic}/partitioned-stats?perPartition=false``: figures summed over partitions."""
        ans = await self._call(
            f"get partitioned stats of {topic}", "GET", self._topic_path(topic, "/partitioned-stats?perPartition=false")
        )
        return parse_stats(topic, ans.body or {})

    async def stats(self, topic: str) -> TopicStats:
        """Partitioned stats, or plain stats when the topic is not partitioned (e.g. created by first use)."""
        try:
            return await self.partitioned_stats(topic)
        except AdminError as exc:
            if exc.status != 404:
                raise
        return await self.topic_stats(topic)

    # -- schemas ----------------------------------------------------------------------------------------
    def _schema_path(self, topic: str) -> str:
        tenant, ns, local = split_topic(topic)
        return f"/admin/v2/schemas/{_seg(tenant)}/{_seg(ns)}/{_seg(local)}/schema"

    async def get_schema(self, topic: str) -> dict[str, Any] | None:
        """``GET /admin/v2/schemas/{t}/{ns}/{topic}/schema``: ``{type, data, properties, version}``, or None."""
        ans = await self._call(f"get schema of {topic}", "GET", self._schema_path(topic), accept=(404,))
        return None if ans.status == 404 else dict(ans.body or {})

    async def upload_schema(
        self, topic: str, schema_type: str, schema: str, properties: dict[str, str] | None = None
    ) -> Outcome:
        """Register a schema: ``exists`` when the same definition is already the latest, else POST it.

        ``POST …/schema`` with PostSchemaPayload ``{type, schema, properties}``. The broker answers 200 with the
        version (the same version again for an identical schema). 409 means *incompatible schema* and is an
        error here, unlike the creation endpoints.
        """
        current = await self.get_schema(topic)
        if current is not None and current.get("type") == schema_type and _same_json(current.get("data"), schema):
            return "exists"
        await self._call(
            f"register schema for {topic}",
            "POST",
            self._schema_path(topic),
            json_body={"type": schema_type, "schema": schema, "properties": dict(properties or {})},
        )
        return "created" if current is None else "updated"

    # -- brokers ----------------------------------------------------------------------------------------
    async def broker_health(self) -> BrokerHealth:
        """``GET /admin/v2/brokers/health``: 200 ``ok`` is healthy; anything else (or no answer) is not.

        Never retried and never raises: ``pulse status`` reports what it got.
        """
        try:
            ans = await self._call("broker health check", "GET", "/admin/v2/brokers/health", retry=False)
        except AdminError as exc:
            return BrokerHealth(False, exc.status, str(exc))
        text = ans.body if isinstance(ans.body, str) else json.dumps(ans.body)
        return BrokerHealth(text.strip().strip('"') == "ok", ans.status, text.strip())

    # -- Pulsar IO sinks (function worker, /admin/v3) ----------------------------------------------------
    def _sink_path(self, tenant: str, namespace: str, name: str) -> str:
        return f"/admin/v3/sinks/{_seg(tenant)}/{_seg(namespace)}/{_seg(name)}"

    async def get_sink(self, tenant: str, namespace: str, name: str) -> dict[str, Any] | None:
        """``GET /admin/v3/sinks/{t}/{ns}/{name}``: SinkConfig, or None (404)."""
        ans = await self._call(
            f"get sink {tenant}/{namespace}/{name}", "GET", self._sink_path(tenant, namespace, name), accept=(404,)
        )
        return None if ans.status == 404 else dict(ans.body or {})

    async def create_sink(self, tenant: str, namespace: str, name: str, sink_config: dict[str, Any]) -> Outcome:
        """``POST /admin/v3/sinks/{t}/{ns}/{name}`` (multipart, part ``sinkConfig``); "already exists" → exists.

        A built-in connector is named by ``sink_config["archive"] = "builtin://jdbc-postgres"`` and needs no
        ``data`` part. The config holds database credentials: it is never logged.
        """
        step = f"create sink {tenant}/{namespace}/{name}"
        if await self.get_sink(tenant, namespace, name) is not None:
            return "exists"

        form = _sink_form(sink_config)
        ans = await self._call(step, "POST", self._sink_path(tenant, namespace, name), form=form, accept=(400,))
        if ans.status == 400:
            reason = _reason(400, ans.body)
            if "already exists" in reason:
                return "exists"
            raise AdminError(step, 400, reason)
        return "created"

    async def update_sink(self, tenant: str, namespace: str, name: str, sink_config: dict[str, Any]) -> None:
        """``PUT /admin/v3/sinks/…``: merged into the sink's config (Pulsar 4.0 refuses new input topics: 400)."""
        path = self._sink_path(tenant, namespace, name)
        await self._call(f"update sink {tenant}/{namespace}/{name}", "PUT", path, form=_sink_form(sink_config))


def _sink_form(sink_config: dict[str, Any]) -> Callable[[], aiohttp.FormData]:
    """The multipart body (part ``sinkConfig``), fresh per attempt; it holds credentials: never logged."""

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("sinkConfig", json.dumps(sink_config), content_type="application/json")
        return data

    return form


def _decode(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _reason(status: int, body: Any) -> str:
    if isinstance(body, dict) and body.get("reason"):
        return mask(str(body["reason"]))
    if isinstance(body, dict) and body.get("message"):  # Jetty's JSON error page (401, schema 409/422), HTML-escaped
        return mask(_clip(" ".join(html.unescape(str(body["message"])).split())))
    if isinstance(body, str) and body.strip():
        text = body.strip()
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        if title:  # Jetty's HTML error page: the 401 of the authentication filter, schema 409/422 answers
            return mask(_clip(" ".join(html.unescape(title.group(1)).split())))
        if text.startswith("<"):
            text = re.sub(r"<[^>]+>", " ", text)
        return mask(_clip(" ".join(text.split())))
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _clip(text: str, limit: int = 400) -> str:
    # Apache Pulsar's schema 409 quotes both schemas in full; the first few hundred characters say what failed
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _same_json(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v

    return bool(norm(a) == norm(b))
