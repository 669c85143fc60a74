"""Webhook delivery against a real local HTTP server that verifies the signature like a receiver would."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from consumers.alerting.messages import Alert, decode_alert, encode_alert
from consumers.alerting.webhooks import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    WebhookWorker,
    check_webhooks,
    sign,
    verify,
)
from pulse.errors import ConfigError

SECRET = "s3cret-webhook-key"


def alert(n: int = 1) -> Alert:
    return Alert(alert_id=f"7-{n}", rule_id=7, rule_name="btc", kind="price_cross", venue="kraken", symbol="BTC/USD",
                 ts_event=n, ts_tick_recv=n, condition="above", value="50000.1", threshold="50000",
                 message="kraken BTC/USD: price 50000.1 crossed above 50000")  # fmt: skip


class Receiver:
    """Answers ``fail_first`` requests with ``fail_status``, then 200; records what verified."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[dict[str, Any]] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(SECRET, request.headers.get(TIMESTAMP_HEADER, ""), body, request.headers.get(SIGNATURE_HEADER, ""))
        self.requests.append({"body": body, "verified": ok, "alert_id": request.headers.get(ALERT_ID_HEADER)})
        if not ok:
            return web.Response(status=401)
        if len(self.requests) <= self.fail_first:
            return web.Response(status=self.fail_status)
        return web.Response(status=200)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-path-token"


async def serve(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hook/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    runner = await serve(r)
    yield r
    await runner.cleanup()


def sender(url: str, **kw: Any) -> WebhookSender:
    kw.setdefault("backoff_initial_s", 0.01)
    kw.setdefault("backoff_max_s", 0.05)
    return WebhookSender([url], SECRET, allowed_hosts=["127.0.0.1"], **kw)


async def test_signed_payload_is_verified_and_is_the_alert(receiver: Receiver) -> None:
    s = sender(receiver.url)
    try:
        assert await s.send(alert()) == {receiver.url: True}
    finally:
        await s.close()
    [req] = receiver.requests
    assert req["verified"] and req["alert_id"] == "7-1"
    assert req["body"] == encode_alert(alert()) and decode_alert(req["body"]) == alert()
    assert s.stats.delivered == 1 and s.stats.attempts == 1


async def test_5xx_then_success_is_retried(receiver: Receiver) -> None:
    receiver.fail_first = 2
    s = sender(receiver.url, max_attempts=5)
    try:
        assert await s.send(alert()) == {receiver.url: True}
    finally:
        await s.close()
    assert [r["verified"] for r in receiver.requests] == [True, True, True]
    assert (s.stats.attempts, s.stats.retries, s.stats.delivered, s.stats.failed) == (3, 2, 1, 0)


async def test_attempts_are_capped_and_4xx_is_final(receiver: Receiver) -> None:
    receiver.fail_first = 100
    s = sender(receiver.url, max_attempts=3)
    try:
        assert await s.send(alert()) == {receiver.url: False}
        assert len(receiver.requests) == 3 and s.stats.failed == 1
        receiver.fail_status = 400
        receiver.requests.clear()
        assert await s.send(alert(2)) == {receiver.url: False}
        assert len(receiver.requests) == 1  # a 400 is not retried
    finally:
        await s.close()


async def test_wrong_secret_is_rejected_by_the_receiver(receiver: Receiver) -> None:
    s = WebhookSender([receiver.url], "another-secret", allowed_hosts=["127.0.0.1"], max_attempts=2)
    try:
        assert await s.send(alert()) == {receiver.url: False}
    finally:
        await s.close()
    assert [r["verified"] for r in receiver.requests] == [False]  # 401: final


async def test_connection_refused_is_retried_then_given_up() -> None:
    s = sender("http://127.0.0.1:9/hook", max_attempts=3)
    try:
        assert await s.send(alert()) == {"http://127.0.0.1:9/hook": False}
    finally:
        await s.close()
    assert (s.stats.attempts, s.stats.failed) == (3, 1)


def test_worker_delivers_from_another_thread() -> None:
    import asyncio
    import threading

    r = Receiver(fail_first=1)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    runner = asyncio.run_coroutine_threadsafe(serve(r), loop).result(10)
    w = WebhookWorker(sender(r.url))
    try:
        for i in range(5):
            w.submit(alert(i))
    finally:
        w.close(10)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
    assert w.stats.delivered == 5 and w.stats.pending == 0
    assert len(r.requests) == 6 and all(x["verified"] for x in r.requests)  # one 503, retried
    assert {x["alert_id"] for x in r.requests} == {f"7-{i}" for i in range(5)}


def test_refused_host_is_named() -> None:
    with pytest.raises(ConfigError) as exc:
        check_webhooks(["https://evil.example.net/x", "http://127.0.0.1/x"], ["127.0.0.1"], SECRET)
    msg = str(exc.value)
    assert "'evil.example.net'" in msg and "alerting.webhook_allowed_hosts" in msg
    with pytest.raises(ConfigError, match="webhook_allowed_hosts"):
        WebhookSender(["http://localhost:8080/x"], SECRET, allowed_hosts=["127.0.0.1"])
    with pytest.raises(ConfigError, match="http"):
        check_webhooks(["ftp://127.0.0.1/x"], ["127.0.0.1"], SECRET)
    with pytest.raises(ConfigError, match="webhook_secret"):
        check_webhooks(["http://127.0.0.1/x"], ["127.0.0.1"], "")
    assert check_webhooks(["http://Hooks.Example.com:8443/x"], ["hooks.example.com:8443"], SECRET)
    with pytest.raises(ConfigError, match=r"'hooks\.example\.com'"):
        check_webhooks(["http://hooks.example.com:9999/x"], ["hooks.example.com:8443"], SECRET)


def test_signature_scheme_and_freshness() -> None:
    body = b'{"a":1}'
    sig = sign(SECRET, "1700000000", body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(SECRET, "1700000000", body, sig, now=1700000100)
    assert not verify(SECRET, "1700000000", body + b" ", sig, now=1700000100)  # the exact body
    assert not verify(SECRET, "1700000000", body, sig, now=1700001000)  # too old
    assert not verify(SECRET, "nope", body, sig)


async def test_secret_never_logged(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.fail_first = 1
    caplog.set_level(logging.DEBUG)
    s = sender(receiver.url)
    try:
        await s.send(alert())
    finally:
        await s.close()
    ours = [rec for rec in caplog.records if rec.name.startswith("consumers.")]  # not the receiver's access log
    text = repr(s) + " ".join(f"{rec.getMessage()} {getattr(rec, 'fields', '')}" for rec in ours)
    assert SECRET not in text and "secret-path-token" not in text
    assert "webhook attempt failed" in text


class Redirector:
    """An allow-listed receiver that answers every POST with ``status`` and a Location on another server."""

    def __init__(self, status: int, location: str) -> None:
        self.status, self.location, self.hits = status, location, 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits += 1
        return web.Response(status=self.status, headers={"Location": self.location})


async def _site(handler: Any, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failed_delivery_and_is_not_followed(
    status: int, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # The other server (`receiver`, reached as "localhost") is not on the allow-list; before, a 307/308 re-POSTed
    # the signed body there and counted it as delivered, a 301-303 followed as a GET.
    caplog.set_level(logging.INFO)
    redirector = Redirector(status, f"http://localhost:{receiver.port}/hook/elsewhere")
    runner, port = await _site(redirector.handle)
    url = f"http://127.0.0.1:{port}/hook"
    s = sender(url, max_attempts=3)
    try:
        assert await s.send(alert()) == {url: False}
    finally:
        await s.close()
        await runner.cleanup()
    assert receiver.requests == [] and redirector.hits == 1  # final: not retried, not followed
    assert (s.stats.delivered, s.stats.failed) == (0, 1)
    lines = [r.getMessage() for r in caplog.records if "redirect" in r.getMessage()]
    assert lines and "not followed" in lines[0]


class SwitchingDns(AbstractResolver):
    """A DNS that answers ``hooks.test`` with whatever ``address`` says now (a rebinding attacker's DNS)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.queries = 0

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        self.queries += 1
        return [ResolveResult(hostname=host, host=self.address, port=port, family=socket.AF_INET, proto=0, flags=0)]

    async def close(self) -> None:
        pass


async def test_the_checked_address_is_pinned_across_a_dns_change() -> None:
    good, evil = Receiver(), Receiver()
    good_runner = await serve(good)
    evil_app = web.Application()
    evil_app.router.add_post("/hook/{tail:.*}", evil.handle)
    evil_runner = web.AppRunner(evil_app)
    await evil_runner.setup()
    await web.TCPSite(evil_runner, "127.0.0.2", good.port).start()  # same port, another address
    dns = SwitchingDns("127.0.0.1")
    url = f"http://hooks.test:{good.port}/hook/x"
    s = WebhookSender([url], SECRET, allowed_hosts=["hooks.test"], resolver=dns, backoff_initial_s=0.01)
    try:
        assert await s.send(alert(1)) == {url: True}
        dns.address = "127.0.0.2"  # the name now points elsewhere
        assert await s.send(alert(2)) == {url: True}
        await s.close()  # a new connection, not a kept-alive one
        assert await s.send(alert(3)) == {url: True}
    finally:
        await s.close()
        await good_runner.cleanup()
        await evil_runner.cleanup()
    assert [r["alert_id"] for r in good.requests] == ["7-1", "7-2", "7-3"] and evil.requests == []
    assert dns.queries == 1
