"""The seeded random-walk L2 book behind a local venue's market (one per symbol), in integer ticks
(price · 10**price_precision) and units (size · 10**size_precision), so nothing is rounded.

A book step changes one or two levels near the top (a new quantity, a removed level or a new level inside the
spread) and trims the far end so the book keeps its size; a trade is taken at the touch. Given the seed, a symbol's
books and trades depend only on the steps asked of it. A venue's market subclasses :class:`RandomWalkBook` with its
side names, its start prices, how it writes a value (``_wire``) and what it records of a change (``_changed``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

__all__ = ["RandomWalkBook"]

_NEAR = 8  # levels near the top that book steps touch


class RandomWalkBook:
    """Book of one symbol, advanced one step at a time."""

    BID, ASK = "b", "a"  # the side names a change carries
    START: dict[str, int] = {}  # start price by base currency (others: a seeded 1..500)
    MAX_PRECISION = 12
    PRECISION_ERROR = "precisions must be 0..12"
    _wire: Callable[[int, int], str]  # units · 10**-precision as the venue writes it

    def __init__(self, symbol: str, price_precision: int, size_precision: int, *, seed: int, levels: int) -> None:
        top = self.MAX_PRECISION
        if not (0 <= price_precision <= top and 0 <= size_precision <= top):
            raise ValueError(self.PRECISION_ERROR)
        self.symbol = symbol
        self.pp, self.sp = price_precision, size_precision
        self.levels = levels
        self.rng = random.Random(f"{seed}:{symbol}")
        start = self.START.get(symbol.split("/")[0]) or self.rng.randint(1, 500)
        self.mid = max(start * 10**price_precision, 10_000)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        tick = self.mid
        for _ in range(levels):
            tick -= self.rng.randint(1, 3)
            self.bids[tick] = self._qty()
        tick = self.mid
        for _ in range(levels):
            tick += self.rng.randint(1, 3)
            self.asks[tick] = self._qty()
        self.trades_generated = 0

    def _qty(self) -> int:
        return self.rng.randint(max(1, 10**self.sp // 1000), 5 * 10**self.sp)

    # ------------------------------------------------------------------------------------------- steps

    def _changed(self, side: str, tick: int, units: int) -> None:
        """A level changed (units 0: removed); the venue records what its diffs need."""

    def _set(self, side: str, tick: int, units: int, changes: list[tuple[str, int, int]]) -> None:
        book = self.bids if side == self.BID else self.asks
        if units:
            book[tick] = units
        else:
            book.pop(tick, None)
        changes.append((side, tick, units))
        self._changed(side, tick, units)

    def step_book(self) -> list[tuple[str, int, int]]:
        """One or two level changes near the top, the far end trimmed; returns them as (side, tick, units)."""
        changes: list[tuple[str, int, int]] = []
        for _ in range(self.rng.randint(1, 2)):
            is_bid = self.rng.random() < 0.5
            side = self.BID if is_bid else self.ASK
            book = self.bids if is_bid else self.asks
            near = sorted(book, reverse=is_bid)[:_NEAR]
            r = self.rng.random()
            if r < 0.5 and near:
                self._set(side, self.rng.choice(near), self._qty(), changes)
            elif r < 0.75 and len(near) > 2:
                self._set(side, self.rng.choice(near), 0, changes)
            else:
                best_other = min(self.asks) if is_bid else max(self.bids)
                top = max(self.bids) if is_bid else min(self.asks)
                lo, hi = (top - 3, best_other - 1) if is_bid else (best_other + 1, top + 3)
                tick = self.rng.randint(min(lo, hi), max(lo, hi))
                if (is_bid and tick < best_other) or (not is_bid and tick > best_other):
                    self._set(side, tick, self._qty(), changes)
            while len(book) > self.levels + 5:
                self._set(side, min(book) if is_bid else max(book), 0, changes)
        return changes

    def _touch(self) -> tuple[bool, int, int]:
        """The next trade at the touch: (buyer is the taker, tick, units)."""
        buyer_taker = self.rng.random() < 0.5
        tick = min(self.asks) if buyer_taker else max(self.bids)
        units = self.rng.randint(1, max(1, 10**self.sp // 10))
        self.trades_generated += 1
        return buyer_taker, tick, units

    # ------------------------------------------------------------------------------------------ views

    def top(self) -> tuple[int, int, int, int]:
        b, a = max(self.bids), min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def book_levels(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The whole book as Decimals, best first (what a client's synced book must equal)."""
        w = self._wire
        bids = [(Decimal(w(t, self.pp)), Decimal(w(u, self.sp))) for t, u in sorted(self.bids.items(), reverse=True)]
        asks = [(Decimal(w(t, self.pp)), Decimal(w(u, self.sp))) for t, u in sorted(self.asks.items())]
        return bids, asks
