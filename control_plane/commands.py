"""The control plane's CLI commands: ``pulse symbols add|remove|enable|disable|list`` and ``pulse pulsar provision``
(registered by ``cli.py``)."""

from __future__ import annotations

import re
from typing import Any

import click

from pulse.clitools import emit_json, print_table


@click.group()
def symbols() -> None:
    """Instrument registry: add, remove, enable, disable, list (running ingesters follow without a restart)."""


def _symbol_changes(obj: Any, as_json: bool, run: Any) -> None:
    from control_plane.symbols import open_symbol_ops

    results = []
    with open_symbol_ops(obj.settings) as ops:
        for res in run(ops):
            results.append(res)
            if not as_json:
                inst = res["instrument"]
                click.echo(
                    f"{inst['venue']}:{inst['symbol']} (venue symbol {inst['venue_symbol']}, {inst['namespace']}, "
                    f"price {inst['price_precision']} dp, size {inst['size_precision']} dp, "
                    f"channels {','.join(inst['channels'])}, {'enabled' if inst['enabled'] else 'disabled'})"
                )
                for step in res["steps"]:
                    click.echo(f"  {step['step']:<9} {step['result']}")
    if as_json:
        emit_json(results if len(results) != 1 else results[0])


def _instruments(items: tuple[str, ...]) -> list[tuple[str, str]]:
    """``VENUE SYMBOL…`` or ``INSTRUMENT…`` (``kraken:BTC/USD``, or a venue's own spelling such as ``EUR_USD``)
    → (venue, canonical symbol) pairs."""
    from pulse.instruments import parse_instrument
    from pulse.venues import venues

    first = items[0]
    venue = None
    if ":" not in first and (first.lower() in venues() or (len(items) > 1 and re.fullmatch(r"[a-z][a-z0-9_]*", first))):
        venue, items = first, items[1:]
        if not items:
            raise click.UsageError(f"no instrument given for venue {first}")
    return [(i.venue, i.symbol) for i in (parse_instrument(x, venue) for x in items)]


def _validated(items: tuple[str, ...], **kw: Any) -> list[tuple[str, str]]:
    """Every instrument checked against its venue's rules before any of them is applied."""
    from control_plane.symbols import plan_instrument

    out: list[tuple[str, str]] = []
    for venue, name in _instruments(items):
        _, inst = plan_instrument(venue, name, **kw)
        if (inst.venue, inst.symbol) in out:
            raise click.BadParameter(f"{inst.key} given twice", param_hint="INSTRUMENT")
        out.append((inst.venue, inst.symbol))
    return out


@symbols.command("add")
@click.argument("items", metavar="[VENUE] INSTRUMENT...", nargs=-1, required=True)
@click.option("--channels", help="Comma-separated channels (the venue's; `pulse symbols add` names them on error).")
@click.option("--price-precision", type=click.IntRange(0, 18), help="Price decimals (default: the venue's).")
@click.option("--size-precision", type=click.IntRange(0, 18), help="Size decimals (default: the venue's).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def symbols_add(
    obj: Any,
    items: tuple[str, ...],
    channels: str | None,
    price_precision: int | None,
    size_precision: int | None,
    as_json: bool,
) -> None:
    """Register instruments, create their topics and make running ingesters subscribe.

    Examples: `pulse symbols add kraken:SOL/USD --channels trade,book`, `pulse symbols add oanda:EUR_USD`,
    `pulse symbols add kraken BTC/USD ETH/USD` (a venue, then its symbols)."""
    chs = [c.strip() for c in channels.split(",") if c.strip()] if channels is not None else None
    kw = {"channels": chs, "price_precision": price_precision, "size_precision": size_precision}
    insts = _validated(items, **kw)
    _symbol_changes(obj, as_json, lambda ops: (ops.add(venue, sym, **kw) for venue, sym in insts))


def _symbols_change(name: str, help_text: str, apply: Any) -> None:
    """`pulse symbols remove|enable|disable [VENUE] INSTRUMENT… [--json]`: one shape, three changes."""

    @symbols.command(name, help=help_text)
    @click.argument("items", metavar="[VENUE] INSTRUMENT...", nargs=-1, required=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_obj
    def command(obj: Any, items: tuple[str, ...], as_json: bool) -> None:
        insts = _validated(items)
        _symbol_changes(obj, as_json, lambda ops: (apply(ops, venue, sym) for venue, sym in insts))


_symbols_change(
    "remove",
    "Unregister instruments; running ingesters unsubscribe (stored data and topics are kept).",
    lambda ops, venue, sym: ops.remove(venue, sym),
)
_symbols_change(
    "enable", "Resume streaming registered instruments.", lambda ops, venue, sym: ops.set_enabled(venue, sym, True)
)
_symbols_change(
    "disable",
    "Stop streaming registered instruments but keep them in the registry.",
    lambda ops, venue, sym: ops.set_enabled(venue, sym, False),
)


@click.group("pulsar")
def pulsar_group() -> None:
    """Pulsar layout on a real cluster (admin REST API)."""


@pulsar_group.command("provision")
@click.option("--jdbc-table", help="Also create the Pulsar IO jdbc-postgres sink pulse-historical-jdbc: every "
              "historical quote topic (one Quote per message) → this table, created if missing (needs the "
              "cluster's functions worker with the connector; locally runtime.apache_functions = true).")  # fmt: skip
@click.option("--jdbc-host", default="", help="The database host as the broker reaches it (e.g. a compose service "
              "name); default: database.url's host.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def pulsar_provision(obj: Any, jdbc_table: str | None, jdbc_host: str, as_json: bool) -> None:
    """Create the tenant, namespaces with their policies, and the topics and schemas of every enabled registry
    instrument; idempotent (a second run changes nothing). On the embedded broker there is nothing to do."""
    import asyncio

    from control_plane.jdbc_sink import check_table, ensure_table, provision_historical_sink
    from control_plane.provision import EMBEDDED_NOTE
    from control_plane.pulsar_admin import PulsarAdmin
    from control_plane.registry import Registry
    from control_plane.symbols import provision_layout
    from pulse.errors import ConfigError
    from pulse.runtime import resolve_endpoints

    s = obj.settings
    if not s.pulsar.admin_url:
        click.echo(EMBEDDED_NOTE + " (set pulsar.admin_url to provision a real cluster)")
        return
    if jdbc_table is not None:
        try:
            check_table(jdbc_table)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--jdbc-table") from None
    ep = resolve_endpoints(s, need_pulsar=False)
    with Registry(ep.database_url) as reg:
        rows = reg.list(enabled_only=True)

    async def go() -> list[Any]:
        async with PulsarAdmin.from_settings(s) as admin:
            steps = await provision_layout(admin, s, rows)
            if jdbc_table:
                steps.append(ensure_table(ep.database_url, jdbc_table))
                steps.append(await provision_historical_sink(
                    admin, tenant=s.pulsar.tenant, table=jdbc_table, database_url=ep.database_url, jdbc_host=jdbc_host
                ))  # fmt: skip
            return steps

    results = asyncio.run(go())
    if as_json:
        emit_json([{"step": r.step, "outcome": r.outcome, "detail": r.detail} for r in results])
    else:
        for r in results:
            click.echo(str(r))


@symbols.command("list")
@click.option("--venue", help="Only this venue.")
@click.option("--enabled", "enabled_only", is_flag=True, help="Only enabled instruments.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def symbols_list(obj: Any, venue: str | None, enabled_only: bool, as_json: bool) -> None:
    """The registry's instruments."""
    from control_plane.registry import Registry
    from pulse.runtime import resolve_endpoints
    from pulse.venues import get as check_venue

    if venue is not None:
        venue = check_venue(venue).name
    with Registry(resolve_endpoints(obj.settings, need_pulsar=False).database_url) as reg:
        rows = reg.list(venue, enabled_only=enabled_only)
    if as_json:
        emit_json([r.as_dict() for r in rows])
        return
    if not rows:
        click.echo("no instruments registered (ingesters use their configured symbols)")
        return
    print_table(
        ("instrument", "venue symbol", "namespace", "px", "sz", "channels", "state"),
        ((r.key, r.venue_symbol, r.namespace, r.price_precision, r.size_precision, ",".join(r.channels),
          "enabled" if r.enabled else "disabled") for r in rows),
        right=("px", "sz"),
    )  # fmt: skip
