"""``pulse coverage INSTRUMENT --from … --to … [--venue V] [--json]``: what is stored, hour by hour.

For each UTC hour of the range: quotes and trades stored per venue (the sources: a live venue, a Dukascopy
backfill…), the gap, stale and resync markers the ingesters published in-band, and a verdict:

* ``ok`` — data and no marker;
* ``gap`` — a gap/stale/resync marker in the hour (data may be incomplete);
* ``missing`` — no data although the market was open;
* ``closed`` — no data and the market was closed all hour (the venue's own calendar, ``pulse.venues``), shown as
  closed rather than missing.

The market is judged by the calendars of the venues that have data or markers for the instrument in the
range (or of ``--venue``) and keep market hours (OANDA's FX week); a venue without market hours (a Dukascopy
backfill, crypto) says nothing, so with only such venues every empty hour counts as missing. The terminal
output is a compact table and a heat strip, one character per hour: ``█`` ok, ``▒`` gap, ``·`` closed,
``✗`` missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

_HOUR = timedelta(hours=1)
MARKERS = ("gap", "stale", "resync")
STRIP = {"ok": "█", "gap": "▒", "closed": "·", "missing": "✗"}


@dataclass
class Hour:
    start: datetime
    quotes: dict[str, int] = field(default_factory=dict)  # venue → rows
    trades: dict[str, int] = field(default_factory=dict)
    markers: dict[str, int] = field(default_factory=dict)  # kind → count
    closed: bool = False

    @property
    def status(self) -> str:
        if any(self.markers.get(k) for k in MARKERS):
            return "gap"
        if self.quotes or self.trades:
            return "ok"
        return "closed" if self.closed else "missing"

    @property
    def sources(self) -> list[str]:
        return sorted(set(self.quotes) | set(self.trades))

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": self.start.isoformat(), "status": self.status, "sources": self.sources, "quotes": self.quotes,
            "trades": self.trades, "markers": self.markers,
        }  # fmt: skip


def _per_hour(conn: psycopg.Connection[Any], table: str, extra: str, params: dict[str, Any]) -> list[tuple]:
    query = sql.SQL(
        "SELECT date_trunc('hour', {time}) AS h, {key}, count(*) FROM {table}"
        " WHERE {symbol} = %(symbol)s AND {time} >= %(start)s AND {time} < %(end)s{venue}"
        " GROUP BY 1, 2 ORDER BY 1"
    ).format(
        time=sql.Identifier("time"),
        key=sql.Identifier(extra),
        table=sql.Identifier(table),
        symbol=sql.Identifier("symbol"),
        venue=sql.SQL(" AND {} = %(venue)s").format(sql.Identifier("venue")) if "venue" in params else sql.SQL(""),
    )
    return conn.execute(query, params).fetchall()


def _closed_all_hour(calendars: list[Any], hour: datetime) -> bool:
    if not calendars:
        return False
    probes = [hour + timedelta(minutes=m) for m in (0, 15, 30, 45, 59)]
    return all(not cal.is_open(t) for cal in calendars for t in probes)


def coverage(
    conn: psycopg.Connection[Any], symbol: str, start: datetime, end: datetime, *, venue: str | None = None
) -> list[Hour]:
    """One :class:`Hour` per UTC hour of ``[start, end)`` (floored/ceiled to hours; naive means UTC)."""
    from pulse.calendars import ALWAYS
    from pulse.venues import venues

    lo = start.replace(tzinfo=start.tzinfo or UTC).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hi = end.replace(tzinfo=end.tzinfo or UTC).astimezone(UTC)
    if hi > hi.replace(minute=0, second=0, microsecond=0):
        hi = hi.replace(minute=0, second=0, microsecond=0) + _HOUR
    hours: dict[datetime, Hour] = {}
    t = lo
    while t < hi:
        hours[t] = Hour(t)
        t += _HOUR
    params: dict[str, Any] = {"symbol": symbol, "start": lo, "end": hi}
    if venue:
        params["venue"] = venue
    seen: set[str] = set()
    for table, target in (("quotes", "quotes"), ("trades", "trades")):
        for h, v, n in _per_hour(conn, table, "venue", params):
            getattr(hours[h.astimezone(UTC)], target)[v] = n
            seen.add(v)
    for h, kind, n in _per_hour(conn, "gaps", "kind", params):
        hours[h.astimezone(UTC)].markers[kind] = n
    for (v,) in conn.execute(
        "SELECT DISTINCT venue FROM gaps WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s", params
    ).fetchall():
        seen.add(v)
    known = venues()
    # a venue without market hours (a backfill source, crypto) says nothing about when the market was closed
    calendars = [known[v].calendar for v in sorted({venue} if venue else seen) if v in known]
    calendars = [c for c in calendars if c is not ALWAYS]
    for hour in hours.values():
        hour.closed = _closed_all_hour(calendars, hour.start)
    return list(hours.values())


def strip(hours: list[Hour]) -> str:
    """The heat strip: one character per hour, a space between days."""
    out = []
    for i, h in enumerate(hours):
        if i and h.start.hour == 0:
            out.append(" ")
        out.append(STRIP[h.status])
    return "".join(out)


def summary(hours: list[Hour]) -> dict[str, int]:
    counts = {k: 0 for k in STRIP}
    for h in hours:
        counts[h.status] += 1
    return counts


def _command() -> Any:
    import sys

    import click

    from pulse.clitools import UTC_TIME, emit_json, fail

    @click.command("coverage")
    @click.argument("instrument")
    @click.option("--from", "start", required=True, type=UTC_TIME, help="Start (UTC), e.g. 2019-02-04T00.")
    @click.option("--to", "end", required=True, type=UTC_TIME, help="End (UTC, exclusive).")
    @click.option("--venue", help="One source only (default: every venue with data).")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Any, instrument: str, start: Any, end: Any, venue: str | None, as_json: bool) -> None:
        """Per hour: quotes and trades stored, their sources, gap/stale/resync markers, closed vs missing.
        Exit 1 when an hour is missing or has a gap."""
        from pulse.runtime import resolve_endpoints
        from pulse.symbols import canonical

        sym = canonical(instrument)
        if end <= start:
            fail("--to must be after --from")
        if (end - start) > timedelta(days=366):
            fail("the range is limited to 366 days (8,784 hours)")
        ep = resolve_endpoints(obj.settings, need_pulsar=False)
        with psycopg.connect(ep.database_url) as conn:
            hours = coverage(conn, sym, start, end, venue=venue)
        counts = summary(hours)
        if as_json:
            emit_json({"symbol": sym, "summary": counts, "hours": [h.as_dict() for h in hours]})
        else:
            click.echo(f"# {sym} {hours[0].start:%Y-%m-%dT%H}..{hours[-1].start + _HOUR:%Y-%m-%dT%H} UTC  {counts}")
            click.echo(f"  {strip(hours)}   (█ ok ▒ gap · closed ✗ missing)")
            for h in hours:
                stored = " ".join(f"{v}:{n}q" for v, n in sorted(h.quotes.items()))
                stored += " ".join(f" {v}:{n}t" for v, n in sorted(h.trades.items()))
                marks = " ".join(f"{k}={n}" for k, n in sorted(h.markers.items()))
                click.echo(f"{h.start:%Y-%m-%dT%H}  {h.status:<7} {stored or '-':<30} {marks}")
        sys.exit(1 if counts["missing"] or counts["gap"] else 0)

    return command


coverage_command = _command()
