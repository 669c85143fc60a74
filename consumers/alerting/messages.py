"""The alert event published on ``service_topic("alerts", settings.alerting.alerts_topic)``.

One JSON object per message (msgspec, decimals as strings), keyed by the instrument's symbol, with the
message properties ``type=alert`` and ``schema_version``. The same document is the webhook body and the
``payload`` column of the ``alerts`` table, so every consumer sees identical bytes of meaning.

``alert_id`` is deterministic — ``"{rule_id}-{ts_event}"`` — so a replay after a restart produces the same
ids: the database stores each alert once and a receiver can de-duplicate on it.
"""

from __future__ import annotations

import msgspec

ALERT_SCHEMA_VERSION = 1


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: str  # "{rule_id}-{ts_event}": stable across replays
    rule_id: int
    rule_name: str
    kind: str  # the rule kind (price_cross, spread, …)
    venue: str
    symbol: str
    ts_event: int  # event time of the trigger, ns: the tick's ts_event (stale_feed: the timer's now)
    ts_tick_recv: int  # our receive time of the triggering tick, ns (stale_feed: the timer's now)
    condition: str  # above | below | up | down | cross_up | cross_down | wide | spike | stale | diverged
    value: str  # the observed value (an exact decimal string for prices)
    threshold: str
    message: str  # human-readable one-liner
    schema_version: int = ALERT_SCHEMA_VERSION


_enc = msgspec.json.Encoder(decimal_format="string")
_dec = msgspec.json.Decoder(Alert)


def encode_alert(alert: Alert) -> bytes:
    return _enc.encode(alert)


def decode_alert(data: bytes) -> Alert:
    return _dec.decode(data)


def alert_properties() -> dict[str, str]:
    return {"type": "alert", "schema_version": str(ALERT_SCHEMA_VERSION), "format": "json"}
