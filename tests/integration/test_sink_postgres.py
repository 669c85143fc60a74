"""The PostgreSQL sink against the real embedded broker and a real PostgreSQL: exact rows, idempotence on
redelivery, dead letters, ack-after-commit across restarts, and riding out a database outage.

Every test uses its own symbols (hence topics) and subscription, so they share the schema without interfering.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pulsar
import pytest

from pulse.bus import Bus, EventPublisher
from pulse.models import BookDelta, BookSnapshot, Level, Quote, Status, Ticker, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.status import read_status
from pulse.topics import dead_letter_topic, topic
from sinks.postgres.mapping import to_row
from sinks.postgres.schema import ensure_schema
from sinks.postgres.service import PostgresSink
from sinks.postgres.sources import topics_for
from sinks.postgres.writer import CopyWriter, DatabaseUnavailable, RowsRejected

D = Decimal
T0 = 1_763_700_000_000_000_000  # 2025-11-21T04:40:00Z in ns
DEADLINE_S = 30.0


# -- helpers --------------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def sink_settings(runtime_settings: Settings, unique: str, **sink: Any) -> Settings:
    values = {"subscription": f"sink-test-{unique}", "batch_size": 500, "max_latency_ms": 50, "retry_max_s": 0.5}
    return runtime_settings.with_overrides(sink={**values, **sink})


@contextlib.contextmanager
def running(sink: PostgresSink) -> Iterator[PostgresSink]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:
            errors.append(exc)
            raise

    th = threading.Thread(target=target, name=sink.name, daemon=True)
    th.start()
    try:
        yield sink
    finally:
        stop.set()
        th.join(timeout=DEADLINE_S)
        assert not th.is_alive(), "sink did not stop"
    assert not errors, errors


@contextlib.contextmanager
def publisher(settings: Settings, endpoints: Endpoints, unique: str) -> Iterator[EventPublisher]:
    bus = Bus(settings, endpoints.pulsar_url)
    try:
        yield EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
    finally:
        bus.close()


def publish_all(pub: EventPublisher, events: list[Any]) -> None:
    for ev in events:
        pub.publish(ev)
    pub.flush()
    wait_for(lambda: pub.stats.pending == 0, "publish acks")
    assert pub.stats.total_failed == 0, pub.stats.last_error


def rows(db_url: str, table: str, symbol: str, columns: str = "*") -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            f"SELECT {columns} FROM {table} WHERE symbol = %s ORDER BY ts_event_ns, seq",  # test-only, fixed names
            (symbol,),
        ).fetchall()


def count(db_url: str, table: str, symbol: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE symbol = %s", (symbol,)).fetchone()[0]  # type: ignore[index]


def trade(sym: str, i: int, price: str = "45283.50000001", **kw: Any) -> Trade:
    fields: dict[str, Any] = {
        "venue": "kraken",
        "symbol": sym,
        "ts_event": T0 + i * 1_000_123,
        "ts_recv": T0 + i * 1_000_123 + 777,
        "seq": i,
        "price": D(price),
        "size": D("0.00123400"),
        "side": "buy" if i % 2 else "sell",
        "trade_id": f"t{i}",
        "ord_type": "limit" if i % 2 else None,
    }
    fields.update(kw)
    return Trade(**fields)


def as_time(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


@pytest.fixture(scope="module", autouse=True)
def schema(endpoints: Endpoints) -> None:
    ensure_schema(endpoints.database_url)
    ensure_schema(endpoints.database_url)  # idempotent


# -- the writer on its own ---------------------------------------------------------------------------------
def test_writer_counts_new_rows_and_reconnects(endpoints: Endpoints, unique: str) -> None:
    sym = f"W{unique[:6].upper()}/USD"
    batch = [to_row(trade(sym, i))[1] for i in range(50)]  # type: ignore[index]
    app = f"writer-{unique}"
    with CopyWriter(endpoints.database_url, application_name=app) as writer:
        assert writer.write({"trades": batch}) == {"trades": 50}
        assert writer.write({"trades": batch[:10] + batch[:10]}) == {"trades": 0}  # duplicates, even within a batch
        assert writer.write({"trades": []}) == {}

        with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchone()
        assert killed == (1,)
        more = [to_row(trade(sym, i))[1] for i in range(50, 60)]  # type: ignore[index]
        with pytest.raises(DatabaseUnavailable):
            writer.write({"trades": more})
        assert writer.write({"trades": more}) == {"trades": 10}
        assert writer.connects == 2

        bad = to_row(trade(sym, 99, price="1E+131072"))[1]  # type: ignore[index]
        with pytest.raises(RowsRejected, match="numeric"):
            writer.write({"trades": [*batch, bad]})
        assert writer.write({"trades": [to_row(trade(sym, 100))[1]]}) == {"trades": 1}  # type: ignore[index]
    assert count(endpoints.database_url, "trades", sym) == 61


def test_writer_direct_copy_falls_back_to_staging_on_a_duplicate_and_stays_atomic(
    endpoints: Endpoints, unique: str
) -> None:
    from sinks.postgres.writer import STAGING_AFTER_DUPLICATE

    sym = f"D{unique[:6].upper()}/USD"
    rows = [to_row(trade(sym, i))[1] for i in range(100)]  # type: ignore[index]
    with CopyWriter(endpoints.database_url, application_name=f"direct-{unique}") as writer:
        assert writer.write({"trades": rows[:40]}) == {"trades": 40}
        assert (writer.direct_writes, writer.direct_fallbacks) == (1, 0)
        # one duplicate among new rows, next to another table: the direct COPY is rolled back to its savepoint,
        # the rows go through staging, and the other table's rows commit in the same transaction
        gap = Status(venue="kraken", symbol=sym, ts_event=T0, ts_recv=T0, seq=1, kind="gap", detail="x")
        assert writer.write({"gaps": [to_row(gap)[1]], "trades": rows[39:60]}) == {"gaps": 1, "trades": 20}  # type: ignore[index]
        assert (writer.direct_writes, writer.direct_fallbacks) == (2, 1)
        for k in range(STAGING_AFTER_DUPLICATE):  # staging for a while (redeliveries come in runs) …
            assert writer.write({"trades": [rows[60 + k]]}) == {"trades": 1}
        assert writer.direct_writes == 2
        assert writer.write({"trades": rows[60 + STAGING_AFTER_DUPLICATE :]}) == {
            "trades": 40 - STAGING_AFTER_DUPLICATE
        }
        assert writer.direct_writes == 3  # … then direct again
        bad = to_row(trade(sym, 999, price="1E+131072"))[1]  # type: ignore[index]
        with pytest.raises(RowsRejected, match="numeric"):
            writer.write({"trades": [to_row(trade(sym, 1000))[1], bad]})  # type: ignore[index]
    assert count(endpoints.database_url, "trades", sym) == 100
    assert count(endpoints.database_url, "gaps", sym) == 1
    with CopyWriter(endpoints.database_url, direct=False) as staged:
        assert staged.write({"trades": rows[:10]}) == {"trades": 0}
        assert staged.direct_writes == staged.direct_fallbacks == 0


# -- the service ----------------------------------------------------------------------------------------
def test_sink_stores_exact_rows_and_ignores_duplicates(
    runtime_settings: Settings, endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    settings = sink_settings(runtime_settings, unique)
    sym = f"T{unique[:6].upper()}/USD"
    trades = [trade(sym, 1), trade(sym, 2, price="0.00000001"), trade(sym, 3, price="123456789012.1000")]

    def at(offset: int, seq: int) -> dict[str, Any]:
        return {"venue": "kraken", "symbol": sym, "ts_event": T0 + offset, "ts_recv": T0 + offset + 4, "seq": seq}

    quotes = [
        Quote(**at(5, 1), bid=D("1.10"), bid_size=D("5"), ask=D("1.12"), ask_size=None, tradeable=False),
        Ticker(**at(5, 1), bid=D("1.11"), bid_size=D("6"), ask=D("1.13"), ask_size=D("7"), last=D(1), volume=D(9)),
    ]
    books = [
        BookSnapshot(**at(10, 1), depth=10, bids=(Level(D("99.5"), D("1.50")), Level(D("99.4"), D("2"))), asks=()),
        BookDelta(**at(20, 2), bids=(), asks=(), best_bid=Level(D("99.5"), D("1.25")), best_ask=Level(D("99.7"), D(1))),
        BookDelta(**at(30, 3), bids=(), asks=()),  # no best levels: ignored
    ]
    status = [Status(**at(40, 1), kind="gap", detail="x y")]
    events = trades + quotes + books + status
    db = endpoints.database_url

    every_channel = ("trade", "quote", "ticker", "book", "status")  # tickers too (not in the default list)
    sink = PostgresSink(
        settings, endpoints, topics_for(settings, symbols=[sym], channels=every_channel), status_home=tmp_path
    )
    with publisher(settings, endpoints, unique) as pub, running(sink):
        publish_all(pub, events)
        wait_for(lambda: sink.stats.received == len(events) and sink.stats.batches >= 1, "first delivery stored")
        wait_for(lambda: sum(sink.stats.stored.values()) == 8, f"8 rows stored {sink.stats.as_dict()}")

        cols = "venue, symbol, trade_id, time, ts_event_ns, ts_recv_ns, price, size, side, ord_type, seq"
        got = rows(db, "trades", sym, cols)
        assert got == [
            (
                "kraken",
                sym,
                t.trade_id,
                as_time(t.ts_event),
                t.ts_event,
                t.ts_recv,
                t.price,
                t.size,
                t.side,
                t.ord_type,
                t.seq,
            )
            for t in trades
        ]
        assert [str(r[6]) for r in got] == ["45283.50000001", "1E-8", "123456789012.1000"]  # digits and scale
        assert [str(r[7]) for r in got] == ["0.00123400"] * 3
        assert sorted(rows(db, "quotes", sym, "channel, bid, bid_size, ask, ask_size, tradeable, time")) == [
            ("quote", D("1.10"), D("5"), D("1.12"), None, False, as_time(T0 + 5)),
            ("ticker", D("1.11"), D("6"), D("1.13"), D("7"), True, as_time(T0 + 5)),
        ]
        assert rows(db, "book_top", sym, "seq, bid, bid_size, ask, ask_size") == [
            (1, D("99.5"), D("1.50"), None, None),
            (2, D("99.5"), D("1.25"), D("99.7"), D("1")),
        ]
        assert rows(db, "gaps", sym, "kind, detail, ts_event_ns, ts_recv_ns, seq") == [
            ("gap", "x y", T0 + 40, T0 + 44, 1)
        ]
        assert sink.stats.ignored == 1 and sink.stats.dead_lettered == 0
        assert sink.stats.last_event_ns[f"kraken:{sym}"] == T0 + 3 * 1_000_123

        def status_with_a_batch() -> dict[str, Any] | None:
            doc = read_status(tmp_path, "sink-postgres")
            return doc if doc and doc["counters"]["batches"] else None

        status_doc = wait_for(status_with_a_batch, "a status file reporting the commit")
        assert status_doc["alive"] and status_doc["counters"]["stored"]["trades"] == 3
        assert status_doc["counters"]["commit_p99_ms"] is not None

        # The same events again (a redelivery): nothing new is stored.
        publish_all(pub, events)
        wait_for(lambda: sink.stats.duplicates == 8 and sink.stats.ignored == 2, "duplicates processed")
        assert sum(sink.stats.stored.values()) == 8
        assert {t: count(db, t, sym) for t in ("trades", "quotes", "book_top", "gaps")} == {
            "trades": 3,
            "quotes": 2,
            "book_top": 2,
            "gaps": 1,
        }
    final = read_status(tmp_path, "sink-postgres")  # kept on a clean stop, with the final counters
    assert final is not None and final["state"] == "stopped" and final["counters"]["stored"]["trades"] == 3


def test_poison_messages_are_dead_lettered_and_the_rest_lands(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    settings = sink_settings(runtime_settings, unique, max_latency_ms=1000)
    sym = f"P{unique[:6].upper()}/USD"
    trade_topic = topic("crypto", "kraken", sym, "trade")
    garbage = b"\x00\xffnot json at all{"
    overflow = trade(sym, 3, price="1E+131072")  # decodes and maps, but PostgreSQL's numeric cannot hold it
    bus = Bus(settings, endpoints.pulsar_url)
    try:
        dlq = bus.subscribe(dead_letter_topic("sink.postgres"), f"dlq-{unique}", earliest=True)
        pub = EventPublisher(bus, "crypto", producer_prefix=f"test-{unique}")
        pub.publish(trade(sym, 1))
        pub.publish_raw(trade_topic, garbage, {"type": "trade"}, key=sym)
        pub.publish(trade(sym, 2))
        pub.publish(overflow)
        pub.publish(trade(sym, 4))
        pub.flush()

        sink = PostgresSink(settings, endpoints, topics_for(settings, symbols=[sym], channels=["trade"]))
        with running(sink):
            wait_for(lambda: count(endpoints.database_url, "trades", sym) == 3, "the 3 valid trades")
            wait_for(lambda: sink.stats.dead_lettered == 2, "2 dead letters")
        assert sorted(r[0] for r in rows(endpoints.database_url, "trades", sym, "trade_id")) == ["t1", "t2", "t4"]

        dead: dict[bytes, dict[str, str]] = {}
        end = time.monotonic() + DEADLINE_S
        while len(dead) < 2 and time.monotonic() < end:
            try:
                msg = dlq.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
            dlq.acknowledge(msg)
            if msg.properties().get("source_topic") == trade_topic:
                dead[msg.data()] = msg.properties()
        assert set(dead) == {garbage, pub.codec.encode(overflow)}
        assert dead[garbage]["error"].startswith("CodecError")
        assert dead[pub.codec.encode(overflow)]["error"].startswith("RowsRejected")
        assert "numeric" in dead[pub.codec.encode(overflow)]["error"]
        assert all(p["message_id"] for p in dead.values())
    finally:
        bus.close()


def test_acks_only_after_commit_so_a_restart_stores_nothing_twice(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    # A long max_latency holds the batch open: the messages are received but neither written nor acked
    # until stop asks the sink to commit what it holds.
    settings = sink_settings(runtime_settings, unique, max_latency_ms=60_000, batch_size=10_000)
    sym = f"R{unique[:6].upper()}/USD"
    db = endpoints.database_url
    topics = topics_for(settings, symbols=[sym], channels=["trade"])
    with publisher(settings, endpoints, unique) as pub:
        first = PostgresSink(settings, endpoints, topics)
        with running(first):
            publish_all(pub, [trade(sym, i) for i in range(20)])
            wait_for(lambda: first.stats.received == 20, "20 messages in the open batch")
            assert count(db, "trades", sym) == 0 and first.stats.batches == 0
        # stop committed and acked the batch in hand
        assert count(db, "trades", sym) == 20
        assert first.stats.batches == 1 and first.stats.stored["trades"] == 20

        fast = sink_settings(runtime_settings, unique)  # same subscription
        second = PostgresSink(fast, endpoints, topics)
        with running(second):
            publish_all(pub, [trade(sym, 20)])  # a sentinel behind anything that could be redelivered
            wait_for(lambda: count(db, "trades", sym) == 21, "the sentinel")
            wait_for(lambda: second.stats.batches >= 1, "the sentinel's batch")
            assert second.stats.received == 1 and second.stats.duplicates == 0


class _Proxy:
    """A TCP forwarder to PostgreSQL that the test can cut (drop every connection, refuse new ones) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def cut(self) -> None:
        self.up = False
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


def test_database_outage_keeps_the_batch_and_retries(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    settings = sink_settings(runtime_settings, unique)
    sym = f"O{unique[:6].upper()}/USD"
    db = endpoints.database_url
    info = psycopg.conninfo.conninfo_to_dict(db)
    proxy = _Proxy((str(info.get("host", "127.0.0.1")), int(info["port"])))
    via_proxy = psycopg.conninfo.make_conninfo(db, host="127.0.0.1", port=str(proxy.port))
    sink = PostgresSink(
        settings, dataclasses.replace(endpoints, database_url=via_proxy), topics_for(settings, symbols=[sym])
    )
    try:
        with publisher(settings, endpoints, unique) as pub, running(sink):
            publish_all(pub, [trade(sym, i) for i in range(5)])
            wait_for(lambda: count(db, "trades", sym) == 5, "first 5 trades")

            proxy.cut()
            publish_all(pub, [trade(sym, i) for i in range(5, 10)])
            wait_for(lambda: sink.stats.db_errors >= 2, "write retries while the database is unreachable")
            assert count(db, "trades", sym) == 5  # nothing of the second batch committed…
            assert sink.stats.received == 10 and sink.stats.batches == 1  # …nor acked

            proxy.restore()
            wait_for(lambda: count(db, "trades", sym) == 10, "the held batch after the database is back")
            wait_for(lambda: sink.stats.batches == 2, "the second commit")
            assert sink.stats.stored["trades"] == 10 and sink.stats.duplicates == 0
    finally:
        proxy.close()
