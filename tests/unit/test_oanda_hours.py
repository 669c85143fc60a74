"""OANDA FX market hours: open/closed, exact weekly open and close instants in EDT and EST weeks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pulse.calendars import (
    NOMINAL_FX,
    OANDA_FX,
    in_daily_break,
    is_open,
    is_trading,
    next_close,
    next_open,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


TICK = timedelta(microseconds=1)

# Summer (EDT, UTC-4): Friday 2024-07-12 close, Sunday 2024-07-14 open.
# Winter (EST, UTC-5): Friday 2025-01-10 close, Sunday 2025-01-12 open.
WEEKS = [
    # name, schedule, friday close (UTC), sunday open (UTC)
    ("summer-oanda", OANDA_FX, utc(2024, 7, 12, 20, 58), utc(2024, 7, 14, 21, 3)),
    ("winter-oanda", OANDA_FX, utc(2025, 1, 10, 21, 58), utc(2025, 1, 12, 22, 3)),
    ("summer-nominal", NOMINAL_FX, utc(2024, 7, 12, 21, 0), utc(2024, 7, 14, 21, 0)),
    ("winter-nominal", NOMINAL_FX, utc(2025, 1, 10, 22, 0), utc(2025, 1, 12, 22, 0)),
]


def test_closed_on_saturday_open_on_monday_noon() -> None:
    for sched in (OANDA_FX, NOMINAL_FX):
        assert not is_open(utc(2024, 7, 13, 12, 0), sched)
        assert not is_open(utc(2025, 1, 11, 0, 0), sched)
        assert is_open(utc(2024, 7, 15, 12, 0), sched)
        assert is_open(utc(2025, 1, 13, 12, 0), sched)
        assert is_trading(utc(2025, 1, 13, 12, 0), sched)


@pytest.mark.parametrize(("name", "sched", "close", "open_"), WEEKS, ids=[w[0] for w in WEEKS])
def test_weekly_close_and_open_instants_are_exact(name: str, sched: object, close: datetime, open_: datetime) -> None:
    assert is_open(close - TICK, sched)  # type: ignore[arg-type]
    assert not is_open(close, sched)  # type: ignore[arg-type]
    assert not is_open(open_ - TICK, sched)  # type: ignore[arg-type]
    assert is_open(open_, sched)  # type: ignore[arg-type]
    monday_noon = open_ + timedelta(hours=15)
    assert next_close(monday_noon - timedelta(days=3), sched) == close  # type: ignore[arg-type]
    assert next_close(close - TICK, sched) == close  # type: ignore[arg-type]
    assert next_close(close, sched) == close + timedelta(days=7)  # type: ignore[arg-type]
    assert next_open(close, sched) == open_  # type: ignore[arg-type]
    assert next_open(open_ - TICK, sched) == open_  # type: ignore[arg-type]
    assert next_open(open_, sched) == open_ + timedelta(days=7)  # type: ignore[arg-type]
    assert next_open(close).tzinfo is UTC


def test_summer_and_winter_differ_by_one_hour_in_utc() -> None:
    assert next_close(utc(2024, 7, 10)) == utc(2024, 7, 12, 20, 58)
    assert next_close(utc(2025, 1, 8)) == utc(2025, 1, 10, 21, 58)
    assert next_close(utc(2024, 7, 10), NOMINAL_FX).hour == 21
    assert next_close(utc(2025, 1, 8), NOMINAL_FX).hour == 22


def test_dst_change_weekends() -> None:
    # US DST began Sunday 2024-03-10 at 02:00 local: Friday closed in EST, Sunday opened in EDT.
    assert next_close(utc(2024, 3, 6)) == utc(2024, 3, 8, 21, 58)
    assert next_open(utc(2024, 3, 8, 21, 58)) == utc(2024, 3, 10, 21, 3)
    # US DST ended Sunday 2024-11-03: Friday closed in EDT, Sunday opened in EST.
    assert next_close(utc(2024, 10, 30)) == utc(2024, 11, 1, 20, 58)
    assert next_open(utc(2024, 11, 1, 20, 58)) == utc(2024, 11, 3, 22, 3)


def test_other_timezones_in_and_naive_refused() -> None:
    tokyo = timezone(timedelta(hours=9))
    # Saturday 07:00 in Tokyo is Friday 22:00 UTC (winter): after the 21:58 close.
    assert not is_open(datetime(2025, 1, 11, 7, 0, tzinfo=tokyo))
    assert is_open(datetime(2025, 1, 11, 6, 57, tzinfo=tokyo))
    with pytest.raises(ValueError, match="aware"):
        is_open(datetime(2025, 1, 13, 12, 0))


def test_daily_rollover_pause() -> None:
    # Wednesday 2024-07-17: 16:58-17:03 EDT = 20:58-21:03 UTC.
    assert not in_daily_break(utc(2024, 7, 17, 20, 57, 59))
    assert in_daily_break(utc(2024, 7, 17, 20, 58))
    assert in_daily_break(utc(2024, 7, 17, 21, 2, 59))
    assert not in_daily_break(utc(2024, 7, 17, 21, 3))
    assert is_open(utc(2024, 7, 17, 21, 0)) and not is_trading(utc(2024, 7, 17, 21, 0))
    # Winter: 21:58-22:03 UTC.
    assert in_daily_break(utc(2025, 1, 15, 22, 0)) and not in_daily_break(utc(2025, 1, 15, 21, 0))
    # Weekend is "closed", not "pause"; the nominal rule has no pause.
    assert not in_daily_break(utc(2025, 1, 11, 22, 0))
    assert not in_daily_break(utc(2024, 7, 17, 21, 0), NOMINAL_FX)


def test_nzd_pause_follows_auckland_time() -> None:
    # 06:58 Auckland: NZST (UTC+12) in July → 18:58 UTC; NZDT (UTC+13) in January → 17:58 UTC.
    assert in_daily_break(utc(2024, 7, 17, 18, 59), instrument="NZD_USD")
    assert not in_daily_break(utc(2024, 7, 17, 18, 59), instrument="EUR_USD")
    assert in_daily_break(utc(2025, 1, 15, 17, 58), instrument="AUD_NZD")
    assert not in_daily_break(utc(2025, 1, 15, 18, 3), instrument="NZD_USD")
