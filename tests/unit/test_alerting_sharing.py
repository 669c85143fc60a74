"""The engine's sharing and caching: rules with identical indicator parameters on one instrument share one
indicator (only while their indicator states are identical, also after a restore), per-kind nodes keep the
rule-id order of alerts, the cross groups' float pre-filter stays exact at levels floats cannot tell apart, the
exact mid is computed lazily but snapshotted exactly. Every expectation is exact; nothing is timed."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from consumers.alerting.engine import AlertEngine, InstState
from consumers.alerting.messages import Alert
from pulse.models import Quote, Trade

S = 1_000_000_000
T0 = 1_700_000_000 * S


def q(t: float, bid: str, ask: str, symbol: str = "BTC/USD") -> Quote:
    ts = T0 + int(t * S)
    return Quote(venue="kraken", symbol=symbol, ts_event=ts, ts_recv=ts, bid=Decimal(bid), bid_size=Decimal(1),
                 ask=Decimal(ask), ask_size=Decimal(1))  # fmt: skip


def tr(t: float, price: str, size: str) -> Trade:
    ts = T0 + int(t * S)
    return Trade(venue="kraken", symbol="BTC/USD", ts_event=ts, ts_recv=ts, price=Decimal(price), size=Decimal(size),
                 side="buy", trade_id=str(ts))  # fmt: skip


def rule(kind: str, id: int, **fields: Any) -> Any:
    from consumers.alerting.rules import make_rule

    return make_rule(kind, {"id": id, "venue": "kraken", "symbol": "BTC/USD", "cooldown_s": 0, **fields})


def data_of(eng: AlertEngine, rule_id: int) -> Any:
    return next(e.st.data for e in eng._evals if e.rule.id == rule_id)


def walk(n: int, seed: int) -> list[Any]:
    rnd = random.Random(seed)
    p = Decimal(100)
    out: list[Any] = []
    for i in range(n):
        p += Decimal(rnd.randrange(-8, 9)) / 100
        if i % 3 == 2:
            out.append(tr(i * 0.05, str(p), str(rnd.choice([1, 1, 2, 40]))))
        else:
            half = Decimal(rnd.choice([1, 1, 3, 20])) / 100
            out.append(q(i * 0.05, str(p - half), str(p + half)))
    return out


SHARED = [  # pairs with identical indicator parameters (thresholds, hysteresis, direction, cooldown may differ)
    ("pct_change", {"window_s": 2, "pct": 0.2}),
    ("pct_change", {"window_s": 2, "pct": 0.1, "hysteresis": 0.05, "direction": "up"}),
    ("ma_cross", {"fast": 3, "slow": 8}),
    ("ma_cross", {"fast": 3, "slow": 8, "hysteresis": 2, "direction": "down"}),
    ("ma_cross", {"fast": 2, "slow": 5, "ma": "sma", "interval_s": 0.3}),
    ("ma_cross", {"fast": 2, "slow": 5, "ma": "sma", "interval_s": 0.3, "hysteresis": 1}),
    ("volume_spike", {"interval_s": 0.5, "buckets": 4, "z": 1.5}),
    ("volume_spike", {"interval_s": 0.5, "buckets": 4, "z": 1.0, "min_volume": "3", "cooldown_s": 1}),
    ("spread", {"bps": 10}),
    ("spread", {"bps": 30, "hysteresis": 10}),
]


def shared_rules() -> list[Any]:
    return [rule(k, i + 1, **f) for i, (k, f) in enumerate(SHARED)]


def test_identical_parameters_share_one_indicator_and_different_ones_do_not() -> None:
    extra = [
        rule("pct_change", 20, window_s=3, pct=0.2),
        rule("pct_change", 21, window_s=2, pct=0.2, price="bid"),
        rule("ma_cross", 22, fast=3, slow=8, ma="sma"),
        rule("volume_spike", 23, interval_s=0.5, buckets=5),
    ]
    eng = AlertEngine(shared_rules() + extra)
    for a, b in ((1, 2), (3, 4), (5, 6), (7, 8)):
        assert data_of(eng, a) is data_of(eng, b)
    datas = [data_of(eng, i) for i in (1, 3, 5, 7, 20, 21, 22, 23)]
    assert len({id(d) for d in datas}) == 8  # window, price field, average kind, baseline length: separate
    inst = eng._inst[("kraken", "BTC/USD")]
    assert sorted(len(n.members) for n in inst.q_nodes) == [1, 1, 1, 2, 2, 2, 2]  # + both spreads in one node
    assert [len(n.members) for n in inst.t_nodes] == [2, 1]


def test_shared_evaluation_equals_each_rule_alone_in_rule_id_order() -> None:
    events = walk(3000, 7)
    rules = shared_rules()
    together = AlertEngine(list(reversed(rules)))
    alone = [AlertEngine([r]) for r in rules]
    fired: list[Alert] = []
    for ev in events:
        got = together.on_event(ev)
        want: list[Alert] = [a for eng in alone for a in eng.on_event(ev)]  # engines in rule-id order
        assert got == want
        fired += got
    assert {a.rule_id for a in fired} == {r.id for r in rules}  # every rule fired at least once
    assert together.rule_stats() == {r.id: alone[i].rule_stats()[r.id] for i, r in enumerate(rules)}


def test_restore_shares_only_identical_states() -> None:
    events = walk(1200, 3)
    a = rule("pct_change", 1, window_s=2, pct=0.2)
    b = rule("pct_change", 2, window_s=2, pct=0.1)
    first = AlertEngine([a])
    for ev in events[:600]:
        first.on_event(ev)
    blobs = first.snapshot()

    # b is new: it starts fresh and must not inherit a's window
    second = AlertEngine([a, b])
    assert second.restore(blobs) == 1
    assert data_of(second, 1) is not data_of(second, 2)
    fresh_b = AlertEngine([b])
    cont_a = AlertEngine([a])
    cont_a.restore(blobs)
    for ev in events[600:]:
        got = second.on_event(ev)
        assert got == sorted(cont_a.on_event(ev) + fresh_b.on_event(ev), key=lambda x: x.rule_id)

    # restored states that differ (a's window kept a longer prefix than b's): still separate, and continuing
    # from the snapshot equals continuing the engine that wrote it
    blobs2 = second.snapshot()
    third = AlertEngine([a, b])
    assert third.restore(blobs2) == 2
    assert data_of(third, 1) is not data_of(third, 2)
    assert third.snapshot() == blobs2
    more = walk(1500, 4)[1200:]
    assert [x for ev in more for x in third.on_event(ev)] == [x for ev in more for x in second.on_event(ev)]

    # rules that shared from the start have identical states: restored, they share again
    together = AlertEngine([a, b])
    for ev in events[:600]:
        together.on_event(ev)
    again = AlertEngine([a, b])
    assert again.restore(together.snapshot()) == 2
    assert data_of(again, 1) is data_of(again, 2)
    assert [x for ev in events[600:] for x in again.on_event(ev)] == [
        x for ev in events[600:] for x in together.on_event(ev)
    ]


def test_cross_prefilter_is_exact_where_floats_cannot_tell_prices_apart() -> None:
    # 1 + 1e-17 and 1 + 2e-17 are both 1.0 as floats; the exact comparison decides
    eng = AlertEngine([rule("price_cross", 1, above="1.00000000000000001", price="bid"),
                       rule("price_cross", 2, below="1.00000000000000001", price="ask")])  # fmt: skip
    ticks = [q(0, "1", "1"), q(1, "1.00000000000000001", "1.00000000000000001"),
             q(2, "1.00000000000000002", "1.00000000000000002"), q(3, "1", "1"),
             q(4, "1.00000000000000002", "1.00000000000000002")]  # fmt: skip
    got = [(a.rule_id, a.ts_event, a.value) for ev in ticks for a in eng.on_event(ev)]
    assert got == [
        (1, T0 + 2 * S, "1.00000000000000002"),
        (2, T0 + 3 * S, "1"),
        (1, T0 + 4 * S, "1.00000000000000002"),
    ]


def test_lazy_mid_is_exact_in_alerts_and_snapshots() -> None:
    eng = AlertEngine([rule("price_cross", 1, above="100.005")])  # on mid
    assert eng.on_event(q(0, "100.00", "100.01")) == []  # mid 100.005: not above
    [alert] = eng.on_event(q(1, "100.00", "100.011"))  # mid 100.0055
    assert alert.value == "100.0055" and alert.message == "kraken BTC/USD: price 100.0055 crossed above 100.005"
    blob = eng.snapshot()[("kraken", "BTC/USD")]
    from consumers.alerting.engine import _snap_dec

    inst: InstState = _snap_dec.decode(blob).inst
    assert inst.mid == Decimal("100.0055") and inst.bid == Decimal("100.00") and inst.midf == (100.0 + 100.011) * 0.5
