"""Pure, stateful parser for Binance combined-stream frames: raw text in, Pulse events out.

:class:`BinanceParser` owns no I/O. ``feed(frame)`` decodes the ``{"stream", "data"}`` envelope, routes ``data``
by the stream's kind to its typed decoder and returns a :class:`Parsed` with ready-to-publish events (``seq``
assigned), request acknowledgements, and the book work the service must do (snapshots to fetch, books to resync).

Mapping
    ``@trade``       → :class:`~pulse.models.Trade` (``trade_id`` = Binance's trade id; aggressor ``sell`` when the
                       buyer was the maker). ``@aggTrade`` likewise, ``trade_id`` = ``a<aggregate id>`` (its own
                       id space, so it never collides with raw trade ids in storage).
    ``@bookTicker``  → :class:`~pulse.models.Quote`; spot sends no event time, so ``ts_event`` = ``ts_recv``.
    ``@depth@100ms`` → kept in sync by :class:`~ingesters.binance.book.BookSync`; each diff applied becomes a
                       :class:`~pulse.models.BookDelta` (the diff's levels, the top of book after it); a synced
                       snapshot becomes a :class:`~pulse.models.BookSnapshot`. A break lists the symbol in
                       ``Parsed.resync``; the first diff buffered lists it in ``Parsed.snapshots``.
    ``!serverShutdown`` → ``Parsed.shutdown``.
    ``{"result", "id"}`` / ``{"error", "id"}`` → :class:`Ack`.

Duplicates: a trade whose id is not above the symbol's last, or a book ticker whose update id is not above its last,
is dropped (``duplicates`` counts them). That is what makes a renewal's overlap of two connections lossless and
duplicate-free for trades and quotes; books get the same from their update ids.

Sequence numbers are per (symbol, channel), start at 1 and keep increasing for the parser's life.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import starmap

import msgspec

from ingesters.base.parsing import SymbolParser
from ingesters.binance.book import BookSync
from ingesters.binance.schemas import (
    AggTradeEvent,
    DepthUpdateEvent,
    agg_trade_decoder,
    book_ticker_decoder,
    depth_decoder,
    frame_decoder,
    shutdown_decoder,
    snapshot_decoder,
    trade_decoder,
)
from ingesters.binance.symbols import resolve
from pulse.errors import PulseError
from pulse.models import BookDelta, BookSnapshot, Event, Level, Quote, Trade

_MS = 1_000_000
_ZERO = Decimal(0)
_MAX = Decimal("1e30")  # sanity bound; comparisons also reject NaN


class BinanceMessageError(PulseError):
    """A Binance frame is malformed: bad JSON, an unknown stream kind, a missing or invalid field."""


@dataclass(slots=True)
class Ack:
    id: int | str | None
    ok: bool
    error: str = ""  # "2: Invalid request: invalid stream"


@dataclass(slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)  # symbols whose book needs a REST snapshot now
    resync: list[tuple[str, str]] = field(default_factory=list)  # (symbol, why) whose book broke
    retry_snapshot: list[str] = field(default_factory=list)  # snapshot older than the buffered diffs: ask again
    shutdown: bool = False  # the server announced it is closing this connection
    stream: str = ""  # the stream a data frame came on ("" for responses)


def _preview(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else bytes(frame[:200]).decode("utf-8", "replace")
    return text[:200]


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, msgspec.MsgspecError) else f"{type(exc).__name__}: {exc}"


def _check_levels(levels: list[tuple[Decimal, Decimal]]) -> None:
    for p, q in levels:
        if not (_ZERO < p < _MAX and _ZERO <= q < _MAX):
            raise BinanceMessageError(f"invalid book level price={p} qty={q}")


def _symbol_of(name: str) -> str:
    return resolve(name).symbol


class BinanceParser(SymbolParser):
    """Turns Binance frames into Pulse events; one instance per ingester (its state outlives connections)."""

    message_error = BinanceMessageError
    _resolve = staticmethod(_symbol_of)

    def __init__(self, *, venue: str = "binance", clock: Callable[[], int] = time.time_ns, depth: int = 1000):
        self.venue = venue
        self.depth = depth  # levels per side a BookSnapshot event carries
        self._clock = clock
        self._seq: dict[tuple[str, str], int] = {}
        self._symbols: dict[str, str] = {}  # Binance name → canonical
        self._last_trade: dict[str, int] = {}
        self._last_quote: dict[str, int] = {}
        self.books: dict[str, BookSync] = {}  # canonical symbol → its sync, for symbols with the book channel
        self.duplicates = 0
        self.resyncs = 0
        self._routes: dict[str, Callable[[msgspec.Raw, Parsed, int], None]] = {
            "trade": self._on_trade,
            "aggTrade": self._on_agg_trade,
            "bookTicker": self._on_book_ticker,
            "depth@100ms": self._on_depth,
            "depth": self._on_depth,
        }

    # ------------------------------------------------------------------------------------------ public

    def track_book(self, symbol: str) -> None:
        """Keep ``symbol``'s book (its diffs are ignored until then)."""
        self.books.setdefault(symbol, BookSync())

    def drop_book(self, symbol: str) -> None:
        self.books.pop(symbol, None)

    def reset_books(self) -> None:
        """A new session: every book starts over from a snapshot."""
        for sync in self.books.values():
            sync.reset()

    def rebase_books(self) -> None:
        """A renewal switched connections: each book accepts one straddling diff from the new connection."""
        for sync in self.books.values():
            sync.rebase()

    def book(self, symbol: str) -> BookSync | None:
        return self.books.get(symbol)

    def feed(self, frame: str | bytes) -> Parsed:
        """Parse one frame. Raises :class:`BinanceMessageError` (and nothing else) if it is malformed."""
        ts_recv = self._clock()
        out = Parsed()
        try:
            f = frame_decoder.decode(frame)
            stream = f.stream
            if stream is not None:
                out.stream = stream
                if not f.data:
                    raise BinanceMessageError(f"stream event without data: {_preview(frame)}")
                if stream[:1] == "!":
                    if stream != "!serverShutdown":
                        raise BinanceMessageError(f"unexpected stream {stream!r}")
                    shutdown_decoder.decode(f.data)
                    out.shutdown = True
                    return out
                at = stream.find("@")
                route = self._routes.get(stream[at + 1 :]) if at > 0 else None
                if route is None:
                    raise BinanceMessageError(f"unexpected stream {stream[:80]!r}")
                route(f.data, out, ts_recv)
            elif f.error is not None:
                out.acks.append(Ack(f.id, False, f"{f.error.code}: {f.error.msg}"))
            elif f.code is not None:
                out.acks.append(Ack(f.id, False, f"{f.code}: {f.msg}"))
            elif f.result and f.id is not None:
                out.acks.append(Ack(f.id, True))
            else:
                raise BinanceMessageError(f"frame has neither stream nor id: {_preview(frame)}")
        except BinanceMessageError:
            raise
        except Exception as exc:  # bad JSON, wrong types, invalid UTF-8, nesting too deep, bad decimals
            raise BinanceMessageError(f"malformed Binance frame ({_reason(exc)}): {_preview(frame)}") from exc
        return out

    def apply_snapshot(self, symbol: str, body: bytes) -> Parsed:
        """A REST depth snapshot for ``symbol`` arrived (the raw body). Raises :class:`BinanceMessageError` if
        the body is malformed (the book keeps waiting: the service asks again)."""
        out = Parsed()
        sync = self.books.get(symbol)
        if sync is None:
            return out
        try:
            snap = snapshot_decoder.decode(body)
            _check_levels(snap.bids)
            _check_levels(snap.asks)
        except BinanceMessageError:
            raise
        except Exception as exc:
            raise BinanceMessageError(f"malformed depth snapshot ({_reason(exc)}): {_preview(body)}") from exc
        ts_recv = self._clock()
        result = sync.on_snapshot(snap)
        if result.kind == "too_old":
            out.retry_snapshot.append(symbol)
            return out
        if result.kind == "unexpected":
            return out
        if result.kind == "synced" or result.applied:
            # the snapshot as loaded (before the buffered diffs), then each diff applied on top of it
            sb, sa = (snap.bids[: self.depth], snap.asks[: self.depth])
            out.events.append(
                BookSnapshot(venue=self.venue, symbol=symbol, ts_event=ts_recv, ts_recv=ts_recv,
                             seq=self._next_seq(symbol, "book"), depth=self.depth,
                             bids=tuple(starmap(Level, sb)), asks=tuple(starmap(Level, sa)))
            )  # fmt: skip
            for ev in result.applied:
                out.events.append(self._delta(symbol, ev, sync, ts_recv))
        if result.kind == "break":
            self._broken(symbol, result.reason, out)
        return out

    # ---------------------------------------------------------------------------------------- helpers

    def _broken(self, symbol: str, reason: str, out: Parsed) -> None:
        self.resyncs += 1
        out.resync.append((symbol, reason))

    # --------------------------------------------------------------------------------------- streams

    def _trade(self, sym: str, tid: int, trade_id: str, price: Decimal, qty: Decimal, t_ms: int, maker: bool,
               out: Parsed, ts_recv: int) -> None:  # fmt: skip
        if not (_ZERO < price < _MAX and _ZERO < qty < _MAX):
            raise BinanceMessageError(f"invalid trade price={price} qty={qty}")
        last = self._last_trade.get(sym)
        if last is not None and tid <= last:
            self.duplicates += 1
            return
        self._last_trade[sym] = tid
        out.events.append(
            Trade(venue=self.venue, symbol=sym, ts_event=t_ms * _MS, ts_recv=ts_recv,
                  seq=self._next_seq(sym, "trade"), price=price, size=qty, side="sell" if maker else "buy",
                  trade_id=trade_id)
        )  # fmt: skip

    def _on_trade(self, data: msgspec.Raw, out: Parsed, ts_recv: int) -> None:
        t = trade_decoder.decode(data)
        sym = self._canonical(t.symbol)
        self._trade(sym, t.trade_id, str(t.trade_id), t.price, t.qty, t.trade_time, t.buyer_is_maker, out, ts_recv)

    def _on_agg_trade(self, data: msgspec.Raw, out: Parsed, ts_recv: int) -> None:
        t: AggTradeEvent = agg_trade_decoder.decode(data)
        sym = self._canonical(t.symbol)
        self._trade(sym, t.agg_id, f"a{t.agg_id}", t.price, t.qty, t.trade_time, t.buyer_is_maker, out, ts_recv)

    def _on_book_ticker(self, data: msgspec.Raw, out: Parsed, ts_recv: int) -> None:
        b = book_ticker_decoder.decode(data)
        for v in (b.bid, b.bid_qty, b.ask, b.ask_qty):
            if not (_ZERO <= v < _MAX):
                raise BinanceMessageError(f"invalid book ticker value {v}")
        sym = self._canonical(b.symbol)
        last = self._last_quote.get(sym)
        if last is not None and b.update_id <= last:
            self.duplicates += 1
            return
        self._last_quote[sym] = b.update_id
        bid_empty = b.bid == _ZERO and b.bid_qty == _ZERO
        ask_empty = b.ask == _ZERO and b.ask_qty == _ZERO
        out.events.append(
            Quote(venue=self.venue, symbol=sym, ts_event=ts_recv, ts_recv=ts_recv, seq=self._next_seq(sym, "quote"),
                  bid=None if bid_empty else b.bid, bid_size=None if bid_empty else b.bid_qty,
                  ask=None if ask_empty else b.ask, ask_size=None if ask_empty else b.ask_qty)
        )  # fmt: skip

    def _on_depth(self, data: msgspec.Raw, out: Parsed, ts_recv: int) -> None:
        ev = depth_decoder.decode(data)
        if ev.final_id < ev.first_id:
            raise BinanceMessageError(f"depth update ids out of order: U={ev.first_id} u={ev.final_id}")
        _check_levels(ev.bids)
        _check_levels(ev.asks)
        sym = self._canonical(ev.symbol)
        sync = self.books.get(sym)
        if sync is None:
            return  # not (or no longer) keeping this book
        res = sync.on_diff(ev)
        if res.kind == "applied":
            out.events.append(self._delta(sym, ev, sync, ts_recv))
        elif res.kind == "buffered":
            if res.want_snapshot:
                out.snapshots.append(sym)
        elif res.kind == "break":
            self._broken(sym, res.reason, out)
        else:
            self.duplicates += 1

    def _delta(self, sym: str, ev: DepthUpdateEvent, sync: BookSync, ts_recv: int) -> BookDelta:
        bb, ba = sync.book.best_bid(), sync.book.best_ask()
        return BookDelta(
            venue=self.venue, symbol=sym, ts_event=ev.event_time * _MS if ev.event_time else ts_recv, ts_recv=ts_recv,
            seq=self._next_seq(sym, "book"), bids=tuple(starmap(Level, ev.bids)), asks=tuple(starmap(Level, ev.asks)),
            best_bid=Level(*bb) if bb else None, best_ask=Level(*ba) if ba else None,
        )  # fmt: skip
