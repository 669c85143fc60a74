"""The matching service as it runs: its own process (``pulse consumers matching run``) on the real pulsar-lite
broker; orders through the CLI functions, quotes through the
ingesters' publisher; executions read back from the fills topic. Processes are stopped by pid."""

from __future__ import annotations

import signal
import subprocess
import time
from decimal import Decimal as D
from typing import Any

import pytest

from consumers.matching.commands import read_outputs, send_command, summarise
from consumers.matching.messages import Execution, NewOrder, Position
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from tests.procs import process, pulse_cmd, wait_for

pytestmark = pytest.mark.slow
VENUE = "kraken"


def matching_env(unique: str) -> dict[str, str]:
    return {
        "PULSE_MATCHING__SUBSCRIPTION": f"match-{unique}",
        "PULSE_MATCHING__ORDERS_TOPIC": f"orders.t{unique}",
        "PULSE_MATCHING__FILLS_TOPIC": f"fills.t{unique}",
        "PULSE_MATCHING__SNAPSHOT_INTERVAL_S": "0.5",
    }


def settings_for(base: Settings, unique: str) -> Settings:
    return base.with_overrides(
        matching={
            "subscription": f"match-{unique}",
            "orders_topic": f"orders.t{unique}",
            "fills_topic": f"fills.t{unique}",
        }
    )


def start_service(settings: Settings, unique: str, symbol: str) -> subprocess.Popen[str]:
    return pulse_cmd(
        settings, "consumers", "matching", "run", "--instrument", f"{VENUE}:{symbol}:0.1:0.001", "--name",
        f"m-{unique}", "--json", env=matching_env(unique),
    )  # fmt: skip


def wait_running(settings: Settings, unique: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        if proc.poll() is not None:
            pytest.fail(f"service exited {proc.returncode}: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        st = read_status(settings.home, f"m-{unique}")
        return st if st and st.get("state") == "running" and st["pid"] == proc.pid else None

    return wait_for(ready, "the matching service to run")


def quote(symbol: str, ts: int, ask: str, ask_size: str, bid: str = "99.0", bid_size: str = "1") -> Quote:
    return Quote(venue=VENUE, symbol=symbol, ts_event=ts, ts_recv=ts, bid=D(bid), bid_size=D(bid_size), ask=D(ask),
                 ask_size=D(ask_size))  # fmt: skip


def new_order(symbol: str, rid: str, side: str, qty: str, price: str | None, tif: str = "GTC") -> NewOrder:
    return NewOrder(request_id=rid, order_id=rid, venue=VENUE, symbol=symbol, ts=time.time_ns(), side=side,  # type: ignore[arg-type]
                    order_type="limit" if price else "market", quantity=D(qty), price=D(price) if price else None,
                    tif=tif)  # type: ignore[arg-type]  # fmt: skip


def test_orders_in_quotes_in_fills_out(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    symbol = f"M{unique[:6].upper()}/USD"
    s = settings_for(runtime_settings, unique)
    bus = Bus(s, endpoints.pulsar_url)
    pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
    with process(start_service(runtime_settings, unique, symbol)) as proc:
        try:
            wait_running(runtime_settings, unique, proc)
            # a resting limit buy: accepted, nothing to fill against yet
            (acc,) = send_command(s, new_order(symbol, "buy1", "buy", "1.000", "100.0"), wait_s=20)
            assert (acc.kind, acc.status, acc.order_id) == ("accepted", "new", "buy1")
            bad = send_command(s, new_order(symbol, "bad1", "buy", "0.0001", "100.0"), wait_s=20)
            assert bad[0].kind == "rejected" and "increment" in bad[0].reason
            # the venue's ask comes down through the limit with 0.4 shown: a partial fill at the ask
            pub.publish(quote(symbol, time.time_ns(), "99.5", "0.4"))
            pub.flush()
            outs = wait_for(lambda: [o for o in read_outputs(s, idle_ms=500) if type(o) is Execution
                                     and o.kind == "fill"], "a fill")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            bus.close()
        assert proc.returncode == 0, err[-3000:]
    (fill,) = outs
    assert (fill.order_id, fill.quantity, fill.price, fill.status) == ("buy1", D("0.4"), D("99.5"), "partially_filled")
    summary = summarise(read_outputs(s, idle_ms=500))
    (order,) = [o for o in summary["orders"] if o.order_id == "buy1"]
    assert order.status == "partially_filled" and order.remaining == D("0.600")
    (pos,) = summary["positions"]
    assert (pos.quantity, pos.avg_price) == (D("0.4"), D("99.5"))
    assert '"fills": 1' in out  # --json summary on exit


def test_sigkill_and_restart_lose_and_duplicate_nothing(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    """Orders keep coming while the service is SIGKILLed and restarted: every order fills exactly once and the
    position, carried across the restart by snapshot + journal, equals the sum of the orders."""
    symbol = f"R{unique[:6].upper()}/USD"
    s = settings_for(runtime_settings, unique)
    n_orders = 120
    bus = Bus(s, endpoints.pulsar_url)
    pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
    from consumers.matching.messages import encode
    from pulse.topics import service_topic

    orders_topic = service_topic("trading", s.matching.orders_topic)
    producer = bus.client.create_producer(orders_topic, batching_enabled=False)

    def send(i: int) -> None:
        cmd = new_order(symbol, f"k{i:04d}", "buy", "1.000", None, tif="IOC")
        producer.send(encode(cmd), partition_key=symbol)

    try:
        with process(start_service(runtime_settings, unique, symbol)) as proc:
            wait_running(runtime_settings, unique, proc)
            pub.publish(quote(symbol, time.time_ns(), "101.0", "100000"))  # deep enough for every order
            pub.flush()
            time.sleep(0.5)
            for i in range(n_orders // 2):
                send(i)
                time.sleep(0.01)
            proc.kill()  # SIGKILL mid-stream: no flush, no snapshot
            proc.wait(10)
        for i in range(n_orders // 2, n_orders):  # orders keep arriving while it is down
            send(i)
        with process(start_service(runtime_settings, unique, symbol)) as proc2:
            wait_running(runtime_settings, unique, proc2)

            def all_filled() -> list[Execution | Position] | None:
                got = read_outputs(s, idle_ms=500)
                n = {o.order_id for o in got if type(o) is Execution and o.kind == "fill"}
                return got if len(n) >= n_orders else None

            try:
                outputs = wait_for(all_filled, "every order to fill", timeout=60)
            except BaseException:
                got = read_outputs(s, idle_ms=500)
                filled = sorted({o.order_id for o in got if type(o) is Execution and o.kind == "fill"})
                st = read_status(runtime_settings.home, f"m-{unique}")
                proc2.send_signal(signal.SIGTERM)
                _o, e2 = proc2.communicate(timeout=30)
                print("FILLED", len(filled), filled[:3], filled[-3:], "STATUS", st, "ERR", e2[-4000:])
                raise
            proc2.send_signal(signal.SIGTERM)
            _out, err = proc2.communicate(timeout=30)
            assert proc2.returncode == 0, err[-3000:]
    finally:
        producer.close()
        bus.close()
    ex = [o for o in outputs if type(o) is Execution]
    fills = [e for e in ex if e.kind == "fill"]
    assert sorted(f.order_id for f in fills) == [f"k{i:04d}" for i in range(n_orders)]  # each exactly once
    assert all((f.quantity, f.price, f.status) == (D("1.000"), D("101.0"), "filled") for f in fills)
    assert all(e.kind in ("accepted", "fill") for e in ex)  # no spurious reject or cancel after the restart
    positions = [o for o in outputs if type(o) is Position]
    assert positions[-1].quantity == D(n_orders) and positions[-1].cost == D(n_orders) * D("101.0")
    assert sorted(p.quantity for p in positions) == [D(i + 1) for i in range(n_orders)]  # no step twice or skipped
