"""Alert rules and paper orders changed over HTTP (`pulse web`), against a real broker, database and matching
service; every answer validated against the served OpenAPI document. What the HTTP API stores is what the CLI
sees, and every refusal names its field and changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from tests.procs import process, pulse, pulse_cmd, stop, wait_for
from tests.web_gateway import Checked, gateway

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tag() -> str:
    return f"w{int(time.time() * 1000) % 10**9}"


@pytest.fixture(scope="module")
def env(runtime_settings: Settings, tag: str) -> dict[str, str]:
    """The module's own orders/fills topics and matching state, shared by the gateway and the service."""
    return {
        "PULSE_MATCHING__ORDERS_TOPIC": f"orders.{tag}",
        "PULSE_MATCHING__FILLS_TOPIC": f"fills.{tag}",
        "PULSE_MATCHING__SUBSCRIPTION": f"m-{tag}",
        "PULSE_MATCHING__STATE_DIR": str(runtime_settings.home / f"state-{tag}"),
        "PULSE_MATCHING__INSTRUMENTS_POLL_S": "0.3",
    }


@pytest.fixture(scope="module")
def api(runtime_settings: Settings, env: dict[str, str]) -> Iterator[Checked]:
    with gateway(runtime_settings, extra_env=env) as gw:
        yield Checked(gw)


def cli_rules(s: Settings) -> list[dict[str, Any]]:
    res = pulse(s, "alerts", "list", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_alert_rules_are_added_listed_and_removed_as_the_cli_sees_them(api: Checked, runtime_settings: Settings,
                                                                      unique: str) -> None:  # fmt: skip
    tok = api.gw.token
    body = {"kind": "price-cross", "symbol": "kraken:XBT/USD", "above": "50000.5", "cooldown_s": 30,
            "hysteresis": 100, "name": f"web-{unique}"}  # fmt: skip
    status, doc = api("POST", "/api/alerts", body, token=tok)
    assert status == 201, doc
    rule = doc["rule"]
    assert (rule["kind"], rule["venue"], rule["symbol"], rule["above"]) == (
        "price_cross",
        "kraken",
        "BTC/USD",
        "50000.5",
    )
    assert (rule["cooldown_s"], rule["hysteresis"], rule["enabled"]) == (30.0, 100.0, True)
    # the CLI reads the same rule from the store
    assert rule in cli_rules(runtime_settings)
    status, doc = api("GET", "/api/alerts/rules")
    assert status == 200 and rule in doc["rules"]
    # one rule of another kind, with the venue given apart
    status, doc = api("POST", "/api/alerts", {"kind": "spread", "venue": "oanda", "symbol": "EUR_USD", "bps": 15,
                                              "name": f"web-{unique}"}, token=tok)  # fmt: skip
    assert status == 201 and (doc["rule"]["venue"], doc["rule"]["symbol"]) == ("oanda", "EUR/USD")
    spread_id = doc["rule"]["id"]

    status, doc = api("DELETE", f"/api/alerts/{rule['id']}", token=tok)
    assert status == 200 and doc == {"removed": [rule["id"]]}
    ids = {r["id"] for r in cli_rules(runtime_settings)}
    assert rule["id"] not in ids and spread_id in ids
    status, doc = api("DELETE", f"/api/alerts/{rule['id']}", token=tok)
    assert status == 404 and doc["field"] == "id" and f"no rule with id {rule['id']}" in doc["error"]
    status, doc = api("DELETE", "/api/alerts/abc", token=tok)
    assert status == 400 and doc["field"] == "id"
    assert api("DELETE", f"/api/alerts/{spread_id}", token=tok)[0] == 200


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"symbol": "kraken:BTC/USD", "above": "1"}, "kind", "kind is required"),
        ({"kind": "price-jump", "symbol": "kraken:BTC/USD"}, "kind", "unknown rule kind 'price-jump'"),
        ({"kind": "price-cross", "above": "1"}, "symbol", "symbol is required"),
        ({"kind": "price-cross", "symbol": "nasdaq:AAPL", "above": "1"}, "symbol", "nasdaq"),
        ({"kind": "price-cross", "symbol": "kraken:BTC/XXX", "above": "1"}, "symbol", "XXX"),
        ({"kind": "price-cross", "symbol": "kraken:BTC/USD"}, "above", "exactly one of above / below"),
        ({"kind": "price-cross", "symbol": "kraken:BTC/USD", "above": "abc"}, "above", "at `above`"),
        ({"kind": "price-cross", "symbol": "kraken:BTC/USD", "above": "-5"}, "above", "must be a price > 0"),
        ({"kind": "price-cross", "symbol": "kraken:BTC/USD", "above": 1, "colour": "red"}, "colour", "colour"),
        (
            {"kind": "price-cross", "symbol": "kraken:BTC/USD", "above": 1, "cooldown_s": "soon"},
            "cooldown_s",
            "cooldown_s",
        ),
        ({"kind": "pct-change", "symbol": "kraken:BTC/USD", "pct": 2}, "window_s", "window_s"),
        ({"kind": "ma-cross", "symbol": "kraken:BTC/USD", "fast": 26, "slow": 12}, "fast", "shorter than slow"),
        (
            {"kind": "divergence", "symbol": "kraken:EUR/USD", "other_venue": "kraken", "bps": 5},
            "other_venue",
            "must differ",
        ),
        ({"kind": "price-cross", "symbol": "kraken:BTC/USD", "above": 1, "id": 7}, "id", "assigned by the store"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field_and_nothing_is_stored(
    api: Checked, runtime_settings: Settings, body: dict[str, Any], field: str, words: str
) -> None:
    before = api("GET", "/api/alerts/rules")[1]
    status, doc = api("POST", "/api/alerts", body, token=api.gw.token)
    assert status == 400, doc
    assert doc["field"] == field and words in doc["error"], doc
    assert api("GET", "/api/alerts/rules")[1] == before


def test_changes_need_the_token_and_json(api: Checked, runtime_settings: Settings) -> None:
    before = cli_rules(runtime_settings)
    body = {"kind": "spread", "symbol": "kraken:BTC/USD", "bps": 10}
    status, doc = api("POST", "/api/alerts", body)
    assert status == 401 and "bearer token" in doc["error"]
    status, doc = api("POST", "/api/alerts", body, token="wrong-token-0123456789")
    assert status == 401
    status, doc = api("POST", "/api/orders", {"symbol": "kraken:BTC/USD", "side": "buy", "quantity": "1"})
    assert status == 401
    status, doc = api("DELETE", "/api/orders/o-1")
    assert status == 401
    status, doc = api.gw.request("POST", "/api/alerts", raw=b"kind=spread", token=api.gw.token,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 415
    status, doc = api("POST", "/api/alerts", body, token=api.gw.token,
                      headers={"Origin": "https://evil.example"})  # fmt: skip
    assert status == 403 and "origin" in doc["error"]
    assert cli_rules(runtime_settings) == before


def publish_quote(s: Settings, endpoints: Endpoints, symbol: str, **sides: float) -> None:
    bus = Bus(s, endpoints.pulsar_url)
    try:
        pub = EventPublisher(bus, "crypto", producer_prefix=f"test-web-{symbol[:6]}")
        now = time.time_ns()
        pub.publish(Quote(venue="kraken", symbol=symbol, ts_event=now, ts_recv=now, **sides))  # type: ignore[arg-type]
        pub.flush()
    finally:
        bus.close()


def test_paper_orders_are_placed_replaced_and_cancelled_over_http(
    api: Checked, runtime_settings: Settings, endpoints: Endpoints, env: dict[str, str], unique: str
) -> None:
    s, tok = runtime_settings, api.gw.token
    sym = f"WO{unique[:6].upper()}/USD"
    status, doc = api("POST", "/api/instruments", {"venue": "kraken", "symbols": [sym], "channels": ["ticker"],
                                                   "price_precision": 1}, token=tok)  # fmt: skip
    assert status == 201, doc
    # refused before anything is sent, naming the field (the engine's own rules, the registry's increments)
    for body, field, words in [
        ({"symbol": f"kraken:{sym}", "side": "buy", "quantity": "1", "price": "100.05"}, "price", "increment 0.1"),
        ({"symbol": f"kraken:{sym}", "side": "buy", "quantity": "0"}, "quantity", "must be positive"),
        ({"symbol": f"kraken:{sym}", "side": "buy", "quantity": "1e40"}, "quantity", "out of range"),
        ({"symbol": f"kraken:{sym}", "side": "hold", "quantity": "1"}, "side", "side"),
        (
            {"symbol": f"kraken:{sym}", "side": "buy", "quantity": "1", "order_type": "market", "tif": "GTC"},
            "tif",
            "IOC or FOK",
        ),
        ({"symbol": f"kraken:{sym}", "side": "buy", "quantity": "1", "order_type": "limit"}, "price", "needs a price"),
        ({"symbol": "kraken:NOTHERE/USD", "side": "buy", "quantity": "1"}, "symbol", "not in the instrument registry"),
        ({"symbol": f"kraken:{sym}", "side": "buy", "quantity": "1", "order_id": "a b"}, "order_id", "order_id"),
    ]:
        status, doc = api("POST", "/api/orders", body, token=tok)
        assert status == 400 and doc["field"] == field and words in doc["error"], (body, doc)
    assert api.gw.stats()["orders_sent"] == 0

    name = f"matching-{unique}"
    svc = pulse_cmd(s, "consumers", "matching", "run", "--name", name, env=env)
    with process(svc):
        wait_for(lambda: f"kraken:{sym}" in (read_status(s.home, name) or {}).get("instruments", []),
                 "the matching service to load the instrument", timeout=90)  # fmt: skip
        time.sleep(1.0)  # its market-data subscription starts at the latest message
        publish_quote(s, endpoints, sym, bid=99.9, bid_size=5, ask=100.0, ask_size=1.5)
        wait_for(lambda: (read_status(s.home, name) or {}).get("last_tick", {}), "the quote to reach the service")

        # the touch shows 1.5 at 100.0: a limit buy of 2 @ 100.0 fills 1.5 and rests 0.5
        status, doc = api("POST", "/api/orders?wait=20", {"symbol": f"kraken:{sym}", "side": "buy", "quantity": "2",
                                                          "price": "100.0"}, token=tok)  # fmt: skip
        assert status == 201 and doc["answered"] is True, doc
        fills = [e for e in doc["executions"] if e["kind"] == "fill"]
        assert [(f["quantity"], f["price"], f["remaining"]) for f in fills] == [("1.5", "100.0", "0.5")]
        first = doc["order_id"]

        # a resting order, replaced then cancelled; the CLI lists what the HTTP API did
        status, doc = api("POST", "/api/orders?wait=20", {"symbol": sym, "venue": "kraken", "side": "buy",
                                                          "quantity": "1", "price": "90.0", "order_id": f"r-{unique}"},
                          token=tok)  # fmt: skip
        assert status == 201 and doc["order_id"] == f"r-{unique}", doc
        assert [(e["kind"], e["status"]) for e in doc["executions"]] == [("accepted", "new")]
        wait_for(lambda: any(o["order_id"] == f"r-{unique}" for o in api("GET", "/api/orders")[1]["orders"]),
                 "the gateway to know the order")  # fmt: skip
        status, doc = api("PATCH", f"/api/orders/r-{unique}?wait=20", {"price": "91.0"}, token=tok)
        assert status == 200 and [e["kind"] for e in doc["executions"]] == ["replaced"], doc
        assert doc["executions"][0]["limit_price"] == "91.0"
        status, doc = api("PATCH", f"/api/orders/r-{unique}", {}, token=tok)
        assert status == 400 and doc["field"] == "quantity"
        status, doc = api("DELETE", f"/api/orders/r-{unique}?wait=20", token=tok)
        assert status == 200 and [(e["kind"], e["status"]) for e in doc["executions"]] == [("cancelled", "cancelled")]
        listed = json.loads(pulse(s, "orders", "list", "--all", "--json", env=env).stdout)
        mine = {o["order_id"]: o for o in listed["orders"] if o["symbol"] == sym}
        assert mine[f"r-{unique}"]["status"] == "cancelled" and mine[first]["remaining"] == "0.5"
        pos = [p for p in listed["positions"] if p["symbol"] == sym]
        assert len(pos) == 1 and pos[0]["quantity"] == "1.5"

        # a cancelled order cannot change again; an unknown one is 404
        def cancelled() -> bool:
            return any(o["order_id"] == f"r-{unique}" and o["status"] == "cancelled"
                       for o in api("GET", "/api/orders")[1]["orders"])  # fmt: skip

        wait_for(cancelled, "the cancel on the fills topic")
        status, doc = api("DELETE", f"/api/orders/r-{unique}", token=tok)
        assert status == 409 and "cancelled" in doc["error"]
        status, doc = api("DELETE", f"/api/orders/nothing-{unique}", token=tok)
        assert status == 404 and doc["field"] == "order_id"
        code, _, err = stop(svc)
        assert code == 0, err

    # the service is gone: the order is sent, and the gateway says it got no answer in time
    status, doc = api("POST", "/api/orders?wait=0.5", {"symbol": f"kraken:{sym}", "side": "sell", "quantity": "1",
                                                       "price": "200.0"}, token=tok)  # fmt: skip
    assert status == 202 and doc["answered"] is False and doc["executions"] == []
    assert api.gw.stats()["orders_sent"] == 5
