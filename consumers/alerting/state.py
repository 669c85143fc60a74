"""The alerting engine's state: each instrument's latest prices (:class:`InstState`, live as :class:`LiveState`)
and each rule's anti-flapping state (:class:`RuleState`). Both are what :meth:`AlertEngine.snapshot` stores."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

NS = 1_000_000_000
NEVER = -(2**62)
TWO = Decimal(2)
Key = tuple[str, str]


# -- per-instrument market state -------------------------------------------------------------------------
class InstState(msgspec.Struct, kw_only=True):
    """The latest prices of one instrument (exact), with the event time of each side's last update."""

    bid: Decimal | None = None
    ask: Decimal | None = None
    mid: Decimal | None = None
    last: Decimal | None = None
    size: Decimal | None = None  # the last trade's
    # the same as floats, converted once per tick for the statistics kinds (None when the exact value is None);
    # lastf only on instruments with a rule on price "last" (else snapshot() converts it), like the exact mid
    bidf: float | None = None
    askf: float | None = None
    midf: float | None = None
    lastf: float | None = None
    ts_quote: int = NEVER  # ts_event of the last bid/ask update
    ts_trade: int = NEVER
    ts_event: int = NEVER  # of the latest tick of any kind
    ts_recv: int = NEVER  # our receive time of the latest tick (stale_feed compares it with on_timer's now)
    recv_tick: int = 0  # ts_recv of the tick being evaluated (alerts carry it)


class LiveState:
    """The live :class:`InstState` of an instrument: the same fields in a plain ``__slots__`` object (about three
    times cheaper to assign than a msgspec struct field, and a tick assigns about ten); snapshots convert it to an
    :class:`InstState` and restores copy one back, so the stored format is unchanged."""

    __slots__ = InstState.__struct_fields__

    def __init__(self) -> None:
        d = InstState()
        for f in InstState.__struct_fields__:
            setattr(self, f, getattr(d, f))

    def frozen(self) -> InstState:
        return InstState(**{f: getattr(self, f) for f in InstState.__struct_fields__})


class RuleState(msgspec.Struct, kw_only=True):
    """Common anti-flapping state plus a kind-specific payload (indicators)."""

    armed: bool | None = None  # None: not known yet (no observation)
    last_fire: int = NEVER  # event time of the last alert
    fired: int = 0
    swallowed: int = 0
    regime: int = 0  # ma_cross: +1 fast above slow, -1 below, 0 unknown
    seen_recv: int = NEVER  # stale_feed: ts_recv of the newest tick when it fired
    data: Any = None  # indicator(s), kind-specific
