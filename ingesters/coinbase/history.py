"""Coinbase's history source for ``pulse repair`` (:class:`pulse.venues.HistorySource`): the public market trades of
a product over REST (``GET /api/v3/brokerage/market/products/{product_id}/ticker``, :mod:`ingesters.coinbase.rest`),
as the :class:`~pulse.models.Trade` events the live stream would have published: the venue's ``trade_id`` (so a
refill never stores a trade twice), its time to the nanosecond, the aggressor ``side`` (the other one than Coinbase's
maker ``side``), ``seq`` 0 and ``ts_recv`` the fetch time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ingesters.coinbase.parser import aggressor
from ingesters.coinbase.rest import CoinbaseRest, RestFailure
from ingesters.coinbase.symbols import resolve
from pulse.models import Trade

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO, _MAX = Decimal(0), Decimal("1e30")


def _ns(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


async def fetch_history(settings: Any, symbol: str, start: datetime, end: datetime) -> list[Trade]:
    """Coinbase's trades of ``symbol`` with ``start <= time < end``, oldest first; :class:`RestFailure` (a
    :class:`~pulse.errors.PulseError`) when the source failed or answered something malformed."""
    c = settings.venue("coinbase")
    s = resolve(symbol)
    rest = CoinbaseRest(c.rest_url, timeout_s=c.rest_timeout_s)
    try:
        rows = await rest.trades(s.venue_symbol, _ns(start), _ns(end))
    finally:
        await rest.close()
    now = time.time_ns()
    out = []
    for ns, t in rows:
        if not (_ZERO < t.price < _MAX and _ZERO < t.size < _MAX) or not t.trade_id or len(t.trade_id) > 64:
            raise RestFailure(f"malformed Coinbase trade {t.trade_id[:40]!r}: price={t.price} size={t.size}")
        out.append(Trade(venue="coinbase", symbol=s.symbol, ts_event=ns, ts_recv=now, seq=0, price=t.price,
                         size=t.size, side=aggressor(t.side), trade_id=t.trade_id))  # fmt: skip
    return out
