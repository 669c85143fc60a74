"""``pulse bench``: one throwaway runtime, then every benchmark, each figure printed as it comes.

Order: the baselines first (raw publish ceiling, codec), then the ingesters, whose figures are divided by
the ceiling measured minutes earlier on the same broker. With ``as_json`` the figure lines go to stderr and
stdout gets one JSON document: every figure, every target with pass/fail, and the run's conditions.

Nothing here is a test: a missed target is reported, never raised. A benchmark that cannot produce an honest
figure (the ingester resynced, reconnected or lost messages) raises instead of printing a number.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import alerting, alpaca, binance, ceiling, coinbase, fx, kraken, matching, metrics, repair, web
from bench.harness import Report, bench_runtime, broker_footprint, broker_label, load_average
from pulse.settings import Settings

FULL = {"ceiling_n": 30_000, "ceiling_reps": 3, "codec_n": 100_000, "codec_reps": 5}
QUICK = {"ceiling_n": 8_000, "ceiling_reps": 1, "codec_n": 20_000, "codec_reps": 3}


PARTS = ("ingesters", "consumers", "console")
#: what ``--only`` accepts: the parts, or one consumer alone ("consumers" is both)
CHOICES = (*PARTS, "matching", "alerting")


def run_benchmarks(settings: Settings, *, as_json: bool, quick: bool, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Run everything against one fresh embedded runtime; print figures; return (and with ``as_json`` print)
    the document."""
    sizes = QUICK if quick else FULL
    report = Report(stream=sys.stderr if as_json else sys.stdout)
    began = time.perf_counter()
    meta: dict[str, Any] = {
        "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": load_average(),
        "python": platform.python_version(),
        "codec": settings.pulsar.codec,
        "compression": settings.pulsar.compression,
        "batching_max_publish_delay_ms": settings.pulsar.batching_max_publish_delay_ms,
        "batching_max_messages": settings.pulsar.batching_max_messages,
    }
    report.line(
        f"pulse bench ({'quick' if quick else 'full'}): {meta['cpus']} CPUs, "
        f"1-min load {meta['load_average_1m_at_start']:.2f} "
        f"before starting; codec {meta['codec']}, {meta['compression']}, batching delay "
        f"{meta['batching_max_publish_delay_ms']} ms. Rates are medians; 'CPU cores' is CPU time / wall time."
    )
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pulse-bench-work-") as tmp, bench_runtime(settings) as (s, ep):
        work = Path(tmp)
        meta["broker"] = broker_label(s, ep)
        report.line(f"runtime: {meta['broker']} at {ep.pulsar_url} and PostgreSQL (fresh, on free ports)")

        def step(name: str, fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except Exception as exc:  # one failed benchmark must not hide the others' figures
                errors.append(f"{name}: {exc}")
                report.line(f"!! {name} failed: {exc}")
                traceback.print_exc(file=sys.stderr)
                return None

        report.section("Baselines")
        res = step(
            "ceiling",
            lambda: ceiling.measure_ceiling(
                s, ep.pulsar_url, n=sizes["ceiling_n"], reps=sizes["ceiling_reps"], work=work
            ),
        )
        base = ceiling.report_ceiling(report, res) if res else float("nan")
        codec = step("codec", lambda: ceiling.measure_codec(n=sizes["codec_n"], reps=sizes["codec_reps"]))
        if codec:
            ceiling.report_codec(report, codec)
        if "ingesters" in parts:
            step("kraken", lambda: kraken.run(report, s, ep, ceiling=base, quick=quick, work=work))
            step("binance", lambda: binance.run(report, quick=quick))
            step("coinbase", lambda: coinbase.run(report, quick=quick))
            step("alpaca", lambda: alpaca.run(report, quick=quick))
            step("repair", lambda: repair.run(report, quick=quick))
            step("fx", lambda: fx.run(report, s, ep, ceiling=base, quick=quick, work=work))
            step("metrics", lambda: metrics.run(report, s, quick=quick, work=work))
        if "consumers" in parts or "matching" in parts:
            step("matching", lambda: matching.run(report, s, ep, quick=quick, work=work))
        if "consumers" in parts or "alerting" in parts:
            step("alerting", lambda: alerting.run(report, s, ep, quick=quick))
        if "console" in parts:
            step("console", lambda: web.run(report, s, ep, quick=quick, work=work))
        meta["broker_process"] = broker_footprint(s)
        report.line(
            f"broker process at the end: {meta['broker_process'].get('rss_mb', 'n/a')} MB resident, "
            f"{meta['broker_process'].get('cpu_s', 'n/a')} s CPU in total"
        )
    meta["elapsed_s"] = round(time.perf_counter() - began, 1)
    meta["load_average_1m_at_end"] = load_average()
    meta["errors"] = errors
    report.summary()
    report.line(f"\ndone in {meta['elapsed_s']}s, 1-min load {meta['load_average_1m_at_end']:.2f} at the end"
                + (f" with {len(errors)} error(s)" if errors else ""))  # fmt: skip
    doc = report.document(meta)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()
    return doc
