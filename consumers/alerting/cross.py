"""``price_cross`` rules: one :class:`CrossGroup` per (instrument, price field), its rules' levels in one sorted
array, so a tick evaluates only the rules whose levels lie between the previous price and this one."""

from __future__ import annotations

import bisect
import math
import sys
from decimal import Decimal

from consumers.alerting.evaluator import Evaluator, ffield
from consumers.alerting.messages import Alert
from consumers.alerting.rules import PriceCross
from consumers.alerting.state import TWO, InstState


class CrossEval(Evaluator):
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


class CrossGroup:
    """All ``price_cross`` rules of one instrument on one price field, with their levels in one sorted array.

    The price moved from ``prev`` to ``p``: only rules with a trigger or re-arm level in [prev, p] can change
    state. The search runs on floats (the tick's float price, levels as floats, the interval widened by a relative
    1e-12 — float rounding is monotonic, so this finds a superset of the exact candidates); candidates are then
    checked exactly in Decimal (the exact price, computed only then). Checking an extra rule is a no-op
    (:meth:`CrossEval.check` is idempotent), so alerts are exactly those of an exact search."""

    __slots__ = ("bounds", "boundsf", "evals", "ffield", "field", "ghi", "glo", "on_mid", "owners", "prev")

    def __init__(self, field: str, evals: list[CrossEval]) -> None:
        self.field = sys.intern(field)
        self.ffield = ffield(field)
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
            return (s.bid + s.ask) / TWO  # type: ignore[operator,no-any-return]
        return getattr(s, self.field)  # type: ignore[no-any-return]

    def run(self, s: InstState, out: list[Alert]) -> None:
        pf = s.midf if self.on_mid else getattr(s, self.ffield)  # (see ffield)
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
