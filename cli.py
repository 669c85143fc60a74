"""``pulse`` — the one entry point. Parses options, loads settings once, calls into the packages.

Every command refuses a bad argument or setting with a message naming it, before anything starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from app import commands as app_commands
from control_plane import commands as control_commands
from pulse.clitools import fail, json_requested
from pulse.errors import EXIT_INTERRUPTED, PulseError, exit_code_for, interrupted, unreachable_what
from pulse.settings import Settings, load_settings
from sinks.postgres import commands as sink_commands
from web.commands import web_command


def _register_backfilled(settings: Settings, venue: str, symbol: str) -> str:
    from control_plane.symbols import ensure_registered

    return ensure_registered(settings, venue, symbol)


class Ctx:
    def __init__(self, config: str | None, home: str | None) -> None:
        self.config = config
        self.home = home
        self.broker: str | None = None  # `--broker` of the commands that start one (up, demo, bench)
        self._settings: Settings | None = None
        # after a backfill published data: record the instrument so the sink stores it (wired here: the venue's
        # command must not import the control plane)
        self.on_backfilled: Callable[[Settings, str, str], str] = _register_backfilled

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            s = load_settings(self.config)
            if self.home:
                s = s.with_overrides("option --home", runtime={"home": self.home})
            if self.broker:
                s = s.with_overrides("option --broker", runtime={"broker": self.broker})
            from pulse.runtime import attach_runtime

            self._settings = attach_runtime(s)
            s = self._settings
            from pulse.log import register_secret, setup_logging

            setup_logging(s.logging.level, s.logging.format)
            for secret in s.secrets():
                register_secret(secret)
        return self._settings


#: commands whose modules are imported only when the command runs (or --help lists them): `pulse repair` alone
#: would otherwise put SQLAlchemy and psycopg (~0.6 s here) on every command's start-up
LAZY = {
    "lambda": "app.lambda_package:lambda_group",
    "monitor": "app.monitor_cli:monitor",
    "coverage": "app.coverage:coverage_command",
    "repair": "app.repair:repair_command",
}


class PulseGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY and cmd_name not in self.commands:
            import importlib

            module, attr = LAZY[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pulse-market-data", prog_name="pulse", message="%(prog)s %(version)s")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Settings file (default ./pulse.toml).")
@click.option("--home", type=click.Path(file_okay=False), help="Runtime directory (default .pulse).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, home: str | None) -> None:
    """Pulse: live and historical market data into Apache Pulsar."""
    ctx.obj = Ctx(config, home)


# -- venues: ingest, simulate, backfill ------------------------------------------------------------------
class VenueGroup(click.Group):
    """``pulse <role> <venue>``: one subcommand per registered venue that provides a ``role`` command
    (:attr:`pulse.venues.Venue.commands`), looked up in the venue registry when the command line is parsed."""

    def __init__(self, *args: Any, role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = role

    def _commands(self) -> dict[str, click.Command]:
        from pulse.venues import venues

        out: dict[str, click.Command] = {}
        for name, v in venues().items():
            cmd = v.commands().get(self.role) if v.commands is not None else None
            if cmd is not None:
                out[name] = cmd
        return out

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._commands().get(cmd_name)


@cli.group(cls=VenueGroup, role="ingest")
def ingest() -> None:
    """Run a venue ingester (in the foreground; SIGTERM flushes and exits 0)."""


@cli.group(cls=VenueGroup, role="simulate")
def simulate() -> None:
    """Run a local venue that speaks the venue's real wire protocol (for demos and tests)."""


@cli.group(cls=VenueGroup, role="backfill")
def backfill() -> None:
    """Load historical data through Pulsar (the `historical` namespace)."""


# -- consumers -------------------------------------------------------------------------------------------
def _register_consumers() -> None:
    """`pulse consumers matching|alerting run`, `pulse orders …`, `pulse alerts …` (defined in their packages)."""
    from consumers.alerting.commands import alerting_run, alerts
    from consumers.matching.commands import matching, orders

    @cli.group("consumers")
    def consumers_group() -> None:
        """Services that consume the live ticks: paper-order matching and alerting."""

    @consumers_group.group("alerting")
    def alerting_group() -> None:
        """Rules evaluated on every tick; alerts to the alerts namespace, the database and webhooks."""

    alerting_group.add_command(alerting_run)
    consumers_group.add_command(matching)
    cli.add_command(orders)
    cli.add_command(alerts)


_register_consumers()
for command in (app_commands.up, app_commands.down, app_commands.demo, app_commands.status, app_commands.bench,
                app_commands.config, sink_commands.sink, sink_commands.candles, control_commands.symbols,
                control_commands.pulsar_group, web_command):  # fmt: skip
    cli.add_command(command)
cli.add_command(app_commands.systemd)


def main() -> None:
    """Run one command and end with the documented exit code (:mod:`pulse.errors`): errors are one line on
    stderr, or one JSON object there when the command line has ``--json``."""
    try:
        rc = cli.main(prog_name="pulse", standalone_mode=False)
    except BrokenPipeError:  # `pulse symbols list | head`: the reader left; nothing more to say, as click does
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 — the interpreter's last flush must not fail again
        sys.exit(1)
    except click.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort) before the command finished
        fail("interrupted", EXIT_INTERRUPTED, kind="interrupted")
    except click.ClickException as exc:  # a bad argument or option: click's message, usage hint in text mode
        if json_requested():
            fail(exc.format_message(), exc.exit_code, kind="usage")
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if interrupted(exc):  # Ctrl-C inside the Pulsar client's blocking call
            fail("interrupted", EXIT_INTERRUPTED, kind="interrupted")
        code, what = exit_code_for(exc), unreachable_what(exc)
        if not isinstance(exc, PulseError) and not what:
            if not json_requested():
                raise  # a bug: the traceback says where (exit 1)
            import traceback

            fail(f"{type(exc).__name__}: {exc}", code, kind="bug", detail=traceback.format_exc())
        text = str(exc) if isinstance(exc, PulseError) else f"{type(exc).__name__}: {exc}"
        fail(f"{what} unreachable: {text}" if what and what not in text.split(":")[0] else text, code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
