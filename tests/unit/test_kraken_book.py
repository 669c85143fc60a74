"""Kraken v2 book maintenance and checksum, checked against the numbers Kraken publishes."""

from __future__ import annotations

import json
import random
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from ingesters.kraken.book import OrderBook, checksum, level_digits

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kraken"


def _levels(name: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]], int]:
    """(bids, asks, checksum) of a fixture's first book entry, numbers parsed exactly as Decimal."""
    msg = json.loads((FIXTURES / name).read_text(), parse_float=Decimal)
    data = msg["data"][0]
    pairs = lambda side: [(lv["price"], lv["qty"]) for lv in data[side]]  # noqa: E731
    return pairs("bids"), pairs("asks"), data["checksum"]


def test_guide_example_checksum_is_kraken_published_number():
    # docs.kraken.com "Book checksum (WebSocket v2)": BTC/USD, price_precision 1, qty_precision 8.
    bids, asks, published = _levels("book_checksum_guide_snapshot.json")
    assert published == 3310070434
    assert checksum(bids, asks, 1, 8) == 3310070434
    book = OrderBook(10, 1, 8)
    book.apply_snapshot(bids, asks)
    assert book.checksum() == 3310070434


def test_guide_example_formatting_steps():
    # The guide's worked step: price "45285.2" → "452852", qty "0.00100000" → "100000".
    assert level_digits(Decimal("45285.2"), 1) == "452852"
    assert level_digits(Decimal("0.00100000"), 8) == "100000"
    # JSON numbers drop trailing zeros; the pair's precision puts them back.
    assert level_digits(Decimal("0.566"), 4) == "5660"
    assert level_digits(Decimal("0.1"), 8) == "10000000"
    assert level_digits(Decimal("45281"), 1) == "452810"
    assert level_digits(Decimal("1E-8"), 8) == "1"
    # More decimals than the precision: rounded, as a formatter with that precision would.
    assert level_digits(Decimal("0.123456789"), 8) == "12345679"


def test_guide_example_concatenation_order_asks_then_bids():
    bids, asks, _ = _levels("book_checksum_guide_snapshot.json")
    text = "".join(level_digits(p, 1) + level_digits(q, 8) for p, q in asks + bids)
    assert text.startswith("452852100000" + "452864154571953")
    assert zlib.crc32(text.encode()) == 3310070434


def test_book_page_snapshot_and_update_checksums():
    # docs.kraken.com websocket-v2/book: MATIC/USD (price_precision 4, qty_precision 8).
    bids, asks, published = _levels("book_snapshot.json")
    assert published == 2439117997
    book = OrderBook(10, 4, 8)
    book.apply_snapshot(bids, asks)
    assert book.checksum() == 2439117997
    upd_bids, upd_asks, upd_published = _levels("book_update.json")
    book.apply_update(upd_bids, upd_asks)
    assert upd_published == 2114181697
    assert book.checksum() == 2114181697
    assert book.bids()[-1] == (Decimal("0.5657"), Decimal("1098.3947558"))


def test_module_checksum_takes_levels_in_any_order_and_only_top_ten():
    bids, asks, _ = _levels("book_checksum_guide_snapshot.json")
    shuffled_bids, shuffled_asks = bids[::-1], asks[3:] + asks[:3]
    worse = [(Decimal("45000.0"), Decimal("9")), (Decimal("1.0"), Decimal("1"))]
    deeper = [(Decimal("46000.0"), Decimal("9"))]
    assert checksum(shuffled_bids + worse, shuffled_asks + deeper, 1, 8) == 3310070434


def test_update_inserts_deletes_and_truncates_to_depth():
    book = OrderBook(3)
    book.apply_snapshot(
        [(Decimal("99"), Decimal("1")), (Decimal("98"), Decimal("2")), (Decimal("97"), Decimal("3"))],
        [(Decimal("101"), Decimal("1")), (Decimal("102"), Decimal("2")), (Decimal("103"), Decimal("3"))],
    )
    # A better bid pushes the worst one out; a zero qty removes a level; an unknown zero is a no-op.
    book.apply_update(
        [(Decimal("99.5"), Decimal("4")), (Decimal("50"), Decimal("0"))],
        [(Decimal("101"), Decimal("0")), (Decimal("104"), Decimal("5"))],
    )
    assert book.bids() == [
        (Decimal("99.5"), Decimal("4")),
        (Decimal("99"), Decimal("1")),
        (Decimal("98"), Decimal("2")),
    ]
    assert book.asks() == [
        (Decimal("102"), Decimal("2")),
        (Decimal("103"), Decimal("3")),
        (Decimal("104"), Decimal("5")),
    ]
    assert book.best_bid() == (Decimal("99.5"), Decimal("4"))
    assert book.best_ask() == (Decimal("102"), Decimal("2"))
    assert book.bids(1) == [(Decimal("99.5"), Decimal("4"))]
    assert book.asks(2) == [(Decimal("102"), Decimal("2")), (Decimal("103"), Decimal("3"))]
    # Same price written differently is the same level.
    book.apply_update([(Decimal("99.50"), Decimal("7"))], [])
    assert book.best_bid() == (Decimal("99.5"), Decimal("7"))
    assert len(book) == 3


def test_snapshot_skips_zero_levels_and_truncates():
    book = OrderBook(2)
    book.apply_snapshot(
        [
            (Decimal("1"), Decimal("1")),
            (Decimal("3"), Decimal("0")),
            (Decimal("2"), Decimal("1")),
            (Decimal("0.5"), Decimal("1")),
        ],
        [],
    )
    assert book.bids() == [(Decimal("2"), Decimal("1")), (Decimal("1"), Decimal("1"))]
    assert book.best_ask() is None


def test_checksum_needs_precision():
    book = OrderBook(10)
    with pytest.raises(ValueError, match="precision"):
        book.checksum()


def test_matches_a_naive_book_over_many_random_updates():
    """Sorted-list maintenance, cached level text and truncation agree with a plain dict rebuilt each time."""
    rnd = random.Random(42)
    depth = 25
    model_bids: dict[Decimal, Decimal] = {}
    model_asks: dict[Decimal, Decimal] = {}
    for i in range(1, depth + 1):
        model_bids[Decimal(50_000 - i)] = Decimal(rnd.randint(1, 10**8)).scaleb(-8)
        model_asks[Decimal(50_000 + i)] = Decimal(rnd.randint(1, 10**8)).scaleb(-8)
    book = OrderBook(depth, 0, 8)
    book.apply_snapshot(model_bids.items(), model_asks.items())
    for _ in range(3000):
        bids, asks = [], []
        for _ in range(rnd.randint(1, 4)):
            is_bid = rnd.random() < 0.5
            side, out = (model_bids, bids) if is_bid else (model_asks, asks)
            base = 50_000 - 1 if is_bid else 50_000 + 1
            price = Decimal(base + (-1 if is_bid else 1) * rnd.randint(0, 40))
            qty = Decimal(0) if rnd.random() < 0.3 else Decimal(rnd.randint(1, 10**8)).scaleb(-8)
            out.append((price, qty))
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)
        book.apply_update(bids, asks)
        for side, best_first in ((model_bids, True), (model_asks, False)):  # the model truncates too
            for price in sorted(side, reverse=best_first)[depth:]:
                del side[price]
        assert book.bids() == sorted(model_bids.items(), reverse=True)
        assert book.asks() == sorted(model_asks.items())
        assert book.checksum() == checksum(model_bids.items(), model_asks.items(), 0, 8)


def test_changing_precision_recomputes_level_text():
    bids, asks, _ = _levels("book_snapshot.json")
    book = OrderBook(10, 3, 8)
    book.apply_snapshot(bids, asks)
    assert book.checksum() != 2439117997
    book.set_precision(4, 8)
    assert book.checksum() == 2439117997
