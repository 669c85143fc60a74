"""``pulse coverage INSTRUMENT --from … --to … [--venue V] [--json]``: what is stored, hour by hour.

For each UTC hour of the range: quotes and trades stored per venue (the sources: a live venue, a Dukascopy
backfill…), the gap, stale and resync markers the ingesters published in-band, and a verdict:

* ``ok`` — data and no marker;
* ``gap`` — a gap/stale/resync marker in the hour (data may be incomplete);
* ``repaired`` — ``pulse repair`` refilled the hour from a historical source (named: ``kraken REST``,
  ``dukascopy``): an hour with markers once a repair covered it from the hour's start to its last marker, an
  hour without markers once a repair added rows to it (table ``repairs``);
* ``missing`` — no data although the market was open;
* ``closed`` — no data and the market was closed all hour (the venue's own calendar, ``pulse.venues``), shown as
  closed rather than missing.

The market is judged by the calendars of the venues that have data or markers for the instrument in the
range (or of ``--venue``), each venue's calendar *for this instrument* (:func:`pulse.venues.calendar_of`:
OANDA's FX week; Dukascopy's weekly close of the instrument, so an FX pair stored only from a Dukascopy backfill
has its weekends closed, its BTC/USD none); a market that never closes (crypto) says nothing. The terminal
output is a compact table and a heat strip, one character per hour: ``█`` ok, ``▓`` repaired, ``▒`` gap,
``·`` closed, ``✗`` missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

_HOUR = timedelta(hours=1)
MARKERS = ("gap", "stale", "resync")
STRIP = {"ok": "█", "repaired": "▓", "gap": "▒", "closed": "·", "missing": "✗"}


@dataclass
class Hour:
    start: datetime
    quotes: dict[str, int] = field(default_factory=dict)  # venue → rows
    trades: dict[str, int] = field(default_factory=dict)
    markers: dict[str, int] = field(default_factory=dict)  # kind → count
    closed: bool = False
    last_marker: datetime | None = None  # the hour's last gap/stale/resync marker
    repairs: list[dict[str, Any]] = field(default_factory=list)  # pulse repair's records of this hour

    @property
    def repaired(self) -> bool:
        if self.last_marker is not None:  # a repair from the hour's start past its last marker covers the hole
            return any(r["from"] <= self.start and r["to"] >= self.last_marker for r in self.repairs)
        return any(r["added"] for r in self.repairs)

    @property
    def status(self) -> str:
        if self.repairs and self.repaired:
            return "repaired"
        if any(self.markers.get(k) for k in MARKERS):
            return "gap"
        if self.quotes or self.trades:
            return "ok"
        return "closed" if self.closed else "missing"

    @property
    def repaired_by(self) -> list[str]:
        return sorted({r["source"] for r in self.repairs})

    @property
    def sources(self) -> list[str]:
        return sorted(set(self.quotes) | set(self.trades))

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": self.start.isoformat(), "status": self.status, "sources": self.sources, "quotes": self.quotes,
            "trades": self.trades, "markers": self.markers, "repaired_by": self.repaired_by,
            "repairs": [{**r, "from": r["from"].isoformat(), "to": r["to"].isoformat(), "at": r["at"].isoformat()}
                        for r in self.repairs],
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


def closed_all_hour(calendars: list[Any], hour: datetime) -> bool:
    if not calendars:
        return False
    probes = [hour + timedelta(minutes=m) for m in (0, 15, 30, 45, 59)]
    return all(not cal.is_open(t) for cal in calendars for t in probes)


def coverage(
    conn: psycopg.Connection[Any], symbol: str, start: datetime, end: datetime, *, venue: str | None = None
) -> list[Hour]:
    """One :class:`Hour` per UTC hour of ``[start, end)`` (floored/ceiled to hours; naive means UTC)."""
    from pulse.calendars import ALWAYS
    from pulse.venues import calendar_of

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
    venue_filter = " AND venue = %(venue)s" if venue else ""
    for h, last in conn.execute(
        "SELECT date_trunc('hour', time), max(time) FROM gaps WHERE symbol = %(symbol)s AND time >= %(start)s"
        " AND time < %(end)s AND kind = ANY(%(kinds)s)" + venue_filter + " GROUP BY 1",
        {**params, "kinds": list(MARKERS)},
    ).fetchall():
        hours[h.astimezone(UTC)].last_marker = last
    if conn.execute("SELECT to_regclass('repairs')").fetchone()[0] is not None:  # schema v3 and later
        for h, src, start_, end_, fetched, added, at in conn.execute(
            "SELECT hour, source, range_start, range_end, rows_fetched, rows_added, repaired_at FROM repairs"
            " WHERE symbol = %(symbol)s AND hour >= %(start)s AND hour < %(end)s" + venue_filter + " ORDER BY id",
            params,
        ).fetchall():
            hours[h.astimezone(UTC)].repairs.append(
                {"source": src, "from": start_, "to": end_, "fetched": fetched, "added": added, "at": at}
            )
    for (v,) in conn.execute(
        "SELECT DISTINCT venue FROM gaps WHERE symbol = %(symbol)s AND time >= %(start)s AND time < %(end)s", params
    ).fetchall():
        seen.add(v)
    # each venue's hours for this instrument; a market that never closes (crypto) says nothing about closures
    calendars = [calendar_of(v, symbol) for v in sorted({venue} if venue else seen)]
    calendars = [c for c in calendars if c is not ALWAYS]
    for hour in hours.values():
        hour.closed = closed_all_hour(calendars, hour.start)
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

    from pulse.clitools import UTC_TIME, emit_json, fail, print_table

    @click.command("coverage")
    @click.argument("instrument")
    @click.option("--from", "start", required=True, type=UTC_TIME, help="Start (UTC), e.g. 2019-02-04T00.")
    @click.option("--to", "end", required=True, type=UTC_TIME, help="End (UTC, exclusive).")
    @click.option("--venue", help="One source only (default: every venue with data).")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Any, instrument: str, start: Any, end: Any, venue: str | None, as_json: bool) -> None:
        """Per hour: quotes and trades stored, their sources, gap/stale/resync markers, repairs, closed vs missing.
        INSTRUMENT: a symbol (every venue that has it) or venue:SYMBOL. Exit 1 when an hour is missing or has a
        gap."""
        from pulse.runtime import resolve_endpoints
        from pulse.symbols import canonical

        if ":" in instrument:  # venue:SYMBOL, as every other command takes it: that venue only
            from pulse.errors import SymbolError
            from pulse.instruments import resolve_instrument

            try:
                v, resolved = resolve_instrument(instrument, venue)
            except SymbolError as exc:
                fail(str(exc))
            sym, venue = resolved.symbol, v.name
        else:
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
            click.echo(f"  {strip(hours)}   (█ ok ▓ repaired ▒ gap · closed ✗ missing)")

            def verdict(h: Any) -> str:
                if not h.repairs:
                    return h.status
                label = ", ".join(h.repaired_by)  # repaired by, or only asked of (nothing was missing)
                return f"{h.status} ({label})" if h.status == "repaired" else f"{h.status} (checked: {label})"

            print_table(
                ("hour", "verdict", "quotes", "trades", "markers"),
                ((f"{h.start:%Y-%m-%dT%H}", verdict(h),
                  " ".join(f"{v}:{n}" for v, n in sorted(h.quotes.items())) or "-",
                  " ".join(f"{v}:{n}" for v, n in sorted(h.trades.items())) or "-",
                  " ".join(f"{k}={n}" for k, n in sorted(h.markers.items()))) for h in hours),
            )  # fmt: skip
        sys.exit(1 if counts["missing"] or counts["gap"] else 0)

    return command


coverage_command = _command()
