"""FX: the Dukascopy backfill (decode, and decode → publish end to end) and the OANDA streaming ingester.

Dukascopy
    *decode only* — :func:`~ingesters.dukascopy.bi5.decode_ticks` + :func:`~ingesters.dukascopy.bi5.to_quotes` over
    the real hour files in ``../shared/data/dukascopy/EURUSD/2019/01/04/`` (LZMA, records, exact Decimals, Quote
    events), in this process.
    *end to end* — ``pulse simulate dukascopy`` (its own process) serves those files, copied into every hour of
    a range of weekdays; a child process runs :func:`~ingesters.dukascopy.service.run_backfill` as ``pulse backfill
    dukascopy`` does: download (8 concurrent), decode, publish (however ``run_backfill`` packs ticks into broker
    messages; the figure line says how many per message), flush and wait for every ack per hour, checkpoint.
    Ticks/s from call to return, after a warm-up backfill; fresh checkpoints per run.

OANDA
    :mod:`bench.oanda_venue` (its own process) replays price lines recorded from the local OANDA venue over the
    real chunked-NDJSON protocol; ``OandaIngester`` + ``EventPublisher(Bus(…), "fx")`` in another process, as
    ``pulse ingest oanda`` builds them; prices/s from the warm-up marker to the last broker ack.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench.harness import (
    REPO,
    Child,
    Report,
    broker_pid,
    fmt_rate,
    fmt_runs,
    median,
    ratio,
    run_child,
)
from ingesters.dukascopy.bi5 import decode_ticks, seq_base, to_quote_ticks, to_quotes
from ingesters.dukascopy.instruments import lookup
from ingesters.dukascopy.service import BATCH_TICKS
from pulse.codec import Codec
from pulse.models import QuoteBatch
from pulse.runtime import Endpoints
from pulse.runtime.procs import free_port
from pulse.settings import Settings

DUKASCOPY_DIR = REPO.parent / "shared" / "data" / "dukascopy" / "EURUSD" / "2019" / "01" / "04"
#: The files' own hour: month directories are zero-based, so ``2019/01/04`` is 4 February 2019 (a Monday).
DUKASCOPY_DAY = datetime(2019, 2, 4, tzinfo=UTC)
TARGET_DUKASCOPY_TICKS_PER_S = 200_000
TARGET_OANDA_PRICES_PER_S = 20_000


@dataclass(frozen=True)
class Sizes:
    decode_passes: int  # passes over the 4 files per decode-only repetition
    backfill_hours: int
    reps: int
    oanda_lines: int  # per connection (a fast ingester reads them all; a slow one stops at measure_s)
    oanda_warmup: int
    oanda_record: int  # distinct lines recorded from the simulator, cycled
    measure_s: float


FULL = Sizes(
    decode_passes=10, backfill_hours=48, reps=3, oanda_lines=200_000, oanda_warmup=8_000, oanda_record=20_000,
    measure_s=6.0,
)  # fmt: skip
QUICK = Sizes(
    decode_passes=3, backfill_hours=8, reps=1, oanda_lines=60_000, oanda_warmup=3_000, oanda_record=8_000,
    measure_s=2.5,
)  # fmt: skip


def run(report: Report, settings: Settings, ep: Endpoints, *, ceiling: float, quick: bool, work: Path) -> None:
    size = QUICK if quick else FULL
    report.section("Dukascopy: .bi5 hour files → Quotes → broker")
    files = sorted(DUKASCOPY_DIR.glob("*h_ticks.bi5"))
    if not files:
        report.note(f"skipped: no tick files in {DUKASCOPY_DIR}")
    else:
        _decode_only(report, files, size)
        _backfill(report, settings, ep, files, size=size, ceiling=ceiling, work=work)
    report.section("OANDA: replay venue process → OandaIngester process → broker")
    _oanda(report, settings, ep, size=size, ceiling=ceiling, work=work)


# -- Dukascopy ------------------------------------------------------------------------------------------------


def _decode_only(report: Report, files: list[Path], size: Sizes) -> None:
    inst = lookup("EURUSD")
    blobs = [(f.read_bytes(), DUKASCOPY_DAY.replace(hour=int(f.name[:2]))) for f in files]
    codec = Codec("json")

    def one_pass(mode: str) -> int:
        n = 0
        for data, hour in blobs:
            ns = int(hour.timestamp()) * 1_000_000_000
            records = decode_ticks(data, hour_start_ns=ns, divisor=inst.divisor, symbol=inst.code)
            if mode == "quotes":  # one Quote event per tick (the per-tick publish path)
                n += len(to_quotes(
                    records, symbol=inst.symbol, first_seq=seq_base(ns), volume_multiplier=inst.volume_multiplier
                ))  # fmt: skip
                continue
            ticks = to_quote_ticks(records, first_seq=seq_base(ns), volume_multiplier=inst.volume_multiplier)
            if mode == "encode":  # + the QuoteBatch messages the backfill publishes, JSON-encoded
                for i in range(0, len(ticks), BATCH_TICKS):
                    part = ticks[i : i + BATCH_TICKS]
                    codec.encode(QuoteBatch(venue="dukascopy", symbol=inst.symbol, ts_event=part[0].ts_event,
                                            ts_recv=ns, seq=part[0].seq, ticks=tuple(part)))  # fmt: skip
            n += len(ticks)
        return n

    figures = {}
    for mode in ("decode", "quotes", "encode"):
        one_pass(mode)  # warm-up (also fills the decoders' memos, as a long backfill would)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            ticks = sum(one_pass(mode) for _ in range(size.decode_passes))
            runs.append(ticks / (time.perf_counter() - t0))
        figures[mode] = (median(runs), runs, ticks)
    rate, runs, ticks = figures["decode"]
    report.add(
        "dukascopy_decode_ticks_per_s",
        rate,
        f"dukascopy decode only (LZMA + records + exact Decimals + QuoteBatch ticks, the backfill's path), "
        f"{len(files)} real hour files, {ticks:,} ticks per run: {fmt_rate(rate)} ticks/s  "
        f"(median; runs {fmt_runs(runs)})",
    )
    rate, runs, _ = figures["quotes"]
    report.line(f"dukascopy decode into one Quote event per tick instead: {fmt_rate(rate)} ticks/s  "
                f"(median; runs {fmt_runs(runs)})")  # fmt: skip
    rate, runs, _ = figures["encode"]
    report.add(
        "dukascopy_decode_encode_ticks_per_s",
        rate,
        f"dukascopy decode + JSON-encoded QuoteBatches of {BATCH_TICKS}: {fmt_rate(rate)} ticks/s  "
        f"(median; runs {fmt_runs(runs)})",
    )


def _datafeed_root(work: Path, files: list[Path], hours: int) -> Path:
    """Every hour from :data:`DUKASCOPY_DAY` on, a copy of one of the real files (hour mod their count).

    Copies, not symlinks: the simulator refuses paths that resolve outside its root."""
    root = work / "datafeed"
    for h in range(hours):
        t = DUKASCOPY_DAY.timestamp() + h * 3600
        when = datetime.fromtimestamp(t, UTC)
        d = root / "EURUSD" / f"{when.year:04d}" / f"{when.month - 1:02d}" / f"{when.day:02d}"
        d.mkdir(parents=True, exist_ok=True)
        target = d / f"{when.hour:02d}h_ticks.bi5"
        if not target.exists():
            shutil.copyfile(files[h % len(files)], target)
    return root


def _backfill(
    report: Report, settings: Settings, ep: Endpoints, files: list[Path], *, size: Sizes, ceiling: float, work: Path
) -> None:
    warmup_hours = 2
    root = _datafeed_root(work, files, max(size.backfill_hours, warmup_hours))
    port = free_port()
    sim_args = ["--home", str(settings.home), "simulate", "dukascopy", "--root", str(root), "--port", str(port)]
    with Child("cli", sim_args, log=work / "dukascopy-sim.log", port=port) as sim:
        cfg = {
            "mode": "backfill",
            "settings": msgspec.to_builtins(settings),
            "pulsar_url": ep.pulsar_url,
            "url": f"http://127.0.0.1:{port}/datafeed",
            "feed": "bi5",  # the .bi5 hour files served above (the JSON API is the backfill's default feed)
            "symbol": "EURUSD",
            "start": DUKASCOPY_DAY.isoformat(),
            "hours": size.backfill_hours,
            "warmup_hours": warmup_hours,
            "reps": size.reps,
            "max_total_s": size.measure_s * 3,
            "work": str(work / "checkpoints"),
            "pids": {"broker": broker_pid(settings), "simulator": sim.pid},
        }
        # A/B in the same run: QuoteBatch messages (the shipped form) and one Quote per message (what a
        # schema-mapping reader such as Pulsar IO's JDBC sink needs), batched by the producer either way
        res = run_child("bench.ingest_proc", cfg, log=work / "dukascopy-backfill.log", timeout=600)
        per_tick = run_child(
            "bench.ingest_proc", {**cfg, "batch_ticks": 1, "work": str(work / "checkpoints-per-tick")},
            log=work / "dukascopy-backfill-per-tick.log", timeout=900,
        )  # fmt: skip
    runs = res["runs"]
    bad = [r for r in runs if not r["ok"] or not r["ticks"] or r["acked"] != r["ticks"]]
    if bad:
        raise RuntimeError(f"dukascopy backfill runs failed or were not fully acknowledged: {bad}")
    rates = [r["ticks_per_s"] for r in runs]
    rate = median(rates)
    share = ratio(rate, ceiling)
    r0 = runs[0]
    cores = ", ".join(f"{k} {v:.2f}" for k, v in r0["cpu_cores"].items())
    per_msg = r0["ticks"] / max(r0["messages"], 1)
    report.add(
        "dukascopy_backfill_ticks_per_s",
        rate,
        f"dukascopy end to end (run_backfill: HTTP from the local datafeed, decode, publish, per-hour flush + ack "
        f"check, checkpoint), {r0['hours']} hours = {r0['ticks']:,} ticks in {r0['messages']:,} broker messages "
        f"({per_msg:,.0f} ticks/message) per run: {fmt_rate(rate)} ticks/s  (median; runs {fmt_runs(rates)}) = "
        f"{share:.2f}x the raw ceiling's msgs/s; CPU cores: {cores}",
    )
    report.add("dukascopy_backfill_ceiling_share", share, f"dukascopy backfill ticks/s ÷ ceiling msgs/s: {share:.2f}")
    report.target("dukascopy backfill ticks/s", rate, ">=", TARGET_DUKASCOPY_TICKS_PER_S, " ticks/s")
    one = per_tick["runs"]
    bad = [r for r in one if not r["ok"] or not r["ticks"] or r["acked"] != r["ticks"]]
    if bad:
        raise RuntimeError(f"dukascopy one-Quote-per-message backfill runs failed or were not all acked: {bad}")
    rates1 = [r["ticks_per_s"] for r in one]
    rate1 = median(rates1)
    cores1 = ", ".join(f"{k} {v:.2f}" for k, v in one[0]["cpu_cores"].items())
    report.add(
        "dukascopy_backfill_per_tick_ticks_per_s",
        rate1,
        f"dukascopy end to end, one Quote per message instead ({one[0]['messages']:,} broker messages per run): "
        f"{fmt_rate(rate1)} ticks/s  (median; runs {fmt_runs(rates1)}) = {ratio(rate1, rate):.2f}x the QuoteBatch "
        f"form; CPU cores: {cores1}",
    )
    report.add("dukascopy_backfill_per_tick_ratio", ratio(rate1, rate), "one-Quote-per-message ÷ QuoteBatch ticks/s")


# -- OANDA ----------------------------------------------------------------------------------------------------


def _oanda(report: Report, settings: Settings, ep: Endpoints, *, size: Sizes, ceiling: float, work: Path) -> None:
    args = ["--lines", str(size.oanda_lines), "--warmup-lines", str(size.oanda_warmup)]
    args += ["--record", str(size.oanda_record)]
    runs: list[dict[str, Any]] = []
    null_runs: list[float] = []
    with Child("bench.oanda_venue", args, log=work / "oanda-venue.log") as venue:
        v = venue.info
        report.line(
            f"  corpus: {v['lines']:,} PRICE lines ({v['bytes_per_line']:.0f} B, 2-3 level ladders) for "
            f"{len(v['instruments'])} instruments, cycled from {v['recorded']:,} recorded from the local OANDA venue "
            f"in {v['record_s']}s before timing; warm-up {v['warmup_lines']:,} lines"
        )
        s = settings.with_overrides(oanda={"account_id": v["account_id"]})
        base_cfg = {
            "mode": "oanda",
            "settings": msgspec.to_builtins(s),
            "pulsar_url": ep.pulsar_url,
            "home": str(settings.home),
            "url": v["url"],
            "instruments": v["instruments"],
            "token": v["token"],
            "timeout_s": 120,
            "max_measure_s": size.measure_s,
            "pids": {"venue": venue.pid, "broker": broker_pid(settings)},
        }
        for i in range(size.reps):  # interleaved with the null-publisher runs
            res = run_child("bench.ingest_proc", base_cfg, log=work / f"oanda-ingest-{i}.log", timeout=180)
            _check_oanda(res, f"oanda run {i + 1}")
            runs.append(res)
            cores = ", ".join(f"{k} {c:.2f}" for k, c in res["cpu_cores"].items())
            report.line(
                f"  run {i + 1}: {res['events']:,} prices in {res['elapsed_s']:.2f}s (reading took "
                f"{res['read_s']:.2f}s); CPU cores: {cores}"
            )
            cfg = {**base_cfg, "publisher": "null"}
            res = run_child("bench.ingest_proc", cfg, log=work / f"oanda-ingest-null-{i}.log", timeout=180)
            _check_oanda(res, f"oanda null-publisher run {i + 1}")
            null_runs.append(res["events_per_s"])
    rates = [r["events_per_s"] for r in runs]
    rate = median(rates)
    share = ratio(rate, ceiling)
    report.add(
        "oanda_prices_per_s",
        rate,
        f"oanda     prices/s, first measured line → last Quote acked: {fmt_rate(rate)}  (median; runs "
        f"{fmt_runs(rates)}) = {share:.0%} of the raw ceiling",
    )
    report.add("oanda_ceiling_share", share, f"oanda     prices/s ÷ ceiling msgs/s: {share:.2f}")
    null_rate = median(null_runs)
    report.add(
        "oanda_without_broker_prices_per_s",
        null_rate,
        f"oanda     the same ingester process with a null publisher (HTTP + parse + encode, no Pulsar client): "
        f"{fmt_rate(null_rate)} prices/s  (median; runs {fmt_runs(null_runs)})",
    )
    report.target("oanda prices/s", rate, ">=", TARGET_OANDA_PRICES_PER_S, " prices/s")


def _check_oanda(res: dict[str, Any], what: str) -> None:
    if not res.get("ok"):
        raise RuntimeError(f"{what}: {res.get('error')}")
    ing = res["ingester"]
    bad = {k: ing[k] for k in ("parse_errors", "reconnects", "publish_failed") if ing.get(k)}
    if bad:
        raise RuntimeError(f"{what}: the ingester reported {bad}")
