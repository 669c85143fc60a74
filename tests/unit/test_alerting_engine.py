"""The pure alerting engine: exact alerts per rule kind, cooldown and hysteresis, FX weekends, determinism."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from consumers.alerting.engine import AlertEngine
from consumers.alerting.indicators import EMA, SMA, BucketVolume, WindowedChange
from consumers.alerting.messages import Alert, decode_alert, encode_alert
from consumers.alerting.rules import RuleError, make_rule
from pulse.models import BookDelta, Level, Quote, QuoteBatch, Status, Trade

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a Tuesday (2023-11-14), FX open


def q(t: float, bid: str, ask: str, venue: str = "kraken", symbol: str = "BTC/USD", t0: int = T0) -> Quote:
    ts = t0 + int(t * S)
    return Quote(venue=venue, symbol=symbol, ts_event=ts, ts_recv=ts, bid=Decimal(bid), bid_size=Decimal(1),
                 ask=Decimal(ask), ask_size=Decimal(1))  # fmt: skip


def mid(t: float, price: str, **kw: Any) -> Quote:
    p = Decimal(price)
    return q(t, str(p - Decimal("0.5")), str(p + Decimal("0.5")), **kw)


def tr(t: float, price: str, size: str = "1", venue: str = "kraken", symbol: str = "BTC/USD") -> Trade:
    ts = T0 + int(t * S)
    return Trade(venue=venue, symbol=symbol, ts_event=ts, ts_recv=ts, price=Decimal(price), size=Decimal(size),
                 side="buy", trade_id=str(ts))  # fmt: skip


def rule(kind: str, id: int = 1, **fields: Any) -> Any:
    fields.setdefault("venue", "kraken")
    fields.setdefault("symbol", "BTC/USD")
    fields.setdefault("cooldown_s", 0)
    return make_rule(kind, {"id": id, **fields})


def run(engine: AlertEngine, events: list[Any]) -> list[Alert]:
    out: list[Alert] = []
    for ev in events:
        out += engine.on_event(ev)
    return out


def at(t: float) -> int:
    return T0 + int(t * S)


# -- price_cross ------------------------------------------------------------------------------------------
def test_price_cross_above_fires_on_the_crossing_tick_only() -> None:
    eng = AlertEngine([rule("price-cross", above="100")])
    alerts = run(eng, [mid(0, "99"), mid(1, "100"), mid(2, "100.5"), mid(3, "101"), mid(4, "102")])
    assert [(a.ts_event, a.condition, a.value, a.threshold, a.alert_id) for a in alerts] == [
        (at(2), "above", "100.5", "100", f"1-{at(2)}")
    ]
    assert alerts[0].message == "kraken BTC/USD: price 100.5 crossed above 100"


def test_price_cross_first_observation_is_not_a_cross() -> None:
    eng = AlertEngine([rule("price-cross", above="100")])
    assert run(eng, [mid(0, "105"), mid(1, "106")]) == []
    assert [a.ts_event for a in run(eng, [mid(2, "99"), mid(3, "101")])] == [at(3)]


def test_price_cross_below_and_last_price() -> None:
    eng = AlertEngine([rule("price-cross", below="100", price="last")])
    alerts = run(eng, [mid(0, "50"), tr(1, "101"), tr(2, "100"), tr(3, "99.99"), mid(4, "10")])
    assert [(a.ts_event, a.condition, a.value) for a in alerts] == [(at(3), "below", "99.99")]


def test_price_cross_hysteresis_stops_flapping() -> None:
    # oscillating 99.9 / 100.1 around the level: without hysteresis every up-move fires
    prices = ["99", "100.1", "99.9", "100.1", "99.9", "100.1", "98.9", "100.2"]
    no_h = AlertEngine([rule("price-cross", above="100")])
    assert len(run(no_h, [mid(i, p) for i, p in enumerate(prices)])) == 4
    with_h = AlertEngine([rule("price-cross", above="100", hysteresis=1)])
    alerts = run(with_h, [mid(i, p) for i, p in enumerate(prices)])
    # fires at t=1, re-arms only at 98.9 (<= 99), fires again at t=7
    assert [a.ts_event for a in alerts] == [at(1), at(7)]


def test_cooldown_swallows_and_disarms() -> None:
    eng = AlertEngine([rule("price-cross", above="100", cooldown_s=10)])
    events = [mid(0, "99"), mid(1, "101"), mid(2, "99"), mid(5, "101"), mid(6, "99"), mid(12, "101")]
    alerts = run(eng, events)
    assert [a.ts_event for a in alerts] == [at(1), at(12)]
    assert eng.rule_stats()[1] == {"fired": 2, "swallowed": 1}


def test_cross_group_many_levels_matches_independent_engines() -> None:
    """The bisect index gives exactly what one engine per rule gives."""
    rnd = random.Random(5)
    rules = []
    for i in range(1, 60):
        lvl = str(Decimal(90) + Decimal(rnd.randrange(0, 2000)) / 100)
        side = "above" if i % 2 else "below"
        rules.append(rule("price-cross", id=i, hysteresis=rnd.choice([0, 0.5, 2]), cooldown_s=rnd.choice([0, 3]),
                          **{side: lvl}))  # fmt: skip
    ticks = []
    p = Decimal(100)
    for t in range(3000):
        p += Decimal(rnd.randrange(-100, 101)) / 100
        ticks.append(mid(t / 10, str(p)))
    together = run(AlertEngine(rules), ticks)
    alone = sorted((a for r in rules for a in run(AlertEngine([r]), ticks)), key=lambda a: (a.ts_event, a.rule_id))
    assert len(together) > 50
    assert together == alone


# -- pct_change ---------------------------------------------------------------------------------------------
def test_pct_change_over_window() -> None:
    eng = AlertEngine([rule("pct-change", window_s=10, pct=2, hysteresis=1)])
    events = [mid(0, "100"), mid(5, "101"), mid(9, "101.9")]  # window not full yet: no reference
    events += [mid(10, "102")]  # vs 100 as of t=0: +2% → fires
    events += [mid(11, "102.5")]  # vs 100 (as of t=1): +2.5%, but disarmed
    events += [mid(15, "102.5")]  # vs 101 (as of t=5): +1.49%, not below pct - hysteresis = 1: still disarmed
    events += [mid(16, "101.5")]  # vs 101 (as of t=6): +0.50% → re-armed
    events += [mid(21, "104")]  # vs 102.5 (as of t=11): +1.46% → nothing
    events += [mid(26, "99")]  # vs 101.5 (as of t=16): -2.46% → fires "down"
    alerts = run(eng, events)
    assert [(a.ts_event, a.condition, a.value) for a in alerts] == [(at(10), "up", "2"), (at(26), "down", "-2.46305")]


def test_pct_change_direction_filter() -> None:
    eng = AlertEngine([rule("pct-change", window_s=1, pct=1, direction="up")])
    assert run(eng, [mid(0, "100"), mid(1, "98"), mid(2, "98"), mid(3, "98")]) == []  # -2%: not "up"
    assert [(a.condition, a.value) for a in run(eng, [mid(4, "100")])] == [("up", "2.04082")]


# -- ma_cross -----------------------------------------------------------------------------------------------
def test_sma_cross_every_tick() -> None:
    eng = AlertEngine([rule("ma-cross", ma="sma", fast=2, slow=4)])
    prices = ["10", "10", "10", "9", "9", "12", "12", "8", "8"]
    alerts = run(eng, [mid(i, p) for i, p in enumerate(prices)])
    # t=3: fast 9.5 < slow 9.75 → first regime (down), no alert; t=5: fast 10.5 > slow 10 → cross_up;
    # t=7: fast 10 < slow 10.25 → cross_down
    assert [(a.ts_event, a.condition) for a in alerts] == [(at(5), "cross_up"), (at(7), "cross_down")]


def test_ema_cross_with_interval_sampling_and_hysteresis() -> None:
    eng = AlertEngine([rule("ma-cross", ma="ema", fast=2, slow=3, interval_s=10, hysteresis=50, direction="up")])
    # one bucket every 10 s; the bucket's last price is the sample, taken when the next bucket starts
    prices = [(0, "100"), (5, "100"), (10, "100"), (20, "90"), (30, "90"), (40, "120"), (41, "80"), (45, "121")]
    prices += [(50, "121"), (60, "121")]
    alerts = run(eng, [mid(t, p) for t, p in prices])
    # samples: 100 (t=10), 100 (t=20), 90 (t=30) → ready: fast 95.0, slow 96.67 → -172 bps: regime down;
    # 90 (t=40): fast 91.67 slow 93.33 → down; 121 (t=50): fast 111.2 slow 107.2 → +376 bps: cross_up
    assert [(a.ts_event, a.condition) for a in alerts] == [(at(50), "cross_up")]


def test_ema_and_sma_values() -> None:
    s, e = SMA(n=3), EMA(n=3)
    for x in (1.0, 2.0, 3.0, 4.0):
        s.update(x)
        e.update(x)
    assert s.value == 3.0 and s.ready
    assert e.value == pytest.approx(2.0 + 0.5 * (4.0 - 2.0))


# -- spread ---------------------------------------------------------------------------------------------------
def test_spread_wider_than_bps_with_hysteresis() -> None:
    eng = AlertEngine([rule("spread", bps=10, hysteresis=4)])
    events = [q(0, "100", "100.05"), q(1, "100", "100.2"), q(2, "100", "100.2"), q(3, "100", "100.08")]
    events += [q(4, "100", "100.11"), q(5, "100", "100.05"), q(6, "100", "100.11")]
    alerts = run(eng, events)
    # t=1: 19.98 bps fires; t=3: 8 bps (> 6): not re-armed; t=4 no alert; t=5: 5 bps re-arms; t=6 fires
    assert [(a.ts_event, a.condition) for a in alerts] == [(at(1), "wide"), (at(6), "wide")]
    assert alerts[0].value == "19.98"


def test_book_delta_top_of_book_feeds_quote_rules() -> None:
    eng = AlertEngine([rule("spread", bps=10)])
    d = BookDelta(venue="kraken", symbol="BTC/USD", ts_event=at(1), ts_recv=at(1), bids=(), asks=(),
                  best_bid=Level(Decimal(100), Decimal(1)), best_ask=Level(Decimal(101), Decimal(1)))  # fmt: skip
    assert [a.ts_event for a in eng.on_event(d)] == [at(1)]


# -- volume_spike -----------------------------------------------------------------------------------------
def test_volume_spike_zscore() -> None:
    eng = AlertEngine([rule("volume-spike", interval_s=10, buckets=4, z=3, hysteresis=1)])
    events = []
    for b, vol in enumerate(["1", "2", "1", "2"]):  # baseline: mean 1.5, std 0.5
        events.append(tr(b * 10, "100", vol))
    events += [tr(40, "100", "2"), tr(41, "100", "1")]  # bucket 4: 2 → z 1; 3 → z 3 → fires at t=41
    events += [tr(42, "100", "5")]  # same bucket, disarmed
    events += [tr(50, "100", "30")]  # bucket 4 closed with z >= 2: not re-armed; new baseline 2,1,2,8 → no alert
    events += [tr(60, "100", "0.1"), tr(70, "100", "0.1")]  # bucket 6 closes normal: re-arm
    events += [tr(79, "100", "200")]
    alerts = run(eng, events)
    assert [(a.ts_event, a.condition) for a in alerts] == [(at(41), "spike"), (at(79), "spike")]
    assert alerts[0].value == "3"


def test_bucket_volume_counts_empty_buckets_as_zero() -> None:
    bv = BucketVolume(interval_ns=S, n=3)
    bv.add(0, 3.0)
    bv.add(5 * S, 1.0)  # closes bucket 0 (3) and pushes empties 1..4 (at most n=3 of them)
    assert bv.ring == [0.0, 0.0, 0.0] and bv.mean == 0.0 and bv.z(1.0) == float("inf")


def test_windowed_change_skips_repeats() -> None:
    w = WindowedChange(window_ns=10)
    for t in range(100):
        w.update(t, 1.0)
    assert len(w.px) - w.head == 1


# -- stale_feed -----------------------------------------------------------------------------------------------
def test_stale_feed_crypto_fires_once_then_rearms_on_a_tick() -> None:
    eng = AlertEngine([rule("stale-feed", silence_s=5, cooldown_s=0)])
    assert eng.on_timer(at(0)) == []  # counting starts here (no tick seen yet)
    assert eng.on_timer(at(5)) == []
    a = eng.on_timer(at(6))
    assert [(x.condition, x.ts_event, x.alert_id) for x in a] == [("stale", at(6), f"1-{at(6)}")]
    assert eng.on_timer(at(20)) == []  # disarmed until a tick arrives
    eng.on_event(mid(21, "100"))
    assert eng.on_timer(at(26)) == []
    assert [x.ts_event for x in eng.on_timer(at(26.5))] == [at(26.5)]


def test_stale_feed_fx_weekend_is_silent() -> None:
    eng = AlertEngine([rule("stale-feed", venue="oanda", symbol="EUR/USD", silence_s=60, cooldown_s=0)])
    fri = int(datetime(2024, 7, 12, 20, 50, tzinfo=UTC).timestamp()) * S  # Friday 16:50 New York (EDT)
    eng.on_timer(fri)
    eng.on_event(q(0, "1.1", "1.1001", venue="oanda", symbol="EUR/USD", t0=fri))
    eng.on_event(q(470, "1.1", "1.1001", venue="oanda", symbol="EUR/USD", t0=fri))  # 20:57:50 UTC, last tick
    # the market closes at 20:58 UTC; all weekend: silence, no alert
    for minute in range(0, 48 * 60, 7):
        assert eng.on_timer(fri + 480 * S + minute * 60 * S) == [], minute
    sun_open = int(datetime(2024, 7, 14, 21, 3, tzinfo=UTC).timestamp()) * S  # Sunday 17:03 New York
    assert eng.on_timer(sun_open + 30 * S) == []  # silence counts from the open, not from Friday
    assert eng.on_timer(sun_open + 60 * S) == []
    assert [a.ts_event for a in eng.on_timer(sun_open + 61 * S)] == [sun_open + 61 * S]


def test_stale_feed_fx_auto_vs_crypto_calendar() -> None:
    sat = int(datetime(2024, 7, 13, 12, 0, tzinfo=UTC).timestamp()) * S
    fx = AlertEngine([rule("stale-feed", venue="oanda", symbol="EUR/USD", silence_s=1)])
    crypto = AlertEngine([rule("stale-feed", venue="oanda", symbol="EUR/USD", silence_s=1, calendar="crypto")])
    for eng in (fx, crypto):
        eng.on_timer(sat)
    assert fx.on_timer(sat + 5 * S) == []
    assert len(crypto.on_timer(sat + 5 * S)) == 1


# -- divergence ---------------------------------------------------------------------------------------------
def test_divergence_between_venues() -> None:
    eng = AlertEngine([rule("divergence", other_venue="oanda", bps=50, hysteresis=20, max_age_s=2)])
    events = [mid(0, "100"), mid(0.5, "100.2", venue="oanda")]  # 20 bps
    events += [mid(1, "101", venue="oanda")]  # 100 vs 101: 99.5 bps → fires
    events += [mid(2, "100.9")]  # 0.99 bps → re-arm (<= 30)
    events += [mid(10, "102")]  # oanda's price is 9 s old: not compared
    events += [mid(10.5, "100", venue="oanda")]  # 102 vs 100 → fires
    alerts = run(eng, events)
    assert [(a.ts_event, a.venue, a.condition) for a in alerts] == [(at(1), "kraken", "diverged"),
                                                                   (at(10.5), "kraken", "diverged")]  # fmt: skip
    assert alerts[0].value == "99.5025"


# -- engine mechanics -------------------------------------------------------------------------------------
def _mixed_rules() -> list[Any]:
    return [
        rule("price-cross", id=1, above="100.5", hysteresis=0.3),
        rule("price-cross", id=2, below="99.5", hysteresis=0.3, cooldown_s=5),
        rule("pct-change", id=3, window_s=5, pct=0.8, hysteresis=0.3),
        rule("ma-cross", id=4, fast=3, slow=8, ma="ema"),
        rule("ma-cross", id=5, fast=3, slow=8, ma="sma", interval_s=2),
        rule("spread", id=6, bps=8, hysteresis=2),
        rule("volume-spike", id=7, interval_s=2, buckets=5, z=2.5),
        rule("divergence", id=8, other_venue="oanda", bps=40, hysteresis=10),
        rule("stale-feed", id=9, silence_s=3),
    ]


def _mixed_events(seed: int, n: int = 4000) -> list[Any]:
    rnd = random.Random(seed)
    p, out = Decimal(100), []
    for i in range(n):
        t = i * 0.05 + (3 if i > n // 2 else 0)  # a 3-second hole in the middle
        p += Decimal(rnd.randrange(-20, 21)) / 100
        half = Decimal(rnd.choice([2, 3, 3, 3, 6])) / 100
        r = rnd.random()
        if r < 0.5:
            out.append(q(t, str(p - half), str(p + half)))
        elif r < 0.8:
            out.append(tr(t, str(p), str(rnd.choice([1, 1, 2, 3, 40]))))
        else:
            out.append(mid(t, str(p + Decimal(rnd.randrange(-60, 61)) / 100), venue="oanda"))
    return out


def _drive(eng: AlertEngine, events: list[Any], start: int = 0, stop: int | None = None) -> list[Alert]:
    """Events in order, with the timer every 20 events and at the end of any hole longer than a second."""
    out: list[Alert] = []
    for i in range(start, len(events) if stop is None else stop):
        ev = events[i]
        if i % 20 == 0 or (i and ev.ts_recv - events[i - 1].ts_recv > S):
            out += eng.on_timer(ev.ts_recv)
        out += eng.on_event(ev)
    return out


def test_deterministic_and_every_kind_fires() -> None:
    events = _mixed_events(1)
    a1 = _drive(AlertEngine(_mixed_rules()), events)
    a2 = _drive(AlertEngine(list(reversed(_mixed_rules()))), events)
    assert a1 == a2
    assert [encode_alert(a) for a in a1] == [encode_alert(a) for a in a2]
    assert {a.kind for a in a1} == {"price_cross", "pct_change", "ma_cross", "spread", "volume_spike", "divergence",
                                    "stale_feed"}  # fmt: skip
    assert decode_alert(encode_alert(a1[0])) == a1[0]


def test_snapshot_restore_continues_exactly() -> None:
    events = _mixed_events(2)
    whole = _drive(AlertEngine(_mixed_rules()), events)
    for cut in (1, 777, 2001, 3999):
        first = AlertEngine(_mixed_rules())
        part = _drive(first, events, 0, cut)
        blobs = first.snapshot()
        second = AlertEngine(_mixed_rules())
        assert second.restore(blobs) == len(_mixed_rules())
        second._started = first._started  # the service's timer start is not part of rule state
        assert part + _drive(second, events, cut) == whole, cut


def test_restore_skips_changed_rules_and_dirty_tracking() -> None:
    eng = AlertEngine([rule("spread", id=1, bps=10)])
    eng.on_event(q(0, "100", "101"))
    assert eng.take_dirty() == {("kraken", "BTC/USD")} and eng.take_dirty() == set()
    blobs = eng.snapshot()
    assert AlertEngine([rule("spread", id=1, bps=11)]).restore(blobs) == 0
    again = AlertEngine([rule("spread", id=1, bps=10)])
    assert again.restore(blobs) == 1
    assert again.on_event(q(1, "100", "101")) == []  # already fired and disarmed before the snapshot


def test_quote_batch_status_and_unknown_instruments() -> None:
    eng = AlertEngine([rule("price-cross", above="100")])
    quotes = [mid(t, p) for t, p in enumerate(["99", "101", "99", "102"])]
    batch = next(QuoteBatch.chunks([msgspec.structs.replace(x, ts_recv=at(0)) for x in quotes]))
    assert [a.ts_event for a in eng.on_event(batch)] == [at(1), at(3)]
    st = Status(venue="kraken", symbol="BTC/USD", ts_event=at(4), ts_recv=at(4), kind="gap")
    assert eng.on_event(st) == [] and eng.on_event(mid(5, "1", symbol="ETH/USD")) == []
    assert eng.stats == {"ticks": 4, "ignored": 2, "alerts": 2}


# -- rule validation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "fields", "needle"),
    [
        ("price-cross", {}, "exactly one of above / below"),
        ("price-cross", {"above": "1", "below": "2"}, "exactly one"),
        ("price-cross", {"above": "-5"}, "above -5: must be a price > 0"),
        ("price-cross", {"above": "abc"}, "Invalid decimal"),
        ("price-cross", {"above": "1", "colour": "red"}, "unknown parameter(s) colour"),
        ("price-cross", {"above": "1", "venue": "nosuchvenue"}, "venue 'nosuchvenue'"),
        ("price-cross", {"above": "1", "symbol": "BTCUSD"}, "invalid symbol 'BTCUSD'"),
        ("price-cross", {"above": "1", "cooldown_s": -1}, "cooldown_s"),
        ("pct-change", {"window_s": 0, "pct": 1}, "window_s 0"),
        ("pct-change", {"window_s": 1, "pct": 1, "hysteresis": 1}, "must be below pct"),
        ("ma-cross", {"fast": 5, "slow": 5}, "must be shorter than slow"),
        ("ma-cross", {"fast": 2, "slow": 5, "ma": "wma"}, "ma"),
        ("spread", {"bps": 0}, "bps 0"),
        ("volume-spike", {"buckets": 1}, "buckets 1"),
        ("stale-feed", {"silence_s": 1, "calendar": "moon"}, "calendar"),
        ("divergence", {"other_venue": "kraken", "bps": 5}, "must differ"),
        ("nonsense", {}, "unknown rule kind 'nonsense'"),
    ],
)
def test_rule_validation_names_the_field(kind: str, fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(RuleError) as exc:
        make_rule(kind, {"venue": "kraken", "symbol": "BTC/USD", **fields})
    assert needle in str(exc.value)


def test_symbol_is_canonicalised_and_channels() -> None:
    r = make_rule("price_cross", {"venue": "kraken", "symbol": "btc-usd", "above": "5", "price": "last"})
    assert r.symbol == "BTC/USD" and r.channels() == ("trade",)
    d = make_rule("divergence", {"venue": "kraken", "symbol": "EUR/USD", "other_venue": "oanda", "bps": 5})
    assert d.instruments() == [("kraken", "EUR/USD"), ("oanda", "EUR/USD")]
