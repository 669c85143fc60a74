"""Kraken v2 level-2 book maintenance and its CRC32 checksum.

Checksum (Kraken's "Book checksum (WebSocket v2)" guide): take the top 10 asks from lowest price up, then the
top 10 bids from highest price down; for each level write price then quantity, each formatted with the pair's
``price_precision`` / ``qty_precision`` decimals, decimal point removed and leading zeros stripped
(``45285.2`` → ``452852``, ``0.00100000`` → ``100000``); concatenate everything and take the unsigned CRC32.
The precision matters because Kraken sends JSON numbers, which drop trailing zeros (``0.566`` is ``0.5660``).

:class:`OrderBook` keeps each side as a dict (price → qty) plus a list of prices kept sorted with ``bisect``, so
an update costs O(log n) search plus a memmove, never a re-sort; the checksum text of each level is cached
until that level changes, so verifying an update formats only the levels it touched.
"""

from __future__ import annotations

import heapq
import zlib
from bisect import bisect_left
from collections.abc import Iterable
from decimal import Decimal

#: Levels per side the checksum covers, whatever the subscribed depth.
CHECKSUM_LEVELS = 10

Pair = tuple[Decimal, Decimal]  # (price, qty)


def level_digits(value: Decimal, precision: int) -> str:
    """``value`` written with ``precision`` decimals, point removed, leading zeros stripped (checksum text)."""
    text = str(value)  # the fast path: Decimal's own digits, padded — no rounding needed
    if "E" not in text:
        whole, _, frac = text.partition(".")
        short = precision - len(frac)
        if short >= 0:
            return (whole + frac + "0" * short).lstrip("0")
    # More decimals than the precision (Kraken rounds) or exponent notation: let format() do it.
    return format(value, f".{precision}f").replace(".", "").lstrip("0")


def checksum(bids: Iterable[Pair], asks: Iterable[Pair], price_precision: int, qty_precision: int) -> int:
    """Kraken v2 book checksum of ``(price, qty)`` levels, given in any order (only the best 10 count)."""
    top_asks = heapq.nsmallest(CHECKSUM_LEVELS, asks)
    top_bids = heapq.nlargest(CHECKSUM_LEVELS, bids)
    text = "".join(level_digits(p, price_precision) + level_digits(q, qty_precision) for p, q in (*top_asks, *top_bids))
    return zlib.crc32(text.encode("ascii"))


class OrderBook:
    """One pair's book, truncated to ``depth`` levels per side after every snapshot and update.

    Levels are ``(price, qty)`` pairs of :class:`Decimal`. A qty of 0 in an update removes the level (and is
    ignored if the level is absent, as Kraken may announce removals of levels we already truncated away).
    :meth:`checksum` needs the pair's precisions (constructor or :meth:`set_precision`).

    Each side is three aligned lists sorted by price ascending (best bid last, best ask first): prices,
    quantities, and each level's checksum text ("" until needed; real text is never empty). The checksum
    bytes of each side's top 10 are cached too and rebuilt only when an update touches the top 10.
    """

    __slots__ = (
        "_ask_p",
        "_ask_q",
        "_ask_t",
        "_ask_top",
        "_bid_p",
        "_bid_q",
        "_bid_t",
        "_bid_top",
        "_pp",
        "_ptext",
        "_qp",
        "depth",
    )

    def __init__(self, depth: int = 10, price_precision: int | None = None, qty_precision: int | None = None):
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self.depth = depth
        self._bid_p: list[Decimal] = []
        self._bid_q: list[Decimal] = []
        self._bid_t: list[str] = []
        self._ask_p: list[Decimal] = []
        self._ask_q: list[Decimal] = []
        self._ask_t: list[str] = []
        self._bid_top: bytes | None = None
        self._ask_top: bytes | None = None
        self._pp: int | None = None
        self._qp: int | None = None
        self._ptext: dict[Decimal, str] = {}  # price → its checksum digits, kept while the precision holds
        if price_precision is not None and qty_precision is not None:
            self.set_precision(price_precision, qty_precision)

    # ------------------------------------------------------------------------------------------ mutation

    def set_precision(self, price_precision: int, qty_precision: int) -> None:
        """Set the decimals used to format levels for the checksum (drops cached checksum text)."""
        if price_precision < 0 or qty_precision < 0:
            raise ValueError("precisions must be non-negative")
        self._pp, self._qp = price_precision, qty_precision
        self._ptext = {}
        self._bid_t[:] = [""] * len(self._bid_p)
        self._ask_t[:] = [""] * len(self._ask_p)
        self._bid_top = self._ask_top = None

    def clear(self) -> None:
        for side in (self._bid_p, self._bid_q, self._bid_t, self._ask_p, self._ask_q, self._ask_t):
            side.clear()
        self._bid_top = self._ask_top = None

    def apply_snapshot(self, bids: Iterable[Pair], asks: Iterable[Pair]) -> None:
        """Replace the book; zero-qty levels are skipped, then both sides are truncated to ``depth``."""
        self.clear()
        for prices, qtys, texts, pairs in (
            (self._bid_p, self._bid_q, self._bid_t, bids),
            (self._ask_p, self._ask_q, self._ask_t, asks),
        ):
            levels = {price: qty for price, qty in pairs}  # a repeated price: the last one wins
            for price in sorted(levels):
                if levels[price]:
                    prices.append(price)
                    qtys.append(levels[price])
            texts.extend([""] * len(prices))
        self._truncate()

    def apply_update(self, bids: Iterable[Pair], asks: Iterable[Pair]) -> None:
        """Apply changed levels in order (qty 0 deletes), then truncate both sides to ``depth``."""
        prices, qtys, texts = self._bid_p, self._bid_q, self._bid_t
        top_changed = False
        for price, qty in bids:
            i = bisect_left(prices, price)
            n = len(prices)
            if i < n and prices[i] == price:
                if qty:
                    qtys[i] = qty
                    texts[i] = ""
                else:
                    del prices[i], qtys[i], texts[i]
                top_changed = top_changed or i >= n - CHECKSUM_LEVELS
            elif qty:
                prices.insert(i, price)
                qtys.insert(i, qty)
                texts.insert(i, "")
                top_changed = top_changed or i > n - CHECKSUM_LEVELS
        if top_changed:
            self._bid_top = None
        prices, qtys, texts = self._ask_p, self._ask_q, self._ask_t
        top_changed = False
        for price, qty in asks:
            i = bisect_left(prices, price)
            if i < len(prices) and prices[i] == price:
                if qty:
                    qtys[i] = qty
                    texts[i] = ""
                else:
                    del prices[i], qtys[i], texts[i]
            elif qty:
                prices.insert(i, price)
                qtys.insert(i, qty)
                texts.insert(i, "")
            else:
                continue
            top_changed = top_changed or i < CHECKSUM_LEVELS
        if top_changed:
            self._ask_top = None
        if len(self._bid_p) > self.depth or len(prices) > self.depth:
            self._truncate()

    def _truncate(self) -> None:
        depth = self.depth
        extra = len(self._bid_p) - depth
        if extra > 0:  # worst bids are at the front
            del self._bid_p[:extra], self._bid_q[:extra], self._bid_t[:extra]
            if depth < CHECKSUM_LEVELS:
                self._bid_top = None
        if len(self._ask_p) > depth:  # worst asks are at the back
            del self._ask_p[depth:], self._ask_q[depth:], self._ask_t[depth:]
            if depth < CHECKSUM_LEVELS:
                self._ask_top = None

    # -------------------------------------------------------------------------------------------- reads

    def best_bid(self) -> Pair | None:
        return (self._bid_p[-1], self._bid_q[-1]) if self._bid_p else None

    def best_ask(self) -> Pair | None:
        return (self._ask_p[0], self._ask_q[0]) if self._ask_p else None

    def top(self) -> tuple[Pair | None, Pair | None]:
        """(best bid, best ask) in one call."""
        bids, asks = self._bid_p, self._ask_p
        return (
            (bids[-1], self._bid_q[-1]) if bids else None,
            (asks[0], self._ask_q[0]) if asks else None,
        )

    def bids(self, n: int | None = None) -> list[Pair]:
        """Bid levels, best (highest) first; at most ``n``."""
        lo = 0 if n is None else max(len(self._bid_p) - n, 0)
        return list(zip(reversed(self._bid_p[lo:]), reversed(self._bid_q[lo:]), strict=True))

    def asks(self, n: int | None = None) -> list[Pair]:
        """Ask levels, best (lowest) first; at most ``n``."""
        hi = len(self._ask_p) if n is None else max(n, 0)
        return list(zip(self._ask_p[:hi], self._ask_q[:hi], strict=True))

    def __len__(self) -> int:
        return max(len(self._bid_p), len(self._ask_p))

    def checksum(self) -> int:
        """The Kraken checksum of the current top 10 levels per side (same result as :func:`checksum`)."""
        if self._pp is None or self._qp is None:
            raise ValueError("book precision unknown: call set_precision first")
        asks = self._ask_top
        if asks is None:
            asks = self._ask_top = self._top_text(self._ask_p, self._ask_q, self._ask_t, 0, False)
        bids = self._bid_top
        if bids is None:
            lo = max(len(self._bid_p) - CHECKSUM_LEVELS, 0)
            bids = self._bid_top = self._top_text(self._bid_p, self._bid_q, self._bid_t, lo, True)
        return zlib.crc32(bids, zlib.crc32(asks))

    def _top_text(self, prices: list, qtys: list, texts: list[str], lo: int, reverse: bool) -> bytes:
        top = texts[lo : lo + CHECKSUM_LEVELS]
        missing = top.count("")
        if missing:
            pp, qp, ptexts = self._pp, self._qp, self._ptext
            j = -1
            for _ in range(missing):
                j = top.index("", j + 1)
                price = prices[lo + j]
                ptext = ptexts.get(price)
                if ptext is None:
                    if len(ptexts) >= 4096:
                        ptexts.clear()
                    ptext = ptexts[price] = level_digits(price, pp)  # type: ignore[arg-type]
                top[j] = texts[lo + j] = ptext + level_digits(qtys[lo + j], qp)  # type: ignore[arg-type]
        if reverse:
            top.reverse()
        return "".join(top).encode("ascii")
