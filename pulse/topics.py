"""Topic naming, both directions.

``persistent://{tenant}/{namespace}/{venue}.{SYMBOL}.{channel}``, e.g.
``persistent://market-data/crypto/kraken.BTC-USD.trade`` or, for an equity ticker (no quote currency),
``persistent://market-data/equities/alpaca.BRK_B.trade`` (see :mod:`pulse.symbols` for both token forms). One pair
of functions builds and parses names; nothing else in Pulse formats a topic string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from pulse.errors import TopicError
from pulse.symbols import from_topic_token, to_topic_token

DEFAULT_TENANT = "market-data"

#: Namespaces group topics that share a policy (retention, TTL, dedup). See ``pulsar/namespaces.yaml``.
NAMESPACES = ("crypto", "fx", "equities", "historical", "derived", "alerts", "trading", "control", "deadletter")

#: Channels a venue stream can publish, and the event types each carries (plus ``status`` markers).
#: ``quote_batch`` is the backfill's own channel: QuoteBatch messages (~1,000 ticks each) have their own topic and
#: registered schema, so every message on a ``quote`` topic is one Quote (what a schema-mapping reader such as
#: Pulsar IO's JDBC sink needs). One Quote per message instead costs the backfill 7-9x its rate (README, Speed).
CHANNELS = ("trade", "quote", "ticker", "book", "candle", "status", "quote_batch")

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_TOPIC = re.compile(
    r"^(?P<persistence>persistent|non-persistent)://(?P<tenant>[a-z][a-z0-9_-]*)/(?P<namespace>[a-z][a-z0-9_-]*)/"
    r"(?P<venue>[a-z][a-z0-9_-]*)\.(?P<symbol>[A-Z0-9]+-[A-Z0-9]+|[A-Z]{1,5}(?:_[A-Z]{1,2})?)\.(?P<channel>[a-z_]+)$"
)


class TopicName(NamedTuple):
    tenant: str
    namespace: str
    venue: str
    symbol: str  # canonical, e.g. BTC/USD
    channel: str


def _check(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise TopicError(f"invalid {kind} {value!r}: lower-case letters, digits, '-' or '_', max 32")
    return value


def topic(namespace: str, venue: str, symbol: str, channel: str, tenant: str = DEFAULT_TENANT) -> str:
    """Build the full topic name for one venue stream."""
    _check("tenant", tenant)
    if namespace not in NAMESPACES:
        raise TopicError(f"unknown namespace {namespace!r}: expected one of {', '.join(NAMESPACES)}")
    _check("venue", venue)
    if channel not in CHANNELS:
        raise TopicError(f"unknown channel {channel!r}: expected one of {', '.join(CHANNELS)}")
    try:
        token = to_topic_token(symbol)
    except ValueError as exc:
        raise TopicError(str(exc)) from exc
    return f"persistent://{tenant}/{namespace}/{venue}.{token}.{channel}"


def parse_topic(name: str) -> TopicName:
    """Parse a topic built by :func:`topic` (or a partition of it, ``…-partition-N``)."""
    base = re.sub(r"-partition-\d+$", "", name)
    m = _TOPIC.match(base)
    if not m:
        raise TopicError(f"not a Pulse venue topic: {name!r}")
    if m["namespace"] not in NAMESPACES or m["channel"] not in CHANNELS:
        raise TopicError(f"not a Pulse venue topic (namespace/channel): {name!r}")
    return TopicName(m["tenant"], m["namespace"], m["venue"], from_topic_token(m["symbol"]), m["channel"])


def namespace_name(namespace: str, tenant: str = DEFAULT_TENANT) -> str:
    """``market-data/crypto`` — the form the admin API and topic-list calls take."""
    if namespace not in NAMESPACES:
        raise TopicError(f"unknown namespace {namespace!r}")
    return f"{_check('tenant', tenant)}/{namespace}"


def dead_letter_topic(source: str, tenant: str = DEFAULT_TENANT) -> str:
    """Where a component sends what it could not process, e.g. ``…/deadletter/ingest.kraken``."""
    if not re.match(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$", source):
        raise TopicError(f"invalid dead-letter source {source!r}")
    return f"persistent://{_check('tenant', tenant)}/deadletter/{source}"


_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}(\.[a-z0-9][a-z0-9_-]{0,31}){0,3}$")


def service_topic(namespace: str, name: str, tenant: str = DEFAULT_TENANT) -> str:
    """A service's own topic (not a venue stream), e.g. ``…/trading/orders``, ``…/alerts/events``."""
    if namespace not in NAMESPACES:
        raise TopicError(f"unknown namespace {namespace!r}: expected one of {', '.join(NAMESPACES)}")
    if not _SERVICE_NAME.match(name):
        raise TopicError(f"invalid topic name {name!r}: lower-case dot-separated words, e.g. orders or fills.paper")
    return f"persistent://{_check('tenant', tenant)}/{namespace}/{name}"


def control_topic(name: str = "instruments", tenant: str = DEFAULT_TENANT) -> str:
    return service_topic("control", name, tenant)


#: Which channel each event type is published on.
CHANNEL_OF_EVENT = {
    "trade": "trade",
    "quote": "quote",
    "ticker": "ticker",
    "book_snapshot": "book",
    "book_delta": "book",
    "candle": "candle",
    "status": "status",
    "quote_batch": "quote_batch",  # its own topic and schema: a quote topic carries one Quote per message
}

#: Namespaces where quotes also come as QuoteBatch messages (the backfills publish to ``historical`` only).
BATCHED_NAMESPACES = ("historical",)


def reading_channels(namespace: str, channels: Iterable[str]) -> list[str]:
    """The channels a reader of ``channels`` subscribes to in ``namespace``: where backfills publish, reading
    quotes also means reading the ``quote_batch`` topic."""
    out = list(dict.fromkeys(channels))
    if namespace in BATCHED_NAMESPACES and "quote" in out and "quote_batch" not in out:
        out.insert(out.index("quote") + 1, "quote_batch")
    return out
