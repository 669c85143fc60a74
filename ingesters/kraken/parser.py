"""Pure, stateful parser for Kraken WebSocket v2 frames: raw text in, Pulse events out.

:class:`KrakenFeedParser` owns no I/O. ``feed(frame)`` decodes one frame with typed msgspec decoders (a frame
starting with ``{"channel"`` goes straight to the channel union; anything else is routed by a small envelope
decode first) and returns a :class:`Parsed` holding ready-to-publish events with ``seq`` assigned, subscription
acks, the symbols whose book must be resubscribed, and heartbeat/pong flags.

Mapping
    ``trade``      → one :class:`~pulse.models.Trade` per trade.
    ``ticker``     → one :class:`~pulse.models.Ticker` and one :class:`~pulse.models.Quote` (its best bid/ask).
    ``book``       → snapshot: :class:`~pulse.models.BookSnapshot` (truncated to ``depth``); update: applied,
                     then :class:`~pulse.models.BookDelta` with the top of book after it. Both are emitted only
                     if Kraken's checksum matches. On a mismatch the symbol's book is dropped, the symbol is
                     listed in ``Parsed.resync`` and ``checksum_failed`` grows; updates for a symbol without a
                     book are ignored until its next snapshot.
    ``instrument`` → records ``price_precision``/``qty_precision`` per pair (no events).
    ``heartbeat``  → ``Parsed.heartbeat``; ``status`` → ignored; ``pong`` → ``Parsed.pong``;
    ``subscribe``/``unsubscribe`` responses → :class:`SubscriptionAck`.

Checksum precision
    The checksum formats prices and quantities with the pair's precisions, which the ``instrument`` channel
    gives and which this parser always prefers. Without it, a snapshot's precisions are derived: first the
    largest number of decimals seen among the snapshot's prices (resp. quantities); if Kraken's checksum
    disagrees — JSON numbers drop trailing zeros, so every quantity may happen to look shorter — up to 4 more
    price and 8 more quantity decimals are tried and the pair that reproduces Kraken's checksum is kept (a
    false match needs a CRC32 collision). If an update's checksum then fails under a derived precision, the
    same search runs upwards from it before the book is declared broken.

Sequence numbers are per (symbol, channel) — channels as in :data:`pulse.topics.CHANNEL_OF_EVENT` — start at 1
and keep increasing for the parser's life; :meth:`KrakenFeedParser.reset_books` does not reset them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import starmap

import msgspec

from ingesters.base.parsing import SymbolParser
from ingesters.kraken.book import OrderBook, Pair
from ingesters.kraken.protocol import BOOK_DEPTHS, parse_rfc3339_ns
from ingesters.kraken.schemas import (
    BookData,
    BookLevel,
    BookMessage,
    HeartbeatMessage,
    InstrumentMessage,
    MethodResponse,
    StatusMessage,
    TickerMessage,
    TradeMessage,
    channel_decoder,
    envelope_decoder,
    method_decoder,
)
from pulse.errors import ConfigError, PulseError
from pulse.models import BookDelta, BookSnapshot, Event, Level, Quote, Ticker, Trade
from pulse.symbols import canonical

_FAST_STR = '{"channel"'
_FAST_BYTES = b'{"channel"'
# Sanity bound for prices and quantities: also rejects NaN (comparison raises) and infinities.
_MAX = Decimal("1e30")
_MIN = -_MAX
_ZERO = Decimal(0)
# How far above the observed decimals a derived precision is searched (see module docstring).
_EXTRA_PRICE_DECIMALS = 4
_EXTRA_QTY_DECIMALS = 8
_MAX_PRECISION = 18


class KrakenMessageError(PulseError):
    """A Kraken frame is malformed: bad JSON, unknown channel/type/method, or a missing or invalid field."""


@dataclass(slots=True)
class SubscriptionAck:
    method: str  # "subscribe" | "unsubscribe"
    channel: str  # "" when Kraken does not say (a failed subscribe carries no result; match on req_id)
    symbol: str | None  # Kraken's pair name; None for instrument
    success: bool
    error: str | None  # e.g. "Currency pair not supported XBT/USD"
    req_id: int | None


@dataclass(slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)  # ready to publish, seq already assigned
    acks: list[SubscriptionAck] = field(default_factory=list)
    resync: list[str] = field(default_factory=list)  # symbols whose book checksum failed: resubscribe the book
    heartbeat: bool = False
    pong: bool = False


@dataclass(slots=True)
class _BookState:
    book: OrderBook
    price_precision: int
    qty_precision: int
    derived: bool  # precisions guessed from the data, not from the instrument channel


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _max_decimals(levels: list[BookLevel]) -> tuple[int, int]:
    dp = dq = 0
    for lv in levels:
        p, q = _decimals(lv.price), _decimals(lv.qty)
        if p > dp:
            dp = p
        if q > dq:
            dq = q
    return dp, dq


def _pairs(levels: list[BookLevel]) -> list[Pair]:
    """Validated ``(price, qty)`` pairs."""
    pairs = []
    for lv in levels:
        price, qty = lv.price, lv.qty
        if not (_ZERO < price < _MAX and _ZERO <= qty < _MAX):
            raise KrakenMessageError(f"invalid book level price={price} qty={qty}")
        pairs.append((price, qty))
    return pairs


def _check_finite(*values: Decimal | None) -> None:
    for v in values:
        if v is not None and not (_MIN < v < _MAX):
            raise KrakenMessageError(f"invalid number {v}")


def _reason(exc: Exception) -> str:
    """An exception as the reason of a bad frame: the library's message, named by type when it is not a
    decode error (``RecursionError: maximum recursion depth exceeded …``)."""
    if isinstance(exc, msgspec.MsgspecError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _preview(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else bytes(frame[:200]).decode("utf-8", "replace")
    return text[:200]


class KrakenFeedParser(SymbolParser):
    """Turns Kraken v2 frames into Pulse events; one instance per connection's worth of state.

    ``depth`` is the subscribed book depth (books are truncated to it); ``clock`` gives ``ts_recv`` in ns.
    ``checksum_ok`` / ``checksum_failed`` count verified and failed book checksums.
    """

    message_error = KrakenMessageError
    _resolve = staticmethod(canonical)

    def __init__(self, *, depth: int = 10, clock: Callable[[], int] = time.time_ns, venue: str = "kraken"):
        if depth not in BOOK_DEPTHS:
            raise ConfigError(f"invalid book depth {depth!r}: expected one of {BOOK_DEPTHS}")
        self.depth = depth
        self.venue = venue
        self._clock = clock
        self.checksum_ok = 0
        self.checksum_failed = 0
        self._books: dict[str, _BookState] = {}
        self._precision: dict[str, tuple[int, int]] = {}  # from the instrument channel
        self._seq: dict[tuple[str, str], int] = {}
        self._symbols: dict[str, str] = {}  # Kraken pair → canonical symbol
        self._handlers: dict[type, Callable[[object, Parsed, int], None]] = {
            TradeMessage: self._on_trade,
            BookMessage: self._on_book,
            TickerMessage: self._on_ticker,
            InstrumentMessage: self._on_instrument,
            HeartbeatMessage: self._on_heartbeat,
            StatusMessage: self._on_status,
            MethodResponse: self._on_method,
        }

    # ------------------------------------------------------------------------------------------ public

    def feed(self, frame: str | bytes) -> Parsed:
        """Parse one frame. Raises :class:`KrakenMessageError` (and nothing else) if it is malformed: bad
        JSON, invalid UTF-8, nesting too deep for the decoder, wrong types or values."""
        ts_recv = self._clock()
        try:
            if type(frame) is str:
                fast = frame.startswith(_FAST_STR)
            elif type(frame) is bytes:
                fast = frame.startswith(_FAST_BYTES)
            else:
                raise KrakenMessageError(f"frame must be str or bytes, not {type(frame).__name__}")
            if fast:
                msg: object = channel_decoder.decode(frame)
            else:
                env = envelope_decoder.decode(frame)
                if env.channel is not None:
                    msg = channel_decoder.decode(frame)
                elif env.method is not None:
                    msg = method_decoder.decode(frame)
                else:
                    raise KrakenMessageError(f"frame has neither channel nor method: {_preview(frame)}")
        except KrakenMessageError:
            raise
        except Exception as exc:  # any bad input (incl. RecursionError from deep nesting)
            raise KrakenMessageError(f"malformed Kraken frame ({_reason(exc)}): {_preview(frame)}") from exc
        out = Parsed([], [], [])
        try:
            self._handlers[type(msg)](msg, out, ts_recv)
        except KrakenMessageError:
            raise
        except Exception as exc:  # decimal.InvalidOperation, overflow, …: still the frame's fault
            raise KrakenMessageError(f"invalid Kraken frame ({_reason(exc)}): {_preview(frame)}") from exc
        return out

    def reset_books(self, symbol: str | None = None) -> None:
        """Drop book state for ``symbol`` (all books if None); sequence numbers and precisions are kept."""
        if symbol is None:
            self._books.clear()
        else:
            self._books.pop(symbol, None)

    def book(self, symbol: str) -> OrderBook | None:
        """The live book of ``symbol`` (read it, don't change it), or None before its snapshot."""
        state = self._books.get(symbol)
        return state.book if state else None

    def precision(self, symbol: str) -> tuple[int, int] | None:
        """(price_precision, qty_precision) in use for ``symbol``'s checksum, if known."""
        state = self._books.get(symbol)
        if state is not None:
            return state.price_precision, state.qty_precision
        return self._precision.get(symbol)

    # ---------------------------------------------------------------------------------------- helpers

    # --------------------------------------------------------------------------------------- channels

    def _on_trade(self, msg: TradeMessage, out: Parsed, ts_recv: int) -> None:
        pending = []
        for t in msg.data:  # validate the whole batch before consuming sequence numbers
            if not (_ZERO < t.price < _MAX and _ZERO < t.qty < _MAX):
                raise KrakenMessageError(f"invalid trade price={t.price} qty={t.qty}")
            pending.append((self._canonical(t.symbol), parse_rfc3339_ns(t.timestamp), t))
        venue, append, next_seq = self.venue, out.events.append, self._next_seq
        for sym, ts_event, t in pending:
            append(
                Trade(
                    venue=venue,
                    symbol=sym,
                    ts_event=ts_event,
                    ts_recv=ts_recv,
                    seq=next_seq(sym, "trade"),
                    price=t.price,
                    size=t.qty,
                    side=t.side,
                    trade_id=str(t.trade_id),
                    ord_type=t.ord_type,
                )
            )

    def _on_ticker(self, msg: TickerMessage, out: Parsed, ts_recv: int) -> None:
        pending = []
        for t in msg.data:
            _check_finite(t.bid, t.bid_qty, t.ask, t.ask_qty, t.last, t.volume)
            _check_finite(t.vwap, t.low, t.high, t.change, t.change_pct)
            ts_event = parse_rfc3339_ns(t.timestamp) if t.timestamp is not None else ts_recv
            pending.append((self._canonical(t.symbol), ts_event, t))
        venue, append = self.venue, out.events.append
        for sym, ts_event, t in pending:
            append(
                Ticker(
                    venue=venue,
                    symbol=sym,
                    ts_event=ts_event,
                    ts_recv=ts_recv,
                    seq=self._next_seq(sym, "ticker"),
                    bid=t.bid,
                    bid_size=t.bid_qty,
                    ask=t.ask,
                    ask_size=t.ask_qty,
                    last=t.last,
                    volume=t.volume,
                    vwap=t.vwap,
                    low=t.low,
                    high=t.high,
                    change=t.change,
                    change_pct=t.change_pct,
                )
            )
            append(
                Quote(
                    venue=venue,
                    symbol=sym,
                    ts_event=ts_event,
                    ts_recv=ts_recv,
                    seq=self._next_seq(sym, "quote"),
                    bid=t.bid,
                    bid_size=t.bid_qty,
                    ask=t.ask,
                    ask_size=t.ask_qty,
                )
            )

    def _on_book(self, msg: BookMessage, out: Parsed, ts_recv: int) -> None:
        apply = self._book_snapshot if msg.type == "snapshot" else self._book_update
        data = msg.data
        if len(data) == 1:  # what Kraken sends: one pair per message
            b = data[0]
            ts_event = parse_rfc3339_ns(b.timestamp) if b.timestamp is not None else ts_recv
            apply(self._canonical(b.symbol), ts_event, b, _pairs(b.bids), _pairs(b.asks), out, ts_recv)
            return
        pending = []
        for b in data:  # validate everything before touching any book
            ts_event = parse_rfc3339_ns(b.timestamp) if b.timestamp is not None else ts_recv
            pending.append((self._canonical(b.symbol), ts_event, b, _pairs(b.bids), _pairs(b.asks)))
        for item in pending:
            apply(*item, out, ts_recv)

    def _book_snapshot(
        self, sym: str, ts_event: int, b: BookData, bids: list[Pair], asks: list[Pair], out: Parsed, ts_recv: int
    ) -> None:
        self._books.pop(sym, None)
        book = OrderBook(self.depth)
        book.apply_snapshot(bids, asks)
        known = self._precision.get(sym)
        if known is not None:
            book.set_precision(*known)
            found = known if book.checksum() == b.checksum else None
        else:
            (dp, dq), (ap, aq) = _max_decimals(b.bids), _max_decimals(b.asks)
            found = self._derive_precision(book, max(dp, ap), max(dq, aq), b.checksum)
        if found is None:
            self._checksum_failed(sym, out)
            return
        self.checksum_ok += 1
        self._books[sym] = _BookState(book, found[0], found[1], known is None)
        out.events.append(
            BookSnapshot(
                venue=self.venue,
                symbol=sym,
                ts_event=ts_event,
                ts_recv=ts_recv,
                seq=self._next_seq(sym, "book"),
                depth=self.depth,
                bids=tuple(starmap(Level, book.bids())),
                asks=tuple(starmap(Level, book.asks())),
                checksum=b.checksum,
            )
        )

    @staticmethod
    def _derive_precision(book: OrderBook, dp: int, dq: int, expected: int) -> tuple[int, int] | None:
        """The first precisions from (dp, dq) upwards that reproduce ``expected``; the book keeps them."""
        for pp in range(dp, min(dp + _EXTRA_PRICE_DECIMALS, _MAX_PRECISION) + 1):
            for qp in range(dq, min(dq + _EXTRA_QTY_DECIMALS, _MAX_PRECISION) + 1):
                book.set_precision(pp, qp)
                if book.checksum() == expected:
                    return pp, qp
        book.set_precision(dp, dq)
        return None

    def _book_update(
        self, sym: str, ts_event: int, b: BookData, bids: list[Pair], asks: list[Pair], out: Parsed, ts_recv: int
    ) -> None:
        state = self._books.get(sym)
        if state is None:  # no snapshot yet (or dropped after a failed checksum): wait for one
            return
        book = state.book
        book.apply_update(bids, asks)
        if book.checksum() != b.checksum:
            # A derived precision may have been too short (the snapshot happened to show fewer decimals
            # than this level has): search upwards from it before calling the book broken.
            found = None
            if state.derived:
                found = self._derive_precision(book, state.price_precision, state.qty_precision, b.checksum)
            if found is None:
                self._checksum_failed(sym, out)
                return
            state.price_precision, state.qty_precision = found
        self.checksum_ok += 1
        key = (sym, "book")
        seq = self._seq[key] = self._seq.get(key, 0) + 1
        best_bid, best_ask = book.top()
        out.events.append(
            BookDelta(
                venue=self.venue,
                symbol=sym,
                ts_event=ts_event,
                ts_recv=ts_recv,
                seq=seq,
                bids=tuple(starmap(Level, bids)) if bids else (),
                asks=tuple(starmap(Level, asks)) if asks else (),
                checksum=b.checksum,
                best_bid=Level(best_bid[0], best_bid[1]) if best_bid else None,
                best_ask=Level(best_ask[0], best_ask[1]) if best_ask else None,
            )
        )

    def _checksum_failed(self, sym: str, out: Parsed) -> None:
        self.checksum_failed += 1
        self._books.pop(sym, None)
        if sym not in out.resync:
            out.resync.append(sym)

    def _on_instrument(self, msg: InstrumentMessage, out: Parsed, ts_recv: int) -> None:
        updates = []
        for pair in msg.data.pairs:
            pp, qp = pair.price_precision, pair.qty_precision
            if not (0 <= pp <= _MAX_PRECISION and 0 <= qp <= _MAX_PRECISION):
                raise KrakenMessageError(f"invalid precision for {pair.symbol}: price {pp}, qty {qp}")
            try:
                sym = self._canonical(pair.symbol)
            except KrakenMessageError:
                continue  # a pair Pulse cannot name is not a malformed frame; we never subscribe to it
            updates.append((sym, pp, qp))
        for sym, pp, qp in updates:
            self._precision[sym] = (pp, qp)
            state = self._books.get(sym)
            if state is not None and (state.derived or (state.price_precision, state.qty_precision) != (pp, qp)):
                state.price_precision, state.qty_precision, state.derived = pp, qp, False
                state.book.set_precision(pp, qp)

    def _on_heartbeat(self, msg: HeartbeatMessage, out: Parsed, ts_recv: int) -> None:
        out.heartbeat = True

    def _on_status(self, msg: StatusMessage, out: Parsed, ts_recv: int) -> None:
        pass  # engine status is informational; the connection layer watches the data itself

    def _on_method(self, msg: MethodResponse, out: Parsed, ts_recv: int) -> None:
        method = msg.method
        if method == "pong":
            out.pong = True
        elif method == "subscribe" or method == "unsubscribe":
            if msg.success is None:
                raise KrakenMessageError(f"{method} response without 'success'")
            result = msg.result
            symbol = result.symbol if result is not None and result.symbol is not None else msg.symbol
            out.acks.append(
                SubscriptionAck(
                    method=method,
                    channel=result.channel if result is not None else "",
                    symbol=symbol,
                    success=msg.success,
                    error=msg.error,
                    req_id=msg.req_id,
                )
            )
        else:
            raise KrakenMessageError(f"unexpected method {method!r}")
