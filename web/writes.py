"""Alert rules and paper orders over HTTP: what ``pulse alerts add|list|remove`` and ``pulse orders
submit|cancel|replace`` do, with the same validation, refused before anything changes and naming the field.

* ``GET /api/alerts/rules``, ``POST /api/alerts`` (a rule: ``kind`` plus the rule's fields, the same names as
  the CLI's options with underscores), ``DELETE /api/alerts/{id}``.
* ``POST /api/orders`` (a new paper order), ``PATCH /api/orders/{order_id}`` (replace), ``DELETE
  /api/orders/{order_id}`` (cancel). The order is checked by the matching engine's own rules
  (:func:`consumers.matching.validation.invalid_order`) against the registry's increments before it is sent,
  then the gateway waits up to ``?wait=S`` (default 5, as ``pulse orders --wait``) for the service's answer:
  201/200 with the executions, 422 when the service rejected it (its reason), 202 when it did not answer in time.
"""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal
from typing import Any, Literal

import msgspec
from aiohttp import web

from consumers.alerting.rules import COMMON_FIELDS, RULE_TYPES, RuleError, kind_name, make_rule, rule_to_dict
from consumers.matching.messages import CancelOrder, Command, Execution, NewOrder, ReplaceOrder
from pulse.errors import PulseError
from web.api import ApiError, _body, _console

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_TICK = re.compile(r"`([a-z_]+)`")
MAX_WAIT_S = 30.0


# -- alert rules ------------------------------------------------------------------------------------------
def _store(request: web.Request) -> Any:
    from consumers.alerting.store import AlertStore

    store = AlertStore(_console(request).endpoints.database_url)
    try:
        store.ensure_schema()
    except Exception:
        store.close()
        raise
    return store


async def _in_store(request: web.Request, fn: Any) -> Any:
    def run() -> Any:
        store = _store(request)
        try:
            return fn(store)
        finally:
            store.close()

    try:
        return await asyncio.to_thread(run)
    except Exception as exc:  # the database is away
        raise ApiError(503, f"the alert rule store is unavailable: {type(exc).__name__}: {str(exc)[:200]}") from None


def rule_field(message: str, fields: set[str]) -> str:
    """The field a :class:`RuleError` message is about (``kind`` when it names none)."""
    text = message.split(": ", 1)[1] if message.split(": ", 1)[0] in RULE_TYPES else message
    named = [f for f in _TICK.findall(text) if f in fields]  # msgspec's "Expected `float` ... at `cooldown_s`"
    if named:
        return named[-1]
    if text.startswith("unknown parameter(s) "):
        return text[len("unknown parameter(s) ") :].split(",")[0].split(";")[0].strip()
    if text.startswith("give exactly one of "):
        return text.split()[4]
    head = text.split(" ", 1)[0].rstrip(":")
    return head if head in fields else "kind"


def _all_rules(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every stored rule, and the rows that no longer validate (each with its id and why), by id."""
    from sqlalchemy import select

    from consumers.alerting.store import rules_table

    with store.engine.connect() as conn:
        rows = conn.execute(select(rules_table).order_by(rules_table.c.id)).mappings().all()
    good, bad = [], []
    for row in rows:
        fields: dict[str, Any] = dict(row["params"])
        fields.update({k: row[k] for k in ("id", "venue", "symbol", "name", "enabled")})
        try:
            good.append(rule_to_dict(make_rule(row["kind"], fields)))
        except RuleError as exc:
            bad.append({"id": row["id"], "kind": row["kind"], "error": str(exc)})
    return good, bad


async def list_rules(request: web.Request) -> web.Response:
    good, bad = await _in_store(request, _all_rules)
    return web.json_response({"rules": good, "invalid": bad})


async def add_rule(request: web.Request) -> web.Response:
    from pulse.instruments import parse_instrument

    raw = await request.read()
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object: {"kind": ..., "symbol": ..., ...}')
    kind = body.pop("kind", None)
    if not isinstance(kind, str):
        raise ApiError(400, f"kind is required: one of {', '.join(RULE_TYPES)}", field="kind")
    if "id" in body:
        raise ApiError(400, "id is assigned by the store: leave it out", field="id")
    try:
        fields = set(COMMON_FIELDS) | set(RULE_TYPES[kind_name(kind)].PARAMS)
    except RuleError as exc:
        raise ApiError(400, str(exc), field="kind") from None
    try:
        symbol, venue = body.get("symbol"), body.get("venue")
        if not isinstance(symbol, str):
            raise ApiError(400, "symbol is required: VENUE:SYMBOL, or SYMBOL with venue", field="symbol")
        if venue is not None and not isinstance(venue, str):
            raise ApiError(400, "venue must be a string", field="venue")
        try:
            inst = parse_instrument(symbol, venue)
        except PulseError as exc:
            raise ApiError(400, str(exc), field="venue" if "venue" in str(exc) and venue else "symbol") from None
        body.update(venue=inst.venue, symbol=inst.symbol)
        rule = make_rule(kind, body)
    except RuleError as exc:
        raise ApiError(400, str(exc), field=rule_field(str(exc), fields)) from None
    stored = await _in_store(request, lambda s: s.add_rule(rule))
    return web.json_response({"rule": rule_to_dict(stored)}, status=201)


async def remove_rule(request: web.Request) -> web.Response:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, f"id: {text!r} is not a rule id (a positive integer, see GET /api/alerts/rules)",
                       field="id")  # fmt: skip
    rid = int(text)
    removed = await _in_store(request, lambda s: s.remove_rules([rid]))
    if not removed:
        raise ApiError(404, f"no rule with id {rid}", field="id")
    return web.json_response({"removed": removed})


# -- paper orders -----------------------------------------------------------------------------------------
class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str
    side: Literal["buy", "sell"]
    quantity: Decimal
    venue: str | None = None
    order_type: Literal["market", "limit", "stop", "stop_limit"] | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: Literal["GTC", "IOC", "FOK", "DAY"] | None = None
    order_id: str | None = None
    account: str | None = None


class ChangeOrder(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None


def _wait(request: web.Request) -> float:
    text = request.query.get("wait")
    if text is None:
        return 5.0
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"wait: {text!r} is not a number of seconds", field="wait") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise ApiError(400, f"wait must be between 0 and {MAX_WAIT_S:g} seconds, got {text}", field="wait")
    return value


def _account(request: web.Request, given: str | None, field: str = "account") -> str:
    account = given if given is not None else _console(request).settings.matching.default_account
    if not _ID.match(account):
        raise ApiError(400, f"{field}: {account!r} must be 1-64 letters, digits or . _ : -", field=field)
    return account


_REASON_FIELDS = (("quantity", "quantity"), ("stop price", "stop_price"), ("price", "price"),
                  ("time in force", "tif"), ("market order is", "tif"), ("account", "account"))  # fmt: skip


def _reason_field(reason: str) -> str:
    for words, field in _REASON_FIELDS:
        if words in reason:
            return field
    return "symbol"


def _registered(request: web.Request, venue: str, symbol: str) -> dict[str, Any]:
    inst = _console(request).instruments.get((venue, symbol))
    if inst is None or inst.get("source") != "registry":
        raise ApiError(400, f"{venue}:{symbol} is not in the instrument registry (POST /api/instruments): the "
                            "matching service trades registered instruments only", field="symbol")  # fmt: skip
    if not inst.get("enabled"):
        raise ApiError(400, f"{venue}:{symbol} is disabled (POST /api/instruments/{venue}/.../enable)",
                       field="symbol")  # fmt: skip
    return inst


def _check(cmd: NewOrder, inst: dict[str, Any]) -> None:
    """The matching engine's own validation, against the registry's increments; refused naming the field."""
    from consumers.matching.instruments import InstrumentSpec
    from consumers.matching.validation import invalid_order

    spec = InstrumentSpec(cmd.venue, cmd.symbol, Decimal(1).scaleb(-int(inst["price_precision"])),
                          Decimal(1).scaleb(-int(inst["size_precision"])))  # fmt: skip
    for name in ("quantity", "price", "stop_price"):
        value = getattr(cmd, name)
        inc = spec.size_increment if name == "quantity" else spec.price_increment
        try:
            if value is not None and value.is_finite():
                _ = value % inc  # what the engine computes: beyond 28 digits of quotient it cannot
        except ArithmeticError:
            raise ApiError(400, f"{name} {value} is out of range: more than 28 digits at the increment {inc}",
                           field=name) from None  # fmt: skip
    reason = invalid_order(cmd, _SpecOnly(spec))  # type: ignore[arg-type]
    if reason:
        raise ApiError(400, reason, field=_reason_field(reason))


class _SpecOnly:
    __slots__ = ("spec",)

    def __init__(self, spec: Any) -> None:
        self.spec = spec


async def _answer(request: web.Request, cmd: Command, wait_s: float, ok_status: int) -> web.Response:
    desk = _console(request).desk
    if desk is None:
        raise ApiError(503, "the gateway is not connected to the broker yet")
    try:
        answers = await desk.send(cmd, wait_s)
    except PulseError as exc:
        raise ApiError(502, str(exc)) from None
    except Exception as exc:  # the client library's own errors
        raise ApiError(502, f"cannot send to the matching service: {type(exc).__name__}: {exc}") from None
    order_id = getattr(cmd, "order_id", "") or cmd.request_id
    doc: dict[str, Any] = {"request_id": cmd.request_id, "order_id": order_id,
                           "executions": [msgspec.to_builtins(a) for a in answers]}  # fmt: skip
    rejected = [a for a in answers if a.kind == "rejected"]
    if rejected:
        field = _reason_field(rejected[0].reason) if isinstance(cmd, NewOrder) else "order_id"
        raise ApiError(422, f"rejected by the matching service: {rejected[0].reason}", field=field, **doc)
    if not answers:
        doc["answered"] = False
        return web.json_response(doc, status=202)
    doc["answered"] = True
    return web.json_response(doc, status=ok_status)


async def place_order(request: web.Request) -> web.Response:
    from consumers.matching.commands import new_request_id
    from pulse.instruments import parse_instrument

    wait_s = _wait(request)
    body: PlaceOrder = await _body(request, PlaceOrder)
    try:
        inst_id = parse_instrument(body.symbol, body.venue)
    except PulseError as exc:
        raise ApiError(400, str(exc), field="venue" if body.venue and "venue" in str(exc) else "symbol") from None
    inst = _registered(request, inst_id.venue, inst_id.symbol)
    if body.order_id is not None and not _ID.match(body.order_id):
        raise ApiError(400, f"order_id: {body.order_id!r} must be 1-64 letters, digits or . _ : -", field="order_id")
    order_type = body.order_type or ("stop_limit" if body.price is not None and body.stop_price is not None else
                                     "stop" if body.stop_price is not None else
                                     "limit" if body.price is not None else "market")  # fmt: skip
    rid = new_request_id()
    cmd = NewOrder(request_id=rid, venue=inst_id.venue, symbol=inst_id.symbol, ts=time.time_ns(),
                   account=_account(request, body.account), side=body.side, order_type=order_type,
                   quantity=body.quantity, price=body.price, stop_price=body.stop_price,
                   tif=body.tif or ("IOC" if order_type == "market" else "GTC"),
                   order_id=body.order_id or f"o-{rid}")  # fmt: skip
    _check(cmd, inst)
    return await _answer(request, cmd, wait_s, 201)


def _open_order(request: web.Request) -> Execution:
    """The latest execution of the order named in the path (the gateway reads the fills topic from its start)."""
    order_id = request.match_info["order_id"]
    if not _ID.match(order_id):
        raise ApiError(400, f"order_id: {order_id!r} must be 1-64 letters, digits or . _ : -", field="order_id")
    account = request.query.get("account") or None
    latest: Execution | None = None
    for out in _console(request).outputs:
        if (
            type(out) is Execution
            and out.order_id == order_id
            and out.side is not None
            and (account is None or out.account == account)
        ):
            latest = out
    if latest is None:
        raise ApiError(404, f"no paper order {order_id!r}" + (f" for account {account!r}" if account else "")
                       + " (GET /api/orders lists them)", field="order_id")  # fmt: skip
    if latest.status not in ("new", "partially_filled"):
        raise ApiError(409, f"order {order_id} is {latest.status}: only an open order can change",
                       field="order_id")  # fmt: skip
    return latest


async def cancel_order(request: web.Request) -> web.Response:
    from consumers.matching.commands import new_request_id

    wait_s = _wait(request)
    o = _open_order(request)
    cmd = CancelOrder(request_id=new_request_id(), venue=o.venue, symbol=o.symbol, ts=time.time_ns(),
                      account=o.account, order_id=o.order_id)  # fmt: skip
    return await _answer(request, cmd, wait_s, 200)


async def replace_order(request: web.Request) -> web.Response:
    from consumers.matching.commands import new_request_id

    wait_s = _wait(request)
    body: ChangeOrder = await _body(request, ChangeOrder)
    if body.quantity is None and body.price is None and body.stop_price is None:
        raise ApiError(400, "give at least one of quantity, price, stop_price", field="quantity")
    for name in ("quantity", "price", "stop_price"):
        value = getattr(body, name)
        if value is not None and (not value.is_finite() or value <= 0):
            raise ApiError(400, f"{name} {value} must be a positive number", field=name)
    o = _open_order(request)
    cmd = ReplaceOrder(request_id=new_request_id(), venue=o.venue, symbol=o.symbol, ts=time.time_ns(),
                       account=o.account, order_id=o.order_id, quantity=body.quantity, price=body.price,
                       stop_price=body.stop_price)  # fmt: skip
    return await _answer(request, cmd, wait_s, 200)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/alerts/rules", list_rules)
    r.add_post("/api/alerts", add_rule)
    r.add_delete("/api/alerts/{id}", remove_rule)
    r.add_post("/api/orders", place_order)
    r.add_patch("/api/orders/{order_id}", replace_order)
    r.add_delete("/api/orders/{order_id}", cancel_order)
