"""Kraken WebSocket v2 requests and the protocol's time format.

The builders return the JSON text to send. Canonical symbols (``BTC/USD``) are Kraken v2's own names (v1's
``XBT`` is not used by v2), so symbols pass through after validation.

Timestamps are RFC 3339 (``2023-09-25T07:49:37.708706Z``); :func:`parse_rfc3339_ns` turns one into integer
nanoseconds since the epoch with integer arithmetic only, so nothing is lost to a float or to ``datetime``'s
microsecond resolution.
"""

from __future__ import annotations

import calendar
import re
import time

from ingesters.kraken.schemas import Request, SubscriptionParams, encoder
from pulse.errors import ConfigError
from pulse.symbols import canonical

#: Channels these builders subscribe to.
CHANNELS = ("trade", "ticker", "book", "instrument")
#: The depths Kraken's book channel accepts.
BOOK_DEPTHS = (10, 25, 100, 500, 1000)

_NS = 1_000_000_000


def subscribe(channel: str, symbols: list[str], *, depth: int | None = None, req_id: int, snapshot: bool = True) -> str:
    """``{"method": "subscribe", "params": {...}, "req_id": N}``.

    ``symbols`` must be non-empty, except for ``instrument``, which covers every pair and ignores them.
    ``depth`` is for ``book`` only; when omitted Kraken uses 10. Raises :class:`ConfigError` for anything
    Kraken would refuse.
    """
    return _request("subscribe", channel, symbols, depth, req_id, snapshot)


def unsubscribe(channel: str, symbols: list[str], *, depth: int | None = None, req_id: int) -> str:
    """``{"method": "unsubscribe", "params": {...}, "req_id": N}`` — same rules as :func:`subscribe`."""
    return _request("unsubscribe", channel, symbols, depth, req_id, None)


def ping(req_id: int) -> str:
    """``{"method": "ping", "req_id": N}``; Kraken answers ``{"method": "pong", "req_id": N, ...}``."""
    return encoder.encode(Request(method="ping", req_id=_check_req_id(req_id))).decode()


def _request(
    method: str, channel: str, symbols: list[str], depth: int | None, req_id: int, snapshot: bool | None
) -> str:
    if channel not in CHANNELS:
        raise ConfigError(f"unknown Kraken channel {channel!r}: expected one of {', '.join(CHANNELS)}")
    if isinstance(symbols, str):
        raise ConfigError("symbols must be a list of pairs, not a string")
    pairs = [] if channel == "instrument" else [canonical(s) for s in symbols]
    if channel != "instrument" and not pairs:
        raise ConfigError(f"the {channel} channel needs at least one symbol")
    if depth is not None:
        if channel != "book":
            raise ConfigError(f"depth applies to the book channel only, not {channel}")
        if depth not in BOOK_DEPTHS:
            raise ConfigError(f"invalid book depth {depth!r}: expected one of {BOOK_DEPTHS}")
    params = SubscriptionParams(channel=channel, symbol=pairs or None, depth=depth, snapshot=snapshot)
    return encoder.encode(Request(method=method, params=params, req_id=_check_req_id(req_id))).decode()


def _check_req_id(req_id: int) -> int:
    if type(req_id) is not int or req_id < 0:
        raise ConfigError(f"req_id must be a non-negative integer, got {req_id!r}")
    return req_id


# ------------------------------------------------------------------------------------------------ time

_SECOND = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})\Z", re.ASCII)
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})\Z", re.ASCII)
# Kraken stamps many messages within the same second: cache the whole-second prefix → epoch seconds.
_second_cache: dict[str, int] = {}


def parse_rfc3339_ns(text: str) -> int:
    """``"2023-09-25T07:49:37.708706Z"`` → nanoseconds since the epoch (UTC). Raises :class:`ValueError`.

    Accepts 0 to 9 fractional digits and ``Z`` or a ``±HH:MM`` offset.
    """
    base = _second_cache.get(text[:19])
    if base is None:
        base = _epoch_second(text)
    # Kraken's own shape, "….708706Z", takes the short path.
    if len(text) == 27 and text[26] == "Z" and text[19] == ".":
        micros = text[20:26]
        if micros.isdigit() and micros.isascii():
            return base * _NS + int(micros) * 1000
    rest = text[19:]
    frac = 0
    if rest[:1] == ".":
        end = 1
        while end < len(rest) and "0" <= rest[end] <= "9":
            end += 1
        digits = rest[1:end]
        if not 1 <= len(digits) <= 9:
            raise ValueError(f"RFC 3339 fraction must have 1-9 digits: {text!r}")
        frac = int(digits) * 10 ** (9 - len(digits))
        rest = rest[end:]
    if rest == "Z" or rest == "z":
        return base * _NS + frac
    m = _OFFSET.match(rest)
    if m is None or int(m[2]) > 23 or int(m[3]) > 59:
        raise ValueError(f"RFC 3339 timestamp needs Z or ±HH:MM: {text!r}")
    offset = (int(m[2]) * 3600 + int(m[3]) * 60) * (1 if m[1] == "+" else -1)
    return (base - offset) * _NS + frac


def _epoch_second(text: str) -> int:
    prefix = text[:19]
    m = _SECOND.match(prefix)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h < 24 and mi < 60 and s <= 60):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    if len(_second_cache) >= 4096:
        _second_cache.clear()
    _second_cache[prefix] = base
    return base


def format_rfc3339_ns(ns: int, digits: int = 6) -> str:
    """Nanoseconds since the epoch → ``"2023-09-25T07:49:37.708706Z"`` (Kraken sends 6 digits)."""
    seconds, rem = divmod(ns, _NS)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if digits <= 0:
        return head + "Z"
    return f"{head}.{rem // 10 ** (9 - digits):0{digits}d}Z"
