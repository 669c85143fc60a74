"""``pulse`` — the one entry point. Parses options, loads settings once, calls into the packages.

Every command refuses a bad argument or setting with a message naming it, before anything starts.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from pulse.errors import PulseError
from pulse.settings import Settings, load_settings


class Ctx:
    def __init__(self, config: str | None, home: str | None) -> None:
        self.config = config
        self.home = home
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            s = load_settings(self.config)
            if self.home:
                s = s.with_overrides(runtime={"home": self.home})
            self._settings = s
            from pulse.log import register_secret, setup_logging

            setup_logging(s.logging.level, s.logging.format)
            for secret in s.secrets():
                register_secret(secret)
        return self._settings


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
@click.pass_obj
def up(obj: Ctx, show_status: bool, as_json: bool) -> None:
    """Start the embedded broker (pulsar-lite) and PostgreSQL in the background."""
    from pulse.runtime import Runtime

    rt = Runtime(obj.settings)
    st = rt.status() if show_status else rt.up()
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
    """Kraken WebSocket v2: trades, tickers/quotes and checksummed books."""
    s = obj.settings.with_overrides(
        kraken={"symbols": symbols, "channels": channels, "depth": int(depth) if depth else None, "url": url}
    )
    _check_ws_url(s.kraken.url, "--url / kraken.url")
    from ingesters.base.app import run_ingester
    from ingesters.kraken.service import KrakenIngester
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(s, need_database=False)
    k = s.kraken
    summary = run_ingester(
        s,
        ep,
        venue="kraken",
        namespace="crypto",
        name="ingest-kraken",
        build=lambda ctx: KrakenIngester(k, ctx, symbols=k.symbols, channels=k.channels, depth=k.depth, url=k.url),
    )
    if as_json:
        emit_json(summary)


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


# -- sink ------------------------------------------------------------------------------------------------
@cli.group()
def sink() -> None:
    """Write topics into PostgreSQL/TimescaleDB."""


@sink.command("run")
@click.option("--symbols", callback=parse_symbols, help="Symbols whose topics to consume (default kraken.symbols).")
@click.option("--venue", default="kraken", show_default=True)
@click.option("--namespace", default="crypto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@click.pass_obj
def sink_run(obj: Ctx, symbols: list[str] | None, venue: str, namespace: str, as_json: bool) -> None:
    """Consume venue topics and store trades, quotes and top of book (ack after commit)."""
    import signal
    import threading

    from pulse.runtime import resolve_endpoints
    from sinks.postgres.service import PostgresSink, topics_for

    s = obj.settings
    ep = resolve_endpoints(s)
    topics = topics_for(s, namespace=namespace, venue=venue, symbols=symbols or s.kraken.symbols)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    svc = PostgresSink(s, ep, topics, status_home=s.home)
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
@click.pass_obj
def demo(obj: Ctx, duration: float | None, as_json: bool, rate: float, faults: bool, symbols: list[str]) -> None:
    """Run the whole pipeline on the embedded default: local Kraken → ingester → Pulsar → sink → PostgreSQL."""
    from pulse.demo import run_demo

    summary = run_demo(
        obj.settings, duration=duration, rate=rate, faults=faults, symbols=symbols, live=not as_json, config=obj.config
    )
    if as_json:
        emit_json(summary)
    sys.exit(0 if summary["ok"] else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--quick", is_flag=True, help="Smaller runs (for CI smoke checks).")
@click.pass_obj
def bench(obj: Ctx, as_json: bool, quick: bool) -> None:
    """Measure publish ceiling vs the ingesters (starts its own runtime)."""
    from bench.run import run_benchmarks

    run_benchmarks(obj.settings, as_json=as_json, quick=quick)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """Health of the runtime and the services writing status files. Exit 1 when something is unhealthy."""
    from pulse.health import collect_health

    report = collect_health(obj.settings)
    if as_json:
        emit_json(report)
    else:
        for line in report["lines"]:
            click.echo(line)
    sys.exit(0 if report["healthy"] else 1)


@cli.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@click.pass_obj
def config_show(obj: Ctx) -> None:
    """Print the effective settings (secrets masked)."""
    emit_json(obj.settings.redacted())


def main() -> None:
    try:
        cli(standalone_mode=True)
    except PulseError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
