"""Coinbase's CLI commands: ``pulse ingest coinbase`` and ``pulse simulate coinbase`` (registered through
:mod:`ingesters.coinbase.venue`)."""

from __future__ import annotations

from typing import Any

import click

from ingesters.base.cli import run_live_ingester, serve_local_venue
from pulse.clitools import (
    check_http_url,
    check_ws_url,
    csv_choice,
    fail,
    instrument_list,
    metrics_port_option,
)

_CHANNELS = ("trade", "ticker", "book")


@click.command("coinbase")
@click.option("--symbols", callback=instrument_list("coinbase"), help="Instruments, e.g. BTC/USD,coinbase:ETH-USD.")
@click.option("--channels", callback=csv_choice(_CHANNELS, "--channels"), help="trade,ticker,book")
@click.option("--url", help="WebSocket URL (default: coinbase.url, wss://advanced-trade-ws.coinbase.com).")
@click.option("--rest-url", help="REST base URL for product metadata (default: coinbase.rest_url).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def ingest(obj: Any, symbols: list[str] | None, channels: list[str] | None, url: str | None, rest_url: str | None,
           as_json: bool, metrics_port: int | None) -> None:  # fmt: skip
    """Coinbase Advanced Trade: market trades, tickers (with quotes) and level2 books; sequence gaps resubscribe.

    Symbols: --symbols, else the registry's enabled coinbase instruments (`pulse symbols`), else coinbase.symbols.
    While running it follows `pulse symbols add|remove|enable|disable` without a restart or a reconnect."""
    s = obj.settings.with_overrides(coinbase={"symbols": symbols, "channels": channels, "url": url,
                                              "rest_url": rest_url})  # fmt: skip
    c = s.venue("coinbase")
    check_ws_url(c.url, "--url / coinbase.url")
    check_http_url(c.rest_url, "--rest-url / coinbase.rest_url")
    from ingesters.coinbase.symbols import resolve
    from pulse.errors import SymbolError

    for sym in c.symbols:  # the settings' symbols are checked before anything starts (--symbols already were)
        try:
            resolve(sym)
        except SymbolError as exc:
            fail(f"coinbase.symbols: {exc}")
    from ingesters.coinbase.service import CoinbaseIngester

    run_live_ingester(
        s,
        venue="coinbase",
        namespace="crypto",
        explicit=symbols,
        initial=lambda: {sym: tuple(c.channels) for sym in c.symbols},
        make=lambda ctx, subs: CoinbaseIngester(c, ctx, symbols=subs, channels=c.channels),
        as_json=as_json,
        metrics_port=metrics_port,
    )


@click.command("coinbase")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8768, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=200.0, show_default=True, help="Market steps/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--symbols", callback=instrument_list("coinbase"), default="BTC/USD,ETH/USD", show_default=True)
@click.option("--heartbeat-interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between heartbeats messages.")  # fmt: skip
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N messages.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed message every N messages.")
@click.option("--skip-sequence-every", type=click.IntRange(min=1),
              help="Fault: lose every N-th level2 update (its sequence_num is skipped).")  # fmt: skip
@click.option("--stall-after", type=click.IntRange(min=1), help="Fault: go silent after N messages (--stall-s).")
@click.option("--stall-s", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@click.pass_obj
def simulate(obj: Any, host: str, port: int, rate: float, seed: int, symbols: list[str], heartbeat_interval: float,
             disconnect_after: int | None, malformed_every: int | None, skip_sequence_every: int | None,
             stall_after: int | None, stall_s: float) -> None:  # fmt: skip
    """A local Coinbase Advanced Trade venue: the market-data WebSocket (level2, market_trades, ticker, heartbeats)
    and the public products endpoint on one port (seeded random walk, fault injection)."""
    from ingesters.coinbase.simulator import FaultPlan, run

    obj.settings  # noqa: B018 — sets up logging
    faults = FaultPlan(disconnect_after=disconnect_after, malformed_every=malformed_every,
                       skip_sequence_every=skip_sequence_every, stall_after=stall_after, stall_s=stall_s)  # fmt: skip

    def ready(sim: Any) -> None:
        click.echo(f"coinbase venue listening on {sim.url} (REST {sim.rest_url})")

    serve_local_venue(run(host, port, rate=rate, seed=seed, symbols=symbols, faults=faults, on_ready=ready,
                          heartbeat_interval_s=heartbeat_interval))  # fmt: skip


COMMANDS = {"ingest": ingest, "simulate": simulate}
