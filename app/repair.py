"""``pulse repair INSTRUMENT --from … --to … [--json]``: refill what a historical source still has.

The source is the instrument's venue's :class:`~pulse.venues.HistorySource` (Kraken: its REST ``Trades``), or, for
a venue without one, a source that serves others of the same asset class (Dukascopy's quotes for OANDA's FX):
:func:`pulse.venues.history_for`. Nothing here names a venue.

Per UTC hour of the range (up to now; hours the market was closed all hour are skipped):

1. **fetch** the source's events in the part of the hour asked for;
2. **keep what is not stored**: trades whose ``trade_id`` the table does not hold for the instrument (near the
   hour: a refetched trade may carry a slightly different time than the streamed one, its id is the same), and
   quotes whose unique key is new (a Dukascopy tick refetched is the row a backfill stored, key for key);
3. **store** them with the sink's mapping and writer (binary COPY, ``ON CONFLICT DO NOTHING``): the rows look like
   the sink's, ``seq`` 0 for refetched trades (no ingester numbered them), ``ts_recv`` the fetch time;
4. **record** the hour in ``repairs`` (instrument, hour, the range asked, source, rows fetched and added, time),
   which ``pulse coverage`` reads to show the hour as repaired, with its source.

Run twice, the second run stores nothing and records the hours again with ``rows_added`` 0. An hour whose fetch
fails is listed with the error and not recorded; the others go on (exit 1). On TimescaleDB the candles of the
repaired range are refreshed bottom-up afterwards.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pulse.errors import ConfigError, PulseError, SymbolError, exit_code_for
from pulse.log import get_logger

log = get_logger(__name__)
_HOUR = timedelta(hours=1)
_NEAR = timedelta(minutes=10)  # how far around an hour stored trade ids are looked up
MAX_RANGE = timedelta(days=31)


@dataclass
class HourRepair:
    hour: datetime
    start: datetime
    end: datetime
    status: str = "repaired"  # repaired | closed | failed
    fetched: int = 0
    added: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": self.hour.isoformat(), "from": self.start.isoformat(), "to": self.end.isoformat(),
            "status": self.status, "fetched": self.fetched, "added": self.added, "error": self.error,
        }  # fmt: skip


@dataclass
class RepairReport:
    instrument: str
    source: str
    stored_as: str
    hours: list[HourRepair] = field(default_factory=list)
    candles: str | None = None

    @property
    def added(self) -> int:
        return sum(h.added for h in self.hours)

    @property
    def fetched(self) -> int:
        return sum(h.fetched for h in self.hours)

    @property
    def ok(self) -> bool:
        return not any(h.status == "failed" for h in self.hours)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument, "source": self.source, "stored_as": self.stored_as, "ok": self.ok,
            "fetched": self.fetched, "added": self.added, "candles": self.candles,
            "hours": [h.as_dict() for h in self.hours],
        }  # fmt: skip


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime, datetime]]:
    """``(hour, window start, window end)`` for each UTC hour that ``[start, end)`` touches."""
    out = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        out.append((hour, max(hour, start), min(hour + _HOUR, end)))
        hour += _HOUR
    return out


def _stored_trade_ids(conn: psycopg.Connection[Any], venue: str, symbol: str, lo: datetime, hi: datetime) -> set[str]:
    rows = conn.execute(
        "SELECT trade_id FROM trades WHERE venue = %s AND symbol = %s AND time >= %s AND time < %s",
        (venue, symbol, lo - _NEAR, hi + _NEAR),
    ).fetchall()
    return {r[0] for r in rows}


def _record(conn: psycopg.Connection[Any], venue: str, symbol: str, h: HourRepair, source: str, stored_as: str) -> None:
    conn.execute(
        "INSERT INTO repairs (venue, symbol, hour, range_start, range_end, source, stored_as, rows_fetched,"
        " rows_added) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (venue, symbol, h.hour, h.start, h.end, source, stored_as, h.fetched, h.added),
    )


async def repair_async(
    settings: Any,
    database_url: str,
    instrument: str,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    hours: set[datetime] | None = None,
) -> RepairReport:
    """Repair ``instrument`` (``venue:SYMBOL``) over ``[start, end)`` (clamped to ``now``); ``hours`` limits it to
    those hour starts. Raises :class:`ConfigError` before anything is fetched when the instrument has no history
    source or the range is empty or too long."""
    from app.coverage import closed_all_hour
    from pulse.calendars import ALWAYS
    from pulse.instruments import resolve_instrument
    from pulse.venues import calendar_of, history_for
    from sinks.postgres.mapping import to_row
    from sinks.postgres.schema import ensure_schema
    from sinks.postgres.writer import CopyWriter

    venue, resolved = resolve_instrument(instrument)
    symbol = resolved.symbol
    found = history_for(venue.name, symbol)
    if found is None:
        raise ConfigError(f"{venue.name}:{symbol} has no history source to repair from (no venue serves its past)")
    src_venue, hist = found
    start, end = _utc(start), min(_utc(end), _utc(now or datetime.now(UTC)))
    if start >= end:
        raise ConfigError(f"nothing to repair: --from {start.isoformat()} is not before {end.isoformat()} (or now)")
    if end - start > MAX_RANGE:
        raise ConfigError(f"the range is limited to {MAX_RANGE.days} days per repair")
    report = RepairReport(f"{venue.name}:{symbol}", hist.label, src_venue.name)
    calendars = [c for c in (calendar_of(venue.name, symbol), calendar_of(src_venue.name, symbol)) if c is not ALWAYS]
    ensure_schema(database_url)
    with CopyWriter(database_url, application_name="pulse-repair") as writer, psycopg.connect(database_url) as conn:
        for hour, lo, hi in windows(start, end):
            if hours is not None and hour not in hours:
                continue
            h = HourRepair(hour, lo, hi)
            report.hours.append(h)
            if closed_all_hour(calendars, hour):
                h.status = "closed"
                continue
            try:
                events = list(await hist.fetch(settings, symbol, lo, hi))
            except (PulseError, OSError, TimeoutError) as exc:
                h.status, h.error = "failed", str(exc)[:500]
                log.warning("repair fetch failed", instrument=report.instrument, hour=hour.isoformat(), error=h.error)
                continue
            h.fetched = len(events)
            if hist.channel == "trade":
                seen = _stored_trade_ids(conn, src_venue.name, symbol, lo, hi)
                fresh = []
                for e in events:
                    if e.trade_id not in seen:
                        seen.add(e.trade_id)
                        fresh.append(e)
                events = fresh
            rows: dict[str, list[tuple]] = {}
            for e in events:
                mapped = to_row(e)
                if mapped is not None:
                    rows.setdefault(mapped[0], []).append(mapped[1])
            h.added = sum(writer.write(rows).values()) if rows else 0
            _record(conn, venue.name, symbol, h, hist.label, src_venue.name)
            conn.commit()
            log.info("repaired", instrument=report.instrument, hour=hour.isoformat(), fetched=h.fetched, added=h.added,
                     source=hist.label)  # fmt: skip
    if report.added:
        report.candles = _refresh_candles(database_url, start, end)
    return report


def repair(
    settings: Any, database_url: str, instrument: str, start: datetime, end: datetime, **kw: Any
) -> RepairReport:
    """:func:`repair_async` on its own event loop."""
    return asyncio.run(repair_async(settings, database_url, instrument, start, end, **kw))


def _refresh_candles(database_url: str, start: datetime, end: datetime) -> str:
    """Bottom-up refresh of the repaired range on TimescaleDB; plain PostgreSQL computes candles at query time."""
    from sinks.postgres.mode import detect_mode

    with psycopg.connect(database_url, autocommit=True) as conn:
        if not detect_mode(conn, create=False).timescaledb:
            return "plain PostgreSQL: candles are computed at query time"
        from sinks.postgres.timescale_caggs import refresh_after_backfill

        refresh_after_backfill(conn, start, end)  # widened to whole buckets per level
    return f"refreshed 1s→1m→5m→1h→1d for {start.isoformat()}..{end.isoformat()}"


def _command() -> Any:
    import sys

    import click
    from sqlalchemy.exc import SQLAlchemyError

    from pulse.clitools import UTC_TIME, emit_json, fail

    @click.command("repair")
    @click.argument("instrument")
    @click.option("--from", "start", required=True, type=UTC_TIME, help="Start (UTC), e.g. 2019-02-04T00.")
    @click.option("--to", "end", required=True, type=UTC_TIME, help="End (UTC, exclusive; at most now).")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Any, instrument: str, start: datetime, end: datetime, as_json: bool) -> None:
        """Refill INSTRUMENT (venue:SYMBOL) from its historical source, hour by hour: what is not stored yet is
        stored, and each hour is recorded as repaired (pulse coverage shows it). Idempotent. Exit 1 when an hour
        failed."""
        from pulse.runtime import resolve_endpoints

        ep = resolve_endpoints(obj.settings, need_pulsar=False)
        began = time.monotonic()
        try:
            report = repair(obj.settings, ep.database_url, instrument, start, end)
        except (ConfigError, SymbolError) as exc:  # refused before anything was fetched
            fail(str(exc))
        except (PulseError, psycopg.Error, SQLAlchemyError) as exc:  # the database, mostly
            fail(f"repair failed: {type(exc).__name__}: {exc}", exit_code_for(exc))  # 69 when unreachable
        if as_json:
            emit_json({**report.as_dict(), "elapsed_s": round(time.monotonic() - began, 3)})
        else:
            click.echo(f"# {report.instrument} from {report.source} (stored as {report.stored_as}): "
                       f"{report.fetched} fetched, {report.added} added")  # fmt: skip
            for h in report.hours:
                line = f"{h.hour:%Y-%m-%dT%H}  {h.status:<8} fetched {h.fetched:>7}  added {h.added:>7}"
                click.echo(line + (f"  {h.error}" if h.error else ""))
        sys.exit(0 if report.ok else 1)

    return command


repair_command = _command()
