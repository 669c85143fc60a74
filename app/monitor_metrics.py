"""``pulse monitor``'s metrics and readiness, read from the running :class:`~app.monitor.Monitor` at scrape time.

Ready while the availability Lambda answers: fewer than ``monitor.failing_after`` checks in a row failed (what
``pulse status`` calls a problem). Alive while its loop beats: it writes its status file every second, also while
it waits for the next check.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

from app.monitor import Monitor
from pulse.metrics import Probe, counter, gauge


def monitor_probe(mon: Monitor, name: str = "monitor") -> Probe:
    def collect() -> Iterable[Metric]:
        yield counter("pulse_monitor_checks", "Availability checks made", {(name,): mon.checks}, ("service",))
        yield counter("pulse_monitor_check_failures", "Availability checks whose Lambda call failed",
                      {(name,): mon.check_failures}, ("service",))  # fmt: skip
        yield counter("pulse_monitor_hours_backfilled", "Instrument-hours backfilled",
                      {(name,): mon.hours_backfilled}, ("service",))  # fmt: skip
        yield gauge("pulse_monitor_consecutive_failures", "Checks failed in a row", {(name,): mon.failures},
                    ("service",))  # fmt: skip

    def checks() -> dict[str, bool]:
        return {"lambda": mon.failures < mon.cfg.failing_after}

    def summary() -> str:
        last = mon.last
        if last is None:
            return "starting"
        state = "ok" if last.ok else f"failed: {last.error or 'see the instruments'}"
        return f"last check {last.checked_at} {state}; {mon.failures} failed in a row"

    return Probe(name, collect, checks, mon.beat, summary)
