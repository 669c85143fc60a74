"""The OANDA v20 pricing-stream transport: one HTTP connection, raw lines out, errors classified.

``GET {api_url}/v3/accounts/{accountID}/pricing/stream?instruments=EUR_USD,USD_JPY`` with
``Authorization: Bearer <token>`` answers with a chunked body of newline-delimited JSON (prices and a
heartbeat every 5 seconds). :class:`OandaStream` opens that request, turns the status into one of the errors
below and yields the body's lines; parsing is :mod:`ingesters.oanda.parser`'s job and reconnecting is the
caller's.

::

    PulseError
    ├── VenueError
    │   ├── FatalVenueError          401/403/404/405 and other 4xx: stop, a person must fix something
    │   └── InvalidInstrumentError   400 naming instruments: drop them (``.instruments``), reconnect
    └── OandaTransportError          5xx, 408, 429, connection/TLS failures, timeouts, end of stream: retry
        └── StaleStreamError         no line (not even a heartbeat) within ``stale_after_s``: reconnect

The token lives only in the request header: no message, log line or ``repr`` contains it, and any echo of
it in an error body is masked.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Literal
from urllib.parse import quote

import aiohttp
import msgspec

from ingesters.oanda.parser import LineSplitter
from ingesters.oanda.schemas import ERROR_DECODER
from ingesters.oanda.symbols import instrument_to_symbol
from pulse.errors import ConfigError, FatalVenueError, PulseError, VenueError
from pulse.log import get_logger

__all__ = [
    "LIVE_STREAM_URL",
    "PRACTICE_STREAM_URL",
    "InvalidInstrumentError",
    "OandaStream",
    "OandaTransportError",
    "StaleStreamError",
]

log = get_logger(__name__)

PRACTICE_STREAM_URL = "https://stream-fxpractice.oanda.com"
LIVE_STREAM_URL = "https://stream-fxtrade.oanda.com"

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_INSTRUMENT_IN_TEXT = re.compile(r"\b[A-Z][A-Z0-9]{1,15}_[A-Z]{3}\b")
_RETRYABLE_4XX = frozenset({408, 429})  # request timeout, too many requests: a later attempt can succeed
_MAX_ERROR_BODY = 64 * 1024


class OandaTransportError(PulseError):
    """The connection failed or ended; reconnecting (with backoff) may help."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class StaleStreamError(OandaTransportError):
    """No line arrived, not even a heartbeat, for longer than the watchdog allows."""


class InvalidInstrumentError(VenueError):
    """OANDA refused one or more instruments (HTTP 400).

    ``instruments`` holds the names OANDA's message gave (those among the requested ones when it named
    any of them); it is empty when OANDA did not say which — then the caller cannot fix the request by
    dropping names and should stop.
    """

    def __init__(self, message: str, instruments: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.instruments: tuple[str, ...] = tuple(instruments)


class OandaStream:
    """One pricing-stream connection.

    Construct (no I/O), then ``async with stream:`` (or :meth:`open`) to connect — the HTTP status is
    checked there — and ``async for line in stream.lines():`` to read. A stream is used once: after
    :meth:`close` or the end of :meth:`lines` it cannot be reopened; make a new one to reconnect (pass a
    shared ``session`` to reuse its connection pool).

    ``lines()`` raises :class:`StaleStreamError` when no complete line arrives for ``stale_after_s`` (OANDA
    sends a heartbeat every 5 s, so 10 s means two were missed), and :class:`OandaTransportError` when the
    connection drops or the server ends the body (the stream never ends on its own).
    """

    def __init__(
        self,
        *,
        account_id: str,
        token: str,
        instruments: Iterable[str],
        environment: Literal["practice", "live"] = "practice",
        api_url: str | None = None,
        snapshot: bool = True,
        include_home_conversions: bool = False,
        stale_after_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        max_line_bytes: int = 1 << 20,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not token:
            raise ConfigError("OANDA token is empty (setting oanda.token / OANDA_TOKEN)")
        if not _ACCOUNT_ID.match(account_id or ""):
            raise ConfigError(
                f"invalid OANDA account id {account_id!r} (setting oanda.account_id): expected e.g. 101-004-1234567-001"
            )
        names = list(instruments)
        if not names:
            raise ConfigError("no OANDA instruments to stream")
        for name in names:
            instrument_to_symbol(name)  # raises SymbolError
        if len(set(names)) != len(names):
            raise ConfigError(f"OANDA instruments listed twice in {','.join(names)}")
        if stale_after_s <= 0 or connect_timeout_s <= 0:
            raise ConfigError("stale_after_s and connect_timeout_s must be positive")
        if api_url is None:
            if environment == "practice":
                api_url = PRACTICE_STREAM_URL
            elif environment == "live":
                api_url = LIVE_STREAM_URL
            else:
                raise ConfigError(f"OANDA environment must be 'practice' or 'live', got {environment!r}")
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"OANDA api_url must be an http(s) URL, got {api_url!r}")

        self.account_id = account_id
        self.instruments: tuple[str, ...] = tuple(names)
        self.url = f"{api_url.rstrip('/')}/v3/accounts/{quote(account_id, safe='-')}/pricing/stream"
        self.params = {
            "instruments": ",".join(self.instruments),
            "snapshot": "true" if snapshot else "false",
            "includeHomeConversions": "true" if include_home_conversions else "false",
        }
        self.stale_after_s = stale_after_s
        self.connect_timeout_s = connect_timeout_s
        self.max_line_bytes = max_line_bytes
        self.lines_read = 0
        self.oversized_lines = 0
        self._token = token
        self._session = session
        self._own_session = session is None
        self._response: aiohttp.ClientResponse | None = None
        self._state: Literal["new", "open", "closed"] = "new"

    def __repr__(self) -> str:
        return f"OandaStream(url={self.url!r}, instruments={','.join(self.instruments)}, state={self._state})"

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> OandaStream:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and check the response status; raises one of the module's errors on failure."""
        if self._state != "new":
            raise RuntimeError(f"OandaStream cannot be opened twice (state {self._state})")
        self._state = "open"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept-Datetime-Format": "RFC3339",
        }
        log.info("connecting to the pricing stream", url=self.url, instruments=self.params["instruments"])
        resp: aiohttp.ClientResponse | None = None
        body = ""
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                resp = await self._session.get(self.url, params=self.params, headers=headers)
                if resp.status != 200:
                    body = await self._read_error_body(resp)
        except TimeoutError as exc:
            if resp is not None:
                resp.close()
            await self.close()
            raise OandaTransportError(
                f"OANDA pricing stream {self.url}: no response within {self.connect_timeout_s:g}s"
            ) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            if resp is not None:
                resp.close()
            await self.close()
            raise OandaTransportError(
                f"OANDA pricing stream {self.url}: {self._mask(str(exc)) or type(exc).__name__}"
            ) from exc
        if resp.status != 200:
            resp.close()
            await self.close()
            raise self._status_error(resp.status, body, resp.headers.get("Retry-After"))
        self._response = resp
        log.info("pricing stream connected", instruments=self.params["instruments"])

    async def close(self) -> None:
        """Close the connection (and the session if this stream created it). Idempotent."""
        self._state = "closed"
        resp, self._response = self._response, None
        if resp is not None:
            resp.close()
        if self._own_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- reading ----------------------------------------------------------------------------------------

    async def lines(self) -> AsyncIterator[bytes]:
        """Yield each non-empty line of the body (without its newline), opening the stream if needed.

        Always ends by raising: :class:`StaleStreamError` on silence, :class:`OandaTransportError` when the
        connection drops or the body ends. Closing the stream (or breaking out) stops it quietly.
        """
        if self._state == "new":
            await self.open()
        if self._response is None:
            raise RuntimeError("OandaStream is closed")
        content = self._response.content
        splitter = LineSplitter(self.max_line_bytes)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stale_after_s
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._stale()
                try:
                    async with asyncio.timeout(remaining):
                        chunk = await content.readany()
                except TimeoutError:
                    raise self._stale() from None
                except (aiohttp.ClientError, ConnectionError) as exc:
                    raise OandaTransportError(
                        f"OANDA pricing stream {self.url} dropped: {self._mask(str(exc)) or type(exc).__name__}"
                    ) from exc
                if not chunk:
                    for line in splitter.flush():
                        self.lines_read += 1
                        yield line
                    raise OandaTransportError(f"OANDA pricing stream {self.url} ended by the server")
                lines = splitter.feed(chunk)
                if splitter.oversized != self.oversized_lines:
                    self.oversized_lines = splitter.oversized
                    log.warning(
                        "dropped an oversized stream line",
                        max_bytes=self.max_line_bytes,
                        starts=str(splitter.last_oversized_prefix)[:80],
                    )
                if lines:
                    deadline = loop.time() + self.stale_after_s
                    for line in lines:
                        self.lines_read += 1
                        yield line
        finally:
            await self.close()

    # -- helpers ----------------------------------------------------------------------------------------

    def _stale(self) -> StaleStreamError:
        return StaleStreamError(f"OANDA pricing stream {self.url}: no data or heartbeat for {self.stale_after_s:g}s")

    def _mask(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    async def _read_error_body(self, resp: aiohttp.ClientResponse) -> str:
        try:
            raw = await resp.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, ConnectionError):
            return ""
        try:
            message = ERROR_DECODER.decode(raw).errorMessage
        except (msgspec.DecodeError, msgspec.ValidationError):
            message = raw.decode("utf-8", "replace").strip()[:500]
        return self._mask(message)

    def _status_error(self, status: int, message: str, retry_after: str | None) -> PulseError:
        detail = f"{status} {message}".rstrip()
        if status == 401:
            return FatalVenueError(f"OANDA rejected the token (setting oanda.token / OANDA_TOKEN): {detail}")
        if status == 400 and "instrument" in message.lower():
            named = _INSTRUMENT_IN_TEXT.findall(message)
            ours = [n for n in named if n in self.instruments]
            bad = ours or named
            which = ", ".join(bad) if bad else "OANDA did not say which"
            return InvalidInstrumentError(
                f"OANDA refused instrument(s) {which} (requested {self.params['instruments']}): {detail}",
                dict.fromkeys(bad),
            )
        if status >= 500 or status in _RETRYABLE_4XX:
            return OandaTransportError(
                f"OANDA pricing stream {self.url}: HTTP {detail}",
                status=status,
                retry_after_s=_parse_retry_after(retry_after),
            )
        hint = {
            403: " (the token may not be allowed to read this account, setting oanda.account_id)",
            404: " (check setting oanda.account_id and the environment / api_url)",
        }.get(status, "")
        return FatalVenueError(f"OANDA refused the pricing stream request{hint}: {detail}")


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: leave the delay to the caller's backoff
    return seconds if seconds >= 0 else None
