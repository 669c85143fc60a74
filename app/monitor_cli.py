"""``pulse monitor``: the availability poller's command (see :mod:`app.monitor`)."""

from __future__ import annotations

import re
import signal
import sys
import threading
from typing import Any

import click

from pulse.clitools import emit_json, metrics_port_option

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")


def parse_interval(_ctx: Any, _param: Any, value: str | None) -> float | None:
    """``15m``, ``90s``, ``1h`` or seconds; refused otherwise."""
    if value is None:
        return None
    m = _DURATION.match(value.strip())
    if not m:
        raise click.BadParameter(f"{value!r} is not a duration such as 15m, 90s or 1h")
    seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if not 1 <= seconds <= 86_400:
        raise click.BadParameter("must be between 1 s and 24 h")
    return seconds


@click.command("monitor")
@click.option("--once", is_flag=True, help="One check, then exit (1 when it failed).")
@click.option("--interval", callback=parse_interval, help="Time between checks, e.g. 15m (monitor.interval_s).")
@click.option("--json", "as_json", is_flag=True, help="Print the last check as JSON on exit.")
@metrics_port_option
@click.pass_obj
def monitor(obj: Any, once: bool, interval: float | None, as_json: bool, metrics_port: int | None) -> None:
    """Ask the availability Lambda which Dukascopy hours exist, backfill the new ones, refresh their candles; and
    repair the recent gaps of the monitor.repair instruments from their history sources."""
    from app.availability_client import invoker_from_settings
    from app.monitor import Monitor
    from app.monitor_metrics import monitor_probe
    from pulse.runtime import resolve_endpoints
    from pulse.supervise import Supervisor

    s = obj.settings
    if interval is not None:
        s = s.with_overrides(monitor={"interval_s": interval})
    lambda_set = any(getattr(s.monitor, k) for k in ("lambda_function", "function_url", "local_handler"))
    # a missing or ambiguous setting is refused before anything runs (none at all is fine when it only repairs)
    invoker = invoker_from_settings(s.monitor) if lambda_set or not s.monitor.repair else None
    ep = resolve_endpoints(s)
    mon = Monitor(s, ep, invoker)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sup = None if once else Supervisor(monitor_probe(mon), s, port=metrics_port, stopping=stop.is_set).start()
    try:
        last = mon.run(stop, once=once)
    finally:
        if sup is not None:
            sup.stop()
    doc = last.as_dict() if last else {}
    if as_json:
        emit_json(doc)
    elif last is not None:
        click.echo(f"checked {last.checked_at}: {'ok' if last.ok else 'NOT ok'} {last.skipped or last.error or ''}")
        for sym, info in last.instruments.items():
            click.echo(f"  {sym}: latest {info['latest_hour']} backfilled {info['backfilled']} {info['error'] or ''}")
        for name, info in last.repairs.items():
            click.echo(f"  {name}: repaired {len(info['hours'])} hour(s), {info['added']} rows {info['error'] or ''}")
    sys.exit(0 if (last is None or last.ok) else 1)
