"""One instrument's resting paper orders, in price-time priority.

Each side is a dict ``price → Level`` (the level's orders in time order, and how many of them are live) plus a
sorted list of the prices that have a level (``bisect``: best bid is the last, best ask the first). An order is
found by id through the engine's dict. Cancelling is O(1): the order is marked dead and its level's live count
decremented; dead orders are dropped when they reach the front of their deque, and a level whose live count
reaches zero is removed at once, so a best price is always live. Time priority is the engine's sequence number
(``seq``), never a clock, so replaying the same input yields the same queues.

Untriggered stop orders wait in a separate sorted list per side keyed by ``(stop_price, seq)``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec

ZERO = Decimal(0)


class Order(msgspec.Struct, eq=False, gc=False):
    """A live (or finished) paper order. Mutable; a msgspec struct (not a plain slotted class) because the C
    constructor is ~2.5x faster than a Python ``__init__`` and one is built per order. ``eq=False``: orders
    compare by identity. No container fields, so ``gc=False``. Positional fields as in ``as_tuple``."""

    order_id: str
    request_id: str
    account: str
    venue: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    tif: str
    ts: int
    seq: int
    expire_at: int = 0  # DAY orders: the next UTC midnight after acceptance (ns); else 0
    filled: Decimal = ZERO
    n_exec: int = 0  # executions emitted for this order (the suffix of the next exec_id)
    alive: bool = True  # resting in a book or waiting as a stop
    triggered: bool = False
    tick: int | None = None  # the price in ticks of its book (set when it rests; not part of the state)
    position: Any = None  # the account's PositionBook in this instrument, once it filled (not part of the state)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    def as_tuple(self) -> tuple:
        return (
            self.order_id, self.request_id, self.account, self.venue, self.symbol, self.side, self.order_type,
            self.quantity, self.price, self.stop_price, self.tif, self.ts, self.seq, self.expire_at, self.filled,
            self.n_exec, self.alive, self.triggered,
        )  # fmt: skip

    @classmethod
    def from_tuple(cls, t: list | tuple) -> Order:
        o = cls(t[0], t[1], t[2], t[3], t[4], t[5], t[6], Decimal(t[7]), _dec(t[8]), _dec(t[9]), t[10], t[11], t[12],
                t[13])  # fmt: skip
        o.filled, o.n_exec, o.alive, o.triggered = Decimal(t[14]), t[15], t[16], t[17]
        return o


def _dec(v: object) -> Decimal | None:
    return None if v is None else Decimal(v)  # type: ignore[arg-type]


def tick_unit(increment: Decimal, prices: Iterable[Decimal] = ()) -> Decimal:
    """The power of ten that price ticks count: the finest of the increment's (normalised) exponent and of the
    ``prices`` given (resting orders restored from a snapshot taken with another increment). A multiple of the
    increment is always a multiple of it, so ``price / unit`` is an exact integer for every price in the book."""
    exp = min([increment.normalize().as_tuple().exponent] + [p.normalize().as_tuple().exponent for p in prices])
    return Decimal(1).scaleb(exp)  # type: ignore[arg-type]


def to_ticks(price: Decimal, scale: Decimal) -> int:
    """``price`` in ticks (``scale`` = 1 / unit, a power of ten): exact, as the multiplication only moves the
    exponent. Raises ValueError for a price that is not a whole number of ticks (never the case in a book)."""
    t = price * scale
    if t != t.to_integral_value():
        raise ValueError(f"price {price} is not a whole number of ticks of {1 / scale}")
    return int(t)


class Level:
    """The orders at one price in time order (dead ones are dropped lazily from the front) and how many live.
    ``price`` is the Decimal of the order that opened the level (fills against the level are at it)."""

    __slots__ = ("live", "orders", "price")

    def __init__(self, price: Decimal) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.live = 0


class Side:
    """One side of a book: levels by price in integer ticks, the ticks sorted ascending.

    Why ticks: a dict keyed by Decimal hashes every fresh price (a command's) at ~1 µs, where converting it to
    an int costs a third of that and int hashing/comparison is nearly free. ``scale`` = 1 / the tick unit (see
    :func:`tick_unit`); prices are validated to be multiples of the instrument's increment, so exact."""

    __slots__ = ("is_bid", "levels", "prices", "scale")

    def __init__(self, is_bid: bool, unit: Decimal = Decimal(1)) -> None:
        self.is_bid = is_bid
        self.scale = 1 / unit  # exact: unit is a power of ten
        self.levels: dict[int, Level] = {}
        self.prices: list[int] = []  # the levels' ticks, ascending (best bid last, best ask first)

    def add(self, order: Order) -> None:
        tick = order.tick
        if tick is None:
            # int(price * scale), without to_ticks's check: a price on the instrument's increment is a whole
            # number of ticks (restore checks the others)
            tick = order.tick = int(order.price * self.scale)  # type: ignore[operator]
        level = self.levels.get(tick)
        if level is None:
            level = self.levels[tick] = Level(order.price)  # type: ignore[arg-type]
            insort(self.prices, tick)
        level.orders.append(order)
        level.live += 1

    def remove(self, order: Order) -> None:
        """Take a live order out (cancel, fill, expiry): O(1) unless its level empties."""
        tick = order.tick
        level = self.levels[tick]  # type: ignore[index]
        n = level.live - 1
        if n:
            level.live = n
            orders = level.orders
            while orders and not orders[0].alive:
                orders.popleft()
        else:
            del self.levels[tick]  # type: ignore[arg-type]
            del self.prices[bisect_left(self.prices, tick)]  # type: ignore[arg-type]

    def holds(self, order: Order) -> bool:
        """Whether a level exists at ``order``'s price (it rests here)."""
        return order.tick is not None and order.tick in self.levels

    def best(self) -> Level | None:
        prices = self.prices
        if not prices:
            return None
        return self.levels[prices[-1] if self.is_bid else prices[0]]

    @staticmethod
    def head(level: Level) -> Order:
        """The first live order of ``level`` (it is in the book, so it has one)."""
        orders = level.orders
        while not orders[0].alive:
            orders.popleft()
        return orders[0]

    def levels_from_best(self) -> list[Level]:
        """Levels best first (a copy: the caller may remove levels while iterating)."""
        ticks = reversed(self.prices) if self.is_bid else self.prices
        return [self.levels[t] for t in ticks]

    def quantity_to(self, limit: Decimal | None) -> Decimal:
        """Live quantity at prices at least as good as ``limit`` for a taker (all of it when None)."""
        total = ZERO
        for level in self.levels_from_best():
            p = level.price
            if limit is not None and (p < limit if self.is_bid else p > limit):
                break
            for o in list(level.orders):
                if o.alive:
                    total += o.quantity - o.filled
        return total


class StopQueue:
    """Untriggered stops of one side, ordered by ``(stop_price, seq)``; dead entries are skipped lazily."""

    __slots__ = ("entries", "is_buy")

    def __init__(self, is_buy: bool) -> None:
        self.is_buy = is_buy
        self.entries: list[tuple[Decimal, int, Order]] = []

    def add(self, order: Order) -> None:
        insort(self.entries, (order.stop_price, order.seq, order), key=lambda e: (e[0], e[1]))  # type: ignore[arg-type]

    def due(self, ref: Decimal) -> list[Order]:
        """Remove and return the live stops ``ref`` triggers: buy stops with stop ≤ ref (lowest first), sell stops
        with stop ≥ ref (highest first)."""
        out: list[Order] = []
        e = self.entries
        if self.is_buy:
            i = 0
            while i < len(e) and e[i][0] <= ref:
                i += 1
            taken, self.entries = e[:i], e[i:]
        else:
            i = len(e)
            while i > 0 and e[i - 1][0] >= ref:
                i -= 1
            taken, self.entries = e[i:][::-1], e[:i]
        for _p, _s, o in taken:
            if o.alive:
                out.append(o)
        return out

    def discard_dead(self) -> None:
        self.entries = [x for x in self.entries if x[2].alive]


class Book:
    """Bids, asks and waiting stops of one instrument.

    ``ticks`` memoises the engine's price validation: ``str(price)`` → the price in ticks, for prices found
    finite, positive and on the instrument's increment (the string is the Decimal's exact value and exponent, so
    it determines both; the engine fills it, see ``MatchingEngine._new``). It lives here because the ticks depend
    on this book's unit (a restore may build a finer book)."""

    __slots__ = ("asks", "bids", "buy_stops", "sell_stops", "ticks")

    def __init__(self, unit: Decimal = Decimal(1)) -> None:
        self.bids = Side(True, unit)
        self.asks = Side(False, unit)
        self.buy_stops = StopQueue(True)
        self.sell_stops = StopQueue(False)
        self.ticks: dict[str, int] = {}

    def side(self, side: str) -> Side:
        return self.bids if side == "buy" else self.asks

    def opposite(self, side: str) -> Side:
        return self.asks if side == "buy" else self.bids
