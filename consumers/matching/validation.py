"""Order validation: the reasons a new order is rejected (:func:`invalid_order`), and the memoised checks of a
plain limit order's quantity and price that the engine's fast path uses (:func:`valid_quantity`,
:func:`valid_price`: the same checks, in the same order)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from consumers.matching.book import ZERO
from consumers.matching.instruments import MEMO_MAX, Instrument
from consumers.matching.messages import NewOrder


def valid_quantity(inst: Instrument, qty: Decimal, key: str) -> Decimal | None:
    """``qty - ZERO`` if ``qty`` (whose ``str`` is ``key``) is a valid order quantity for ``inst`` (else None), memoised
    in ``inst.quantities``: the quantity checks of ``_invalid``, in its order."""
    try:
        ok = qty.is_finite() and qty > ZERO and not qty % inst.size_increment
    except InvalidOperation:  # too many increments for Decimal's precision: the slow path refuses it by name
        return None
    if ok and (inst.min_size is None or qty >= inst.min_size):
        memo = inst.quantities
        if len(memo) >= MEMO_MAX:
            memo.clear()
        rem = memo[key] = qty - ZERO
        return rem
    return None


def valid_price(inst: Instrument, price: Decimal, key: str) -> int | None:
    """``price`` in ticks of ``inst``'s book if it is a valid limit price (else None), memoised in the book's
    ``ticks``: the price checks of ``_invalid``, in its order."""
    try:
        ok = price.is_finite() and price > ZERO and not price % inst.price_increment
    except InvalidOperation:  # see valid_quantity
        return None
    if ok:
        book = inst.book
        memo = book.ticks
        if len(memo) >= MEMO_MAX:
            memo.clear()
        # int(price * scale) without to_ticks's check: a price on the increment is a whole number of ticks
        tick = memo[key] = int(price * book.bids.scale)
        return tick
    return None


def bad_number(name: str, value: Decimal, inc: Decimal) -> str | None:
    if not value.is_finite():
        return f"{name} {value} is not a finite number"
    if value <= 0:
        return f"{name} {value} must be positive"
    try:
        off = value % inc
    except InvalidOperation:  # the quotient value / inc has more digits than the Decimal context holds
        return f"{name} {value} is out of range for the instrument's increment {inc}"
    if off:
        return f"{name} {value} is not a multiple of the instrument's increment {inc}"
    return None


def invalid_order(cmd: NewOrder, inst: Instrument | None) -> str | None:
    """Why a new order is refused (None: valid), the first reason in the README's order."""
    if inst is None:
        return f"unknown instrument {cmd.venue}:{cmd.symbol}"
    spec = inst.spec
    if not cmd.account:
        return "account must not be empty"
    bad = bad_number("quantity", cmd.quantity, spec.size_increment)
    if bad:
        return bad
    if spec.min_size is not None and cmd.quantity < spec.min_size:
        return f"quantity {cmd.quantity} is below the minimum size {spec.min_size}"
    t = cmd.order_type
    if t in ("limit", "stop_limit"):
        if cmd.price is None:
            return f"a {t} order needs a price"
        bad = bad_number("price", cmd.price, spec.price_increment)
        if bad:
            return bad
    elif cmd.price is not None:
        return f"a {t} order takes no price"
    if t in ("stop", "stop_limit"):
        if cmd.stop_price is None:
            return f"a {t} order needs a stop price"
        bad = bad_number("stop price", cmd.stop_price, spec.price_increment)
        if bad:
            return bad
        if cmd.tif not in ("GTC", "DAY"):
            return f"a {t} order rests until triggered: time in force must be GTC or DAY, not {cmd.tif}"
    elif cmd.stop_price is not None:
        return f"a {t} order takes no stop price"
    if t == "market" and cmd.tif not in ("IOC", "FOK"):
        return f"a market order is IOC or FOK, not {cmd.tif}"
    return None
