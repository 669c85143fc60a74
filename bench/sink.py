"""Sink throughput and latency: raw binary COPY (the ceiling) vs the sink from broker to committed rows.

``run(settings, endpoints, quick=...)`` returns a dict (``bench/run.py`` prints it):

- ``copy_ceiling_rows_s``: N pre-built trade rows, binary ``COPY`` straight into ``trades`` (batches of the
  sink's batch size, one transaction each, no staging, no conflict check) — what PostgreSQL + psycopg take.
- ``writer_rows_s``: the same rows through :class:`CopyWriter` (no duplicates: its optimistic direct COPY);
  ``writer_staging_rows_s``: through its staging path (COPY into staging + ``INSERT … ON CONFLICT``), what a
  batch holding a duplicate costs and what every batch cost before the direct COPY.
- ``decode_map_us``: decode + map one message in Python (no broker, no database).
- ``sink_rows_s``: N trades published first (JSON, 8 topics in ``historical``), then a fresh
  :class:`PostgresSink` drains them; timed from its first received message to the last commit. ``ratio`` =
  sink / ceiling. ``receive_us``/``ack_us``: per-message cost of ``batch_receive`` and ``acknowledge`` alone.
- ``batched``: the historical path as ``pulse backfill dukascopy`` publishes it — 2N quotes as
  :class:`~pulse.models.QuoteBatch` messages of ``ticks_per_message`` (8 instruments, ``quote`` topics in
  ``historical``) — against the raw COPY ceiling of the same ``quotes`` rows: ``copy_ceiling_rows_s``,
  ``decode_map_us_per_row``, ``sink_rows_s``, ``ratio_vs_copy`` (and ``ratio_vs_trades_copy``, against the
  trades ceiling above); ceiling and sink are measured back to back, BATCHED_REPS times (medians, and each
  run's ratio in ``runs``). The per-message figures above stay as they are: live namespaces keep one event per
  message.
- ``paced``: a child process publishes at 10,000 events/s for a few seconds; latency is publish (the event's
  ``ts_recv``, set at send) → the commit that stored it, per message: p50/p99/max ms.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from decimal import Decimal
from typing import Any

import msgspec
import psycopg

from bench.harness import REPO, child_env, median, percentile
from pulse.bus import Bus, EventPublisher
from pulse.models import Quote, QuoteBatch, Trade
from pulse.runtime import Endpoints
from pulse.settings import Settings
from pulse.topics import topic

TARGET_ROWS_S = 150_000
PACED_RATE = 10_000
TICKS_PER_MESSAGE = 1_000  # as ingesters.dukascopy.service.BATCH_TICKS
BATCHED_REPS = 3
SYMBOLS = ("AAA/USD", "BBB/USD", "CCC/USD", "DDD/USD", "EEE/USD", "FFF/USD", "GGG/USD", "HHH/USD")


def _trade(prefix: str, i: int, ts_recv: int | None = None) -> Trade:
    ts = 1_700_000_000_000_000_000 + i * 1_000
    return Trade(
        venue=prefix,
        symbol=SYMBOLS[i % len(SYMBOLS)],
        ts_event=ts,
        ts_recv=ts_recv if ts_recv is not None else ts + 500,
        seq=i,
        price=Decimal("45283.5") + Decimal(i % 1000) / 100,
        size=Decimal("0.00123400"),
        side="buy" if i % 2 else "sell",
        trade_id=str(i),
    )


def _quotes(prefix: str, n: int) -> list[Quote]:
    """``n`` quotes over the 8 SYMBOLS, instrument by instrument (as a backfill publishes an hour of one)."""
    per = n // len(SYMBOLS)
    out = []
    for k, sym in enumerate(SYMBOLS):
        ts_recv = 1_700_000_000_000_000_000 + 10**12
        for i in range(per):
            ts = 1_700_000_000_000_000_000 + i * 1_000
            out.append(
                Quote(venue=prefix, symbol=sym, ts_event=ts, ts_recv=ts_recv, seq=k * per + i,
                      bid=Decimal("1.14543") + Decimal(i % 100) / 100_000, bid_size=Decimal("2060000"),
                      ask=Decimal("1.14545") + Decimal(i % 100) / 100_000, ask_size=Decimal("1000000"))
            )  # fmt: skip
    return out


def _copy_ceiling(url: str, rows: list[tuple], batch: int, table: str = "trades") -> float:
    from sinks.postgres.schema import COLUMNS

    cols = ", ".join(COLUMNS[table])
    with psycopg.connect(url) as conn:
        oids = dict(
            conn.execute(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0", (table,)
            ).fetchall()
        )
        types = [oids[c] for c in COLUMNS[table]]
        t0 = time.perf_counter()
        for k in range(0, len(rows), batch):
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(types)
                for r in rows[k : k + batch]:
                    cp.write_row(r)
            conn.commit()
        return len(rows) / (time.perf_counter() - t0)


def _writer_rate(url: str, rows: list[tuple], batch: int, *, direct: bool = True, warm: tuple) -> float:
    from sinks.postgres.writer import CopyWriter

    with CopyWriter(url, direct=direct) as w:
        w.write({"trades": [warm]})  # connect + prepare outside the timing (a row of its own: no duplicate)
        t0 = time.perf_counter()
        for k in range(0, len(rows), batch):
            w.write({"trades": rows[k : k + batch]})
        return len(rows) / (time.perf_counter() - t0)


def _decode_map_us(payloads: list[bytes]) -> float:
    from sinks.postgres.mapping import to_row
    from sinks.postgres.sources import decode_payload

    t0 = time.perf_counter()
    for p in payloads:
        to_row(decode_payload(p))
    return (time.perf_counter() - t0) / len(payloads) * 1e6


def _decode_map_batched_us(payloads: list[bytes], rows: int) -> float:
    """Decode + map QuoteBatch messages, per row."""
    from sinks.postgres.mapping import to_rows
    from sinks.postgres.sources import decode_payload

    t0 = time.perf_counter()
    for p in payloads:
        to_rows(decode_payload(p))
    return (time.perf_counter() - t0) / rows * 1e6


def _publish(settings: Settings, ep: Endpoints, events: list[Trade] | list[QuoteBatch]) -> None:
    bus = Bus(settings, ep.pulsar_url)
    try:
        pub = EventPublisher(bus, "historical", producer_prefix="bench-sink")
        for e in events:
            pub.publish(e)
        pub.flush()
        while pub.stats.pending:
            time.sleep(0.05)
    finally:
        bus.close()


def _topics(settings: Settings, venue: str, channel: str = "trade") -> list[str]:
    return [topic("historical", venue, s, channel, settings.pulsar.tenant) for s in SYMBOLS]


def _receive_ack_us(settings: Settings, ep: Endpoints, venue: str, n: int, batch: int) -> tuple[float, float]:
    """Per-message cost of batch_receive and of acknowledge, over the already-published topics."""
    bus = Bus(settings, ep.pulsar_url)
    try:
        c = bus.subscribe(
            _topics(settings, venue), f"bench-recv-{venue}", receiver_queue_size=2 * batch, batch_receive=(batch, 200)
        )
        got, t_recv, t_ack = 0, 0.0, 0.0
        while got < n:
            t0 = time.perf_counter()
            msgs = list(c.batch_receive())
            t1 = time.perf_counter()
            for m in msgs:
                m.data()
                c.acknowledge(m)
            t_ack += time.perf_counter() - t1
            t_recv += t1 - t0
            got += len(msgs)
            if not msgs:
                break
        c.close()
        return t_recv / max(got, 1) * 1e6, t_ack / max(got, 1) * 1e6
    finally:
        bus.close()


class _Timed:
    """Runs a PostgresSink in a thread, recording publish→commit latency per message (from ts_recv)."""

    def __init__(
        self, settings: Settings, ep: Endpoints, venue: str, batch: int, latency_ms: int, channel: str = "trade"
    ) -> None:
        from sinks.postgres.config import default_config
        from sinks.postgres.service import PostgresSink

        topics = _topics(settings, venue, channel)
        cfg = default_config(settings, topics)
        cfg = msgspec.structs.replace(cfg, subscription=f"bench-{venue}", batch_size=batch, max_latency_ms=latency_ms)
        latencies: list[float] = []
        self.latencies = latencies
        self.first_receive: float | None = None

        class Sink(PostgresSink):
            def _committed(s, group, counts):  # type: ignore[no-untyped-def]
                now = time.time_ns()
                latencies.extend((now - row[4]) / 1e6 for it in group for row in it.rows)
                super()._committed(group, counts)

        self.sink = Sink(settings, ep, topics, config=cfg, name=f"bench-sink-{venue}")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sink.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> _Timed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def wait_stored(self, n: int, timeout: float) -> float:
        """Seconds from the first received message to ``n`` rows stored."""
        end = time.monotonic() + timeout
        st = self.sink.stats
        while st.received == 0 and time.monotonic() < end:
            time.sleep(0.001)
        t0 = time.perf_counter()
        while sum(st.stored.values()) < n:
            if time.monotonic() > end:
                raise RuntimeError(f"sink stored {sum(st.stored.values())}/{n} within {timeout}s: {st.as_dict()}")
            time.sleep(0.002)
        return time.perf_counter() - t0


def _paced_child(cfg: dict[str, Any]) -> None:
    """``python -m bench.sink``: publish cfg['n'] trades at cfg['rate']/s, ts_recv = send time."""
    from pulse.settings import load_settings

    settings = load_settings(environ={})
    settings = settings.with_overrides(pulsar={"batching_max_publish_delay_ms": 1})
    bus = Bus(settings, cfg["url"])
    pub = EventPublisher(bus, "historical", producer_prefix="bench-paced")
    start = time.perf_counter()
    for i in range(cfg["n"]):
        due = start + i / cfg["rate"]
        if (d := due - time.perf_counter()) > 0:
            time.sleep(d)
        pub.publish(_trade(cfg["venue"], i, ts_recv=time.time_ns()))
    pub.flush()
    bus.close()


def run(settings: Settings, endpoints: Endpoints, *, quick: bool) -> dict[str, Any]:
    from pulse.codec import Codec
    from sinks.postgres.mapping import to_row
    from sinks.postgres.schema import ensure_schema

    n = 60_000 if quick else 300_000
    batch = 10_000
    url = endpoints.database_url
    mode = ensure_schema(url)
    out: dict[str, Any] = {"n": n, "batch_size": batch, "mode": mode}

    rows = [to_row(_trade("ceil", i))[1] for i in range(n)]  # type: ignore[index]
    out["copy_ceiling_rows_s"] = round(_copy_ceiling(url, rows, batch))
    rows = [to_row(_trade("wrtr", i))[1] for i in range(n)]  # type: ignore[index]
    out["writer_rows_s"] = round(_writer_rate(url, rows, batch, warm=to_row(_trade("wrtr", n))[1]))  # type: ignore[index]
    rows = [to_row(_trade("wstg", i))[1] for i in range(n)]  # type: ignore[index]
    warm = to_row(_trade("wstg", n))[1]  # type: ignore[index]
    out["writer_staging_rows_s"] = round(_writer_rate(url, rows, batch, direct=False, warm=warm))
    codec = Codec("json")
    out["decode_map_us"] = round(_decode_map_us([codec.encode(_trade("x", i)) for i in range(20_000)]), 2)

    venue = f"e{int(time.time()) % 100000}"
    _publish(settings, endpoints, [_trade(venue, i) for i in range(n)])
    recv_us, ack_us = _receive_ack_us(settings, endpoints, venue, n, batch)
    out["receive_us"], out["ack_us"] = round(recv_us, 2), round(ack_us, 2)
    with _Timed(settings, endpoints, venue, batch, 200) as timed:
        secs = timed.wait_stored(n, timeout=max(120, n / 1_000))
    out["sink_rows_s"] = round(n / secs)
    out["ratio_vs_copy"] = round(out["sink_rows_s"] / out["copy_ceiling_rows_s"], 3)
    out["target_rows_s"] = TARGET_ROWS_S
    out["meets_target"] = out["sink_rows_s"] >= TARGET_ROWS_S and out["ratio_vs_copy"] >= 0.5

    print(f"per-message: {out}", file=sys.stderr)
    out["batched"] = _batched(settings, endpoints, 2 * n, batch, out["copy_ceiling_rows_s"])
    print(f"batched: {out['batched']}", file=sys.stderr)

    try:
        out["paced"] = _paced(settings, endpoints, quick)
    except Exception as exc:  # keep the throughput figures when the paced child fails
        out["paced"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return out


def _paced(settings: Settings, endpoints: Endpoints, quick: bool) -> dict[str, Any]:
    pvenue = f"p{int(time.time()) % 100000}"
    pn = PACED_RATE * (3 if quick else 10)
    with _Timed(settings, endpoints, pvenue, 5000, 100) as timed:
        time.sleep(1.0)  # subscribed before the first send
        proc = subprocess.run(
            [sys.executable, "-m", "bench.sink"],
            input=json.dumps({"url": endpoints.pulsar_url, "venue": pvenue, "n": pn, "rate": PACED_RATE}).encode(),
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"paced publisher failed: {proc.stderr.decode()[-2000:]}")
        timed.wait_stored(pn, timeout=60)
        lat = timed.latencies
    return {
        "rate": PACED_RATE,
        "n": pn,
        "p50_ms": round(percentile(lat, 50), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "max_ms": round(max(lat), 1),
        "meets_target": percentile(lat, 99) < 1000,
    }


def _batched(settings: Settings, endpoints: Endpoints, n: int, batch: int, trades_ceiling: float) -> dict[str, Any]:
    """The historical path: QuoteBatch messages of TICKS_PER_MESSAGE quotes → sink, vs raw COPY into quotes.

    ``reps`` times, each a ceiling run immediately followed by a sink run over the same number of rows, so that
    both see the same machine (2 shared cores: other work skews any single figure); medians and per-run ratios.
    """
    from pulse.codec import Codec
    from sinks.postgres.mapping import to_row

    url = endpoints.database_url
    reps = BATCHED_REPS
    res: dict[str, Any] = {"ticks_per_message": TICKS_PER_MESSAGE, "n": n, "reps": reps}
    sample = list(QuoteBatch.chunks(_quotes("x", 80_000), TICKS_PER_MESSAGE))
    codec = Codec("json")
    res["decode_map_us_per_row"] = round(_decode_map_batched_us([codec.encode(b) for b in sample], 80_000), 2)
    ceilings, sinks, ratios = [], [], []
    for rep in range(reps):
        rows = [to_row(q)[1] for q in _quotes(f"qc{rep}{int(time.time()) % 10000}", n)]  # type: ignore[index]
        ceilings.append(_copy_ceiling(url, rows, batch, "quotes"))
        del rows
        venue = f"b{rep}{int(time.time()) % 10000}"
        batches = list(QuoteBatch.chunks(_quotes(venue, n), TICKS_PER_MESSAGE))
        res["messages"] = len(batches)
        # interleave the instruments' batches, as concurrent backfills would
        per = len(batches) // len(SYMBOLS)
        batches = [batches[k * per + i] for i in range(per) for k in range(len(SYMBOLS))] + batches[
            per * len(SYMBOLS) :
        ]
        _publish(settings, endpoints, batches)
        del batches
        with _Timed(settings, endpoints, venue, batch, 200, channel="quote_batch") as timed:  # QuoteBatch topics
            sinks.append(n / timed.wait_stored(n, timeout=120))
        ratios.append(sinks[-1] / ceilings[-1])
    res["copy_ceiling_rows_s"] = round(median(ceilings))
    res["sink_rows_s"] = round(median(sinks))
    res["ratio_vs_copy"] = round(median(ratios), 3)
    res["runs"] = [
        {"ceiling": round(c), "sink": round(k), "ratio": round(r, 3)}
        for c, k, r in zip(ceilings, sinks, ratios, strict=True)
    ]
    res["ratio_vs_trades_copy"] = round(res["sink_rows_s"] / trades_ceiling, 3)
    res["meets_ratio"] = res["ratio_vs_copy"] >= 0.5
    res["meets_target"] = res["sink_rows_s"] >= TARGET_ROWS_S and res["meets_ratio"]
    return res


def standalone() -> None:
    """``python -c 'import bench.sink as b; b.standalone()'``: every sink figure on a fresh runtime."""
    from bench.harness import bench_runtime
    from pulse.settings import load_settings

    quick = "--quick" in sys.argv
    with bench_runtime(load_settings(environ={})) as (s, ep):
        print(json.dumps(run(s, ep, quick=quick), indent=2))


if __name__ == "__main__":
    _paced_child(json.loads(sys.stdin.read()))
