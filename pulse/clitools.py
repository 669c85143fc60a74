"""Helpers every package's CLI commands share (``cli.py`` wires them; ``*/commands.py`` define them).

A command's ``obj`` is the CLI's context: it has ``.settings`` (:class:`pulse.settings.Settings`, loaded once,
which also sets up logging) and ``.home``/``.config``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from pulse.errors import PulseError

#: Times on the command line are UTC: 2019-02-04T00, 2019-02-04T00:30, 2019-02-04T00:30:15 or 2019-02-04.
UTC_TIME = click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


def csv_choice(allowed: tuple[str, ...], option: str) -> Any:
    """A click callback: a comma-separated list of ``allowed`` values (unknown ones refused by name)."""

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
    """A click callback: a comma-separated list of canonical symbols (``BTC/USD,ETH/USD``)."""
    if value is None:
        return None
    from pulse.symbols import parse_symbol_list

    try:
        return parse_symbol_list(value)
    except PulseError as exc:
        raise click.BadParameter(str(exc), param_hint="--symbols") from exc


def instrument_list(venue: str, *, native: bool = False, option: str = "--symbols") -> Any:
    """A click callback: a comma-separated list of ``venue``'s instruments — ``BTC/USD``, ``kraken:BTC/USD`` or the
    venue's own spelling (``EUR_USD``) — as canonical symbols, or with ``native`` as the venue's own names."""

    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
        if value is None:
            return None
        from pulse.instruments import parse_instrument_list
        from pulse.venues import get

        try:
            ids = parse_instrument_list(value, venue)
            if not native:
                return [i.symbol for i in ids]
            v = get(venue)
            return [v.resolve(i.symbol).venue_symbol for i in ids]
        except PulseError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from exc

    return convert


def check_http_url(url: str, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"{name}: {url!r} is not an http:// or https:// URL")


def check_ws_url(url: str, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        fail(f"{name}: {url!r} is not a ws:// or wss:// URL")


def metrics_port_option(fn: Any) -> Any:
    """``--metrics-port N`` for a long-running command: /metrics, /healthz and /readyz on port N (0 = off;
    default: the ``[metrics]`` settings, see :mod:`pulse.metrics`)."""
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve /metrics, /healthz and /readyz on this port (0 = off; default: metrics.ports / metrics.port).",
    )(fn)
