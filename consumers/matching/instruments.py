"""What the matching engine knows per instrument: its spec (:class:`InstrumentSpec`: increments, where its data
lives), the venue's touch (:class:`Market`) and the engine's per-instrument state (:class:`Instrument`: paper
book, touch, validation memos, position cache)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from consumers.matching.book import ZERO, Book, tick_unit
from consumers.matching.positions import PositionBook

TWO = Decimal(2)


@dataclass(frozen=True)
class InstrumentSpec:
    """What the engine needs to know about an instrument: its increments (orders off them are rejected) and
    where its market data lives (``namespace``, used by the service only)."""

    venue: str
    symbol: str
    price_increment: Decimal
    size_increment: Decimal
    min_size: Decimal | None = None  # default: one size increment
    namespace: str = "crypto"

    @property
    def key(self) -> tuple[str, str]:
        return (self.venue, self.symbol)


class Market:
    """The venue's touch for one instrument, with what of it is still unconsumed, and the last trade."""

    __slots__ = ("ask", "ask_avail", "ask_size", "bid", "bid_avail", "bid_size", "last")

    def __init__(self) -> None:
        self.bid: Decimal | None = None
        self.bid_size: Decimal | None = None
        self.ask: Decimal | None = None
        self.ask_size: Decimal | None = None
        self.bid_avail = ZERO
        self.ask_avail = ZERO
        self.last: Decimal | None = None

    def clear(self) -> None:
        self.bid = self.bid_size = self.ask = self.ask_size = None
        self.bid_avail = self.ask_avail = ZERO

    def mark(self) -> Decimal | None:
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / TWO  # exact: halving a decimal terminates
        return self.last

    def state(self) -> list:
        return [self.bid, self.bid_size, self.ask, self.ask_size, self.bid_avail, self.ask_avail, self.last]

    @classmethod
    def from_state(cls, s: list) -> Market:
        m = cls()
        d = [None if v is None else Decimal(v) for v in s]
        m.bid, m.bid_size, m.ask, m.ask_size, m.bid_avail, m.ask_avail, m.last = d  # type: ignore[assignment]
        return m


class Instrument:
    __slots__ = ("book", "market", "min_size", "positions", "price_increment", "quantities", "size_increment", "spec",
                 "symbol", "venue")  # fmt: skip

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.venue, self.symbol = spec.venue, spec.symbol
        # the increments, one attribute load away for the validation of _new
        self.price_increment = spec.price_increment
        self.size_increment = spec.size_increment
        self.min_size = spec.min_size
        self.book = Book(tick_unit(spec.price_increment))
        self.market = Market()
        # memoised quantity validation: str(quantity) → ``quantity - ZERO`` (a fresh order's "remaining"), for
        # quantities found finite, positive, on the size increment and not below the minimum (see valid_quantity)
        self.quantities: dict[str, Decimal] = {}
        # account → its position book in this instrument: a cache of the engine's positions (keyed by a tuple)
        # that a sweep fills as it meets accounts
        self.positions: dict[str, PositionBook] = {}


# The memo dicts (Instrument.quantities, Book.ticks) are emptied when they reach this size: prices and quantities
# repeat (near the touch, round lots), and a miss only costs the checks the memo saves plus one store.
MEMO_MAX = 1 << 16
