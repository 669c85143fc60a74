"""Pure, stateful parser for Coinbase Advanced Trade market-data messages: raw text in, Pulse events out.

:class:`CoinbaseParser` owns no I/O. ``feed(frame)`` decodes the envelope, checks its ``sequence_num`` and routes the
``events`` by channel to their typed decoders; it returns a :class:`Parsed` with ready-to-publish events (``seq``
assigned) and what the service must act on (a sequence gap, a subscriptions answer, an error message).

Mapping
    ``l2_data`` (subscribed as ``level2``) → a ``snapshot`` event loads the product's book and becomes a
                    :class:`~pulse.models.BookSnapshot` (``depth`` levels per side, best first); each ``update``
                    event is applied and becomes a :class:`~pulse.models.BookDelta` (its levels as sent, ``offer`` →
                    asks, size 0 removes; the top of book after it; ``ts_event`` = its latest ``event_time``).
    ``market_trades`` → :class:`~pulse.models.Trade` per trade, in time order (Coinbase's ``side`` is the
                    maker's, so the aggressor ``side`` is the other one: BUY → sell, SELL → buy; ``trade_id``
                    Coinbase's). A trade id seen recently is dropped (``duplicates``): the snapshot a
                    resubscription or a reconnect brings repeats trades already published.
    ``ticker``      → :class:`~pulse.models.Ticker` (24 h volume, low, high, change %, best bid/ask) and a
                    :class:`~pulse.models.Quote` (best bid/ask) per product, stamped with the envelope's timestamp.
    ``heartbeats``  → nothing published; the message keeps the watchdog fed and the sequence moving.
    ``subscriptions`` → ``Parsed.subscriptions`` (channel → product ids now subscribed).
    ``{"type": "error", "message"}`` → ``Parsed.error``.
    Any other channel is ignored, as Coinbase asks of clients (``ignored`` counts them).

Sequence: ``sequence_num`` grows by one for every message of a connection. A jump is a gap (``Parsed.gap`` =
(expected, received)): messages of any channel and product may be lost, so the service marks a ``gap`` and
resubscribes for fresh snapshots; each book is invalidated (:meth:`CoinbaseParser.invalidate_books`) and ignores
updates until its new snapshot. A number below the expected one is a message already seen: dropped
(``out_of_order``). :meth:`CoinbaseParser.new_connection` starts the count over.

Pulse sequence numbers are per (symbol, topic channel), start at 1 and keep increasing for the parser's life.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import starmap

import msgspec

from ingesters.base.parsing import SymbolParser
from ingesters.coinbase.book import OrderBook
from ingesters.coinbase.schemas import (
    L2Event,
    TickerItem,
    envelope_decoder,
    heartbeat_decoder,
    l2_decoder,
    parse_time,
    subscriptions_decoder,
    ticker_decoder,
    trades_decoder,
)
from ingesters.coinbase.symbols import resolve
from pulse.errors import PulseError
from pulse.models import BookDelta, BookSnapshot, Event, Level, Quote, Side, Ticker, Trade

_ZERO = Decimal(0)
_MAX = Decimal("1e30")  # sanity bound; comparisons also reject NaN
RECENT_TRADES = 5000  # trade ids remembered per product, to drop the ones a snapshot repeats


@dataclass(slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)
    channel: str = ""
    gap: tuple[int, int] | None = None  # (expected sequence_num, received): messages were lost
    subscriptions: dict[str, list[str]] | None = None
    error: str | None = None  # Coinbase's error message
    snapshots: list[str] = field(default_factory=list)  # books (canonical symbols) a snapshot just loaded


class CoinbaseMessageError(PulseError):
    """A Coinbase message is malformed: bad JSON, a missing or invalid field, an unknown product. ``parsed`` keeps
    what was learnt before the fault (a sequence gap the message revealed)."""

    def __init__(self, message: str, parsed: Parsed | None = None) -> None:
        super().__init__(message)
        self.parsed = parsed or Parsed()


def aggressor(maker_side: str) -> Side:
    """Coinbase's trade ``side`` is the maker's (the resting order): the aggressor is the other one."""
    return "sell" if maker_side == "BUY" else "buy"


def _preview(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else bytes(frame[:200]).decode("utf-8", "replace")
    return text[:200]


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, msgspec.MsgspecError) else f"{type(exc).__name__}: {exc}"


def _symbol_of(name: str) -> str:
    return resolve(name).symbol


class CoinbaseParser(SymbolParser):
    """Turns Coinbase messages into Pulse events; one instance per ingester (its state outlives connections)."""

    message_error = CoinbaseMessageError
    _resolve = staticmethod(_symbol_of)

    def __init__(self, *, venue: str = "coinbase", clock: Callable[[], int] = time.time_ns, depth: int = 1000):
        self.venue = venue
        self.depth = depth  # levels per side a BookSnapshot event carries
        self._clock = clock
        self._seq: dict[tuple[str, str], int] = {}
        self._symbols: dict[str, str] = {}  # product id → canonical
        self._expected: int | None = None  # the next sequence_num of this connection
        self._recent: dict[str, tuple[set[str], deque[str]]] = {}  # symbol → recent trade ids
        self.books: dict[str, OrderBook] = {}  # canonical symbol → book, for symbols with the book channel
        self.duplicates = 0
        self.out_of_order = 0
        self.gaps = 0
        self.ignored = 0
        self.heartbeats = 0
        self._routes: dict[str, Callable[[msgspec.Raw, str, Parsed, int], None]] = {
            "l2_data": self._on_l2,
            "market_trades": self._on_trades,
            "ticker": self._on_ticker,
            "heartbeats": self._on_heartbeat,
            "subscriptions": self._on_subscriptions,
        }

    # ------------------------------------------------------------------------------------------ public

    def track_book(self, symbol: str) -> None:
        """Keep ``symbol``'s book (its level2 events are ignored until then)."""
        self.books.setdefault(symbol, OrderBook())

    def drop_book(self, symbol: str) -> None:
        self.books.pop(symbol, None)

    def book(self, symbol: str) -> OrderBook | None:
        return self.books.get(symbol)

    def new_connection(self) -> None:
        """A new connection: its sequence starts over and every book waits for the snapshot it will bring."""
        self._expected = None
        self.invalidate_books()

    def invalidate_books(self, symbols: list[str] | None = None) -> None:
        for sym, book in self.books.items():
            if symbols is None or sym in symbols:
                book.invalidate()

    def feed(self, frame: str | bytes) -> Parsed:
        """Parse one message. Raises :class:`CoinbaseMessageError` (and nothing else) if it is malformed."""
        ts_recv = self._clock()
        out = Parsed()
        try:
            env = envelope_decoder.decode(frame)
        except Exception as exc:  # bad JSON, wrong types, invalid UTF-8, nesting too deep
            raise CoinbaseMessageError(f"malformed Coinbase message ({_reason(exc)}): {_preview(frame)}") from exc
        if env.channel is None:
            if env.type == "error":
                out.error = env.message or "(no message)"
                return out
            raise CoinbaseMessageError(f"message has neither a channel nor an error type: {_preview(frame)}")
        out.channel = env.channel
        if env.sequence_num is not None and not self._in_sequence(env.sequence_num, out):
            return out
        route = self._routes.get(env.channel)
        if route is None:
            self.ignored += 1
            return out
        try:
            if not env.events:
                raise CoinbaseMessageError("message has no events")
            route(env.events, env.timestamp, out, ts_recv)
        except CoinbaseMessageError as exc:
            raise CoinbaseMessageError(f"{exc}: {_preview(frame)}", out) from exc
        except Exception as exc:
            raise CoinbaseMessageError(f"malformed {env.channel} message ({_reason(exc)}): {_preview(frame)}",
                                       out) from exc  # fmt: skip
        return out

    # ---------------------------------------------------------------------------------------- helpers

    def _in_sequence(self, n: int, out: Parsed) -> bool:
        expected = self._expected
        if expected is None or n == expected:
            self._expected = n + 1
            return True
        if n > expected:
            self.gaps += 1
            out.gap = (expected, n)
            self._expected = n + 1
            return True
        self.out_of_order += 1  # seen already (or older than what we have): dropped
        return False

    # --------------------------------------------------------------------------------------- channels

    def _on_l2(self, raw: msgspec.Raw, stamp: str, out: Parsed, ts_recv: int) -> None:
        events: list[L2Event] = l2_decoder.decode(raw)
        prepared = []
        for ev in events:  # everything is checked before any book changes
            sym = self._canonical(ev.product_id)
            bids, asks, latest, seen = [], [], 0, ""
            for u in ev.updates:
                if not (_ZERO < u.price_level < _MAX and _ZERO <= u.new_quantity < _MAX):
                    raise CoinbaseMessageError(f"invalid level price={u.price_level} qty={u.new_quantity}")
                (bids if u.side == "bid" else asks).append((u.price_level, u.new_quantity))
                if u.event_time != seen:  # the updates of one event mostly share their time
                    seen = u.event_time
                    latest = max(latest, parse_time(seen))
            prepared.append((ev.type, sym, bids, asks, latest))
        stamp_ns = parse_time(stamp) if stamp else ts_recv  # checked even when the events carry their own times
        for kind, sym, bids, asks, latest in prepared:
            book = self.books.get(sym)
            if book is None:
                continue  # not (or no longer) keeping this book
            if kind == "snapshot":
                book.load(bids, asks)
                out.snapshots.append(sym)
                sb, sa = book.levels(self.depth)
                out.events.append(
                    BookSnapshot(venue=self.venue, symbol=sym, ts_event=stamp_ns, ts_recv=ts_recv,
                                 seq=self._next_seq(sym, "book"), depth=self.depth,
                                 bids=tuple(starmap(Level, sb)), asks=tuple(starmap(Level, sa)))
                )  # fmt: skip
                continue
            if not book.synced:
                self.duplicates += 1  # after a break: updates wait for the fresh snapshot
                continue
            book.apply(bids, asks)
            bb, ba = book.best_bid(), book.best_ask()
            out.events.append(
                BookDelta(venue=self.venue, symbol=sym, ts_event=latest or stamp_ns, ts_recv=ts_recv,
                          seq=self._next_seq(sym, "book"), bids=tuple(starmap(Level, bids)),
                          asks=tuple(starmap(Level, asks)), best_bid=Level(*bb) if bb else None,
                          best_ask=Level(*ba) if ba else None)
            )  # fmt: skip

    def _seen(self, sym: str, trade_id: str) -> bool:
        ids, order = self._recent.setdefault(sym, (set(), deque()))
        if trade_id in ids:
            return True
        ids.add(trade_id)
        order.append(trade_id)
        if len(order) > RECENT_TRADES:
            ids.discard(order.popleft())
        return False

    def _on_trades(self, raw: msgspec.Raw, stamp: str, out: Parsed, ts_recv: int) -> None:
        batch = []
        for ev in trades_decoder.decode(raw):
            for t in ev.trades:
                if not (_ZERO < t.price < _MAX and _ZERO < t.size < _MAX):
                    raise CoinbaseMessageError(f"invalid trade price={t.price} size={t.size}")
                if not t.trade_id or len(t.trade_id) > 64:
                    raise CoinbaseMessageError(f"invalid trade_id {t.trade_id[:80]!r}")
                batch.append((parse_time(t.time), self._canonical(t.product_id), t))
        batch.sort(key=lambda x: x[0])  # Coinbase lists a batch newest first
        for ts, sym, t in batch:
            if self._seen(sym, t.trade_id):
                self.duplicates += 1
                continue
            out.events.append(
                Trade(venue=self.venue, symbol=sym, ts_event=ts, ts_recv=ts_recv, seq=self._next_seq(sym, "trade"),
                      price=t.price, size=t.size, side=aggressor(t.side), trade_id=t.trade_id)
            )  # fmt: skip

    def _on_ticker(self, raw: msgspec.Raw, stamp: str, out: Parsed, ts_recv: int) -> None:
        ts = parse_time(stamp) if stamp else ts_recv
        items: list[tuple[str, TickerItem]] = []
        for ev in ticker_decoder.decode(raw):
            for t in ev.tickers:
                for v in (t.price, t.volume_24_h, t.best_bid, t.best_bid_quantity, t.best_ask, t.best_ask_quantity):
                    if v is not None and not (_ZERO <= v < _MAX):
                        raise CoinbaseMessageError(f"invalid ticker value {v}")
                items.append((self._canonical(t.product_id), t))
        for sym, t in items:
            bid, bq, ask, aq = t.best_bid, t.best_bid_quantity, t.best_ask, t.best_ask_quantity
            if bid is not None and bq is not None and ask is not None and aq is not None:
                out.events.append(
                    Ticker(venue=self.venue, symbol=sym, ts_event=ts, ts_recv=ts_recv,
                           seq=self._next_seq(sym, "ticker"), bid=bid, bid_size=bq, ask=ask, ask_size=aq,
                           last=t.price, volume=t.volume_24_h, low=t.low_24_h, high=t.high_24_h,
                           change_pct=t.price_percent_chg_24_h)
                )  # fmt: skip
            out.events.append(
                Quote(venue=self.venue, symbol=sym, ts_event=ts, ts_recv=ts_recv, seq=self._next_seq(sym, "quote"),
                      bid=bid, bid_size=bq if bid is not None else None, ask=ask,
                      ask_size=aq if ask is not None else None)
            )  # fmt: skip

    def _on_heartbeat(self, raw: msgspec.Raw, stamp: str, out: Parsed, ts_recv: int) -> None:
        heartbeat_decoder.decode(raw)
        self.heartbeats += 1

    def _on_subscriptions(self, raw: msgspec.Raw, stamp: str, out: Parsed, ts_recv: int) -> None:
        merged: dict[str, list[str]] = {}
        for ev in subscriptions_decoder.decode(raw):
            for ch, ids in ev.subscriptions.items():
                merged.setdefault(ch, []).extend(ids)
        out.subscriptions = merged
