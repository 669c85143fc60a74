"""The matching engine: a pure, deterministic state machine (no I/O, no wall clock, no random ids).

``on_order(command)`` and ``on_market(event)`` return the :class:`Execution` and :class:`Position` events the
input causes; ``snapshot()`` / ``restore()`` serialise the whole state. The same input sequence always yields
the same outputs, byte for byte: time comes from the inputs (the engine's clock is the largest ``ts`` /
``ts_event`` seen), time priority is a sequence number, execution ids are ``{order_id}.{n}``.

Matching rules (the README repeats them for users):

- **Validation**: unknown instrument, non-positive or non-finite quantity/price, quantity or price not a
  multiple of the instrument's increment, a price on a market/stop order or none on a limit/stop-limit, a stop
  price missing or present where it does not belong, a market order that is not IOC/FOK, a stop order that is
  not GTC/DAY, a reused order id: each is rejected with a reason (kind ``rejected``).
- **Liquidity**: an incoming (taker) order takes, best price first, from the paper book's opposite side and from
  the venue's touch (best bid/ask of the latest Quote, Ticker, BookSnapshot or BookDelta top). At one price the
  paper book goes first. A paper-vs-paper cross fills at the resting order's price; a fill from the touch at the
  touch price. Never beyond the limit.
- **Touch consumption**: a side's displayed size is available once. Fills consume it, and it is replenished only
  when the venue shows a *different* price or size on that side (Kraken publishes one update as Ticker, Quote and
  BookDelta: the same top three times must not be used three times). A non-tradeable quote or a ``gap``,
  ``disconnected``, ``stale``, ``resync`` or ``market_closed`` marker clears the touch until the next quote.
- **Resting orders vs market data**: after a touch update, resting buys priced at or above the ask fill at the
  ask (best price, then time priority) up to the available ask size; sells symmetrically. A venue trade fills
  resting buys priced strictly above it (sells strictly below) at their own limit price, up to the trade's size
  (a trade *at* the limit does not fill: our place in the venue's queue is unknown).
- **Stops**: a buy stop triggers when a trade prints at or above its stop price or the ask reaches it (sell: a
  trade at or below, or the bid); also at submission if the market is already there. It then becomes a market
  (stop) or limit (stop-limit) order with a new time priority and is matched at once; a stop's unfilled
  remainder is cancelled (no liquidity), a stop-limit's rests. Per market event: resting limits fill first,
  then stops trigger.
- **Time in force**: GTC rests; IOC cancels what did not fill at once; FOK fills completely at once or is
  rejected (nothing fills); DAY rests until the end of the UTC day of its acceptance (the engine's clock, i.e.
  the first input with a time at or after the next 00:00 UTC expires it, with that midnight as its time).
  Market orders are IOC or FOK; stop orders GTC or DAY.
- **Cancel / replace**: only the owner (same account) can change an open order. A replace keeps the time
  priority when the price is unchanged and the quantity does not grow; otherwise the order goes to the back of
  its price level (new sequence number) and a new price is matched like an incoming order. The new quantity is
  the total and must exceed the filled quantity.
- **Idempotency**: a command whose ``request_id`` was already processed is ignored (a redelivery).

Performance notes (``bench/matching.py``; behaviour is locked by ``tests/unit/test_matching_golden.py``, whose
digests were recorded with the original all-Decimal engine): book levels are keyed by integer price ticks
(``book.tick_unit``: hashing a fresh Decimal costs ~1 µs, converting it to ticks a third of that); fills and
reports keep the orders' own Decimals, so outputs are unchanged. Executions and positions are msgspec structs
built positionally (~8x faster than by keyword), the frequent ones (accepted, fill, cancelled) inline; orders
are msgspec structs (C constructor), built once accepted with their final fields (a msgspec attribute store
costs ~2x a slot's). In pure Python the costs that dominate are calls (a Python call ~500 instructions), tuples
built and hashed, and Decimal operations (~300 instructions each), so the hot paths avoid them:

- ``on_order`` handles new orders and cancels itself (no ``_new``/``_cancel`` calls; a cancel takes the order out
  of its book through ``_close``, the one place that does it); a plain limit order's
  quantity and price checks are memoised by the numbers' ``str`` (``Instrument.quantities``, ``Book.ticks``: a str
  and a dict lookup cost less than the Decimal checks, and the price's memo gives its ticks, so the cross test
  and the resting are int work); its instrument is the last new order's when the names match.
- ``_take`` (a sweep) builds the taker's and the maker's executions and positions itself, with the taker's
  fields in locals, the positions' open-or-add path inline (closing lots calls ``PositionBook.reduce``, the one
  place with the FIFO PnL logic), the limit compared in ticks,
  the mark computed once and the taker's position book found by account in a per-instrument cache.
- No tuple assignments of four or more names (they build and unpack a tuple), no ``(venue, symbol)`` keys built.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable
from decimal import Decimal

import msgspec

from consumers.matching.book import ZERO, Book, Level, Order, tick_unit, to_ticks
from consumers.matching.instruments import Instrument, InstrumentSpec, Market
from consumers.matching.marketdata import MarketData
from consumers.matching.messages import (
    CancelOrder,
    Command,
    Execution,
    NewOrder,
    Output,
    ReplaceOrder,
)
from consumers.matching.positions import PositionBook
from consumers.matching.sweep import SUFFIX, Sweep, exec_id
from consumers.matching.validation import bad_number, invalid_order, valid_price, valid_quantity
from pulse.models import Event, QuoteBatch

__all__ = ["DAY_NS", "SNAPSHOT_VERSION", "InstrumentSpec", "Market", "MatchingEngine"]

DAY_NS = 86_400 * 1_000_000_000
SNAPSHOT_VERSION = 1


class MatchingEngine(Sweep, MarketData):
    """Paper orders for a set of instruments, matched against each other and the venues' market data.

    The sweep and fills are :class:`~consumers.matching.sweep.Sweep`'s, market-data handling
    :class:`~consumers.matching.marketdata.MarketData`'s, order validation :mod:`consumers.matching.validation`'s."""

    def __init__(self, instruments: Iterable[InstrumentSpec]) -> None:
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self._venues: dict[str, dict[str, Instrument]] = {}  # the same, venue → symbol → Instrument (no tuple)
        for spec in instruments:
            inst = self.instruments[spec.key] = Instrument(spec)
            self._venues.setdefault(spec.venue, {})[spec.symbol] = inst
        self._last: Instrument | None = None  # the instrument of the last new order
        self.open: dict[str, Order] = {}  # open orders (resting, or stops waiting) by order id
        self.order_requests: dict[str, str] = {}  # every order id ever used → its request id
        self.requests: set[str] = set()  # every request id processed (redeliveries are ignored)
        self.positions: dict[tuple[str, str, str], PositionBook] = {}
        self.now = 0
        self.seq = 0
        self._day: list[tuple[int, int, str]] = []  # (expire_at, seq, order_id) heap of DAY orders
        self._out: list[Output] = []

    # -- inputs --------------------------------------------------------------------------------------
    def on_order(self, cmd: Command) -> list[Output]:
        """Apply one command; returns its executions (and positions after fills)."""
        requests = self.requests
        rid = cmd.request_id
        if rid in requests:
            return []
        requests.add(rid)
        out: list[Output] = []
        self._out = out
        ts, now = cmd.ts, self.now
        if ts > now:
            self.now = now = ts
        day = self._day
        if day and day[0][0] <= now:
            self._advance(ts)
        t = type(cmd)
        if t is not NewOrder:
            if t is CancelOrder:  # (here rather than in a method of its own: no call)
                o = self.open.get(cmd.order_id)  # _owned, inline
                if o is None or o.account != cmd.account:
                    self._refuse(cmd, o)
                    return out
                oid = o.order_id
                self._close(o)
                # the "cancelled" execution, inline (see _emit)
                n = o.n_exec = o.n_exec + 1
                filled, qty = o.filled, o.quantity
                eid = oid + SUFFIX[n] if n < 256 else f"{oid}.{n}"  # exec_id, inline
                e = Execution(eid, "cancelled", oid, o.account, o.venue, o.symbol, "cancelled", now, o.side,  # type: ignore[arg-type]
                              o.order_type, filled, qty - filled, None, None, o.price, o.stop_price, o.tif, "", "",  # type: ignore[arg-type]
                              "cancelled by request", cmd.request_id)  # fmt: skip
                out.append(e)
            elif t is ReplaceOrder:
                self._replace(cmd)  # type: ignore[arg-type]
            else:  # pragma: no cover - the decoder only yields the three
                raise TypeError(f"not a command: {type(cmd).__name__}")
            return out
        # a new order (the most frequent command), here rather than in a method of its own: no call
        oid = cmd.order_id or rid
        order_requests = self.order_requests
        if oid in order_requests:
            self._reject_request(cmd, oid, f"duplicate order id {oid!r}")
            return out
        order_requests[oid] = rid
        seq = self.seq = self.seq + 1
        # (groups of at most three names: a longer tuple assignment builds and unpacks a tuple)
        tif, qty, price = cmd.tif, cmd.quantity, cmd.price
        side, otype, stop = cmd.side, cmd.order_type, cmd.stop_price
        venue, symbol, account = cmd.venue, cmd.symbol, cmd.account
        # self.instruments.get((venue, symbol)): the last instrument ordered, if these are its names (comparing two
        # short strings costs less than hashing them afresh), else through venue → symbol → Instrument (no tuple key)
        inst = self._last
        if inst is None or symbol != inst.symbol or venue != inst.venue:
            symbols = self._venues.get(venue)
            inst = symbols.get(symbol) if symbols is not None else None
            if inst is not None:
                self._last = inst
        # fast path for the common case (a plain limit order): the checks of _invalid, in its order, with the
        # quantity's and the price's memoised by their str (a str and a dict lookup cost less than the Decimal
        # checks, and the price's gives its ticks too); _invalid gives the reason whenever one of them fails
        tick = None
        if otype == "limit" and inst is not None and account and price is not None and stop is None:
            key = str(qty)
            remaining = inst.quantities.get(key)
            if remaining is None:
                remaining = valid_quantity(inst, qty, key)
            if remaining is not None:
                key = str(price)
                tick = inst.book.ticks.get(key)
                if tick is None:
                    tick = valid_price(inst, price, key)
        if tick is None or tif == "FOK":  # not a valid plain limit order, or fill-or-kill: the other checks
            reason = invalid_order(cmd, inst) if tick is None else None
            if reason is None and tif == "FOK":
                avail = self._fillable(inst, side, otype, price)  # type: ignore[arg-type]
                if avail < qty:
                    reason = f"FOK cannot fill {qty} in full (fillable now: {avail})"
            if reason is not None:
                o = Order(oid, rid, account, venue, symbol, side, otype, qty, price, stop, tif, now, seq, 0, ZERO, 0,
                          False)  # fmt: skip
                self._emit(o, "rejected", reason=reason, request_id=rid)
                return out
            if tick is None:  # valid, not from the memo (not a limit order)
                remaining = qty - ZERO
        # (no asserts on this path: from here inst is not None, and a limit order has its ticks and remaining)
        # the order, built once accepted with what acceptance sets (positionally, in Order's field order): its expiry
        # (DAY), one execution (the "accepted" below) and, for a limit order, its ticks (used if it rests: a
        # valid limit order took the fast path)
        expire_at = (now // DAY_NS + 1) * DAY_NS if tif == "DAY" else 0
        o = Order(oid, rid, account, venue, symbol, side, otype, qty, price, stop, tif, now, seq, expire_at, ZERO, 1,
                  True, False, tick)  # fmt: skip
        # the "accepted" execution, inline (see _emit): nothing has filled, so status "new"
        e = Execution(oid + ".1", "accepted", oid, account, venue, symbol, "new", now, side, otype, ZERO, remaining,  # type: ignore[arg-type]
                      None, None, price, stop, tif, "", "", "", rid)  # type: ignore[arg-type]  # fmt: skip
        out.append(e)
        if otype == "limit":
            book, m = inst.book, inst.market  # type: ignore[union-attr]
            # does it cross the paper book's best opposite price (compared in ticks, as exact as the Decimals) or
            # the unconsumed touch? (touch: None first, the cheap test)
            if side == "buy":
                own, prices = book.bids, book.asks.prices
                crosses = (prices and prices[0] <= tick) or (
                    m.ask is not None and m.ask_avail > ZERO and m.ask <= price
                )
            else:
                own, prices = book.asks, book.bids.prices
                crosses = (prices and prices[-1] >= tick) or (
                    m.bid is not None and m.bid_avail > ZERO and m.bid >= price
                )
            if crosses:
                self._take(inst, o)
                if o.filled == o.quantity:  # _finish's first case, inline: it filled completely
                    self.open.pop(oid, None)
                    o.alive = False
                else:
                    self._finish(inst, o)
            elif tif == "IOC":
                self._finish(inst, o)  # cancels it
            else:  # rests untouched (what _finish does for a limit order that took nothing): own.add(o), inline
                levels = own.levels
                level = levels.get(tick)
                if level is None:
                    level = levels[tick] = Level(price)
                    insort(own.prices, tick)
                level.orders.append(o)
                level.live += 1
                self.open[oid] = o
                if tif == "DAY":
                    heapq.heappush(self._day, (expire_at, seq, oid))
        elif otype == "market":
            self._take(inst, o)
            self._finish(inst, o)
        else:
            self.open[oid] = o
            if o.tif == "DAY":
                heapq.heappush(self._day, (o.expire_at, o.seq, oid))
            self._arm_stop(inst, o)
        return out

    def on_market(self, event: Event) -> list[Output]:
        """Apply one market-data event of a known instrument (others are ignored)."""
        inst = self.instruments.get((event.venue, event.symbol))
        if inst is None:
            return []
        out: list[Output] = []
        self._out = out
        if type(event) is QuoteBatch:
            for q in event.quotes():
                self._advance(q.ts_event)
                self._market(inst, q)
        else:
            self._advance(event.ts_event)
            self._market(inst, event)
        return out

    def advance(self, ts: int) -> list[Output]:
        """Move the clock to ``ts`` (expiring DAY orders) without other input."""
        out: list[Output] = []
        self._out = out
        self._advance(ts)
        return out

    # -- clock ---------------------------------------------------------------------------------------
    def _advance(self, ts: int) -> None:
        if ts > self.now:
            self.now = ts
        day = self._day
        while day and day[0][0] <= self.now:
            exp, _seq, oid = heapq.heappop(day)
            o = self.open.get(oid)
            if o is not None and o.expire_at == exp:
                self._close(o)
                self._emit(o, "expired", ts=exp, reason="end of the UTC day (DAY order)")

    # -- commands ------------------------------------------------------------------------------------
    def _replace(self, cmd: ReplaceOrder) -> None:
        o = self._owned(cmd)
        if o is None:
            return
        inst = self.instruments[(o.venue, o.symbol)]
        spec = inst.spec
        waiting_stop = o.order_type in ("stop", "stop_limit") and not o.triggered
        reason = None
        qty = o.quantity if cmd.quantity is None else cmd.quantity
        price = o.price if cmd.price is None else cmd.price
        stop = o.stop_price if cmd.stop_price is None else cmd.stop_price
        if cmd.quantity is not None:
            reason = bad_number("quantity", qty, spec.size_increment)
            if reason is None and qty <= o.filled:
                reason = f"new quantity {qty} does not exceed the filled {o.filled}"
        if reason is None and cmd.price is not None:
            if o.price is None:
                reason = f"a {o.order_type} order takes no price"
            else:
                reason = bad_number("price", price, spec.price_increment)  # type: ignore[arg-type]
        if reason is None and cmd.stop_price is not None:
            if not waiting_stop:
                reason = "only a stop order that has not triggered can change its stop price"
            else:
                reason = bad_number("stop price", stop, spec.price_increment)  # type: ignore[arg-type]
        if reason is None and (qty, price, stop) == (o.quantity, o.price, o.stop_price):
            reason = "the replace changes nothing"
        if reason is not None:
            self._emit(o, "rejected", reason=f"replace refused: {reason}", request_id=cmd.request_id, status_of=o)
            return
        keeps = price == o.price and stop == o.stop_price and qty <= o.quantity
        if keeps:  # same place in the queue: change the quantity in place
            o.quantity = qty
            self._emit(o, "replaced", request_id=cmd.request_id)
            return
        # loses priority: a fresh order object (the old one may still sit in a deque, dead) with a new seq
        self._close(o)
        self.seq += 1
        n = Order(o.order_id, o.request_id, o.account, o.venue, o.symbol, o.side, o.order_type, qty, price, stop,
                  o.tif, self.now, self.seq, o.expire_at)  # fmt: skip
        n.filled, n.n_exec, n.triggered = o.filled, o.n_exec, o.triggered
        self._emit(n, "replaced", request_id=cmd.request_id)
        if waiting_stop:
            self.open[n.order_id] = n
            self._arm_stop(inst, n)
        else:
            self._take(inst, n)
            self._finish(inst, n)

    def _arm_stop(self, inst: Instrument, o: Order) -> None:
        """A stop order not yet triggered (new, or replaced while waiting): it triggers at once if the market is
        already at its stop price (buy: the ask, else the last trade, at or above it; sell: the bid or last at or
        below), otherwise it waits in its side's stop queue."""
        m = inst.market
        buy = o.side == "buy"
        ref = (m.ask if buy else m.bid) or m.last
        if ref is not None and (ref >= o.stop_price if buy else ref <= o.stop_price):  # type: ignore[operator]
            self._trigger(inst, o)
        else:
            (inst.book.buy_stops if buy else inst.book.sell_stops).add(o)

    def _owned(self, cmd: CancelOrder | ReplaceOrder) -> Order | None:
        o = self.open.get(cmd.order_id)
        if o is not None and o.account == cmd.account:
            return o
        self._refuse(cmd, o)
        return None

    def _refuse(self, cmd: CancelOrder | ReplaceOrder, o: Order | None) -> None:
        """Reject a cancel/replace of an order this account cannot change (``o``: the open order of that id)."""
        if o is not None:
            reason = f"order {cmd.order_id!r} belongs to another account"
        elif cmd.order_id in self.order_requests:
            reason = f"order {cmd.order_id!r} is no longer open"
        else:
            reason = f"unknown order {cmd.order_id!r}"
        self._reject_request(cmd, cmd.order_id, reason)

    def _reject_request(self, cmd: Command, order_id: str, reason: str) -> None:
        """A reject that concerns no order of this account: its id derives from the request."""
        rid = cmd.request_id
        e = Execution(f"req.{rid}", "rejected", order_id, cmd.account, cmd.venue, cmd.symbol, "rejected", self.now,
                      None, None, ZERO, ZERO, None, None, None, None, "GTC", "", "", reason, rid)  # fmt: skip
        self._out.append(e)

    # -- after matching--------------------------------------------------------------------------------
    def _finish(self, inst: Instrument, o: Order) -> None:
        """After taking: rest the remainder (limit GTC/DAY) or cancel it (market, IOC, triggered stop)."""
        if o.filled == o.quantity:
            self.open.pop(o.order_id, None)
            o.alive = False
            return
        tif = o.tif
        if tif == "IOC" or o.order_type in ("market", "stop"):
            self.open.pop(o.order_id, None)
            o.alive = False
            why = "IOC remainder" if tif == "IOC" else "no more liquidity for a market order"
            self._emit(o, "cancelled", reason=why)
            return
        o.alive = True
        book = inst.book
        (book.bids if o.side == "buy" else book.asks).add(o)
        self.open[o.order_id] = o
        if tif == "DAY" and o.expire_at:
            heapq.heappush(self._day, (o.expire_at, o.seq, o.order_id))

    def _trigger(self, inst: Instrument, o: Order) -> None:
        o.triggered = True
        self.seq += 1
        o.seq = self.seq  # time priority from the trigger on
        self._emit(o, "triggered", reason=f"stop {o.stop_price} reached")
        self._take(inst, o)
        self._finish(inst, o)

    def _close(self, o: Order) -> None:
        """Take an open order out of wherever it waits (book level or stop queue)."""
        self.open.pop(o.order_id, None)
        if not o.alive:
            return
        inst = self._last  # the last new order's instrument, if it is this one's (see on_order)
        if inst is None or o.symbol != inst.symbol or o.venue != inst.venue:
            inst = self.instruments[(o.venue, o.symbol)]
        otype = o.order_type
        o.alive = False
        if (otype == "stop" or otype == "stop_limit") and not o.triggered:  # a waiting stop
            (inst.book.buy_stops if o.side == "buy" else inst.book.sell_stops).discard_dead()
        elif otype != "market":
            book = inst.book
            side = book.bids if o.side == "buy" else book.asks
            if o.tick in side.levels:  # side.holds(o), inline: it rests there
                side.remove(o)

    def _emit(
        self,
        o: Order,
        kind: str,
        *,
        ts: int | None = None,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
        liquidity: str = "",
        contra: str = "",
        reason: str = "",
        request_id: str = "",
        status_of: Order | None = None,
    ) -> Execution:
        """One execution of ``o`` (its totals as they stand). The hot kinds (accepted, fill) are built inline in
        ``_new`` / ``_fill`` with the same fields."""
        n = o.n_exec = o.n_exec + 1
        filled = o.filled
        qty = o.quantity
        if kind == "cancelled" or kind == "expired":
            status = kind
        elif kind == "rejected" and status_of is None:
            status = "rejected"
        elif filled == qty:
            status = "filled"
        elif filled:
            status = "partially_filled"
        else:
            status = "new"
        e = Execution(
            exec_id(o.order_id, n), kind, o.order_id, o.account, o.venue, o.symbol, status,  # type: ignore[arg-type]
            self.now if ts is None else ts, o.side, o.order_type, filled, qty - filled, price, quantity,  # type: ignore[arg-type]
            o.price, o.stop_price, o.tif, liquidity, contra, reason, request_id,  # type: ignore[arg-type]
        )  # fmt: skip
        self._out.append(e)
        return e

    # -- queries -------------------------------------------------------------------------------------
    def open_orders(self) -> list[Order]:
        return sorted(self.open.values(), key=lambda o: o.seq)

    def position(self, account: str, venue: str, symbol: str) -> PositionBook | None:
        return self.positions.get((account, venue, symbol))

    def mark(self, venue: str, symbol: str) -> Decimal | None:
        inst = self.instruments.get((venue, symbol))
        return inst.market.mark() if inst else None

    # -- snapshot ------------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The whole state as MessagePack (decimals as strings); equal states give equal bytes."""
        doc = {
            "v": SNAPSHOT_VERSION,
            "now": self.now,
            "seq": self.seq,
            "requests": sorted(self.requests),
            "order_requests": sorted(self.order_requests.items()),
            "open": [o.as_tuple() for o in self.open_orders()],
            "markets": sorted([k[0], k[1], i.market.state()] for k, i in self.instruments.items()),
            "positions": sorted([k[0], k[1], k[2], p.state()] for k, p in self.positions.items()),
        }
        return _snap_enc.encode(doc)

    @classmethod
    def restore(cls, data: bytes, instruments: Iterable[InstrumentSpec]) -> MatchingEngine:
        """An engine in the state ``data`` describes, for ``instruments`` (open orders of an instrument no longer
        listed are kept, dormant, and reappear when it is listed again)."""
        doc = msgspec.msgpack.decode(data)
        if doc.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported matching snapshot version {doc.get('v')!r}")
        eng = cls(instruments)
        eng.now, eng.seq = doc["now"], doc["seq"]
        eng.requests = set(doc["requests"])
        eng.order_requests = {k: v for k, v in doc["order_requests"]}
        for venue, symbol, st in doc["markets"]:
            inst = eng.instruments.get((venue, symbol))
            if inst is not None:
                inst.market = Market.from_state(st)
        for acct, venue, symbol, st in doc["positions"]:
            eng.positions[(acct, venue, symbol)] = PositionBook.from_state(st)
        orders = [Order.from_tuple(t) for t in doc["open"]]
        for inst in eng.instruments.values():  # ticks fine enough for the restored prices (see tick_unit)
            resting = [o.price for o in orders if (o.venue, o.symbol) == inst.spec.key and o.price is not None]
            unit = tick_unit(inst.spec.price_increment, resting)
            if unit != tick_unit(inst.spec.price_increment):
                inst.book = Book(unit)
        for o in orders:
            eng.open[o.order_id] = o
            inst = eng.instruments.get((o.venue, o.symbol))
            if inst is None:
                continue
            if o.order_type in ("stop", "stop_limit") and not o.triggered:
                (inst.book.buy_stops if o.side == "buy" else inst.book.sell_stops).add(o)
            else:
                side = inst.book.side(o.side)
                o.tick = to_ticks(o.price, side.scale)  # type: ignore[arg-type]
                side.add(o)
            if o.tif == "DAY" and o.expire_at:
                heapq.heappush(eng._day, (o.expire_at, o.seq, o.order_id))
        return eng


_snap_enc = msgspec.msgpack.Encoder(decimal_format="string")
