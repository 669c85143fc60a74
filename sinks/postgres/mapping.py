"""Events → table rows: the one place that says which event goes to which table, and how. Pure, no I/O.

=================  ===========  ============================================================================
event              table        row
=================  ===========  ============================================================================
``Trade``          trades       one row per trade; the key is (venue, symbol, trade_id, time)
``Quote``          quotes       best bid/offer, ``channel='quote'``; the ladder (``bids``/``asks``) is dropped
``Ticker``         quotes       its top of book, ``channel='ticker'``, ``tradeable`` true. Kraken publishes no
                                quote channel, so this is what gives crypto venues a BBO series; the 24h fields
                                (last, volume, vwap, …) are not stored (a ``tickers`` table can be added here)
``BookSnapshot``   book_top     ``bids[0]``/``asks[0]`` (NULL for an empty side)
``BookDelta``      book_top     ``best_bid``/``best_ask`` as computed by the ingester; a delta carrying neither
                                says nothing about the top and is ignored (returns ``None``)
``Status``         gaps         every marker (gap, resync, stale, disconnected, connected, market_*, …); a query
                                for holes filters on ``kind``
``Candle``         —            ignored (``None``): candles are derived and have their own pipeline
``QuoteBatch``     quotes       one row per tick, exactly the rows its :meth:`~QuoteBatch.quotes` would give
                                (:func:`to_rows` only; the whole batch is refused if any tick is invalid)
=================  ===========  ============================================================================

:func:`to_row` returns ``None`` for events the sink does not store, and raises :class:`MappingError` for an
event it cannot store (a non-canonical symbol, a non-finite price, a NUL character in text, a timestamp or
sequence outside PostgreSQL's range) — the service dead-letters those. Rows are tuples in the column order of
:data:`sinks.postgres.schema.COLUMNS`. :func:`to_rows` is the sink's entry point: the same for single events,
plus many rows for a :class:`~pulse.models.QuoteBatch` built in one tight loop (venue, symbol and ``ts_recv``
checked once per batch; int64 ranges checked by the decoder; prices checked in bulk).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any

from pulse.errors import PulseError, SymbolError
from pulse.models import BookDelta, BookSnapshot, Candle, Event, Level, Quote, QuoteBatch, Status, Ticker, Trade
from pulse.symbols import canonical

Row = tuple[Any, ...]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class MappingError(PulseError, ValueError):
    """An event that decodes but cannot be stored as a row (it goes to the dead-letter topic)."""


def ns_to_time(ns: int) -> datetime:
    """Integer nanoseconds since the epoch → aware UTC datetime, truncated (floored) to microseconds."""
    try:
        return _EPOCH + timedelta(microseconds=ns // 1000)
    except OverflowError as exc:
        raise MappingError(f"timestamp {ns} ns is out of range") from exc


def _int64(name: str, value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise MappingError(f"{name}={value} does not fit a bigint")
    return value


def _text(name: str, value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; COPY would fail the whole batch
        raise MappingError(f"{name} contains a NUL character")
    return value


def _opt_text(name: str, value: str | None) -> str | None:
    return None if value is None else _text(name, value)


def _num(name: str, value: Decimal) -> Decimal:
    if not value.is_finite():
        raise MappingError(f"{name}={value} is not a finite number")
    return value


def _opt_num(name: str, value: Decimal | None) -> Decimal | None:
    return None if value is None else _num(name, value)


def _head(e: Event | QuoteBatch) -> Row:
    """venue, symbol, time, ts_event_ns, ts_recv_ns, seq — the columns every table starts with."""
    if not e.venue:
        raise MappingError("empty venue")
    try:
        if canonical(e.symbol) != e.symbol:
            raise MappingError(f"symbol {e.symbol!r} is not canonical (expected {canonical(e.symbol)!r})")
    except SymbolError as exc:
        raise MappingError(str(exc)) from exc
    return (
        _text("venue", e.venue),
        e.symbol,
        ns_to_time(_int64("ts_event", e.ts_event)),
        e.ts_event,
        _int64("ts_recv", e.ts_recv),
        _int64("seq", e.seq),
    )


def _level(name: str, level: Level | None) -> tuple[Decimal | None, Decimal | None]:
    if level is None:
        return None, None
    return _num(f"{name}.price", level.price), _num(f"{name}.size", level.size)


def _trade(e: Trade) -> tuple[str, Row]:
    if not e.trade_id:
        raise MappingError("empty trade_id")
    return "trades", (
        *_head(e),
        _text("trade_id", e.trade_id),
        _num("price", e.price),
        _num("size", e.size),
        e.side,
        _opt_text("ord_type", e.ord_type),
    )


def _quote(e: Quote) -> tuple[str, Row]:
    return "quotes", (
        *_head(e),
        "quote",
        _opt_num("bid", e.bid),
        _opt_num("bid_size", e.bid_size),
        _opt_num("ask", e.ask),
        _opt_num("ask_size", e.ask_size),
        e.tradeable,
    )


def _ticker(e: Ticker) -> tuple[str, Row]:
    return "quotes", (
        *_head(e),
        "ticker",
        _num("bid", e.bid),
        _num("bid_size", e.bid_size),
        _num("ask", e.ask),
        _num("ask_size", e.ask_size),
        True,
    )


def _book_snapshot(e: BookSnapshot) -> tuple[str, Row]:
    bid = _level("bids[0]", e.bids[0] if e.bids else None)
    ask = _level("asks[0]", e.asks[0] if e.asks else None)
    return "book_top", (*_head(e), *bid, *ask)


def _book_delta(e: BookDelta) -> tuple[str, Row] | None:
    if e.best_bid is None and e.best_ask is None:
        return None
    return "book_top", (*_head(e), *_level("best_bid", e.best_bid), *_level("best_ask", e.best_ask))


def _status(e: Status) -> tuple[str, Row]:
    return "gaps", (*_head(e), e.kind, _text("detail", e.detail))


def _ignore(_e: Event) -> None:
    return None


_MAPPERS: dict[type, Callable[[Any], tuple[str, Row] | None]] = {
    Trade: _trade,
    Quote: _quote,
    Ticker: _ticker,
    BookSnapshot: _book_snapshot,
    BookDelta: _book_delta,
    Status: _status,
    Candle: _ignore,
}

#: The tables :func:`to_row` can name.
TABLES: frozenset[str] = frozenset({"trades", "quotes", "book_top", "gaps"})

#: Event type (the ``type`` tag) → the table :func:`to_row` names for it, whose columns its rows follow.
#: ``candle`` is absent: candles are derived and have their own pipeline.
EVENT_TABLES: dict[str, str] = {
    "trade": "trades",
    "quote": "quotes",
    "ticker": "quotes",
    "book_snapshot": "book_top",
    "book_delta": "book_top",
    "status": "gaps",
}


def to_row(event: Event) -> tuple[str, Row] | None:
    """``(table, row)`` for an event the sink stores, ``None`` for one it ignores; :class:`MappingError` if invalid."""
    mapper = _MAPPERS.get(type(event))
    if mapper is None:
        return None
    return mapper(event)


#: Event types carried in batches → the type of their elements (whose table config they follow).
ELEMENT_TYPE: dict[str, str] = {"quote_batch": "quote"}

_TICK = attrgetter("ts_event", "seq", "bid", "bid_size", "ask", "ask_size")
_PRICES = attrgetter("bid", "bid_size", "ask", "ask_size")


def _quote_batch(e: QuoteBatch) -> list[Row]:
    venue, symbol, _time, _ts, ts_recv, _seq = _head(e)  # checked once for the whole batch
    tradeable = e.tradeable
    ticks = e.ticks
    if not ticks:
        return []
    # time = ts_event floored to µs, as ns_to_time; as an offset from the first tick's µs (positional small
    # timedeltas are the cheapest exact way). int64 ranges of ts_event/seq are enforced by the decoder.
    td = timedelta
    us0 = ticks[0].ts_event // 1000
    base = _EPOCH + td(0, 0, us0)
    rows = [
        (venue, symbol, base + td(0, 0, ts // 1000 - us0), ts, ts_recv, seq, "quote", bid, bsz, ask, asz, tradeable)
        for ts, seq, bid, bsz, ask, asz in map(_TICK, ticks)
    ]
    # Non-finite prices are rare enough to look for only among the distinct values (ticks repeat them a lot).
    try:
        values = {v for t in map(_PRICES, e.ticks) for v in t}
    except TypeError as exc:  # Decimal('sNaN') cannot be hashed
        raise MappingError(f"a tick holds a signalling NaN: {exc}") from exc
    values.discard(None)
    for v in values:
        if not v.is_finite():
            i = next(i for i, t in enumerate(e.ticks) if v in _PRICES(t))
            raise MappingError(f"ticks[{i}]: {v} is not a finite number")
    return rows


def to_rows(event: Event) -> tuple[str, list[Row]] | None:
    """Like :func:`to_row`, but as a list of rows: one for a single event, one per tick for a
    :class:`~pulse.models.QuoteBatch` (``MappingError`` for the whole batch if any tick is invalid)."""
    if type(event) is QuoteBatch:
        return "quotes", _quote_batch(event)
    mapped = to_row(event)
    return None if mapped is None else (mapped[0], [mapped[1]])
