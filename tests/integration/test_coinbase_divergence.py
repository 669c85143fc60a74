"""A cross-venue divergence alert between `kraken:SYM` and `coinbase:SYM`: the rule is added with the CLI (the
venue named through the registry; the bare symbol refused as ambiguous), each venue's ticks are produced by that
venue's own parser from its wire format and published to the live topics, and the alerting service — which names no
venue — raises the alert on the alerts topic. The process is stopped by pid."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from ingesters.coinbase.parser import CoinbaseParser
from ingesters.coinbase.schemas import format_time
from ingesters.kraken.parser import KrakenFeedParser
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from pulse.topics import service_topic
from tests.integration.test_alerting_service import alerting_cmd, receive_alerts, run_cmd
from tests.procs import process, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # several processes on a loaded 2-core machine


def kraken_ticker(symbol: str, bid: str, ask: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    row = {"symbol": symbol, "bid": float(bid), "bid_qty": 1.5, "ask": float(ask), "ask_qty": 2.0, "last": float(bid),
           "volume": 10.0, "vwap": float(bid), "low": float(bid), "high": float(ask), "change": 0.0, "change_pct": 0.0,
           "timestamp": stamp}  # fmt: skip
    return json.dumps({"channel": "ticker", "type": "update", "data": [row]})


def coinbase_ticker(product: str, seq: int, bid: str, ask: str) -> str:
    item = {"type": "ticker", "product_id": product, "price": bid, "volume_24_h": "10", "low_24_h": bid,
            "high_24_h": ask, "low_52_w": bid, "high_52_w": ask, "price_percent_chg_24_h": "0", "best_bid": bid,
            "best_bid_quantity": "1.5", "best_ask": ask, "best_ask_quantity": "2"}  # fmt: skip
    return json.dumps({"channel": "ticker", "client_id": "", "timestamp": format_time(time.time_ns()),
                       "sequence_num": seq, "events": [{"type": "update", "tickers": [item]}]})  # fmt: skip


def test_kraken_vs_coinbase_divergence_alert(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    s = runtime_settings
    base = f"DV{unique[:6].upper()}"
    symbol = f"{base}/USD"
    rc, _, err = run_cmd(s, "alerts", "add", "divergence", "--symbol", symbol, "--other-venue", "coinbase", "--bps",
                         "50")  # fmt: skip
    assert rc == 2 and f"'{symbol}' is ambiguous" in err and f"coinbase:{symbol}" in err and f"kraken:{symbol}" in err
    rc, out, err = run_cmd(s, "alerts", "add", "divergence", "--symbol", f"kraken:{symbol}", "--other-venue",
                           "coinbase", "--bps", "50", "--hysteresis", "20", "--max-age-s", "60", "--cooldown", "0",
                           "--name", f"dv-{unique}", "--json")  # fmt: skip
    assert rc == 0, err[-2000:]
    rule_id = json.loads(out)["id"]
    alerts_name = f"events.dv{unique}"
    env = {"PULSE_ALERTING__SUBSCRIPTION": f"alerting-dv{unique}", "PULSE_ALERTING__ALERTS_TOPIC": alerts_name,
           "PULSE_ALERTING__SNAPSHOT_INTERVAL_S": "0.2"}  # fmt: skip
    kraken, coinbase = KrakenFeedParser(), CoinbaseParser()
    bus = Bus(s, endpoints.pulsar_url)
    try:
        alerts_sub = bus.subscribe(service_topic("alerts", alerts_name), f"test-dv{unique}")
        pub = EventPublisher(bus, "crypto", producer_prefix=f"test-dv{unique}")
        svc = alerting_cmd(s, "run", "--json", env=env)

        def running() -> bool:
            st = read_status(s.home, "alerting")
            return bool(st and st.get("state") == "running" and st["pid"] == svc.pid)

        def publish(events: list) -> None:
            for ev in events:
                pub.publish(ev)
            pub.flush()

        with process(svc):
            wait_for(running, "the alerting service to run", timeout=120.0)
            publish(kraken.feed(kraken_ticker(symbol, "100.0", "100.2")).events)  # mid 100.1
            cb = coinbase.feed(coinbase_ticker(f"{base}-USD", 0, "100.2", "100.4")).events  # mid 100.3: 20 bps
            assert any(isinstance(ev, Quote) and ev.venue == "coinbase" for ev in cb)
            publish(cb)
            assert receive_alerts(alerts_sub, 1, timeout=3.0) == []  # under 50 bps: silent
            publish(coinbase.feed(coinbase_ticker(f"{base}-USD", 1, "101.6", "101.8")).events)  # mid 101.7
            got = receive_alerts(alerts_sub, 1, timeout=90.0)
            rc, out, err = stop(svc, timeout=60)
            assert rc == 0, err[-3000:]
    finally:
        bus.close()
    assert [(a.rule_id, a.kind, a.venue, a.symbol, a.condition) for a in got] == [
        (rule_id, "divergence", "kraken", symbol, "diverged")
    ]
    assert "kraken 100.1 vs coinbase 101.7" in got[0].message  # |100.1 - 101.7| / 100.9 = 158.6 bps
    assert float(got[0].value) == pytest.approx(1.6 / 100.9 * 10_000, abs=0.01)
    rc, out, _ = run_cmd(s, "alerts", "remove", str(rule_id))
    assert rc == 0
