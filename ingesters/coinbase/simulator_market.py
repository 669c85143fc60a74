"""The market behind the local Coinbase venue (one seeded random walk per product) and its fault plan.

Each product keeps an L2 book in integer ticks (price · 10**price_precision) and units (size · 10**size_precision),
so nothing is rounded; values are written as plain decimals with the product's precision (``"60012.34"``,
``"0.12345678"``). A book step changes one or two levels near the top and returns them (what one ``l2_data`` update
event carries); a trade takes the next trade id at the touch. Given the seed, a product's books and trades depend only
on the steps asked of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ingesters.base.sim_market import RandomWalkBook

_START = {"BTC": 60000, "ETH": 3000, "SOL": 150, "DOGE": 1}


@dataclass
class FaultPlan:
    """Faults the local venue injects, per connection. "Data messages" are ``l2_data``, ``market_trades`` and
    ``ticker`` messages, counted per connection; connections are numbered from 1 in the order they are accepted.
    ``max_*`` caps a total over all connections. Each fault is counted in ``CoinbaseSimulator.stats`` when it
    actually happens."""

    disconnect_after: int | None = None  # close each listed connection after its N-th data message
    disconnect_connections: tuple[int, ...] = (1,)
    malformed_every: int | None = None  # one malformed message after every N-th data message of a connection
    max_malformed: int | None = None
    skip_sequence_every: int | None = None  # every N-th level2 update of a connection is lost: never sent, but its
    max_skips: int | None = None  # sequence_num is used up (the client sees the jump)
    stall_after: int | None = None  # after its N-th data message a listed connection goes silent (no data, no
    stall_connections: tuple[int, ...] = (1,)  # heartbeats) for stall_s seconds
    stall_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("disconnect_after", "malformed_every", "skip_sequence_every", "stall_after"):
            v = getattr(self, name)
            if v is not None and (type(v) is not int or v < 1):
                raise ValueError(f"FaultPlan.{name} must be an integer >= 1 or None, got {v!r}")


#: malformed messages, cycled; each is refused by a Coinbase parser without touching its state. The last two are
#: hostile: JSON nested 1,000 deep and a binary frame that is not UTF-8. None of them carries a sequence_num.
MALFORMED_FRAMES: tuple[str | bytes, ...] = (
    '{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","events":[{"type":"upd',
    '{"channel":"l2_data","events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"middle"}]}]}',
    "not json at all",
    '{"channel":"ticker","events":' + "[" * 1000 + "]" * 1000 + "}",
    b'{"channel":"\xff\xfe","events":[]}',
)


def wire(units: int, precision: int) -> str:
    """``units`` · 10**-precision as a plain decimal string with ``precision`` decimals."""
    if precision == 0:
        return str(units)
    whole, frac = divmod(units, 10**precision)
    return f"{whole}.{frac:0{precision}d}"


@dataclass(frozen=True, slots=True)
class SentTrade:
    """A trade as the venue sent it (values as on the wire)."""

    symbol: str  # canonical
    trade_id: str
    price: Decimal
    size: Decimal
    side: str  # the taker's (aggressor's) side, lower case; the wire carries the maker's: the other one


class ProductMarket(RandomWalkBook):
    """Book, trades and 24 h figures of one product, advanced one step at a time."""

    BID, ASK = "bid", "offer"
    START = _START
    _wire = staticmethod(wire)

    def __init__(
        self, symbol: str, product_id: str, price_precision: int, size_precision: int, *, seed: int, levels: int = 30
    ) -> None:
        super().__init__(symbol, price_precision, size_precision, seed=seed, levels=levels)
        self.product_id = product_id
        self.trade_id = self.rng.randint(100_000, 900_000)
        self.open = self.last = self.mid
        self.low = self.high = self.mid
        self.volume = 0  # units

    def make_trade(self) -> SentTrade:
        """A trade at the touch."""
        buyer_taker, tick, units = self._touch()
        self.trade_id += 1
        self.last = tick
        self.low, self.high = min(self.low, tick), max(self.high, tick)
        self.volume += units
        return SentTrade(self.symbol, str(self.trade_id), Decimal(wire(tick, self.pp)), Decimal(wire(units, self.sp)),
                         "buy" if buyer_taker else "sell")  # fmt: skip

    # ------------------------------------------------------------------------------------------ views

    def l2_updates(self, changes: list[tuple[str, int, int]], event_time: str) -> list[dict]:
        return [{"side": s, "event_time": event_time, "price_level": wire(t, self.pp), "new_quantity": wire(u, self.sp)}
                for s, t, u in changes]  # fmt: skip

    def l2_snapshot(self, event_time: str) -> list[dict]:
        bids = [("bid", t, u) for t, u in sorted(self.bids.items(), reverse=True)]
        asks = [("offer", t, u) for t, u in sorted(self.asks.items())]
        return self.l2_updates(bids + asks, event_time)

    def ticker(self) -> dict:
        b, bq, a, aq = self.top()
        chg = Decimal(self.last - self.open) * 100 / Decimal(self.open)
        return {
            "type": "ticker",
            "product_id": self.product_id,
            "price": wire(self.last, self.pp),
            "volume_24_h": wire(self.volume, self.sp),
            "low_24_h": wire(self.low, self.pp),
            "high_24_h": wire(self.high, self.pp),
            "low_52_w": wire(self.low, self.pp),
            "high_52_w": wire(self.high, self.pp),
            "price_percent_chg_24_h": f"{chg:.8f}",
            "best_bid": wire(b, self.pp),
            "best_bid_quantity": wire(bq, self.sp),
            "best_ask": wire(a, self.pp),
            "best_ask_quantity": wire(aq, self.sp),
        }

    def product(self) -> dict:
        """This product as ``GET /api/v3/brokerage/market/products`` lists it."""
        base, quote = self.symbol.split("/")
        inc_p, inc_s = wire(1, self.pp), wire(1, self.sp)
        return {
            "product_id": self.product_id,
            "price": wire(self.last, self.pp),
            "base_increment": inc_s,
            "quote_increment": inc_p,
            "price_increment": inc_p,
            "base_min_size": inc_s,
            "base_max_size": "10000",
            "base_currency_id": base,
            "quote_currency_id": quote,
            "status": "online",
            "trading_disabled": False,
            "product_type": "SPOT",
        }
