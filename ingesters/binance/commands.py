"""Binance's CLI commands: ``pulse ingest binance`` and ``pulse simulate binance`` (registered through
:mod:`ingesters.binance.venue`)."""

from __future__ import annotations

from typing import Any

import click

from ingesters.base.cli import run_live_ingester, serve_local_venue
from pulse.clitools import check_http_url, check_ws_url, csv_choice, instrument_list, metrics_port_option

_CHANNELS = ("trade", "quote", "book")


@click.command("binance")
@click.option("--symbols", callback=instrument_list("binance"), help="Instruments, e.g. BTC/USDT,binance:ETHUSDT.")
@click.option("--channels", callback=csv_choice(_CHANNELS, "--channels"), help="trade,quote,book")
@click.option("--url", help="WebSocket base URL (default: binance.url, wss://stream.binance.com:9443).")
@click.option("--rest-url", help="REST base URL (default: binance.rest_url, https://api.binance.com).")
@click.option("--renew-after", type=click.FloatRange(min=0.1), help="Seconds before a connection is renewed.")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def ingest(obj: Any, symbols: list[str] | None, channels: list[str] | None, url: str | None, rest_url: str | None,
           renew_after: float | None, as_json: bool, metrics_port: int | None) -> None:  # fmt: skip
    """Binance spot: trades, book tickers (quotes) and diff-depth books synced to REST snapshots.

    Symbols: --symbols, else the registry's enabled binance instruments (`pulse symbols`), else binance.symbols.
    While running it follows `pulse symbols add|remove|enable|disable` without a restart or a reconnect."""
    s = obj.settings.with_overrides(binance={"symbols": symbols, "channels": channels, "url": url,
                                             "rest_url": rest_url, "renew_after_s": renew_after})  # fmt: skip
    b = s.venue("binance")
    check_ws_url(b.url, "--url / binance.url")
    check_http_url(b.rest_url, "--rest-url / binance.rest_url")
    from ingesters.binance.service import BinanceIngester

    run_live_ingester(
        s,
        venue="binance",
        namespace="crypto",
        explicit=symbols,
        initial=lambda: {sym: tuple(b.channels) for sym in b.symbols},
        make=lambda ctx, subs: BinanceIngester(b, ctx, symbols=subs, channels=b.channels),
        as_json=as_json,
        metrics_port=metrics_port,
    )


@click.command("binance")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9443, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=200.0, show_default=True, help="Market steps/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--symbols", callback=instrument_list("binance"), default="BTC/USDT,ETH/USDT", show_default=True)
@click.option("--ping-interval", type=click.FloatRange(min=0.05), default=20.0, show_default=True,
              help="Seconds between the venue's pings.")  # fmt: skip
@click.option("--ping-timeout", type=click.FloatRange(min=0.05), default=60.0, show_default=True,
              help="A client that has not answered a ping by then is disconnected.")  # fmt: skip
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N messages.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed frame every N messages.")
@click.option("--skip-update-every", type=click.IntRange(min=1), help="Fault: withhold every N-th depth diff.")
@click.option("--stop-ponging-after", type=click.IntRange(min=1), help="Fault: stop answering pings after N messages.")
@click.pass_obj
def simulate(obj: Any, host: str, port: int, rate: float, seed: int, symbols: list[str], ping_interval: float,
             ping_timeout: float, disconnect_after: int | None, malformed_every: int | None,
             skip_update_every: int | None, stop_ponging_after: int | None) -> None:  # fmt: skip
    """A local Binance spot venue: combined WebSocket streams and the REST depth, trades and exchangeInfo
    endpoints on one port (seeded random walk, fault injection)."""
    from ingesters.binance.simulator import FaultPlan, run

    obj.settings  # noqa: B018 — sets up logging
    faults = FaultPlan(disconnect_after=disconnect_after, malformed_every=malformed_every,
                       skip_update_every=skip_update_every, stop_ponging_after=stop_ponging_after)  # fmt: skip

    def ready(sim: Any) -> None:
        click.echo(f"binance venue listening on {sim.url} (REST {sim.rest_url})")

    serve_local_venue(run(host, port, rate=rate, seed=seed, symbols=symbols, faults=faults, on_ready=ready,
                          ping_interval_s=ping_interval, ping_timeout_s=ping_timeout))  # fmt: skip


COMMANDS = {"ingest": ingest, "simulate": simulate}
