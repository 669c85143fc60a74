"""Behaviour lock for the matching engine's optimisations: a long random stream over several instruments (crypto
1e-8 sizes, JPY-like 0.001 prices, a 0.25 futures tick, a minimum size), every command and market-data kind,
valid and invalid input, with venue prices both on and off the instrument's increment and decimals written with
varied exponents ("1.5", "1.50", "15E-1"). The encoded outputs and the snapshots must stay byte-identical to
what the reference (pre-optimisation, all-Decimal) engine produced: the digests below were recorded with it.
"""

from __future__ import annotations

import hashlib
import random
from decimal import Decimal as D

from consumers.matching.engine import DAY_NS, InstrumentSpec, MatchingEngine
from consumers.matching.messages import CancelOrder, NewOrder, ReplaceOrder, encode
from pulse.models import BookDelta, BookSnapshot, Level, Quote, QuoteBatch, QuoteTick, Status, Ticker, Trade

SPECS = [
    InstrumentSpec("kraken", "BTC/USD", D("0.1"), D("0.00000001")),
    InstrumentSpec("oanda", "USD/JPY", D("0.001"), D("1"), namespace="fx"),
    InstrumentSpec("cme", "ES", D("0.25"), D("1"), min_size=D("2")),
]
# reference digests (outputs, snapshots) per seed, recorded with the all-Decimal engine of commit 0cf4d8e
GOLDEN = {
    1: (
        "28d7f26e40244f14071d05b81198d67600954bceb351b543b72d680b5a1fcf6a",
        "86d15a25f9c5a8bb7e95d46a9e181ffedacdb62f90ee01f76ab2e6f569a29c8e",
    ),
    2: (
        "5106c87175306a206de057c26b313216e31bc9e0db22b51e0fd8491bbb51a275",
        "34d144de19e5ec031230035ec4a8af93d30c3c3f4c3a78b4743f69a0936abeab",
    ),
    3: (
        "34fea56b7bad2ecc4b9221d9d452e8a621f7ea397392f12a5e81fcd16bc80ba7",
        "4d1b299550cb006b2d26a1e5d8c2c59a1055874b0b22824918f65a3c42ce98e0",
    ),
}


def _fmt(rnd: random.Random, value: D) -> D:
    """The same number with a random (valid) exponent: 1.5, 1.50, 1.500 or 15E-1."""
    r = rnd.random()
    if r < 0.5:
        return value
    if r < 0.8:
        return value.quantize(D(1).scaleb(value.as_tuple().exponent - rnd.randint(1, 3)))  # type: ignore[operator]
    t = value.normalize().as_tuple()
    return D((t.sign, t.digits, t.exponent))


def stream(seed: int, n: int = 4000) -> list:
    rnd = random.Random(seed)
    items: list = []
    ts = 1_000
    mids = {s.key: D(rnd.randint(200, 400)) * s.price_increment * 40 for s in SPECS}
    ids: list[tuple[str, InstrumentSpec, str]] = []
    for i in range(n):
        ts += rnd.randint(1, 30_000_000_000)
        spec = rnd.choice(SPECS)
        v, s, pi, si = spec.venue, spec.symbol, spec.price_increment, spec.size_increment
        mid = mids[spec.key] = mids[spec.key] + pi * rnd.randint(-3, 3)
        fine = pi / 10 if rnd.random() < 0.15 else pi  # venue data off the instrument's increment now and then

        def px(k: int, mid: D = mid, fine: D = fine) -> D:
            return _fmt(rnd, mid + fine * k)

        def sz(lo: int = 1, hi: int = 50, si: D = si) -> D:
            return _fmt(rnd, si * rnd.randint(lo, hi) * (1 if si >= 1 else 10_000_000))

        r = rnd.random()
        if r < 0.22:
            tr = rnd.random() > 0.05
            items.append(Quote(venue=v, symbol=s, ts_event=ts, ts_recv=ts, bid=px(-rnd.randint(1, 3)), bid_size=sz(),
                               ask=px(rnd.randint(1, 3)), ask_size=sz(), tradeable=tr))  # fmt: skip
        elif r < 0.26:
            items.append(Ticker(venue=v, symbol=s, ts_event=ts, ts_recv=ts, bid=px(-1), bid_size=sz(), ask=px(1),
                                ask_size=sz(), last=px(0), volume=D(100)))  # fmt: skip
        elif r < 0.29:
            bids = tuple(Level(px(-k), sz()) for k in range(1, rnd.randint(0, 3) + 1))
            asks = tuple(Level(px(k), sz()) for k in range(1, rnd.randint(0, 3) + 1))
            items.append(BookSnapshot(venue=v, symbol=s, ts_event=ts, ts_recv=ts, depth=3, bids=bids, asks=asks))
        elif r < 0.32:
            bb = Level(px(-1), sz()) if rnd.random() < 0.7 else None
            ba = Level(px(1), sz(0, 10)) if rnd.random() < 0.7 else None
            items.append(BookDelta(venue=v, symbol=s, ts_event=ts, ts_recv=ts, bids=(), asks=(), best_bid=bb,
                                   best_ask=ba))  # fmt: skip
        elif r < 0.34:
            ticks = tuple(QuoteTick(ts + k, k, px(-1 - k), sz(), px(1 + k), sz()) for k in range(rnd.randint(1, 4)))
            items.append(QuoteBatch(venue=v, symbol=s, ts_event=ts, ts_recv=ts, ticks=ticks))
        elif r < 0.42:
            items.append(Trade(venue=v, symbol=s, ts_event=ts, ts_recv=ts, price=px(rnd.randint(-4, 4)), size=sz(),
                               side=None, trade_id=f"t{i}"))  # fmt: skip
        elif r < 0.43:
            kind = rnd.choice(["gap", "disconnected", "stale", "resync", "market_closed", "connected"])
            items.append(Status(venue=v, symbol=s, ts_event=ts, ts_recv=ts, kind=kind))  # type: ignore[arg-type]
        elif r < 0.44:
            items.append(("advance", ts + rnd.randint(0, 2) * DAY_NS))
        elif r < 0.80:
            typ = rnd.choice(["limit", "limit", "limit", "limit", "market", "stop", "stop_limit"])
            tifs = {"market": rnd.choice(["IOC", "FOK", "FOK", "GTC"]), "stop": rnd.choice(["GTC", "DAY", "IOC"]),
                    "stop_limit": rnd.choice(["GTC", "DAY"])}  # fmt: skip
            tif = tifs.get(typ, rnd.choice(["GTC", "GTC", "IOC", "FOK", "DAY"]))
            price = _fmt(rnd, mid + pi * rnd.randint(-6, 6)) if typ in ("limit", "stop_limit") else None
            stop = _fmt(rnd, mid + pi * rnd.randint(-6, 6)) if typ in ("stop", "stop_limit") else None
            qty = sz(1, 60)
            bad = rnd.random()
            if bad < 0.02:
                qty = qty + si / 3
            elif bad < 0.03:
                qty = -qty
            elif bad < 0.035:
                qty = D("NaN")
            elif bad < 0.045 and price is not None:
                price = price + pi / 4
            elif bad < 0.05:
                price = None if price is not None else mid
            elif bad < 0.055:
                v = "nowhere"
            oid = f"o{seed}-{i}" if rnd.random() > 0.01 or not ids else ids[-1][0]
            acct = rnd.choice(["x", "y", "" if rnd.random() < 0.01 else "x"])
            ids.append((oid, spec, acct))
            side = rnd.choice(["buy", "sell"])
            items.append(NewOrder(request_id=f"r{i}", venue=v, symbol=s, ts=ts, account=acct, side=side,  # type: ignore[arg-type]
                                  order_type=typ, quantity=qty, price=price, stop_price=stop, tif=tif,  # type: ignore[arg-type]
                                  order_id=oid))  # fmt: skip
        elif ids:
            oid, ospec, acct = rnd.choice(ids[-60:])
            if rnd.random() < 0.03:
                acct = "intruder"
            ov, os_ = ospec.venue, ospec.symbol
            if rnd.random() < 0.45:
                items.append(CancelOrder(request_id=f"c{i}", venue=ov, symbol=os_, ts=ts, account=acct, order_id=oid))
            else:
                k = rnd.random()
                unit = ospec.size_increment * (1 if ospec.size_increment >= 1 else 10_000_000)
                q = _fmt(rnd, unit * rnd.randint(1, 60)) if k < 0.6 else None
                p = _fmt(rnd, mids[ospec.key] + ospec.price_increment * rnd.randint(-6, 6)) if k > 0.3 else None
                sp = _fmt(rnd, mids[ospec.key] + ospec.price_increment * rnd.randint(-6, 6)) if k > 0.85 else None
                items.append(ReplaceOrder(request_id=f"c{i}", venue=ov, symbol=os_, ts=ts, account=acct, order_id=oid,
                                          quantity=q, price=p, stop_price=sp))  # fmt: skip
        if rnd.random() < 0.01 and items:
            items.append(items[-1])  # a redelivery
    return items


def run(e: MatchingEngine, items: list) -> list[bytes]:
    out: list[bytes] = []
    for it in items:
        if type(it) is tuple:
            res = e.advance(it[1])
        elif isinstance(it, (NewOrder, CancelOrder, ReplaceOrder)):
            res = e.on_order(it)
        else:
            res = e.on_market(it)
        out += [encode(o) for o in res]
    return out


def digests(seed: int) -> tuple[str, str, int]:
    items = stream(seed)
    e = MatchingEngine(SPECS)
    out_h, snap_h = hashlib.sha256(), hashlib.sha256()
    n = 0
    for k in range(0, len(items), 500):
        for b in run(e, items[k : k + 500]):
            out_h.update(b + b"\n")
            n += 1
        snap = e.snapshot()
        snap_h.update(snap)
        e = MatchingEngine.restore(snap, SPECS)  # continue from the restored state: restore must be exact
        assert e.snapshot() == snap
    return out_h.hexdigest(), snap_h.hexdigest(), n


def test_outputs_and_snapshots_are_byte_identical_to_the_reference_engine() -> None:
    for seed, (out_ref, snap_ref) in GOLDEN.items():
        out, snap, n = digests(seed)
        assert n > 3000
        assert (out, snap) == (out_ref, snap_ref), f"seed {seed}"


def test_restore_midway_equals_one_uninterrupted_run() -> None:
    items = stream(5, 2000)
    full = run(MatchingEngine(SPECS), items)
    e = MatchingEngine(SPECS)
    first = run(e, items[:900])
    e2 = MatchingEngine.restore(e.snapshot(), SPECS)
    assert first + run(e2, items[900:]) == full


if __name__ == "__main__":  # print the digests (to record GOLDEN with the reference engine)
    for s in GOLDEN:
        print(s, digests(s))
