"""The application's CLI commands: ``pulse demo`` and ``pulse status`` (registered by ``cli.py``)."""

from __future__ import annotations

import sys
from typing import Any

import click

from pulse.clitools import emit_json, parse_symbols


@click.command()
@click.option("--duration", type=click.FloatRange(min=1), help="Stop after S seconds (default: until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON instead of a table.")
@click.option("--rate", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Venue messages/s.")
@click.option("--faults", is_flag=True, help="Inject a disconnect, malformed frames and bad checksums.")
@click.option("--symbols", callback=parse_symbols, help="The main venue's symbols (default: its demo symbols).")
@click.option("--fx/--no-fx", default=True, show_default=True, help="Run the FX venues' local venue and ingester too.")
@click.option("--backfill", is_flag=True, help="Also backfill the historical venues' shipped files.")
@click.option("--consumers/--no-consumers", default=True, show_default=True,
              help="Run the alerting and matching services too (demo alert rules, paper orders).")  # fmt: skip
@click.option("--broker", type=click.Choice(["lite", "apache"]), help="Broker to start (default runtime.broker).")
@click.pass_obj
def demo(
    obj: Any,
    broker: str | None,
    duration: float | None,
    as_json: bool,
    rate: float,
    faults: bool,
    symbols: list[str] | None,
    fx: bool,
    backfill: bool,
    consumers: bool,
) -> None:
    """Run the whole pipeline on the embedded default: local venues (as the venue registry's demo plans say) →
    ingesters → Pulsar → sink → PostgreSQL, with the alerting and matching services on the live ticks."""
    from app.demo import run_demo
    from control_plane.provision import provision_base_sync
    from pulse.runtime import attach_runtime

    obj.broker = broker  # before the settings are first read
    summary = run_demo(
        obj.settings,
        # Apache Pulsar creates topics on first use only in namespaces that exist: provision them once it is up
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


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--max-tick-age", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="An open market's instrument with no tick for this long is unhealthy (s).")  # fmt: skip
@click.option("--max-sink-lag", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="A sink this far (s) behind the newest published tick is unhealthy.")  # fmt: skip
@click.option("--max-stall", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="A subscription with a backlog and a consumer connected that moved nothing for this long "
                   "is unhealthy (s).")  # fmt: skip
@click.pass_obj
def status(obj: Any, as_json: bool, max_tick_age: float, max_sink_lag: float, max_stall: float) -> None:
    """Health: broker (+ admin API), topics' rates and backlog, stalled subscriptions, database mode, services,
    per-instrument last tick, sink lag. Exit 1 when something is unhealthy (for systemd and monitoring)."""
    from app.health import collect_health

    report = collect_health(
        obj.settings, max_tick_age_s=max_tick_age, max_sink_lag_s=max_sink_lag, max_stall_s=max_stall
    )
    if as_json:
        emit_json(report)
    else:
        for line in report["lines"]:
            click.echo(line)
    sys.exit(0 if report["healthy"] else 1)
