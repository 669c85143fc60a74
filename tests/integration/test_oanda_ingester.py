"""The OANDA ingester end to end: the local OANDA venue (real HTTP, real chunked stream) → OandaIngester →
a REAL pulsar-lite broker, read back with fresh Shared subscriptions. No mocks.

Topics are shared by the whole session, so every test reads only what was stamped (``ts_recv``) after it
began, and dead letters by their ``source`` property (the test's own ingester name).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pulsar
import pytest

from ingesters.base.context import IngestContext
from ingesters.oanda.parser import OandaMessageError, OandaStreamParser
from ingesters.oanda.service import OandaIngester
from ingesters.oanda.settings import OandaSettings
from ingesters.oanda.simulator import OandaFaults, OandaSimulator
from pulse.bus import Bus, EventPublisher
from pulse.codec import decode_any
from pulse.errors import FatalVenueError
from pulse.models import Event, Level, Quote, Status
from pulse.publish_proc import OffloadedPublisher
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import dead_letter_topic, topic
from tests.consume import drain

TOKEN = "oanda-s3cr3t-TOKEN-6f1d2c9a8b7e"
ACCOUNT = "101-004-7654321-001"
PAIRS = ["EUR_USD", "USD_JPY"]
FAST = OandaSettings(
    account_id=ACCOUNT, stale_after_s=2.0, connect_timeout_s=2.0, backoff_initial_s=0.05, backoff_max_s=0.2
)
MONDAY = datetime(2024, 1, 8, 12, 0, tzinfo=UTC)  # FX market open
SATURDAY = datetime(2024, 1, 6, 12, 0, tzinfo=UTC)  # FX weekend close
DEADLINE_S = 8.0
DLQ = dead_letter_topic("ingest.oanda")


# -- harness ---------------------------------------------------------------------------------------------
class Harness:
    """A real publisher on the ``fx`` namespace and an IngestContext, as ``run_ingester`` builds them: in this
    process (``inline``) or through a publisher process (``process``, pulsar.publish_process)."""

    def __init__(self, settings: Settings, endpoints: Endpoints, unique: str, home: Path, kind: str) -> None:
        self.name = f"ingest-oanda-{unique}"
        self.unique = unique
        self.bus = Bus(settings, endpoints.pulsar_url)
        self.publisher: EventPublisher | OffloadedPublisher = (
            OffloadedPublisher(settings, endpoints.pulsar_url, "fx", producer_prefix=self.name)
            if kind == "process"
            else EventPublisher(self.bus, "fx", producer_prefix=self.name)
        )
        self.ctx = IngestContext(self.publisher, venue="oanda", name=self.name, status_home=home)
        self.t0 = time.time_ns()

    def ingester(
        self, sim: OandaSimulator, instruments: list[str] = PAIRS, settings: OandaSettings = FAST, **kw: Any
    ) -> OandaIngester:
        kw.setdefault("now", lambda: MONDAY)
        kw.setdefault("token", sim.token)
        return OandaIngester(settings, self.ctx, instruments=instruments, api_url=sim.base_url, **kw)

    def flush(self) -> None:
        self.publisher.flush()
        end = time.monotonic() + DEADLINE_S
        while self.publisher.stats.pending and time.monotonic() < end:
            time.sleep(0.01)
        assert self.publisher.stats.pending == 0 and self.publisher.stats.total_failed == 0

    async def read(self, topics: list[str], expected: int) -> list[tuple[str, Event]]:
        """Every event of ``topics`` stamped since the test began, in delivery order (fresh Shared sub)."""
        return await asyncio.to_thread(self._read, topics, expected)

    def _read(self, topics: list[str], expected: int) -> list[tuple[str, Event]]:
        def take(msg: pulsar.Message) -> list[tuple[str, Event]]:
            ev = decode_any(msg.data(), msg.properties())
            return [(msg.topic_name(), ev)] if ev.ts_recv >= self.t0 else []

        consumer = self.bus.subscribe(topics, f"test-oanda-{self.unique}-{time.monotonic_ns()}")
        try:
            return drain(consumer, expected, deadline_s=DEADLINE_S, take=take, wait_ms=500)
        finally:
            consumer.close()

    def read_dead_letters(self, expected: int) -> list[pulsar.Message]:
        consumer = self.bus.subscribe(DLQ, f"test-oanda-dlq-{self.unique}")
        try:
            return drain(consumer, expected, deadline_s=DEADLINE_S, wait_ms=500,
                         take=lambda m: [m] if m.properties().get("source") == self.name else [])  # fmt: skip
        finally:
            consumer.close()

    def close(self) -> None:
        self.publisher.close()
        self.bus.close()


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest, runtime_settings: Settings, endpoints: Endpoints, unique: str, tmp_path: Path
):
    h = Harness(runtime_settings, endpoints, unique, tmp_path, getattr(request, "param", "inline"))
    yield h
    h.close()


@contextlib.asynccontextmanager
async def simulator(**kw: Any) -> AsyncIterator[OandaSimulator]:
    args: dict[str, Any] = dict(
        token=TOKEN, account_id=ACCOUNT, instruments=[*PAIRS, "GBP_USD"], rate=200.0, heartbeat_s=0.2
    )
    args.update(kw)
    sim = OandaSimulator(**args)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def running(ingester: OandaIngester) -> AsyncIterator[asyncio.Task[None]]:
    """Run the ingester as a task; on exit set stop and require a clean return within the deadline."""
    stop = asyncio.Event()
    task = asyncio.create_task(ingester.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


async def wait_for(predicate: Callable[[], Any], what: str, task: asyncio.Task[None] | None = None) -> None:
    end = time.monotonic() + DEADLINE_S
    while not predicate():
        if task is not None and task.done():
            task.result()  # surfaces the ingester's exception
            pytest.fail(f"ingester ended while waiting for {what}")
        if time.monotonic() > end:
            pytest.fail(f"timed out after {DEADLINE_S}s waiting for {what}")
        await asyncio.sleep(0.02)


def quote_topic(instrument: str) -> str:
    return topic("fx", "oanda", instrument.replace("_", "/"), "quote")


def status_topic(instrument: str) -> str:
    return topic("fx", "oanda", instrument.replace("_", "/"), "status")


def rfc3339_ns(text: str) -> int:
    """The simulator writes ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``; decoded here without the code under test."""
    secs = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int(text[20:29])


def expected_quotes(sent: list[bytes]) -> dict[str, list[tuple[Any, ...]]]:
    """What each sent PRICE line must become, per canonical symbol, in sending order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for line in sent:
        try:
            msg = json.loads(line)
            if msg.get("type") != "PRICE":
                continue
            bids = tuple(Level(Decimal(b["price"]), Decimal(b["liquidity"])) for b in msg["bids"])
            asks = tuple(Level(Decimal(a["price"]), Decimal(a["liquidity"])) for a in msg["asks"])
        except (ValueError, KeyError, InvalidOperation):
            continue  # an injected malformed line
        symbol = msg["instrument"].replace("_", "/")
        out.setdefault(symbol, []).append(
            (
                symbol,
                rfc3339_ns(msg["time"]),
                bids[0].price,
                bids[0].size,
                asks[0].price,
                asks[0].size,
                bids,
                asks,
                msg["tradeable"],
            )
        )
    return out


def as_tuple(q: Quote) -> tuple[Any, ...]:
    return (q.symbol, q.ts_event, q.bid, q.bid_size, q.ask, q.ask_size, q.bids, q.asks, q.tradeable)


def by_symbol(events: list[tuple[str, Event]], kind: type) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for _, ev in events:
        if isinstance(ev, kind):
            out.setdefault(ev.symbol, []).append(ev)
    return out


def sim_requests(sim: OandaSimulator) -> int:
    st = sim.stats
    return st.connections + st.rejected_auth + st.rejected_account + st.rejected_instruments + st.rejected_injected


# -- tests -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("harness", ["inline", "process"], indirect=True)
async def test_quotes_reach_the_broker_exactly_as_the_venue_sent_them(
    harness: Harness, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    async with simulator() as sim:
        ingester = harness.ingester(sim)
        ctx = harness.ctx
        async with running(ingester) as task:
            await wait_for(lambda: ctx.counters.events >= 80 and sim.stats.heartbeats >= 1, "80 quotes", task)
        sent = list(sim.sent)
    harness.flush()
    published = ctx.counters.events
    events = await harness.read([quote_topic(i) for i in PAIRS], published)
    quotes = by_symbol(events, Quote)
    assert sum(len(v) for v in quotes.values()) == published, "every published quote is on the broker, once"
    assert set(quotes) == {"EUR/USD", "USD/JPY"}
    expected = expected_quotes(sent)
    for symbol, got in quotes.items():
        assert [q.seq for q in got] == list(range(1, len(got) + 1)), f"{symbol}: seq 1, 2, 3, … in order"
        assert [as_tuple(q) for q in got] == expected[symbol][: len(got)], f"{symbol}: quotes differ from the wire"
        assert {q.venue for q in got} == {"oanda"}
    # The snapshot line (first price of each instrument) starts on the walk's known value, exactly.
    eur = quotes["EUR/USD"][0]
    assert (eur.bid, eur.ask, eur.tradeable) == (Decimal("1.09993"), Decimal("1.10007"), True)
    assert ctx.counters.parse_errors == 0 and ctx.counters.reconnects == 0
    assert ctx.counters.frames >= published + 1  # quotes plus at least one heartbeat
    statuses = await harness.read([status_topic(i) for i in PAIRS], 2)
    assert {(ev.symbol, ev.kind) for _, ev in statuses if isinstance(ev, Status)} == {
        ("EUR/USD", "connected"),
        ("USD/JPY", "connected"),
    }
    status_file = (tmp_path / "run" / f"{harness.name}.json").read_text()
    assert TOKEN not in caplog.text and TOKEN not in status_file and TOKEN not in repr(ingester)
    assert any("connected" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("harness", ["inline", "process"], indirect=True)
async def test_disconnect_reconnects_and_marks_a_gap(harness: Harness) -> None:
    async with simulator(faults=OandaFaults(disconnect_after=25, connections=1)) as sim:
        ctx = harness.ctx
        async with running(harness.ingester(sim)) as task:
            await wait_for(lambda: ctx.counters.reconnects >= 1 and sim.stats.connections >= 2, "a reconnect", task)
            await wait_for(lambda: sim.stats.prices >= 60, "quotes after the reconnect", task)
    assert sim.stats.disconnects == 1
    assert ctx.counters.reconnects >= 1 and ctx.counters.gaps == len(PAIRS)
    harness.flush()
    events = await harness.read([quote_topic(i) for i in PAIRS], ctx.counters.events + ctx.counters.gaps)
    for instrument in PAIRS:
        symbol = instrument.replace("_", "/")
        mine = [ev for t, ev in events if t == quote_topic(instrument)]
        kinds = ["quote" if isinstance(ev, Quote) else ev.kind for ev in mine]
        assert kinds.count("gap") == 1, f"{symbol}: one gap marker on the quote topic"
        at = kinds.index("gap")
        assert "quote" in kinds[:at] and "quote" in kinds[at + 1 :], f"{symbol}: gap between two sessions' quotes"
        seqs = [ev.seq for ev in mine if isinstance(ev, Quote)]
        assert all(a < b for a, b in pairwise(seqs)), f"{symbol}: seq keeps rising across the reconnect"


async def test_silent_stream_trips_the_stale_watchdog(harness: Harness) -> None:
    # The venue stops sending anything (not even heartbeats) after 10 lines on the first connection.
    faults = OandaFaults(stall_after=10, connections=1)
    async with simulator(faults=faults, heartbeat_s=30.0) as sim:
        ctx = harness.ctx
        ingester = OandaIngester(
            msgspec.structs.replace(FAST, stale_after_s=0.5), ctx, instruments=PAIRS, token=TOKEN,
            api_url=sim.base_url, now=lambda: MONDAY,
        )  # fmt: skip
        async with running(ingester) as task:
            await wait_for(lambda: ctx.counters.stale == 1 and sim.stats.connections >= 2, "stale, reconnect", task)
            await wait_for(lambda: ctx.counters.events > 10, "quotes after the reconnect", task)
    assert ctx.counters.reconnects >= 1 and ctx.counters.gaps == len(PAIRS)


@pytest.mark.parametrize("harness", ["inline", "process"], indirect=True)
async def test_malformed_lines_are_counted_and_dead_lettered(harness: Harness) -> None:
    # 40 lines, every 5th malformed, then the venue goes quiet: exactly 8 malformed lines, deterministically.
    faults = OandaFaults(malformed_every=5, stall_after=40, connections=1)
    async with simulator(faults=faults, heartbeat_s=30.0) as sim:
        ctx = harness.ctx
        async with running(harness.ingester(sim)) as task:
            await wait_for(lambda: sim.stats.stalls == 1, "the stall", task)
            await wait_for(lambda: ctx.counters.frames == 40, "all 40 lines read", task)
        sent = list(sim.sent)
    assert sim.stats.malformed == 8
    assert ctx.counters.parse_errors == sim.stats.malformed == ctx.counters.dead_letters
    assert ctx.counters.events == 32  # the connection stayed up: every good line became a quote
    harness.flush()
    dead = await asyncio.to_thread(harness.read_dead_letters, 8)
    assert len(dead) == 8
    parser = OandaStreamParser()
    for msg in dead:
        props = msg.properties()
        assert (props["kind"], props["venue"]) == ("parse_error", "oanda")
        assert msg.data() in sent, "the dead letter keeps the venue's raw line"
        with pytest.raises(OandaMessageError):
            parser.feed_line(msg.data())


async def test_a_restarted_ingester_marks_the_gap_since_its_previous_run(harness: Harness, tmp_path: Path) -> None:
    # The first run leaves its status file (last tick per instrument); a new process with the same name starts
    # by marking the hole since then. Before, `_need_gap` started False and nothing was marked.
    async with simulator() as sim:
        first = harness.ingester(sim)
        async with running(first) as task:
            await wait_for(lambda: all(s in harness.ctx.last_tick for s in ("EUR/USD", "USD/JPY")), "quotes", task)
        assert harness.ctx.counters.gaps == 0
        again = IngestContext(harness.publisher, venue="oanda", name=harness.name, status_home=tmp_path)
        second = OandaIngester(
            FAST, again, instruments=PAIRS, token=sim.token, api_url=sim.base_url, now=lambda: MONDAY
        )
        async with running(second) as task:
            await wait_for(lambda: again.counters.events > 10, "quotes of the second run", task)
    assert again.counters.gaps == len(PAIRS) and again.counters.reconnects == 0
    harness.flush()
    got = await harness.read([quote_topic(p) for p in PAIRS], harness.ctx.counters.events + again.counters.events)
    gaps = [ev for _, ev in got if isinstance(ev, Status) and ev.kind == "gap"]
    assert sorted(ev.symbol for ev in gaps) == ["EUR/USD", "USD/JPY"]
    assert all("restarted" in ev.detail for ev in gaps)


async def test_a_pairs_first_event_is_on_disk_before_the_next_periodic_write(harness: Harness, tmp_path: Path) -> None:
    # A SIGKILL between a pair's first event and the next status write (every 0.5 s) left the restarted process
    # without that pair's hole to mark (the fault suite's kill-ingester case on Apache Pulsar, 3 markers of 4).
    name = f"{harness.name}-first"
    ctx = IngestContext(harness.publisher, venue="oanda", name=name, status_home=tmp_path)
    ts = time.time_ns()
    q = Quote(venue="oanda", symbol="EUR/USD", ts_event=ts, ts_recv=ts, bid=Decimal("1.1"), bid_size=Decimal(1),
              ask=Decimal("1.2"), ask_size=Decimal(1))  # fmt: skip
    ctx.publish(q)  # no status loop runs: only the first-event write can have put it on disk
    after = IngestContext(harness.publisher, venue="oanda", name=name, status_home=tmp_path)
    assert after.previous_run == {"EUR/USD": ts}
    harness.flush()


HOSTILE_LINES = (
    b'{"type":"PRICE","bids":' + b"[" * 1000 + b"]" * 1000 + b"}",  # nested 1,000 deep: RecursionError
    b'{"type":"HEARTBEAT","time":"2024-01-01T00:00:00.000000000Z\xff"}',  # invalid UTF-8
    b"\xff\xfe" + b"[" * 5000,
)


async def test_hostile_lines_are_dead_lettered_and_the_connection_kept(harness: Harness) -> None:
    # Deep nesting and invalid UTF-8 once escaped the parser as RecursionError/UnicodeDecodeError: the
    # session reconnected (with a gap marker) instead of dead-lettering the line.
    faults = OandaFaults(malformed_every=4, stall_after=36, connections=1, malformed_lines=HOSTILE_LINES)
    async with simulator(faults=faults, heartbeat_s=30.0) as sim:
        ctx = harness.ctx
        async with running(harness.ingester(sim)) as task:
            await wait_for(lambda: ctx.counters.frames == 36, "all 36 lines read", task)
    assert sim.stats.malformed == 9 and sim.stats.connections == 1
    assert ctx.counters.parse_errors == ctx.counters.dead_letters == 9
    assert ctx.counters.reconnects == 0 and ctx.counters.gaps == 0
    assert ctx.counters.events == 27
    harness.flush()
    dead = await asyncio.to_thread(harness.read_dead_letters, 9)
    assert sorted(m.data() for m in dead) == sorted(HOSTILE_LINES[i % 3] for i in range(9))
    assert all(m.properties()["kind"] == "parse_error" for m in dead)


async def test_malformed_line_warnings_are_rate_limited_with_a_summary(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Every malformed line was its own warning: a venue sending garbage flooded the log.
    caplog.set_level(logging.WARNING, logger="ingesters.base.context")
    faults = OandaFaults(malformed_every=2, stall_after=120, connections=1)
    async with simulator(faults=faults, heartbeat_s=30.0) as sim:
        ctx = harness.ctx
        async with running(harness.ingester(sim)) as task:
            await wait_for(lambda: ctx.counters.frames == 120, "all 120 lines read", task)
    assert ctx.counters.parse_errors == ctx.counters.dead_letters == 60  # each still counted and dead-lettered
    lines = [r.getMessage() for r in caplog.records if r.name == "ingesters.base.context"]
    assert len([m for m in lines if m == "parse error"]) == 10
    summaries = [r for r in caplog.records if r.getMessage() == "parse error: more not logged"]
    assert len(summaries) == 1 and summaries[0].fields["not_logged"] == 50  # type: ignore[attr-defined]


async def test_bad_token_is_fatal_quickly_and_never_leaks(
    harness: Harness, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "WRONG-token-9c8b7a6f5e4d3c2b1a"
    async with simulator() as sim:
        ingester = harness.ingester(sim, token=bad)
        began = time.monotonic()
        with pytest.raises(FatalVenueError) as info:
            await asyncio.wait_for(ingester.run(asyncio.Event()), 5.0)
        elapsed = time.monotonic() - began
    assert elapsed < 5.0
    assert sim.stats.rejected_auth == 1, "no retry storm: one request, then stop"
    message = str(info.value)
    assert "oanda.token" in message and "401" in message
    out = capsys.readouterr()
    status_file = (tmp_path / "run" / f"{harness.name}.json").read_text()
    summary = json.dumps(harness.ctx.snapshot(), default=str)
    for text in (message, repr(info.value), repr(ingester), caplog.text, out.out, out.err, status_file, summary):
        assert bad not in text and TOKEN not in text


async def test_refused_instrument_is_dropped_and_the_rest_stream(harness: Harness) -> None:
    async with simulator() as sim:
        ctx = harness.ctx
        ingester = harness.ingester(sim, instruments=["EUR_USD", "ZZZ_USD"])
        async with running(ingester) as task:
            await wait_for(lambda: ctx.counters.events >= 10, "EUR/USD quotes", task)
    assert ctx.counters.rejected == 1 and set(ingester.rejected) == {"ZZZ_USD"}
    assert ingester.active_instruments == ["EUR_USD"]
    assert sim.stats.rejected_instruments == 1 and sim.stats.connections == 1
    harness.flush()
    events = await harness.read([quote_topic("EUR_USD")], ctx.counters.events)
    assert len([ev for _, ev in events if isinstance(ev, Quote)]) == ctx.counters.events
    dead = await asyncio.to_thread(harness.read_dead_letters, 1)
    assert [(m.properties()["kind"], m.properties()["instrument"]) for m in dead] == [("rejected", "ZZZ_USD")]
    assert json.loads(dead[0].data())["instrument"] == "ZZZ_USD"


async def test_every_instrument_refused_is_fatal(harness: Harness) -> None:
    async with simulator() as sim:
        with pytest.raises(FatalVenueError, match=r"oanda\.instruments"):
            await asyncio.wait_for(harness.ingester(sim, instruments=["ZZZ_USD"]).run(asyncio.Event()), 5.0)
    assert harness.ctx.counters.rejected == 1 and sim.stats.connections == 0


async def test_closed_market_waits_without_connecting_then_opens(harness: Harness) -> None:
    clock = {"now": SATURDAY, "calls": 0}

    def now() -> datetime:
        clock["calls"] += 1
        return clock["now"]

    async with simulator() as sim:
        ctx = harness.ctx
        ingester = harness.ingester(sim, now=now)
        ingester.market_recheck_s = 0.02
        async with running(ingester) as task:
            await wait_for(lambda: ingester.market_state == "closed", "market closed", task)
            calls = clock["calls"]
            await wait_for(lambda: clock["calls"] >= calls + 30, "several market re-checks", task)
            assert sim_requests(sim) == 0, "no request while the market is closed"
            assert ctx.counters.events == 0
            clock["now"] = MONDAY
            await wait_for(lambda: ctx.counters.events >= 5, "quotes after the open", task)
    assert ingester.market_state == "open"
    harness.flush()
    topics = [quote_topic(i) for i in PAIRS]
    events = await harness.read(topics, ctx.counters.events + 2 * len(PAIRS))
    for instrument in PAIRS:
        mine = [ev for t, ev in events if t == quote_topic(instrument)]
        kinds = ["quote" if isinstance(ev, Quote) else ev.kind for ev in mine]
        assert kinds[:2] == ["market_closed", "market_open"], f"{instrument}: {kinds[:4]}"
        assert set(kinds[2:]) <= {"quote"}
    statuses = await harness.read([status_topic(i) for i in PAIRS], 3 * len(PAIRS))
    assert {(ev.symbol, ev.kind) for _, ev in statuses if isinstance(ev, Status)} >= {
        ("EUR/USD", "market_closed"),
        ("USD/JPY", "market_closed"),
    }


async def test_market_hours_always_streams_on_a_saturday(harness: Harness) -> None:
    """``oanda.market_hours = "always"`` (the demo's local venue streams 24/7): no weekend sleep."""
    always = msgspec.structs.replace(FAST, market_hours="always")
    async with simulator() as sim:
        ingester = harness.ingester(sim, settings=always, now=lambda: SATURDAY)
        async with running(ingester) as task:
            await wait_for(lambda: harness.ctx.counters.events >= 5, "quotes on a Saturday", task)
    assert ingester.market_state != "closed" and sim_requests(sim) >= 1


async def test_control_commands_change_the_instrument_list_without_a_restart(harness: Harness) -> None:
    from pulse.control import InstrumentCommand

    def cmd(op: str, name: str) -> InstrumentCommand:
        return InstrumentCommand(
            op=op, venue="oanda", symbol=name.replace("_", "/"), venue_symbol=name, namespace="fx", channels=("quote",)
        )  # type: ignore[arg-type]

    async with simulator() as sim:
        ingester = harness.ingester(sim, instruments=["EUR_USD"])
        ctx = harness.ctx
        async with running(ingester) as task:
            await wait_for(lambda: "EUR/USD" in ctx.last_tick, "EUR/USD quotes", task)
            await ingester.apply(cmd("add", "GBP_USD"))
            await wait_for(lambda: "GBP/USD" in ctx.last_tick, "GBP/USD quotes after the add", task)
            await ingester.apply(cmd("disable", "EUR_USD"))
            await wait_for(lambda: ctx.extra["instruments"] == ["GBP_USD"], "EUR_USD dropped", task)
            await ingester.apply(cmd("add", "XYZ_USD"))  # OANDA refuses it on the reopened stream; others go on
            await wait_for(lambda: "XYZ_USD" in ingester.rejected, "the refusal", task)
            n = ctx.counters.events
            await wait_for(lambda: ctx.counters.events > n + 10, "GBP/USD quotes after the refusal", task)
            await ingester.apply(cmd("add", "GBP_USD"))  # already streaming: no reopen
    harness.flush()
    events = await harness.read([status_topic(i) for i in ("EUR_USD", "GBP_USD")], 2)
    kinds = [(ev.symbol, ev.kind) for _, ev in events if isinstance(ev, Status)]
    assert ("GBP/USD", "subscribed") in kinds and ("EUR/USD", "unsubscribed") in kinds
    assert kinds.count(("GBP/USD", "subscribed")) == 1
    assert ingester.active_instruments == ["GBP_USD"] and ctx.counters.rejected == 1
    assert sim.stats.rejected_instruments == 1  # XYZ_USD refused once, then the stream reopened without it
    assert sim.stats.prices_by_instrument.get("XYZ_USD", 0) == 0
