"""``python -m consumers.matching [--home DIR] [--config FILE] run|orders …``: the matching commands without
``cli.py`` (tests and the benchmark start the service this way; ``pulse`` registers the same click objects)."""

from __future__ import annotations

import sys

import click

from consumers.matching.commands import matching_run, orders
from pulse.errors import PulseError
from pulse.settings import Settings, load_settings


class _Obj:
    def __init__(self, config: str | None, home: str | None) -> None:
        self.config, self.home = config, home
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            s = load_settings(self.config)
            if self.home:
                s = s.with_overrides(runtime={"home": self.home})
            from pulse.log import register_secret, setup_logging

            setup_logging(s.logging.level, s.logging.format)
            for secret in s.secrets():
                register_secret(secret)
            self._settings = s
        return self._settings


@click.group()
@click.option("--config", "config")
@click.option("--home")
@click.pass_context
def main(ctx: click.Context, config: str | None, home: str | None) -> None:
    ctx.obj = _Obj(config, home)


main.add_command(matching_run, "run")
main.add_command(orders)

if __name__ == "__main__":
    try:
        main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except PulseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
