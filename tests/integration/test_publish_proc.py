"""The publisher process (pulse.publish_proc) against the REAL embedded broker: what reaches the broker is
exactly what the in-process EventPublisher sends, counts are exact, and the child's life is tied to its parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pulsar
import pytest

from pulse.bus import Bus, EventPublisher
from pulse.codec import decode_any
from pulse.errors import BusError
from pulse.models import Event, Level, Quote, Trade
from pulse.publish_proc import OffloadedPublisher, open_publisher
from pulse.runtime import Endpoints
from pulse.runtime.procs import free_port, pid_alive
from pulse.settings import Settings
from tests.consume import drain

REPO = Path(__file__).resolve().parents[2]


def events(venue: str, n: int) -> list[Event]:
    """Quotes with ladders and trades over three instruments, in a known order."""
    out: list[Event] = []
    t0 = time.time_ns()
    for i in range(n):
        sym = ("EUR/USD", "USD/JPY", "GBP/USD")[i % 3]
        ts = t0 + i * 1000
        if i % 4 == 3:
            out.append(Trade(venue=venue, symbol=sym, ts_event=ts, ts_recv=ts, seq=i, price=Decimal("1.1") + i,
                             size=Decimal("0.5"), side="buy", trade_id=str(i)))  # fmt: skip
        else:
            bid, ask = Decimal(f"1.{i:05d}"), Decimal(f"1.{i + 2:05d}")
            out.append(Quote(venue=venue, symbol=sym, ts_event=ts, ts_recv=ts, seq=i, bid=bid, bid_size=Decimal(1),
                             ask=ask, ask_size=Decimal(2), bids=(Level(bid, Decimal(1)),),
                             asks=(Level(ask, Decimal(2)), Level(ask + 1, Decimal(5)))))  # fmt: skip
    return out


def read_all(bus: Bus, topics: list[str], expected: int, sub: str) -> list[pulsar.Message]:
    consumer = bus.subscribe(topics, sub)
    try:
        return drain(consumer, expected, deadline_s=15, take=lambda m: [m])
    finally:
        consumer.close()


def as_seen(msgs: list[pulsar.Message]) -> list[tuple[object, ...]]:
    """What a consumer sees of each message, in per-topic order."""
    rows = [(m.topic_name(), m.partition_key(), m.event_timestamp(), m.properties(), decode_any(m.data()))
            for m in msgs]  # fmt: skip
    return sorted(rows, key=lambda r: (r[0], r[4].seq))  # type: ignore[attr-defined]


async def publish_in_a_loop(pub: EventPublisher | OffloadedPublisher, evs: list[Event]) -> None:
    """Publish as an ingester does: runs of events, then back to the event loop."""
    for i, ev in enumerate(evs):
        pub.publish(ev)
        if i % 50 == 49:
            await asyncio.sleep(0)


def test_the_broker_gets_the_same_messages_as_from_the_in_process_publisher(
    runtime_settings: Settings, endpoints: Endpoints, unique: str
) -> None:
    n = 1000
    seen = {}
    for kind in ("inline", "process"):
        venue = f"pp{kind}{unique}"
        evs = events(venue, n)
        if kind == "inline":
            bus = Bus(runtime_settings, endpoints.pulsar_url)
            pub: EventPublisher | OffloadedPublisher = EventPublisher(
                bus, "fx", producer_prefix=f"t-{venue}", owns_bus=True
            )
        else:
            pub = OffloadedPublisher(runtime_settings, endpoints.pulsar_url, "fx", producer_prefix=f"t-{venue}")
            assert pid_alive(pub.pid) and pub.pid != os.getpid()
        asyncio.run(publish_in_a_loop(pub, evs))
        pub.flush()
        topics = sorted({pub.topic_for(e) for e in evs})
        assert len(topics) == 6  # 3 instruments x (quote, trade)
        assert pub.stats.total_acked == n and pub.stats.pending == 0 and pub.stats.total_failed == 0
        assert pub.stats.events_acked == n
        pub.close()
        if kind == "process":
            assert not pid_alive(pub.pid), "the publisher process must exit when closed"
        reader = Bus(runtime_settings, endpoints.pulsar_url)
        try:
            msgs = read_all(reader, topics, n, f"t-read-{venue}")
        finally:
            reader.close()
        assert len(msgs) == n
        # the venue name differs per run: compare everything else
        seen[kind] = [(t.replace(venue, "V"), k, p, ev.ts_event - evs[0].ts_event, ev.seq)
                      for t, k, _ts, p, ev in as_seen(msgs)]  # fmt: skip
        assert all(ts == ev.ts_event // 1_000_000 for _t, _k, ts, _p, ev in as_seen(msgs))  # event time, in ms
        by_seq = {e.seq: e for e in evs}
        for *_, ev in as_seen(msgs):
            assert ev == by_seq[ev.seq]  # every field, ladders included
    assert seen["inline"] == seen["process"]
    assert seen["process"][0][2] == {"type": "quote", "schema_version": "1", "format": "json"}


def test_dead_letters_and_acks_pass_through(runtime_settings: Settings, endpoints: Endpoints, unique: str) -> None:
    acks: list[tuple[str, int, int]] = []
    pub = OffloadedPublisher(
        runtime_settings, endpoints.pulsar_url, "fx", producer_prefix=f"t-dl-{unique}",
        on_ack=lambda t, ts, at: acks.append((t, ts, at)),
    )  # fmt: skip
    dlq = f"persistent://{runtime_settings.pulsar.tenant}/fx/dlq-{unique}"
    try:
        evs = events(f"dl{unique}", 200)
        asyncio.run(publish_in_a_loop(pub, evs))
        pub.publish_raw(dlq, b"\xff not json", {"error": "bad line", "kind": "parse_error"}, key="EUR/USD")
        pub.flush()
        assert pub.stats.total_acked == 201 and pub.stats.acked[dlq] == 1
        assert acks, "sampled acks reach on_ack"
        assert all(at >= ts for _t, ts, at in acks)
    finally:
        pub.close()
    reader = Bus(runtime_settings, endpoints.pulsar_url)
    try:
        [msg] = read_all(reader, [dlq], 1, f"t-dlq-{unique}")
    finally:
        reader.close()
    assert msg.data() == b"\xff not json"
    assert msg.properties() == {"error": "bad line", "kind": "parse_error"}
    assert msg.partition_key() == "EUR/USD"


def test_a_dead_publisher_process_is_a_clear_error(runtime_settings: Settings, endpoints: Endpoints) -> None:
    pub = OffloadedPublisher(runtime_settings, endpoints.pulsar_url, "fx", producer_prefix="t-dead")
    os.kill(pub.pid, signal.SIGKILL)
    with pytest.raises(BusError, match=r"publisher process .*exited with code -9"):
        for ev in events("dead", 100):
            pub.publish(ev)
        pub.flush()
    pub.close()
    assert not pid_alive(pub.pid)


def test_an_unreachable_broker_fails_the_flush_instead_of_hanging(runtime_settings: Settings) -> None:
    s = runtime_settings.with_overrides(pulsar={"operation_timeout_s": 2})
    pub = OffloadedPublisher(s, f"pulsar://127.0.0.1:{free_port()}", "fx", producer_prefix="t-unreach")
    try:
        with pytest.raises(BusError, match="cannot create producer"):
            pub.publish(events("unreach", 1)[0])
            pub.flush()
    finally:
        pub.close()
    assert not pid_alive(pub.pid)


def test_the_child_outlives_sigterm_and_exits_with_its_parent(
    runtime_settings: Settings, endpoints: Endpoints, tmp_path: Path
) -> None:
    """SIGTERM reaches a whole process group (systemd, Ctrl-C): the child must stay until the parent has flushed.
    A parent killed outright closes the pipe, and the child exits too."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time, msgspec
        from pulse.publish_proc import OffloadedPublisher
        from pulse.settings import Settings
        s = msgspec.json.decode({msgspec_json(runtime_settings)!r}, type=Settings)
        pub = OffloadedPublisher(s, {endpoints.pulsar_url!r}, "fx", producer_prefix="t-orphan")
        print(pub.pid, flush=True)
        time.sleep(120)
    """)
    )
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        os.kill(child, signal.SIGTERM)
        time.sleep(0.5)
        assert pid_alive(child), "the publisher process must ignore SIGTERM (its parent flushes through it)"
        parent.kill()
        parent.wait(10)
        end = time.monotonic() + 15
        while pid_alive(child) and time.monotonic() < end:
            time.sleep(0.05)
        assert not pid_alive(child), "the publisher process must exit when its parent is gone"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_open_publisher_follows_the_setting(runtime_settings: Settings, endpoints: Endpoints) -> None:
    on = open_publisher(runtime_settings.with_overrides(pulsar={"publish_process": "on"}), endpoints.pulsar_url,
                        "fx", producer_prefix="t-on")  # fmt: skip
    off = open_publisher(runtime_settings.with_overrides(pulsar={"publish_process": "off"}), endpoints.pulsar_url,
                         "fx", producer_prefix="t-off")  # fmt: skip
    try:
        assert isinstance(on, OffloadedPublisher) and pid_alive(on.pid)
        assert isinstance(off, EventPublisher) and off.owns_bus
    finally:
        on.close()
        off.close()


def msgspec_json(settings: Settings) -> str:
    import msgspec

    return msgspec.json.encode(settings).decode()
