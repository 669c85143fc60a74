"""Dukascopy's CLI commands: ``pulse simulate dukascopy`` and ``pulse backfill dukascopy`` (registered through
:mod:`ingesters.dukascopy.venue`)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from pulse.clitools import UTC_TIME, OldSpellings, check_http_url, emit_json, fail
from pulse.errors import EXIT_FAILED


@click.command("dukascopy")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8767, show_default=True)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False),
    required=True,
    help="Directory laid out like the datafeed: SYMBOL/YYYY/MM(0-based)/DD/HHh_ticks.bi5",
)
@click.option("--latency", type=click.FloatRange(0, 60), default=0.0, help="Seconds added to every answer.")
@click.pass_obj
def simulate(obj: Any, host: str, port: int, root: str, latency: float) -> None:
    """Serve a directory of .bi5 files as Dukascopy's datafeed (/datafeed) and its JSON data API (/v1)."""
    import asyncio

    from ingesters.dukascopy.simulator import DukascopySimulator, Faults

    obj.settings  # noqa: B018 — sets up logging

    async def serve() -> None:
        sim = DukascopySimulator(Path(root), host=host, port=port, faults=Faults(latency_s=latency))
        await sim.start()
        click.echo(f"serving {root} at {sim.base_url} (bi5) and {sim.api_url} (JSON data API)", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


@click.command("dukascopy")
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
@click.option(
    "--feed",
    type=click.Choice(["api", "bi5"]),
    help="api: Dukascopy's JSON data API (default, setting dukascopy.feed); bi5: the .bi5 datafeed layout.",
)
@click.option(
    "--url",
    "--base-url",
    "base_url",
    cls=OldSpellings,
    help="Feed root (default dukascopy.base_url, else the feed's own); a local server in tests and the demo.",
)
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
def backfill(
    obj: Any,
    symbol: str,
    start: Any,
    end: Any,
    feed: str | None,
    base_url: str | None,
    timeframe: str | None,
    side: str | None,
    per_tick: bool,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Download hourly tick files (or candle files), decode and publish them in time order (resumable, idempotent)."""
    from ingesters.dukascopy.service import run_backfill, run_candle_backfill
    from pulse.instruments import resolve_instrument
    from pulse.runtime import resolve_endpoints

    s = obj.settings
    # EURUSD, EUR/USD or dukascopy:EURUSD; an unknown instrument is refused before anything starts
    symbol = resolve_instrument(symbol, "dukascopy")[1].venue_symbol
    if base_url:
        check_http_url(base_url, "--url")
    if side and not timeframe:
        raise click.UsageError("--side needs --candles")
    if per_tick and timeframe:
        raise click.UsageError("--per-tick is for ticks, not --candles")
    ep = resolve_endpoints(s, need_database=False)
    progress = not (no_progress or as_json)
    if timeframe:
        summary = run_candle_backfill(
            s, ep, symbol, start, end, timeframe=timeframe, side=side or "bid", base_url=base_url, feed=feed,
            progress=progress,
        )  # fmt: skip
    else:
        summary = run_backfill(s, ep, symbol, start, end, base_url=base_url, feed=feed, progress=progress,
                               **({"batch_ticks": 1} if per_tick else {}))  # fmt: skip
    # Recorded after the run (a refused request changes nothing): the sink follows registered historical
    # instruments and subscribes from the earliest message, so it still stores everything just published.
    hook = getattr(obj, "on_backfilled", None)
    if not summary["published"]:
        registry = "unchanged (nothing published)"
    else:
        registry = hook(s, "dukascopy", symbol) if hook else "not recorded (no registry hook)"
    summary["registry"] = registry
    if as_json:
        emit_json(summary)
    else:
        skip = ("error", "registry")
        shown = {k: v for k, v in summary.items() if not isinstance(v, (list, dict)) and k not in skip}
        click.echo(" ".join(f"{k}={round(v, 1) if isinstance(v, float) else v}" for k, v in shown.items()))
        click.echo(f"registry: {registry}", err=True)
    if summary.get("error"):
        fail(summary["error"], EXIT_FAILED)  # (with --json a JSON object on stderr; the summary is on stdout)
    sys.exit(0 if summary["ok"] else 1)


COMMANDS = {"simulate": simulate, "backfill": backfill}
