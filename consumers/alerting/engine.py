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

Modules
    :mod:`~consumers.alerting.state` (instrument and rule state), :mod:`~consumers.alerting.evaluator` (the
    per-rule gate and alert), :mod:`~consumers.alerting.cross` (``price_cross`` groups),
    :mod:`~consumers.alerting.nodes` (the other tick-driven kinds), :mod:`~consumers.alerting.stale` (``stale_feed``);
    this module indexes them by instrument and runs a tick through them.

State
    :meth:`snapshot` returns one msgpack blob per instrument (its last prices and the state of every rule whose
    primary instrument it is: armed flags, cooldown clocks, windows, averages); :meth:`restore` puts them back.
    A rule's state is restored only if the rule is unchanged (a fingerprint of its definition). While ticks run,
    some nodes keep the fields of their indicator that change on every tick in their own slots (cheaper to
    write than a struct's); both methods first write them back into the indicators (``flush``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from consumers.alerting.cross import CrossEval, CrossGroup
from consumers.alerting.evaluator import Evaluator
from consumers.alerting.indicators import EMA
from consumers.alerting.messages import Alert
from consumers.alerting.nodes import (
    NODE_TYPES,
    DivergenceEval,
    EmaNode,
    MaBucketNode,
    MaEval,
    MaNode,
    PctEval,
    SpreadEval,
    VolumeEval,
)
from consumers.alerting.rules import Divergence, MaCross, PctChange, PriceCross, Rule, Spread, StaleFeed, VolumeSpike
from consumers.alerting.stale import StaleEval
from consumers.alerting.state import TWO, InstState, Key, LiveState, RuleState
from pulse.models import BookDelta, BookSnapshot, Quote, QuoteBatch, Ticker, Trade

__all__ = ["AlertEngine", "InstState", "Key", "RuleState"]


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
        self.state = LiveState()
        self.dirty = False  # state changed since the last take_dirty
        self.need_mid = False  # someone reads the exact ``state.mid`` per tick (divergence on mid); else lazy
        self.need_lastf = False  # someone reads ``state.lastf`` per tick (a rule on price "last"); else lazy
        # per-tick work, precomputed by AlertEngine._link: cross groups first, then nodes (other kinds)
        self.q_cross: list[CrossGroup] = []  # run when bid/ask changed
        self.q_nodes: list[Any] = []
        self.t_cross: list[CrossGroup] = []  # … when a trade arrived
        self.t_nodes: list[Any] = []
        # their bound ``run`` methods in that order, what a tick calls (one loop: see AlertEngine.on_event)
        self.q_steps: list[Step] = []
        self.t_steps: list[Step] = []
        self.primary: list[Evaluator] = []  # rules whose state is snapshotted with this instrument


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
        self._evals: list[Evaluator] = []
        self._stale: list[tuple[StaleEval, _Instrument]] = []
        self._flush: list[Callable[[], None]] = []  # the nodes' flush methods (see _flush_nodes)
        self._started: int | None = None  # first on_timer: silence before it is not counted
        self.ticks = self.ignored = self.alerts = 0
        # (instrument, trade?) → evaluators in rule-id order, and the cross groups' rules by (instrument, field)
        self._plan: list[tuple[_Instrument, bool, Evaluator]] = []
        self._crosses: dict[tuple[Key, str], list[CrossEval]] = {}
        for rule in sorted(self.rules, key=lambda r: r.id):
            inst = self._instrument(rule.instrument)
            ev: Evaluator
            if getattr(rule, "price", "") == "last" and not isinstance(rule, Divergence):  # (divergence: exact)
                inst.need_lastf = True
            if isinstance(rule, PriceCross):
                ev = CrossEval(rule)
                self._crosses.setdefault((rule.instrument, rule.price), []).append(ev)  # type: ignore[arg-type]
            elif isinstance(rule, StaleFeed):
                ev = StaleEval(rule)
                self._stale.append((ev, inst))  # type: ignore[arg-type]
            elif isinstance(rule, Divergence):
                ev = DivergenceEval(rule)
                other = self._instrument((rule.other_venue, rule.symbol))
                ev.a, ev.b = inst.state, other.state  # type: ignore[attr-defined]
                for i in (inst, other):
                    self._plan.append((i, rule.price == "last", ev))
                    if rule.price == "mid":
                        i.need_mid = True
            else:
                ev = {PctChange: PctEval, MaCross: MaEval, Spread: SpreadEval, VolumeSpike: VolumeEval}[type(rule)](
                    rule
                )
                trade = isinstance(rule, VolumeSpike) or getattr(rule, "price", "") == "last"
                self._plan.append((inst, trade, ev))
            inst.primary.append(ev)
            self._evals.append(ev)
        self._link()

    def _link(self) -> None:
        """(Re)build every instrument's per-tick work from the evaluators: cross groups, and one node per set of
        rules that share an indicator — same instrument, same :meth:`Evaluator.share_key` and the same indicator
        state (equal after a fresh start; after a restore, only rules whose restored indicators are identical
        share, so a changed or new rule never inherits another's history)."""
        for inst in self._inst.values():
            inst.q_cross, inst.q_nodes, inst.t_cross, inst.t_nodes = [], [], [], []
        for (key, fld), evs in sorted(self._crosses.items(), key=lambda kv: min(e.rule.id for e in kv[1])):
            inst = self._inst[key]
            (inst.t_cross if fld == "last" else inst.q_cross).insert(0, CrossGroup(fld, evs))
        groups: dict[Any, list[Evaluator]] = {}
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
            node_t = NODE_TYPES.get(type(evs[0]))
            if node_t is MaNode:
                if evs[0].interval_ns:  # type: ignore[attr-defined]
                    node_t = MaBucketNode
                elif evs[0].kind_t is EMA:  # type: ignore[attr-defined]
                    node_t = EmaNode
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
                    s.mid = (bid + ask) / TWO
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
                s.mid = (s.bid + s.ask) / TWO if s.bid is not None and s.ask is not None else None
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
