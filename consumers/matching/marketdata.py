"""Market data against paper orders: a venue's quote, ticker, book or status moves the touch (and clears it),
resting limits fill against the touch or a trade printing through them, and stops trigger
(:meth:`MarketData._market`).

:class:`MarketData` is a part of :class:`~consumers.matching.engine.MatchingEngine` (its base class): it calls the
engine's ``_fill`` (:class:`~consumers.matching.sweep.Sweep`), ``_close`` and ``_trigger``."""

from __future__ import annotations

from decimal import Decimal

from consumers.matching.book import ZERO, Side
from consumers.matching.instruments import Instrument
from pulse.models import BookDelta, BookSnapshot, Event, Quote, Status, Ticker, Trade

CLEARING_STATUS = frozenset({"gap", "disconnected", "stale", "resync", "market_closed"})


class MarketData:
    """The matching engine's market-data handling (a base class of
    :class:`~consumers.matching.engine.MatchingEngine`)."""

    def _market(self, inst: Instrument, ev: Event) -> None:
        m = inst.market
        t = type(ev)
        if t is Quote:
            if not ev.tradeable:  # type: ignore[union-attr]
                m.clear()
                return
            self._touch(inst, ev.bid, ev.bid_size, ev.ask, ev.ask_size)  # type: ignore[union-attr]
        elif t is Ticker:
            self._touch(inst, ev.bid, ev.bid_size, ev.ask, ev.ask_size)  # type: ignore[union-attr]
        elif t is BookSnapshot:
            b, a = ev.bids, ev.asks  # type: ignore[union-attr]
            self._touch(inst, b[0].price if b else None, b[0].size if b else None, a[0].price if a else None,
                        a[0].size if a else None)  # fmt: skip
        elif t is BookDelta:
            bb, ba = ev.best_bid, ev.best_ask  # type: ignore[union-attr]
            if bb is None and ba is None:
                return
            self._touch(inst, bb.price if bb else m.bid, bb.size if bb else m.bid_size, ba.price if ba else m.ask,
                        ba.size if ba else m.ask_size)  # fmt: skip
        elif t is Trade:
            self._trade(inst, ev)  # type: ignore[arg-type]
        elif t is Status and ev.kind in CLEARING_STATUS:  # type: ignore[union-attr]
            m.clear()

    def _touch(
        self,
        inst: Instrument,
        bid: Decimal | None,
        bid_size: Decimal | None,
        ask: Decimal | None,
        ask_size: Decimal | None,
    ) -> None:
        m = inst.market
        if bid != m.bid or bid_size != m.bid_size:
            m.bid, m.bid_size = bid, bid_size
            m.bid_avail = bid_size if (bid is not None and bid_size is not None and bid_size > 0) else ZERO
        if ask != m.ask or ask_size != m.ask_size:
            m.ask, m.ask_size = ask, ask_size
            m.ask_avail = ask_size if (ask is not None and ask_size is not None and ask_size > 0) else ZERO
        book = inst.book
        if m.ask is not None:
            if m.ask_avail > 0:
                self._rest_vs_touch(inst, book.bids, True)
            if book.buy_stops.entries:
                for o in book.buy_stops.due(m.ask):
                    self._trigger(inst, o)
        if m.bid is not None:
            if m.bid_avail > 0:
                self._rest_vs_touch(inst, book.asks, False)
            if book.sell_stops.entries:
                for o in book.sell_stops.due(m.bid):
                    self._trigger(inst, o)

    def _rest_vs_touch(self, inst: Instrument, side: Side, buys: bool) -> None:
        m = inst.market
        while True:
            level = side.best()
            if level is None:
                return
            best = level.price
            if buys:
                px = m.ask
                if best < px or m.ask_avail <= 0:  # type: ignore[operator]
                    return
                r = side.head(level)
                q = min(r.quantity - r.filled, m.ask_avail)
                m.ask_avail -= q
            else:
                px = m.bid
                if best > px or m.bid_avail <= 0:  # type: ignore[operator]
                    return
                r = side.head(level)
                q = min(r.quantity - r.filled, m.bid_avail)
                m.bid_avail -= q
            self._fill(r, q, px, "quote", "", m.mark())  # type: ignore[arg-type]
            if r.filled == r.quantity:
                self._close(r)

    def _trade(self, inst: Instrument, tr: Trade) -> None:
        m = inst.market
        m.last = tp = tr.price
        left = tr.size
        book = inst.book
        for side, buys in ((book.bids, True), (book.asks, False)):
            while left > 0:
                level = side.best()
                if level is None:
                    break
                best = level.price
                if best <= tp if buys else best >= tp:
                    break
                r = side.head(level)
                q = min(r.quantity - r.filled, left)
                left -= q
                self._fill(r, q, best, "trade", "", m.mark())
                if r.filled == r.quantity:
                    self._close(r)
        if book.buy_stops.entries:
            for o in book.buy_stops.due(tp):
                self._trigger(inst, o)
        if book.sell_stops.entries:
            for o in book.sell_stops.due(tp):
                self._trigger(inst, o)
