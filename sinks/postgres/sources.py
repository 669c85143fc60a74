"""What the sink consumes: its sources (``NAMESPACE/VENUE=SYMBOLS``) as an explicit topic list (pulsar-lite has
no pattern subscriptions), and the payloads it reads from them (JSON or MessagePack events)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pulsar

from pulse.errors import CodecError, ConfigError
from pulse.instruments import parse_instrument, parse_instrument_list
from pulse.models import Event
from pulse.settings import Settings
from pulse.symbols import parse_symbol_list
from pulse.topics import NAMESPACES, reading_channels, topic
from pulse.venues import get, venues
from sinks.postgres.config import DEFAULT_CHANNELS

_json_dec = msgspec.json.Decoder(Event)
_mp_dec = msgspec.msgpack.Decoder(Event)


def decode_payload(data: bytes) -> Event:
    """Decode a JSON or MessagePack event, telling them apart by the first byte (a JSON event is an object,
    ``{``; a MessagePack one a map, 0x80-0x8f/0xde/0xdf) — cheaper than reading the ``format`` property."""
    try:
        if data[:1] == b"{":
            return _json_dec.decode(data)
        return _mp_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"cannot decode event: {exc}") from exc


def topics_for(
    settings: Settings,
    namespace: str = "crypto",
    venue: str = "kraken",
    symbols: Sequence[str] | None = None,
    channels: Sequence[str] = DEFAULT_CHANNELS,
) -> list[str]:
    """The explicit topic list for one venue's streams (pulsar-lite has no pattern subscriptions).

    ``symbols`` defaults to ``settings.kraken.symbols``.
    """
    syms = settings.kraken.symbols if symbols is None else symbols
    chans = reading_channels(namespace, channels)  # historical: the backfills' quote_batch topics too
    return [topic(namespace, venue, s, ch, settings.pulsar.tenant) for s in syms for ch in chans]


def _symbols(venue: str, text: str) -> list[str]:
    """A venue's comma-separated symbols, canonical: by its rules when the registry knows it (so its own
    spellings, e.g. OANDA's EUR_USD, are accepted), else as canonical BASE/QUOTE names."""
    if venue not in venues():
        return parse_symbol_list(text)
    return [i.symbol for i in parse_instrument_list(text, venue)]


def parse_source(spec: str) -> tuple[str, str, list[str]]:
    """``crypto/kraken=BTC/USD,ETH/USD`` → ("crypto", "kraken", ["BTC/USD", "ETH/USD"]), validated."""
    head, sep, syms = spec.partition("=")
    namespace, slash, venue = head.strip().partition("/")
    if not sep or not slash or namespace not in NAMESPACES or not venue.isidentifier():
        raise ConfigError(
            f"invalid sink source {spec!r}: expected NAMESPACE/VENUE=SYMBOL[,SYMBOL…] or VENUE:SYMBOL[,…], "
            "e.g. crypto/kraken=BTC/USD or kraken:BTC/USD,ETH/USD"
        )
    return namespace, venue, _symbols(venue, syms)


def parse_sources(spec: str) -> list[tuple[str, str, list[str]]]:
    """A source: ``NAMESPACE/VENUE=SYMBOLS`` (see :func:`parse_source`) or instrument ids, ``kraken:BTC/USD,ETH/USD,
    oanda:EUR_USD`` (a symbol without a venue is the previous one's venue; namespaces from the venue registry),
    as (namespace, venue, symbols) per venue."""
    if "=" in spec or ":" not in spec:
        return [parse_source(spec)]
    out: dict[str, list[str]] = {}
    venue: str | None = None
    for item in spec.split(","):
        inst = parse_instrument(item, None if ":" in item else venue)
        venue = inst.venue
        if inst.symbol in out.setdefault(venue, []):
            raise ConfigError(f"invalid sink source {spec!r}: {inst} listed twice")
        out[venue].append(inst.symbol)
    return [(get(v).namespace, v, syms) for v, syms in out.items()]


def topics_for_sources(settings: Settings, sources: Sequence[str] | None = None) -> list[str]:
    """The topic list for ``sources`` (default ``sink.sources``, else crypto/kraken with kraken.symbols)."""
    specs = list(sources or settings.sink.sources)
    if not specs:
        return topics_for(settings)
    out: list[str] = []
    for spec in specs:
        for namespace, venue, symbols in parse_sources(spec):
            out += [t for t in topics_for(settings, namespace, venue, symbols) if t not in out]
    return out


def receive_many(consumers: Sequence[pulsar.Consumer], limit: int, idle_ms: int) -> list[pulsar.Message]:
    """Take what each consumer holds; when none holds anything, wait a short while (``idle_ms`` over all) on
    each in turn."""
    msgs: list[pulsar.Message] = []
    wait = max(1, idle_ms // (4 * len(consumers)))
    for _round in range(4):
        for c in consumers:
            try:
                msgs.append(c.receive(timeout_millis=1 if msgs else wait))
                while len(msgs) < limit:
                    msgs.append(c.receive(timeout_millis=1))
            except pulsar.Timeout:
                pass
            if len(msgs) >= limit:
                return msgs
        if msgs:
            return msgs
    return msgs
