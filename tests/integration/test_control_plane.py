"""The control plane end to end: `pulse symbols add/remove` against a running Kraken ingester and sink.

Real processes (`pulse ingest kraken`, `pulse sink run`, `pulse symbols …`), the local Kraken venue, pulsar-lite
and PostgreSQL; every process is stopped by pid.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import psycopg
import pytest

from pulse.runtime import Endpoints, resolve_endpoints
from pulse.settings import Settings
from tests.integration.test_kraken_pipeline import SimThread, sent, stored_trades
from tests.procs import process, pulse, pulse_cmd, stop, wait_for

pytestmark = pytest.mark.slow


def markers(url: str, symbol: str, kind: str) -> list[int]:
    with psycopg.connect(url) as conn:
        try:
            rows = conn.execute(
                "SELECT ts_recv_ns FROM gaps WHERE venue='kraken' AND symbol=%s AND kind=%s ORDER BY 1", (symbol, kind)
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [r[0] for r in rows]


def trades_after(url: str, symbol: str, ts_recv_ns: int) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM trades WHERE venue='kraken' AND symbol=%s AND ts_recv_ns > %s", (symbol, ts_recv_ns)
        ).fetchone()[0]


def test_symbols_add_and_remove_reach_a_running_ingester_and_sink(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    s, url = runtime_settings, endpoints.database_url
    old, new = f"KA{unique[:6].upper()}/USD", f"KB{unique[:6].upper()}/USD"
    env = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50"}
    with SimThread(symbols=[old, new], rate=400.0, seed=7) as sim:
        sink = pulse_cmd(s, "sink", "run", "--source", f"crypto/kraken={old}", env=env)
        ing = pulse_cmd(s, "ingest", "kraken", "--symbols", old, "--channels", "trade", "--url", sim.url, "--json")
        with process(sink), process(ing):
            wait_for(lambda: stored_trades(url, [old]), f"{old} trades in the database")
            assert stored_trades(url, [new]) == []  # not subscribed yet

            added = pulse(s, "symbols", "add", "kraken", new, "--channels", "trade", "--json")
            assert added.returncode == 0, added.stderr
            doc = json.loads(added.stdout)
            assert doc["instrument"]["symbol"] == new and doc["instrument"]["channels"] == ["trade"]
            assert [st["step"] for st in doc["steps"]] == ["topics", "registry", "control"]
            assert "created on first use" in doc["steps"][0]["result"]

            # within 5 s of the command the new instrument's trades are stored
            wait_for(lambda: stored_trades(url, [new]), f"{new} trades in the database", timeout=5.0)
            assert wait_for(lambda: markers(url, new, "subscribed"), "the subscribed marker")

            # `pulse status` sees the pipeline: topic rates from the broker, ticks per instrument, the sink's lag
            health = json.loads(pulse(s, "status", "--json").stdout)
            assert health["broker"]["ok"] and health["database"]["ok"]
            trade_topic = f"persistent://market-data/crypto/kraken.{new.replace('/', '-')}.trade"
            assert health["topics"][trade_topic]["in_total"] > 0
            ingester = next(x for x in health["services"] if x["pid"] == ing.pid)
            assert ingester["alive"] and set(ingester["last_tick_age_s"]) == {old, new}
            assert ingester["subscriptions"] == {old: ["trade"], new: ["trade"]}
            sink_status = next(x for x in health["services"] if x["pid"] == sink.pid)
            assert sink_status["sink_lag_s"] is not None and sink_status["sink_lag_s"] >= 0

            removed = pulse(s, "symbols", "remove", "kraken", new)
            assert removed.returncode == 0, removed.stderr
            gone_at = wait_for(lambda: markers(url, new, "unsubscribed"), "the unsubscribed marker")[-1]
            time.sleep(1.0)  # the old instrument keeps streaming meanwhile
            assert trades_after(url, new, gone_at) == 0

            code, out, err = stop(ing)
            assert code == 0, err
            summary = json.loads(out)
            wait_for(
                lambda: len(stored_trades(url, [old])) >= len([t for t in sent(sim) if t[0] == old]),
                "every trade of the old instrument stored",
            )
            stop(sink)
    # the old instrument was never interrupted: one session, no gap, every trade the venue sent stored once
    assert summary["reconnects"] == 0 and summary["gaps"] == 0
    old_sent = sorted(t for t in sent(sim) if t[0] == old)
    assert sorted(stored_trades(url, [old])) == old_sent
    assert markers(url, old, "gap") == []


def test_symbols_add_refuses_bad_input_before_changing_anything(runtime_settings: Settings, unique: str) -> None:
    s = runtime_settings
    good = f"KC{unique[:6].upper()}/USD"
    for args, message in [
        (("kraken", good, "BTC;DROP TABLE"), "invalid Kraken symbol"),
        (("kraken", good, "--channels", "trade,quote"), "kraken has no channel quote"),
        (("krakenx", good), "unknown venue"),
        (("oanda", "EURUSDX"), "invalid symbol 'EURUSDX' for OANDA"),
        (("EUR/USD",), "'EUR/USD' is ambiguous: write VENUE:SYMBOL"),
        (("dukascopy", "FOOBAR"), "unknown Dukascopy instrument"),
    ]:
        res = pulse(s, "symbols", "add", *args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    listed = json.loads(pulse(s, "symbols", "list", "--json").stdout)
    assert good not in [r["symbol"] for r in listed]  # the good symbol of a refused batch was not added either


def test_registry_lifecycle_and_venue_names(runtime_settings: Settings, unique: str) -> None:
    s = runtime_settings
    sym = f"KD{unique[:5].upper()}"
    res = pulse(s, "symbols", "add", "kraken", "xbt/eur", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["instrument"]["symbol"] == "BTC/EUR"  # XBT ↔ BTC
    res = pulse(s, "symbols", "add", "oanda", "usd_jpy", "--json")  # case is normalised
    inst = json.loads(res.stdout)["instrument"]
    assert (inst["symbol"], inst["venue_symbol"], inst["namespace"], inst["price_precision"]) == (
        "USD/JPY", "USD_JPY", "fx", 3,
    )  # fmt: skip
    res = pulse(s, "symbols", "add", "dukascopy", "EURUSD", "--json")
    inst = json.loads(res.stdout)["instrument"]
    assert (inst["symbol"], inst["venue_symbol"], inst["namespace"]) == ("EUR/USD", "EURUSD", "historical")
    # one identifier: VENUE:SYMBOL, with each venue's own spellings as aliases (and bare when only one venue
    # spells it so); printed canonically
    res = pulse(s, "symbols", "add", "oanda:eurusd", "GBP_USD", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["instrument"]["instrument"] for r in json.loads(res.stdout)] == ["oanda:EUR/USD", "oanda:GBP/USD"]
    res = pulse(s, "symbols", "remove", "oanda:EUR_USD", "oanda:GBP/USD")
    assert res.returncode == 0 and res.stdout.startswith("oanda:EUR/USD (venue symbol EUR_USD"), res.stdout

    assert pulse(s, "symbols", "disable", "kraken", "BTC/EUR").returncode == 0
    rows = {r["symbol"]: r for r in json.loads(pulse(s, "symbols", "list", "--venue", "kraken", "--json").stdout)}
    assert rows["BTC/EUR"]["enabled"] is False
    enabled = json.loads(pulse(s, "symbols", "list", "--enabled", "--json").stdout)
    assert "BTC/EUR" not in [r["symbol"] for r in enabled if r["venue"] == "kraken"]
    assert pulse(s, "symbols", "enable", "kraken", "BTC/EUR").returncode == 0
    assert pulse(s, "symbols", "remove", "kraken", "BTC/EUR").returncode == 0
    res = pulse(s, "symbols", "remove", "kraken", "BTC/EUR")
    assert res.returncode == 2 and "not in the registry" in res.stderr
    res = pulse(s, "symbols", "enable", "kraken", sym + "/USD")
    assert res.returncode == 2 and "not in the registry" in res.stderr


class FakeAdminThread:
    """The fake Pulsar admin API (tests/pulsar_admin_fake.py) on its own loop in a thread."""

    def __enter__(self) -> Any:
        from tests.pulsar_admin_fake import FakePulsarAdmin

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakePulsarAdmin()
        asyncio.run_coroutine_threadsafe(self.fake.__aenter__(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.__aexit__(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_symbols_add_provisions_through_the_admin_api_and_stops_at_the_first_failure(
    runtime_settings: Settings, unique: str
) -> None:
    s = runtime_settings
    sym, bad = f"KE{unique[:6].upper()}/USD", f"KF{unique[:6].upper()}/USD"
    with FakeAdminThread() as fake:
        env = {"PULSE_PULSAR__ADMIN_URL": fake.url}
        res = pulse(s, "symbols", "add", "kraken", sym, "--channels", "trade,ticker", "--json", env=env)
        assert res.returncode == 0, res.stderr
        token = sym.replace("/", "-")
        # tenant, every namespace, and a partitioned topic per topic channel the instrument publishes on
        assert "market-data" in fake.tenants and "market-data/historical" in fake.namespaces
        assert {k for k in fake.partitioned if token in k} == {
            f"market-data/crypto/kraken.{token}.{ch}" for ch in ("trade", "ticker", "quote", "status")
        }
        assert f"market-data/crypto/kraken.{token}.trade" in fake.schemas
        steps = json.loads(res.stdout)["steps"]
        assert steps[-2:] == [
            {"step": "registry", "result": "created"},
            {"step": "control", "result": steps[-1]["result"]},
        ]
        assert any(f"kraken.{token}.trade" in st["result"] for st in steps if st["step"] == "admin")

        # `pulse status` on a "real cluster": broker health and per-topic rates and backlog from the admin API
        fake.stats[f"market-data/crypto/kraken.{token}.trade"] = {
            "msgRateIn": 12.5, "msgRateOut": 10.0, "msgInCounter": 420,
            "subscriptions": {"pulse-sink-postgres": {"msgBacklog": 7, "msgRateOut": 10.0, "consumers": []}},
        }  # fmt: skip
        health = json.loads(pulse(s, "status", "--json", env=env).stdout)
        assert health["broker"]["admin"]["healthy"] is True
        got = health["topics"][f"persistent://market-data/crypto/kraken.{token}.trade"]
        assert (got["rate_in"], got["rate_out"], got["in_total"], got["backlog"]) == (12.5, 10.0, 420, 7)
        assert got["subscriptions"] == {"pulse-sink-postgres": 7}

        # the first failure stops everything, names the step and the status; nothing is recorded
        fake.fail("PUT", rf"kraken\.{bad.replace('/', '-')}\.trade/partitions", status=500, times=None, reason="boom")
        res = pulse(s, "symbols", "add", "kraken", bad, "--channels", "trade", env=env)
        assert res.returncode == 1  # the broker answered and failed: not a usage error (2), not unreachable (69)
        assert "create partitioned topic" in res.stderr and "HTTP 500" in res.stderr and "boom" in res.stderr
    listed = [r["symbol"] for r in json.loads(pulse(s, "symbols", "list", "--json").stdout)]
    assert sym in listed and bad not in listed


def test_pulsar_provision_is_idempotent_and_creates_the_jdbc_sink(runtime_settings: Settings) -> None:
    s = runtime_settings
    assert pulse(s, "symbols", "add", "dukascopy", "EURUSD").returncode == 0
    with FakeAdminThread() as fake:
        env = {"PULSE_PULSAR__ADMIN_URL": fake.url}
        first = pulse(s, "pulsar", "provision", "--jdbc-table", "pulsar_io_quotes", "--json", env=env)
        assert first.returncode == 0, first.stderr
        steps = json.loads(first.stdout)
        assert "market-data/historical/dukascopy.EUR-USD.quote" in fake.partitioned
        assert "market-data/historical/dukascopy.EUR-USD.quote_batch" in fake.partitioned  # the backfill's batches
        sink = fake.sinks["market-data/historical/pulse-historical-jdbc"]
        # every historical quote topic (one Quote per message), present and future: not the quote_batch topics
        assert sink["topicsPattern"] == r"persistent://market-data/historical/.*\.quote" and "inputs" not in sink
        assert sink["configs"]["tableName"] == "pulsar_io_quotes"
        assert sink["configs"]["jdbcUrl"].endswith("/pulse?stringtype=unspecified")
        assert sink["configs"]["insertMode"] == "UPSERT" and sink["configs"]["key"] == "venue,symbol,ts_event,seq"
        sink_step = "sink market-data/historical/pulse-historical-jdbc"
        assert [st["step"] for st in steps[-2:]] == ["table pulsar_io_quotes", sink_step]
        assert [st["outcome"] for st in steps[-2:]] == ["created", "created"]
        with psycopg.connect(resolve_endpoints(s).database_url) as conn:  # the table the connector writes
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'pulsar_io_quotes' "
                "ORDER BY ordinal_position").fetchall()]  # fmt: skip
        assert cols == ["venue", "symbol", "type", "ts_event", "ts_recv", "seq", "bid", "bid_size", "ask", "ask_size",
                        "tradeable"]  # fmt: skip
        posts = len(fake.calls("POST", "."))
        second = pulse(s, "pulsar", "provision", "--jdbc-table", "pulsar_io_quotes", "--json", env=env)
        assert second.returncode == 0, second.stderr
        assert {st["outcome"] for st in json.loads(second.stdout)} == {"exists"}
        assert len(fake.calls("POST", ".")) == posts  # nothing changed the second time
    embedded = pulse(s, "pulsar", "provision")
    assert embedded.returncode == 0 and "created on first use" in embedded.stdout
