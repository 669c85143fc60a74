"""Kraken's CLI commands: ``pulse ingest kraken`` and ``pulse simulate kraken`` (registered through
:mod:`ingesters.kraken.venue`)."""

from __future__ import annotations

from typing import Any

import click

from ingesters.base.cli import run_live_ingester
from pulse.clitools import check_ws_url, csv_choice, instrument_list, metrics_port_option


@click.command("kraken")
@click.option("--symbols", callback=instrument_list("kraken"), help="Instruments, e.g. BTC/USD,kraken:ETH/USD,XBT/EUR.")
@click.option("--channels", callback=csv_choice(("trade", "ticker", "book"), "--channels"), help="trade,ticker,book")
@click.option("--depth", type=click.Choice(["10", "25", "100", "500", "1000"]), help="Book depth.")
@click.option("--url", help="WebSocket URL (default: kraken.url setting, the real Kraken v2 endpoint).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def ingest(
    obj: Any,
    symbols: list[str] | None,
    channels: list[str] | None,
    depth: str | None,
    url: str | None,
    as_json: bool,
    metrics_port: int | None,
) -> None:
    """Kraken WebSocket v2: trades, tickers/quotes and checksummed books.

    Symbols: --symbols, else the registry's enabled kraken instruments (`pulse symbols`), else kraken.symbols.
    While running it follows `pulse symbols add|remove|enable|disable` without a restart."""
    s = obj.settings.with_overrides(
        kraken={"symbols": symbols, "channels": channels, "depth": int(depth) if depth else None, "url": url}
    )
    check_ws_url(s.kraken.url, "--url / kraken.url")
    from ingesters.kraken.service import KrakenIngester

    k = s.kraken
    run_live_ingester(
        s,
        venue="kraken",
        namespace="crypto",
        explicit=symbols,
        initial=lambda: {sym: tuple(k.channels) for sym in k.symbols},
        make=lambda ctx, subs: KrakenIngester(k, ctx, symbols=subs, channels=k.channels, depth=k.depth, url=k.url),
        as_json=as_json,
        metrics_port=metrics_port,
    )


@click.command("kraken")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=200.0, show_default=True, help="Data messages/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--symbols", callback=instrument_list("kraken"), default="BTC/USD,ETH/USD,SOL/USD", show_default=True)
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N messages.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed frame every N messages.")
@click.option("--bad-checksum-every", type=click.IntRange(min=1), help="Fault: a wrong checksum every N book updates.")
@click.option("--stall-after", type=click.IntRange(min=1), help="Fault: go silent after N messages.")
@click.option("--keep-trading", is_flag=True, help="Pairs once subscribed trade on with no client connected.")
@click.pass_obj
def simulate(
    obj: Any,
    host: str,
    port: int,
    rate: float,
    seed: int,
    symbols: list[str],
    disconnect_after: int | None,
    malformed_every: int | None,
    bad_checksum_every: int | None,
    stall_after: int | None,
    keep_trading: bool,
) -> None:
    """A local Kraken WebSocket v2 venue (seeded random walk, fault injection) with REST GET /0/public/Trades."""
    import asyncio

    from ingesters.kraken.simulator import FaultPlan, run

    obj.settings  # noqa: B018 — sets up logging
    faults = FaultPlan(
        disconnect_after=disconnect_after,
        malformed_every=malformed_every,
        bad_checksum_every=bad_checksum_every,
        stall_after=stall_after,
    )
    asyncio.run(
        run(host=host, port=port, rate=rate, seed=seed, symbols=symbols, faults=faults, keep_trading=keep_trading)
    )


COMMANDS = {"ingest": ingest, "simulate": simulate}
