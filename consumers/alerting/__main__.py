"""``python -m consumers.alerting [--config F] [--home D] {alerts …|run}``: the alerting commands on their own.

The same click objects ``cli.py`` registers (``pulse alerts …``, ``pulse consumers alerting run``), with the
same global options, for tests and benchmarks that start the service as a process before ``cli.py`` wires it.
"""

from __future__ import annotations

import sys

import click

from consumers.alerting.commands import alerting_run, alerts
from pulse.errors import PulseError
from pulse.settings import Settings, load_settings


class _Obj:
    def __init__(self, config: str | None, home: str | None) -> None:
        self.config, self.home = config, home
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from pulse.log import register_secret, setup_logging

            s = load_settings(self.config)
            if self.home:
                s = s.with_overrides(runtime={"home": self.home})
            setup_logging(s.logging.level, s.logging.format)
            for secret in s.secrets():
                register_secret(secret)
            self._settings = s
        return self._settings


@click.group()
@click.option("--config", type=click.Path(dir_okay=False))
@click.option("--home", type=click.Path(file_okay=False))
@click.pass_context
def main(ctx: click.Context, config: str | None, home: str | None) -> None:
    """Alerting commands (see `pulse alerts --help`)."""
    ctx.obj = _Obj(config, home)


main.add_command(alerts)
main.add_command(alerting_run)

if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    except PulseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
