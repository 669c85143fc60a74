"""``pulse monitor [--once] [--interval 15m]``: keep the Dukascopy history complete without anyone starting a backfill.

Each check:

1. **Market gate.** While every monitored instrument's market is in its weekly close (Dukascopy's calendar,
   :meth:`~ingesters.dukascopy.instruments.Instrument.certainly_closed`), nothing is asked. The first check
   after the reopening asks once, as usual.
2. **Ask the Lambda** (:mod:`app.availability_client`: boto3 ``invoke``, the function URL, or the handler in
   process) for the latest available hour of each instrument. Lambda errors, throttling and timeouts are
   retried up to ``monitor.max_attempts`` times with capped, jittered exponential backoff (tenacity).
3. **Compare** with the monitor's per-instrument checkpoint (the end of the last hour it backfilled, in
   ``<home>/state/monitor.json``; a new instrument starts ``monitor.first_hours`` back) and **backfill** exactly
   the new hours through the Dukascopy ingester into the ``historical`` namespace (its own per-hour checkpoints
   make a repeat harmless). Then **refresh the candles** of exactly that range, bottom-up (on TimescaleDB the
   continuous aggregates 1s → 1m → 5m → 1h → 1d; plain PostgreSQL computes candles at query time).
4. One instrument's failure (no hour reported, a failed backfill) is recorded and the others go on.
5. **Repair recent gaps** of the instruments in ``monitor.repair`` (``venue:SYMBOL``, any venue with a history
   source): the hours of the last ``monitor.repair_hours`` that ``pulse coverage`` calls ``gap`` or ``missing``
   are refilled as ``pulse repair`` does (:mod:`app.repair`), whatever the Lambda said; an hour repaired past
   its last marker is not asked again, nor a missing hour the source was already asked about whole. With
   ``monitor.repair`` set and no Lambda configured, the monitor only repairs.

The status file ``<home>/run/monitor.json`` (rewritten every second while it waits) carries the last check, per
instrument state and ``problems``; after ``monitor.failing_after`` consecutive failed checks of the Lambda,
``pulse status`` reports the monitor unhealthy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from app.availability_client import Invoker, LambdaError
from pulse.log import get_logger
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import StatusFile

log = get_logger(__name__)
_HOUR = timedelta(hours=1)
Backfill = Callable[..., dict[str, Any]]
Refresh = Callable[[datetime, datetime], str]


@dataclass
class CheckResult:
    checked_at: str
    asked: bool = False
    skipped: str | None = None  # why nothing was asked
    attempts: int = 0
    error: str | None = None  # the Lambda's, after the retries
    instruments: dict[str, dict[str, Any]] = field(default_factory=dict)
    repairs: dict[str, dict[str, Any]] = field(default_factory=dict)  # instrument → hours repaired, rows added

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and all(i.get("error") is None for i in self.instruments.values())
            and all(r.get("error") is None for r in self.repairs.values())
        )

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


class Monitor:
    """One monitor: ``check_once()`` does steps 1-4; ``run(stop)`` repeats it every ``interval_s``."""

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        invoker: Invoker | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backfill: Backfill | None = None,
        refresh: Refresh | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from ingesters.dukascopy.instruments import lookup

        self.settings = settings
        self.cfg = settings.monitor
        self.instruments = [lookup(name) for name in self.cfg.instruments] if invoker is not None else []
        self.repair_instruments = [_repairable(name) for name in self.cfg.repair]
        self.endpoints = endpoints
        self.invoker = invoker
        self.clock = clock
        self.sleep = sleep
        self._backfill = backfill or self._run_backfill
        self._refresh = refresh or self._refresh_candles
        self.state_path = settings.home / "state" / "monitor.json"
        self.state = self._load()
        self.status = StatusFile(settings.home, "monitor", every_s=1.0)
        self.failures = 0  # consecutive checks whose Lambda call failed
        self.checks = self.check_failures = self.hours_backfilled = 0  # totals, for /metrics
        self.last: CheckResult | None = None
        self._check_started: float | None = None  # time.monotonic() when the check in progress began

    # -- state ---------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, str]:
        try:
            doc = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {k: v for k, v in doc.get("done_until", {}).items() if isinstance(v, str)}

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"done_until": self.state}, indent=1, sort_keys=True))
        tmp.replace(self.state_path)

    # -- one check -----------------------------------------------------------------------------------------
    def market_closed(self, now: datetime) -> bool:
        hour = now.replace(minute=0, second=0, microsecond=0)
        return all(i.certainly_closed(hour) for i in self.instruments)

    def beat(self) -> float:
        """The loop's heartbeat (``time.monotonic()``): its latest status write, or now while a check runs that
        has not yet run ``monitor.check_timeout_s`` — a backfill of many hours writes no status until it ends, and
        must not look stuck to the supervisor; one that overruns does."""
        started, now = self._check_started, time.monotonic()
        if started is not None and now - started < self.cfg.check_timeout_s:
            return now
        return self.status.beat

    def check_once(self) -> CheckResult:
        now = self.clock()
        result = CheckResult(checked_at=now.isoformat())
        self._check_started = time.monotonic()
        try:
            self._availability(result, now)
            for name in self.repair_instruments:
                result.repairs[name] = self._repair_recent(name, now)
        finally:
            self._check_started = None
        self._finish(result)
        return result

    def _availability(self, result: CheckResult, now: datetime) -> None:
        if self.invoker is None:
            result.skipped = "no availability Lambda configured: repairs only"
            return
        if self.market_closed(now):
            result.skipped = "market closed: no call until it reopens"
            return
        try:
            report = self._ask(result)
        except LambdaError as exc:
            result.error = str(exc)
            self.failures += 1
            log.warning("availability check failed", error=result.error, attempts=result.attempts)
            return
        self.failures = 0
        for inst in self.instruments:
            result.instruments[inst.symbol] = self._catch_up(inst, report.get("instruments", {}).get(inst.symbol))
        self._save()

    def _repair_recent(self, instrument: str, now: datetime) -> dict[str, Any]:
        """Refill the gap and missing hours of the last ``repair_hours`` (one instrument; errors are recorded)."""
        import psycopg

        from app.coverage import coverage
        from app.repair import repair
        from sinks.postgres.schema import ensure_schema

        out: dict[str, Any] = {"hours": [], "added": 0, "error": None}
        venue, symbol = instrument.split(":", 1)
        start = now.replace(minute=0, second=0, microsecond=0) - (self.cfg.repair_hours - 1) * _HOUR
        try:
            ensure_schema(self.endpoints.database_url)
            with psycopg.connect(self.endpoints.database_url) as conn:
                todo = {h.start for h in coverage(conn, symbol, start, now, venue=venue) if _needs_repair(h)}
            if not todo:
                return out
            report = repair(self.settings, self.endpoints.database_url, instrument, start, now, now=now, hours=todo)
        except Exception as exc:  # one instrument's failure must not stop the others (or the monitor)
            out["error"] = f"repair failed: {type(exc).__name__}: {exc}"[:500]
            log.warning("monitor repair failed", instrument=instrument, error=out["error"])
            return out
        out["hours"] = [h.hour.isoformat() for h in report.hours if h.status == "repaired"]
        out["added"] = report.added
        failed = [f"{h.hour:%Y-%m-%dT%H}: {h.error}" for h in report.hours if h.status == "failed"]
        if failed:
            out["error"] = "; ".join(failed)[:500]
        return out

    def _ask(self, result: CheckResult) -> dict[str, Any]:
        event: dict[str, Any] = {"instruments": [i.symbol for i in self.instruments]}
        event["feed"] = self.settings.dukascopy.feed
        now = self.clock()
        if now < datetime.now(UTC) - timedelta(minutes=5):  # checking as of an earlier time (replays, tests)
            event["at"] = now.isoformat()
        retrying = Retrying(
            stop=stop_after_attempt(self.cfg.max_attempts),
            wait=wait_random_exponential(multiplier=0.5, max=self.cfg.backoff_max_s),
            retry=retry_if_exception(lambda e: isinstance(e, LambdaError) and e.retryable),
            sleep=self.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                result.attempts += 1
                result.asked = True
                return self.invoker(event)
        raise AssertionError("unreachable")  # pragma: no cover

    def _catch_up(self, inst: Any, info: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"latest_hour": None, "backfilled": None, "error": None}
        if not info or not info.get("latest_hour"):
            out["error"] = f"no available hour reported ({(info or {}).get('error') or 'instrument missing'})"
            return out
        latest = datetime.fromisoformat(info["latest_hour"].replace("Z", "+00:00"))
        out["latest_hour"] = latest.isoformat()
        end = latest + _HOUR
        done = self.state.get(inst.symbol)
        start = datetime.fromisoformat(done) if done else end - self.cfg.first_hours * _HOUR
        if start >= end:
            out["backfilled"] = "up to date"
            return out
        try:
            summary = self._backfill(inst.symbol, start, end)
        except Exception as exc:  # one instrument's failure must not stop the others
            out["error"] = f"backfill {start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H} failed: {exc}"
            return out
        out["backfilled"] = {
            "from": start.isoformat(), "to": end.isoformat(), "ticks": summary.get("ticks_published", 0),
            "hours": summary.get("hours_downloaded", 0), "ok": summary.get("ok", False),
        }  # fmt: skip
        if not summary.get("ok"):
            out["error"] = summary.get("error") or "backfill not ok"
            return out
        self.state[inst.symbol] = end.isoformat()
        out["candles"] = self._refresh(start, end)
        return out

    def _run_backfill(self, symbol: str, start: datetime, end: datetime) -> dict[str, Any]:
        from ingesters.dukascopy.service import run_backfill

        return run_backfill(self.settings, self.endpoints, symbol, start, end, progress=False)

    def _refresh_candles(self, start: datetime, end: datetime) -> str:
        """Bottom-up refresh of exactly [start, end) on TimescaleDB; plain PostgreSQL needs none."""
        if not self.endpoints.database_url:
            return "no database configured"
        import psycopg

        from sinks.postgres.mode import detect_mode

        with psycopg.connect(self.endpoints.database_url, autocommit=True) as conn:
            if not detect_mode(conn, create=False).timescaledb:
                return "plain PostgreSQL: candles are computed at query time"
            from sinks.postgres.timescale_caggs import refresh_after_backfill

            refresh_after_backfill(conn, start, end)
        return f"refreshed 1s→1m→5m→1h→1d for {start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H}"

    def _finish(self, result: CheckResult) -> None:
        self.checks += 1
        self.check_failures += bool(result.error)
        done = [i["backfilled"] for i in result.instruments.values() if isinstance(i.get("backfilled"), dict)]
        self.hours_backfilled += sum(int(b.get("hours") or 0) for b in done)
        self.last = result
        self._write_status()

    def problems(self) -> list[str]:
        out = []
        if self.failures >= self.cfg.failing_after and self.last is not None:
            out.append(f"the availability Lambda failed {self.failures} checks in a row: {self.last.error}")
        return out

    def _write_status(self) -> None:
        last = self.last.as_dict() if self.last else None
        self.status.write_or_log(
            {"consecutive_failures": self.failures}, state="running", last_check=last, done_until=self.state,
            problems=self.problems(),
        )  # fmt: skip

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, once: bool = False) -> CheckResult | None:
        try:
            while not stop.is_set():
                self.check_once()
                if once:
                    break
                deadline = time.monotonic() + self.cfg.interval_s
                while not stop.is_set() and time.monotonic() < deadline:
                    stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                    self._write_status()  # keeps `pulse status` seeing it alive while it waits
        finally:
            self.status.write_or_log({"consecutive_failures": self.failures}, state="stopped",
                                     last_check=self.last.as_dict() if self.last else None)  # fmt: skip
        return self.last


def _needs_repair(h: Any) -> bool:
    """A gap not yet repaired, or a missing hour the source was not yet asked about whole (it had nothing then)."""
    if h.status == "gap":
        return True
    return h.status == "missing" and not any(r["from"] <= h.start and r["to"] >= h.start + _HOUR for r in h.repairs)


def _repairable(name: str) -> str:
    """``venue:SYMBOL`` of ``monitor.repair``, canonical; refused unless some source can repair it."""
    from pulse.errors import ConfigError, SymbolError
    from pulse.instruments import resolve_instrument
    from pulse.venues import history_for

    try:
        venue, resolved = resolve_instrument(name)
    except SymbolError as exc:
        raise ConfigError(f"monitor.repair: {exc}") from exc
    if history_for(venue.name, resolved.symbol) is None:
        raise ConfigError(f"monitor.repair: {venue.name}:{resolved.symbol} has no history source to repair from")
    return f"{venue.name}:{resolved.symbol}"


def state_file(home: Path) -> Path:
    return home / "state" / "monitor.json"
