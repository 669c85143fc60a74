"""Click commands: ``pulse orders submit|cancel|replace|list`` and ``pulse consumers matching run``.

``orders`` publishes commands to ``trading/<matching.orders_topic>`` keyed by symbol (the service's Key_Shared
subscription keeps one instrument's orders and market data on one consumer) and, with ``--wait S``, waits for
the service's answer on the fills topic. Ids (``request_id``, default ``order_id``) are made here, outside the
engine, which never invents one. ``orders list`` folds the fills topic (deduplicated on ``exec_id``) into each
order's latest state and each account's positions.

The lead registers them in ``cli.py``: ``cli.add_command(orders)`` (→ ``pulse orders …``) and
``consumers.add_command(matching)`` where ``matching`` is this module's group holding ``matching_run`` as ``run``
(→ ``pulse consumers matching run``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import click
import pulsar

from consumers.matching.engine import InstrumentSpec
from consumers.matching.messages import (
    CancelOrder,
    Command,
    Execution,
    NewOrder,
    Position,
    ReplaceOrder,
    decode_output,
    encode,
)
from pulse.clitools import OldSpellings, metrics_port_option, print_table
from pulse.errors import ConfigError, PulseError
from pulse.instruments import parse_instrument, resolve_instrument
from pulse.log import get_logger
from pulse.polling import poll_until_changed
from pulse.settings import Settings
from pulse.symbols import canonical
from pulse.topics import NAMESPACES, service_topic
from pulse.venues import venues

log = get_logger(__name__)


class OrderRejected(PulseError, ValueError):  # the order as given was refused: exit 2
    """The matching service rejected the order (the reason says why)."""


class NoAnswer(PulseError):
    """``--wait`` passed without an answer from the matching service."""


# -- helpers (usable without click) ------------------------------------------------------------------------
def parse_instrument_ref(text: str) -> tuple[str, str]:
    """``kraken:BTC/USD`` (or a venue's own spelling: ``oanda:EUR_USD``, ``kraken:XBT/USD``) → ("kraken", "BTC/USD")."""
    inst = parse_instrument(text)
    return inst.venue, inst.symbol


def _decimal(name: str, text: str) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation as exc:
        raise ConfigError(f"{name} {text!r} is not a decimal number") from exc
    if not d.is_finite():
        raise ConfigError(f"{name} {text!r} is not a finite number")
    return d


def parse_instrument_spec(text: str) -> InstrumentSpec:
    """``VENUE:SYMBOL`` (increments from the venue's symbol rules) or ``VENUE:SYMBOL:PRICE_INC:SIZE_INC[:NAMESPACE]``,
    e.g. ``kraken:BTC/USD:0.1:0.00000001``. The namespace defaults to the venue's; a venue the registry does not
    list (a test or bench feed) needs explicit increments and namespace."""
    parts = text.split(":")
    if len(parts) not in (2, 4, 5):
        raise ConfigError(
            f"invalid --instrument {text!r}: expected VENUE:SYMBOL or VENUE:SYMBOL:PRICE_INC:SIZE_INC[:NAMESPACE], "
            "e.g. kraken:BTC/USD or kraken:BTC/USD:0.1:0.00000001"
        )
    name = parts[0].strip().lower()
    known = venues().get(name)
    if known is None and len(parts) != 5:
        raise ConfigError(
            f"invalid --instrument {text!r}: unknown venue {name!r} (known: {', '.join(venues())}); "
            "another venue needs VENUE:SYMBOL:PRICE_INC:SIZE_INC:NAMESPACE"
        )
    if known is not None:
        v, r = resolve_instrument(f"{name}:{parts[1]}")
        venue, symbol, ns = v.name, r.symbol, v.namespace
        pinc, sinc = Decimal(1).scaleb(-r.price_precision), Decimal(1).scaleb(-r.size_precision)
    else:
        venue, symbol, ns = name, canonical(parts[1]), ""
    if len(parts) >= 4:
        pinc, sinc = _decimal("price increment", parts[2]), _decimal("size increment", parts[3])
        if pinc <= 0 or sinc <= 0:
            raise ConfigError(f"invalid --instrument {text!r}: increments must be positive")
    if len(parts) == 5:
        ns = parts[4]
    if ns not in NAMESPACES:
        raise ConfigError(f"invalid --instrument {text!r}: unknown namespace {ns!r}")
    return InstrumentSpec(venue, symbol, pinc, sinc, namespace=ns)


def instruments_from_registry(database_url: str) -> list[InstrumentSpec]:
    """Enabled instruments of the registry (``pulse.registry``), as engine specs."""
    from pulse.registry import RegistryReader

    with RegistryReader(database_url) as reg:
        return [
            InstrumentSpec(i.venue, i.symbol, i.price_increment, i.size_increment, namespace=i.namespace)
            for i in reg.list(enabled_only=True)
        ]


def new_request_id() -> str:
    return uuid.uuid4().hex[:20]


def _client(settings: Settings) -> tuple[pulsar.Client, Any]:
    from pulse.bus import client_options
    from pulse.runtime import resolve_endpoints

    ep = resolve_endpoints(settings, need_database=False)
    try:
        return pulsar.Client(ep.pulsar_url, **client_options(settings, ep.pulsar_url)), ep  # type: ignore[arg-type]
    except Exception as exc:
        raise PulseError(f"cannot connect to the broker at {ep.pulsar_url}: {exc}") from exc


def send_command(settings: Settings, cmd: Command, *, wait_s: float = 0.0) -> list[Execution]:
    """Publish ``cmd`` (key = its symbol); with ``wait_s`` > 0 return the service's executions answering it
    (those carrying its request id), waiting at most ``wait_s`` for the first."""
    ms = settings.matching
    tenant = settings.pulsar.tenant
    client, _ep = _client(settings)
    try:
        watcher = None
        if wait_s > 0:
            watcher = client.subscribe(
                service_topic("trading", ms.fills_topic, tenant),
                f"orders-cli-{new_request_id()}",
                consumer_type=pulsar.ConsumerType.Exclusive,
                initial_position=pulsar.InitialPosition.Latest,
            )
        producer = client.create_producer(service_topic("trading", ms.orders_topic, tenant), batching_enabled=False)
        producer.send(encode(cmd), partition_key=cmd.symbol, properties={"type": type(cmd).__struct_config__.tag})
        producer.close()
        if watcher is None:
            return []
        answers: list[Execution] = []
        deadline = time.monotonic() + wait_s
        seen: set[str] = set()
        while time.monotonic() < deadline:
            left_ms = int((deadline - time.monotonic()) * 1000) if not answers else 300
            try:
                msg = watcher.receive(timeout_millis=max(1, min(left_ms, 500)))  # Ctrl-C is seen between waits
            except pulsar.Timeout:
                if answers:
                    break
                continue
            watcher.acknowledge(msg)
            out = decode_output(msg.data())
            if type(out) is Execution and out.exec_id not in seen:
                seen.add(out.exec_id)
                if out.request_id == cmd.request_id or (answers and out.order_id == answers[0].order_id):
                    answers.append(out)
        with contextlib.suppress(Exception):  # a throwaway subscription
            watcher.unsubscribe()
        if not answers:
            raise NoAnswer(
                f"no answer from the matching service within {wait_s:g}s "
                "(is `pulse consumers matching run` running with this instrument?)"
            )
        return answers
    finally:
        client.close()


def read_outputs(settings: Settings, *, idle_ms: int = 1500) -> list[Execution | Position]:
    """Everything on the fills topic from the start, deduplicated on ``exec_id`` (a position on its fill's)."""
    client, _ep = _client(settings)
    try:
        c = client.subscribe(
            service_topic("trading", settings.matching.fills_topic, settings.pulsar.tenant),
            f"orders-list-{new_request_id()}",
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
        )
        out: list[Execution | Position] = []
        seen: set[str] = set()
        while True:
            try:
                msg = c.receive(timeout_millis=idle_ms)
            except pulsar.Timeout:
                break
            o = decode_output(msg.data())
            key = ("e:" if type(o) is Execution else "p:") + o.exec_id
            if key in seen:  # a repeat after a restart: same id, same content
                continue
            seen.add(key)
            out.append(o)
        with contextlib.suppress(Exception):
            c.unsubscribe()
        return out
    finally:
        client.close()


def summarise(outputs: list[Execution | Position], account: str | None = None) -> dict[str, Any]:
    """Latest execution per order and latest position per (account, instrument)."""
    orders: dict[str, Execution] = {}
    positions: dict[tuple[str, str, str], Position] = {}
    for o in outputs:
        if account is not None and o.account != account:
            continue
        if type(o) is Execution:
            if o.exec_id.startswith("req."):
                continue
            prev = orders.get(o.order_id)
            # keep the order's fields from its first execution; status and fills from the latest
            orders[o.order_id] = o if prev is None or o.kind != "rejected" or prev.status == "rejected" else prev
        else:
            positions[(o.account, o.venue, o.symbol)] = o  # type: ignore[union-attr]
    return {"orders": list(orders.values()), "positions": list(positions.values())}


def _doc(x: Any) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(x)  # decimals become strings


# -- click -------------------------------------------------------------------------------------------------
def _settings(obj: Any) -> Settings:
    return obj.settings


def _emit(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


@click.group("orders")
def orders() -> None:
    """Paper orders: submit, cancel, replace and list (the matching service executes them)."""


_WAIT = click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the service's answer (0: publish and return).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_ACCOUNT = click.option("--account", help="Account (default: matching.default_account).")


def _print_answers(cmd: Command, answers: list[Execution], as_json: bool) -> None:
    if as_json:
        _emit({"request_id": cmd.request_id, "executions": [_doc(a) for a in answers]})
    else:
        if not answers:
            click.echo(f"sent request {cmd.request_id}")
        for a in answers:
            what = f"{a.kind} {a.order_id} status={a.status} filled={a.filled} remaining={a.remaining}"
            if a.kind == "fill":
                what += f" {a.quantity}@{a.price} ({a.liquidity})"
            if a.reason:
                what += f" reason={a.reason!r}"
            click.echo(what)
    rejected = [a for a in answers if a.kind == "rejected"]
    if rejected:
        raise OrderRejected(f"rejected: {rejected[0].reason}")


@orders.command("submit")
@click.argument("instrument")
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.argument("quantity")
@click.option("--type", "order_type", type=click.Choice(["market", "limit", "stop", "stop_limit"]))
@click.option("--price", help="Limit price (limit, stop_limit).")
@click.option("--stop-price", help="Trigger price (stop, stop_limit).")
@click.option("--tif", type=click.Choice(["GTC", "IOC", "FOK", "DAY"]), help="Default GTC (IOC for market).")
@click.option("--order-id", help="Your id for the order (default: a new unique id).")
@_ACCOUNT
@_WAIT
@_JSON
@click.pass_obj
def orders_submit(
    obj: Any,
    instrument: str,
    side: str,
    quantity: str,
    order_type: str | None,
    price: str | None,
    stop_price: str | None,
    tif: str | None,
    order_id: str | None,
    account: str | None,
    wait_s: float,
    as_json: bool,
) -> None:
    """Submit an order, e.g. ``kraken:BTC/USD buy 0.5 --price 50000`` (limit) or ``… sell 1 --type market``."""
    s = _settings(obj)
    venue, symbol = parse_instrument_ref(instrument)
    if order_type is None:
        order_type = (
            "stop_limit" if (price and stop_price) else "stop" if stop_price else "limit" if price else "market"
        )
    tif = tif or ("IOC" if order_type == "market" else "GTC")
    rid = new_request_id()
    cmd = NewOrder(
        request_id=rid, venue=venue, symbol=symbol, ts=time.time_ns(), account=account or s.matching.default_account,
        side=side, order_type=order_type, quantity=_decimal("quantity", quantity),  # type: ignore[arg-type]
        price=_decimal("price", price) if price else None,
        stop_price=_decimal("stop price", stop_price) if stop_price else None, tif=tif,  # type: ignore[arg-type]
        order_id=order_id or f"o-{rid}",
    )  # fmt: skip
    _print_answers(cmd, send_command(s, cmd, wait_s=wait_s), as_json)


@orders.command("cancel")
@click.argument("instrument")
@click.argument("order_id")
@_ACCOUNT
@_WAIT
@_JSON
@click.pass_obj
def orders_cancel(obj: Any, instrument: str, order_id: str, account: str | None, wait_s: float, as_json: bool) -> None:
    """Cancel an open order, e.g. ``kraken:BTC/USD o-1234``."""
    s = _settings(obj)
    venue, symbol = parse_instrument_ref(instrument)
    cmd = CancelOrder(request_id=new_request_id(), venue=venue, symbol=symbol, ts=time.time_ns(),
                      account=account or s.matching.default_account, order_id=order_id)  # fmt: skip
    _print_answers(cmd, send_command(s, cmd, wait_s=wait_s), as_json)


@orders.command("replace")
@click.argument("instrument")
@click.argument("order_id")
@click.option("--quantity", help="New total quantity (must exceed what has filled).")
@click.option("--price", help="New limit price.")
@click.option("--stop-price", help="New trigger price (a stop that has not triggered).")
@_ACCOUNT
@_WAIT
@_JSON
@click.pass_obj
def orders_replace(
    obj: Any,
    instrument: str,
    order_id: str,
    quantity: str | None,
    price: str | None,
    stop_price: str | None,
    account: str | None,
    wait_s: float,
    as_json: bool,
) -> None:
    """Change an open order's quantity, price or stop price (a new price or a larger quantity loses priority)."""
    s = _settings(obj)
    venue, symbol = parse_instrument_ref(instrument)
    if quantity is None and price is None and stop_price is None:
        raise ConfigError("replace needs at least one of --quantity, --price, --stop-price")
    cmd = ReplaceOrder(
        request_id=new_request_id(), venue=venue, symbol=symbol, ts=time.time_ns(),
        account=account or s.matching.default_account, order_id=order_id,
        quantity=_decimal("quantity", quantity) if quantity else None,
        price=_decimal("price", price) if price else None,
        stop_price=_decimal("stop price", stop_price) if stop_price else None,
    )  # fmt: skip
    _print_answers(cmd, send_command(s, cmd, wait_s=wait_s), as_json)


@orders.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include filled, cancelled, expired and rejected orders.")
@click.option("--account", help="Only this account.")
@_JSON
@click.pass_obj
def orders_list(obj: Any, show_all: bool, account: str | None, as_json: bool) -> None:
    """Orders (open by default) and positions, from the executions on the fills topic."""
    s = _settings(obj)
    summary = summarise(read_outputs(s), account)
    open_states = ("new", "partially_filled")
    shown = [o for o in summary["orders"] if show_all or o.status in open_states]
    if as_json:
        _emit({"orders": [_doc(o) for o in shown], "positions": [_doc(p) for p in summary["positions"]]})
        return
    if not shown:
        click.echo("no orders" if show_all else "no open orders (--all shows the others)")
    else:
        print_table(
            ("order", "account", "instrument", "side", "type", "tif", "limit", "filled", "remaining", "status"),
            ((o.order_id, o.account, f"{o.venue}:{o.symbol}", o.side, o.order_type, o.tif, o.limit_price, o.filled,
              o.remaining, o.status) for o in shown),
            right=("limit", "filled", "remaining"), title="orders",
        )  # fmt: skip
    if summary["positions"]:
        print_table(
            ("account", "instrument", "quantity", "avg price", "realised", "unrealised", "mark"),
            ((p.account, f"{p.venue}:{p.symbol}", p.quantity, p.avg_price, p.realised_pnl, p.unrealised_pnl, p.mark)
             for p in summary["positions"]),
            right=("quantity", "avg price", "realised", "unrealised", "mark"), title="positions",
        )  # fmt: skip


@click.command("run")
@click.option(
    "--symbols",
    "--instrument",
    "instrument_specs",
    multiple=True,
    cls=OldSpellings,
    help="Instruments, VENUE:SYMBOL[:PRICE_INC:SIZE_INC[:NAMESPACE]], comma-separated (repeatable); default: the "
    "registry's enabled instruments.",
)
@click.option("--name", default="matching", show_default=True, help="Instance name (status file, state directory).")
@_JSON
@metrics_port_option
@click.pass_obj
def matching_run(
    obj: Any, instrument_specs: tuple[str, ...], name: str, as_json: bool, metrics_port: int | None
) -> None:
    """Run the paper-trading matching service until SIGTERM/SIGINT (then flush, snapshot, exit 0)."""
    from consumers.matching.metrics import matching_probe
    from consumers.matching.service import MatchingService
    from pulse.runtime import resolve_endpoints
    from pulse.supervise import Supervisor

    # first: a SIGTERM while it is still starting (a busy machine) must also end in a clean exit 0
    stop = threading.Event()
    running = [stop]  # the current service's own stop event (a registry change ends one service, not the command)

    def on_signal(*_: object) -> None:
        stop.set()
        running[0].set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    s = _settings(obj)
    specs = [parse_instrument_spec(t.strip()) for v in instrument_specs for t in v.split(",") if t.strip()]
    ep = resolve_endpoints(s, need_database=not specs)
    follow = not specs and s.matching.instruments_poll_s > 0
    if not specs:
        specs = instruments_from_registry(ep.database_url)
        if not specs:
            raise ConfigError("no instruments: enable some in the registry or pass --instrument VENUE:SYMBOL")
    svc = None
    sup: Supervisor | None = None  # metrics and systemd notifications; reads whichever instance runs now
    current: list[MatchingService] = []
    try:
        while True:  # once, and again each time the registry's instruments change while it runs
            halt = running[0] = threading.Event()
            if stop.is_set():
                halt.set()
            changed: list[list[InstrumentSpec]] = []
            if follow:
                args = (ep.database_url, specs, s.matching.instruments_poll_s, halt, changed)
                threading.Thread(target=_watch_registry, args=args, name="matching-registry", daemon=True).start()
            svc = MatchingService(s, ep, specs, name=name, status_home=s.home,
                                  stats=svc.stats if svc is not None else None)  # fmt: skip
            current[:] = [svc]
            if sup is None:
                sup = Supervisor(matching_probe(lambda: current[0]), s, port=metrics_port, stopping=stop.is_set)
                sup.start()
            svc.run(halt)
            if stop.is_set() or not changed:
                break
            specs = changed[0]
    finally:
        if sup is not None:
            sup.stop()
    if as_json:
        _emit(svc.snapshot_stats())


def _watch_registry(
    url: str, specs: list[InstrumentSpec], every: float, halt: threading.Event, changed: list[list[InstrumentSpec]]
) -> None:
    """Poll the registry until its enabled instruments differ from ``specs`` (then end the service: ``halt``)."""
    now = poll_until_changed(
        lambda: instruments_from_registry(url),
        lambda v: set(v) == set(specs),
        every_s=every,
        halt=halt,
        errors=(Exception,),  # the database is away: the service runs on; check again later
        what="registry",
    )
    if now is not None:
        log.info("instruments changed; reloading", before=len(specs), now=len(now))
        changed.append(now)
        halt.set()


@click.group("matching")
def matching() -> None:
    """The paper-trading matching service."""


matching.add_command(matching_run)
