"""The alerting engine: pure, deterministic, no I/O.

``AlertEngine(rules)`` evaluates canonical events (:mod:`pulse.models`) against rules
(:mod:`consumers.alerting.rules`) and returns :class:`~consumers.alerting.messages.Alert` s:

* :meth:`AlertEngine.on_event` — every tick; time is the event's ``ts_event`` (cooldowns, windows, buckets).
* :meth:`AlertEngine.on_timer` — ``stale_feed`` rules, with an explicit ``now_ns`` compared with ticks'
  ``ts_recv`` (both our clock). The service calls it once a second; tests call it with chosen instants.

Same rules + same calls in the same order ⇒ the same alerts, bit for bit (alert ids included).

Cost per tick
    Rules are indexed by instrument: a tick looks up ``(venue, symbol)`` once and runs only that instrument's
    evaluators, split by what the tick carries (a quote never runs trade-only rules). ``price_cross`` rules of
    one instrument and price field form one *cross group*: their trigger and re-arm levels sit in one sorted
    array, and a tick only evaluates the rules whose levels lie between the previous price and this one
    (bisect: O(log n) when nothing crosses, and O(1) when the price did not move). Other kinds are O(1)
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
    A rule's state is restored only if the rule is unchanged (a fingerprint of its definition).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable
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
    # the same as floats, converted once per tick for the statistics kinds (None when the exact value is None)
    bidf: float | None = None
    askf: float | None = None
    midf: float | None = None
    lastf: float | None = None
    ts_quote: int = _NEVER  # ts_event of the last bid/ask update
    ts_trade: int = _NEVER
    ts_event: int = _NEVER  # of the latest tick of any kind
    ts_recv: int = _NEVER  # our receive time of the latest tick (stale_feed compares it with on_timer's now)
    recv_tick: int = 0  # ts_recv of the tick being evaluated (alerts carry it)


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


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.6g}"


class _Eval:
    """One rule's evaluator: its rule, its state, and the alert factory."""

    __slots__ = ("cooldown_ns", "fp", "rule", "st")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.st = RuleState()
        self.cooldown_ns = int(rule.cooldown_s * _NS)
        self.fp = _fingerprint(rule)
        self.init()

    def init(self) -> None:
        """Set the kind-specific initial state (``st.data``)."""

    def restore_data(self, raw: Any) -> Any:
        return raw

    def fire(self, out: list[Alert], ts: int, inst: InstState, cond: str, value: str, threshold: str, msg: str) -> None:
        """Disarm, then append an alert to ``out`` unless the cooldown swallows it."""
        st = self.st
        st.armed = False
        if ts - st.last_fire < self.cooldown_ns:
            st.swallowed += 1
            return
        st.last_fire = ts
        st.fired += 1
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


def _price(inst: InstState, field: str) -> Decimal | None:
    return getattr(inst, field)  # type: ignore[no-any-return]


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
        st = self.st
        if self.above:
            if p > self.level:
                if st.armed:
                    self.fire(
                        out,
                        inst.ts_event,
                        inst,
                        "above",
                        str(p),
                        str(self.level),
                        f"price {p} crossed above {self.level}",
                    )
                else:
                    st.armed = False
            elif st.armed is None or p <= self.rearm:
                st.armed = True
        elif p < self.level:
            if st.armed:
                self.fire(
                    out, inst.ts_event, inst, "below", str(p), str(self.level), f"price {p} crossed below {self.level}"
                )
            else:
                st.armed = False
        elif st.armed is None or p >= self.rearm:
            st.armed = True


class _CrossGroup:
    """All ``price_cross`` rules of one instrument on one price field, with their levels in one sorted array."""

    __slots__ = ("bounds", "evals", "field", "owners", "prev")

    def __init__(self, field: str, evals: list[_CrossEval]) -> None:
        self.field = field
        self.evals = sorted(evals, key=lambda e: e.rule.id)
        pairs = sorted((b, i) for i, e in enumerate(self.evals) for b in {e.level, e.rearm})
        self.bounds = [b for b, _ in pairs]
        self.owners = [i for _, i in pairs]
        self.prev: Decimal | None = None  # None: evaluate every rule (first tick, or after a restore)

    def __call__(self, inst: InstState, out: list[Alert]) -> None:
        p = getattr(inst, self.field)
        if p is None:
            return
        prev = self.prev
        if prev is not None and p == prev:
            return
        self.prev = p
        evals = self.evals
        if prev is None:
            for e in evals:
                e.check(p, inst, out)
            return
        lo, hi = (prev, p) if prev < p else (p, prev)
        i = bisect.bisect_left(self.bounds, lo)
        j = bisect.bisect_right(self.bounds, hi)
        if i == j:
            return
        idx = sorted(set(self.owners[i:j]))  # rule-id order: deterministic output order
        for k in idx:
            evals[k].check(p, inst, out)


# -- the other kinds --------------------------------------------------------------------------------------
class _PctEval(_Eval):
    __slots__ = ("field", "rearm")

    def init(self) -> None:
        r: PctChange = self.rule  # type: ignore[assignment]
        self.field = r.price + "f"
        self.rearm = r.pct - r.hysteresis
        self.st.data = WindowedChange(window_ns=int(r.window_s * _NS))
        self.st.armed = True

    def restore_data(self, raw: Any) -> Any:
        return msgspec.convert(raw, WindowedChange)

    def __call__(self, inst: InstState, out: list[Alert]) -> None:
        p = getattr(inst, self.field)
        if p is None:
            return
        chg = self.st.data.update(inst.ts_event, p)
        if chg is None:
            return
        r: PctChange = self.rule  # type: ignore[assignment]
        d = r.direction
        hit = (chg >= r.pct and d != "down") or (chg <= -r.pct and d != "up")
        if hit:
            if self.st.armed:
                cond = "up" if chg > 0 else "down"
                self.fire(
                    out,
                    inst.ts_event,
                    inst,
                    cond,
                    _fmt(chg),
                    str(r.pct),
                    f"moved {chg:+.4g}% in {r.window_s:g}s (price {p})",
                )
        elif abs(chg) < self.rearm:
            self.st.armed = True


class _MaData(msgspec.Struct, kw_only=True):
    fast: Any  # SMA or EMA (the rule says which; restore_data converts to it)
    slow: Any
    bucket: int = -1  # interval sampling: current bucket index
    pending: float | None = None  # interval sampling: last price of the current bucket


class _MaEval(_Eval):
    __slots__ = ("field", "interval_ns", "kind_t")

    def init(self) -> None:
        r: MaCross = self.rule  # type: ignore[assignment]
        self.field = r.price + "f"
        self.interval_ns = int(r.interval_s * _NS)
        self.kind_t = SMA if r.ma == "sma" else EMA
        self.st.data = _MaData(fast=self.kind_t(n=r.fast), slow=self.kind_t(n=r.slow))

    def restore_data(self, raw: Any) -> Any:
        t = self.kind_t
        return _MaData(
            fast=msgspec.convert(raw["fast"], t),
            slow=msgspec.convert(raw["slow"], t),
            bucket=raw["bucket"],
            pending=raw["pending"],
        )

    def __call__(self, inst: InstState, out: list[Alert]) -> None:
        p = getattr(inst, self.field)
        if p is None:
            return
        x = p
        d: _MaData = self.st.data
        if not self.interval_ns:
            self._sample(x, inst, out)
            return
        b = inst.ts_event // self.interval_ns
        if d.bucket < 0:
            d.bucket = b
        elif b > d.bucket:
            # the previous bucket closed with ``pending``; empty buckets repeat it (the price did not change)
            r: MaCross = self.rule  # type: ignore[assignment]
            for _ in range(min(b - d.bucket, r.slow + 1)):
                self._sample(d.pending, inst, out)  # type: ignore[arg-type]
            d.bucket = b
        d.pending = x

    def _sample(self, x: float, inst: InstState, out: list[Alert]) -> None:
        d: _MaData = self.st.data
        d.fast.update(x)
        d.slow.update(x)
        if not d.slow.ready:
            return
        fast, slow = d.fast.value, d.slow.value
        if not slow:
            return
        r: MaCross = self.rule  # type: ignore[assignment]
        diff = (fast - slow) / slow * 10_000.0
        st = self.st
        new = 1 if diff > r.hysteresis else -1 if diff < -r.hysteresis else st.regime
        if new == st.regime or new == 0:
            return
        old, st.regime = st.regime, new
        if old == 0:  # first regime: where the averages are, not a crossing
            return
        if r.direction == "both" or (r.direction == "up") == (new > 0):
            st.armed = True  # a regime change is the transition; cooldown still applies
            cond = "cross_up" if new > 0 else "cross_down"
            self.fire(
                out,
                inst.ts_event,
                inst,
                cond,
                _fmt(diff),
                _fmt(r.hysteresis),
                f"{r.ma.upper()}({r.fast}) crossed {'above' if new > 0 else 'below'} {r.ma.upper()}({r.slow}) "
                f"({_fmt(fast)} vs {_fmt(slow)})",
            )


class _SpreadEval(_Eval):
    __slots__ = ("rearm",)

    def init(self) -> None:
        r: Spread = self.rule  # type: ignore[assignment]
        self.rearm = r.bps - r.hysteresis
        self.st.armed = True

    def __call__(self, inst: InstState, out: list[Alert]) -> None:
        bid, ask, mid = inst.bidf, inst.askf, inst.midf
        if bid is None or ask is None or not mid:
            return
        bps = (ask - bid) / mid * 10_000.0
        r: Spread = self.rule  # type: ignore[assignment]
        if bps > r.bps:
            if self.st.armed:
                self.fire(
                    out,
                    inst.ts_event,
                    inst,
                    "wide",
                    _fmt(bps),
                    _fmt(r.bps),
                    f"spread {_fmt(bps)} bps (bid {inst.bid}, ask {inst.ask})",
                )
        elif bps <= self.rearm:
            self.st.armed = True


class _VolumeEval(_Eval):
    __slots__ = ("rearm",)

    def init(self) -> None:
        r: VolumeSpike = self.rule  # type: ignore[assignment]
        self.rearm = r.z - r.hysteresis
        self.st.data = BucketVolume(interval_ns=int(r.interval_s * _NS), n=r.buckets)
        self.st.armed = True

    def restore_data(self, raw: Any) -> Any:
        return msgspec.convert(raw, BucketVolume)

    def __call__(self, inst: InstState, out: list[Alert]) -> None:
        size = inst.size
        if size is None:
            return
        bv: BucketVolume = self.st.data
        closed, closed_z = bv.add(inst.ts_event, float(size))
        if closed and (closed_z is None or closed_z < self.rearm):
            self.st.armed = True  # a normal bucket ended: a later spike is a new one
        z = bv.z(bv.current)
        r: VolumeSpike = self.rule  # type: ignore[assignment]
        if z is None or z < r.z or bv.current < float(r.min_volume) or not self.st.armed:
            return
        self.fire(
            out,
            inst.ts_event,
            inst,
            "spike",
            _fmt(z),
            _fmt(r.z),
            f"volume {bv.current:.8g} in {r.interval_s:g}s bucket, z={_fmt(z)} (mean {bv.mean:.6g}, std {bv.std:.6g})",
        )


class _DivergenceEval(_Eval):
    __slots__ = ("a", "b", "field", "max_age_ns", "rearm")

    def init(self) -> None:
        r: Divergence = self.rule  # type: ignore[assignment]
        self.field = r.price
        self.rearm = r.bps - r.hysteresis
        self.max_age_ns = int(r.max_age_s * _NS)
        self.st.armed = True
        self.a: InstState | None = None  # set by the engine: rule.venue's and other_venue's states
        self.b: InstState | None = None

    def __call__(self, inst: InstState, out: list[Alert]) -> None:
        a, b = self.a, self.b
        assert a is not None and b is not None
        pa, pb = getattr(a, self.field), getattr(b, self.field)
        if pa is None or pb is None:
            return
        ts_field = "ts_trade" if self.field == "last" else "ts_quote"
        if abs(getattr(a, ts_field) - getattr(b, ts_field)) > self.max_age_ns:
            return
        mean = (pa + pb) / _TWO
        if not mean:
            return
        bps = float(abs(pa - pb)) / float(mean) * 10_000.0
        r: Divergence = self.rule  # type: ignore[assignment]
        if bps > r.bps:
            if self.st.armed:
                self.fire(
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


# -- the engine -------------------------------------------------------------------------------------------
class _Instrument:
    __slots__ = ("key", "on_quote", "on_trade", "primary", "state")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.state = InstState()
        self.on_quote: list[Any] = []  # callables (inst_state, out) run when bid/ask changed
        self.on_trade: list[Any] = []  # … when a trade arrived
        self.primary: list[_Eval] = []  # rules whose state is snapshotted with this instrument


class _InstSnapshot(msgspec.Struct):
    inst: InstState
    rules: dict[str, tuple[str, RuleState]]  # rule id → (fingerprint, state)


_snap_enc = msgspec.msgpack.Encoder(decimal_format="string")
_snap_dec = msgspec.msgpack.Decoder(_InstSnapshot)


class AlertEngine:
    """Evaluate rules against events. See the module docstring for semantics, cost and state."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [r for r in rules if r.enabled]
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        self._inst: dict[Key, _Instrument] = {}
        self._evals: list[_Eval] = []
        self._stale: list[tuple[_StaleEval, _Instrument]] = []
        self._started: int | None = None  # first on_timer: silence before it is not counted
        self._dirty: set[Key] = set()
        self.stats = {"ticks": 0, "ignored": 0, "alerts": 0}
        crosses: dict[tuple[Key, str], list[_CrossEval]] = {}
        for rule in sorted(self.rules, key=lambda r: r.id):
            inst = self._instrument(rule.instrument)
            ev: _Eval
            if isinstance(rule, PriceCross):
                ev = _CrossEval(rule)
                crosses.setdefault((rule.instrument, rule.price), []).append(ev)  # type: ignore[arg-type]
            elif isinstance(rule, StaleFeed):
                ev = _StaleEval(rule)
                self._stale.append((ev, inst))  # type: ignore[arg-type]
            elif isinstance(rule, Divergence):
                ev = _DivergenceEval(rule)
                other = self._instrument((rule.other_venue, rule.symbol))
                ev.a, ev.b = inst.state, other.state  # type: ignore[attr-defined]
                for i in (inst, other):
                    (i.on_trade if rule.price == "last" else i.on_quote).append(ev)
            else:
                ev = {PctChange: _PctEval, MaCross: _MaEval, Spread: _SpreadEval, VolumeSpike: _VolumeEval}[type(rule)](
                    rule
                )
                trade = isinstance(rule, VolumeSpike) or getattr(rule, "price", "") == "last"
                (inst.on_trade if trade else inst.on_quote).append(ev)
            inst.primary.append(ev)
            self._evals.append(ev)
        for (key, fld), evs in sorted(crosses.items(), key=lambda kv: min(e.rule.id for e in kv[1])):
            g = _CrossGroup(fld, evs)
            inst = self._inst[key]
            (inst.on_trade if fld == "last" else inst.on_quote).insert(0, g)

    def _instrument(self, key: Key) -> _Instrument:
        inst = self._inst.get(key)
        if inst is None:
            inst = self._inst[key] = _Instrument(key)
        return inst

    def instruments(self) -> list[Key]:
        """Every (venue, symbol) some rule reads, sorted."""
        return sorted(self._inst)

    # -- evaluation ---------------------------------------------------------------------------------------
    def on_event(self, event: Any) -> list[Alert]:
        """Apply one event (a QuoteBatch is its quotes, in order); return the alerts it triggers."""
        inst = self._inst.get((event.venue, event.symbol))
        if inst is None:
            self.stats["ignored"] += 1
            return []
        out: list[Alert] = []
        if type(event) is QuoteBatch:
            for q in event.quotes():
                self._apply(inst, q, out)
        else:
            self._apply(inst, event, out)
        if out:
            self.stats["alerts"] += len(out)
        return out

    def _apply(self, inst: _Instrument, ev: Any, out: list[Alert]) -> None:
        s = inst.state
        t = type(ev)
        if t is Quote or t is Ticker:
            bid, ask = ev.bid, ev.ask
            if t is Ticker:
                s.last, s.lastf = ev.last, float(ev.last)
        elif t is BookDelta:
            bid = ev.best_bid.price if ev.best_bid is not None else None
            ask = ev.best_ask.price if ev.best_ask is not None else None
        elif t is BookSnapshot:
            bid = ev.bids[0].price if ev.bids else None
            ask = ev.asks[0].price if ev.asks else None
        elif t is Trade:
            s.last, s.size = ev.price, ev.size
            s.lastf = float(ev.price)
            s.ts_trade = s.ts_event = ev.ts_event
            s.ts_recv = s.recv_tick = ev.ts_recv
            self.stats["ticks"] += 1
            self._dirty.add(inst.key)
            for fn in inst.on_trade:
                fn(s, out)
            return
        else:  # Status, Candle: not a tick
            self.stats["ignored"] += 1
            return
        s.bid, s.ask = bid, ask
        s.bidf = bf = float(bid) if bid is not None else None
        s.askf = af = float(ask) if ask is not None else None
        if bf is not None and af is not None:
            s.mid = (bid + ask) / _TWO
            s.midf = (bf + af) * 0.5
        else:
            s.mid = s.midf = None
        s.ts_quote = s.ts_event = ev.ts_event
        s.ts_recv = s.recv_tick = ev.ts_recv
        self.stats["ticks"] += 1
        self._dirty.add(inst.key)
        for fn in inst.on_quote:
            fn(s, out)

    def on_timer(self, now_ns: int) -> list[Alert]:
        """Check ``stale_feed`` rules at ``now_ns`` (our clock, like ticks' ``ts_recv``)."""
        if self._started is None:
            self._started = now_ns
        out: list[Alert] = []
        for ev, inst in self._stale:
            before = len(out)
            ev.check(now_ns, inst.state, self._started, out)
            if len(out) != before or ev.st.swallowed:
                self._dirty.add(inst.key)
        if out:
            self.stats["alerts"] += len(out)
        return out

    # -- state ---------------------------------------------------------------------------------------------
    def take_dirty(self) -> set[Key]:
        """Instruments whose state changed since the last call (what a snapshot needs to write)."""
        d, self._dirty = self._dirty, set()
        return d

    def snapshot(self, keys: Iterable[Key] | None = None) -> dict[Key, bytes]:
        """One msgpack blob per instrument (default: all)."""
        out: dict[Key, bytes] = {}
        for key in sorted(self._inst) if keys is None else keys:
            inst = self._inst.get(key)
            if inst is None:
                continue
            rules = {str(e.rule.id): (e.fp, e.st) for e in inst.primary}
            out[key] = _snap_enc.encode(_InstSnapshot(inst.state, rules))
        return out

    def restore(self, blobs: dict[Key, bytes]) -> int:
        """Load snapshots; returns how many rule states were restored (changed or unknown rules start fresh)."""
        by_id = {e.rule.id: e for e in self._evals}
        restored = 0
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
        for inst in self._inst.values():  # cross groups re-evaluate every rule on the next tick (idempotent)
            for fn in (*inst.on_quote, *inst.on_trade):
                if isinstance(fn, _CrossGroup):
                    fn.prev = None
        return restored

    def rule_stats(self) -> dict[int, dict[str, int]]:
        return {e.rule.id: {"fired": e.st.fired, "swallowed": e.st.swallowed} for e in self._evals}
