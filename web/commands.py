"""``pulse web``: the console — WebSocket fan-out, HTTP API and page."""

from __future__ import annotations

from typing import Any

import click

from pulse.clitools import metrics_port_option


@click.command("web")
@click.option("--host", help="Address to listen on (default web.host, 127.0.0.1). Beyond loopback every request "
              "needs the bearer token.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default web.port, 8000; 0 = any free port).")
@metrics_port_option
@click.pass_obj
def web_command(obj: Any, host: str | None, port: int | None, metrics_port: int | None) -> None:
    """The Pulse console: live prices over WebSocket (/ws), the HTTP API (/api, OpenAPI at /api/openapi.json)
    and the page at /. Reads are open on loopback; changes need web.token."""
    from web.app import serve
    from web.security import is_loopback

    s = obj.settings
    host = host or s.web.host
    port = s.web.port if port is None else port
    if not is_loopback(host) and not s.web_token():
        raise click.UsageError(f"--host {host} is beyond loopback: set web.token or web.token_file first")
    serve(s, host, port, metrics_port)
