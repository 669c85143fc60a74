"""Helpers every package's CLI commands share (``cli.py`` wires them; ``*/commands.py`` define them).

A command's ``obj`` is the CLI's context: it has ``.settings`` (:class:`pulse.settings.Settings`, loaded once,
which also sets up logging) and ``.home``/``.config``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from pulse.errors import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE, PulseError

#: Times on the command line are UTC: 2019-02-04T00, 2019-02-04T00:30, 2019-02-04T00:30:15 or 2019-02-04.
UTC_TIME = click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"])


class OldSpellings(click.Option):
    """An option whose names after the first are older spellings (``--instruments`` for ``--symbols``,
    ``--api-url`` for ``--url``): still accepted, not shown in ``--help`` (``cls=OldSpellings``)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        names = self.opts
        self.opts = names[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = names


def json_requested(argv: list[str] | None = None) -> bool:
    """Whether the command line asks for JSON (``--json`` before any ``--``): errors are then JSON too."""
    args = sys.argv[1:] if argv is None else argv
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def fail(message: str, code: int = EXIT_USAGE, *, kind: str | None = None, detail: str = "") -> NoReturn:
    """End the command: ``error: MESSAGE`` on stderr, or with ``--json`` one object
    ``{"error": MESSAGE, "exit_code": CODE, "kind": usage|failed|unavailable|interrupted|bug}`` (a bug adds its
    ``traceback``); secrets masked."""
    from pulse.log import mask

    message = mask(message)
    if json_requested():
        kind = kind or {EXIT_USAGE: "usage", EXIT_UNAVAILABLE: "unavailable", EXIT_INTERRUPTED: "interrupted"}.get(
            code, "failed"
        )
        doc = {"error": message, "exit_code": code, "kind": kind, **({"traceback": mask(detail)} if detail else {})}
        click.echo(json.dumps(doc), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Sequence[str] = (),
                title: str | None = None) -> None:  # fmt: skip
    """A table on stdout with rich: aligned columns (those named in ``right`` right-justified), cells printed as
    they are (no markup), never wrapped; on a pipe as wide as it needs (scripts should use ``--json``)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=None if sys.stdout.isatty() else 1000, highlight=False, markup=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(table)


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
