"""End to end on Apache Pulsar with partitioned topics: local Kraken venue → ingester → broker → sink → PostgreSQL.

`pulse symbols add` provisions each instrument's topics through the real admin API as partitioned topics (three
partitions each); the ingester publishes keyed by instrument, so each instrument's messages stay on one partition
and in order. Checked like an operator would: every trade the venue sent is stored exactly once, the topics on the
broker are partitioned and carry the registered schema, and read back from the broker each instrument's trades
come in the venue's order.
"""

from __future__ import annotations

import json

import psycopg
import pulsar

from pulse.runtime import Endpoints
from pulse.settings import Settings
from tests.integration.test_kraken_pipeline import SimThread, sent, stored_trades
from tests.procs import process, pulse, pulse_cmd, stop, wait_for


def _admin_get(settings: Settings, path: str) -> object:
    import urllib.request

    with urllib.request.urlopen(settings.pulsar.admin_url + path, timeout=10) as r:
        return json.loads(r.read() or b"null")


def test_partitioned_topics_end_to_end_exactly_once_in_order(
    apache_settings: Settings, apache_endpoints: Endpoints, unique: str
) -> None:
    s, url = apache_settings, apache_endpoints.database_url
    symbols = [f"P{i}{unique[:6].upper()}/USD" for i in range(3)]
    env = {"PULSE_PULSAR__PARTITIONS": "3"}
    for sym in symbols:
        added = pulse(s, "symbols", "add", "kraken", sym, "--channels", "trade", "--json", env=env)
        assert added.returncode == 0, added.stderr[-2000:]
        steps = [st["result"] for st in json.loads(added.stdout)["steps"]]
        local = f"kraken.{sym.replace('/', '-')}.trade"
        assert f"topic persistent://market-data/crypto/{local}: created (3 partitions)" in steps, steps

    # on the broker: partitioned topics with the Trade schema registered
    trade_topics = [f"persistent://market-data/crypto/kraken.{x.replace('/', '-')}.trade" for x in symbols]
    listed = _admin_get(s, "/admin/v2/persistent/market-data/crypto/partitioned")
    assert set(trade_topics) <= set(listed)  # type: ignore[arg-type]
    meta = _admin_get(s, f"/admin/v2/persistent/market-data/crypto/{trade_topics[0].rsplit('/', 1)[1]}/partitions")
    assert meta == {"partitions": 3, "deleted": False} or meta["partitions"] == 3  # type: ignore[index]

    # an independent reader on the broker, subscribed before any trade flows
    client = pulsar.Client(s.pulsar.url)
    reader = client.subscribe(trade_topics, f"check-{unique}", consumer_type=pulsar.ConsumerType.Shared)
    try:
        env_sink = {"PULSE_SINK__SUBSCRIPTION": f"sink-{unique}", "PULSE_SINK__MAX_LATENCY_MS": "50"}
        with SimThread(symbols=symbols, rate=300.0, seed=11, max_trades=900) as sim:
            sink = pulse_cmd(s, "sink", "run", "--source", f"crypto/kraken={','.join(symbols)}", env=env_sink)
            ing = pulse_cmd(
                s, "ingest", "kraken", "--symbols", ",".join(symbols), "--channels", "trade", "--url", sim.url,
                "--json",
            )  # fmt: skip
            with process(sink), process(ing):
                wait_for(lambda: len(sent(sim)) >= 900, "the venue to send its 900 trades", timeout=90)
                code, out, err = stop(ing)
                assert code == 0, err[-2000:]
                summary = json.loads(out)
                assert summary["parse_errors"] == 0 and summary["reconnects"] == 0
                venue_trades = sorted(sent(sim))
                wait_for(
                    lambda: len(stored_trades(url, symbols)) >= len(venue_trades),
                    "every trade stored",
                    timeout=90,
                )
                stop(sink)
        stored = stored_trades(url, symbols)
        assert sorted(stored) == venue_trades  # each once: nothing lost, nothing doubled, values exact
        with psycopg.connect(url) as conn:
            dupes = conn.execute(
                "SELECT count(*) - count(DISTINCT (symbol, trade_id)) FROM trades WHERE symbol = ANY(%s)", (symbols,)
            ).fetchone()[0]
        assert dupes == 0

        # read back from the broker: per instrument, the trades in the order the venue sent them
        got: dict[str, list[str]] = {x: [] for x in symbols}
        partitions: dict[str, set[str]] = {x: set() for x in symbols}
        while sum(map(len, got.values())) < len(venue_trades):
            msg = reader.receive(timeout_millis=20_000)
            reader.acknowledge(msg)
            doc = json.loads(msg.data())
            if doc.get("type") != "trade":
                continue
            got[doc["symbol"]].append(str(doc["trade_id"]))
            partitions[doc["symbol"]].add(msg.topic_name())
        for sym in symbols:
            in_venue_order = [str(t.trade_id) for t in sim.sent_trades if t.symbol == sym]
            assert got[sym] == in_venue_order, f"{sym}: broker order differs from the venue's"
            assert len(partitions[sym]) == 1, f"{sym} spread over partitions {partitions[sym]}"
            assert next(iter(partitions[sym])).startswith("persistent://market-data/crypto/kraken.")
            assert "-partition-" in next(iter(partitions[sym]))
    finally:
        client.close()
