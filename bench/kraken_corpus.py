"""A pre-generated, replayable Kraken WebSocket v2 session for the benchmarks.

The market comes from the simulator's generator (:class:`~ingesters.kraken.simulator_feed.SymbolMarket`: a
seeded random walk per pair, prices in Kraken's JSON form with trailing zeros dropped), so the frames look like
the local venue's. What differs is the mix and the cost: the corpus is made once, before anything is timed, and
then only replayed.

* Trade frames carry several trades each (:data:`TRADE_BATCH`: Kraken sends the fills of one taker order in one
  message), each followed by the pair's ticker frame, as on ``event_trigger=trades``.
* Book updates carry exactly the levels that changed within the subscribed depth (removals as qty 0) and
  Kraken's checksum of the book *after* the update. The checksum is computed on a mirror of the client's book
  (:class:`~ingesters.kraken.book.OrderBook`, incremental, so generation stays cheap) and checked once at the end
  against the simulator's own full recomputation (:meth:`SymbolMarket.checksum`).
* Snapshots (instrument, book, ticker) are of the state before the first data frame, so every connection can
  replay the same corpus from the start.

With ``stamp=None`` every timestamp is :data:`PLACEHOLDER` (same width as a real one), for a venue that writes
the wall-clock send time into each frame as it goes out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from ingesters.kraken.book import OrderBook
from ingesters.kraken.protocol import format_rfc3339_ns
from ingesters.kraken.schemas import encoder
from ingesters.kraken.simulator_feed import TRADE_SHARE, SymbolMarket, diff_view, instrument_data, with_precisions

#: Pairs the benchmark subscribes (Kraken's precisions for each, see ``with_precisions``).
SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD")
#: Trades per trade frame, drawn uniformly from this (mean 3.4).
TRADE_BATCH = (1, 1, 2, 2, 3, 4, 6, 8)
#: A timestamp-shaped stand-in, replaced by the send time in paced replays.
PLACEHOLDER = "2000-01-01T00:00:00.000000Z"
PLACEHOLDER_BYTES = PLACEHOLDER.encode()
#: The frame that separates warm-up, measured part and end (the ingester's parser flags it as a heartbeat).
HEARTBEAT = b'{"channel":"heartbeat"}'
#: Synthetic time between two market steps in a stamped corpus (so whole seconds repeat, as on Kraken).
STEP_NS = 20_000


@dataclass
class Corpus:
    symbols: dict[str, tuple[int, int]]  # pair → (price_precision, qty_precision)
    depth: int
    instrument: bytes  # the instrument snapshot frame
    book_snapshots: dict[str, bytes]  # pair → book snapshot frame (state before frames[0])
    ticker_snapshots: dict[str, bytes]
    frames: list[bytes] = field(default_factory=list)  # data frames in replay order
    events: list[int] = field(default_factory=list)  # events the ingester publishes for each frame
    counts: dict[str, int] = field(default_factory=dict)  # frames and events by kind

    @property
    def total_events(self) -> int:
        return sum(self.events)


def frame(channel: str, kind: str, data: object) -> bytes:
    return encoder.encode({"channel": channel, "type": kind, "data": data})


def _pairs(levels: list[dict[str, Decimal]]) -> list[tuple[Decimal, Decimal]]:
    return [(lv["price"], lv["qty"]) for lv in levels]


def synthetic_clock(start_ns: int | None = None) -> Callable[[], str]:
    """A stamp function whose time advances :data:`STEP_NS` per call."""
    t = [start_ns if start_ns is not None else time.time_ns()]

    def stamp() -> str:
        t[0] += STEP_NS
        return format_rfc3339_ns(t[0])

    return stamp


def generate(
    symbols: Iterable[str] = SYMBOLS,
    *,
    frames: int = 0,
    events: int = 0,
    depth: int = 10,
    seed: int = 1,
    stamp: Callable[[], str] | None = None,
) -> Corpus:
    """A corpus of at least ``frames`` data frames and ``events`` events (whichever needs more).

    Raises ``AssertionError`` if a mirrored checksum ever disagrees with the simulator's own (a corpus the
    ingester would resync on would measure resyncs, not throughput).
    """
    stamp = stamp or (lambda: PLACEHOLDER)
    precisions = with_precisions(list(symbols))
    markets = {s: SymbolMarket(s, pp, qp, seed=seed) for s, (pp, qp) in precisions.items()}
    views, mirrors = {}, {}
    books, tickers = {}, {}
    for sym, m in markets.items():
        views[sym] = bids, asks = m.view(depth)
        wire_bids, wire_asks = m.wire_levels(bids.items()), m.wire_levels(asks.items())
        mirror = mirrors[sym] = OrderBook(depth, m.price_precision, m.qty_precision)
        mirror.apply_snapshot(_pairs(wire_bids), _pairs(wire_asks))
        data = {"symbol": sym, "bids": wire_bids, "asks": wire_asks, "checksum": m.checksum(), "timestamp": stamp()}
        books[sym] = frame("book", "snapshot", [data])
        tickers[sym] = frame("ticker", "snapshot", [{**m.ticker(), "timestamp": stamp()}])
    corpus = Corpus(precisions, depth, frame("instrument", "snapshot", instrument_data(markets)), books, tickers)
    counts = dict.fromkeys(("trade_frames", "trades", "ticker_frames", "book_updates"), 0)
    rng = random.Random(f"{seed}:batches")
    order = list(markets)
    out, n_events = corpus.frames, corpus.events
    total, step = 0, 0
    while len(out) < frames or total < events:
        sym = order[step % len(order)]
        step += 1
        m = markets[sym]
        if m.rng.random() < TRADE_SHARE:
            ts = stamp()
            batch = [m.make_trade(ts) for _ in range(rng.choice(TRADE_BATCH))]
            out.append(frame("trade", "update", batch))
            n_events.append(len(batch))
            out.append(frame("ticker", "update", [{**m.ticker(), "timestamp": ts}]))
            n_events.append(2)  # a Ticker and its Quote
            counts["trade_frames"] += 1
            counts["trades"] += len(batch)
            counts["ticker_frames"] += 1
            total += len(batch) + 2
            continue
        m.step_book()
        new = m.view(depth)
        bids, asks = diff_view(views[sym], new)
        if not bids and not asks:
            continue  # the change was deeper than the subscribed depth: Kraken sends nothing
        views[sym] = new
        wire_bids, wire_asks = m.wire_levels(bids), m.wire_levels(asks)
        mirror = mirrors[sym]
        mirror.apply_update(_pairs(wire_bids), _pairs(wire_asks))
        data = {
            "symbol": sym,
            "bids": wire_bids,
            "asks": wire_asks,
            "checksum": mirror.checksum(),
            "timestamp": stamp(),
        }
        out.append(frame("book", "update", [data]))
        n_events.append(1)
        counts["book_updates"] += 1
        total += 1
    for sym, m in markets.items():
        assert mirrors[sym].checksum() == m.checksum(), f"corpus checksum drifted for {sym}"
    counts["frames"] = len(out)
    counts["events"] = total
    corpus.counts = counts
    return corpus
