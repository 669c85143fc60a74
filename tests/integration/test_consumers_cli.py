"""The consumers through the `pulse` CLI, as a user runs them: the registry feeds the matching service its
instruments, `pulse orders` trades against a live quote. Real processes, broker and database; stopped by pid."""

from __future__ import annotations

import json
import time

import pytest

from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow


def matching_env(s: Settings, tag: str, **extra: str) -> dict[str, str]:
    """Topics, subscription and state of the test's own matching service."""
    return {
        "PULSE_MATCHING__ORDERS_TOPIC": f"orders.{tag}",
        "PULSE_MATCHING__FILLS_TOPIC": f"fills.{tag}",
        "PULSE_MATCHING__SUBSCRIPTION": f"m-{tag}",
        "PULSE_MATCHING__STATE_DIR": str(s.home / f"state-{tag}"),
        **extra,
    }


def publish_quote(s: Settings, endpoints: Endpoints, tag: str, symbol: str, **sides: float) -> None:
    """One kraken Quote (bid, bid_size, ask, ask_size) on its live topic, flushed."""
    bus = Bus(s, endpoints.pulsar_url)
    try:
        pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{tag}")
        now = time.time_ns()
        pub.publish(Quote(venue="kraken", symbol=symbol, ts_event=now, ts_recv=now, **sides))  # type: ignore[arg-type]
        pub.flush()
    finally:
        bus.close()


def test_registry_instrument_is_tradeable_through_pulse_orders(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s = runtime_settings
    sym = f"KM{unique[:6].upper()}/USD"
    env = matching_env(s, f"t{unique}")
    added = pulse(s, "symbols", "add", "kraken", sym, "--channels", "ticker", "--price-precision", "1")
    assert added.returncode == 0, added.stderr
    name = f"matching-{unique}"
    svc = pulse_cmd(s, "consumers", "matching", "run", "--name", name, env=env)
    with process(svc):
        doc = wait_for(lambda: read_status(s.home, name), "the matching service's status file")
        assert f"kraken:{sym}" in doc["instruments"]  # taken from the registry
        time.sleep(1.0)  # its market-data subscription starts at the latest message
        publish_quote(s, endpoints, unique, sym, bid=99.9, bid_size=5, ask=100.0, ask_size=1.5)
        wait_for(lambda: (read_status(s.home, name) or {}).get("last_tick", {}), "the quote to reach the service")

        # the touch shows 1.5 at 100.0: a limit buy of 2 @ 100.0 fills 1.5 and rests 0.5, never above its limit
        res = pulse(s, "orders", "submit", f"kraken:{sym}", "buy", "2", "--price", "100.0", "--json", env=env)
        assert res.returncode == 0, res.stderr
        execs = json.loads(res.stdout)["executions"]
        fills = [e for e in execs if e["kind"] == "fill"]
        assert [(f["quantity"], f["price"]) for f in fills] == [("1.5", "100.0")]
        assert fills[0]["remaining"] == "0.5"

        # off the instrument's precision (1 decimal): rejected with a reason, exit code 2
        res = pulse(s, "orders", "submit", f"kraken:{sym}", "buy", "1", "--price", "100.05", env=env)
        assert res.returncode == 2 and "price" in res.stderr.lower()

        listed = json.loads(pulse(s, "orders", "list", "--json", env=env).stdout)
        pos = [p for p in listed["positions"] if p["symbol"] == sym]
        assert len(pos) == 1 and pos[0]["quantity"] == "1.5" and pos[0]["avg_price"] == "100.0"
        assert [o["remaining"] for o in listed["orders"] if o["symbol"] == sym] == ["0.5"]
        code, _, err = stop(svc)
        assert code == 0, err


def test_an_instrument_added_to_the_registry_while_matching_runs_is_tradeable_without_a_restart(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s = runtime_settings
    first, later = f"KA{unique[:6].upper()}/USD", f"KB{unique[:6].upper()}/USD"
    env = matching_env(s, f"r{unique}", PULSE_MATCHING__INSTRUMENTS_POLL_S="0.3")
    added = pulse(s, "symbols", "add", "kraken", first, "--channels", "ticker", "--price-precision", "1")
    assert added.returncode == 0, added.stderr
    name = f"matching-r{unique}"
    svc = pulse_cmd(s, "consumers", "matching", "run", "--name", name, "--json", env=env)

    def serving(symbol: str) -> bool:
        doc = read_status(s.home, name) or {}
        return doc.get("pid") == svc.pid and doc.get("state") == "running" and f"kraken:{symbol}" in doc["instruments"]

    with process(svc):
        wait_for(lambda: serving(first), "the matching service to run")
        # an order resting on the first instrument must survive the reload
        res = pulse(s, "orders", "submit", f"kraken:{first}", "buy", "1", "--price", "90.0", "--json", env=env)
        assert res.returncode == 0, res.stderr

        added = pulse(s, "symbols", "add", "kraken", later, "--channels", "ticker", "--price-precision", "1")
        assert added.returncode == 0, added.stderr
        wait_for(lambda: serving(later), "the new instrument to be loaded")
        time.sleep(1.0)  # its market-data subscription starts at the latest message
        publish_quote(s, endpoints, f"r{unique}", later, bid=49.9, bid_size=5, ask=50.0, ask_size=3)
        wait_for(lambda: f"kraken:{later}" in (read_status(s.home, name) or {}).get("last_tick", {}), "the quote")
        res = pulse(s, "orders", "submit", f"kraken:{later}", "buy", "2", "--price", "50.0", "--json", env=env)
        assert res.returncode == 0, res.stderr
        fills = [e for e in json.loads(res.stdout)["executions"] if e["kind"] == "fill"]
        assert [(f["quantity"], f["price"]) for f in fills] == [("2", "50.0")]

        listed = json.loads(pulse(s, "orders", "list", "--json", env=env).stdout)
        assert [(o["symbol"], o["remaining"]) for o in listed["orders"] if o["symbol"] in (first, later)] == [
            (first, "1")
        ]
        assert svc.poll() is None, "the registry changed without restarting the process"
        code, out, err = stop(svc)
        assert code == 0, err
        assert "instruments changed; reloading" in err
        assert json.loads(out)["orders"] == 2  # counted across the reload
    for sym in (first, later):
        assert pulse(s, "symbols", "remove", "kraken", sym).returncode == 0
