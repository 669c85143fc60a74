"""OANDA's CLI commands: ``pulse ingest oanda`` and ``pulse simulate oanda`` (registered through
:mod:`ingesters.oanda.venue`)."""

from __future__ import annotations

from typing import Any

import click

from ingesters.base.cli import run_live_ingester
from ingesters.oanda.settings import oanda_token
from pulse.clitools import OldSpellings, check_http_url, instrument_list, metrics_port_option

#: --symbols (alias --instruments): EUR/USD, oanda:EUR/USD or OANDA's EUR_USD; OANDA instrument names out
parse_instruments = instrument_list("oanda", native=True)


@click.command("oanda")
@click.option(
    "--symbols",
    "--instruments",
    "instruments",
    cls=OldSpellings,
    callback=parse_instruments,
    help="Instruments, e.g. EUR/USD,GBP_USD,oanda:USD_JPY.",
)
@click.option(
    "--url", "--api-url", "api_url", cls=OldSpellings, help="Stream host override (default: oanda.environment's host)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def ingest(
    obj: Any, instruments: list[str] | None, api_url: str | None, as_json: bool, metrics_port: int | None
) -> None:
    """OANDA v20 pricing stream: quotes with the full ladder; sleeps while the FX market is closed.

    Instruments: --symbols, else the registry's enabled oanda instruments, else oanda.instruments; follows
    `pulse symbols …` changes while running (each change reopens the stream with the new list)."""
    s = obj.settings.with_overrides(oanda={"instruments": instruments, "api_url": api_url})
    if s.oanda.api_url:
        check_http_url(s.oanda.api_url, "--url / oanda.api_url")
    token = oanda_token(s)  # a missing or unreadable token file is refused before anything starts
    from ingesters.oanda.service import OandaIngester
    from ingesters.oanda.symbols import instrument_to_symbol, symbol_to_instrument

    o = s.oanda

    def make(ctx: Any, subs: dict[str, tuple[str, ...]]) -> OandaIngester:
        names = [symbol_to_instrument(sym) for sym in subs]
        return OandaIngester(o, ctx, instruments=names, token=token, api_url=o.api_url or None)

    run_live_ingester(
        s,
        venue="oanda",
        namespace="fx",
        explicit=instruments,
        initial=lambda: {instrument_to_symbol(i): ("quote",) for i in o.instruments},
        make=make,
        as_json=as_json,
        metrics_port=metrics_port,
    )


@click.command("oanda")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8766, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=20.0, show_default=True, help="PRICE lines/s.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--heartbeat-s", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option(
    "--symbols",
    "--instruments",
    "instruments",
    cls=OldSpellings,
    callback=parse_instruments,
    default="EUR_USD,GBP_USD,USD_JPY,AUD_USD",
    show_default=True,
)
@click.option("--disconnect-after", type=click.IntRange(min=1), help="Fault: drop each connection after N lines.")
@click.option("--stall-after", type=click.IntRange(min=1), help="Fault: go silent after N lines.")
@click.option("--malformed-every", type=click.IntRange(min=1), help="Fault: a malformed line every N lines.")
@click.option("--chunk-bytes", type=click.IntRange(min=1), help="Write the body in chunks of N bytes.")
@click.option("--closed", is_flag=True, help="Market closed: non-tradeable prices, then heartbeats only.")
@click.option("--reject-status", type=click.IntRange(400, 599), help="Answer every request with this status.")
@click.pass_obj
def simulate(
    obj: Any,
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

    from ingesters.oanda.simulator import OandaFaults, run

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
            token=oanda_token(s) or "sim-token",
            account_id=s.oanda.account_id or "101-004-1234567-001",
            instruments=instruments,
            rate=rate,
            seed=seed,
            heartbeat_s=heartbeat_s,
            faults=faults,
        )
    )


COMMANDS = {"ingest": ingest, "simulate": simulate}
