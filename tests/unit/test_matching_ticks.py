"""Internal representations of the optimised matching engine and service: the book's integer price ticks (exact
conversion, ordering, fill prices staying the orders' Decimals) and the journal rotation behind the background
snapshot (replay across journals)."""

from __future__ import annotations

import os
from decimal import Decimal as D

import pytest

from consumers.matching.book import Book, Order, tick_unit, to_ticks
from consumers.matching.engine import InstrumentSpec, MatchingEngine
from consumers.matching.journal import StateStore
from consumers.matching.messages import Execution, NewOrder


@pytest.mark.parametrize(
    ("increment", "unit"),
    [
        (D("0.01"), D("0.01")),
        (D("0.010"), D("0.01")),  # trailing zeros do not make ticks finer
        (D("0.25"), D("0.01")),  # a non-power-of-ten increment: ticks of the power of ten below it
        (D("0.001"), D("0.001")),  # JPY-like quote increment
        (D("0.00000001"), D("1E-8")),  # crypto satoshi
        (D("1"), D("1")),
        (D("5"), D("1")),
        (D("10"), D("1E+1")),
    ],
)
def test_tick_unit_is_the_increments_power_of_ten(increment: D, unit: D) -> None:
    assert tick_unit(increment) == unit


def test_tick_unit_gets_finer_for_restored_prices_off_the_increment() -> None:
    assert tick_unit(D("0.1"), [D("100.0"), D("100.05")]) == D("0.01")
    assert tick_unit(D("0.1"), [D("100.10")]) == D("0.1")  # 100.10 is on 0.1


@pytest.mark.parametrize(
    ("price", "unit", "ticks"),
    [
        (D("99.87"), D("0.01"), 9987),
        (D("99.870"), D("0.01"), 9987),  # same value, another exponent: same tick
        (D("9.987E+1"), D("0.01"), 9987),
        (D("150.125"), D("0.001"), 150125),
        (D("0.00000001"), D("1E-8"), 1),
        (D("123456789.12345678"), D("1E-8"), 12345678912345678),  # 17 digits: beyond a float's exactness
        (D("99999999999999999999.99999999"), D("1E-8"), 9999999999999999999999999999),  # 28 digits
        (D("4021.25"), D("0.01"), 402125),
        (D("30"), D("1E+1"), 3),
    ],
)
def test_to_ticks_is_exact(price: D, unit: D, ticks: int) -> None:
    assert to_ticks(price, 1 / unit) == ticks


def test_to_ticks_refuses_a_price_between_ticks() -> None:
    with pytest.raises(ValueError):
        to_ticks(D("100.005"), 1 / D("0.01"))


def _order(oid: str, side: str, price: str, seq: int) -> Order:
    return Order(oid, oid, "a", "v", "S", side, "limit", D(1), D(price), None, "GTC", 0, seq)


def test_levels_sort_by_tick_and_keep_the_opening_orders_decimal() -> None:
    book = Book(D("1E-8"))
    for i, p in enumerate(["0.00000003", "0.00000001", "0.000000010", "0.00000002"]):
        book.asks.add(_order(f"o{i}", "sell", p, i))
    assert book.asks.prices == [1, 2, 3]
    best = book.asks.best()
    assert best is not None and best.live == 2 and str(best.price) == "1E-8"  # "0.00000001" came first
    o = book.asks.head(best)
    assert o.order_id == "o1"
    o.alive = False
    book.asks.remove(o)
    assert book.asks.head(best).order_id == "o2" and book.asks.prices == [1, 2, 3]


def test_fill_prices_are_the_resting_orders_decimals_with_jpy_and_crypto_increments() -> None:
    specs = [InstrumentSpec("o", "USD/JPY", D("0.001"), D("1")), InstrumentSpec("k", "XBT", D("0.1"), D("1E-8"))]
    e = MatchingEngine(specs)
    n = 0

    def new(venue: str, symbol: str, side: str, qty: str, price: str) -> list:
        nonlocal n
        n += 1
        return e.on_order(NewOrder(request_id=f"r{n}", venue=venue, symbol=symbol, ts=n, side=side,  # type: ignore[arg-type]
                                   order_type="limit", quantity=D(qty), price=D(price)))  # fmt: skip

    new("o", "USD/JPY", "sell", "1000", "150.1250")
    new("o", "USD/JPY", "sell", "1000", "150.124")
    out = new("o", "USD/JPY", "buy", "1500", "150.13")
    fills = [(x.price, x.quantity) for x in out if type(x) is Execution and x.kind == "fill" and x.order_id == "r3"]
    assert [(str(p), str(q)) for p, q in fills] == [("150.124", "1000"), ("150.1250", "500")]
    new("k", "XBT", "buy", "0.00000001", "65000.1")
    out = new("k", "XBT", "sell", "0.12345678", "65000.10")
    fills = [
        (str(x.price), str(x.quantity), str(x.remaining)) for x in out if type(x) is Execution and x.kind == "fill"
    ]
    assert fills == [("65000.1", "1E-8", "0.12345677"), ("65000.1", "1E-8", "0E-8")]


def test_restore_with_a_coarser_increment_keeps_the_resting_prices_exact() -> None:
    fine = InstrumentSpec("v", "S", D("0.01"), D("1"))
    e = MatchingEngine([fine])
    for i, p in enumerate(["100.05", "100.10", "100.15"]):
        e.on_order(NewOrder(request_id=f"r{i}", venue="v", symbol="S", ts=i, side="buy", order_type="limit",
                            quantity=D(1), price=D(p)))  # fmt: skip
    coarse = InstrumentSpec("v", "S", D("0.1"), D("1"))
    e2 = MatchingEngine.restore(e.snapshot(), [coarse])
    bids = e2.instruments[coarse.key].book.bids
    assert [str(bids.levels[t].price) for t in bids.prices] == ["100.05", "100.10", "100.15"]
    assert e2.snapshot() == e.snapshot()


# -- the journal rotation the service's background snapshot relies on ----------------------------------------------
def test_rotated_journal_before_its_snapshot_is_durable_is_replayed_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = StateStore(tmp_path)
    st.load()
    st.append(["in", "t", "k", [0, 1, 1, -1], b"a"])
    old_fd, gen = st.rotate()  # the snapshot of gen 1 is not written yet (the process dies here)
    st.append(["in", "t", "k", [0, 1, 2, -1], b"b"])
    assert old_fd is not None and gen == 1
    st.close()
    os.close(old_fd)
    snap, recs = StateStore(tmp_path).load()
    assert snap is None and [r[4] for r in recs] == [b"a", b"b"]
    # once the snapshot of gen 1 is durable, journal 0 is covered (deleted) and only journal 1 is replayed
    st2 = StateStore(tmp_path)
    st2.load()
    st2.write_snapshot({"engine": b"E", "hwm": [], "out_seq": 0, "published": 0}, 1)
    st2.close()
    assert sorted(p.name for p in tmp_path.glob("journal-*.log")) == ["journal-1.log"]
    snap, recs = StateStore(tmp_path).load()
    assert snap is not None and snap["gen"] == 1 and [r[4] for r in recs] == [b"b"]


def test_a_journal_torn_before_a_newer_one_ends_the_replay(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = StateStore(tmp_path)
    st.load()
    st.append(["in", "t", "k", [0, 1, 1, -1], b"a"])
    old_fd, _gen = st.rotate()
    st.append(["in", "t", "k", [0, 1, 2, -1], b"b"])
    st.close()
    os.write(old_fd, b"\x00\x00\x00\x09ab")  # journal 0 torn at its end
    os.close(old_fd)
    st2 = StateStore(tmp_path)
    snap, recs = st2.load()
    assert snap is None and [r[4] for r in recs] == [b"a"] and st2.gen == 0
    assert not (tmp_path / "journal-1.log").exists()
    st2.close()
