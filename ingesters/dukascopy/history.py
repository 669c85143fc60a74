"""Dukascopy as a history source (``pulse repair``) and as a market calendar per instrument.

:func:`fetch_history` runs the backfill driver (:func:`ingesters.dukascopy.backfill.backfill`: the same feeds,
downloads, decoders and deterministic ``seq`` numbers as ``pulse backfill dukascopy``) over the whole hours that
hold ``[start, end)`` and returns the ticks in the range as :class:`~pulse.models.Quote` events, instead of
publishing them. Its checkpoints live in a temporary directory: a repair asks Dukascopy again whatever a backfill
recorded (a checkpoint says an hour was published, not that it was stored). A refetched tick is the row a backfill
stored, key for key, so storing it again adds nothing.

:func:`calendar` is an instrument's market hours from Dukascopy's weekly close (currency pairs: Friday 17:00 to
Sunday 17:00 New York; metals and indices their own; crypto never closes).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ingesters.dukascopy.backfill import CheckpointStore, backfill
from ingesters.dukascopy.instruments import WeeklyClose, lookup
from pulse.calendars import ALWAYS, Calendar
from pulse.errors import PulseError
from pulse.models import Quote

_HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class WeeklyCloseCalendar:
    """Open except inside the instrument's weekly close."""

    close: WeeklyClose

    def is_open(self, ts: datetime) -> bool:
        return not self.close.covers(ts, ts + timedelta(microseconds=1))


def calendar(symbol: str) -> Calendar:
    """The market hours of a Dukascopy instrument (``SymbolError`` for one Dukascopy does not list)."""
    inst = lookup(symbol)
    return ALWAYS if inst.weekly_close is None else WeeklyCloseCalendar(inst.weekly_close)


def _ns(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


async def fetch_history(settings: Any, symbol: str, start: datetime, end: datetime) -> list[Quote]:
    """Dukascopy's ticks of ``symbol`` with ``start <= ts_event < end`` as Quote events, in time order.

    Raises :class:`PulseError` when an hour failed (after the downloader's retries) or when every hour asked for
    was missing (404: usually a wrong ``dukascopy.base_url`` or feed)."""
    from ingesters.dukascopy.service import _feed_and_url

    inst = lookup(symbol)
    lo = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hi = end.astimezone(UTC)
    if hi.replace(minute=0, second=0, microsecond=0) != hi:
        hi = hi.replace(minute=0, second=0, microsecond=0) + _HOUR
    feed, url = _feed_and_url(settings, None, None)
    quotes: list[Quote] = []
    with tempfile.TemporaryDirectory(prefix="pulse-repair-") as tmp, CheckpointStore(tmp) as store:
        report = await backfill(
            inst.code, lo, hi, base_url=url, feed=feed, publish=quotes.append, checkpoint=store,
            concurrency=settings.venue("dukascopy").concurrency,
        )  # fmt: skip
    if report.hours_failed:
        raise PulseError(f"dukascopy {inst.code}: {report.error}: {report.failures[:3]}")
    if report.nothing_found and report.hours_not_found:
        raise PulseError(f"dukascopy {inst.code}: {report.error}")
    lo_ns, hi_ns = _ns(start), _ns(end)
    return [q for q in quotes if lo_ns <= q.ts_event < hi_ns]
