"""Alpaca's CLI commands: ``pulse ingest alpaca`` and ``pulse simulate alpaca`` (registered through
:mod:`ingesters.alpaca.venue`). Credentials come from settings only (``alpaca.key``/``secret`` or their ``*_file``
forms, e.g. ``PULSE_ALPACA__KEY_FILE``), never from the command line, where other users could read them."""

from __future__ import annotations

import os
from typing import Any

import click

from ingesters.base.cli import run_live_ingester, serve_local_venue
from pulse.clitools import check_ws_url, csv_choice, fail, instrument_list, metrics_port_option

_CHANNELS = ("trade", "quote", "bar")
_FEEDS = ("iex", "sip", "delayed_sip")


@click.command("alpaca")
@click.option("--symbols", callback=instrument_list("alpaca"), help="Tickers, e.g. AAPL,TSLA,alpaca:BRK.B.")
@click.option("--channels", callback=csv_choice(_CHANNELS, "--channels"), help="trade,quote,bar")
@click.option("--feed", type=click.Choice(_FEEDS), help="Data feed (default: alpaca.feed, iex).")
@click.option(
    "--url", help="Stream base URL without the feed (default: alpaca.url, wss://stream.data.alpaca.markets/v2)."
)
@click.option("--market-hours", type=click.Choice(("regular", "extended", "always")),
              help="When to connect (default: alpaca.market_hours, regular NYSE sessions).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def ingest(obj: Any, symbols: list[str] | None, channels: list[str] | None, feed: str | None, url: str | None,
           market_hours: str | None, as_json: bool, metrics_port: int | None) -> None:  # fmt: skip
    """Alpaca market data v2 (US equities): trades, quotes and minute bars into the equities namespace.

    Outside the NYSE session it publishes market_closed and sleeps until the next open. Symbols: --symbols, else
    the registry's enabled alpaca instruments (`pulse symbols`), else alpaca.symbols; it follows
    `pulse symbols add|remove|enable|disable` while running."""
    s = obj.settings.with_overrides(alpaca={"symbols": symbols, "channels": channels, "feed": feed, "url": url,
                                            "market_hours": market_hours})  # fmt: skip
    a = s.venue("alpaca")
    check_ws_url(a.url, "--url / alpaca.url")
    key, secret = s.venue_secret("alpaca", "key"), s.venue_secret("alpaca", "secret")
    if not key or not secret:
        fail("Alpaca credentials missing: set alpaca.key and alpaca.secret (or alpaca.key_file / alpaca.secret_file, "
             "e.g. PULSE_ALPACA__KEY_FILE)")  # fmt: skip
    from ingesters.alpaca.service import AlpacaIngester

    run_live_ingester(
        s,
        venue="alpaca",
        namespace="equities",
        explicit=symbols,
        initial=lambda: {sym: tuple(a.channels) for sym in a.symbols},
        make=lambda ctx, subs: AlpacaIngester(a, ctx, key=key, secret=secret, symbols=subs, channels=a.channels),
        as_json=as_json,
        metrics_port=metrics_port,
    )


@click.command("alpaca")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8769, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=50.0, show_default=True, help="Market steps/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--symbols", callback=instrument_list("alpaca"), default="AAPL,TSLA", show_default=True)
@click.option("--key", default="PKLOCAL", show_default=True, help="The key id the venue accepts.")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="File holding the secret the venue accepts "
              "(default: $ALPACA_SIMULATOR_SECRET).")  # fmt: skip
@click.option("--feeds", callback=csv_choice(_FEEDS, "--feeds"), default="iex,sip,delayed_sip", show_default=True,
              help="Feeds the key may use (others: 409 insufficient subscription).")  # fmt: skip
@click.option("--bar-interval", type=click.FloatRange(min=0.05), default=60.0, show_default=True,
              help="Seconds per bar (Alpaca: one minute).")  # fmt: skip
@click.option("--symbol-limit", type=click.IntRange(min=1), help="Most trade/quote symbols per connection (405).")
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N frames.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed frame every N frames.")
@click.option("--stall-after", type=click.IntRange(min=1), help="Fault: stop sending after N frames (stay connected).")
@click.pass_obj
def simulate(obj: Any, host: str, port: int, rate: float, seed: int, symbols: list[str], key: str,
             secret_file: str | None, feeds: list[str], bar_interval: float, symbol_limit: int | None,
             disconnect_after: int | None, malformed_every: int | None, stall_after: int | None) -> None:  # fmt: skip
    """A local Alpaca market data v2 venue (/v2/{iex,sip,delayed_sip}) with auth checking and fault injection."""
    from pathlib import Path

    from ingesters.alpaca.simulator import FaultPlan, run
    from pulse.log import register_secret

    obj.settings  # noqa: B018 — sets up logging
    secret = Path(secret_file).read_text().strip() if secret_file else os.environ.get("ALPACA_SIMULATOR_SECRET", "")
    if not secret:
        fail("the local venue needs the secret it accepts: --secret-file or $ALPACA_SIMULATOR_SECRET")
    register_secret(secret)
    faults = FaultPlan(disconnect_after=disconnect_after, malformed_every=malformed_every, stall_after=stall_after)

    def ready(sim: Any) -> None:
        click.echo(f"alpaca venue listening on {sim.url}/{{{','.join(sim.feeds)}}}")

    serve_local_venue(run(host, port, rate=rate, seed=seed, symbols=symbols, credentials={key: secret},
                          feeds=tuple(feeds), bar_interval_s=bar_interval, symbol_limit=symbol_limit, faults=faults,
                          on_ready=ready))  # fmt: skip


COMMANDS = {"ingest": ingest, "simulate": simulate}
