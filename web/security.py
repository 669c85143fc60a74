"""Who may do what, JSON errors, and an access log that never carries a token.

* **Reads** (GET/HEAD, the WebSocket) are open while the gateway listens on loopback only; bound to any other
  address, every request needs ``Authorization: Bearer <web.token>`` (the WebSocket, which a browser cannot
  give headers, also takes ``?token=``).
* **Changes** (POST/PUT/PATCH/DELETE) always need the token; with no ``web.token`` set they are refused, naming
  the setting. They must also carry a JSON body type (a cross-site HTML form cannot send one) and, when the
  browser sends an ``Origin``, come from the gateway's own origin or one listed in ``web.allowed_origins``.
  The WebSocket upgrade is checked for ``Origin`` the same way (cross-site WebSocket hijacking).
* Tokens are compared in constant time and never logged: the access log writes the path without its query.
* Every error is JSON: ``{"error": "<what is wrong>", "status": <code>}``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pulse.log import get_logger

log = get_logger("web.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, "status": status, **extra}, status=status)


class Policy:
    def __init__(self, token: str, *, loopback: bool, allowed_origins: list[str]) -> None:
        self.token = token
        self.loopback = loopback
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}

    def token_ok(self, request: web.Request) -> bool:
        if not self.token:
            return False
        given = ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:].strip()
        elif request.path == "/ws":
            given = request.query.get("token", "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser (curl, scripts): the bearer token is the check
            return True
        own = f"{request.scheme}://{request.host}"
        return origin.rstrip("/") in ({own} | self.allowed_origins)

    def refuse(self, request: web.Request) -> web.Response | None:
        """The error response for a request this policy refuses, or None."""
        if request.path in _OPEN_PATHS:
            return None
        write = request.method in _WRITE_METHODS
        if (write or request.path == "/ws") and not self.origin_ok(request):
            return json_error(403, f"origin {request.headers.get('Origin')!r} may not use this gateway "
                                   "(add it to web.allowed_origins)")  # fmt: skip
        needs_token = write or not self.loopback
        if needs_token and not self.token:
            what = "changes are" if write else "the gateway is bound beyond loopback, so every request is"
            return json_error(403, f"{what} refused: set web.token or web.token_file")
        if needs_token and not self.token_ok(request):
            return json_error(401, "missing or wrong bearer token (Authorization: Bearer <web.token>)",
                              )  # fmt: skip
        if write and request.body_exists and request.content_type != "application/json":
            return json_error(415, f"send the body as application/json, not {request.content_type!r}")
        return None


def middlewares(policy: Policy) -> list[Any]:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = policy.refuse(request)
        if refused is not None:
            if refused.status == 401:
                refused.headers["WWW-Authenticate"] = 'Bearer realm="pulse"'
            return refused
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_error(exc.status, exc.reason if exc.text is None or exc.text.startswith(str(exc.status))
                              else exc.text)  # fmt: skip
        except json.JSONDecodeError as exc:
            return json_error(400, f"request body is not valid JSON: {exc}")

    return [guard]


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query: it may hold a WebSocket token), status and time, as a structured line."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_taken: float) -> None:
        log.info("http", method=request.method, path=request.path, status=response.status,
                 ms=round(time_taken * 1000, 1), remote=request.remote or "-")  # fmt: skip

    @property
    def enabled(self) -> bool:
        return True


def now_ms() -> int:
    return int(time.time() * 1000)
