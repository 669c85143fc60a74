"""A local order book's price levels: price → quantity per side, each update carrying a level's NEW absolute
quantity (``0`` removes the level), with the best prices cached. Pure: no I/O, no clock.

A venue's book subclasses :class:`PriceLevels` with how it is loaded and kept in sync (a snapshot event, a REST
snapshot and update ids, …)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

__all__ = ["Levels", "PriceLevels"]

Levels = Iterable[tuple[Decimal, Decimal]]
_ZERO = Decimal(0)


class PriceLevels:
    """Price → quantity per side, with the best prices cached."""

    __slots__ = ("_best_ask", "_best_bid", "asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self._best_bid: Decimal | None = None  # None: recompute on demand
        self._best_ask: Decimal | None = None

    def _load(self, bids: Levels, asks: Levels) -> None:
        """Replace both sides (levels with a zero quantity are left out)."""
        self.bids = {p: q for p, q in bids if q > _ZERO}
        self.asks = {p: q for p, q in asks if q > _ZERO}
        self._best_bid = self._best_ask = None

    def _clear(self) -> None:
        self.bids, self.asks = {}, {}
        self._best_bid = self._best_ask = None

    def apply(self, bids: Levels, asks: Levels) -> None:
        side, best = self.bids, self._best_bid
        for p, q in bids:
            if q > _ZERO:
                side[p] = q
                if best is not None and p > best:
                    best = p
            else:
                side.pop(p, None)
                if p == best:
                    best = None
        self._best_bid = best if side else None
        side, best = self.asks, self._best_ask
        for p, q in asks:
            if q > _ZERO:
                side[p] = q
                if best is not None and p < best:
                    best = p
            else:
                side.pop(p, None)
                if p == best:
                    best = None
        self._best_ask = best if side else None

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        if not self.bids:
            return None
        if self._best_bid is None or self._best_bid not in self.bids:
            self._best_bid = max(self.bids)
        return self._best_bid, self.bids[self._best_bid]

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        if not self.asks:
            return None
        if self._best_ask is None or self._best_ask not in self.asks:
            self._best_ask = min(self.asks)
        return self._best_ask, self.asks[self._best_ask]

    def levels(self, depth: int | None = None) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids, asks), best first, ``depth`` per side at most (all when None)."""
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return bids, asks
