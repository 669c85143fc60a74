"""The alerting engine: pure, deterministic, no I/O.

``AlertEngine(rules)`` evaluates canonical events (:mod:`pulse.models`) against rules
(:mod:`consumers.alerting.rules`) and returns :class:`~consumers.alerting.messages.Alert` s:

* :meth:`AlertEngine.on_event` — every tick; time is the event's ``ts_event`` (cooldowns, windows, buckets).
* :meth:`AlertEngine.on_timer` — ``stale_feed`` rules, with an explicit ``now_ns`` compared with ticks'
  ``ts_recv`` (both our clock). The service calls it once a second; tests call it with chosen instants.

Same rules + same calls in the same order ⇒ the same alerts, bit for bit (alert ids included).

Cost per tick
    Rules are indexed by instrument: a tick finds its instrument once (by symbol, then its venue checked) and
    runs only that instrument's evaluators, split by what the tick carries (a quote never runs trade-only rules).
    ``price_cross`` rules of one instrument and price field form one *cross group*: their trigger and re-arm levels
    sit in one sorted array, and a tick only evaluates the rules whose levels lie between the previous price and
    this one (bisect: O(log n) when nothing crosses, and O(1) when the price did not move). Other kinds are O(1)
    (amortised) per tick each (see :mod:`consumers.alerting.indicators`); ``stale_feed`` costs nothing per tick.

Anti-flapping (every kind)
    A rule *fires* on a transition into its condition, then is *disarmed* until the watched value has gone
    back past the threshold by ``hysteresis``; and no two alerts of a rule are closer than ``cooldown_s``
    (event time). A trigger inside the cooldown is swallowed (counted in ``stats['swallowed']``) and disarms
    the rule like a real alert would. ``price_cross`` and ``ma_cross`` need a real crossing: the first
    observation only establishes the side; the level kinds (``spread``, ``divergence``, ``pct_change``,
    ``volume_spike``, ``stale_feed``) start armed, so a condition already true at start fires once.

State
    :meth:`snapshot` returns one msgpack blob per instrument (its last prices and the state of every rule whose
    primary instrument it is: armed flags, cooldown clocks, windows, averages); :meth:`restore` puts them back.
    A rule's state is restored only if the rule is unchanged (a fingerprint of its definition). While ticks run,
    some nodes keep the fields of their indicator that change on every tick in their own slots (cheaper to
    write than a struct's); both methods first write them back into the indicators (``flush``).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from consumers.alerting.indicators import EMA, SMA, BucketVolume, WindowedChange
from consumers.alerting.messages import Alert
from consumers.alerting.rules import (
    Divergence,
    MaCross,
    PctChange,
    PriceCross,
    Rule,
    Spread,
    StaleFeed,
    VolumeSpike,
    rule_to_dict,
)
from ingesters.oanda.hours import NEW_YORK, OANDA_FX, is_trading
from pulse.models import BookDelta, BookSnapshot, Quote, QuoteBatch, Ticker, Trade

_NS = 1_000_000_000
_NEVER = -(2**62)
_TWO = Decimal(2)
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
    ts_quote: int = _NEVER  # ts_event of the last bid/ask update
    ts_trade: int = _NEVER
    ts_event: int = _NEVER  # of the latest tick of any kind
    ts_recv: int = _NEVER  # our receive time of the latest tick (stale_feed compares it with on_timer's now)
    recv_tick: int = 0  # ts_recv of the tick being evaluated (alerts carry it)


class _Live:
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
    last_fire: int = _NEVER  # event time of the last alert
    fired: int = 0
    swallowed: int = 0
    regime: int = 0  # ma_cross: +1 fast above slow, -1 below, 0 unknown
    seen_recv: int = _NEVER  # stale_feed: ts_recv of the newest tick when it fired
    data: Any = None  # indicator(s), kind-specific


def _fingerprint(rule: Rule) -> str:
    d = rule_to_dict(rule)
    d.pop("name", None)
    d.pop("enabled", None)
    return hashlib.sha1(msgspec.json.encode(d)).hexdigest()[:16]


def _ffield(price: str) -> str:
    """The :class:`InstState` field holding ``price`` as a float (``mid`` → ``midf``), interned: the nodes read it
    with ``getattr`` on every tick, and only an interned name hits the type's attribute cache. (Nodes on ``mid``,
    the default price, read ``s.midf`` directly: still about 3x cheaper than ``getattr``, a builtin call.)"""
    return sys.intern(price + "f")


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.6g}"


class _Eval:
    """One rule's evaluator: its rule, its state, its precomputed thresholds, and the alert factory.

    The per-tick work is done by the *nodes* (below) that hold the evaluators: a node computes what its rules
    share (an indicator, a spread) once per tick, then runs each member's threshold logic inline."""

    __slots__ = ("cooldown_ns", "fp", "rule", "st")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.st = RuleState()
        self.cooldown_ns = int(rule.cooldown_s * _NS)
        self.fp = _fingerprint(rule)
        self.init()

    def init(self) -> None:
        """Set the kind-specific initial state (``st.data``) and the precomputed thresholds."""

    def share_key(self) -> Any:
        """Rules of one instrument with equal keys (and equal indicator state) share one indicator."""
        return None

    def restore_data(self, raw: Any) -> Any:
        return raw

    def gate(self, ts: int) -> bool:
        """A trigger at ``ts``: disarm; False if the cooldown swallows it (counted), else True (it fires: call
        :meth:`alert`). Callers gate before formatting the alert's text, which costs more than the evaluation."""
        st = self.st
        st.armed = False
        if ts - st.last_fire < self.cooldown_ns:
            st.swallowed += 1
            return False
        st.last_fire = ts
        st.fired += 1
        return True

    def fire(self, out: list[Alert], ts: int, inst: InstState, cond: str, value: str, threshold: str, msg: str) -> None:
        """Disarm, then append an alert to ``out`` unless the cooldown swallows it."""
        if self.gate(ts):
            self.alert(out, ts, inst, cond, value, threshold, msg)

    def alert(
        self, out: list[Alert], ts: int, inst: InstState, cond: str, value: str, threshold: str, msg: str
    ) -> None:
        """Append the alert (after :meth:`gate` said it fires)."""
        r = self.rule
        out.append(
            Alert(
                alert_id=f"{r.id}-{ts}",
                rule_id=r.id,
                rule_name=r.name,
                kind=r.kind,
                venue=r.venue,
                symbol=r.symbol,
                ts_event=ts,
                ts_tick_recv=inst.recv_tick,
                condition=cond,
                value=value,
                threshold=threshold,
                message=f"{r.venue} {r.symbol}: {msg}",
            )
        )


# -- price_cross: a cross group per (instrument, price field) ----------------------------------------------
class _CrossEval(_Eval):
    __slots__ = ("above", "level", "rearm")

    def init(self) -> None:
        r: PriceCross = self.rule  # type: ignore[assignment]
        h = Decimal(str(r.hysteresis))
        self.level = r.level
        self.above = r.above is not None
        self.rearm = self.level - h if self.above else self.level + h

    def check(self, p: Decimal, inst: InstState, out: list[Alert]) -> None:
        """Exact (Decimal). Idempotent: checking a rule again at a price it has already seen changes nothing, which
        is what lets the group skip rules whose levels the price did not reach (and check a few extra)."""
        st = self.st
        above = self.above
        if p > self.level if above else p < self.level:
            if st.armed:
                if self.gate(inst.ts_event):
                    side = "above" if above else "below"
                    msg = f"price {p} crossed {side} {self.level}"
                    self.alert(out, inst.ts_event, inst, side, str(p), str(self.level), msg)
            else:
                st.armed = False
        elif st.armed is None or (p <= self.rearm if above else p >= self.rearm):
            st.armed = True


#: relative margin of the float pre-filter of cross groups: a float mid ((bid + ask) * 0.5 in floats) is within a
#: few ulps (~1e-15 relative) of the exact mid, so widening the float interval by 1e-12 cannot miss a level
_XMARGIN = 1e-12
#: a gap's ends are stored pulled inwards by twice the margin (relative): a price strictly inside the narrowed gap
#: is inside the gap with its own margin too (``glo < pf - |pf| * _XMARGIN``, rounding included), so the per-tick
#: test is two comparisons without computing the margin
_GAP_IN = 1 - 2 * _XMARGIN
_GAP_OUT = 1 + 2 * _XMARGIN


class _CrossGroup:
    """All ``price_cross`` rules of one instrument on one price field, with their levels in one sorted array.

    The price moved from ``prev`` to ``p``: only rules with a trigger or re-arm level in [prev, p] can change
    state. The search runs on floats (the tick's float price, levels as floats, the interval widened by a relative
    1e-12 — float rounding is monotonic, so this finds a superset of the exact candidates); candidates are then
    checked exactly in Decimal (the exact price, computed only then). Checking an extra rule is a no-op
    (:meth:`_CrossEval.check` is idempotent), so alerts are exactly those of an exact search."""

    __slots__ = ("bounds", "boundsf", "evals", "ffield", "field", "ghi", "glo", "on_mid", "owners", "prev")

    def __init__(self, field: str, evals: list[_CrossEval]) -> None:
        self.field = sys.intern(field)
        self.ffield = _ffield(field)
        self.on_mid = field == "mid"
        self.evals = sorted(evals, key=lambda e: e.rule.id)
        pairs = sorted((b, i) for i, e in enumerate(self.evals) for b in {e.level, e.rearm})
        self.bounds = [b for b, _ in pairs]
        self.boundsf = [float(b) for b in self.bounds]  # sorted too (float conversion is monotonic)
        self.owners = [i for _, i in pairs]
        # the float price of the last tick that took the full path (None: check every rule: start, restore); the
        # ticks since then stayed in its gap, so no rule's state depends on which of these prices it is
        self.prev: float | None = None
        # the gap between two neighbouring bounds that holds ``prev`` with its margin, narrowed (_GAP_IN): a price
        # inside it cannot have crossed anything — two comparisons instead of two bisects
        self.glo = math.inf
        self.ghi = -math.inf

    def _gap(self, pf: float) -> None:
        m = abs(pf) * _XMARGIN
        boundsf = self.boundsf
        i = bisect.bisect_left(boundsf, pf - m)
        if i == bisect.bisect_right(boundsf, pf + m):
            lo = boundsf[i - 1] if i else -math.inf
            hi = boundsf[i] if i < len(boundsf) else math.inf
            self.glo = lo * _GAP_OUT if lo > 0 else lo * _GAP_IN  # towards the inside, whatever the sign
            self.ghi = hi * _GAP_IN if hi > 0 else hi * _GAP_OUT
        else:  # a bound within the margin: no gap, the next tick takes the exact path
            self.glo, self.ghi = math.inf, -math.inf

    def _exact(self, s: InstState) -> Decimal:
        if self.field == "mid":  # the engine computes the exact mid lazily (see AlertEngine.on_event)
            return (s.bid + s.ask) / _TWO  # type: ignore[operator,no-any-return]
        return getattr(s, self.field)  # type: ignore[no-any-return]

    def run(self, s: InstState, out: list[Alert]) -> None:
        pf = s.midf if self.on_mid else getattr(s, self.ffield)  # (see _ffield)
        if pf is None or self.glo < pf < self.ghi:  # no price, or still between the same two bounds
            return
        prev = self.prev
        self.prev = pf
        self._gap(pf)
        if prev is None:
            p = self._exact(s)
            for e in self.evals:
                e.check(p, s, out)
            return
        lo, hi = (prev, pf) if prev < pf else (pf, prev)
        lo -= abs(lo) * _XMARGIN
        hi += abs(hi) * _XMARGIN
        boundsf = self.boundsf
        i = bisect.bisect_left(boundsf, lo)
        j = bisect.bisect_right(boundsf, hi)
        if i == j:
            return
        p = self._exact(s)
        evals = self.evals
        if j - i == 1:
            evals[self.owners[i]].check(p, s, out)
            return
        for k in sorted(set(self.owners[i:j])):  # rule-id order: deterministic output order
            evals[k].check(p, s, out)


# -- the other kinds: evaluators (per-rule thresholds) and nodes (the shared per-tick work) -------------------
class _PctEval(_Eval):
    __slots__ = ("down", "field", "npct", "pct", "rearm", "up")

    def init(self) -> None:
        r: PctChange = self.rule  # type: ignore[assignment]
        self.field = _ffield(r.price)
        self.pct = r.pct
        self.npct = -r.pct
        self.up = r.direction != "down"
        self.down = r.direction != "up"
        self.rearm = r.pct - r.hysteresis
        self.st.data = WindowedChange(window_ns=int(r.window_s * _NS))
        self.st.armed = True

    def share_key(self) -> Any:
        return ("pct", self.field, self.st.data.window_ns)

    def restore_data(self, raw: Any) -> Any:
        return msgspec.convert(raw, WindowedChange)


class _PctNode:
    """``pct_change`` rules of one instrument with the same price field and window: one :class:`WindowedChange`.

    Its :meth:`~WindowedChange.update` is inlined in :meth:`run` (the same steps: a call and the struct's attribute
    writes cost more than the update). The samples stay in the window's own lists (appended and compacted in
    place); only its ``head`` lives here while ticks run, and :meth:`flush` writes it back."""

    __slots__ = ("data", "field", "head", "members", "on_mid", "px", "ts", "window_ns")

    def __init__(self, members: list[_PctEval]) -> None:
        self.members = members
        self.field = members[0].field
        self.on_mid = self.field == "midf"
        self.data: WindowedChange = members[0].st.data
        self.ts, self.px, self.head, self.window_ns = self.data.ts, self.data.px, self.data.head, self.data.window_ns

    def flush(self) -> None:
        """Put the live ``head`` back into the window (before a snapshot reads it)."""
        self.data.head = self.head

    def run(self, s: InstState, out: list[Alert]) -> None:
        p = s.midf if self.on_mid else getattr(s, self.field)  # (see _ffield)
        if p is None:
            return
        # WindowedChange.update(s.ts_event, p), inlined
        t = s.ts_event
        ts, px = self.ts, self.px
        if not px or px[-1] != p:
            ts.append(t)
            px.append(p)
        start = t - self.window_ns
        n = len(ts)
        i = self.head + 1  # the head moves to the last sample at or before start
        while i < n and ts[i] <= start:
            i += 1
        h = i - 1
        if h > 64 and h * 2 > n:  # compact: the dropped prefix is the larger half
            del ts[:h], px[:h]
            h = 0
        self.head = h
        if ts[h] > start:
            return
        ref = px[h]
        if not ref:
            return
        chg = (p / ref - 1.0) * 100.0
        for e in self.members:
            if (chg >= e.pct and e.up) or (chg <= e.npct and e.down):
                if e.st.armed and e.gate(s.ts_event):
                    r: PctChange = e.rule  # type: ignore[assignment]
                    e.alert(
                        out,
                        s.ts_event,
                        s,
                        "up" if chg > 0 else "down",
                        _fmt(chg),
                        str(r.pct),
                        f"moved {chg:+.4g}% in {r.window_s:g}s (price {p})",
                    )
            elif abs(chg) < e.rearm and e.st.armed is not True:
                e.st.armed = True


class _MaData(msgspec.Struct, kw_only=True):
    fast: Any  # SMA or EMA (the rule says which; restore_data converts to it)
    slow: Any
    bucket: int = -1  # interval sampling: current bucket index
    pending: float | None = None  # interval sampling: last price of the current bucket


class _MaEval(_Eval):
    __slots__ = ("both", "field", "hi", "hyst", "interval_ns", "kind_t", "lo", "nhyst", "up")

    def init(self) -> None:
        r: MaCross = self.rule  # type: ignore[assignment]
        self.field = _ffield(r.price)
        self.interval_ns = int(r.interval_s * _NS)
        self.kind_t = SMA if r.ma == "sma" else EMA
        self.hyst = r.hysteresis
        self.nhyst = -r.hysteresis
        self.both = r.direction == "both"
        self.up = r.direction == "up"
        self.st.data = _MaData(fast=self.kind_t(n=r.fast), slow=self.kind_t(n=r.slow))
        self.band()

    def band(self) -> None:
        """Set ``lo``/``hi``: the regime changes exactly when ``diff`` (bps) leaves [lo, hi] — above ``hyst`` to +1,
        below ``-hyst`` to -1, and never towards the current regime (one test per tick and rule; NaN stays)."""
        reg = self.st.regime
        self.lo = -math.inf if reg < 0 else self.nhyst
        self.hi = math.inf if reg > 0 else self.hyst

    def share_key(self) -> Any:
        r: MaCross = self.rule  # type: ignore[assignment]
        return ("ma", self.field, r.ma, r.fast, r.slow, self.interval_ns)

    def restore_data(self, raw: Any) -> Any:
        t = self.kind_t
        return _MaData(
            fast=msgspec.convert(raw["fast"], t),
            slow=msgspec.convert(raw["slow"], t),
            bucket=raw["bucket"],
            pending=raw["pending"],
        )

    def cross(self, diff: float, fast: float, slow: float, s: InstState, out: list[Alert]) -> None:
        """``diff`` (bps) left the band (the node checked): the regime changes to its side."""
        st = self.st
        new = 1 if diff > self.hyst else -1
        old, st.regime = st.regime, new
        self.band()
        if old == 0:  # first regime: where the averages are, not a crossing
            return
        if (self.both or self.up == (new > 0)) and self.gate(s.ts_event):  # a regime change is the transition
            r: MaCross = self.rule  # type: ignore[assignment]
            self.alert(
                out,
                s.ts_event,
                s,
                "cross_up" if new > 0 else "cross_down",
                _fmt(diff),
                _fmt(r.hysteresis),
                f"{r.ma.upper()}({r.fast}) crossed {'above' if new > 0 else 'below'} {r.ma.upper()}({r.slow}) "
                f"({_fmt(fast)} vs {_fmt(slow)})",
            )


class _MaNode:
    """``ma_cross`` rules of one instrument with the same price field, average kind, lengths and sampling: one
    pair of averages (EMA steps inlined, the same arithmetic as :meth:`EMA.update`). This class samples on every
    tick (SMAs); interval sampling is :class:`_MaBucketNode`, and EMAs sampled on every tick use :class:`_EmaNode`,
    which runs this node only while the averages are seeding."""

    __slots__ = ("afast", "aslow", "data", "ema", "field", "interval_ns", "members", "nrep", "nxt", "on_mid")

    def __init__(self, members: list[_MaEval]) -> None:
        e0 = members[0]
        r: MaCross = e0.rule  # type: ignore[assignment]
        self.members = members
        self.field = e0.field
        self.on_mid = self.field == "midf"
        self.interval_ns = e0.interval_ns
        self.nrep = r.slow + 1
        self.data: _MaData = e0.st.data
        self.ema = r.ma == "ema"
        self.afast = 2.0 / (r.fast + 1)
        self.aslow = 2.0 / (r.slow + 1)
        # interval sampling: the first ts_event of the next bucket (ts before it: same bucket; -1: not started)
        self.nxt = (self.data.bucket + 1) * self.interval_ns if self.data.bucket >= 0 else -1
        for e in members:  # (a restore replaced their states)
            e.band()

    def _sample(self, x: float) -> tuple[float, float] | None:
        d = self.data
        f, sl = d.fast, d.slow
        if self.ema:
            c = f.count
            if c < f.n:
                f.count = c = c + 1
                f.value += (x - f.value) / c
            else:
                f.value += self.afast * (x - f.value)
            c = sl.count
            if c < sl.n:
                sl.count = c = c + 1
                sl.value += (x - sl.value) / c
                if c < sl.n:
                    return None
            else:
                sl.value += self.aslow * (x - sl.value)
            fv, sv = f.value, sl.value
        else:
            f.update(x)
            sl.update(x)
            if len(sl.buf) < sl.n:
                return None
            fv, sv = f.value, sl.value
        return (fv, sv) if sv else None

    def run(self, s: InstState, out: list[Alert]) -> None:
        x = s.midf if self.on_mid else getattr(s, self.field)  # (see _ffield)
        if x is None:
            return
        v = self._sample(x)
        if v is not None:
            fv, sv = v
            diff = (fv - sv) / sv * 10_000.0
            for e in self.members:
                if diff < e.lo or diff > e.hi:  # the regime changes (see _MaEval.band)
                    e.cross(diff, fv, sv, s, out)


class _MaBucketNode(_MaNode):
    """:class:`_MaNode` sampling the last price of each ``interval_s`` bucket. The bucket's last price lives here
    while ticks run (a slot write is cheaper than the struct's) and :meth:`flush` writes it back."""

    __slots__ = ("pending",)

    def __init__(self, members: list[_MaEval]) -> None:
        super().__init__(members)
        self.pending = self.data.pending

    def flush(self) -> None:
        self.data.pending = self.pending

    def run(self, s: InstState, out: list[Alert]) -> None:
        x = s.midf if self.on_mid else getattr(s, self.field)  # (see _ffield)
        if x is None:
            return
        ts = s.ts_event
        if ts < self.nxt:  # the same bucket (ts // interval <= d.bucket): only the bucket's last price changes
            self.pending = x
            return
        d = self.data
        b = ts // self.interval_ns
        if d.bucket < 0:
            d.bucket = b
            self.nxt = (b + 1) * self.interval_ns
        elif b > d.bucket:
            # the previous bucket closed with ``pending``; empty buckets repeat it (the price did not change)
            samples = []
            for _ in range(min(b - d.bucket, self.nrep)):
                v = self._sample(self.pending)  # type: ignore[arg-type]
                if v is not None:
                    samples.append((v[0], v[1], (v[0] - v[1]) / v[1] * 10_000.0))
            d.bucket = b
            self.nxt = (b + 1) * self.interval_ns
            for e in self.members:  # rule-major, like one evaluator per rule
                for fv, sv, diff in samples:
                    if diff < e.lo or diff > e.hi:
                        e.cross(diff, fv, sv, s, out)
        self.pending = x


class _EmaNode:
    """``ma_cross`` EMA rules sampled on every tick (the common case), grouped like :class:`_MaNode`: the same
    arithmetic as :meth:`_MaNode._sample` (and :meth:`EMA.update`), with the seeding phase kept apart so that a tick
    of a seeded pair runs only the two EMA steps and the members' regime tests. Once seeded, the two averages'
    values live here (slot writes are cheaper than the structs'), and :meth:`flush` writes them back."""

    __slots__ = ("afast", "aslow", "fast", "field", "fv", "members", "node", "on_mid", "seeded", "slow", "sv")

    def __init__(self, members: list[_MaEval]) -> None:
        self.members = members
        self.field = members[0].field
        self.on_mid = self.field == "midf"
        self.node = _MaNode(members)  # the seeding phase
        self.afast, self.aslow = self.node.afast, self.node.aslow
        d: _MaData = members[0].st.data
        self.fast: EMA = d.fast
        self.slow: EMA = d.slow
        self.seeded = self.fast.count >= self.fast.n and self.slow.count >= self.slow.n
        self.fv, self.sv = self.fast.value, self.slow.value

    def flush(self) -> None:
        if self.seeded:  # (while seeding, the node updates the averages themselves)
            self.fast.value, self.slow.value = self.fv, self.sv

    def run(self, s: InstState, out: list[Alert]) -> None:
        x = s.midf if self.on_mid else getattr(s, self.field)  # (see _ffield)
        if x is None:
            return
        if not self.seeded:
            self.node.run(s, out)
            if self.fast.count >= self.fast.n and self.slow.count >= self.slow.n:
                self.seeded = True
                self.fv, self.sv = self.fast.value, self.slow.value
            return
        fv = self.fv = self.fv + self.afast * (x - self.fv)  # EMA.update, seeded
        sv = self.sv = self.sv + self.aslow * (x - self.sv)
        if not sv:
            return
        diff = (fv - sv) / sv * 10_000.0
        for e in self.members:
            if diff < e.lo or diff > e.hi:  # the regime changes (see _MaEval.band)
                e.cross(diff, fv, sv, s, out)


class _SpreadEval(_Eval):
    __slots__ = ("bps", "rearm")

    def init(self) -> None:
        r: Spread = self.rule  # type: ignore[assignment]
        self.bps = r.bps
        self.rearm = r.bps - r.hysteresis
        self.st.armed = True

    def share_key(self) -> Any:
        return ("spread",)


class _SpreadNode:
    """Every ``spread`` rule of one instrument: the spread in bps is computed once per tick."""

    __slots__ = ("members",)

    def __init__(self, members: list[_SpreadEval]) -> None:
        self.members = members

    def run(self, s: InstState, out: list[Alert]) -> None:
        mid = s.midf
        if not mid:  # None (a side is missing: see AlertEngine.on_event) or 0
            return
        bps = (s.askf - s.bidf) / mid * 10_000.0  # type: ignore[operator]
        for e in self.members:
            if bps > e.bps:
                if e.st.armed and e.gate(s.ts_event):
                    e.alert(
                        out,
                        s.ts_event,
                        s,
                        "wide",
                        _fmt(bps),
                        _fmt(e.bps),
                        f"spread {_fmt(bps)} bps (bid {s.bid}, ask {s.ask})",
                    )
            elif bps <= e.rearm and e.st.armed is not True:
                e.st.armed = True


class _VolumeEval(_Eval):
    __slots__ = ("min_volume", "rearm", "z")

    def init(self) -> None:
        r: VolumeSpike = self.rule  # type: ignore[assignment]
        self.z = r.z
        self.min_volume = float(r.min_volume)
        self.rearm = r.z - r.hysteresis
        self.st.data = BucketVolume(interval_ns=int(r.interval_s * _NS), n=r.buckets)
        self.st.armed = True

    def share_key(self) -> Any:
        return ("volume", self.st.data.interval_ns, self.st.data.n)

    def restore_data(self, raw: Any) -> Any:
        return msgspec.convert(raw, BucketVolume)


class _VolumeNode:
    """``volume_spike`` rules of one instrument with the same bucket length and baseline: one :class:`BucketVolume`.

    While ticks run, the current bucket's volume lives in a slot (:meth:`flush` writes it back) and the baseline
    (complete?, mean, std: they change only when a bucket closes) is copied here, so a trade inside a bucket
    reads no struct field."""

    __slots__ = ("current", "data", "mean", "members", "nxt", "ready", "std")

    def __init__(self, members: list[_VolumeEval]) -> None:
        self.members = members
        self.data: BucketVolume = members[0].st.data
        bv = self.data
        self.nxt = (bv.bucket + 1) * bv.interval_ns if bv.bucket >= 0 else -1  # first ts of the next bucket
        self.current = bv.current
        self._baseline()

    def _baseline(self) -> None:
        bv = self.data
        self.ready, self.mean, self.std = len(bv.ring) >= bv.n, bv.mean, bv.std

    def flush(self) -> None:
        self.data.current = self.current

    def run(self, s: InstState, out: list[Alert]) -> None:
        size = s.size
        if size is None:
            return
        ts = s.ts_event
        if ts < self.nxt:  # the current bucket (what BucketVolume.add does when no bucket closes)
            cur = self.current = self.current + float(size)
        else:
            bv = self.data
            bv.current = self.current
            closed, closed_z = bv.add(ts, float(size))
            cur = self.current = bv.current
            self.nxt = (bv.bucket + 1) * bv.interval_ns
            self._baseline()
            if closed:
                for e in self.members:
                    if closed_z is None or closed_z < e.rearm:
                        e.st.armed = True  # a normal bucket ended: a later spike is a new one
        if not self.ready:  # BucketVolume.z, inlined: no z yet
            return
        z = (math.inf if cur > self.mean else 0.0) if self.std == 0.0 else (cur - self.mean) / self.std
        for e in self.members:
            if z < e.z or cur < e.min_volume or not e.st.armed or not e.gate(s.ts_event):
                continue
            r: VolumeSpike = e.rule  # type: ignore[assignment]
            e.alert(
                out,
                s.ts_event,
                s,
                "spike",
                _fmt(z),
                _fmt(r.z),
                f"volume {cur:.8g} in {r.interval_s:g}s bucket, z={_fmt(z)} (mean {self.mean:.6g}, std {self.std:.6g})",
            )


class _DivergenceEval(_Eval):
    __slots__ = ("a", "b", "field", "max_age_ns", "rearm", "ts_field")

    def init(self) -> None:
        r: Divergence = self.rule  # type: ignore[assignment]
        self.field = sys.intern(r.price)
        self.ts_field = "ts_trade" if self.field == "last" else "ts_quote"
        self.rearm = r.bps - r.hysteresis
        self.max_age_ns = int(r.max_age_s * _NS)
        self.st.armed = True
        self.a: InstState | None = None  # set by the engine: rule.venue's and other_venue's states
        self.b: InstState | None = None

    def run(self, inst: InstState, out: list[Alert]) -> None:
        a, b = self.a, self.b
        assert a is not None and b is not None
        pa, pb = getattr(a, self.field), getattr(b, self.field)
        if pa is None or pb is None:
            return
        if abs(getattr(a, self.ts_field) - getattr(b, self.ts_field)) > self.max_age_ns:
            return
        mean = (pa + pb) / _TWO
        if not mean:
            return
        bps = float(abs(pa - pb)) / float(mean) * 10_000.0
        r: Divergence = self.rule  # type: ignore[assignment]
        if bps > r.bps:
            if self.st.armed and self.gate(inst.ts_event):
                self.alert(
                    out,
                    inst.ts_event,
                    inst,
                    "diverged",
                    _fmt(bps),
                    _fmt(r.bps),
                    f"{r.venue} {pa} vs {r.other_venue} {pb}: {_fmt(bps)} bps apart",
                )
        elif bps <= self.rearm:
            self.st.armed = True


class _StaleEval(_Eval):
    __slots__ = ("instrument", "silence_ns")

    def init(self) -> None:
        r: StaleFeed = self.rule  # type: ignore[assignment]
        self.silence_ns = int(r.silence_s * _NS)
        self.instrument = r.symbol.replace("/", "_")
        self.st.armed = True

    def check(self, now: int, inst: InstState, started: int, out: list[Alert]) -> None:
        st = self.st
        r: StaleFeed = self.rule  # type: ignore[assignment]
        if not st.armed:
            if inst.ts_recv > st.seen_recv:
                st.armed = True  # a tick arrived since the alert
            else:
                return
        since = max(inst.ts_recv, started)
        if r.fx_hours:
            when = datetime.fromtimestamp(now / _NS, UTC)
            if not is_trading(when, OANDA_FX, self.instrument):
                return  # closed (weekend, daily pause): silence is expected
            since = max(since, _last_session_start(when))
        silence = now - since
        if silence > self.silence_ns:
            st.seen_recv = inst.ts_recv
            inst.recv_tick = now
            last = "never" if inst.ts_recv == _NEVER else f"{silence / _NS:.1f}s ago"
            self.fire(
                out,
                now,
                inst,
                "stale",
                f"{silence / _NS:.3f}",
                f"{r.silence_s:g}",
                f"no tick for {r.silence_s:g}s (last {last})",
            )


def _last_session_start(when: datetime) -> int:
    """The latest FX session start at or before ``when`` (ns): 17:03 New York, which is both the weekly open
    (Sunday) and the end of each daily rollover pause — silence before it is not the feed's fault."""
    local = when.astimezone(NEW_YORK)
    start = datetime.combine(local.date(), OANDA_FX.open_at, tzinfo=NEW_YORK)
    if start > local:
        start = datetime.combine(local.date() - timedelta(days=1), OANDA_FX.open_at, tzinfo=NEW_YORK)
    return int(start.timestamp()) * _NS


_NODE_TYPES: dict[type[_Eval], Any] = {
    _PctEval: _PctNode,
    _MaEval: _MaNode,
    _SpreadEval: _SpreadNode,
    _VolumeEval: _VolumeNode,
}


# -- the engine -------------------------------------------------------------------------------------------
#: a per-tick step: a cross group's or a node's bound ``run`` (a bound method call is about three times cheaper
#: than calling an object through ``__call__``)
Step = Callable[[InstState, list[Alert]], None]


class _Instrument:
    __slots__ = (
        "dirty",
        "key",
        "need_lastf",
        "need_mid",
        "primary",
        "q_cross",
        "q_nodes",
        "q_steps",
        "state",
        "t_cross",
        "t_nodes",
        "t_steps",
        "venue",
    )

    def __init__(self, key: Key) -> None:
        self.key = key
        self.venue = key[0]
        self.state = _Live()
        self.dirty = False  # state changed since the last take_dirty
        self.need_mid = False  # someone reads the exact ``state.mid`` per tick (divergence on mid); else lazy
        self.need_lastf = False  # someone reads ``state.lastf`` per tick (a rule on price "last"); else lazy
        # per-tick work, precomputed by AlertEngine._link: cross groups first, then nodes (other kinds)
        self.q_cross: list[_CrossGroup] = []  # run when bid/ask changed
        self.q_nodes: list[Any] = []
        self.t_cross: list[_CrossGroup] = []  # … when a trade arrived
        self.t_nodes: list[Any] = []
        # their bound ``run`` methods in that order, what a tick calls (one loop: see AlertEngine.on_event)
        self.q_steps: list[Step] = []
        self.t_steps: list[Step] = []
        self.primary: list[_Eval] = []  # rules whose state is snapshotted with this instrument


class _InstSnapshot(msgspec.Struct):
    inst: InstState
    rules: dict[str, tuple[str, RuleState]]  # rule id → (fingerprint, state)


_snap_enc = msgspec.msgpack.Encoder(decimal_format="string")
_snap_dec = msgspec.msgpack.Decoder(_InstSnapshot)


def _order(out: list[Alert]) -> None:
    """A tick runs its cross groups, then its per-kind nodes. The groups' alerts come first, as they are; nodes
    group rules by kind, so the alerts they add (all after the leading ``price_cross`` ones: no node makes one)
    are put back in rule-id order (stable)."""
    mark = 0
    while mark < len(out) and out[mark].kind == "price_cross":
        mark += 1
    if len(out) - mark > 1:
        out[mark:] = sorted(out[mark:], key=_by_rule_id)


def _by_rule_id(a: Alert) -> int:
    return a.rule_id


class AlertEngine:
    """Evaluate rules against events. See the module docstring for semantics, cost and state."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [r for r in rules if r.enabled]
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        self._inst: dict[Key, _Instrument] = {}
        # symbol → the instrument of the first venue seen with it: a tick's lookup by a string (whose hash is
        # cached) instead of a (venue, symbol) tuple built and hashed per tick; other venues use _inst
        self._by_symbol: dict[str, _Instrument] = {}
        self._evals: list[_Eval] = []
        self._stale: list[tuple[_StaleEval, _Instrument]] = []
        self._flush: list[Callable[[], None]] = []  # the nodes' flush methods (see _flush_nodes)
        self._started: int | None = None  # first on_timer: silence before it is not counted
        self.ticks = self.ignored = self.alerts = 0
        # (instrument, trade?) → evaluators in rule-id order, and the cross groups' rules by (instrument, field)
        self._plan: list[tuple[_Instrument, bool, _Eval]] = []
        self._crosses: dict[tuple[Key, str], list[_CrossEval]] = {}
        for rule in sorted(self.rules, key=lambda r: r.id):
            inst = self._instrument(rule.instrument)
            ev: _Eval
            if getattr(rule, "price", "") == "last" and not isinstance(rule, Divergence):  # (divergence: exact)
                inst.need_lastf = True
            if isinstance(rule, PriceCross):
                ev = _CrossEval(rule)
                self._crosses.setdefault((rule.instrument, rule.price), []).append(ev)  # type: ignore[arg-type]
            elif isinstance(rule, StaleFeed):
                ev = _StaleEval(rule)
                self._stale.append((ev, inst))  # type: ignore[arg-type]
            elif isinstance(rule, Divergence):
                ev = _DivergenceEval(rule)
                other = self._instrument((rule.other_venue, rule.symbol))
                ev.a, ev.b = inst.state, other.state  # type: ignore[attr-defined]
                for i in (inst, other):
                    self._plan.append((i, rule.price == "last", ev))
                    if rule.price == "mid":
                        i.need_mid = True
            else:
                ev = {PctChange: _PctEval, MaCross: _MaEval, Spread: _SpreadEval, VolumeSpike: _VolumeEval}[type(rule)](
                    rule
                )
                trade = isinstance(rule, VolumeSpike) or getattr(rule, "price", "") == "last"
                self._plan.append((inst, trade, ev))
            inst.primary.append(ev)
            self._evals.append(ev)
        self._link()

    def _link(self) -> None:
        """(Re)build every instrument's per-tick work from the evaluators: cross groups, and one node per set of
        rules that share an indicator — same instrument, same :meth:`_Eval.share_key` and the same indicator
        state (equal after a fresh start; after a restore, only rules whose restored indicators are identical
        share, so a changed or new rule never inherits another's history)."""
        for inst in self._inst.values():
            inst.q_cross, inst.q_nodes, inst.t_cross, inst.t_nodes = [], [], [], []
        for (key, fld), evs in sorted(self._crosses.items(), key=lambda kv: min(e.rule.id for e in kv[1])):
            inst = self._inst[key]
            (inst.t_cross if fld == "last" else inst.q_cross).insert(0, _CrossGroup(fld, evs))
        groups: dict[Any, list[_Eval]] = {}
        for inst, trade, ev in self._plan:
            k = ev.share_key()
            if k is None:
                groups[(id(inst), trade, id(ev))] = [ev]
            else:
                state = _snap_enc.encode(ev.st.data) if ev.st.data is not None else b""
                groups.setdefault((id(inst), trade, k, state), []).append(ev)
        where = {id(inst): inst for inst, _, _ in self._plan}
        for gk, evs in groups.items():  # insertion order: by the lowest rule id of each node
            inst, trade = where[gk[0]], gk[1]
            node_t = _NODE_TYPES.get(type(evs[0]))
            if node_t is _MaNode:
                if evs[0].interval_ns:  # type: ignore[attr-defined]
                    node_t = _MaBucketNode
                elif evs[0].kind_t is EMA:  # type: ignore[attr-defined]
                    node_t = _EmaNode
            if node_t is None:
                node: Any = evs[0]  # divergence: its own node
            else:
                shared = evs[0].st.data
                for e in evs[1:]:
                    e.st.data = shared  # one indicator object: updated once per tick, snapshotted with each rule
                node = node_t(evs)
            (inst.t_nodes if trade else inst.q_nodes).append(node)
        self._flush = []
        for inst in self._inst.values():
            inst.q_steps = [g.run for g in inst.q_cross] + [n.run for n in inst.q_nodes]
            inst.t_steps = [g.run for g in inst.t_cross] + [n.run for n in inst.t_nodes]
            self._flush += [n.flush for n in inst.q_nodes + inst.t_nodes if hasattr(n, "flush")]

    def _flush_nodes(self) -> None:
        """Write the state that nodes keep in their own slots while ticks run back into the rules' indicators."""
        for flush in self._flush:
            flush()

    def _instrument(self, key: Key) -> _Instrument:
        inst = self._inst.get(key)
        if inst is None:
            inst = self._inst[key] = _Instrument(key)
            self._by_symbol.setdefault(key[1], inst)
        return inst

    def instruments(self) -> list[Key]:
        """Every (venue, symbol) some rule reads, sorted."""
        return sorted(self._inst)

    @property
    def stats(self) -> dict[str, int]:
        return {"ticks": self.ticks, "ignored": self.ignored, "alerts": self.alerts}

    # -- evaluation ---------------------------------------------------------------------------------------
    def on_event(self, event: Any) -> list[Alert]:
        """Apply one event (a QuoteBatch is its quotes, in order); return the alerts it triggers.

        The tick's state update, then its cross groups and nodes (see :func:`_order` for the order of the
        alerts), all in this one method: it runs for every tick."""
        inst = self._by_symbol.get(event.symbol)
        if inst is not None and inst.venue != event.venue:  # the symbol on another venue too (rare)
            inst = self._inst.get((event.venue, event.symbol))
        if inst is None:
            self.ignored += 1
            return []
        s = inst.state
        t = type(event)
        if t is Trade:
            p = event.price
            # the float only if a rule reads it (else snapshot() materialises it); an unchanged price keeps its float
            if inst.need_lastf and (p != s.last or s.lastf is None):
                s.lastf = float(p)
            s.last, s.size = p, event.size
            s.ts_trade = s.ts_event = event.ts_event
            steps = inst.t_steps
        else:
            if t is Quote:
                bid, ask = event.bid, event.ask
            elif t is Ticker:
                bid, ask = event.bid, event.ask
                s.last = event.last
                if inst.need_lastf:
                    s.lastf = float(event.last)
            elif t is BookDelta:
                bid = event.best_bid.price if event.best_bid is not None else None
                ask = event.best_ask.price if event.best_ask is not None else None
            elif t is BookSnapshot:
                bid = event.bids[0].price if event.bids else None
                ask = event.asks[0].price if event.asks else None
            elif t is QuoteBatch:  # its quotes, one by one (the instrument is known: the lookup above)
                alerts: list[Alert] = []
                for q in event.quotes():
                    alerts += self.on_event(q)
                return alerts
            else:  # Status, Candle: not a tick
                self.ignored += 1
                return []
            # floats for the statistics kinds and the cross groups' pre-filter; an unchanged side keeps its float
            # (invariant: bidf is None exactly when bid is None, and likewise for ask; midf is None exactly when
            # either is)
            if bid is not None and ask is not None:
                bf = s.bidf if bid == s.bid else float(bid)
                af = s.askf if ask == s.ask else float(ask)
                # the exact mid is computed when something needs it: cross groups on mid (their candidates only),
                # divergence on mid (need_mid), snapshots (see snapshot(): without need_mid nothing else reads
                # ``s.mid``, so it is not written here)
                if inst.need_mid:
                    s.mid = (bid + ask) / _TWO
                s.midf = (bf + af) * 0.5  # type: ignore[operator]
            else:
                bf = None if bid is None else s.bidf if bid == s.bid else float(bid)
                af = None if ask is None else s.askf if ask == s.ask else float(ask)
                s.mid = s.midf = None
            s.bid = bid  # (four statements: a four-name assignment builds and unpacks a tuple)
            s.ask = ask
            s.bidf = bf
            s.askf = af
            s.ts_quote = s.ts_event = event.ts_event
            steps = inst.q_steps
        s.ts_recv = s.recv_tick = event.ts_recv
        self.ticks += 1
        inst.dirty = True
        out: list[Alert] = []
        for fn in steps:
            fn(s, out)
        if not out:
            return out
        if len(out) > 1:  # (rare)
            _order(out)
        self.alerts += len(out)
        return out

    def on_timer(self, now_ns: int) -> list[Alert]:
        """Check ``stale_feed`` rules at ``now_ns`` (our clock, like ticks' ``ts_recv``)."""
        if self._started is None:
            self._started = now_ns
        out: list[Alert] = []
        for ev, inst in self._stale:
            before = len(out)
            ev.check(now_ns, inst.state, self._started, out)
            if len(out) != before or ev.st.swallowed:
                inst.dirty = True
        if out:
            self.alerts += len(out)
        return out

    # -- state ---------------------------------------------------------------------------------------------
    def take_dirty(self) -> set[Key]:
        """Instruments whose state changed since the last call (what a snapshot needs to write)."""
        d = set()
        for key, inst in self._inst.items():
            if inst.dirty:
                inst.dirty = False
                d.add(key)
        return d

    def snapshot(self, keys: Iterable[Key] | None = None) -> dict[Key, bytes]:
        """One msgpack blob per instrument (default: all)."""
        out: dict[Key, bytes] = {}
        self._flush_nodes()
        for key in sorted(self._inst) if keys is None else keys:
            inst = self._inst.get(key)
            if inst is None:
                continue
            s = inst.state
            if not inst.need_mid:  # materialise the lazy exact mid
                s.mid = (s.bid + s.ask) / _TWO if s.bid is not None and s.ask is not None else None
            if not inst.need_lastf:  # … and the lazy float of the last price
                s.lastf = None if s.last is None else float(s.last)
            rules = {str(e.rule.id): (e.fp, e.st) for e in inst.primary}
            out[key] = _snap_enc.encode(_InstSnapshot(s.frozen(), rules))
        return out

    def restore(self, blobs: dict[Key, bytes]) -> int:
        """Load snapshots; returns how many rule states were restored (changed or unknown rules start fresh)."""
        by_id = {e.rule.id: e for e in self._evals}
        restored = 0
        self._flush_nodes()  # the rules not restored keep their current state: in their indicators before _link
        for key, blob in blobs.items():
            inst = self._inst.get(key)
            if inst is None:
                continue
            snap = _snap_dec.decode(blob)
            for f in InstState.__struct_fields__:  # in place: evaluators hold references to the state object
                setattr(inst.state, f, getattr(snap.inst, f))
            for rid, (fp, st) in snap.rules.items():
                e = by_id.get(int(rid))
                if e is None or e.fp != fp:
                    continue
                st.data = e.restore_data(st.data) if st.data is not None else e.st.data
                e.st = st
                restored += 1
        self._link()  # regroup shared indicators by restored state; cross groups re-check every rule (idempotent)
        return restored

    def rule_stats(self) -> dict[int, dict[str, int]]:
        return {e.rule.id: {"fired": e.st.fired, "swallowed": e.st.swallowed} for e in self._evals}
