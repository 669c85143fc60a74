"""The consumers in ``pulse demo``: a few alert rules, the alerting and matching services, and paper orders.

The demo registers one ``pct-change`` rule per symbol of its main venue (a 0.05% move within 10 s, 15 s cooldown — the
local venue's random walk trips it every so often) in the alerting store, starts ``pulse consumers alerting
run`` and ``pulse consumers matching run`` (instruments and precisions from the venue's symbol rules), and sends
a small paper market order, alternately buy and sell, every few seconds. The live view and the summary read
the services' status files (alerts raised and stored, paper fills).
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from pulse.settings import Settings
from pulse.status import read_status

CONSUMERS = ("alerting", "matching")
ORDER_EVERY_S = 3.0
FIRST_ORDER_AFTER_S = 1.0
RULE_PREFIX = "demo "


def install_rules(db_url: str, venue: str, symbols: list[str]) -> int:
    """The demo's alert rules (once per symbol: a rerun on the same database adds nothing). Returns how many
    rules the demo has."""
    from consumers.alerting.rules import make_rule
    from consumers.alerting.store import AlertStore

    store = AlertStore(db_url)
    try:
        store.ensure_schema()
        have = {r.name for r in store.rules()}
        for sym in symbols:
            name = f"{RULE_PREFIX}{venue}:{sym} 0.05% in 10s"
            if name not in have:
                store.add_rule(make_rule("pct-change", {
                    "venue": venue, "symbol": sym, "name": name, "window_s": 10, "pct": 0.05,
                    "cooldown_s": 15, "hysteresis": 0.01,
                }))  # fmt: skip
        return len(symbols)
    finally:
        store.engine.dispose()


def matching_args(venue: str, symbols: list[str]) -> list[str]:
    """``consumers matching run`` with one ``--instrument VENUE:SYMBOL`` per symbol (increments: the venue's rules)."""
    args = ["consumers", "matching", "run"]
    for sym in symbols:
        args += ["--symbols", f"{venue}:{sym}"]
    return args


class PaperTrader:
    """Sends a paper market order (IOC) every ``ORDER_EVERY_S``, alternating buy and sell, round-robin over the
    symbols; the fills come back through the matching service."""

    def __init__(self, settings: Settings, venue: str, symbols: list[str]) -> None:
        self.settings = settings
        self.venue = venue
        self.symbols = symbols
        self.sent = 0
        self._next = float("inf")
        self.error = ""

    def start(self) -> None:
        """The first order goes out shortly (the matching service sees quotes from its start on)."""
        self._next = time.monotonic() + FIRST_ORDER_AFTER_S

    def tick(self) -> None:
        if time.monotonic() < self._next:
            return
        if self.sent == 0 and not (read_status(self.settings.home, "matching") or {}).get("last_tick"):
            return  # the first order waits until the matching service has seen a quote (it is a market order)
        self._next = time.monotonic() + ORDER_EVERY_S
        from consumers.matching.commands import send_command
        from consumers.matching.messages import NewOrder

        sym = self.symbols[self.sent % len(self.symbols)]
        rid = uuid.uuid4().hex[:20]
        order = NewOrder(
            request_id=rid, venue=self.venue, symbol=sym, ts=time.time_ns(), account="demo",
            side="buy" if self.sent % 2 == 0 else "sell", order_type="market", quantity=Decimal("0.01"),
            tif="IOC", order_id=f"demo-{rid}",
        )  # fmt: skip
        try:
            send_command(self.settings, order, wait_s=0)
            self.sent += 1
        except Exception as exc:  # the view shows it; the demo goes on
            self.error = str(exc)


def snapshot(settings: Settings, trader: PaperTrader | None) -> dict[str, Any]:
    al = (read_status(settings.home, "alerting") or {}).get("counters", {})
    ma = (read_status(settings.home, "matching") or {}).get("counters", {})
    return {
        "alerts": al.get("alerts", 0),
        "alerts_stored": al.get("stored", 0),
        "paper_orders": trader.sent if trader else 0,
        "paper_fills": ma.get("fills", 0),
    }
