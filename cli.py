"""``pulse`` — the one entry point. Parses options, loads settings once, calls into the packages.

Every command refuses a bad argument or setting with a message naming it, before anything starts.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

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


#: Times on the command line are UTC: 2019-02-04T00, 2019-02-04T00:30, 2019-02-04T00:30:15 or 2019-02-04.
UTC_TIME = click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


def csv_choice(allowed: tuple[str, ...], option: str) -> Any:
    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
        if value is None:
            return None
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise click.BadParameter(
                f"{', '.join(bad) or 'empty list'}: choose from {', '.join(allowed)}", param_hint=option
            )
        return items

    return convert


def parse_symbols(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    from pulse.symbols import parse_symbol_list

    try:
        return parse_symbol_list(value)
    except PulseError as exc:
        raise click.BadParameter(str(exc), param_hint="--symbols") from exc


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


# -- ingest ----------------------------------------------------------------------------------------------
@cli.group()
def ingest() -> None:
    """Run a venue ingester (in the foreground; SIGTERM flushes and exits 0)."""


@ingest.command("kraken")
@click.option("--symbols", callback=parse_symbols, help="Comma-separated canonical symbols, e.g. BTC/USD,ETH/USD.")
@click.option("--channels", callback=csv_choice(("trade", "ticker", "book"), "--channels"), help="trade,ticker,book")
@click.option("--depth", type=click.Choice(["10", "25", "100", "500", "1000"]), help="Book depth.")
@click.option("--url", help="WebSocket URL (default: kraken.url setting, the real Kraken v2 endpoint).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@click.pass_obj
def ingest_kraken(
    obj: Ctx, symbols: list[str] | None, channels: list[str] | None, depth: str | None, url: str | None, as_json: bool
) -> None:
    """Kraken WebSocket v2: trades, tickers/quotes and checksummed books.

    Symbols: --symbols, else the registry's enabled kraken instruments (`pulse symbols`), else kraken.symbols.
    While running it follows `pulse symbols add|remove|enable|disable` without a restart."""
    s = obj.settings.with_overrides(
        kraken={"symbols": symbols, "channels": channels, "depth": int(depth) if depth else None, "url": url}
    )
    _check_ws_url(s.kraken.url, "--url / kraken.url")
    from ingesters.base.app import run_ingester
    from ingesters.base.control import LiveInstruments
    from ingesters.kraken.service import KrakenIngester
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(s, need_database=False)
    k = s.kraken
    live: dict[str, Any] = {}

    def build(ctx: Any, bus: Any) -> KrakenIngester:
        li = live["li"] = LiveInstruments(bus, "ingest-kraken", "kraken", _registry_url(s, symbols))
        subs = li.initial({sym: tuple(k.channels) for sym in k.symbols})
        log_start("kraken", li.source, subs)
        return KrakenIngester(k, ctx, symbols=subs, channels=k.channels, depth=k.depth, url=k.url)

    summary = run_ingester(
        s,
        ep,
        venue="kraken",
        namespace="crypto",
        name="ingest-kraken",
        build=build,
        extra_tasks=lambda ing, stop: [live["li"].follow(ing.apply, stop)],  # type: ignore[attr-defined]
    )
    if as_json:
        emit_json(summary)


def parse_instruments(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    from ingesters.oanda.symbols import parse_instruments as parse

    try:
        return list(parse(value))
    except PulseError as exc:
        raise click.BadParameter(str(exc), param_hint="--instruments") from exc


@ingest.command("oanda")
@click.option("--instruments", callback=parse_instruments, help="OANDA instruments, e.g. EUR_USD,GBP_USD,USD_JPY.")
@click.option("--api-url", help="Stream host override (default: oanda.environment's practice/live host).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@click.pass_obj
def ingest_oanda(obj: Ctx, instruments: list[str] | None, api_url: str | None, as_json: bool) -> None:
    """OANDA v20 pricing stream: quotes with the full ladder; sleeps while the FX market is closed.

    Instruments: --instruments, else the registry's enabled oanda instruments, else oanda.instruments; follows
    `pulse symbols …` changes while running (each change reopens the stream with the new list)."""
    s = obj.settings.with_overrides(oanda={"instruments": instruments, "api_url": api_url})
    if s.oanda.api_url:
        _check_http_url(s.oanda.api_url, "--api-url / oanda.api_url")
    token = s.oanda_token()  # a missing or unreadable token file is refused before anything starts
    from ingesters.base.app import run_ingester
    from ingesters.base.control import LiveInstruments
    from ingesters.oanda.service import OandaIngester
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(s, need_database=False)
    o = s.oanda
    live: dict[str, Any] = {}

    def build(ctx: Any, bus: Any) -> OandaIngester:
        li = live["li"] = LiveInstruments(bus, "ingest-oanda", "oanda", _registry_url(s, instruments))
        from ingesters.oanda.symbols import instrument_to_symbol, symbol_to_instrument

        subs = li.initial({instrument_to_symbol(i): ("quote",) for i in o.instruments})
        log_start("oanda", li.source, subs)
        names = [symbol_to_instrument(sym) for sym in subs]
        return OandaIngester(o, ctx, instruments=names, token=token, api_url=o.api_url or None)

    summary = run_ingester(
        s,
        ep,
        venue="oanda",
        namespace="fx",
        name="ingest-oanda",
        build=build,
        extra_tasks=lambda ing, stop: [live["li"].follow(ing.apply, stop)],  # type: ignore[attr-defined]
    )
    if as_json:
        emit_json(summary)


def _registry_url(s: Settings, explicit: list[str] | None) -> str | None:
    """The database holding the registry, unless symbols were given on the command line (they win) or no
    database is configured or running (then the settings' symbols are used)."""
    if explicit:
        return None
    from pulse.runtime import resolve_endpoints

    try:
        return resolve_endpoints(s, need_pulsar=False).database_url
    except PulseError:
        return None


def log_start(venue: str, source: str, subs: dict[str, tuple[str, ...]]) -> None:
    from pulse.log import get_logger

    get_logger("pulse.ingest").info("instruments", venue=venue, source=source, symbols=",".join(subs) or "-")


def _check_http_url(url: str, name: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"{name}: {url!r} is not an http:// or https:// URL")


def _check_ws_url(url: str, name: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        fail(f"{name}: {url!r} is not a ws:// or wss:// URL")


# -- simulate --------------------------------------------------------------------------------------------
@cli.group()
def simulate() -> None:
    """Run a local venue that speaks the venue's real wire protocol (for demos and tests)."""


@simulate.command("kraken")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=200.0, show_default=True, help="Data messages/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--symbols", callback=parse_symbols, default="BTC/USD,ETH/USD,SOL/USD", show_default=True)
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N messages.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed frame every N messages.")
@click.option("--bad-checksum-every", type=click.IntRange(min=1), help="Fault: a wrong checksum every N book updates.")
@click.option("--stall-after", type=click.IntRange(min=1), help="Fault: go silent after N messages.")
@click.pass_obj
def simulate_kraken(
    obj: Ctx,
    host: str,
    port: int,
    rate: float,
    seed: int,
    symbols: list[str],
    disconnect_after: int | None,
    malformed_every: int | None,
    bad_checksum_every: int | None,
    stall_after: int | None,
) -> None:
    """A local Kraken WebSocket v2 venue (seeded random walk, fault injection)."""
    import asyncio

    from ingesters.simulators.kraken import FaultPlan, run

    obj.settings  # noqa: B018 — sets up logging
    faults = FaultPlan(
        disconnect_after=disconnect_after,
        malformed_every=malformed_every,
        bad_checksum_every=bad_checksum_every,
        stall_after=stall_after,
    )
    asyncio.run(run(host=host, port=port, rate=rate, seed=seed, symbols=symbols, faults=faults))


@simulate.command("oanda")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8766, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=20.0, show_default=True, help="PRICE lines/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--heartbeat-s", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--instruments", callback=parse_instruments, default="EUR_USD,GBP_USD,USD_JPY,AUD_USD", show_default=True)
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N lines.")
@click.option("--stall-after", type=click.IntRange(min=1), help="Fault: go silent after N lines.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed line every N lines.")
@click.option("--chunk-bytes", type=click.IntRange(min=1), help="Write the body in chunks of N bytes.")
@click.option("--closed", is_flag=True, help="Market closed: non-tradeable prices, then heartbeats only.")
@click.option("--reject-status", type=click.IntRange(400, 599), help="Answer every request with this status.")
@click.pass_obj
def simulate_oanda(
    obj: Ctx,
    host: str,
    port: int,
    rate: float,
    seed: int,
    heartbeat_s: float,
    instruments: list[str],
    disconnect_after: int | None,
    stall_after: int | None,
    malformed_every: int | None,
    chunk_bytes: int | None,
    closed: bool,
    reject_status: int | None,
) -> None:
    """A local OANDA v20 pricing-stream venue (auth check, 400/401, chunked NDJSON, heartbeats, faults)."""
    import asyncio

    from ingesters.simulators.oanda import OandaFaults, run

    s = obj.settings
    faults = OandaFaults(
        disconnect_after=disconnect_after,
        stall_after=stall_after,
        malformed_every=malformed_every,
        chunk_bytes=chunk_bytes,
        closed=closed,
        reject_status=reject_status,
    )
    asyncio.run(
        run(
            host=host,
            port=port,
            token=s.oanda_token() or "sim-token",
            account_id=s.oanda.account_id or "101-004-1234567-001",
            instruments=instruments,
            rate=rate,
            seed=seed,
            heartbeat_s=heartbeat_s,
            faults=faults,
        )
    )


@simulate.command("dukascopy")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8767, show_default=True)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False),
    required=True,
    help="Directory laid out like the datafeed: SYMBOL/YYYY/MM(0-based)/DD/HHh_ticks.bi5",
)
@click.pass_obj
def simulate_dukascopy(obj: Ctx, host: str, port: int, root: str) -> None:
    """Serve a directory of .bi5 files with Dukascopy's datafeed URL layout."""
    import asyncio

    from ingesters.simulators.dukascopy import DukascopySimulator

    obj.settings  # noqa: B018 — sets up logging

    async def serve() -> None:
        sim = DukascopySimulator(Path(root), host=host, port=port)
        await sim.start()
        click.echo(f"serving {root} at {sim.base_url}", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


# -- backfill --------------------------------------------------------------------------------------------
@cli.group()
def backfill() -> None:
    """Load historical data through Pulsar (the `historical` namespace)."""


@backfill.command("dukascopy")
@click.argument("symbol")
@click.option(
    "--from",
    "start",
    required=True,
    type=UTC_TIME,
    help="First hour (UTC), e.g. 2019-02-04T00.",
)
@click.option(
    "--to",
    "end",
    required=True,
    type=UTC_TIME,
    help="End hour (UTC, exclusive).",
)
@click.option("--base-url", help="Datafeed root (default dukascopy.base_url); a local server in tests and the demo.")
@click.option(
    "--candles",
    "timeframe",
    type=click.Choice(["1m", "1h", "1d"]),
    help="Publish Dukascopy's candle files of this timeframe (fast path for long ranges) instead of ticks.",
)
@click.option("--side", type=click.Choice(["bid", "ask"]), help="Candle price series (with --candles; default bid).")
@click.option("--per-tick", is_flag=True, help="One Quote per message on the quote topic (what Pulsar IO's JDBC sink "
              "reads; 7-9x slower) instead of QuoteBatch messages on the quote_batch topic.")  # fmt: skip
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def backfill_dukascopy(
    obj: Ctx,
    symbol: str,
    start: Any,
    end: Any,
    base_url: str | None,
    timeframe: str | None,
    side: str | None,
    per_tick: bool,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Download hourly tick files (or candle files), decode and publish them in time order (resumable, idempotent)."""
    from ingesters.dukascopy.instruments import lookup
    from ingesters.dukascopy.service import run_backfill, run_candle_backfill
    from pulse.runtime import resolve_endpoints

    s = obj.settings
    lookup(symbol)  # an unknown instrument is refused before anything starts
    if base_url:
        _check_http_url(base_url, "--base-url")
    if side and not timeframe:
        raise click.UsageError("--side needs --candles")
    if per_tick and timeframe:
        raise click.UsageError("--per-tick is for ticks, not --candles")
    ep = resolve_endpoints(s, need_database=False)
    progress = not (no_progress or as_json)
    if timeframe:
        summary = run_candle_backfill(
            s, ep, symbol, start, end, timeframe=timeframe, side=side or "bid", base_url=base_url, progress=progress
        )
    else:
        summary = run_backfill(s, ep, symbol, start, end, base_url=base_url, progress=progress,
                               **({"batch_ticks": 1} if per_tick else {}))  # fmt: skip
    if as_json:
        emit_json(summary)
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (list, dict))))
    sys.exit(0 if summary["ok"] else 1)


# -- sink ------------------------------------------------------------------------------------------------
@cli.group()
def sink() -> None:
    """Write topics into PostgreSQL/TimescaleDB."""


@sink.command("run")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NS/VENUE=SYMBOLS",
    help="Streams to store, e.g. crypto/kraken=BTC/USD,ETH/USD (repeatable; default sink.sources, "
    "else crypto/kraken with kraken.symbols).",
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
    from sinks.postgres.service import PostgresSink, topics_for_sources

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
        from sinks.postgres.service import parse_source

        follow = tuple(dict.fromkeys([*s.sink.namespaces, *(parse_source(x)[0] for x in (sources or s.sink.sources))]))
    svc = PostgresSink(s, ep, topics, config=cfg, status_home=s.home, follow_namespaces=follow)
    svc.run(stop)
    if as_json:
        emit_json(svc.stats.as_dict())


# -- demo, bench, status, config -------------------------------------------------------------------------
@cli.command()
@click.option("--duration", type=click.FloatRange(min=1), help="Stop after S seconds (default: until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON instead of a table.")
@click.option("--rate", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Venue messages/s.")
@click.option("--faults", is_flag=True, help="Inject a disconnect, malformed frames and bad checksums.")
@click.option("--symbols", callback=parse_symbols, default="BTC/USD,ETH/USD,SOL/USD", show_default=True)
@click.option("--fx/--no-fx", default=True, show_default=True, help="Run the local OANDA venue and ingester too.")
@click.option("--backfill", is_flag=True, help="Also backfill the shipped Dukascopy hours (EURUSD 2019-02-04 00-04).")
@click.option("--consumers/--no-consumers", default=True, show_default=True,
              help="Run the alerting and matching services too (demo alert rules, paper orders).")  # fmt: skip
@click.option("--broker", type=click.Choice(["lite", "apache"]), help="Broker to start (default runtime.broker).")
@click.pass_obj
def demo(
    obj: Ctx,
    broker: str | None,
    duration: float | None,
    as_json: bool,
    rate: float,
    faults: bool,
    symbols: list[str],
    fx: bool,
    backfill: bool,
    consumers: bool,
) -> None:
    """Run the whole pipeline on the embedded default: local Kraken (+ OANDA) → ingesters → Pulsar → sink →
    PostgreSQL, with the alerting and matching services on the live ticks."""
    from control_plane.provision import provision_base_sync
    from pulse.demo import run_demo
    from pulse.runtime import attach_runtime

    obj.broker = broker
    summary = run_demo(
        obj.settings,
        after_up=lambda s: provision_base_sync(attach_runtime(s)) if attach_runtime(s).pulsar.admin_url else None,
        duration=duration,
        rate=rate,
        faults=faults,
        symbols=symbols,
        fx=fx,
        backfill=backfill,
        live=not as_json,
        config=obj.config,
        consumers=consumers,
    )
    if as_json:
        emit_json(summary)
    sys.exit(0 if summary["ok"] else 1)


@cli.command()
@click.argument("symbol")
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
@click.option("--venue", help="Venue, when several have data for the symbol.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def candles(
    obj: Ctx, symbol: str, interval: str, start: Any, end: Any, side: str | None, venue: str | None, as_json: bool
) -> None:
    """OHLCV candles from the database, in whichever mode is active (TimescaleDB aggregates or plain SQL)."""
    import psycopg

    from pulse.runtime import resolve_endpoints
    from pulse.symbols import canonical
    from sinks.postgres.candles import CandleError
    from sinks.postgres.candles import candles as query
    from sinks.postgres.mode import detect_mode

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


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--max-tick-age", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="An open market's instrument with no tick for this long is unhealthy (s).")  # fmt: skip
@click.option("--max-sink-lag", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="A sink this far (s) behind the newest published tick is unhealthy.")  # fmt: skip
@click.pass_obj
def status(obj: Ctx, as_json: bool, max_tick_age: float, max_sink_lag: float) -> None:
    """Health: broker (+ admin API), topics' rates and backlog, database mode, services, per-instrument last
    tick, sink lag. Exit 1 when something is unhealthy (for systemd and monitoring)."""
    from pulse.health import collect_health

    report = collect_health(obj.settings, max_tick_age_s=max_tick_age, max_sink_lag_s=max_sink_lag)
    if as_json:
        emit_json(report)
    else:
        for line in report["lines"]:
            click.echo(line)
    sys.exit(0 if report["healthy"] else 1)


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
                    f"{inst['venue']} {inst['symbol']} (venue symbol {inst['venue_symbol']}, {inst['namespace']}, "
                    f"price {inst['price_precision']} dp, size {inst['size_precision']} dp, "
                    f"channels {','.join(inst['channels'])}, {'enabled' if inst['enabled'] else 'disabled'})"
                )
                for step in res["steps"]:
                    click.echo(f"  {step['step']:<9} {step['result']}")
    if as_json:
        emit_json(results if len(results) != 1 else results[0])


def _validated(venue: str, names: tuple[str, ...], **kw: Any) -> list[str]:
    """Every name checked against the venue's rules before any of them is applied."""
    from control_plane.symbols import plan_instrument

    out = []
    for name in names:
        _, inst = plan_instrument(venue, name, **kw)
        if inst.symbol in out:
            raise click.BadParameter(f"{inst.symbol} given twice", param_hint="SYMBOL")
        out.append(inst.symbol)
    return out


@symbols.command("add")
@click.argument("venue")
@click.argument("names", metavar="SYMBOL...", nargs=-1, required=True)
@click.option("--channels", help="Comma-separated channels (kraken: trade,ticker,book; oanda: quote).")
@click.option("--price-precision", type=click.IntRange(0, 18), help="Price decimals (default: the venue's).")
@click.option("--size-precision", type=click.IntRange(0, 18), help="Size decimals (default: the venue's).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def symbols_add(
    obj: Ctx,
    venue: str,
    names: tuple[str, ...],
    channels: str | None,
    price_precision: int | None,
    size_precision: int | None,
    as_json: bool,
) -> None:
    """Register instruments, create their topics and make running ingesters subscribe.

    Examples: `pulse symbols add kraken SOL/USD --channels trade,book`, `pulse symbols add oanda EUR_USD`."""
    chs = [c.strip() for c in channels.split(",") if c.strip()] if channels is not None else None
    kw = {"channels": chs, "price_precision": price_precision, "size_precision": size_precision}
    syms = _validated(venue, names, **kw)
    _symbol_changes(obj, as_json, lambda ops: (ops.add(venue, sym, **kw) for sym in syms))


def _symbols_change(name: str, help_text: str, apply: Any) -> None:
    """`pulse symbols remove|enable|disable VENUE SYMBOL… [--json]`: one shape, three changes."""

    @symbols.command(name, help=help_text)
    @click.argument("venue")
    @click.argument("names", metavar="SYMBOL...", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Ctx, venue: str, names: tuple[str, ...], as_json: bool) -> None:
        syms = _validated(venue, names)
        _symbol_changes(obj, as_json, lambda ops: (apply(ops, venue, sym) for sym in syms))


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
    from control_plane.venues import venue as check_venue
    from pulse.runtime import resolve_endpoints

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
    click.echo(f"{'VENUE':<10} {'SYMBOL':<12} {'VENUE SYMBOL':<13} {'NAMESPACE':<10} {'PX':>2} {'SZ':>2}  "
               f"{'CHANNELS':<18} STATE")  # fmt: skip
    for r in rows:
        click.echo(
            f"{r.venue:<10} {r.symbol:<12} {r.venue_symbol:<13} {r.namespace:<10} {r.price_precision:>2} "
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


def main() -> None:
    try:
        cli(standalone_mode=True)
    except PulseError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
