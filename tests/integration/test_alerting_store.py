"""The alert store against the embedded PostgreSQL: alerts inserted once (a replay returns only the new ones),
engine state upserted — with the cached executemany statements the service writes through."""

from __future__ import annotations

import pytest

from consumers.alerting.messages import Alert
from consumers.alerting.store import AlertStore
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
