"""The console's pure parts: control-message parsing, the hub's bounds, resolution picking, weekly roll-up."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sinks.postgres.candles import CandleRow
from web.data import _weekly, pick_resolution
from web.hub import Hub, Outbox
from web.protocol import ProtocolError, parse_control
from web.security import is_loopback

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


def test_control_messages_are_parsed_and_bad_ones_named() -> None:
    m = parse_control('{"op": "subscribe", "venue": "kraken", "symbol": "BTC/USD", "channels": ["trade"], "req_id": 4}')
    assert (m.op, m.venue, m.symbol, m.channels, m.req_id) == ("subscribe", "kraken", "BTC/USD", ["trade"], 4)
    assert parse_control('{"op": "subscribe", "channels": ["alerts", "fills"]}').channels == ["alerts", "fills"]
    for text, words, req_id in [
        ("{not json", "invalid JSON", None),
        ("[1, 2]", "Expected `object`, got `array`", None),
        ('{"op": "subscribe", "channels": ["trade"], "req_id": 9}', "venue and symbol are required", 9),
        ('{"op": "subscribe", "venue": "kraken", "symbol": "X/Y", "channels": []}', "at least one", None),
        ('{"op": "subscribe", "venue": "kraken", "symbol": "X/Y", "channels": ["trade", "trade"]}', "twice", None),
        ('{"op": "subscribe", "venue": "kraken", "symbol": "X/Y", "channels": ["book"]}', "unknown channel", None),
        ('{"op": "subscribe", "extra": 1, "req_id": "a"}', "invalid control message", "a"),
        ("x" * 5000, "too large", None),
    ]:
        with pytest.raises(ProtocolError) as err:
            parse_control(text)
        assert words in str(err.value) and err.value.req_id == req_id, text


def test_quotes_conflate_in_place_and_trades_are_bounded() -> None:
    hub = Hub(max_pending=3)
    box = Outbox(3)
    closed: list[str] = []
    box.on_give_up = closed.append
    assert hub.subscribe(box, ["q", "t"]) == []
    hub.dispatch("q", "q1", conflate=True, remember=True)
    hub.dispatch("t", "t1", conflate=False, remember=True)
    hub.dispatch("q", "q2", conflate=True, remember=True)  # replaces q1, keeping its place before t1
    assert box.take() == ["q2", "t1"] and hub.stats.conflated == 1
    for i in range(12):  # a burst to an idle writer: up to 4 x the bound waits, the client is not at fault
        hub.dispatch("t", f"t{i}", conflate=False, remember=True)
    assert closed == [] and box.trades == 12
    hub.dispatch("t", "t12", conflate=False, remember=True)  # past the hard bound
    assert closed == ["slow consumer: more than 3 events waiting"] and hub.stats.slow_closed == 1
    assert box.pending == {} and hub.subscribers == {}  # nothing kept for it any more
    stuck = Outbox(3)
    stuck.on_give_up = closed.append
    hub.subscribe(stuck, ["t"])
    stuck.busy_since = time.monotonic() - 5  # its writer has been blocked on the socket for 5 s
    for i in range(4):
        hub.dispatch("t", f"s{i}", conflate=False, remember=True)
    assert len(closed) == 2 and stuck.closed_reason is not None  # the fourth waiting trade: too far behind
    late = Outbox(3)
    assert hub.subscribe(late, ["q", "t"]) == ["q2", "s3"]  # the last values, sent first


def test_the_resolution_is_the_finest_with_at_most_n_buckets() -> None:
    day = timedelta(days=1)
    assert pick_resolution(T0, T0 + 30 * day, 4) == "1w"
    assert pick_resolution(T0, T0 + 30 * day, 30) == "1d"
    assert pick_resolution(T0, T0 + day, 24) == "1h"
    assert pick_resolution(T0, T0 + day, 288) == "5m"
    assert pick_resolution(T0, T0 + timedelta(hours=2), 120) == "1m"
    assert pick_resolution(T0, T0 + timedelta(minutes=3), 200) == "tick"


def test_weekly_candles_roll_up_the_days_exactly() -> None:
    d = [CandleRow(T0 + timedelta(days=i), Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v), n)
         for i, (o, h, lo, c, v, n) in enumerate([("10", "12", "9", "11", "1.5", 3), ("11", "15", "10.5", "14", "2", 4),
                                                  ("14", "14", "8", "9", "0.25", 1)])]  # fmt: skip
    d.append(CandleRow(T0 + timedelta(days=7), Decimal(9), Decimal(9), Decimal(9), Decimal(9), None, 1))
    weeks = _weekly(d)
    assert [(w.bucket, w.open, w.high, w.low, w.close, w.volume, w.ticks) for w in weeks] == [
        (T0, Decimal(10), Decimal(15), Decimal(8), Decimal(9), Decimal("3.75"), 8),
        (T0 + timedelta(days=7), Decimal(9), Decimal(9), Decimal(9), Decimal(9), None, 1),
    ]


def test_loopback_is_what_the_open_read_rule_trusts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")
