"""The market behind the local Binance venue (one seeded random walk per symbol) and its fault plan.

Each symbol keeps an L2 book in integer ticks (price · 10**price_precision) and units (qty · 10**size_precision),
so nothing is rounded; values are written the way Binance writes them, with 8 decimals (``"25.35190000"``). Every
book change takes the next order book update id; changes are gathered per symbol until the venue flushes them as
one diff event ``[U, u]`` holding each changed level's final quantity (0 = removed). A trade takes the next trade
id (and aggregate trade id). Given the seed, a symbol's books and trades depend only on the steps asked of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ingesters.base.sim_market import RandomWalkBook

#: share of market steps that are trades (the rest change the book)
TRADE_SHARE = 0.3
_START = {"BTC": 60000, "ETH": 3000, "SOL": 150, "BNB": 600, "XRP": 2}


@dataclass
class FaultPlan:
    """Faults the local venue injects, per connection. "Data messages" are stream events, counted per connection;
    connections are numbered from 1 in the order they are accepted. ``max_*`` caps a total over all connections.
    Each fault is counted in ``BinanceSimulator.stats`` when it actually happens."""

    disconnect_after: int | None = None  # close each listed connection after its N-th data message
    disconnect_connections: tuple[int, ...] = (1,)
    malformed_every: int | None = None  # one malformed frame after every N-th data message of a connection
    max_malformed: int | None = None
    skip_update_every: int | None = None  # every N-th depth diff of a connection is not sent to it (a skipped id)
    max_skips: int | None = None
    reorder_update_every: int | None = None  # every N-th depth diff of a connection is held back and sent right
    max_reorders: int | None = None  # after the next one: the client sees the ids out of order
    stop_ponging_after: int | None = None  # after its N-th data message a listed connection stops reading: no
    stop_ponging_connections: tuple[int, ...] = (1,)  # pongs to the client's pings (data keeps flowing)
    shutdown_after: int | None = None  # a serverShutdown event after the N-th data message of listed connections
    shutdown_connections: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        for name in (
            "disconnect_after",
            "malformed_every",
            "skip_update_every",
            "reorder_update_every",
            "stop_ponging_after",
            "shutdown_after",
        ):
            v = getattr(self, name)
            if v is not None and (type(v) is not int or v < 1):
                raise ValueError(f"FaultPlan.{name} must be an integer >= 1 or None, got {v!r}")


#: malformed frames, cycled; each is rejected by a Binance parser without touching its state. The last two are
#: hostile: JSON nested 1,000 deep and a binary frame that is not UTF-8.
MALFORMED_FRAMES: tuple[str | bytes, ...] = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.0',
    '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":"x","p":"oops","q":"1","T":1,"m":true}}',
    "not json at all",
    '{"stream":"btcusdt@trade","data":' + "[" * 1000 + "]" * 1000 + "}",
    b'{"stream":"\xff\xfe@trade","data":{}}',
)


def wire(units: int, precision: int) -> str:
    """``units`` · 10**-precision written with Binance's 8 decimals."""
    whole, frac = divmod(units, 10**precision)
    return f"{whole}.{frac * 10 ** (8 - precision):08d}"


@dataclass(frozen=True, slots=True)
class SentTrade:
    """A trade as the venue sent it (values as on the wire)."""

    symbol: str  # canonical
    trade_id: int
    price: Decimal
    qty: Decimal
    side: str  # taker side: "sell" when the buyer was the maker


class SymbolMarket(RandomWalkBook):
    """Book and trades of one symbol, advanced one step at a time."""

    START = _START
    MAX_PRECISION = 8
    PRECISION_ERROR = "precisions must be 0..8 (Binance writes 8 decimals)"
    _wire = staticmethod(wire)

    def __init__(
        self, symbol: str, venue_symbol: str, price_precision: int, size_precision: int, *, seed: int, levels: int = 30
    ) -> None:
        super().__init__(symbol, price_precision, size_precision, seed=seed, levels=levels)
        self.venue_symbol = venue_symbol
        self.update_id = self.rng.randint(1_000, 9_000)
        self.trade_id = self.rng.randint(100, 900)
        self.agg_id = self.trade_id // 2
        # changes since the last flushed diff: (side, tick) → units (0 = removed), and the ids they took
        self.pending: dict[tuple[str, int], int] = {}
        self.pending_first = 0

    # ------------------------------------------------------------------------------------------- steps

    def _changed(self, side: str, tick: int, units: int) -> None:
        self.update_id += 1
        if not self.pending:
            self.pending_first = self.update_id
        self.pending[(side, tick)] = units

    def make_trade(self) -> tuple[SentTrade, int]:
        """A trade at the touch; returns it and its aggregate id."""
        buyer_taker, tick, units = self._touch()
        self.trade_id += 1
        self.agg_id += 1
        t = SentTrade(
            self.symbol,
            self.trade_id,
            Decimal(wire(tick, self.pp)),
            Decimal(wire(units, self.sp)),
            "buy" if buyer_taker else "sell",
        )
        return t, self.agg_id

    def take_diff(self) -> tuple[int, int, list[list[str]], list[list[str]]] | None:
        """The changes gathered since the last call as ``(U, u, bids, asks)``, or None."""
        if not self.pending:
            return None
        bids = [[wire(t, self.pp), wire(u, self.sp)] for (s, t), u in self.pending.items() if s == "b"]
        asks = [[wire(t, self.pp), wire(u, self.sp)] for (s, t), u in self.pending.items() if s == "a"]
        first = self.pending_first
        self.pending = {}
        return first, self.update_id, bids, asks

    # ------------------------------------------------------------------------------------------ views

    def snapshot(self, limit: int) -> dict:
        """``GET /api/v3/depth``'s body at the current update id."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {
            "lastUpdateId": self.update_id,
            "bids": [[wire(t, self.pp), wire(u, self.sp)] for t, u in bids],
            "asks": [[wire(t, self.pp), wire(u, self.sp)] for t, u in asks],
        }

    def symbol_info(self) -> dict:
        """This symbol as ``GET /api/v3/exchangeInfo`` lists it."""
        tick, step = wire(1, self.pp), wire(1, self.sp)
        base, quote = self.symbol.split("/")
        return {
            "symbol": self.venue_symbol,
            "status": "TRADING",
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "isSpotTradingAllowed": True,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
            ],
            "permissionSets": [["SPOT"]],
        }
