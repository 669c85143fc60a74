"""Pulse's messages read through the schema registered on the topic, by readers that know nothing of Pulse's code.

``pulse symbols add`` registers the channel's schema (JSON type, an Avro record) on Apache Pulsar; Pulse's own
producer (:class:`pulse.bus.EventPublisher`, the ingesters' path) publishes trades. Two readers check them field by
field: Pulsar's Python client with ``JsonSchema`` of a ``Record`` class written from the registered definition, and
a Java program (tests/real_pulsar/SchemaReader.java) using ``Schema.AUTO_CONSUME()``, which fetches the schema from
the broker and decodes each message into a ``GenericRecord``.

The Java reader is what found the contract gap: Pulse's producers used to declare no schema, which Apache Pulsar
accepts (``schemaValidationEnforced`` is off), but then no message carries a schema version and AUTO_CONSUME
hands back opaque BYTES. Producers now declare the registered definition on clusters with an admin API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pulsar
from pulsar.schema import JsonSchema, Long, Record, String

from pulse.bus import Bus, EventPublisher, producer_schema
from pulse.models import Trade
from pulse.runtime.apache import DEFAULT_VERSION, lib_dir
from pulse.schemas import registered_schema
from pulse.settings import Settings
from tests.procs import pulse

READER = Path(__file__).with_name("SchemaReader.java")


class TradeRecord(Record):
    """The registered ``pulse.events.Trade`` record, written by hand as a third party would from the schema."""

    _avro_namespace = "pulse.events"
    type = String(required=True)
    price = String(required=True)  # decimals travel as strings: exact
    size = String(required=True)
    side = String()
    trade_id = String(required=True)
    ord_type = String()
    venue = String(required=True)
    symbol = String(required=True)
    ts_event = Long(required=True)  # nanoseconds since the epoch
    ts_recv = Long(required=True)
    seq = Long(required=True, default=0)


TradeRecord.__name__ = "Trade"  # the record's name is part of the compatibility check


def _trades(symbol: str) -> list[Trade]:
    base = 1_733_300_000_123_456_789
    rows = [("64123.40", "0.00150000", "buy"), ("64123.1", "1.25", "sell"), ("0.00000001", "42", None)]
    return [
        Trade(price=Decimal(p), size=Decimal(q), side=side, trade_id=f"T{i}", ord_type="limit" if i else None,  # type: ignore[arg-type]
              venue="kraken", symbol=symbol, ts_event=base + i, ts_recv=base + 1_000_000 + i, seq=i + 1)
        for i, (p, q, side) in enumerate(rows)
    ]  # fmt: skip


def _add_and_publish(s: Settings, symbol: str) -> tuple[str, list[Trade]]:
    added = pulse(s, "symbols", "add", "kraken", symbol, "--channels", "trade", "--json")
    assert added.returncode == 0, added.stderr[-2000:]
    name = next(t for t in json.loads(added.stdout)["topics"] if t.endswith(".trade"))
    trades = _trades(symbol)
    bus = Bus(s, s.pulsar.url)
    publisher = EventPublisher(bus, "crypto", producer_prefix="schema-test", owns_bus=True)
    try:
        for t in trades:
            publisher.publish(t)
        publisher.flush()
    finally:
        publisher.close()
    assert publisher.stats.acked == {name: len(trades)}
    return name, trades


def test_python_consumer_with_json_schema_reads_pulse_trades_field_by_field(
    apache_settings: Settings, unique: str
) -> None:
    s = apache_settings
    name, trades = _add_and_publish(s, f"J{unique[:5].upper()}/USD")
    client = pulsar.Client(s.pulsar.url)
    try:
        consumer = client.subscribe(
            name, f"json-{unique}", schema=JsonSchema(TradeRecord), initial_position=pulsar.InitialPosition.Earliest
        )
        got = []
        for _ in trades:
            msg = consumer.receive(30_000)
            consumer.acknowledge(msg)
            assert msg.properties()["type"] == "trade"
            got.append(msg.value())
    finally:
        client.close()
    got.sort(key=lambda r: r.seq)
    for rec, t in zip(got, trades, strict=True):
        assert isinstance(rec, TradeRecord)
        assert (rec.type, rec.price, rec.size, rec.side) == ("trade", str(t.price), str(t.size), t.side)
        assert Decimal(rec.price) == t.price  # exact, not a float
        assert (rec.trade_id, rec.ord_type, rec.venue, rec.symbol) == (t.trade_id, t.ord_type, "kraken", t.symbol)
        assert (rec.ts_event, rec.ts_recv, rec.seq) == (t.ts_event, t.ts_recv, t.seq)


def test_java_auto_consume_reader_decodes_pulse_trades_with_the_registered_schema(
    apache_settings: Settings, unique: str, tmp_path: Path
) -> None:
    s = apache_settings
    java = shutil.which("java")
    assert java, "the real_pulsar tier runs with Java 17 (its conftest checks for it)"
    name, trades = _add_and_publish(s, f"V{unique[:5].upper()}/USD")
    proc = subprocess.run(
        [java, "-cp", f"{lib_dir(DEFAULT_VERSION)}/*", str(READER), s.pulsar.url, name, f"java-{unique}",
         str(len(trades))],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("schema="):
            rows.append(dict(kv.split("=", 1) for kv in line.split("\t")))
    assert len(rows) == len(trades), proc.stdout[-2000:]
    rows.sort(key=lambda r: int(r["seq"].split(":")[0]))
    for row, t in zip(rows, trades, strict=True):
        # decoded with the topic's JSON schema, not handed back as BYTES
        assert row["schema"] == "JSON" and row["property.type"] == "trade"
        assert row["price"] == f"{t.price}:String" and row["size"] == f"{t.size}:String"
        assert row["ts_event"] == f"{t.ts_event}:Long" and row["ts_recv"] == f"{t.ts_recv}:Long"
        assert row["symbol"] == f"{t.symbol}:String" and row["venue"] == "kraken:String"
        assert row["side"] == (f"{t.side}:String" if t.side else "null:null")
        assert row["trade_id"] == f"{t.trade_id}:String" and row["type"] == "trade:String"
        assert row["ord_type"] == (f"{t.ord_type}:String" if t.ord_type else "null:null")
    # every field of the registered record came through, nothing else
    assert set(rows[0]) - {"schema", "property.type"} == {
        "ord_type", "price", "seq", "side", "size", "symbol", "trade_id", "ts_event", "ts_recv", "type", "venue"
    }  # fmt: skip


def test_producers_declare_the_registered_schema_only_where_one_is_registered(apache_settings: Settings) -> None:
    s = apache_settings
    trade = producer_schema(s, "persistent://market-data/crypto/kraken.BTC-USD.trade")
    assert trade is not None
    info = trade.schema_info()
    assert info.schema_type() == pulsar.SchemaType.JSON and info.schema() == registered_schema("trade")
    dead = producer_schema(s, "persistent://market-data/deadletter/ingest.kraken")
    assert dead is None  # raw venue bytes: no schema
    msgpack = s.with_overrides(pulsar={"codec": "msgpack"})
    assert producer_schema(msgpack, "persistent://market-data/crypto/kraken.BTC-USD.trade") is None
    lite = s.with_overrides(pulsar={"admin_url": ""})  # pulsar-lite: no admin API, no schema registry
    assert producer_schema(lite, "persistent://market-data/crypto/kraken.BTC-USD.trade") is None
