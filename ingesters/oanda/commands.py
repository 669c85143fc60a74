"""OANDA's CLI commands: ``pulse ingest oanda`` and ``pulse simulate oanda`` (registered through
:mod:`ingesters.oanda.venue`)."""

from __future__ import annotations

from typing import Any

import click

from ingesters.base.cli import log_start, registry_url
from pulse.clitools import check_http_url, emit_json, instrument_list, metrics_port_option

#: --symbols (alias --instruments): EUR/USD, oanda:EUR/USD or OANDA's EUR_USD; OANDA instrument names out
parse_instruments = instrument_list("oanda", native=True)


@click.command("oanda")
@click.option(
    "--symbols",
    "--instruments",
    "instruments",
    callback=parse_instruments,
    help="Instruments, e.g. EUR/USD,GBP_USD,oanda:USD_JPY.",
)
@click.option("--url", "--api-url", "api_url", help="Stream host override (default: oanda.environment's host).")
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
    token = s.oanda_token()  # a missing or unreadable token file is refused before anything starts
    from ingesters.base.app import run_ingester
    from ingesters.base.control import LiveInstruments
    from ingesters.oanda.service import OandaIngester
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(s, need_database=False)
    o = s.oanda
    live: dict[str, Any] = {}

    def build(ctx: Any, bus: Any) -> OandaIngester:
        li = live["li"] = LiveInstruments(bus, "ingest-oanda", "oanda", registry_url(s, instruments))
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
        metrics_port=metrics_port,
    )
    if as_json:
        emit_json(summary)


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
            token=s.oanda_token() or "sim-token",
            account_id=s.oanda.account_id or "101-004-1234567-001",
            instruments=instruments,
            rate=rate,
            seed=seed,
            heartbeat_s=heartbeat_s,
            faults=faults,
        )
    )


COMMANDS = {"ingest": ingest, "simulate": simulate}
