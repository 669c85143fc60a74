"""US equity market hours seen from above the venue: `pulse status` (``pulse.venues.expects_ticks``) and
stale-feed alert rules follow the Alpaca venue's NYSE calendar — holidays, weekends and early closes are expected
silence, and silence after an open counts from the open."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from consumers.alerting.engine import AlertEngine
from consumers.alerting.rules import make_rule
from pulse.models import Trade
from pulse.venues import expects_ticks, get

S = 1_000_000_000


def ns(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp()) * S  # type: ignore[misc]


def test_status_expects_ticks_only_in_nyse_sessions() -> None:
    assert get("alpaca").namespace == "equities"
    assert expects_ticks("alpaca", datetime(2026, 11, 25, 15, 0, tzinfo=UTC))  # a Wednesday, 10:00 New York
    assert not expects_ticks("alpaca", datetime(2026, 11, 26, 15, 0, tzinfo=UTC))  # Thanksgiving
    assert not expects_ticks("alpaca", datetime(2026, 11, 27, 18, 30, tzinfo=UTC))  # after the 13:00 early close
    assert not expects_ticks("alpaca", datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # Saturday
    assert expects_ticks("kraken", datetime(2026, 11, 26, 15, 0, tzinfo=UTC))  # crypto never closes


def test_stale_feed_is_silent_through_a_holiday_and_counts_from_the_open() -> None:
    rule = make_rule("stale_feed", {"id": 1, "venue": "alpaca", "symbol": "AAPL", "silence_s": 60, "cooldown_s": 0})
    eng = AlertEngine([rule])
    last = ns(2026, 11, 25, 20, 59, 30)  # 15:59:30 New York, the last trade before the close
    eng.on_timer(last - 10 * S)
    eng.on_event(Trade(venue="alpaca", symbol="AAPL", ts_event=last, ts_recv=last, price=Decimal("190.01"),
                       size=Decimal(100), side=None, trade_id="V-1"))  # fmt: skip
    # the evening, Thanksgiving and the night: no session, no alert
    for minute in range(1, 2490, 13):  # until 14:29:30 UTC on Friday
        assert eng.on_timer(last + minute * 60 * S) == [], minute
    opened = ns(2026, 11, 27, 14, 30)  # Friday 09:30 New York
    assert eng.on_timer(opened + 30 * S) == []  # silence counts from the open, not from Wednesday
    assert eng.on_timer(opened + 60 * S) == []
    (alert,) = eng.on_timer(opened + 61 * S)
    assert alert.ts_event == opened + 61 * S and alert.condition == "stale"


def test_stale_feed_calendar_crypto_overrides_the_venues() -> None:
    rule = make_rule("stale_feed", {"id": 2, "venue": "alpaca", "symbol": "AAPL", "silence_s": 1, "cooldown_s": 0,
                                    "calendar": "crypto"})  # fmt: skip
    eng = AlertEngine([rule])
    sat = ns(2026, 11, 28, 12, 0)
    eng.on_timer(sat)
    assert len(eng.on_timer(sat + 5 * S)) == 1
