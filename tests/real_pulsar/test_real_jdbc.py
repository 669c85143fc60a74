"""Pulsar IO's JDBC sink on Apache Pulsar: historical quotes → PostgreSQL inside the broker's functions worker.

The broker here runs its functions worker (thread runtime) with the ``jdbc-postgres`` connector archive that Pulse
builds from Maven Central jars (``runtime.apache_functions = true``). ``pulse pulsar provision --jdbc-table``
creates the table and the sink; the real Dukascopy hour files are backfilled one Quote per message through the
local datafeed; the rows the connector writes are compared value by value with the ticks decoded here from the
same files. ``pulse symbols add`` of another historical instrument is then followed by the sink (it reads a topics
pattern) and that instrument's quotes land too.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from control_plane.pulsar_admin import AdminError, PulsarAdmin
from ingesters.dukascopy.bi5 import decode_ticks, seq_base, to_quotes
from ingesters.dukascopy.instruments import lookup
from ingesters.dukascopy.service import run_backfill
from ingesters.dukascopy.simulator import DukascopySimulator
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote
from pulse.runtime import Runtime, attach_runtime, resolve_endpoints
from pulse.runtime.procs import pid_alive
from pulse.settings import Settings
from tests.conftest import SHARED_DATA, make_settings
from tests.procs import pulse
from tests.real_pulsar.conftest import require_java_and_maven

DATA = SHARED_DATA / "dukascopy"
DAY = DATA / "EURUSD" / "2019" / "01" / "04"
T0 = datetime(2019, 2, 4, 0, tzinfo=UTC)  # Dukascopy's months count from 0: these are the 2019/01/04 files
T2 = datetime(2019, 2, 4, 2, tzinfo=UTC)
TABLE = "pio_historical_quotes"
SINK = "/admin/v3/sinks/market-data/historical/pulse-historical-jdbc"
pytestmark = pytest.mark.skipif(not DAY.is_dir(), reason=f"shared Dukascopy files not found at {DAY}")


@pytest.fixture(scope="module")
def fn_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A runtime of its own whose broker runs the functions worker with the jdbc-postgres connector."""
    require_java_and_maven()
    home = tmp_path_factory.mktemp("pulse-apache-functions")
    settings = make_settings(home, PULSE_RUNTIME__BROKER="apache", PULSE_RUNTIME__APACHE_FUNCTIONS="true")
    rt = Runtime(settings)
    st = rt.up()
    assert st.running and st.broker and st.broker["kind"] == "apache", st.as_dict()
    pids = [st.broker["pid"], st.postgres["pid"]]  # type: ignore[index]
    try:
        from control_plane.provision import provision_base_sync

        attached = attach_runtime(settings)
        provision_base_sync(attached)
        yield attached
    finally:
        pids += [p["pid"] for p in [rt.status().postgres] if p]
        rt.down()
        for pid in pids:
            assert not pid_alive(pid), f"runtime process {pid} still alive after `down`"


def _admin(settings: Settings, path: str) -> object:
    with urllib.request.urlopen(settings.pulsar.admin_url + path, timeout=10) as r:
        return json.loads(r.read() or b"null")


def _expected(hours: int) -> dict[tuple[int, int], Quote]:
    """The quotes of the first ``hours`` shipped files, decoded here straight from disk, by (ts_event, seq)."""
    inst = lookup("EURUSD")
    out: dict[tuple[int, int], Quote] = {}
    for hour in range(hours):
        ns = int(datetime(2019, 2, 4, hour, tzinfo=UTC).timestamp()) * 1_000_000_000
        records = decode_ticks((DAY / f"{hour:02d}h_ticks.bi5").read_bytes(), hour_start_ns=ns,
                               divisor=inst.divisor, symbol=inst.code)  # fmt: skip
        mult = inst.volume_multiplier
        quotes = to_quotes(records, symbol=inst.symbol, first_seq=seq_base(ns), volume_multiplier=mult)
        out.update(((q.ts_event, q.seq), q) for q in quotes)
    return out


def _rows(db: str, symbol: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            f"SELECT venue, symbol, type, ts_event, ts_recv, seq, bid, bid_size, ask, ask_size, tradeable "
            f"FROM {TABLE} WHERE symbol = %s ORDER BY ts_event, seq",
            (symbol,),
        ).fetchall()


def _wait_rows(db: str, symbol: str, n: int, timeout: float = 180.0) -> list[tuple]:
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        rows = _rows(db, symbol)
        if len(rows) >= n:
            time.sleep(2.0)  # anything beyond n (a duplicate) would show up now
            return _rows(db, symbol)
        time.sleep(1.0)
    return rows


def test_jdbc_sink_writes_backfilled_quotes_with_exact_values(fn_settings: Settings, tmp_path: Path) -> None:
    s = fn_settings
    db = resolve_endpoints(s).database_url
    builtin = _admin(s, "/admin/v3/sinks/builtinsinks")
    assert any(c["name"] == "jdbc-postgres" for c in builtin), builtin  # type: ignore[union-attr]

    added = pulse(s, "symbols", "add", "dukascopy", "EUR/USD", "--json")
    assert added.returncode == 0, added.stderr[-2000:]
    # one schema per topic, matching every message on it: single Quotes here, the backfill's batches apart
    for channel, tag in (("quote", "quote"), ("quote_batch", "quote_batch")):
        schema = _admin(s, f"/admin/v2/schemas/market-data/historical/dukascopy.EUR-USD.{channel}/schema")
        assert schema["type"] == "JSON" and schema["properties"]["pulse.event_type"] == tag, schema  # type: ignore[index]
    # creating a Pulsar IO sink loads its NAR in the functions worker: minutes on a loaded machine
    first = pulse(s, "pulsar", "provision", "--jdbc-table", TABLE, "--json", timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    steps = {r["step"]: r["outcome"] for r in json.loads(first.stdout)}
    assert steps[f"table {TABLE}"] == "created"
    assert steps["sink market-data/historical/pulse-historical-jdbc"] == "created"
    again = pulse(s, "pulsar", "provision", "--jdbc-table", TABLE, "--json", timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r["outcome"] for r in json.loads(again.stdout)} == {"exists"}  # idempotent
    assert "password" not in first.stdout + first.stderr  # no credentials echoed

    cfg = _admin(s, SINK)
    assert cfg["archive"] == "builtin://jdbc-postgres"  # type: ignore[index]
    # the worker keeps the pattern as a regex input spec
    spec = cfg["inputSpecs"][r"persistent://market-data/historical/.*\.quote"]  # type: ignore[index]
    assert spec["regexPattern"] is True, cfg

    async def backfill() -> dict:
        async with DukascopySimulator(DATA) as sim:
            return await asyncio.to_thread(
                run_backfill, s.with_overrides(dukascopy={"checkpoint_dir": str(tmp_path / "ck")}),
                resolve_endpoints(s), "EURUSD", T0, T2, base_url=sim.base_url, feed="bi5", progress=False,
                batch_ticks=1,
            )  # fmt: skip

    summary = asyncio.run(backfill())
    expected = _expected(2)
    assert summary["ok"] and summary["ticks_published"] == len(expected) == 3_733 + 2_825, summary

    rows = _wait_rows(db, "EUR/USD", len(expected))
    assert len(rows) == len(expected), (len(rows), _admin(s, SINK + "/status"))
    for venue, symbol, typ, ts_event, ts_recv, seq, bid, bid_size, ask, ask_size, tradeable in rows:
        q = expected[(ts_event, seq)]
        assert (venue, symbol, typ, tradeable) == ("dukascopy", "EUR/USD", "quote", True)
        assert (bid, bid_size, ask, ask_size) == (q.bid, q.bid_size, q.ask, q.ask_size), (ts_event, seq)
        assert isinstance(bid, Decimal) and ts_recv > 0
    status = _admin(s, SINK + "/status")
    assert status["numRunning"] == 1 and status["instances"][0]["status"]["numSinkExceptions"] == 0, status  # type: ignore[index]


def test_symbols_add_extends_the_sink_to_the_new_instruments_topic(fn_settings: Settings) -> None:
    """Runs after the test above (the sink exists). Apache Pulsar refuses to change a sink's input topics; the
    sink reads a pattern, so `pulse symbols add` reports that it follows the new topic, and its quotes land."""
    s = fn_settings
    db = resolve_endpoints(s).database_url
    added = pulse(s, "symbols", "add", "dukascopy", "GBP/USD", "--json")
    assert added.returncode == 0, added.stderr[-2000:]
    topic = "persistent://market-data/historical/dukascopy.GBP-USD.quote"
    steps = [st["result"] for st in json.loads(added.stdout)["steps"]]
    assert f"sink market-data/historical/pulse-historical-jdbc: exists (reads {topic})" in steps, steps

    async def add_input() -> None:  # why the sink reads a pattern: the broker refuses to change its inputs
        async with PulsarAdmin.from_settings(s) as admin:
            cfg = {"tenant": "market-data", "namespace": "historical", "name": "pulse-historical-jdbc",
                   "inputs": [topic]}  # fmt: skip
            await admin.update_sink("market-data", "historical", "pulse-historical-jdbc", cfg)

    with pytest.raises(AdminError, match="HTTP 400: Input Topics cannot be altered"):
        asyncio.run(add_input())

    bus = Bus(s, s.pulsar.url)
    try:
        pub = EventPublisher(bus, "historical", producer_prefix="test-jdbc")
        quotes = [
            Quote(venue="dukascopy", symbol="GBP/USD", ts_event=1_549_238_400_000_000_000 + i * 1_000_000,
                  ts_recv=1_549_238_500_000_000_000, seq=i, bid=Decimal(f"1.3{i:04d}"), bid_size=Decimal("1.25"),
                  ask=Decimal(f"1.3{i + 2:04d}"), ask_size=None)
            for i in range(50)
        ]  # fmt: skip
        for q in quotes:
            pub.publish(q)
        pub.flush()
    finally:
        bus.close()
    rows = _wait_rows(db, "GBP/USD", len(quotes))
    assert [(r[5], r[6], r[7], r[8], r[9]) for r in rows] == [
        (q.seq, q.bid, q.bid_size, q.ask, q.ask_size) for q in quotes
    ]
