"""Market calendars: when a venue's market is open (a core contract: venues declare theirs, ingesters sleep
through closes, ``pulse status`` and ``stale_feed`` alert rules do not count a closed market's silence).

A :class:`Calendar` answers ``is_open(ts)``; :data:`ALWAYS` is a market that never closes (crypto), and
:class:`FxSchedule` the FX week. :data:`OANDA_FX` is OANDA's FX hours, exact across US daylight-saving changes.

The rule (OANDA, "Hours of operation", oanda.com/us-en/trading/hours-of-operation/, table row "All FX
products — New York — Sun-Fri: 17:03 - 16:58", footnote "FX trading will be closed from 16:58 until 17:03
(New York time) daily"; OANDA support: "Trading is available from approximately 5p.m. Sunday to 5p.m. Friday
(New York time)"):

* the **week** opens Sunday 17:03 and closes Friday 16:58, New York wall-clock time;
* every trading day has a **rollover pause** from 16:58 to 17:03 New York time (Monday to Thursday; on
  Friday it coincides with the weekly close, on Sunday with the open);
* NZD pairs have one more 5-minute pause starting 06:58 Auckland time ("12:58 New York time" — the
  Auckland wall-clock time is what stays fixed, so it is computed in Pacific/Auckland).

New York time is ``America/New_York`` from :mod:`zoneinfo`, so the UTC instants move with US DST: in an
EDT (summer) week the weekly close is 20:58 UTC and the open 21:03 UTC; in an EST (winter) week 21:58 and
22:03 UTC. US DST changes at 02:00 local on a Sunday, hours before the 17:03 open, so every open and close
is an unambiguous wall-clock time. :data:`NOMINAL_FX` is the round "17:00 to 17:00" rule many sources quote
(21:00 / 22:00 UTC) for callers that want it.

Not modelled: holiday closures and OANDA's ad-hoc maintenance windows. The ``tradeable`` flag on each price
is the ground truth; these functions are for planning (whether silence is expected, when to look again).

How the ingester should use this: stay connected through the daily rollover pause — OANDA keeps the stream
open and sends non-tradeable prices and heartbeats — and only treat the weekend (``not is_open``) as
"market closed" (publish a ``market_closed`` status, relax the stale-data alarm, keep reconnecting slowly).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "ALWAYS",
    "NEW_YORK",
    "NOMINAL_FX",
    "OANDA_FX",
    "AlwaysOpen",
    "Calendar",
    "FxSchedule",
    "in_daily_break",
    "is_open",
    "is_trading",
    "next_close",
    "next_open",
]

NEW_YORK = ZoneInfo("America/New_York")
AUCKLAND = ZoneInfo("Pacific/Auckland")

_SUNDAY = 6
_FRIDAY = 4
_SATURDAY = 5


class Calendar(Protocol):
    """When a market is open. ``ts`` is an aware datetime."""

    def is_open(self, ts: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class AlwaysOpen:
    """A market that never closes (crypto venues)."""

    def is_open(self, ts: datetime) -> bool:
        return True


#: the calendar of a market that never closes
ALWAYS = AlwaysOpen()


@dataclass(frozen=True, slots=True)
class FxSchedule:
    """Weekly session and daily pause, as New York wall-clock times.

    The week runs from Sunday ``open_at`` to Friday ``close_at``; each day pauses from ``close_at`` to
    ``open_at``. ``nzd_break`` is the extra pause for NZD pairs in Auckland wall-clock time (start, end).
    """

    open_at: time = time(17, 3)
    close_at: time = time(16, 58)
    nzd_break: tuple[time, time] | None = (time(6, 58), time(7, 3))

    def __post_init__(self) -> None:
        if self.close_at > self.open_at:
            raise ValueError("close_at must not be later than open_at (the pause is close_at..open_at)")

    def is_open(self, ts: datetime) -> bool:
        """The :class:`Calendar` method: :func:`is_open` with this schedule."""
        return is_open(ts, self)


#: OANDA's documented FX hours (see the module docstring for sources).
OANDA_FX = FxSchedule()
#: The round-number rule: Sunday 17:00 to Friday 17:00 New York, no daily pause.
NOMINAL_FX = FxSchedule(open_at=time(17, 0), close_at=time(17, 0), nzd_break=None)


def _local(ts: datetime) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"market-hours functions need an aware datetime, got naive {ts.isoformat()}")
    return ts.astimezone(NEW_YORK)


def is_open(ts: datetime, schedule: FxSchedule = OANDA_FX) -> bool:
    """True between the weekly open (Sunday) and the weekly close (Friday); the daily pause counts as open.

    The interval is half-open: open at exactly the opening instant, closed at exactly the closing instant.
    """
    local = _local(ts)
    wd, t = local.weekday(), local.time()
    if wd == _SATURDAY:
        return False
    if wd == _SUNDAY:
        return t >= schedule.open_at
    if wd == _FRIDAY:
        return t < schedule.close_at
    return True


def in_daily_break(ts: datetime, schedule: FxSchedule = OANDA_FX, instrument: str | None = None) -> bool:
    """True inside the rollover pause (close_at..open_at New York) on a trading day, or — for an NZD pair
    named by ``instrument`` (``NZD_USD``) — inside its extra Auckland-morning pause. False on the weekend."""
    if not is_open(ts, schedule):
        return False
    local = _local(ts)
    if schedule.close_at <= local.time() < schedule.open_at:
        return True
    if instrument is not None and schedule.nzd_break is not None and "NZD" in instrument.split("_"):
        start, end = schedule.nzd_break
        return start <= ts.astimezone(AUCKLAND).time() < end
    return False


def is_trading(ts: datetime, schedule: FxSchedule = OANDA_FX, instrument: str | None = None) -> bool:
    """``is_open`` and not in a daily pause: when OANDA should be sending tradeable prices."""
    return is_open(ts, schedule) and not in_daily_break(ts, schedule, instrument)


def _next_weekly(ts: datetime, weekday: int, at: time) -> datetime:
    local = _local(ts)
    day = local.date() + timedelta(days=(weekday - local.weekday()) % 7)
    candidate = datetime.combine(day, at, tzinfo=NEW_YORK)
    if candidate <= ts:
        # Re-combine a week later rather than adding 168 h: the UTC offset may differ by then.
        candidate = datetime.combine(day + timedelta(days=7), at, tzinfo=NEW_YORK)
    return candidate.astimezone(UTC)


def next_open(ts: datetime, schedule: FxSchedule = OANDA_FX) -> datetime:
    """The first weekly open strictly after ``ts`` (a Sunday, New York time), as an aware UTC datetime."""
    return _next_weekly(ts, _SUNDAY, schedule.open_at)


def next_close(ts: datetime, schedule: FxSchedule = OANDA_FX) -> datetime:
    """The first weekly close strictly after ``ts`` (a Friday, New York time), as an aware UTC datetime."""
    return _next_weekly(ts, _FRIDAY, schedule.close_at)
