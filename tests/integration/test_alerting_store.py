"""The alert store against the embedded PostgreSQL: alerts inserted once (a replay returns only the new ones),
engine state upserted — with the cached executemany statements the service writes through."""

from __future__ import annotations

import pytest

from consumers.alerting.messages import Alert
from consumers.alerting.store import AlertStore, Fence, owners_table, state_table
from pulse.runtime import Endpoints

pytestmark = pytest.mark.slow


def _alert(rule_id: int, ts: int, symbol: str) -> Alert:
    return Alert(alert_id=f"{rule_id}-{ts}", rule_id=rule_id, rule_name="", kind="spread", venue="kraken",
                 symbol=symbol, ts_event=ts, ts_tick_recv=ts, condition="wide", value="30", threshold="20",
                 message="m")  # fmt: skip


def test_store_alerts_returns_only_new_and_upserts_state(endpoints: Endpoints, unique: str) -> None:
    store = AlertStore(endpoints.database_url, pooled=True)
    try:
        store.ensure_schema()
        sym = f"S{unique[:6].upper()}/USD"
        rid = 900_000 + int(unique[:5], 16) % 90_000  # no other test's rule ids
        first = [_alert(rid, t, sym) for t in (1, 2, 3)]
        assert store.store_alerts(first) == first
        again = [first[1], _alert(rid, 4, sym), first[2], _alert(rid, 5, sym)]
        assert store.store_alerts(again, {("kraken", sym): b"one"}) == [again[1], again[3]]
        assert store.store_alerts([]) == []
        assert store.store_alerts([_alert(rid, 6, sym)], {("kraken", sym): b"two", ("oanda", sym): b"x"})
        assert store.load_state([("kraken", sym), ("oanda", sym)]) == {("kraken", sym): b"two", ("oanda", sym): b"x"}
        rows = store.alerts(rule_ids=[rid])
        assert [r["alert_id"] for r in rows] == [f"{rid}-{t}" for t in (1, 2, 3, 4, 5, 6)]
        assert rows[0]["payload"]["alert_id"] == f"{rid}-1"
    finally:
        store.close()


def test_claim_fences_the_previous_owner_of_a_symbol(endpoints: Endpoints, unique: str) -> None:
    """Scale-out handover (consumers/alerting/handover.py): a take-over bumps the epoch, the old owner's next
    commit writes nothing for that symbol and reports it lost, and the new owner loads what was committed."""
    store = AlertStore(endpoints.database_url)
    store.ensure_schema()
    sym, other = f"H{unique[:6].upper()}/USD", f"K{unique[:6].upper()}/USD"
    try:
        first = store.claim(sym, "a")
        assert (first.epoch, first.positions, first.alert_seq, first.state) == (1, {}, 0, {})
        b_other = store.claim(other, "b")
        fence = Fence(epoch=1, positions={"t1": [0, 5, 7, -1]}, alert_seq=3)
        lost = store.commit_owned("a", {sym: fence}, {("kraken", sym): b"state-1"}, {sym: 1})
        assert lost == set()
        taken = store.claim(sym, "b")  # b takes the symbol over: it gets a's committed state, positions and count
        assert (taken.epoch, taken.positions, taken.alert_seq) == (2, {"t1": [0, 5, 7, -1]}, 3)
        assert taken.state == {("kraken", sym): b"state-1"}
        # a, unaware, commits again: nothing of the symbol is written, and it learns it lost it
        stale = Fence(epoch=1, positions={"t1": [0, 5, 9, -1]}, alert_seq=4)
        assert store.commit_owned("a", {sym: stale}, {("kraken", sym): b"stale"}, {sym: 1}) == {sym}
        assert store.claim(sym, "b").state == {("kraken", sym): b"state-1"}  # (epoch 3, b again)
        # an owned symbol not in this snapshot is only checked: b still holds `other` at its epoch, a never did
        assert store.commit_owned("b", {}, {}, {other: b_other.epoch}) == set()
        assert store.commit_owned("a", {}, {}, {other: b_other.epoch}) == {other}
    finally:
        with store.engine.begin() as conn:
            conn.execute(owners_table.delete().where(owners_table.c.symbol.in_([sym, other])))
            conn.execute(state_table.delete().where(state_table.c.symbol.in_([sym, other])))
        store.close()
