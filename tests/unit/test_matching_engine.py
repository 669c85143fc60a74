"""The pure matching engine: exact executions per order type and time in force, priority, touch consumption,
rejects, cancel/replace, positions, determinism and snapshot/restore."""

from __future__ import annotations

import random
from decimal import Decimal as D

import pytest

from consumers.matching.engine import DAY_NS, InstrumentSpec, MatchingEngine
from consumers.matching.journal import StateStore
from consumers.matching.messages import (
    CancelOrder,
    Execution,
    NewOrder,
    Position,
    ReplaceOrder,
    decode_output,
    encode,
)
from pulse.models import BookDelta, Level, Quote, Status, Trade

V, S = "kraken", "BTC/USD"
SPEC = InstrumentSpec(V, S, D("0.1"), D("0.001"))


def eng() -> MatchingEngine:
    return MatchingEngine([SPEC])


_n = 0


def order(side: str, qty: str, price: str | None = None, *, typ: str | None = None, tif: str = "GTC",
          oid: str | None = None, stop: str | None = None, ts: int = 100, account: str = "a1") -> NewOrder:  # fmt: skip
    global _n
    _n += 1
    typ = typ or ("limit" if price else "market")
    return NewOrder(request_id=f"r{_n}", venue=V, symbol=S, ts=ts, account=account, side=side, order_type=typ,  # type: ignore[arg-type]
                    quantity=D(qty), price=D(price) if price else None, stop_price=D(stop) if stop else None,
                    tif=tif, order_id=oid or f"o{_n}")  # type: ignore[arg-type]  # fmt: skip


def quote(bid: str | None, bsz: str | None, ask: str | None, asz: str | None, ts: int = 200, **kw: object) -> Quote:
    return Quote(venue=V, symbol=S, ts_event=ts, ts_recv=ts, bid=D(bid) if bid else None,
                 bid_size=D(bsz) if bsz else None, ask=D(ask) if ask else None, ask_size=D(asz) if asz else None,
                 **kw)  # type: ignore[arg-type]  # fmt: skip


def trade(price: str, size: str, ts: int = 300, tid: str = "t") -> Trade:
    return Trade(venue=V, symbol=S, ts_event=ts, ts_recv=ts, price=D(price), size=D(size), side=None, trade_id=tid)


def execs(outs: list) -> list[Execution]:
    return [o for o in outs if type(o) is Execution]


def fills(outs: list) -> list[tuple[str, D, D, str]]:
    return [(e.order_id, e.quantity, e.price, e.liquidity) for e in execs(outs) if e.kind == "fill"]


def kinds(outs: list) -> list[tuple[str, str]]:
    return [(e.order_id, e.kind) for e in execs(outs)]


# -- limit orders and the touch --------------------------------------------------------------------------
def test_marketable_limit_fills_at_the_ask_up_to_the_shown_size_and_rests_the_rest() -> None:
    e = eng()
    e.on_market(quote("100.0", "1", "101.0", "0.5"))
    out = e.on_order(order("buy", "1.000", "101.5", oid="b"))
    assert kinds(out) == [("b", "accepted"), ("b", "fill")]
    assert fills(out) == [("b", D("0.5"), D("101.0"), "quote")]  # at the ask, better than the limit
    last = execs(out)[-1]
    assert (last.status, last.filled, last.remaining) == ("partially_filled", D("0.5"), D("0.500"))
    assert [o.order_id for o in e.open_orders()] == ["b"]


def test_consumed_touch_liquidity_is_not_reused_until_the_venue_shows_a_new_quote() -> None:
    e = eng()
    e.on_market(quote("100.0", "1", "101.0", "0.5"))
    e.on_order(order("buy", "0.400", "101.0", oid="b1"))
    out = e.on_order(order("buy", "0.400", "101.0", oid="b2"))
    assert fills(out) == [("b2", D("0.1"), D("101.0"), "quote")]  # only what b1 left
    assert fills(e.on_market(quote("100.0", "1", "101.0", "0.5", ts=201))) == []  # same top: no refresh
    out = e.on_market(quote("100.0", "1", "101.0", "0.2", ts=202))  # a new size: fresh liquidity
    assert fills(out) == [("b2", D("0.2"), D("101.0"), "quote")]


def test_resting_orders_fill_in_price_then_time_priority_never_worse_than_the_limit() -> None:
    e = eng()
    e.on_market(quote("99.0", "1", "105.0", "1"))
    for oid, px in (("lo", "100.0"), ("hi1", "102.0"), ("hi2", "102.0"), ("mid", "101.0")):
        e.on_order(order("buy", "1.000", px, oid=oid))
    out = e.on_market(quote("99.0", "1", "101.0", "2.5"))
    # best price first (hi1, hi2 at 102), then mid at 101; each at the ask (101); lo (100) is not reached
    assert fills(out) == [("hi1", D("1.000"), D("101.0"), "quote"), ("hi2", D("1.000"), D("101.0"), "quote"),
                          ("mid", D("0.5"), D("101.0"), "quote")]  # fmt: skip
    assert all(f[2] <= D("102.0") for f in fills(out))
    assert [o.order_id for o in e.open_orders()] == ["lo", "mid"]


def test_book_delta_top_and_trade_through_fill_resting_orders() -> None:
    e = eng()
    e.on_order(order("sell", "2.000", "110.0", oid="s"))
    delta = BookDelta(venue=V, symbol=S, ts_event=210, ts_recv=210, bids=(), asks=(),
                      best_bid=Level(D("110.5"), D("0.7")), best_ask=Level(D("111.0"), D("1")))  # fmt: skip
    assert fills(e.on_market(delta)) == [("s", D("0.7"), D("110.5"), "quote")]
    assert fills(e.on_market(trade("110.0", "5", tid="x"))) == []  # a trade AT the limit does not fill
    out = e.on_market(trade("110.3", "0.5", tid="y"))  # through: fills at the limit, up to the trade's size
    assert fills(out) == [("s", D("0.5"), D("110.0"), "trade")]


def test_paper_orders_cross_each_other_at_the_resting_price_before_the_touch() -> None:
    e = eng()
    e.on_market(quote("99.0", "1", "100.0", "1"))
    e.on_order(order("sell", "0.300", "100.0", oid="maker", account="m"))  # joins the venue's ask price
    out = e.on_order(order("buy", "0.500", "100.0", oid="taker", account="t"))
    ex = [(x.order_id, x.quantity, x.price, x.liquidity, x.contra_order_id) for x in execs(out) if x.kind == "fill"]
    assert ex == [
        ("taker", D("0.300"), D("100.0"), "book", "maker"),
        ("maker", D("0.300"), D("100.0"), "book", "taker"),
        ("taker", D("0.200"), D("100.0"), "quote", ""),
    ]


# -- order types and time in force -----------------------------------------------------------------------
def test_market_ioc_takes_the_touch_and_cancels_the_rest() -> None:
    e = eng()
    e.on_market(quote("99.0", "0.25", "100.0", "1"))
    out = e.on_order(order("sell", "1.000", tif="IOC", oid="m"))
    assert fills(out) == [("m", D("0.25"), D("99.0"), "quote")]
    assert execs(out)[-1].kind == "cancelled" and execs(out)[-1].remaining == D("0.750")
    assert e.open_orders() == []


def test_fok_fills_entirely_or_is_rejected() -> None:
    e = eng()
    e.on_market(quote("99.0", "1", "100.0", "1"))
    out = e.on_order(order("buy", "1.500", "100.0", tif="FOK", oid="f1"))
    assert kinds(out) == [("f1", "rejected")] and "FOK" in execs(out)[0].reason
    out = e.on_order(order("buy", "1.000", "100.0", tif="FOK", oid="f2"))
    assert fills(out) == [("f2", D("1.000"), D("100.0"), "quote")] and execs(out)[-1].status == "filled"


def test_ioc_limit_never_rests() -> None:
    e = eng()
    out = e.on_order(order("buy", "1.000", "100.0", tif="IOC", oid="i"))
    assert kinds(out) == [("i", "accepted"), ("i", "cancelled")]


def test_day_order_expires_at_the_next_utc_midnight_by_event_time() -> None:
    e = eng()
    t0 = 19_000 * DAY_NS + 5
    e.on_order(order("buy", "1.000", "90.0", tif="DAY", oid="d", ts=t0))
    assert e.on_market(quote("80.0", "1", "95.0", "1", ts=t0 + DAY_NS - 10)) == []
    out = e.on_market(quote("80.0", "1", "95.0", "2", ts=t0 + DAY_NS))
    ex = execs(out)
    assert [(x.order_id, x.kind, x.ts) for x in ex] == [("d", "expired", 19_001 * DAY_NS)]


def test_stop_triggers_on_a_trade_at_the_stop_and_becomes_market() -> None:
    e = eng()
    e.on_market(quote("99.0", "1", "100.0", "1"))
    out = e.on_order(order("buy", "0.500", typ="stop", stop="102.0", oid="st"))
    assert kinds(out) == [("st", "accepted")]
    e.on_market(quote("101.9", "1", "102.1", "0.2", ts=250))  # the ask crosses 102: triggers
    # triggered by the ask: takes 0.2 at 102.1, rest cancelled (a stop's remainder is a market remainder)
    assert e.open_orders() == []


def test_stop_limit_triggered_by_trade_rests_its_limit() -> None:
    e = eng()
    e.on_market(quote("99.0", "1", "100.0", "1"))
    e.on_order(order("sell", "1.000", "97.0", typ="stop_limit", stop="98.0", oid="sl"))
    out = e.on_market(trade("98.0", "3", tid="z"))
    assert kinds(out) == [("sl", "triggered"), ("sl", "fill")]
    assert fills(out) == [("sl", D("1"), D("99.0"), "quote")]  # sells to the bid (99 ≥ 97)


# -- rejects -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (
            lambda: NewOrder(
                request_id="x1",
                venue="kraken",
                symbol="ETH/USD",
                ts=1,
                side="buy",
                order_type="limit",
                quantity=D(1),
                price=D(1),
            ),
            "unknown instrument kraken:ETH/USD",
        ),
        (lambda: order("buy", "0.0005", "100.0"), "not a multiple of the instrument's increment 0.001"),
        (lambda: order("buy", "1", "100.05"), "price 100.05 is not a multiple"),
        (lambda: order("buy", "-1", "100.0"), "quantity -1 must be positive"),
        # a value whose quotient by the increment has more digits than Decimal's context: refused, not a crash
        (lambda: order("buy", "1E+40", "100.0"), "quantity 1E+40 is out of range"),
        (lambda: order("buy", "1", "1E+40"), "price 1E+40 is out of range"),
        (lambda: order("buy", "1", typ="market", tif="GTC"), "a market order is IOC or FOK"),
        (lambda: order("buy", "1", typ="limit"), "a limit order needs a price"),
        (lambda: order("buy", "1", typ="stop", stop="1.0", tif="IOC"), "time in force must be GTC or DAY"),
    ],
)
def test_invalid_orders_are_rejected_with_a_reason(cmd, reason: str) -> None:  # type: ignore[no-untyped-def]
    out = eng().on_order(cmd())
    (e,) = execs(out)
    assert e.kind == "rejected" and e.status == "rejected" and reason in e.reason


def test_duplicate_order_id_and_unknown_cancel_are_rejected_with_request_ids() -> None:
    e = eng()
    e.on_order(order("buy", "1", "100.0", oid="same"))
    (dup,) = execs(e.on_order(order("buy", "1", "100.0", oid="same")))
    assert dup.kind == "rejected" and dup.exec_id.startswith("req.") and "duplicate order id" in dup.reason
    c = CancelOrder(request_id="c1", venue=V, symbol=S, ts=1, account="a1", order_id="nope")
    (rej,) = execs(e.on_order(c))
    assert rej.exec_id == "req.c1" and "unknown order" in rej.reason
    assert e.on_order(c) == []  # the same request again (a redelivery) is ignored


# -- cancel / replace -----------------------------------------------------------------------------------------
def test_cancel_and_replace_priority_rules() -> None:
    e = eng()
    e.on_market(quote("90.0", "1", "110.0", "1"))
    e.on_order(order("buy", "2.000", "100.0", oid="a"))
    e.on_order(order("buy", "1.000", "100.0", oid="b"))
    e.on_order(order("buy", "1.000", "100.0", oid="c"))
    # a shrinks: keeps its place; b grows: goes behind c
    (r1,) = execs(e.on_order(ReplaceOrder(request_id="x1", venue=V, symbol=S, ts=1, account="a1", order_id="a",
                                          quantity=D("1.000"))))  # fmt: skip
    (r2,) = execs(e.on_order(ReplaceOrder(request_id="x2", venue=V, symbol=S, ts=1, account="a1", order_id="b",
                                          quantity=D("3.000"))))  # fmt: skip
    assert (r1.kind, r1.remaining, r2.kind, r2.remaining) == ("replaced", D("1.000"), "replaced", D("3.000"))
    out = e.on_market(quote("90.0", "1", "100.0", "2.5", ts=400))
    assert fills(out) == [("a", D("1.000"), D("100.0"), "quote"), ("c", D("1.000"), D("100.0"), "quote"),
                          ("b", D("0.5"), D("100.0"), "quote")]  # fmt: skip
    (cx,) = execs(e.on_order(CancelOrder(request_id="x3", venue=V, symbol=S, ts=1, account="a1", order_id="b")))
    assert (cx.kind, cx.status, cx.filled) == ("cancelled", "cancelled", D("0.5"))
    (again,) = execs(e.on_order(CancelOrder(request_id="x4", venue=V, symbol=S, ts=1, account="a1", order_id="b")))
    assert again.kind == "rejected" and "no longer open" in again.reason
    (other,) = execs(e.on_order(CancelOrder(request_id="x5", venue=V, symbol=S, ts=1, account="zz", order_id="a")))
    assert other.kind == "rejected"  # a filled order; and never another account's


def test_replace_to_a_marketable_price_matches_at_once() -> None:
    e = eng()
    e.on_market(quote("90.0", "1", "101.0", "1"))
    e.on_order(order("buy", "1.000", "100.0", oid="p"))
    out = e.on_order(ReplaceOrder(request_id="y", venue=V, symbol=S, ts=1, account="a1", order_id="p",
                                  price=D("101.0")))  # fmt: skip
    assert kinds(out) == [("p", "replaced"), ("p", "fill")] and fills(out)[0][2] == D("101.0")


# -- positions --------------------------------------------------------------------------------------------------
def test_positions_fifo_realised_and_unrealised_pnl_are_exact() -> None:
    e = eng()
    e.on_market(quote("99.0", "10", "100.0", "10"))
    e.on_order(order("buy", "1.000", "100.0", account="p"))
    e.on_market(quote("99.0", "10", "102.0", "10", ts=300))
    e.on_order(order("buy", "1.000", "102.0", account="p", ts=300))
    e.on_market(quote("105.0", "10", "106.0", "10", ts=400))
    out = e.on_order(order("sell", "1.500", tif="IOC", account="p", ts=400))
    pos = [o for o in out if type(o) is Position][-1]
    # FIFO: 1 @100 and 0.5 @102 closed at 105 → 5 + 1.5; left 0.5 @102; mark = mid 105.5
    assert pos.realised_pnl == D("6.5") and pos.quantity == D("0.500") and pos.avg_price == D("102")
    assert pos.unrealised_pnl == D("0.500") * D("105.5") - D("0.500") * D("102.0")
    out = e.on_order(order("sell", "1.000", tif="IOC", account="p", ts=400))  # flips short 0.5 @105
    pos = [o for o in out if type(o) is Position][-1]
    assert pos.quantity == D("-0.500") and pos.realised_pnl == D("6.5") + D("1.5")


def test_trade_status_markers_clear_the_touch() -> None:
    e = eng()
    e.on_market(quote("99.0", "1", "100.0", "1"))
    e.on_market(Status(venue=V, symbol=S, ts_event=250, ts_recv=250, kind="gap"))
    out = e.on_order(order("buy", "1.000", "100.0", tif="IOC", ts=260))
    assert fills(out) == []  # no touch until the next quote
    assert fills(e.on_market(quote("99.0", "1", "100.0", "1", ts=270, tradeable=False))) == []


# -- determinism, snapshots, wire ----------------------------------------------------------------------------------
def random_stream(seed: int, n: int = 3000) -> list:
    rnd = random.Random(seed)
    items: list = []
    ts = 1_000
    mid = 1000
    ids: list[str] = []
    for i in range(n):
        ts += rnd.randint(1, 100_000_000_000)
        r = rnd.random()
        if r < 0.35:
            mid += rnd.randint(-3, 3)
            items.append(quote(f"{mid - 1}.0", f"{rnd.randint(1, 5)}", f"{mid + 1}.0", f"{rnd.randint(1, 5)}", ts=ts))
        elif r < 0.45:
            items.append(trade(f"{mid + rnd.randint(-4, 4)}.0", f"{rnd.randint(1, 3)}", ts=ts, tid=f"t{i}"))
        elif r < 0.85:
            typ = rnd.choice(["limit", "limit", "limit", "market", "stop", "stop_limit"])
            tif = {"market": rnd.choice(["IOC", "FOK"]), "stop": rnd.choice(["GTC", "DAY"]),
                   "stop_limit": "GTC"}.get(typ, rnd.choice(["GTC", "IOC", "FOK", "DAY"]))  # fmt: skip
            px = f"{mid + rnd.randint(-5, 5)}.0" if typ in ("limit", "stop_limit") else None
            stop = f"{mid + rnd.randint(-5, 5)}.0" if typ in ("stop", "stop_limit") else None
            oid = f"s{seed}-{i}"
            ids.append(oid)
            items.append(order(rnd.choice(["buy", "sell"]), f"{rnd.randint(1, 4000) / 1000}", px, typ=typ, tif=tif,
                               oid=oid, stop=stop, ts=ts, account=rnd.choice(["x", "y"])))  # fmt: skip
        elif ids:
            oid = rnd.choice(ids)
            if rnd.random() < 0.5:
                items.append(CancelOrder(request_id=f"c{i}", venue=V, symbol=S, ts=ts, account="x", order_id=oid))
            else:
                items.append(ReplaceOrder(request_id=f"c{i}", venue=V, symbol=S, ts=ts, account="y", order_id=oid,
                                          price=D(f"{mid + rnd.randint(-5, 5)}.0")))  # fmt: skip
    return items


def run(e: MatchingEngine, items: list) -> list[bytes]:
    out: list[bytes] = []
    for it in items:
        res = e.on_market(it) if isinstance(it, (Quote, Trade)) else e.on_order(it)
        out += [encode(o) for o in res]
    return out


def test_same_stream_twice_gives_identical_executions() -> None:
    items = random_stream(7)
    a, b = run(eng(), items), run(eng(), items)
    assert a == b and len(a) > 1000
    decoded = [decode_output(x) for x in a]
    ex = [d for d in decoded if type(d) is Execution]
    assert len({x.exec_id for x in ex}) == len(ex)  # ids unique
    for f in (x for x in ex if x.kind == "fill" and x.limit_price is not None):
        assert f.price <= f.limit_price if f.side == "buy" else f.price >= f.limit_price  # type: ignore[operator]
    assert {x.kind for x in ex} >= {"accepted", "fill", "cancelled", "rejected", "replaced", "triggered", "expired"}


def test_snapshot_restore_midway_continues_identically() -> None:
    items = random_stream(11)
    full = run(eng(), items)
    e = eng()
    first = run(e, items[:1500])
    snap = e.snapshot()
    e2 = MatchingEngine.restore(snap, [SPEC])
    assert e2.snapshot() == snap
    assert first + run(e2, items[1500:]) == full


def test_state_store_checkpoint_and_torn_journal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = StateStore(tmp_path)
    assert st.load() == (None, [])
    st.append(["in", "t", "k", [0, 1, 2, -1], b"x"])
    st.checkpoint({"engine": b"E", "hwm": [], "out_seq": 3, "published": 3})
    st.append(["in", "t", "k", [0, 1, 3, -1], b"y"])
    st.append(["pub", 4])
    st.close()
    with open(tmp_path / "journal-1.log", "ab") as f:
        f.write(b"\x00\x00\x00\x09abc")  # a torn record
    st2 = StateStore(tmp_path)
    snap, recs = st2.load()
    assert snap is not None and snap["engine"] == b"E" and snap["gen"] == 1
    assert recs == [["in", "t", "k", [0, 1, 3, -1], b"y"], ["pub", 4]]
    st2.append(["pub", 5])
    st2.close()
    assert StateStore(tmp_path).load()[1][-1] == ["pub", 5]  # appended after the torn bytes were dropped
