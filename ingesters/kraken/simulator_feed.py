"""The market behind the Kraken simulator (one seeded random walk per pair) and its fault plan.

Each pair keeps an L2 book in integer ticks (price * 10**price_precision) and integer units
(qty * 10**qty_precision), so nothing is rounded; values become :class:`Decimal` only on the way out, written the
way Kraken's JSON writes them (trailing zeros dropped, e.g. ``0.1`` for ``0.10000000``), which makes a client
need the pair's precisions to verify checksums, as with the real venue.

Prices start near a typical level for the base asset, but at least 10,000 ticks above zero. Given the seed,
a pair's sequence of books and trades depends only on the sequence of steps asked of it; the random generator
is per pair, so other pairs' activity does not change it. Wall-clock timestamps are not part of that.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from ingesters.kraken.book import checksum

#: Share of market steps that are trades (the rest change the book).
TRADE_SHARE = 0.3
#: Levels near the best price that book steps touch (the checksum window).
_NEAR = 10
# Starting prices, whole quote units, by base asset; other pairs start between 1 and 500.
_START = {"BTC": 60000, "ETH": 3000, "SOL": 150, "XRP": 2, "ADA": 1, "DOGE": 1, "LTC": 80}


@dataclass
class FaultPlan:
    """Faults the simulator injects. "Data messages" are trade, ticker, book and instrument frames, counted per
    connection; connections are numbered from 1 in the order they are accepted. ``max_*`` caps a total over all
    connections, so ``malformed_every=5, max_malformed=3`` injects exactly 3 once 15 data messages went out.
    Each fault is counted in ``KrakenSimulator.stats`` when it actually happens.
    """

    disconnect_after: int | None = None  # close each connection listed below after its N-th data message
    disconnect_connections: tuple[int, ...] = (1,)
    malformed_every: int | None = None  # one malformed frame after every N-th data message of a connection
    max_malformed: int | None = None
    bad_checksum_every: int | None = None  # every N-th book update of a connection carries a wrong checksum,
    # but a book gets its next wrong one only after the client re-requested its snapshot (so each is seen)
    max_bad_checksums: int | None = None
    stall_after: int | None = None  # after its N-th data message a listed connection goes silent: no data,
    stall_connections: tuple[int, ...] = (1,)  # heartbeats, acks or pongs (the socket stays open)
    malformed_frames: tuple[str | bytes, ...] = ()  # the frames to inject, cycled (default MALFORMED_FRAMES);
    # bytes go out as binary frames

    def __post_init__(self) -> None:
        for name in ("disconnect_after", "malformed_every", "bad_checksum_every", "stall_after"):
            _check_count(name, getattr(self, name), 1)
        for name in ("max_malformed", "max_bad_checksums"):
            _check_count(name, getattr(self, name), 0)


def _check_count(name: str, value: object, least: int) -> None:
    if value is not None and (type(value) is not int or value < least):
        raise ValueError(f"FaultPlan.{name} must be an integer >= {least} or None, got {value!r}")


#: Malformed frames, cycled through; each makes a v2 parser reject the frame without touching its state. The
#: last two are hostile rather than broken: JSON nested 1,000 deep (a recursive decoder's stack) and a binary
#: frame that is not UTF-8.
MALFORMED_FRAMES: tuple[str | bytes, ...] = (
    '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","pri',
    '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"up","price":"x"}]}',
    "not json at all",
    '{"data":' + "[" * 1000 + "]" * 1000 + ',"channel":"trade"}',
    b'{"channel":"trade","type":"update","data":[{"symbol":"\xff\xfe"}]}',
)


@dataclass(frozen=True, slots=True)
class SentTrade:
    """A trade as the simulator sent it (prices and quantities as on the wire)."""

    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    side: str  # taker side
    ord_type: str
    timestamp: str  # RFC 3339, as sent


def wire_decimal(units: int, precision: int) -> Decimal:
    """``units`` * 10**-precision as Kraken's JSON writes it: trailing zeros dropped, one decimal kept."""
    if precision == 0:
        return Decimal(units)
    whole, frac = divmod(abs(units), 10**precision)
    frac_text = f"{frac:0{precision}d}".rstrip("0") or "0"
    return Decimal(f"{'-' if units < 0 else ''}{whole}.{frac_text}")


class SymbolMarket:
    """Book and trades of one pair, advanced one step at a time."""

    def __init__(self, symbol: str, price_precision: int, qty_precision: int, *, seed: int, levels: int = 25):
        if levels < _NEAR:
            raise ValueError(f"depth_levels must be at least {_NEAR}, got {levels}")
        self.symbol = symbol
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.levels = levels
        self.rng = random.Random(f"{seed}:{symbol}")
        base = symbol.split("/")[0]
        start = _START.get(base) or self.rng.randint(1, 500)
        # At least 10,000 ticks from zero, so the walk never runs the bids into a non-positive price.
        mid = max(start * 10**price_precision, 10_000)
        self._min_units = max(1, 10**qty_precision // 1000)
        self._max_units = 5 * 10**qty_precision
        self.bids: dict[int, int] = {}  # tick → units
        self.asks: dict[int, int] = {}
        tick = mid
        for _ in range(levels):
            tick -= self.rng.randint(1, 3)
            self.bids[tick] = self._qty()
        tick = mid
        for _ in range(levels):
            tick += self.rng.randint(1, 3)
            self.asks[tick] = self._qty()
        self.next_trade_id = 1
        self.trades_generated = 0
        self.open = self.last = mid
        self.low = self.high = mid
        self.volume = 0  # units
        self._notional = 0  # sum of ticks * units

    def _qty(self) -> int:
        return self.rng.randint(self._min_units, self._max_units)

    # ------------------------------------------------------------------------------------------- steps

    def step_book(self) -> None:
        """Change the book near the top: a new quantity, a removed or inserted level, or a price drift."""
        rng = self.rng
        r = rng.random()
        is_bid = rng.random() < 0.5
        side = self.bids if is_bid else self.asks
        near = sorted(side, reverse=is_bid)[:_NEAR]
        if r < 0.55:
            side[rng.choice(near)] = self._qty()
        elif r < 0.75:
            del side[rng.choice(near)]
        elif r < 0.95:
            self._insert(is_bid, near[-1] if near else None)
        else:
            self._drift(is_bid)
        self._refill()

    def _insert(self, is_bid: bool, outer: int | None) -> None:
        best_bid, best_ask = max(self.bids, default=None), min(self.asks, default=None)
        if is_bid:
            lo = (outer if outer is not None else (best_ask or 2) - 10) + 1
            hi = best_ask - 1 if best_ask is not None else lo + 10
        else:
            hi = (outer if outer is not None else (best_bid or 0) + 10) - 1
            lo = best_bid + 1 if best_bid is not None else hi - 10
        if lo > hi or lo < 1:
            return
        tick = self.rng.randint(lo, hi)
        (self.bids if is_bid else self.asks)[tick] = self._qty()

    def _drift(self, up: bool) -> None:
        """The best level of one side is taken out and the other side steps into the gap."""
        if up and len(self.asks) > 1:
            del self.asks[min(self.asks)]
            tick = max(self.bids) + 1
            if tick < min(self.asks):
                self.bids[tick] = self._qty()
        elif not up and len(self.bids) > 1:
            del self.bids[max(self.bids)]
            tick = min(self.asks) - 1
            if tick > max(self.bids) and tick > 0:
                self.asks[tick] = self._qty()

    def _refill(self) -> None:
        """Keep exactly ``levels`` levels per side, adding or dropping at the far end."""
        for side, sign in ((self.bids, -1), (self.asks, 1)):
            while len(side) > self.levels:
                del side[min(side) if sign < 0 else max(side)]
            while len(side) < self.levels:
                worst = (min(side) if sign < 0 else max(side)) if side else self.last
                tick = worst + sign * self.rng.randint(1, 3)
                if tick < 1:
                    break
                side[tick] = self._qty()

    def make_trade(self, timestamp: str) -> dict:
        """A taker hitting the best opposite level, as the ``data`` item of a ``trade`` message."""
        rng = self.rng
        side = "buy" if rng.random() < 0.5 else "sell"
        price = min(self.asks) if side == "buy" else max(self.bids)
        level = (self.asks if side == "buy" else self.bids)[price]
        qty = rng.randint(self._min_units, max(self._min_units, level))
        ord_type = "market" if rng.random() < 0.7 else "limit"
        trade_id = self.next_trade_id
        self.next_trade_id += 1
        self.trades_generated += 1
        self.last = price
        self.low, self.high = min(self.low, price), max(self.high, price)
        self.volume += qty
        self._notional += price * qty
        return {"symbol": self.symbol, "side": side, "price": self.price(price), "qty": self.qty(qty),
                "ord_type": ord_type, "trade_id": trade_id, "timestamp": timestamp}  # fmt: skip

    # ------------------------------------------------------------------------------------------- views

    def price(self, ticks: int) -> Decimal:
        return wire_decimal(ticks, self.price_precision)

    def qty(self, units: int) -> Decimal:
        return wire_decimal(units, self.qty_precision)

    def view(self, depth: int) -> tuple[dict[int, int], dict[int, int]]:
        """The top ``depth`` levels per side, as a client subscribed at that depth holds them."""
        bids = {t: self.bids[t] for t in sorted(self.bids, reverse=True)[:depth]}
        asks = {t: self.asks[t] for t in sorted(self.asks)[:depth]}
        return bids, asks

    def wire_levels(self, levels: Iterable[tuple[int, int]]) -> list[dict[str, Decimal]]:
        """(ticks, units) pairs as Kraken's ``[{"price": …, "qty": …}]``."""
        return [{"price": self.price(t), "qty": self.qty(u)} for t, u in levels]

    def checksum(self) -> int:
        """Kraken's checksum of the current book, via :func:`ingesters.kraken.book.checksum`."""
        bids = [(self.price(t), self.qty(u)) for t, u in self.bids.items()]
        asks = [(self.price(t), self.qty(u)) for t, u in self.asks.items()]
        return checksum(bids, asks, self.price_precision, self.qty_precision)

    def ticker(self) -> dict[str, object]:
        best_bid, best_ask = max(self.bids), min(self.asks)
        exp = Decimal(1).scaleb(-self.price_precision)
        vwap = (
            (Decimal(self._notional) / self.volume).quantize(Decimal(1)).scaleb(-self.price_precision)
            if self.volume
            else self.price(self.last)
        )
        change = self.last - self.open
        return {
            "symbol": self.symbol,
            "bid": self.price(best_bid),
            "bid_qty": self.qty(self.bids[best_bid]),
            "ask": self.price(best_ask),
            "ask_qty": self.qty(self.asks[best_ask]),
            "last": self.price(self.last),
            "volume": self.qty(self.volume),
            "vwap": vwap.quantize(exp),
            "low": self.price(self.low),
            "high": self.price(self.high),
            "change": self.price(change),
            "change_pct": (Decimal(change * 100) / self.open).quantize(Decimal("0.01")),
        }


def diff_view(old: tuple[dict[int, int], dict[int, int]], new: tuple[dict[int, int], dict[int, int]]):
    """Levels to send so a client holding ``old`` ends with ``new``: changes, then removals as qty 0."""
    out = []
    for before, after in zip(old, new, strict=True):
        changes = [(t, u) for t, u in after.items() if before.get(t) != u]
        changes.extend((t, 0) for t in before if t not in after)
        out.append(changes)
    return out[0], out[1]


#: Precisions the simulator gives a pair listed without them (by base asset; Kraken's values).
DEFAULT_PRECISIONS = {"BTC": (1, 8), "ETH": (2, 8), "SOL": (2, 8), "XRP": (5, 8), "ADA": (6, 8), "LTC": (2, 8)}


def with_precisions(symbols: dict[str, tuple[int, int]] | list[str]) -> dict[str, tuple[int, int]]:
    """Pairs → (price_precision, qty_precision); a plain list gets :data:`DEFAULT_PRECISIONS` (else 2 and 8)."""
    if isinstance(symbols, dict):
        return dict(symbols)
    return {s: DEFAULT_PRECISIONS.get(s.split("/")[0], (2, 8)) for s in symbols}


def instrument_data(markets: dict[str, SymbolMarket]) -> dict[str, list[dict]]:
    """The ``data`` object of an ``instrument`` snapshot describing ``markets``."""
    assets: dict[str, dict] = {}
    pairs = []
    for sym, m in markets.items():
        base, quote = sym.split("/")
        for asset in (base, quote):
            assets[asset] = {"id": asset, "status": "enabled", "precision": 10, "precision_display": 5}
        step, lot = m.price(1), m.qty(1)
        pairs.append(
            {
                "symbol": sym,
                "base": base,
                "quote": quote,
                "status": "online",
                "qty_precision": m.qty_precision,
                "qty_increment": lot,
                "price_precision": m.price_precision,
                "cost_precision": 5,
                "marginable": False,
                "has_index": True,
                "cost_min": Decimal("0.5"),
                "tick_size": step,
                "price_increment": step,
                "qty_min": lot,
            }
        )
    return {"assets": list(assets.values()), "pairs": pairs}
