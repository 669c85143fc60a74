"""Scale-out on Apache Pulsar: two alerting services on one Key_Shared subscription, one SIGKILLed mid-stream.

Six instruments stream quotes (published here, keyed by symbol, like the ingester does) while two `pulse consumers
alerting run` processes share the subscription. Each symbol carries three stateful rules (a price cross, a moving
average cross, a windowed % change), so an instance that took a symbol over without its state, or applied a
message twice, would raise different alerts. One instance is killed with SIGKILL while the stream runs: its
symbols move to the survivor, which loads their state from the database (consumers/alerting/handover.py) and
replays what the killed one had not committed. Checked against the deterministic engine run in this process over
the same quotes: the ``alerts`` table and the alerts TOPIC (read back from the earliest position) each hold
exactly the expected alerts, once.
"""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal
from pathlib import Path

import pulsar

from consumers.alerting.engine import AlertEngine
from consumers.alerting.messages import decode_alert
from consumers.alerting.rules import Rule, make_rule
from consumers.alerting.store import AlertStore
from pulse.bus import client_logger
from pulse.codec import Codec
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import topic
from tests.procs import process, pulse_cmd, stop, wait_for

SYMBOLS = 6
QUOTES = 1000  # per symbol
T0 = 1_700_000_000_000_000_000


def _quotes(symbols: list[str]) -> list[Quote]:
    """Round-robin over the symbols; each symbol's mid wanders around 100.5 in a fixed, symbol-specific pattern."""
    out: list[Quote] = []
    for k in range(QUOTES):
        for i, sym in enumerate(symbols):
            step = (k * (3 + i) + (k // 7) * 5) % 13
            mid = Decimal("100") + Decimal(step) / 10
            out.append(
                Quote(venue="kraken", symbol=sym, ts_event=T0 + k * 50_000_000 + i, ts_recv=0, seq=k,
                      bid=mid - Decimal("0.01"), bid_size=Decimal(1), ask=mid + Decimal("0.01"), ask_size=Decimal(1))
            )  # fmt: skip
    return out


def _rules(store: AlertStore, symbols: list[str]) -> list[Rule]:
    rules = []
    for sym in symbols:
        common = {"venue": "kraken", "symbol": sym, "cooldown_s": 0, "price": "mid"}
        for kind, extra in (
            ("price_cross", {"above": "100.55"}),
            ("ma_cross", {"fast": 3, "slow": 8, "ma": "sma"}),
            ("pct_change", {"window_s": 1.0, "pct": 0.6}),
        ):
            rules.append(store.add_rule(make_rule(kind, {**common, **extra})))
    return rules


def _status(home: Path, name: str) -> dict:
    try:
        return json.loads((home / "run" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def test_alerting_scale_out_one_killed_mid_stream_no_alert_lost_or_doubled(
    apache_settings: Settings, apache_endpoints: Endpoints, unique: str
) -> None:
    s, url = apache_settings, apache_endpoints.database_url
    symbols = [f"S{i}{unique[:6].upper()}/USD" for i in range(SYMBOLS)]
    store = AlertStore(url)
    store.ensure_schema()
    rules = _rules(store, symbols)
    ids = {r.id for r in rules}
    quotes = _quotes(symbols)
    engine = AlertEngine(rules)
    expected = {a.alert_id: a for q in quotes for a in engine.on_event(q)}
    assert len(expected) > 300  # every kind fires, all along the stream
    assert {a.kind for a in expected.values()} == {"price_cross", "ma_cross", "pct_change"}

    alerts_topic = f"alerts-{unique}"
    env = {
        "PULSE_ALERTING__SUBSCRIPTION": f"alerting-{unique}",
        "PULSE_ALERTING__ALERTS_TOPIC": alerts_topic,
        "PULSE_ALERTING__SNAPSHOT_INTERVAL_S": "0.5",
        "PULSE_ALERTING__RULES_POLL_S": "0",
    }
    codec = Codec(s.pulsar.codec)
    client = pulsar.Client(s.pulsar.url, logger=client_logger(s))
    try:
        producers = {
            sym: client.create_producer(
                topic("crypto", "kraken", sym, "quote", s.pulsar.tenant), batching_enabled=False
            )
            for sym in symbols
        }
        names = [f"alerting-a-{unique}", f"alerting-b-{unique}"]
        a = pulse_cmd(s, "consumers", "alerting", "run", "--name", names[0], "--json", env=env)
        b = pulse_cmd(s, "consumers", "alerting", "run", "--name", names[1], "--json", env=env)
        with process(a), process(b):
            for n in names:
                wait_for(lambda n=n: _status(s.home, n).get("state") == "running", f"{n} running", timeout=90)
            kill_at = len(quotes) * 2 // 5  # from here on, kill `a` as soon as both instances own symbols
            before_kill: dict[str, dict] = {}
            counters: dict[str, dict] = {}
            for i, q in enumerate(quotes):
                if i >= kill_at and not before_kill and i % 60 == 0:
                    counters = {n: _status(s.home, n).get("counters", {}) for n in names}
                    if all(c.get("takeovers", 0) > 0 and c.get("received", 0) >= 200 for c in counters.values()):
                        before_kill = counters
                        a.send_signal(signal.SIGKILL)
                        a.wait(10)
                q = Quote(**{**{f: getattr(q, f) for f in q.__struct_fields__}, "ts_recv": time.time_ns()})
                producers[q.symbol].send_async(codec.encode(q), None, properties=codec.properties(q),
                                               partition_key=q.symbol)  # fmt: skip
                if i % len(symbols) == 0:
                    time.sleep(0.015)  # ~400 quotes/s
            for p in producers.values():
                p.flush()
            assert before_kill, f"the stream ended before both instances owned symbols: {counters}"
            assert a.returncode == -signal.SIGKILL
            wait_for(lambda: len(_stored(store, ids)) >= len(expected), "every alert stored", timeout=120)
            time.sleep(2)  # a late duplicate would show now
            code, out, err = stop(b, timeout=60)
            assert code == 0, err[-3000:]
        survivor = json.loads(out)

        # both instances had taken symbols before the kill; the survivor then took the killed one's over
        took = {n: before_kill[n]["takeovers"] for n in names}
        assert sum(took.values()) == SYMBOLS, took
        assert survivor["takeovers"] == SYMBOLS, survivor
        assert survivor["decode_errors"] == 0 and survivor["publish_failed"] == 0

        stored = _stored(store, ids)
        assert len(stored) == len(set(stored)), "an alert stored twice"
        assert set(stored) == set(expected), (
            f"missing {sorted(set(expected) - set(stored))[:5]}, unexpected {sorted(set(stored) - set(expected))[:5]}"
        )
        rows = {r["alert_id"]: r for r in store.alerts(rule_ids=sorted(ids), limit=100_000)}
        for aid, al in expected.items():
            assert (rows[aid]["condition"], rows[aid]["value"]) == (al.condition, al.value), aid

        # the alerts topic, read back from the earliest position: each expected alert exactly once
        reader = client.create_reader(
            f"persistent://{s.pulsar.tenant}/alerts/{alerts_topic}", pulsar.MessageId.earliest
        )
        on_topic: list[str] = []
        while True:
            try:
                msg = reader.read_next(timeout_millis=5000)
            except pulsar.Timeout:
                break
            on_topic.append(decode_alert(msg.data()).alert_id)
        assert len(on_topic) == len(set(on_topic)), f"{len(on_topic) - len(set(on_topic))} alerts twice on the topic"
        assert set(on_topic) == set(expected)
    finally:
        client.close()
        store.remove_rules(sorted(ids))
        store.close()


def _stored(store: AlertStore, ids: set[int]) -> list[str]:
    return [r["alert_id"] for r in store.alerts(rule_ids=sorted(ids), limit=100_000)]
