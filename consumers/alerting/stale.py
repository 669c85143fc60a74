"""``stale_feed`` rules: checked by :meth:`AlertEngine.on_timer <consumers.alerting.engine.AlertEngine.on_timer>`
(our clock), never per tick; market-hours aware (silence while the market is closed is expected): FX hours for an
FX venue, and any other venue calendar (``pulse.venues``: e.g. NYSE sessions for US equities) through its
``is_open`` — silence then counts from the session's open when the calendar tells it (``last_open``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.alerting.evaluator import Evaluator
from consumers.alerting.messages import Alert
from consumers.alerting.rules import StaleFeed, live_venues
from consumers.alerting.state import NEVER, NS, InstState
from pulse.calendars import ALWAYS, NEW_YORK, OANDA_FX, FxSchedule, is_trading


class StaleEval(Evaluator):
    __slots__ = ("calendar", "instrument", "silence_ns")

    def init(self) -> None:
        r: StaleFeed = self.rule  # type: ignore[assignment]
        self.silence_ns = int(r.silence_s * NS)
        self.instrument = r.symbol.replace("/", "_")
        self.st.armed = True
        cal = live_venues()[r.venue].calendar if r.calendar == "auto" and r.venue in live_venues() else ALWAYS
        #: a venue calendar other than 24/7 and FX hours (US equities: NYSE sessions), asked directly
        self.calendar = None if cal is ALWAYS or isinstance(cal, FxSchedule) else cal

    def check(self, now: int, inst: InstState, started: int, out: list[Alert]) -> None:
        st = self.st
        r: StaleFeed = self.rule  # type: ignore[assignment]
        if not st.armed:
            if inst.ts_recv > st.seen_recv:
                st.armed = True  # a tick arrived since the alert
            else:
                return
        since = max(inst.ts_recv, started)
        if self.calendar is not None:
            when = datetime.fromtimestamp(now / NS, UTC)
            if not self.calendar.is_open(when):
                return  # the venue's market is closed: silence is expected
            last_open = getattr(self.calendar, "last_open", None)
            opened = last_open(when) if last_open is not None else None
            if opened is not None:
                since = max(since, int(opened.timestamp() * NS))
        elif r.fx_hours:
            when = datetime.fromtimestamp(now / NS, UTC)
            if not is_trading(when, OANDA_FX, self.instrument):
                return  # closed (weekend, daily pause): silence is expected
            since = max(since, last_session_start(when))
        silence = now - since
        if silence > self.silence_ns:
            st.seen_recv = inst.ts_recv
            inst.recv_tick = now
            last = "never" if inst.ts_recv == NEVER else f"{silence / NS:.1f}s ago"
            self.fire(
                out,
                now,
                inst,
                "stale",
                f"{silence / NS:.3f}",
                f"{r.silence_s:g}",
                f"no tick for {r.silence_s:g}s (last {last})",
            )


def last_session_start(when: datetime) -> int:
    """The latest FX session start at or before ``when`` (ns): 17:03 New York, which is both the weekly open
    (Sunday) and the end of each daily rollover pause — silence before it is not the feed's fault."""
    local = when.astimezone(NEW_YORK)
    start = datetime.combine(local.date(), OANDA_FX.open_at, tzinfo=NEW_YORK)
    if start > local:
        start = datetime.combine(local.date() - timedelta(days=1), OANDA_FX.open_at, tzinfo=NEW_YORK)
    return int(start.timestamp()) * NS
