"""The application's CLI commands (registered by ``cli.py``): ``pulse demo``, ``pulse status``, the runtime's ``pulse
up|down``, ``pulse bench`` and ``pulse config show``."""

from __future__ import annotations

import sys
from typing import Any

import click

from pulse.clitools import csv_choice, emit_json
from pulse.settings_toml import settings_toml


def _split(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@click.command()
@click.option("--duration", type=click.FloatRange(min=1), help="Stop after S seconds (default: until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON instead of a table.")
@click.option("--rate", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Venue messages/s.")
@click.option("--faults", is_flag=True, help="Inject a disconnect, malformed frames and bad checksums.")
@click.option("--symbols", callback=_split, help="The main venue's instruments (default: its demo symbols).")
@click.option("--fx/--no-fx", default=True, show_default=True, help="Run the FX venues' local venue and ingester too.")
@click.option("--backfill", is_flag=True, help="Also backfill the historical venues' shipped files.")
@click.option("--venues", callback=_split, help="Run exactly these venues' demo plans, e.g. kraken,binance,oanda "
              "(default: the main and FX venues; optional ones only when named).")  # fmt: skip
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
    venues: list[str] | None,
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
        only=venues,
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
@click.option("--forget", multiple=True, metavar="SERVICE",
              help="First forget a service retired on purpose (its status file; refused while it runs).")  # fmt: skip
@click.pass_obj
def status(
    obj: Any, as_json: bool, max_tick_age: float, max_sink_lag: float, max_stall: float, forget: tuple[str, ...]
) -> None:
    """Health: broker (+ admin API), topics' rates and backlog, stalled subscriptions, database mode, services,
    per-instrument last tick, sink lag. Exit 1 when something is unhealthy (for systemd and monitoring)."""
    from app.health import collect_health, forget_service

    for name in forget:
        forget_service(obj.settings.home, name)

    report = collect_health(
        obj.settings, max_tick_age_s=max_tick_age, max_sink_lag_s=max_sink_lag, max_stall_s=max_stall
    )
    if as_json:
        emit_json(report)
    else:
        for line in report["lines"]:
            click.echo(line)
    sys.exit(0 if report["healthy"] else 1)


# -- runtime, bench, settings -----------------------------------------------------------------------------
@click.command()
@click.option("--status", "show_status", is_flag=True, help="Only report whether the runtime is running.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--broker", type=click.Choice(["lite", "apache"]), help="Broker to start (default runtime.broker).")
@click.pass_obj
def up(obj: Any, show_status: bool, as_json: bool, broker: str | None) -> None:
    """Start the embedded broker (pulsar-lite or Apache Pulsar) and PostgreSQL in the background."""
    from pulse.runtime import Runtime

    obj.broker = broker
    rt = Runtime(obj.settings)
    st = rt.status() if show_status else rt.up(progress=None if as_json else lambda m: click.echo(m, err=True))
    if not show_status and st.broker and st.broker.get("kind") == "apache":
        from control_plane.provision import provision_base_sync
        from pulse.runtime import attach_runtime

        provision_base_sync(attach_runtime(obj.settings))  # tenant + namespaces: Apache creates topics only in them
    if as_json:
        emit_json(st.as_dict())
    else:
        _print_runtime(st)
    if show_status and not st.running:
        sys.exit(1)


def _print_runtime(st: Any) -> None:
    def line(name: str, info: dict[str, Any] | None, running: bool, key: str) -> None:
        state = "running" if running else "stopped"
        where = f" {info[key]} (pid {info['pid']})" if info else ""
        click.echo(f"{name:<9} {state}{where if running else ''}")

    click.echo(f"home      {st.home}")
    line("broker", st.broker, st.broker_running, "url")
    if st.broker and st.broker_running:
        if st.broker.get("kind") == "apache":
            click.echo(f"kind      Apache Pulsar {st.broker['version']} (ready in {st.broker['started_s']} s)")
            click.echo(f"admin     {st.broker['admin_url']}")
        else:
            click.echo("kind      pulsar-lite")
        click.echo(f"metrics   {st.broker['metrics_url']}")
    line("postgres", st.postgres, st.postgres_running, "url")


@click.command()
@click.option("--json", "as_json", is_flag=True, help='{"home": …, "stopped": true, "running": false, …} instead.')
@click.pass_obj
def down(obj: Any, as_json: bool) -> None:
    """Stop the embedded runtime started by `pulse up` (by pid)."""
    from pulse.runtime import Runtime

    st = Runtime(obj.settings).down()
    if as_json:
        emit_json({**st.as_dict(), "stopped": not st.running})
    else:
        click.echo(f"stopped embedded runtime in {st.home}")
    if st.running:  # a process outlived its stop
        sys.exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--quick", is_flag=True, help="Smaller runs (for CI smoke checks).")
@click.option("--sink", "sink_only", is_flag=True, help="The sink benchmark instead: raw COPY ceiling vs the sink.")
@click.option("--only", callback=csv_choice(("ingesters", "consumers", "console", "matching", "alerting"), "--only"),
              help="ingesters,consumers,console (matching or alerting: that consumer alone)")  # fmt: skip
@click.option("--broker", type=click.Choice(["lite", "apache"]), help="Broker of the bench's runtime.")
@click.pass_obj
def bench(obj: Any, as_json: bool, quick: bool, sink_only: bool, only: list[str] | None, broker: str | None) -> None:
    """Measure the raw publish ceiling vs the ingesters and the consumers' engines and round trips, or (--sink)
    raw COPY vs the sink; on a runtime of its own (pulsar-lite, or --broker apache)."""
    obj.broker = broker
    if sink_only:
        from bench.harness import bench_runtime
        from bench.sink import run as run_sink

        with bench_runtime(obj.settings) as (s, ep):
            emit_json(run_sink(s, ep, quick=quick))
        return
    from bench.run import PARTS, run_benchmarks

    run_benchmarks(obj.settings, as_json=as_json, quick=quick, parts=tuple(only) if only else PARTS)


@click.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help='{"settings": …, "sources": {"section.key": source}} instead.')
@click.pass_obj
def config_show(obj: Any, as_json: bool) -> None:
    """Print the effective settings (secrets masked), each with where it came from.

    The text form is TOML (it can seed a pulse.toml); a value that is not the default carries a comment naming its
    source: the settings file, an environment variable or a command-line option."""
    s = obj.settings
    data = s.redacted()
    if as_json:
        sources = {f"{sec}.{k}": s.source_of(f"{sec}.{k}") for sec, vals in data.items() for k in vals}
        emit_json({"settings": data, "sources": {k: v for k, v in sources.items() if v != "default"}})
        return
    click.echo(settings_toml(data, s.source_of))


@config.command("example")
def config_example() -> None:
    """Print a commented settings file: every section and key at its default (the venues' sections too)."""
    import msgspec

    from pulse.settings import section_models
    from pulse.settings_toml import example_toml

    click.echo(example_toml({k: (m, msgspec.to_builtins(m())) for k, m in section_models().items()}), nl=False)


# -- systemd -----------------------------------------------------------------------------------------------
def _live_venues(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """--venue: a venue with a live ingester (``pulse ingest <venue>``), from the venue registry."""
    from pulse.venues import venues

    live = sorted(n for n, v in venues().items() if v.commands is not None and "ingest" in v.commands())
    bad = [v for v in value if v not in live]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: choose from {', '.join(live)}", param_hint="--venue")
    return value


def _layout_options(fn: Any) -> Any:
    from app.systemd import all_credentials
    from pulse.clitools import csv_choice

    credentials = all_credentials()

    for opt in reversed([
        click.option("--venue", "venues", multiple=True, callback=_live_venues,
                     help="A venue whose ingester runs (pulse-ingest@VENUE; repeatable): its credentials drop-in."),
        click.option("--prefix", default="/opt/pulse", show_default=True,
                     help="Where the project is installed (uv sync --frozen): its .venv/bin/pulse runs."),
        click.option("--settings-file", default="/etc/pulse/pulse.toml", show_default=True, help="The settings file."),
        click.option("--credentials-dir", default="/etc/pulse/credentials", show_default=True,
                     help="One root-owned 0600 file per secret, loaded with LoadCredential=."),
        click.option("--credentials", "creds", default="database-url", show_default=True,
                     callback=csv_choice(tuple(credentials), "--credentials"),
                     help=f"The secrets this deployment has: {','.join(credentials)}."),
        click.option("--watchdog-s", type=click.IntRange(10, 3600), default=60, show_default=True,
                     help="WatchdogSec= of the Type=notify units."),
    ]):  # fmt: skip
        fn = opt(fn)
    return fn


def _files(venues: tuple[str, ...], prefix: str, settings_file: str, credentials_dir: str, creds: list[str],
           watchdog_s: int) -> dict[str, str]:  # fmt: skip
    from app.systemd import Layout, render_all

    for name, path in (
        ("--prefix", prefix),
        ("--settings-file", settings_file),
        ("--credentials-dir", credentials_dir),
    ):
        if not path.startswith("/") or any(c.isspace() or c in "%$\"'\\" for c in path):
            raise click.BadParameter(f"{path!r}: an absolute path without spaces, quotes, % or $", param_hint=name)
    lay = Layout(prefix.rstrip("/") or "/", settings_file, credentials_dir.rstrip("/"), tuple(creds), watchdog_s)
    return render_all(lay, venues)


@click.group("systemd")
def systemd() -> None:
    """systemd units for the Pulse daemons (Type=notify, watchdog, credentials, sandboxing)."""


@systemd.command("render")
@_layout_options
@click.option("--out", type=click.Path(file_okay=False), default="deploy/systemd", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='{"written": [paths]} instead of one path a line.')
def systemd_render(out: str, as_json: bool, **kw: Any) -> None:
    """Write the units, the sysusers file and venue drop-ins to a directory (to review or package)."""
    from pathlib import Path

    from app.systemd import write_all

    written = [str(p) for p in write_all(_files(**kw), Path(out))]
    if as_json:
        emit_json({"written": written})
        return
    for path in written:
        click.echo(path)


@systemd.command("install")
@_layout_options
@click.option("--unit-dir", type=click.Path(file_okay=False), default="/etc/systemd/system", show_default=True)
@click.option("--sysusers-dir", type=click.Path(file_okay=False), default="/etc/sysusers.d", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='{"written": [paths], "next": "…"} instead.')
def systemd_install(unit_dir: str, sysusers_dir: str, as_json: bool, **kw: Any) -> None:
    """Install the units (root): then create the user, reload systemd and enable what should run."""
    from pathlib import Path

    from app.systemd import write_all
    from pulse.clitools import fail

    try:
        written = write_all(_files(**kw), Path(unit_dir), Path(sysusers_dir))
    except PermissionError as exc:
        fail(f"cannot write {exc.filename}: permission denied (run as root, or pick --unit-dir/--sysusers-dir)", 1)
    ingest = " ".join(f"pulse-ingest@{v}" for v in kw["venues"]) or "pulse-ingest@kraken"
    after = (f"systemd-sysusers && systemctl daemon-reload && "
             f"systemctl enable --now {ingest} pulse-sink pulse-matching pulse-alerting")  # fmt: skip
    if as_json:
        emit_json({"written": [str(p) for p in written], "next": after})
        return
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: {after}")
