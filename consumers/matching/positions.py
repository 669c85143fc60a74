"""Positions per (account, venue, symbol): FIFO lots, so realised PnL and cost are exact Decimals.

A position is a deque of open lots ``[signed quantity, price]``. A fill in the position's direction (or on a
flat position) appends a lot; a fill against it closes lots oldest first, realising ``(exit - entry) * qty`` for
longs and ``(entry - exit) * qty`` for shorts, and a fill larger than the position flips it (the excess opens a
new lot). ``cost`` (Σ lot quantity * price) is exact; ``avg_price = cost / quantity`` is the only division
(Decimal's default 28-digit context, deterministic). ``unrealised = quantity * mark - cost``. No fees.

The engine's sweep (``MatchingEngine._take``) runs ``fill``'s open-or-add path inline, step for step (a Python
call costs more than most of a fill), and calls ``reduce`` for a fill that closes lots: a change to the opening
path here must be made there too.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from consumers.matching.messages import Position

ZERO = Decimal(0)


class PositionBook:
    __slots__ = ("cost", "lots", "quantity", "realised")

    def __init__(self) -> None:
        self.lots: deque[list[Decimal]] = deque()
        self.quantity = ZERO
        self.cost = ZERO
        self.realised = ZERO

    def apply(self, side: str, qty: Decimal, price: Decimal) -> None:
        signed = qty if side == "buy" else -qty
        quantity = self.quantity
        if not quantity or (quantity > ZERO) == (signed > ZERO):
            self.lots.append([signed, price])
            self.quantity = quantity + signed
            self.cost += signed * price
            return
        self.reduce(side, qty, price)

    def reduce(self, side: str, qty: Decimal, price: Decimal) -> None:
        """``apply`` for a fill against the position (the caller made apply's test): closes lots oldest first and
        opens the excess the other way."""
        # totals kept in locals, stored once at the end
        quantity, lots = self.quantity, self.lots  # (pairs: a longer tuple assignment builds a tuple)
        cost, realised = self.cost, self.realised
        left = qty
        while left and lots:
            lot = lots[0]
            lot_qty, lot_px = lot
            size = abs(lot_qty)
            take = size if size < left else left  # min(left, size)
            if lot_qty > ZERO:  # closing a long by selling
                realised += (price - lot_px) * take
                rest = lot[0] = lot_qty - take
                cost -= take * lot_px
                quantity -= take
            else:  # closing a short by buying
                realised += (lot_px - price) * take
                rest = lot[0] = lot_qty + take
                cost += take * lot_px
                quantity += take
            left -= take
            if not rest:
                lots.popleft()
        if left:  # flipped: the rest opens a new position
            signed = left if side == "buy" else -left
            lots.append([signed, price])
            quantity += signed
            cost += signed * price
        self.quantity, self.cost, self.realised = quantity, cost, realised

    def fill(
        self,
        side: str,
        qty: Decimal,
        price: Decimal,
        account: str,
        venue: str,
        symbol: str,
        ts: int,
        mark: Decimal | None,
        exec_id: str,
    ) -> Position:
        """``apply`` then ``view`` in one call (the engine's hot path): the same result, fewer lookups. ``mark``
        None means the fill price."""  # fmt: skip
        quantity = self.quantity
        signed = qty if side == "buy" else -qty
        if not quantity or (quantity > ZERO) == (signed > ZERO):  # opens or adds (apply's first branch)
            self.lots.append([signed, price])
            q = self.quantity = quantity + signed
            cost = self.cost = self.cost + signed * price
        else:
            self.reduce(side, qty, price)
            q, cost = self.quantity, self.cost
        if mark is None:
            mark = price
        if q:
            return Position(
                account, venue, symbol, ts, q, cost / q, cost, self.realised, q * mark - cost, mark, exec_id
            )
        return Position(account, venue, symbol, ts, q, None, cost, self.realised, ZERO, mark, exec_id)

    @property
    def avg_price(self) -> Decimal | None:
        return (self.cost / self.quantity) if self.quantity else None

    def unrealised(self, mark: Decimal | None) -> Decimal:
        if mark is None or not self.quantity:
            return ZERO
        return self.quantity * mark - self.cost

    def view(self, account: str, venue: str, symbol: str, ts: int, mark: Decimal | None, exec_id: str = "") -> Position:
        q, cost = self.quantity, self.cost
        if q:
            avg: Decimal | None = cost / q
            unrealised = ZERO if mark is None else q * mark - cost
        else:
            avg, unrealised = None, ZERO
        # positional, in Position's field order (see messages.py)
        return Position(account, venue, symbol, ts, q, avg, cost, self.realised, unrealised, mark, exec_id)

    def state(self) -> list:
        return [[[q, p] for q, p in self.lots], self.quantity, self.cost, self.realised]

    @classmethod
    def from_state(cls, s: list) -> PositionBook:
        pb = cls()
        pb.lots = deque([Decimal(q), Decimal(p)] for q, p in s[0])
        pb.quantity, pb.cost, pb.realised = Decimal(s[1]), Decimal(s[2]), Decimal(s[3])
        return pb
