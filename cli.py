"""``pulse`` — the one entry point. Parses options, loads settings once, calls into the packages.

Every command refuses a bad argument or setting with a message naming it, before anything starts.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from app import commands as app_commands
from pulse.clitools import UTC_TIME, csv_choice, emit_json, fail
from pulse.errors import PulseError
from pulse.settings import Settings, load_settings


class Ctx:
    def __init__(self, config: str | None, home: str | None) -> None:
        self.config = config
        self.home = home
        self.broker: str | None = None  # `--broker` of the commands that start one (up, demo, bench)
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            s = load_settings(self.config)
            if self.home:
                s = s.with_overrides(runtime={"home": self.home})
            if self.broker:
                s = s.with_overrides(runtime={"broker": self.broker})
            from pulse.runtime import attach_runtime

            self._settings = attach_runtime(s)
            s = self._settings
            from pulse.log import register_secret, setup_logging

            setup_logging(s.logging.level, s.logging.format)
            for secret in s.secrets():
                register_secret(secret)
        return self._settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Settings file (default ./pulse.toml).")
@click.option("--home", type=click.Path(file_okay=False), help="Runtime directory (default .pulse).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, home: str | None) -> None:
    """Pulse: live and historical market data into Apache Pulsar."""
    ctx.obj = Ctx(config, home)


# -- runtime ---------------------------------------------------------------------------------------------
@cli.command()
@click.option("--status", "show_status", is_flag=True, help="Only report whether the runtime is running.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--broker", type=click.Choice(["lite", "apache"]), help="Broker to start (default runtime.broker).")
@click.pass_obj
def up(obj: Ctx, show_status: bool, as_json: bool, broker: str | None) -> None:
    """Start the embedded broker (pulsar-lite or Apache Pulsar) and PostgreSQL in the background."""
    from pulse.runtime import Runtime

    obj.broker = broker
    rt = Runtime(obj.settings)
    st = rt.status() if show_status else rt.up(progress=None if as_json else lambda m: click.echo(m, err=True))
    if not show_status and st.broker and st.broker.get("kind") == "apache":
        from control_plane.provision import provision_base_sync
        from pulse.runtime import attach_runtime

        provision_base_sync(attach_runtime(obj.settings))  # tenant + namespaces: Apache creates topics only in them
    if as_json:
        emit_json(st.as_dict())
    else:
        _print_runtime(st)
    if show_status and not st.running:
        sys.exit(1)


def _print_runtime(st: Any) -> None:
    def line(name: str, info: dict[str, Any] | None, running: bool, key: str) -> None:
        state = "running" if running else "stopped"
        where = f" {info[key]} (pid {info['pid']})" if info else ""
        click.echo(f"{name:<9} {state}{where if running else ''}")

    click.echo(f"home      {st.home}")
    line("broker", st.broker, st.broker_running, "url")
    if st.broker and st.broker_running:
        if st.broker.get("kind") == "apache":
            click.echo(f"kind      Apache Pulsar {st.broker['version']} (ready in {st.broker['started_s']} s)")
            click.echo(f"admin     {st.broker['admin_url']}")
        else:
            click.echo("kind      pulsar-lite")
        click.echo(f"metrics   {st.broker['metrics_url']}")
    line("postgres", st.postgres, st.postgres_running, "url")


@cli.command()
@click.pass_obj
def down(obj: Ctx) -> None:
    """Stop the embedded runtime started by `pulse up` (by pid)."""
    from pulse.runtime import Runtime

    st = Runtime(obj.settings).down()
    click.echo(f"stopped embedded runtime in {st.home}")


# -- venues: ingest, simulate, backfill ------------------------------------------------------------------
class VenueGroup(click.Group):
    """``pulse <role> <venue>``: one subcommand per registered venue that provides a ``role`` command
    (:attr:`pulse.venues.Venue.commands`), looked up in the venue registry when the command line is parsed."""

    def __init__(self, *args: Any, role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = role

    def _commands(self) -> dict[str, click.Command]:
        from pulse.venues import venues

        out: dict[str, click.Command] = {}
        for name, v in venues().items():
            cmd = v.commands().get(self.role) if v.commands is not None else None
            if cmd is not None:
                out[name] = cmd
        return out

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._commands().get(cmd_name)


@cli.group(cls=VenueGroup, role="ingest")
def ingest() -> None:
    """Run a venue ingester (in the foreground; SIGTERM flushes and exits 0)."""


@cli.group(cls=VenueGroup, role="simulate")
def simulate() -> None:
    """Run a local venue that speaks the venue's real wire protocol (for demos and tests)."""


@cli.group(cls=VenueGroup, role="backfill")
def backfill() -> None:
    """Load historical data through Pulsar (the `historical` namespace)."""


# -- sink ------------------------------------------------------------------------------------------------
@cli.group()
def sink() -> None:
    """Write topics into PostgreSQL/TimescaleDB."""


@sink.command("run")
@click.option(
    "--source",
    "sources",
    multiple=True,
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
@click.pass_obj
def sink_run(obj: Ctx, sources: tuple[str, ...], config_path: str | None, no_follow: bool, as_json: bool) -> None:
    """Consume venue topics and store trades, quotes, top of book and status markers (ack after commit).

    Besides its sources it stores the registry's enabled instruments in the namespaces it follows
    (sink.namespaces and its sources' namespaces), and starts storing instruments added while it runs."""
    import signal
    import threading

    from pulse.runtime import resolve_endpoints
    from sinks.postgres.config import load_sink_config
    from sinks.postgres.service import PostgresSink
    from sinks.postgres.sources import topics_for_sources

    s = obj.settings
    if config_path and sources:
        raise click.UsageError("--source and --config are exclusive: put the sources in the config file")
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
    svc.run(stop)
    if as_json:
        emit_json(svc.stats.as_dict())


# -- demo, bench, status, config -------------------------------------------------------------------------
@cli.command()
@click.argument("symbol", metavar="INSTRUMENT")
@click.option("--interval", type=click.Choice(["1s", "1m", "5m", "1h", "1d"]), default="1m", show_default=True)
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
@click.option("--venue", help="Venue, when INSTRUMENT has none and several venues have data for it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def candles(
    obj: Ctx, symbol: str, interval: str, start: Any, end: Any, side: str | None, venue: str | None, as_json: bool
) -> None:
    """OHLCV candles of INSTRUMENT (kraken:BTC/USD, or EUR/USD when one venue has data for it) from the database,
    in whichever mode is active (TimescaleDB aggregates or plain SQL)."""
    import psycopg

    from pulse.instruments import parse_instrument
    from pulse.runtime import resolve_endpoints
    from pulse.symbols import canonical
    from sinks.postgres.candles import CandleError
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
        except CandleError as exc:
            fail(str(exc))
    if as_json:
        emit_json([r.as_dict() for r in rows])
        return
    click.echo(f"# {sym} {interval} {side or ''} ({'timescaledb aggregates' if kwargs else 'SQL on the tables'})")
    for r in rows:
        vol = r.volume if r.volume is not None else "-"
        click.echo(
            f"{r.bucket:%Y-%m-%dT%H:%M:%SZ}  O {r.open}  H {r.high}  L {r.low}  C {r.close}  V {vol}  n {r.ticks}"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--quick", is_flag=True, help="Smaller runs (for CI smoke checks).")
@click.option("--sink", "sink_only", is_flag=True, help="The sink benchmark instead: raw COPY ceiling vs the sink.")
@click.option("--only", callback=csv_choice(("ingesters", "consumers"), "--only"), help="ingesters,consumers")
@click.option("--broker", type=click.Choice(["lite", "apache"]), help="Broker of the bench's runtime.")
@click.pass_obj
def bench(obj: Ctx, as_json: bool, quick: bool, sink_only: bool, only: list[str] | None, broker: str | None) -> None:
    """Measure the raw publish ceiling vs the ingesters and the consumers' engines and round trips, or (--sink)
    raw COPY vs the sink; on a runtime of its own (pulsar-lite, or --broker apache)."""
    obj.broker = broker
    if sink_only:
        from bench.harness import bench_runtime
        from bench.sink import run as run_sink

        with bench_runtime(obj.settings) as (s, ep):
            emit_json(run_sink(s, ep, quick=quick))
        return
    from bench.run import PARTS, run_benchmarks

    run_benchmarks(obj.settings, as_json=as_json, quick=quick, parts=tuple(only) if only else PARTS)


# -- instrument registry ---------------------------------------------------------------------------------
@cli.group()
def symbols() -> None:
    """Instrument registry: add, remove, enable, disable, list (running ingesters follow without a restart)."""


def _symbol_changes(obj: Ctx, as_json: bool, run: Any) -> None:
    from control_plane.symbols import open_symbol_ops

    results = []
    with open_symbol_ops(obj.settings) as ops:
        for res in run(ops):
            results.append(res)
            if not as_json:
                inst = res["instrument"]
                click.echo(
                    f"{inst['venue']}:{inst['symbol']} (venue symbol {inst['venue_symbol']}, {inst['namespace']}, "
                    f"price {inst['price_precision']} dp, size {inst['size_precision']} dp, "
                    f"channels {','.join(inst['channels'])}, {'enabled' if inst['enabled'] else 'disabled'})"
                )
                for step in res["steps"]:
                    click.echo(f"  {step['step']:<9} {step['result']}")
    if as_json:
        emit_json(results if len(results) != 1 else results[0])


def _instruments(items: tuple[str, ...]) -> list[tuple[str, str]]:
    """``VENUE SYMBOL…`` or ``INSTRUMENT…`` (``kraken:BTC/USD``, or a venue's own spelling such as ``EUR_USD``)
    → (venue, canonical symbol) pairs."""
    from pulse.instruments import parse_instrument
    from pulse.venues import venues

    first = items[0]
    venue = None
    if ":" not in first and (first.lower() in venues() or (len(items) > 1 and re.fullmatch(r"[a-z][a-z0-9_]*", first))):
        venue, items = first, items[1:]
        if not items:
            raise click.UsageError(f"no instrument given for venue {first}")
    return [(i.venue, i.symbol) for i in (parse_instrument(x, venue) for x in items)]


def _validated(items: tuple[str, ...], **kw: Any) -> list[tuple[str, str]]:
    """Every instrument checked against its venue's rules before any of them is applied."""
    from control_plane.symbols import plan_instrument

    out: list[tuple[str, str]] = []
    for venue, name in _instruments(items):
        _, inst = plan_instrument(venue, name, **kw)
        if (inst.venue, inst.symbol) in out:
            raise click.BadParameter(f"{inst.key} given twice", param_hint="INSTRUMENT")
        out.append((inst.venue, inst.symbol))
    return out


@symbols.command("add")
@click.argument("items", metavar="[VENUE] INSTRUMENT...", nargs=-1, required=True)
@click.option("--channels", help="Comma-separated channels (the venue's; `pulse symbols add` names them on error).")
@click.option("--price-precision", type=click.IntRange(0, 18), help="Price decimals (default: the venue's).")
@click.option("--size-precision", type=click.IntRange(0, 18), help="Size decimals (default: the venue's).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def symbols_add(
    obj: Ctx,
    items: tuple[str, ...],
    channels: str | None,
    price_precision: int | None,
    size_precision: int | None,
    as_json: bool,
) -> None:
    """Register instruments, create their topics and make running ingesters subscribe.

    Examples: `pulse symbols add kraken:SOL/USD --channels trade,book`, `pulse symbols add oanda:EUR_USD`,
    `pulse symbols add kraken BTC/USD ETH/USD` (a venue, then its symbols)."""
    chs = [c.strip() for c in channels.split(",") if c.strip()] if channels is not None else None
    kw = {"channels": chs, "price_precision": price_precision, "size_precision": size_precision}
    insts = _validated(items, **kw)
    _symbol_changes(obj, as_json, lambda ops: (ops.add(venue, sym, **kw) for venue, sym in insts))


def _symbols_change(name: str, help_text: str, apply: Any) -> None:
    """`pulse symbols remove|enable|disable [VENUE] INSTRUMENT… [--json]`: one shape, three changes."""

    @symbols.command(name, help=help_text)
    @click.argument("items", metavar="[VENUE] INSTRUMENT...", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Ctx, items: tuple[str, ...], as_json: bool) -> None:
        insts = _validated(items)
        _symbol_changes(obj, as_json, lambda ops: (apply(ops, venue, sym) for venue, sym in insts))


_symbols_change(
    "remove",
    "Unregister instruments; running ingesters unsubscribe (stored data and topics are kept).",
    lambda ops, venue, sym: ops.remove(venue, sym),
)
_symbols_change(
    "enable", "Resume streaming registered instruments.", lambda ops, venue, sym: ops.set_enabled(venue, sym, True)
)
_symbols_change(
    "disable",
    "Stop streaming registered instruments but keep them in the registry.",
    lambda ops, venue, sym: ops.set_enabled(venue, sym, False),
)


@cli.group("pulsar")
def pulsar_group() -> None:
    """Pulsar layout on a real cluster (admin REST API)."""


@pulsar_group.command("provision")
@click.option("--jdbc-table", help="Also create the Pulsar IO jdbc-postgres sink pulse-historical-jdbc: every "
              "historical quote topic (one Quote per message) → this table, created if missing (needs the "
              "cluster's functions worker with the connector; locally runtime.apache_functions = true).")  # fmt: skip
@click.option("--jdbc-host", default="", help="The database host as the broker reaches it (e.g. a compose service "
              "name); default: database.url's host.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def pulsar_provision(obj: Ctx, jdbc_table: str | None, jdbc_host: str, as_json: bool) -> None:
    """Create the tenant, namespaces with their policies, and the topics and schemas of every enabled registry
    instrument; idempotent (a second run changes nothing). On the embedded broker there is nothing to do."""
    import asyncio

    from control_plane.jdbc_sink import check_table, ensure_table, provision_historical_sink
    from control_plane.provision import EMBEDDED_NOTE
    from control_plane.pulsar_admin import PulsarAdmin
    from control_plane.registry import Registry
    from control_plane.symbols import provision_layout
    from pulse.errors import ConfigError
    from pulse.runtime import resolve_endpoints

    s = obj.settings
    if not s.pulsar.admin_url:
        click.echo(EMBEDDED_NOTE + " (set pulsar.admin_url to provision a real cluster)")
        return
    if jdbc_table is not None:
        try:
            check_table(jdbc_table)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--jdbc-table") from None
    ep = resolve_endpoints(s, need_pulsar=False)
    with Registry(ep.database_url) as reg:
        rows = reg.list(enabled_only=True)

    async def go() -> list[Any]:
        async with PulsarAdmin.from_settings(s) as admin:
            steps = await provision_layout(admin, s, rows)
            if jdbc_table:
                steps.append(ensure_table(ep.database_url, jdbc_table))
                steps.append(await provision_historical_sink(
                    admin, tenant=s.pulsar.tenant, table=jdbc_table, database_url=ep.database_url, jdbc_host=jdbc_host
                ))  # fmt: skip
            return steps

    results = asyncio.run(go())
    if as_json:
        emit_json([{"step": r.step, "outcome": r.outcome, "detail": r.detail} for r in results])
    else:
        for r in results:
            click.echo(str(r))


@symbols.command("list")
@click.option("--venue", help="Only this venue.")
@click.option("--enabled", "enabled_only", is_flag=True, help="Only enabled instruments.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def symbols_list(obj: Ctx, venue: str | None, enabled_only: bool, as_json: bool) -> None:
    """The registry's instruments."""
    from control_plane.registry import Registry
    from pulse.runtime import resolve_endpoints
    from pulse.venues import get as check_venue

    if venue is not None:
        venue = check_venue(venue).name
    with Registry(resolve_endpoints(obj.settings, need_pulsar=False).database_url) as reg:
        rows = reg.list(venue, enabled_only=enabled_only)
    if as_json:
        emit_json([r.as_dict() for r in rows])
        return
    if not rows:
        click.echo("no instruments registered (ingesters use their configured symbols)")
        return
    click.echo(f"{'INSTRUMENT':<24} {'VENUE SYMBOL':<13} {'NAMESPACE':<10} {'PX':>2} {'SZ':>2}  "
               f"{'CHANNELS':<18} STATE")  # fmt: skip
    for r in rows:
        click.echo(
            f"{r.key:<24} {r.venue_symbol:<13} {r.namespace:<10} {r.price_precision:>2} "
            f"{r.size_precision:>2}  {','.join(r.channels):<18} {'enabled' if r.enabled else 'disabled'}"
        )


@cli.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@click.pass_obj
def config_show(obj: Ctx) -> None:
    """Print the effective settings (secrets masked)."""
    emit_json(obj.settings.redacted())


# -- consumers -------------------------------------------------------------------------------------------
def _register_consumers() -> None:
    """`pulse consumers matching|alerting run`, `pulse orders …`, `pulse alerts …` (defined in their packages)."""
    from consumers.alerting.commands import alerting_run, alerts
    from consumers.matching.commands import matching, orders

    @cli.group("consumers")
    def consumers_group() -> None:
        """Services that consume the live ticks: paper-order matching and alerting."""

    @consumers_group.group("alerting")
    def alerting_group() -> None:
        """Rules evaluated on every tick; alerts to the alerts namespace, the database and webhooks."""

    alerting_group.add_command(alerting_run)
    consumers_group.add_command(matching)
    cli.add_command(orders)
    cli.add_command(alerts)


_register_consumers()
cli.add_command(app_commands.demo)
cli.add_command(app_commands.status)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except PulseError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
