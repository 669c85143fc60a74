"""The sink's CLI commands: ``pulse sink run`` and ``pulse candles`` (registered by ``cli.py``)."""

from __future__ import annotations

import sys
from typing import Any

import click

from pulse.clitools import UTC_TIME, OldSpellings, emit_json, fail, metrics_port_option, print_table


@click.group()
def sink() -> None:
    """Write topics into PostgreSQL/TimescaleDB."""


@sink.command("run")
@click.option(
    "--symbols",
    "--source",
    "sources",
    multiple=True,
    cls=OldSpellings,
    metavar="INSTRUMENTS",
    help="Streams to store: instrument ids, e.g. kraken:BTC/USD,ETH/USD,oanda:EUR_USD, or NS/VENUE=SYMBOLS, e.g. "
    "crypto/kraken=BTC/USD (repeatable; default sink.sources, else crypto/kraken with kraken.symbols).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    help="Sink config (YAML: sources, tables, keys, insert|upsert, batching, TimescaleDB policies); "
    "see sinks/postgres/sinks.example.yaml.",
)
@click.option("--no-follow", is_flag=True, help="Store only the sources: ignore the instrument registry.")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def sink_run(
    obj: Any,
    sources: tuple[str, ...],
    config_path: str | None,
    no_follow: bool,
    as_json: bool,
    metrics_port: int | None,
) -> None:
    """Consume venue topics and store trades, quotes, top of book and status markers (ack after commit).

    Besides its sources it stores the registry's enabled instruments in the namespaces it follows
    (sink.namespaces and its sources' namespaces), and starts storing instruments added while it runs."""
    import signal
    import threading

    from pulse.runtime import resolve_endpoints
    from pulse.supervise import supervised
    from sinks.postgres.config import load_sink_config
    from sinks.postgres.metrics import sink_probe
    from sinks.postgres.service import PostgresSink
    from sinks.postgres.sources import topics_for_sources

    s = obj.settings
    if config_path and sources:
        raise click.UsageError("--symbols and --config are exclusive: put the sources in the config file")
    # a malformed source or config is refused before anything starts
    cfg = load_sink_config(config_path, s) if config_path else None
    topics = None if cfg else topics_for_sources(s, sources)
    ep = resolve_endpoints(s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    follow: tuple[str, ...] = ()
    if not no_follow:  # the namespaces it stores: its sources' plus sink.namespaces
        from sinks.postgres.sources import parse_sources

        namespaces = [ns for x in (sources or s.sink.sources) for ns, _, _ in parse_sources(x)]
        follow = tuple(dict.fromkeys([*s.sink.namespaces, *namespaces]))
    svc = PostgresSink(s, ep, topics, config=cfg, status_home=s.home, follow_namespaces=follow)
    with supervised(sink_probe(svc, s.metrics.stall_after_s), s, port=metrics_port, stopping=stop.is_set):
        svc.run(stop)
    if as_json:
        emit_json(svc.stats.as_dict())


@click.command()
@click.argument("symbol", metavar="INSTRUMENT")
@click.option(
    "--interval",
    type=click.Choice(["1s", "1m", "5m", "15m", "1h", "4h", "12h", "1d", "1w"]),
    default="1m",
    show_default=True,
)
@click.option(
    "--from",
    "start",
    required=True,
    type=UTC_TIME,
    help="Start (UTC), e.g. 2019-02-04T00:00.",
)
@click.option(
    "--to",
    "end",
    required=True,
    type=UTC_TIME,
    help="End (UTC, exclusive).",
)
@click.option(
    "--side", type=click.Choice(["bid", "ask", "mid"]), help="Quote side (FX); default: trades if any, else bid."
)
@click.option("--venue", help="One source only (default: history and the live stream stitched at an hour boundary).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def candles(
    obj: Any, symbol: str, interval: str, start: Any, end: Any, side: str | None, venue: str | None, as_json: bool
) -> None:
    """OHLCV candles of INSTRUMENT (kraken:BTC/USD, or EUR/USD when one venue has data for it) from the database,
    in whichever mode is active (TimescaleDB aggregates or plain SQL)."""
    import psycopg

    from pulse.instruments import parse_instrument
    from pulse.runtime import resolve_endpoints
    from pulse.symbols import canonical
    from sinks.postgres.candles import CandleError, seam_of
    from sinks.postgres.candles import candles as query
    from sinks.postgres.mode import detect_mode

    if ":" in symbol or venue is not None:  # an instrument id (kraken:BTC/USD), or a venue's spelling with --venue
        inst = parse_instrument(symbol, venue)
        sym, venue = inst.symbol, inst.venue
    else:  # a bare symbol: whichever venue has data for it (refused by name when several have)
        sym = canonical(symbol)
    if end <= start:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    ep = resolve_endpoints(obj.settings, need_pulsar=False)
    with psycopg.connect(ep.database_url) as conn:
        mode = detect_mode(conn, create=False)
        row = conn.execute("SELECT to_regclass('pulse_candles_bid_1s')").fetchone()
        kwargs = {"mode": mode} if mode.timescaledb and row and row[0] is not None else {}
        try:
            rows = query(conn, sym, interval=interval, start=start, end=end, side=side, venue=venue, **kwargs)
            seam = None if venue else seam_of(conn, sym, start=start, end=end, side=side)
        except CandleError as exc:
            fail(str(exc))
        except psycopg.errors.UndefinedTable:  # no sink has stored anything in this database yet
            rows, seam = [], None
    if not rows:  # say so (and exit 1): a backfill not stored yet looks like this
        click.echo(
            f"no {sym} candles in [{start:%Y-%m-%dT%H:%M}, {end:%Y-%m-%dT%H:%M}) UTC"
            f"{f' from {venue}' if venue else ''}: nothing stored for it (is a sink running? `pulse status` shows it)",
            err=True,
        )
    if as_json:
        emit_json([r.as_dict() for r in rows])
        sys.exit(0 if rows else 1)
    if not rows:
        sys.exit(1)
    click.echo(f"# {sym} {interval} {side or ''} ({'timescaledb aggregates' if kwargs else 'SQL on the tables'})")
    if seam is not None:
        click.echo(f"# stitched: {seam.before} before {seam.at:%Y-%m-%dT%H:%MZ}, {seam.after} from then on")
    print_table(
        ("bucket", "open", "high", "low", "close", "volume", "ticks"),
        ((f"{r.bucket:%Y-%m-%dT%H:%M:%SZ}", r.open, r.high, r.low, r.close, "-" if r.volume is None else r.volume,
          r.ticks) for r in rows),
        right=("open", "high", "low", "close", "volume", "ticks"),
    )  # fmt: skip
