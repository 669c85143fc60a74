"""The other tick-driven kinds: evaluators (per-rule thresholds) and *nodes* (the per-tick work rules of one
instrument share: one indicator, one spread). A node runs each member's threshold logic inline; the indicators'
updates are inlined in the nodes' ``run`` where that was measured to pay (see :mod:`consumers.alerting.engine`).

:data:`NODE_TYPES` maps an evaluator type to its node type (``ma_cross`` picks a variant: see
:meth:`AlertEngine._link <consumers.alerting.engine.AlertEngine._link>`); a ``divergence`` evaluator is its own node."""

from __future__ import annotations

import math
import sys
from typing import Any

import msgspec

from consumers.alerting.evaluator import Evaluator, ffield, fmt
from consumers.alerting.indicators import EMA, SMA, BucketVolume, WindowedChange
from consumers.alerting.messages import Alert
from consumers.alerting.rules import Divergence, MaCross, PctChange, Spread, VolumeSpike
from consumers.alerting.state import NS, TWO, InstState


class PctEval(Evaluator):
    __slots__ = ("down", "field", "npct", "pct", "rearm", "up")

    def init(self) -> None:
        r: PctChange = self.rule  # type: ignore[assignment]
        self.field = ffield(r.price)
        self.pct = r.pct
        self.npct = -r.pct
        self.up = r.direction != "down"
        self.down = r.direction != "up"
        self.rearm = r.pct - r.hysteresis
        self.st.data = WindowedChange(window_ns=int(r.window_s * NS))
        self.st.armed = True

    def share_key(self) -> Any:
        return ("pct", self.field, self.st.data.window_ns)

    def restore_data(self, raw: Any) -> Any:
        return msgspec.convert(raw, WindowedChange)


class PctNode:
    """``pct_change`` rules of one instrument with the same price field and window: one :class:`WindowedChange`.

    Its :meth:`~WindowedChange.update` is inlined in :meth:`run` (the same steps: a call and the struct's attribute
    writes cost more than the update). The samples stay in the window's own lists (appended and compacted in
    place); only its ``head`` lives here while ticks run, and :meth:`flush` writes it back."""

    __slots__ = ("data", "field", "head", "members", "on_mid", "px", "ts", "window_ns")

    def __init__(self, members: list[PctEval]) -> None:
        self.members = members
        self.field = members[0].field
        self.on_mid = self.field == "midf"
        self.data: WindowedChange = members[0].st.data
        self.ts, self.px, self.head, self.window_ns = self.data.ts, self.data.px, self.data.head, self.data.window_ns

    def flush(self) -> None:
        """Put the live ``head`` back into the window (before a snapshot reads it)."""
        self.data.head = self.head

    def run(self, s: InstState, out: list[Alert]) -> None:
        p = s.midf if self.on_mid else getattr(s, self.field)  # (see ffield)
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
                        fmt(chg),
                        str(r.pct),
                        f"moved {chg:+.4g}% in {r.window_s:g}s (price {p})",
                    )
            elif abs(chg) < e.rearm and e.st.armed is not True:
                e.st.armed = True


class MaData(msgspec.Struct, kw_only=True):
    fast: Any  # SMA or EMA (the rule says which; restore_data converts to it)
    slow: Any
    bucket: int = -1  # interval sampling: current bucket index
    pending: float | None = None  # interval sampling: last price of the current bucket


class MaEval(Evaluator):
    __slots__ = ("both", "field", "hi", "hyst", "interval_ns", "kind_t", "lo", "nhyst", "up")

    def init(self) -> None:
        r: MaCross = self.rule  # type: ignore[assignment]
        self.field = ffield(r.price)
        self.interval_ns = int(r.interval_s * NS)
        self.kind_t = SMA if r.ma == "sma" else EMA
        self.hyst = r.hysteresis
        self.nhyst = -r.hysteresis
        self.both = r.direction == "both"
        self.up = r.direction == "up"
        self.st.data = MaData(fast=self.kind_t(n=r.fast), slow=self.kind_t(n=r.slow))
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
        return MaData(
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
                fmt(diff),
                fmt(r.hysteresis),
                f"{r.ma.upper()}({r.fast}) crossed {'above' if new > 0 else 'below'} {r.ma.upper()}({r.slow}) "
                f"({fmt(fast)} vs {fmt(slow)})",
            )


class MaNode:
    """``ma_cross`` rules of one instrument with the same price field, average kind, lengths and sampling: one
    pair of averages (EMA steps inlined, the same arithmetic as :meth:`EMA.update`). This class samples on every
    tick (SMAs); interval sampling is :class:`MaBucketNode`, and EMAs sampled on every tick use :class:`EmaNode`,
    which runs this node only while the averages are seeding."""

    __slots__ = ("afast", "aslow", "data", "ema", "field", "interval_ns", "members", "nrep", "nxt", "on_mid")

    def __init__(self, members: list[MaEval]) -> None:
        e0 = members[0]
        r: MaCross = e0.rule  # type: ignore[assignment]
        self.members = members
        self.field = e0.field
        self.on_mid = self.field == "midf"
        self.interval_ns = e0.interval_ns
        self.nrep = r.slow + 1
        self.data: MaData = e0.st.data
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
        x = s.midf if self.on_mid else getattr(s, self.field)  # (see ffield)
        if x is None:
            return
        v = self._sample(x)
        if v is not None:
            fv, sv = v
            diff = (fv - sv) / sv * 10_000.0
            for e in self.members:
                if diff < e.lo or diff > e.hi:  # the regime changes (see MaEval.band)
                    e.cross(diff, fv, sv, s, out)


class MaBucketNode(MaNode):
    """:class:`MaNode` sampling the last price of each ``interval_s`` bucket. The bucket's last price lives here
    while ticks run (a slot write is cheaper than the struct's) and :meth:`flush` writes it back."""

    __slots__ = ("pending",)

    def __init__(self, members: list[MaEval]) -> None:
        super().__init__(members)
        self.pending = self.data.pending

    def flush(self) -> None:
        self.data.pending = self.pending

    def run(self, s: InstState, out: list[Alert]) -> None:
        x = s.midf if self.on_mid else getattr(s, self.field)  # (see ffield)
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


class EmaNode:
    """``ma_cross`` EMA rules sampled on every tick (the common case), grouped like :class:`MaNode`: the same
    arithmetic as :meth:`MaNode._sample` (and :meth:`EMA.update`), with the seeding phase kept apart so that a tick
    of a seeded pair runs only the two EMA steps and the members' regime tests. Once seeded, the two averages'
    values live here (slot writes are cheaper than the structs'), and :meth:`flush` writes them back."""

    __slots__ = ("afast", "aslow", "fast", "field", "fv", "members", "node", "on_mid", "seeded", "slow", "sv")

    def __init__(self, members: list[MaEval]) -> None:
        self.members = members
        self.field = members[0].field
        self.on_mid = self.field == "midf"
        self.node = MaNode(members)  # the seeding phase
        self.afast, self.aslow = self.node.afast, self.node.aslow
        d: MaData = members[0].st.data
        self.fast: EMA = d.fast
        self.slow: EMA = d.slow
        self.seeded = self.fast.count >= self.fast.n and self.slow.count >= self.slow.n
        self.fv, self.sv = self.fast.value, self.slow.value

    def flush(self) -> None:
        if self.seeded:  # (while seeding, the node updates the averages themselves)
            self.fast.value, self.slow.value = self.fv, self.sv

    def run(self, s: InstState, out: list[Alert]) -> None:
        x = s.midf if self.on_mid else getattr(s, self.field)  # (see ffield)
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
            if diff < e.lo or diff > e.hi:  # the regime changes (see MaEval.band)
                e.cross(diff, fv, sv, s, out)


class SpreadEval(Evaluator):
    __slots__ = ("bps", "rearm")

    def init(self) -> None:
        r: Spread = self.rule  # type: ignore[assignment]
        self.bps = r.bps
        self.rearm = r.bps - r.hysteresis
        self.st.armed = True

    def share_key(self) -> Any:
        return ("spread",)


class SpreadNode:
    """Every ``spread`` rule of one instrument: the spread in bps is computed once per tick."""

    __slots__ = ("members",)

    def __init__(self, members: list[SpreadEval]) -> None:
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
                        fmt(bps),
                        fmt(e.bps),
                        f"spread {fmt(bps)} bps (bid {s.bid}, ask {s.ask})",
                    )
            elif bps <= e.rearm and e.st.armed is not True:
                e.st.armed = True


class VolumeEval(Evaluator):
    __slots__ = ("min_volume", "rearm", "z")

    def init(self) -> None:
        r: VolumeSpike = self.rule  # type: ignore[assignment]
        self.z = r.z
        self.min_volume = float(r.min_volume)
        self.rearm = r.z - r.hysteresis
        self.st.data = BucketVolume(interval_ns=int(r.interval_s * NS), n=r.buckets)
        self.st.armed = True

    def share_key(self) -> Any:
        return ("volume", self.st.data.interval_ns, self.st.data.n)

    def restore_data(self, raw: Any) -> Any:
        return msgspec.convert(raw, BucketVolume)


class VolumeNode:
    """``volume_spike`` rules of one instrument with the same bucket length and baseline: one :class:`BucketVolume`.

    While ticks run, the current bucket's volume lives in a slot (:meth:`flush` writes it back) and the baseline
    (complete?, mean, std: they change only when a bucket closes) is copied here, so a trade inside a bucket
    reads no struct field."""

    __slots__ = ("current", "data", "mean", "members", "nxt", "ready", "std")

    def __init__(self, members: list[VolumeEval]) -> None:
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
                fmt(z),
                fmt(r.z),
                f"volume {cur:.8g} in {r.interval_s:g}s bucket, z={fmt(z)} (mean {self.mean:.6g}, std {self.std:.6g})",
            )


class DivergenceEval(Evaluator):
    __slots__ = ("a", "b", "field", "max_age_ns", "rearm", "ts_field")

    def init(self) -> None:
        r: Divergence = self.rule  # type: ignore[assignment]
        self.field = sys.intern(r.price)
        self.ts_field = "ts_trade" if self.field == "last" else "ts_quote"
        self.rearm = r.bps - r.hysteresis
        self.max_age_ns = int(r.max_age_s * NS)
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
        mean = (pa + pb) / TWO
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
                    fmt(bps),
                    fmt(r.bps),
                    f"{r.venue} {pa} vs {r.other_venue} {pb}: {fmt(bps)} bps apart",
                )
        elif bps <= self.rearm:
            self.st.armed = True


NODE_TYPES: dict[type[Evaluator], Any] = {
    PctEval: PctNode,
    MaEval: MaNode,
    SpreadEval: SpreadNode,
    VolumeEval: VolumeNode,
}
