"""One product's local order book, as Coinbase's ``level2`` channel keeps it: a ``snapshot`` event loads the whole
book, each ``update`` event sets levels to their new quantity (``new_quantity`` is the level's size, not a delta;
``0`` removes it). Pure: no I/O, no clock.

``synced`` is False until a snapshot arrived, and again after a sequence break (:meth:`invalidate`): updates are
then ignored until the fresh snapshot the resubscription brings."""

from __future__ import annotations

from ingesters.base.book import Levels, PriceLevels

__all__ = ["Levels", "OrderBook"]


class OrderBook(PriceLevels):
    """Price → quantity per side (best prices cached), and whether it is in sync."""

    __slots__ = ("synced",)

    def __init__(self) -> None:
        super().__init__()
        self.synced = False

    def load(self, bids: Levels, asks: Levels) -> None:
        self._load(bids, asks)
        self.synced = True

    def invalidate(self) -> None:
        """A break: the book is unknown until the next snapshot."""
        self._clear()
        self.synced = False
