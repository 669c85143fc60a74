"""Taking liquidity: an incoming (taker) order sweeps the paper book and the venue's touch, best price first, up
to its limit (:meth:`Sweep._take`), and one fill's execution and position (:meth:`Sweep._fill`). This is the
engine's hot path: see the performance notes in :mod:`consumers.matching.engine` for what is inlined and why.

:class:`Sweep` is a part of :class:`~consumers.matching.engine.MatchingEngine` (its base class): it works on
the engine's state (``_out``, ``now``, ``open``, ``positions``)."""

from __future__ import annotations

from decimal import Decimal

from consumers.matching.book import ZERO, Order
from consumers.matching.instruments import TWO, Instrument
from consumers.matching.messages import Execution, Output, Position
from consumers.matching.positions import PositionBook

SUFFIX = tuple(f".{n}" for n in range(256))


def exec_id(order_id: str, n: int) -> str:
    """``f"{order_id}.{n}"``, without formatting the number for the first 255 executions of an order."""
    return order_id + SUFFIX[n] if n < 256 else f"{order_id}.{n}"


class Sweep:
    """The matching engine's sweep and fills (a base class of :class:`~consumers.matching.engine.MatchingEngine`)."""

    _out: list[Output]
    now: int
    open: dict[str, Order]
    positions: dict[tuple[str, str, str], PositionBook]

    def _fillable(self, inst: Instrument, side: str, otype: str, price: Decimal | None) -> Decimal:
        """What an order could take right now (FOK pre-check): the paper book plus the unconsumed touch."""
        limit = price if otype != "market" else None
        opp = inst.book.opposite(side)
        total = opp.quantity_to(limit)
        m = inst.market
        if side == "buy":
            if m.ask is not None and m.ask_avail > 0 and (limit is None or m.ask <= limit):
                total += m.ask_avail
        elif m.bid is not None and m.bid_avail > 0 and (limit is None or m.bid >= limit):
            total += m.bid_avail
        return total

    def _take(self, inst: Instrument, o: Order) -> None:
        """Match ``o`` as a taker against the paper book and the touch, best price first, up to its limit.

        The fills are built here, as ``_fill`` builds them (same fields, same order: the taker's execution and
        position, then the maker's), not by calling it: a sweep's fills are most of the engine's work, and this
        way the taker's fields are loaded once (its ``filled`` and ``n_exec`` live in locals until the end) and a
        paper-vs-paper fill costs no call (but ``PositionBook.reduce`` when a fill closes lots). The open-or-add
        position code mirrors ``PositionBook.fill``: change them together."""
        side = o.side
        buy = side == "buy"
        book = inst.book
        opp = book.asks if buy else book.bids
        prices = opp.prices  # sorted ascending, updated in place as levels empty
        levels = opp.levels
        m = inst.market
        otype = o.order_type
        price, stop, tif = o.price, o.stop_price, o.tif
        limit = price if otype in ("limit", "stop_limit") else None
        # the limit in the book's ticks when the order has them (a limit order from on_order's memo): paper levels
        # are then compared with it as ints, the same test as their Decimal prices
        limit_tick = o.tick if limit is not None else None
        # the mark (Market.mark(), inline), fixed while taking: fills change no bid, ask or last
        mark = (m.bid + m.ask) / TWO if m.bid is not None and m.ask is not None else m.last
        out = self._out
        now = self.now
        oid, account, qty = o.order_id, o.account, o.quantity
        venue, symbol = o.venue, o.symbol  # the maker's too (same instrument)
        pos = o.position  # the taker's position book, looked up at its first fill
        filled, n_exec = o.filled, o.n_exec  # stored back after the loop
        rem = qty - filled
        while rem > ZERO:
            # the best price on offer: the paper book's best level (first at its price) or the unconsumed touch
            if buy:
                ep = m.ask if (m.ask is not None and m.ask_avail > ZERO) else None
                if prices:
                    tick = prices[0]
                    level = levels[tick]
                    px = level.price
                    internal = ep is None or px <= ep
                else:
                    internal = False
            else:
                ep = m.bid if (m.bid is not None and m.bid_avail > ZERO) else None
                if prices:
                    tick = prices[-1]
                    level = levels[tick]
                    px = level.price
                    internal = ep is None or px >= ep
                else:
                    internal = False
            if internal:  # never beyond the limit
                if limit is not None:
                    if limit_tick is not None:
                        if tick > limit_tick if buy else tick < limit_tick:
                            break
                    elif px > limit if buy else px < limit:
                        break
                orders = level.orders
                while not orders[0].alive:
                    orders.popleft()
                r = orders[0]
                r_rem = r.quantity - r.filled
                q = r_rem if r_rem < rem else rem  # min(rem, r_rem), ties to rem
                liquidity, contra = "book", r.order_id
            else:
                if ep is None or (limit is not None and (ep > limit if buy else ep < limit)):
                    break
                px = ep
                if buy:
                    avail = m.ask_avail
                    q = avail if avail < rem else rem
                    m.ask_avail = avail - q
                else:
                    avail = m.bid_avail
                    q = avail if avail < rem else rem
                    m.bid_avail = avail - q
                liquidity, contra = "quote", ""
            # the taker's fill (_fill, inline); its remaining is also the loop's test
            filled = filled + q
            n_exec = n = n_exec + 1
            eid = oid + SUFFIX[n] if n < 256 else f"{oid}.{n}"  # exec_id, inline
            rem = qty - filled
            # filled == qty exactly when qty - filled is zero (a difference of two unequal decimals rounds to a
            # nonzero one), and testing the remaining already computed saves a Decimal comparison
            status = "filled" if not rem else ("partially_filled" if filled else "new")
            out.append(Execution(eid, "fill", oid, account, venue, symbol, status, now, side, otype, filled, rem, px, q,  # type: ignore[arg-type]
                                 price, stop, tif, liquidity, contra, "", ""))  # type: ignore[arg-type]  # fmt: skip
            if pos is None:  # the taker's first fill: its account's book, by account in this instrument's cache
                pos = inst.positions.get(account)
                if pos is None:
                    pos = inst.positions[account] = self._position_of(o)
            # the taker's position (PositionBook.fill, inline)
            pq = pos.quantity
            signed = q if buy else -q
            if not pq or (pq > ZERO) == (signed > ZERO):  # opens or adds
                pos.lots.append([signed, px])
                pq = pos.quantity = pq + signed
                cost = pos.cost = pos.cost + signed * px
            else:
                pos.reduce(side, q, px)
                pq, cost = pos.quantity, pos.cost
            mk = px if mark is None else mark
            if pq:
                out.append(Position(account, venue, symbol, now, pq, cost / pq, cost, pos.realised, pq * mk - cost, mk,
                                    eid))  # fmt: skip
            else:
                out.append(Position(account, venue, symbol, now, pq, None, cost, pos.realised, ZERO, mk, eid))
            if internal:
                # the maker's fill (_fill, inline)
                r_filled = r.filled = r.filled + q
                n = r.n_exec = r.n_exec + 1
                r_oid, r_qty = r.order_id, r.quantity
                r_side, r_account = r.side, r.account
                r_eid = r_oid + SUFFIX[n] if n < 256 else f"{r_oid}.{n}"  # exec_id, inline
                r_rem = r_qty - r_filled
                done = not r_rem  # r_filled == r_qty (see the taker's status)
                status = "filled" if done else ("partially_filled" if r_filled else "new")
                out.append(Execution(r_eid, "fill", r_oid, r_account, venue, symbol, status, now, r_side, r.order_type,  # type: ignore[arg-type]
                                     r_filled, r_rem, px, q, r.price, r.stop_price, r.tif, "book", oid, "", ""))  # type: ignore[arg-type]  # fmt: skip
                r_pos = r.position
                if r_pos is None:  # the maker's first fill: its book is the taker's when the account is
                    r_pos = pos if r_account == account else self._position_of(r)
                # the maker's position (PositionBook.fill, inline; its side is the taker's opposite)
                pq = r_pos.quantity
                signed = -q if buy else q
                if not pq or (pq > ZERO) == (signed > ZERO):  # opens or adds
                    r_pos.lots.append([signed, px])
                    pq = r_pos.quantity = pq + signed
                    cost = r_pos.cost = r_pos.cost + signed * px
                else:  # closes (a self-cross's usual case) or flips: the lot logic stays in PositionBook
                    r_pos.reduce(r_side, q, px)
                    pq, cost = r_pos.quantity, r_pos.cost
                if pq:
                    out.append(Position(r_account, venue, symbol, now, pq, cost / pq, cost, r_pos.realised,
                                        pq * mk - cost, mk, r_eid))  # fmt: skip
                else:
                    out.append(Position(r_account, venue, symbol, now, pq, None, cost, r_pos.realised, ZERO, mk, r_eid))
                if done:  # _close(r), inline: r is its level's head
                    self.open.pop(r_oid, None)
                    r.alive = False
                    live = level.live - 1
                    if live:
                        level.live = live
                        while orders and not orders[0].alive:
                            orders.popleft()
                    else:
                        del levels[tick]
                        if buy:
                            del prices[0]
                        else:
                            prices.pop()
        o.filled, o.n_exec = filled, n_exec

    def _fill(self, o: Order, q: Decimal, px: Decimal, liquidity: str, contra: str, mark: Decimal | None) -> None:
        """One fill of ``o``: its execution, then its account's position at ``mark`` (the instrument's
        ``Market.mark()``, which the caller computes once per matching loop; None: the fill price)."""
        filled = o.filled = o.filled + q
        n = o.n_exec = o.n_exec + 1
        qty = o.quantity
        oid, account, side = o.order_id, o.account, o.side
        venue, symbol = o.venue, o.symbol
        eid = oid + SUFFIX[n] if n < 256 else f"{oid}.{n}"  # exec_id, inline
        now = self.now
        out = self._out
        status = "filled" if filled == qty else ("partially_filled" if filled else "new")
        # positional, in Execution's field order (see messages.py); the same fields _emit would give
        e = Execution(eid, "fill", oid, account, venue, symbol, status, now, side, o.order_type, filled, qty - filled,  # type: ignore[arg-type]
                      px, q, o.price, o.stop_price, o.tif, liquidity, contra, "", "")  # type: ignore[arg-type]  # fmt: skip
        out.append(e)
        pos = o.position
        if pos is None:
            pos = self._position_of(o)
        out.append(pos.fill(side, q, px, account, venue, symbol, now, mark, eid))

    def _position_of(self, o: Order) -> PositionBook:
        """The position book of ``o``'s account in its instrument, at the order's first fill (kept on the order)."""
        key = (o.account, o.venue, o.symbol)
        positions = self.positions
        pos = positions.get(key)
        if pos is None:
            pos = positions[key] = PositionBook()
        o.position = pos
        return pos
