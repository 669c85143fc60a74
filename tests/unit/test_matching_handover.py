"""The matching service's key handover (consumers/matching/handover.py): a symbol's part moved between engines
gives the executions the original engine would have given; a dead owner's journal is replayed read-only into
that part with its unconfirmed executions; owner locks and release requests between two instances."""

from __future__ import annotations

import random
from decimal import Decimal as D
from pathlib import Path

import msgspec

from consumers.matching.engine import InstrumentSpec, MatchingEngine
from consumers.matching.handover import Owners, empty_part, keys_with_state, part_of, replay_dead_owner, with_part
from consumers.matching.journal import StateStore
from consumers.matching.messages import NewOrder, decode_command, encode
from pulse.models import Quote

SPECS = [InstrumentSpec("kraken", s, D("0.1"), D("0.001")) for s in ("AAA/USD", "BBB/USD")]
ORDERS = "persistent://pulse/trading/orders"


def _inputs(seed: int, n: int, t0: int = 1_000) -> list[tuple[str, str, bytes]]:
    """(topic, key, payload): random limit/market orders of several accounts and quotes on both symbols."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        sym = rnd.choice(["AAA/USD", "BBB/USD"])
        ts = t0 + i
        if rnd.random() < 0.2:
            bid = D(rnd.randint(990, 1000)) / 10
            q = Quote(venue="kraken", symbol=sym, ts_event=ts, ts_recv=ts, bid=bid, bid_size=D("0.5"),
                      ask=bid + D("0.3"), ask_size=D("0.5"))  # fmt: skip
            out.append((f"persistent://pulse/crypto/kraken.{sym}.quote", sym, msgspec.json.encode(q)))
            continue
        market = rnd.random() < 0.1
        o = NewOrder(request_id=f"r{seed}-{i}", venue="kraken", symbol=sym, ts=ts, account=rnd.choice("xyz"),
                     side=rnd.choice(["buy", "sell"]), order_type="market" if market else "limit",  # type: ignore[arg-type]
                     quantity=D(rnd.randint(1, 20)) / 10, tif="IOC" if market else "GTC",  # type: ignore[arg-type]
                     price=None if market else D(rnd.randint(990, 1010)) / 10)  # fmt: skip
        out.append((ORDERS, sym, encode(o)))
    return out


def _apply(engine: MatchingEngine, t: str, payload: bytes) -> list:
    if t == ORDERS:
        return engine.on_order(decode_command(payload))
    return engine.on_market(msgspec.json.decode(payload, type=Quote))


def test_a_symbol_moved_to_another_engine_matches_as_it_would_have_stayed() -> None:
    first, then = _inputs(1, 400), _inputs(2, 400, t0=10_000)
    for side in ("buy", "sell"):  # first after the move: orders that take the venue's touch the part carries
        o = NewOrder(request_id=f"touch-{side}", venue="kraken", symbol="AAA/USD", ts=9_000, side=side,  # type: ignore[arg-type]
                     order_type="limit", quantity=D("0.001"), price=D(90 if side == "sell" else 110))  # fmt: skip
        then.insert(0, (ORDERS, "AAA/USD", encode(o)))
    ref = MatchingEngine(SPECS)
    for t, _k, p in first:
        _apply(ref, t, p)
    a = MatchingEngine(SPECS)
    for t, _k, p in first:
        _apply(a, t, p)
    assert {"AAA/USD", "BBB/USD"} <= keys_with_state(a)
    hwm_a = {f"{ORDERS}|AAA/USD": (0, 1, 2, -1), f"{ORDERS}|BBB/USD": (0, 1, 5, -1)}
    seq_a = {"AAA/USD": 7, "BBB/USD": 9}
    part = part_of(a, hwm_a, "AAA/USD", seq_a)
    a = with_part(a, hwm_a, empty_part("AAA/USD"), SPECS, seq_a)  # the old owner lets it go
    assert "AAA/USD" not in keys_with_state(a) and "BBB/USD" in keys_with_state(a)
    assert hwm_a == {f"{ORDERS}|BBB/USD": (0, 1, 5, -1)} and seq_a == {"BBB/USD": 9}
    b = MatchingEngine(SPECS)
    hwm_b: dict = {}
    seq_b: dict = {}
    b = with_part(b, hwm_b, part, SPECS, seq_b)
    assert hwm_b == {f"{ORDERS}|AAA/USD": (0, 1, 2, -1)} and seq_b == {"AAA/USD": 7}
    # from now on AAA goes to b, BBB stays with a: the same executions as one engine, per symbol
    moved = [(t, k, p) for t, k, p in then if k == "AAA/USD"]
    stayed = [(t, k, p) for t, k, p in then if k == "BBB/USD"]
    want = {"AAA/USD": [], "BBB/USD": []}  # type: ignore[var-annotated]
    for t, k, p in then:
        want[k] += _apply(ref, t, p)
    got_b = [o for t, _k, p in moved[:200] for o in _apply(b, t, p)]
    b = MatchingEngine.restore(b.snapshot(), SPECS)  # a restart of the new owner: time priority from seq
    got_b += [o for t, _k, p in moved[200:] for o in _apply(b, t, p)]
    got_a = [o for t, _k, p in stayed for o in _apply(a, t, p)]
    # execution times are the engine's clock (the largest input time it saw), which a split engine keeps per
    # instance: compare everything else
    strip = lambda outs: [msgspec.structs.replace(o, ts=0) for o in outs]  # noqa: E731
    assert strip(got_b) == strip(want["AAA/USD"]) and any(getattr(o, "kind", "") == "fill" for o in got_b)
    assert strip(got_a) == strip(want["BBB/USD"])
    assert {k: v.state() for k, v in b.positions.items()} == {
        k: v.state() for k, v in ref.positions.items() if k[2] == "AAA/USD"
    }


def test_a_dead_owners_journal_is_replayed_read_only_into_the_symbols_part(tmp_path: Path) -> None:
    inputs = _inputs(3, 300)
    d = tmp_path / "m-dead"
    store = StateStore(d)
    store.load()
    live = MatchingEngine(SPECS)
    hwm: dict = {}
    n_out = 0
    seq: dict = {}
    aaa_outs = []
    for i, (t, k, p) in enumerate(inputs[:150]):
        store.append(["in", t, k, [0, 1, i, -1], p])
        hwm[f"{t}|{k}"] = (0, 1, i, -1)
        for o in _apply(live, t, p):
            n_out += 1
            seq[o.symbol] = seq.get(o.symbol, 0) + 1
    store.append(["pub", n_out])  # everything so far confirmed by the broker
    store.checkpoint({"engine": live.snapshot(), "hwm": sorted([k, list(v)] for k, v in hwm.items()),
                      "out_seq": n_out, "published": n_out, "key_seq": sorted(seq.items())})  # fmt: skip
    for i, (t, k, p) in enumerate(inputs[150:], start=150):
        store.append(["in", t, k, [0, 1, i, -1], p])
        hwm[f"{t}|{k}"] = (0, 1, i, -1)
        for o in _apply(live, t, p):
            seq[o.symbol] = seq.get(o.symbol, 0) + 1
            if o.symbol == "AAA/USD":
                aaa_outs.append((o, seq["AAA/USD"]))
    store.close()  # "killed": nothing after the checkpoint was confirmed
    files = {f.name: f.read_bytes() for f in d.iterdir()}
    part, late = replay_dead_owner(d, SPECS, _apply, "AAA/USD")
    assert {f.name: f.read_bytes() for f in d.iterdir()} == files  # nothing written
    assert part == part_of(live, hwm, "AAA/USD", seq)  # the symbol's output count too (its sequence ids)
    assert late == aaa_outs and late  # each with the sequence id it had


def test_owner_locks_requests_and_release(tmp_path: Path) -> None:
    a, b = Owners(tmp_path, "grp", "m-a"), Owners(tmp_path, "grp", "m-b")
    assert a.try_lock("AAA/USD")
    a.record("AAA/USD")
    assert not b.try_lock("AAA/USD")  # a holds it
    assert b.owner_of("AAA/USD") == {"owner": "m-a", "part": None}
    b.ask("AAA/USD")
    assert a.asked() == ["AAA/USD"] and a.asked() == []  # consumed
    a.release("AAA/USD", b"state")
    assert b.try_lock("AAA/USD")
    doc = b.owner_of("AAA/USD")
    assert doc is not None and doc["owner"] == "m-a" and b.read_part(doc) == b"state"
    b.record("AAA/USD")
    assert a.owner_of("AAA/USD") == {"owner": "m-b", "part": None}
    b.unlock_all()  # a stop (or a death: the kernel drops the lock) lets the next one take it
    assert a.try_lock("AAA/USD")
    # symbols with characters a file name cannot hold travel intact
    assert a.try_lock("../x y/Z") and (tmp_path / ".owners" / "grp").is_dir()
