"""One rule's evaluator (:class:`Evaluator`): its rule, its state, its thresholds, the anti-flapping gate and the
alert factory. The kinds subclass it (:mod:`~consumers.alerting.cross`, :mod:`~consumers.alerting.nodes`,
:mod:`~consumers.alerting.stale`)."""

from __future__ import annotations

import hashlib
import math
import sys
from typing import Any

import msgspec

from consumers.alerting.messages import Alert
from consumers.alerting.rules import Rule, rule_to_dict
from consumers.alerting.state import NS, InstState, RuleState


def fingerprint(rule: Rule) -> str:
    d = rule_to_dict(rule)
    d.pop("name", None)
    d.pop("enabled", None)
    return hashlib.sha1(msgspec.json.encode(d)).hexdigest()[:16]


def ffield(price: str) -> str:
    """The :class:`InstState` field holding ``price`` as a float (``mid`` → ``midf``), interned: the nodes read it
    with ``getattr`` on every tick, and only an interned name hits the type's attribute cache. (Nodes on ``mid``,
    the default price, read ``s.midf`` directly: still about 3x cheaper than ``getattr``, a builtin call.)"""
    return sys.intern(price + "f")


def fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.6g}"


class Evaluator:
    """One rule's evaluator: its rule, its state, its precomputed thresholds, and the alert factory.

    The per-tick work is done by the *nodes* (below) that hold the evaluators: a node computes what its rules
    share (an indicator, a spread) once per tick, then runs each member's threshold logic inline."""

    __slots__ = ("cooldown_ns", "fp", "rule", "st")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.st = RuleState()
        self.cooldown_ns = int(rule.cooldown_s * NS)
        self.fp = fingerprint(rule)
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
