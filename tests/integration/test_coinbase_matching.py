"""The paper-trading matching engine on a Coinbase instrument: `consumers matching run --instrument coinbase:SYM…`
(the engine names no venue), a resting limit order, and the venue's touch coming through it as the Coinbase parser
makes it from a `ticker` message — a partial fill at Coinbase's best ask. The process is stopped by pid."""

from __future__ import annotations

import json
import signal
import time
from decimal import Decimal as D

import pytest

from consumers.matching.commands import read_outputs, send_command
from consumers.matching.messages import Execution, NewOrder
from ingesters.coinbase.parser import CoinbaseParser
from ingesters.coinbase.schemas import format_time
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.integration.test_matching_service import matching_env, settings_for, wait_running
from tests.procs import process, pulse_cmd, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # several processes on a loaded 2-core machine


def ticker(product: str, bid: str, bid_qty: str, ask: str, ask_qty: str) -> str:
    item = {"type": "ticker", "product_id": product, "price": bid, "volume_24_h": "10", "best_bid": bid,
            "best_bid_quantity": bid_qty, "best_ask": ask, "best_ask_quantity": ask_qty}  # fmt: skip
    return json.dumps({"channel": "ticker", "client_id": "", "timestamp": format_time(time.time_ns()),
                       "sequence_num": 0, "events": [{"type": "update", "tickers": [item]}]})  # fmt: skip


def test_a_coinbase_touch_fills_a_paper_order(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    base = f"M{unique[:6].upper()}"
    symbol = f"{base}/USD"
    s = settings_for(runtime_settings, unique)
    bus = Bus(s, endpoints.pulsar_url)
    pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
    proc = pulse_cmd(runtime_settings, "consumers", "matching", "run", "--instrument", f"coinbase:{symbol}:0.1:0.001",
                     "--name", f"m-{unique}", "--json", env=matching_env(unique))  # fmt: skip
    with process(proc):
        try:
            wait_running(runtime_settings, unique, proc)
            order = NewOrder(request_id="buy1", order_id="buy1", venue="coinbase", symbol=symbol,
                             ts=time.time_ns(), side="buy", order_type="limit", quantity=D("1.000"),
                             price=D("100.0"), tif="GTC")  # fmt: skip
            (acc,) = send_command(s, order, wait_s=60)
            assert (acc.kind, acc.status) == ("accepted", "new")
            events = CoinbaseParser().feed(ticker(f"{base}-USD", "99.0", "1", "99.5", "0.4")).events
            quotes = [ev for ev in events if isinstance(ev, Quote)]
            assert [(q.venue, q.symbol, q.ask, q.ask_size) for q in quotes] == [
                ("coinbase", symbol, D("99.5"), D("0.4"))
            ]
            for ev in events:
                pub.publish(ev)
            pub.flush()
            outs = wait_for(lambda: [o for o in read_outputs(s, idle_ms=500) if type(o) is Execution
                                     and o.kind == "fill"], "a fill", timeout=90.0)  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            bus.close()
        assert proc.returncode == 0, err[-3000:]
    (fill,) = outs
    assert (fill.venue, fill.order_id, fill.quantity, fill.price, fill.status) == (
        "coinbase", "buy1", D("0.4"), D("99.5"), "partially_filled")  # fmt: skip
