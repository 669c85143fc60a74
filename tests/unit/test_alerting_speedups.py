"""Differential tests for the alerting engine's hot-path optimisations.

The engine's per-tick path was optimised for speed (see the engine bench) without changing behaviour. These tests
pin that: a long seeded random stream over every rule kind (shared and unshared indicators, every price field,
directions, hysteresis, cooldowns, several venues, quote batches, book events, tickers, timers, snapshots and
restores in the middle of the stream) is run through the engine, and a SHA-256 over everything observable — every
alert (all fields, in order), every snapshot blob (bytes), the stats and per-rule counters — is compared with a
digest RECORDED FROM THE ORIGINAL (pre-optimisation) CODE at commit cc99850, before any of the optimisations were
written. A mismatch means the engine's observable behaviour changed.
"""

from __future__ import annotations

import hashlib
import random
from decimal import Decimal
from typing import Any

import msgspec

from consumers.alerting.engine import AlertEngine
from consumers.alerting.messages import encode_alert
from consumers.alerting.rules import make_rule
from pulse.models import BookDelta, BookSnapshot, Level, Quote, QuoteBatch, Ticker, Trade

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a Tuesday (2023-11-14), FX open

#: recorded from the original engine (commit cc99850) before the optimisations; see the module docstring
EXPECTED = {
    1: "4cd1d01f2f06885285327857e097c945adb73514ce01586de66a5f0940cbbfc0",
    2: "f52766848065fb37560a1b4b69fdac6096c667f8d54f300a40a057631a6a944a",
    3: "e8b358dc57e8e38855870f2f8f99eaa816fca23b6cea090920f307206c1d3291",
}

INSTRUMENTS = [("kraken", "BTC/USD"), ("kraken", "ETH/USD"), ("oanda", "BTC/USD"), ("oanda", "EUR/USD")]


def _rules(rnd: random.Random) -> list[Any]:
    out: list[Any] = []

    def add(kind: str, venue: str, symbol: str, **f: Any) -> None:
        f.setdefault("cooldown_s", rnd.choice([0, 0, 0.5, 2, 60]))
        out.append(make_rule(kind, {"id": len(out) + 1, "venue": venue, "symbol": symbol, **f}))

    for venue, symbol in INSTRUMENTS:
        base = 100 if symbol != "EUR/USD" else 1
        for _ in range(8):
            lvl = Decimal(base) + Decimal(rnd.randrange(-300, 301)) / (100 if base == 100 else 10_000)
            side = rnd.choice(["above", "below"])
            add("price_cross", venue, symbol, **{side: str(lvl)}, price=rnd.choice(["mid", "bid", "ask", "last"]),
                hysteresis=rnd.choice([0, 0.05, 0.1, 0.5]) * (1 if base == 100 else 0.01))  # fmt: skip
        for _ in range(2):  # identical pairs share indicators
            for w, pct, d in ((5, 0.5, "both"), (2, 0.3, "up"), (3, 0.4, "down")):
                add("pct_change", venue, symbol, window_s=w, pct=pct, direction=d, hysteresis=0.1,
                    price=rnd.choice(["mid", "last"]))  # fmt: skip
            add("ma_cross", venue, symbol, fast=3, slow=8, ma="ema", hysteresis=rnd.choice([0, 2]))
            add("ma_cross", venue, symbol, fast=3, slow=8, ma="ema", direction="up", price="bid")
            add("ma_cross", venue, symbol, fast=2, slow=5, ma="sma", interval_s=1, direction="down")
            add("ma_cross", venue, symbol, fast=2, slow=6, ma="sma", price="last", hysteresis=1)
            add("ma_cross", venue, symbol, fast=2, slow=7, ma="ema", interval_s=0.5, price="last")
            add("spread", venue, symbol, bps=rnd.choice([5, 20, 50]), hysteresis=rnd.choice([0, 2]))
            add("volume_spike", venue, symbol, interval_s=1, buckets=5, z=rnd.choice([1, 2.5]),
                min_volume=rnd.choice(["0", "3"]), hysteresis=0.5)  # fmt: skip
        add("stale_feed", venue, symbol, silence_s=rnd.choice([1, 3]))
        other = "oanda" if venue == "kraken" else "kraken"
        add("divergence", venue, symbol, other_venue=other, bps=rnd.choice([10, 40]), hysteresis=5,
            price=rnd.choice(["mid", "bid", "last"]), max_age_s=2)  # fmt: skip
    return out


def _price(rnd: random.Random, p: Decimal, eur: bool) -> Decimal:
    step = Decimal(rnd.randrange(-15, 16)) / (100 if not eur else 10_000)
    q = p + step
    if rnd.random() < 0.1:  # a trailing zero: same value, another string
        q = q.quantize(Decimal("0.0001") if not eur else Decimal("0.000001"))
    return q


def _events(rnd: random.Random, n: int) -> list[Any]:
    px = {k: Decimal(100) if k[1] != "EUR/USD" else Decimal(1) for k in INSTRUMENTS}
    ts = T0
    out: list[Any] = []
    while len(out) < n:
        ts += rnd.choice([1, 50, 200, 1_000, 50_000]) * 1_000_000 // 10
        if rnd.random() < 0.002:
            ts += rnd.choice([2, 5, 20]) * S  # silence: stale feeds, empty buckets, windows expiring
        if rnd.random() < 0.05:
            out.append(("timer", ts + rnd.randrange(0, 3 * S)))
            continue
        k = rnd.choice(INSTRUMENTS) if rnd.random() > 0.02 else ("kraken", "XRP/USD")  # unknown: ignored
        eur = k[1] == "EUR/USD"
        p = px[k] = _price(rnd, px.get(k, Decimal(100)), eur) if k in px else Decimal(1)
        half = Decimal(rnd.choice([1, 1, 2, 15, 60])) / (100 if not eur else 10_000)
        v, s = k
        r = rnd.random()
        one = Decimal(1)
        if r < 0.45:
            bid = None if rnd.random() < 0.02 else p - half
            ask = None if rnd.random() < 0.02 else p + half
            if rnd.random() < 0.2 and bid is not None:
                bid = Decimal(str(bid))  # unchanged value path
            out.append(Quote(venue=v, symbol=s, ts_event=ts, ts_recv=ts + 7, bid=bid, bid_size=one, ask=ask,
                             ask_size=one))  # fmt: skip
        elif r < 0.75:
            size = Decimal(rnd.choice([1, 1, 2, 3, 50])) / rnd.choice([1, 10])
            out.append(Trade(venue=v, symbol=s, ts_event=ts, ts_recv=ts + 3, price=p, size=size, side="buy",
                             trade_id=str(ts)))  # fmt: skip
        elif r < 0.82:
            quotes = []
            for _ in range(rnd.randrange(1, 6)):
                ts += rnd.choice([1, 200, 5_000]) * 100_000
                p = px[k] = _price(rnd, p, eur)
                quotes.append(Quote(venue=v, symbol=s, ts_event=ts, ts_recv=ts + 11, bid=p - half, bid_size=one,
                                    ask=p + half, ask_size=one))  # fmt: skip
            out.extend(QuoteBatch.chunks(quotes, size=3))
        elif r < 0.88:
            out.append(Ticker(venue=v, symbol=s, ts_event=ts, ts_recv=ts + 1, bid=p - half, bid_size=one,
                              ask=p + half, ask_size=one, last=p, volume=Decimal(10)))  # fmt: skip
        elif r < 0.94:
            bb = None if rnd.random() < 0.05 else Level(p - half, one)
            ba = None if rnd.random() < 0.05 else Level(p + half, one)
            out.append(BookDelta(venue=v, symbol=s, ts_event=ts, ts_recv=ts + 2, bids=(), asks=(), best_bid=bb,
                                 best_ask=ba))  # fmt: skip
        else:
            bids = () if rnd.random() < 0.05 else (Level(p - half, one), Level(p - 2 * half, one))
            asks = () if rnd.random() < 0.05 else (Level(p + half, one),)
            out.append(BookSnapshot(venue=v, symbol=s, ts_event=ts, ts_recv=ts + 2, depth=10, bids=bids,
                                    asks=asks))  # fmt: skip
    return out


def _digest(seed: int, n: int = 30_000) -> str:
    rnd = random.Random(seed)
    rules = _rules(rnd)
    events = _events(rnd, n)
    h = hashlib.sha256()
    eng = AlertEngine(rules)
    for i, ev in enumerate(events):
        alerts = eng.on_timer(ev[1]) if type(ev) is tuple else eng.on_event(ev)
        for a in alerts:
            h.update(encode_alert(a))
        h.update(b"|")
        if i % 2_000 == 1_999:  # snapshot (partial, then full), restore into a fresh engine, continue
            for key in sorted(eng.take_dirty()):
                h.update(repr(key).encode())
            blobs = eng.snapshot()
            for key, blob in blobs.items():
                h.update(repr(key).encode() + blob)
            new_rules = rules
            if i % 6_000 == 5_999:  # some rules changed: they start fresh, the others keep their state
                new_rules = [
                    msgspec.structs.replace(r, cooldown_s=r.cooldown_s + 1) if r.id % 7 == 0 else r for r in rules
                ]
            eng2 = AlertEngine(new_rules)
            h.update(str(eng2.restore(blobs)).encode())
            eng2.ticks, eng2.ignored, eng2.alerts = eng.ticks, eng.ignored, eng.alerts
            eng2._started = eng._started
            eng = eng2
    h.update(repr(sorted(eng.stats.items())).encode())
    h.update(repr(sorted(eng.rule_stats().items())).encode())
    for key, blob in eng.snapshot().items():
        h.update(repr(key).encode() + blob)
    return h.hexdigest()


def test_random_streams_match_the_original_engine() -> None:
    for seed, want in EXPECTED.items():
        assert _digest(seed) == want, f"seed {seed}"
