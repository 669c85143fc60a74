"""Every decoder refuses bad input only with its own error class (bench/fuzz.py's targets, in CI).

Three layers: the inputs that once crashed a decoder (tests/fixtures/fuzz/, replayed for ever, each within a
time limit since one was a hang), a short seeded slice of the mutation fuzzer (the same inputs every run), and
hypothesis generating structured JSON documents and raw bytes (derandomized: seeded, reproducible).
``python -m bench.fuzz`` runs a million inputs per target.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import CRASHES, TARGETS, Target, check, fuzz, regression_inputs

FAST = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    return TARGETS[request.param]()


def test_every_target_has_seeds_the_decoder_accepts(target: Target) -> None:
    # a fuzzer whose seeds are all refused only ever explores the refusal path
    accepted = [s for s in target.seeds if check(target, s) is None and _accepts(target, s)]
    assert accepted, f"{target.name}: no seed decodes"


def _accepts(target: Target, data: bytes) -> bool:
    try:
        target.run(data)
    except target.allowed:
        return False
    return True


def test_regression_inputs_are_refused_cleanly(target: Target) -> None:
    for path in regression_inputs(target.name):
        t0 = time.monotonic()
        crash = check(target, path.read_bytes())
        took = time.monotonic() - t0
        assert crash is None, f"{path.relative_to(CRASHES)}: {crash.error}"
        assert took < 5.0, f"{path.relative_to(CRASHES)}: {took:.1f}s (it once hung)"


def test_the_regression_inputs_exist() -> None:
    # the crashes found so far (see tests/fixtures/fuzz/README.md); each target's directory is replayed above
    assert len(regression_inputs("dukas_json")) >= 3 and len(regression_inputs("console")) >= 3


def test_a_seeded_slice_of_the_fuzzer_finds_no_crash(target: Target) -> None:
    n = 300 if target.name == "settings" else 2500  # settings load from a file: ~4 ms each
    res = fuzz(target, n, seed=20261205)
    assert res.inputs == n and res.refused > 0  # the mutations reach the refusals...
    assert not res.crashes, "\n".join(f"{c.error}: {c.data[:200]!r}" for c in res.crashes)


def test_the_fuzzer_reports_a_crash() -> None:
    # the harness itself: a decoder that lets a foreign exception out is caught and reported, with the input
    def leaky(data: bytes) -> object:
        if b"{" in data:
            raise KeyError("leaked")
        raise ValueError("refused")

    t = Target("leaky", [b'{"a":1}', b"[1,2]"], leaky, (ValueError,))
    res = fuzz(t, 200, seed=1)
    assert res.crashes and res.crashes[0].error.startswith("KeyError") and b"{" in res.crashes[0].data


# -- hypothesis: structured documents the mutations rarely build ---------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)


def _doc(keys: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Objects with the decoder's own keys, each given any JSON value (or a plausible one), as bytes."""
    fields = {k: st.one_of(_json, st.just(v)) for k, v in keys.items()}
    return st.fixed_dictionaries({}, optional=fields).map(lambda d: json.dumps(d).encode())


_SHAPES: dict[str, st.SearchStrategy[bytes]] = {
    "kraken": _doc({"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "buy",
                    "price": 1.5, "qty": 0.1, "ord_type": "limit", "trade_id": 1, "timestamp":
                    "2026-01-01T00:00:00.000000Z"}], "method": "subscribe", "success": True, "result": {}}),
    "binance": _doc({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "1.0",
                     "q": "1.0", "T": 1, "m": True}, "id": 1, "result": None}),
    "oanda": _doc({"type": "PRICE", "instrument": "EUR_USD", "time": "2026-01-01T00:00:00.000000000Z",
                   "bids": [{"price": "1.1", "liquidity": 1}], "asks": [{"price": "1.2", "liquidity": 1}],
                   "tradeable": True, "closeoutBid": "1.1", "closeoutAsk": "1.2"}),
    "dukas_json": _doc({"timestamp": 1674216000000, "multiplier": 0.001, "ask": 1.0, "bid": 1.0, "times": [0],
                        "asks": [0], "bids": [0], "askVolumes": [1], "bidVolumes": [1], "open": 1.0, "high": 1.0,
                        "low": 1.0, "close": 1.0, "shift": 60000, "opens": [0], "highs": [0], "lows": [0],
                        "closes": [0], "volumes": [1]}),
    "console": _doc({"op": "subscribe", "venue": "kraken", "symbol": "BTC/USD", "channels": ["trade"],
                     "req_id": 1}),
    "settings": st.dictionaries(st.sampled_from(["runtime", "pulsar", "database", "kraken", "sink", "web", "x"]),
                                st.dictionaries(st.text(min_size=1, max_size=12), _scalars, max_size=3),
                                max_size=3).map(lambda d: "\n".join(
                                    f"[{s}]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in kv.items()
                                                         if v is not None) for s, kv in d.items()).encode()),
    "bi5": st.binary(max_size=400),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_structured_inputs_never_escape_the_error_class(name: str) -> None:
    t = TARGETS[name]()

    @FAST
    @given(data=_SHAPES[name] | st.binary(max_size=300))
    def run(data: bytes) -> None:
        crash = check(t, data)
        assert crash is None, f"{crash.error}: {data[:200]!r}"

    run()
