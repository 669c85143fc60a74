"""Click objects for the CLI (registered by ``cli.py``): the ``alerts`` group and the ``alerting_run`` command.

``pulse alerts add KIND --venue V --symbol S [--name N] [--cooldown S] [--hysteresis X] [--PARAM VALUE …]``
takes the kind's own parameters as options named after the rule's fields (``--above 50000``,
``--window-s 300``, ``--pct 2``; dashes or underscores), or as ``--param key=value``; everything is
validated against the rule definition and refused naming the bad option before anything is stored.
Each ``obj`` is the CLI's context: it has ``.settings`` (:class:`pulse.settings.Settings`).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import click

from consumers.alerting.rules import (
    COMMON_FIELDS,
    RULE_TYPES,
    RuleError,
    describe,
    make_rule,
    rule_params,
    rule_to_dict,
)
from pulse.clitools import metrics_port_option, print_table
from pulse.errors import ConfigError, SymbolError
from pulse.instruments import parse_instrument
from pulse.log import get_logger

log = get_logger(__name__)


def _kinds_help() -> str:
    lines = []
    for kind, cls in RULE_TYPES.items():
        params = ", ".join(f"--{k.replace('_', '-')}" for k in cls.PARAMS)
        lines.append(f"{kind.replace('_', '-')}: {params}")
    return "\n\n".join(lines)


def _store(obj: Any) -> Any:
    from consumers.alerting.store import AlertStore
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(obj.settings, need_pulsar=False)
    store = AlertStore(ep.database_url)
    store.ensure_schema()
    return store


def parse_extra(args: list[str]) -> dict[str, str]:
    """``["--above", "5", "--window-s=30", "--param", "pct=2"]`` → ``{"above": "5", "window_s": "30", "pct": "2"}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise RuleError(f"unexpected argument {arg!r}: rule parameters are --NAME VALUE")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise RuleError(f"option --{name} needs a value")
            value = args[i + 1]
            i += 1
        i += 1
        if name == "param":
            key, eq2, value = value.partition("=")
            if not eq2 or not key:
                raise RuleError(f"--param {value!r}: expected key=value")
            name = key
        key = name.replace("-", "_")
        if key in out:
            raise RuleError(f"parameter {key} given twice")
        out[key] = value
    return out


@click.group("alerts")
def alerts() -> None:
    """Manage alert rules (stored in the database; the alerting service reads them at start)."""


@alerts.command(
    "add",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Kind parameters:\n\n" + _kinds_help(),
)
@click.argument("kind")
@click.option(
    "--symbol",
    "--instrument",
    "symbol",
    required=True,
    help="The instrument, VENUE:SYMBOL (kraken:BTC/USD; venue spellings such as oanda:EUR_USD accepted).",
)
@click.option("--venue", help="The venue, when --symbol has none (and more than one venue lists it).")
@click.option("--name", default="", help="A label shown in alerts.")
@click.option("--cooldown", "cooldown_s", type=float, help="Seconds between two alerts of this rule (default 60).")
@click.option("--hysteresis", type=float, help="Re-arm margin in the threshold's unit (default 0).")
@click.option("--disabled", is_flag=True, help="Store the rule disabled.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored rule as JSON.")
@click.pass_context
def alerts_add(
    ctx: click.Context,
    kind: str,
    symbol: str,
    venue: str | None,
    name: str,
    cooldown_s: float | None,
    hysteresis: float | None,
    disabled: bool,
    as_json: bool,
) -> None:
    """Add a rule of KIND (price-cross, pct-change, ma-cross, spread, volume-spike, stale-feed, divergence).

    \b
    Examples:
      pulse alerts add price-cross --symbol kraken:BTC/USD --above 50000 --cooldown 60
      pulse alerts add pct-change --symbol kraken:ETH/USD --window-s 300 --pct 2 --hysteresis 0.5
      pulse alerts add stale-feed --symbol oanda:EUR_USD --silence-s 30
    """
    try:
        fields: dict[str, Any] = parse_extra(list(ctx.args))
        clash = sorted(set(fields) & set(COMMON_FIELDS))
        if clash:
            raise RuleError(f"give {', '.join('--' + c.replace('_', '-') for c in clash)} as the named option(s)")
        inst = parse_instrument(symbol, venue)
        fields.update(venue=inst.venue, symbol=inst.symbol, name=name, enabled=not disabled)
        if cooldown_s is not None:
            fields["cooldown_s"] = cooldown_s
        if hysteresis is not None:
            fields["hysteresis"] = hysteresis
        rule = make_rule(kind, fields)
    except (RuleError, SymbolError) as exc:
        raise click.UsageError(str(exc)) from exc
    store = _store(ctx.obj)
    try:
        stored = store.add_rule(rule)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rule_to_dict(stored), indent=2))
    else:
        click.echo(f"added {describe(stored)}")


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as a JSON array.")
@click.pass_obj
def alerts_list(obj: Any, as_json: bool) -> None:
    """List the stored rules."""
    store = _store(obj)
    try:
        rules = store.rules()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([rule_to_dict(r) for r in rules], indent=2))
        return
    if not rules:
        click.echo("no rules (add one with `pulse alerts add`)")
        return

    def params(r: Any) -> str:
        doc = rule_params(r)
        doc.pop("enabled", None)
        return " ".join(f"{k}={v}" for k, v in doc.items())

    print_table(
        ("id", "kind", "instrument", "parameters", "name", "state"),
        ((r.id, r.kind, f"{r.venue}:{r.symbol}", params(r), r.name, "enabled" if r.enabled else "disabled")
         for r in rules),
        right=("id",),
    )  # fmt: skip


@alerts.command("remove")
@click.argument("ids", nargs=-1, required=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the removed ids as JSON.")
@click.pass_obj
def alerts_remove(obj: Any, ids: tuple[int, ...], as_json: bool) -> None:
    """Remove rules by id (see `pulse alerts list`). Unknown ids are an error (exit 2), after removing the rest."""
    store = _store(obj)
    try:
        removed = store.remove_rules(ids)
    finally:
        store.close()
    missing = sorted(set(ids) - set(removed))
    if as_json:
        click.echo(json.dumps({"removed": removed, "missing": missing}))
    else:
        for rid in removed:
            click.echo(f"removed #{rid}")
    if missing:
        raise ConfigError(f"no rule with id {', '.join(map(str, missing))}")


@click.command("run")
@click.option("--name", default="alerting", show_default=True, help="Instance name (status file, logs); one per "
              "process when several share the subscription (Key_Shared scale-out).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the final counters as JSON on exit.")
@metrics_port_option
@click.pass_obj
def alerting_run(obj: Any, name: str, as_json: bool, metrics_port: int | None) -> None:
    """Run the alerting service: evaluate the stored rules on live ticks; publish, store and deliver alerts.

    Subscribes (Key_Shared, keyed by instrument) to the live topics the rules need; SIGTERM writes the final state
    snapshot, acknowledges and exits 0.
    """
    from consumers.alerting.metrics import alerting_probe
    from consumers.alerting.service import AlertingService, topics_for_rules
    from consumers.alerting.store import AlertStore
    from consumers.alerting.webhooks import check_webhooks
    from pulse.runtime import resolve_endpoints
    from pulse.supervise import Supervisor

    # first: a SIGTERM while it is still starting (a busy machine) must also end in a clean exit 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s = obj.settings
    a = s.alerting
    check_webhooks(a.webhooks, a.webhook_allowed_hosts, s.webhook_secret())  # refused before anything starts
    ep = resolve_endpoints(s)
    svc = None
    sup: Supervisor | None = None  # metrics and systemd notifications; they read whichever instance runs now
    current: list[AlertingService] = []
    waiting = False
    idle = [False]  # what the probe reads: waiting for a rule (ready, nothing to subscribe to)
    try:
        while not stop.is_set():  # once, and again each time the stored rules change while it runs (rules_poll_s)
            store = AlertStore(ep.database_url)
            try:
                store.ensure_schema()
                rules = store.rules(enabled_only=True)
            finally:
                store.close()
            topics = topics_for_rules(s, rules)
            if not topics:
                if svc is None:
                    raise ConfigError("no enabled alert rules: add one with `pulse alerts add` first")
                if not waiting:  # every rule was removed while it ran: wait for the next one
                    log.warning("no enabled alert rules; waiting for `pulse alerts add`")
                    waiting = True
                    idle[0] = True
                if svc._status is not None and svc._status.due():  # the heartbeat /healthz and /readyz read
                    svc._status.write_or_log(svc.counters(), waiting_for_rules=True)
                stop.wait(min(max(a.rules_poll_s, 0.5), max(s.metrics.stall_after_s / 4, 0.1)))
                continue
            waiting = False
            idle[0] = False
            svc = AlertingService(s, ep, topics, rules=rules, name=name, status_home=s.home, follow_rules=True,
                                  stats=svc.stats if svc is not None else None)  # fmt: skip
            current[:] = [svc]
            if sup is None:
                sup = Supervisor(
                    alerting_probe(lambda: current[0], s.metrics.stall_after_s, lambda: idle[0]),
                    s,
                    port=metrics_port,
                    stopping=stop.is_set,
                ).start()
            svc.run(stop)
            if not svc.rules_changed.is_set():
                break
    finally:
        if sup is not None:
            sup.stop()
    assert svc is not None
    if as_json:
        click.echo(json.dumps(svc.counters(), indent=2, default=str))
    sys.stdout.flush()
