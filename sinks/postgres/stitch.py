"""Chart intervals built on the one below, and one series stitched from history and a live stream.

**Intervals.** ``1s 1m 5m 15m 1h 4h 12h 1d 1w``. The database computes ``1s 1m 5m 1h 1d`` (SQL, or TimescaleDB's
hierarchical continuous aggregates); ``15m`` is built from ``5m``, ``4h`` from ``1h``, ``12h`` from ``4h`` and
``1w`` from ``1d`` by :func:`rollup`: open of the first, close of the last, highest high, lowest low, summed
volume and ticks — exactly what one query over the raw rows gives (tested). Buckets are UTC-aligned; weeks
start on Monday 00:00 UTC.

**Stitching** (``venue`` not given and two venues have data for the symbol in the range, e.g. EUR/USD from a
Dukascopy backfill and the OANDA live stream). The *live* source is the one whose data reaches later (on a
tie, the one that starts later); the other is *history*. The seam is an hour boundary::

    seam = min(ceil_to_hour(live's first row), floor_to_hour(history's last row) + 1 h)

Rows before the seam come from history only, rows from the seam on from the live source only. So the live
source takes over at the first whole hour it covers, or earlier where history has nothing more; no row is
counted twice, and no bucket is left out that either source could fill after the seam or history before it.
Buckets up to 1 h never straddle the seam (it is on an hour boundary); longer ones are built from the stitched
hours. Three venues or more are refused: pass ``venue``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sinks.postgres.candles import CandleRow

#: every chart interval, finest first, in seconds
CHART_INTERVALS: dict[str, int] = {
    "1s": 1, "1m": 60, "5m": 300, "15m": 900, "1h": 3_600, "4h": 14_400, "12h": 43_200, "1d": 86_400,
    "1w": 604_800,
}  # fmt: skip
#: intervals not computed by the database: each is rolled up from this finer one
BUILT_ON: dict[str, str] = {"15m": "5m", "4h": "1h", "12h": "4h", "1w": "1d"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEK_ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)  # a Monday
_HOUR = timedelta(hours=1)


def origin(seconds: int) -> datetime:
    """Where buckets of this width are counted from: Monday 1970-01-05 for weeks, the epoch otherwise."""
    return WEEK_ORIGIN if seconds == CHART_INTERVALS["1w"] else EPOCH


def rollup(rows: Iterable[CandleRow], seconds: int) -> list[CandleRow]:
    """Merge time-ordered finer candles into ``seconds``-wide buckets (each finer bucket lies inside one)."""
    from sinks.postgres.candles import CandleRow, floor_time

    out: list[CandleRow] = []
    for r in rows:
        bucket = floor_time(r.bucket, seconds)
        if out and out[-1].bucket == bucket:
            last = out[-1]
            volume = None if last.volume is None or r.volume is None else last.volume + r.volume
            out[-1] = CandleRow(
                bucket, last.open, max(last.high, r.high), min(last.low, r.low), r.close, volume, last.ticks + r.ticks
            )
        else:
            out.append(CandleRow(bucket, r.open, r.high, r.low, r.close, r.volume, r.ticks))
    return out


@dataclass(frozen=True, slots=True)
class Seam:
    """History (``before``) up to ``at``, the live source (``after``) from ``at`` on."""

    before: str
    after: str
    at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"history": self.before, "live": self.after, "seam": self.at.isoformat()}


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(t: datetime) -> datetime:
    f = _floor_hour(t)
    return f if f == t else f + _HOUR


def find_seam(extents: dict[str, tuple[datetime, datetime]]) -> Seam:
    """The seam between two venues given each one's (first row, last row) time in the range."""
    (a, (af, al)), (b, (bf, bl)) = sorted(extents.items())
    live_is_b = (bl, bf) > (al, af) or ((bl, bf) == (al, af) and b > a)
    (hist, (_, hist_last)), (live, (live_first, _)) = ((a, (af, al)), (b, (bf, bl)))[:: 1 if live_is_b else -1]
    return Seam(hist, live, min(_ceil_hour(live_first), _floor_hour(hist_last) + _HOUR))
