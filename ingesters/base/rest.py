"""What the venues' REST clients share: one aiohttp session per client, requests (and failures) counted, transport
errors and timeouts turned into the venue's own error at this boundary, and capped exponential retries.

- :class:`RestClient` (an ingester's metadata and snapshot reads): the session opens on first use, ``close()``
  ends it; a transport failure raises ``failure`` and counts in :attr:`RestClient.failures`.
- :class:`RetryingRest` (``pulse repair``'s history reads): an async context manager; a transport failure raises
  ``error(…, retryable=True)`` and :meth:`RetryingRest._retrying` tries an attempt again while its error says it
  may pass (0.5 s doubling, capped at ``backoff_max_s``), at most ``max_attempts`` times.

A venue's client keeps its endpoints, its parameters and how it reads an answer (and an error answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp

__all__ = ["RestClient", "RetryingRest"]

T = TypeVar("T")
_TRANSPORT = (aiohttp.ClientError, TimeoutError, OSError)
Params = Mapping[str, str] | Sequence[tuple[str, str]]


class RestClient:
    """A venue's REST base URL with a lazily opened session; ``failure`` is the venue's error class."""

    failure: type[Exception]

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.failures = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch(self, path: str, params: Params) -> tuple[int, bytes]:
        """``GET {base_url}{path}``: (HTTP status, body); a transport failure raises ``failure``."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        self.requests += 1
        try:
            async with self._session.get(f"{self.base_url}{path}", params=params) as resp:
                body = await resp.read()
                status = resp.status
        except _TRANSPORT as exc:
            self.failures += 1
            raise self.failure(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        return status, body


class RetryingRest:
    """An async context manager holding one session; ``error`` is the venue's error class, built as
    ``error(message, retryable=…)`` and carrying ``retryable``."""

    error: Any

    def __init__(
        self,
        base_url: str,
        *,
        max_attempts: int,
        backoff_max_s: float,
        timeout_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.backoff_max_s = backoff_max_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = dict(headers) if headers else None
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    async def __aenter__(self) -> Any:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch(self, url: str, params: Params) -> tuple[int, bytes]:
        """``GET url`` once: (HTTP status, body); a transport failure raises a retryable ``error``."""
        assert self._session is not None, f"use {type(self).__name__} as an async context manager"
        self.requests += 1
        try:
            async with self._session.get(url, params=params) as resp:
                body, status = await resp.read(), resp.status
        except _TRANSPORT as exc:
            raise self.error(f"GET {url}: {type(exc).__name__}: {exc}", retryable=True) from None
        return status, body

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` until it succeeds, its error is not retryable, or ``max_attempts`` were made."""
        delay = 0.5
        for n in range(1, self.max_attempts + 1):
            try:
                return await attempt()
            except self.error as exc:
                if not exc.retryable or n == self.max_attempts:
                    raise
                self.retries += 1
                await self._sleep(min(delay, self.backoff_max_s))
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover
