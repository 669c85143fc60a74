"""Webhook delivery: signed JSON POSTs to allow-listed hosts, retried with capped exponential backoff.

Request
    ``POST <url>`` with ``Content-Type: application/json``, the body being the alert event exactly as published
    (:func:`~consumers.alerting.messages.encode_alert`), and the headers

    ``X-Pulse-Timestamp``  Unix time in whole seconds when this attempt was signed
    ``X-Pulse-Signature``  ``sha256=`` + hex HMAC-SHA256, keyed with ``alerting.webhook_secret``, over the bytes
                           ``timestamp + "." + body`` (the raw body as received, before any JSON parsing)
    ``X-Pulse-Alert-Id``   the alert's id (stable across retries and replays: de-duplicate on it)

Verifying (a receiver): recompute the HMAC over ``f"{timestamp}.".encode() + raw_body`` with the shared secret,
compare with ``hmac.compare_digest``, and reject timestamps more than a few minutes from your clock (replay
protection; every retry is signed afresh). :func:`verify` does exactly this and is what the tests' receiver uses.

Delivery
    2xx is success. A 3xx is a failed delivery, never followed (a redirect could send the signed body to a host
    that is not allow-listed), logged with its status. Connection errors, timeouts, 408, 429 and 5xx are retried up to
    ``alerting.webhook_max_attempts`` attempts, waiting 0.5 s, 1 s, 2 s, … capped at
    ``alerting.webhook_backoff_max_s`` (a ``Retry-After`` in seconds is honoured up to the cap). Other 4xx are
    final (the receiver refused this payload; retrying cannot help). Each URL is delivered independently.

Allow-list
    Every URL's host must be listed in ``alerting.webhook_allowed_hosts`` (exact host name, case-insensitive;
    ``host:port`` entries also pin the port). :func:`check_webhooks` refuses anything else before the service
    starts, naming the URL's host, so a typo or an injected setting cannot exfiltrate alerts to an arbitrary
    host. The secret is never logged; URLs are logged by host only (paths often carry tokens).

Address pinning
    Each host is resolved once, at its first delivery, and its addresses are kept for the sender's life: the
    connector's resolver (:class:`PinnedResolver`) answers only those addresses, and refuses any other host. A
    DNS change after the check (rebinding the name to an internal address, say) cannot redirect a delivery;
    restart the alerting service to follow a legitimate change of a webhook host's addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from consumers.alerting.messages import Alert, encode_alert
from pulse.errors import ConfigError
from pulse.log import get_logger

log = get_logger(__name__)

TIMESTAMP_HEADER = "X-Pulse-Timestamp"
SIGNATURE_HEADER = "X-Pulse-Signature"
ALERT_ID_HEADER = "X-Pulse-Alert-Id"
_RETRY_STATUS = {408, 429}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None, tolerance_s: float = 300
) -> bool:
    """What a receiver does: constant-time signature check plus a freshness window on the timestamp."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _host_port(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"alerting.webhooks: {url.split('?')[0]!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(f"alerting.webhooks: the URL for host {parts.hostname!r} must not carry credentials")
    return parts.scheme, parts.hostname.lower(), parts.port


def check_webhooks(urls: Sequence[str], allowed_hosts: Sequence[str], secret: str) -> list[str]:
    """Refuse (ConfigError, naming the host) any URL whose host is not allow-listed, and webhooks without a secret."""
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    for url in urls:
        _, host, port = _host_port(url)
        if host not in allowed and (port is None or f"{host}:{port}" not in allowed):
            listed = ", ".join(sorted(allowed)) or "nothing"
            raise ConfigError(
                f"alerting.webhooks: host {host!r} is not in alerting.webhook_allowed_hosts (which lists {listed}); "
                f"add it there to deliver alerts to it"
            )
    if urls and not secret:
        raise ConfigError("alerting.webhook_secret (or alerting.webhook_secret_file) must be set to sign webhooks")
    return list(urls)


class PinnedResolver(AbstractResolver):
    """Resolves each allow-listed host once (through ``base``) and answers those addresses ever after; any
    other host name is refused. Used as the connector's resolver, so every connection goes where the check
    said it would."""

    def __init__(self, hosts: Sequence[str], base: AbstractResolver | None = None) -> None:
        self._hosts = {h.lower() for h in hosts}
        self._base = base
        self._pins: dict[tuple[str, int, int], list[ResolveResult]] = {}
        self._lock = asyncio.Lock()

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        name = host.lower()
        if name not in self._hosts:
            raise OSError(f"host {host!r} is not an allow-listed webhook host")
        key = (name, port, family)
        pinned = self._pins.get(key)
        if pinned is not None:
            return pinned
        async with self._lock:
            if key not in self._pins:
                if self._base is None:
                    self._base = aiohttp.ThreadedResolver()
                addresses = await self._base.resolve(host, port, family)
                self._pins[key] = addresses
                log.info("webhook host pinned", host=name, addresses=",".join(a["host"] for a in addresses))
        return self._pins[key]

    async def close(self) -> None:
        if self._base is not None:
            await self._base.close()


@dataclass
class WebhookStats:
    delivered: int = 0  # (alert, url) pairs acknowledged with 2xx
    failed: int = 0  # gave up (final 4xx, or attempts exhausted)
    attempts: int = 0
    retries: int = 0
    pending: int = 0
    last_error: str = ""
    per_host: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "webhook_delivered": self.delivered,
            "webhook_failed": self.failed,
            "webhook_attempts": self.attempts,
            "webhook_retries": self.retries,
            "webhook_pending": self.pending,
        }


class WebhookSender:
    """Async delivery of one body to every URL (call within a running event loop)."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        *,
        allowed_hosts: Sequence[str],
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.urls = check_webhooks(urls, allowed_hosts, secret)
        self._resolver = PinnedResolver([_host_port(u)[1] for u in self.urls], resolver)
        self._secret = secret
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stats = WebhookStats()
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookSender(hosts={[urlsplit(u).hostname for u in self.urls]})"

    async def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver, use_dns_cache=False)
            self._session = aiohttp.ClientSession(timeout=self.timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, alert: Alert) -> dict[str, bool]:
        """Deliver to every URL concurrently; ``{url: delivered}``."""
        body = encode_alert(alert)
        results = await asyncio.gather(*(self.post(u, body, alert.alert_id) for u in self.urls))
        return dict(zip(self.urls, results, strict=True))

    async def post(self, url: str, body: bytes, alert_id: str) -> bool:
        """Deliver ``body`` to ``url``: True once a 2xx answers; False after a final refusal or the last attempt.
        Retried on tenacity: up to ``max_attempts``, waits doubling from ``backoff_initial_s`` (or the answer's
        ``Retry-After``), capped at ``backoff_max_s``; each attempt is signed afresh."""
        host = urlsplit(url).hostname or "?"
        session = await self._sess()

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            retry_after = getattr(exc, "retry_after", None)
            delay = self.backoff_initial_s * 2 ** min(state.attempt_number - 1, 62)
            return min(retry_after if retry_after is not None else delay, self.backoff_max_s)

        def retrying(state: RetryCallState) -> None:
            self.stats.retries += 1
            error = str(state.outcome.exception()) if state.outcome is not None else ""
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            log.info("webhook attempt failed, retrying", host=host, attempt=state.attempt_number, error=error,
                     retry_in_s=wait_s)  # fmt: skip

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Retryable),
                stop=stop_after_attempt(self.max_attempts),
                wait=wait,
                before_sleep=retrying,
                reraise=True,
            ):
                with attempt:
                    return await self._attempt(session, url, host, body, alert_id)
        except _Retryable as exc:
            self.stats.failed += 1
            log.error("webhook delivery failed", host=host, attempts=self.max_attempts, error=str(exc),
                      alert_id=alert_id)  # fmt: skip
        return False

    async def _attempt(self, session: aiohttp.ClientSession, url: str, host: str, body: bytes, alert_id: str) -> bool:
        """One signed POST: True (delivered), False (refused for good), or :class:`_Retryable`."""
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self._secret, ts, body),
            ALERT_ID_HEADER: alert_id,
        }
        self.stats.attempts += 1
        retry_after: float | None = None
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    self.stats.delivered += 1
                    self.stats.per_host[host] = self.stats.per_host.get(host, 0) + 1
                    return True
                error = f"HTTP {resp.status}"
                if 300 <= resp.status < 400:
                    target = urlsplit(resp.headers.get("Location", "")).hostname or host
                    self.stats.failed += 1
                    self.stats.last_error = f"{error} redirect (not followed)"
                    log.warning(
                        "webhook answered with a redirect; not followed, the alert is not delivered",
                        host=host, status=resp.status, redirect_host=target, alert_id=alert_id,
                    )  # fmt: skip
                    return False
                if resp.status < 500 and resp.status not in _RETRY_STATUS:
                    self.stats.failed += 1
                    self.stats.last_error = error
                    log.warning("webhook refused the alert", host=host, status=resp.status, alert_id=alert_id)
                    return False
                with contextlib.suppress(ValueError, TypeError):
                    retry_after = float(resp.headers.get("Retry-After", ""))
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}".replace(url, host)
        self.stats.last_error = error
        raise _Retryable(error, retry_after)


class _Retryable(Exception):
    """An attempt that may succeed later (5xx, 408, 429, no answer); ``retry_after`` from the answer, if any."""

    def __init__(self, error: str, retry_after: float | None) -> None:
        super().__init__(error)
        self.retry_after = retry_after


class WebhookWorker:
    """A :class:`WebhookSender` on its own event loop thread: :meth:`submit` never blocks the caller."""

    def __init__(self, sender: WebhookSender, *, concurrency: int = 8) -> None:
        self.sender = sender
        self.loop = asyncio.new_event_loop()
        self._sem: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._concurrency = concurrency
        self.thread = threading.Thread(target=self.loop.run_forever, name="alerting-webhooks", daemon=True)
        self.thread.start()

    @property
    def stats(self) -> WebhookStats:
        return self.sender.stats

    def submit(self, alert: Alert) -> None:
        self.sender.stats.pending += 1
        fut = asyncio.run_coroutine_threadsafe(self._one(alert), self.loop)
        self._tasks.add(fut)  # type: ignore[arg-type]
        fut.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]

    async def _one(self, alert: Alert) -> None:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self._concurrency)
        try:
            async with self._sem:
                await self.sender.send(alert)
        except Exception as exc:  # a bug must not kill the loop
            log.error("webhook delivery crashed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.sender.stats.pending -= 1

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait up to ``timeout_s`` for deliveries in flight, then stop the loop."""
        end = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < end:
            time.sleep(0.05)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.sender.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
