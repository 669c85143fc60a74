"""Alpaca: the parser (stream arrays → events) beside Kraken's in the same run, and the market calendar's cost.

Parser: the corpus is what the local venue sends, generated without a server from the simulator's market
(:class:`ingesters.alpaca.simulator._Market`): one array per market step with a trade and a quote of one symbol,
and every 100 steps an array of minute bars for the four symbols. Each pass starts a fresh :class:`AlpacaParser`
and times ``feed`` over every frame (str frames, as the WebSocket client hands them over); the median of 3 passes
after a warm-up. The Kraken figure is :func:`bench.kraken.parse_only` run right before it.

Calendar: fresh interpreters, each measured by wall time (median of 3): ``python -c pass`` (the baseline),
importing exchange-calendars and building the XNYS calendar for three years (what a process without the cache
pays), importing Pulse's calendar module alone, and that plus answering ``is_open`` from the cached session table
(what every process pays after the first).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import kraken
from bench.harness import Report, fmt_rate, median, ratio
from ingesters.alpaca.parser import AlpacaParser
from ingesters.alpaca.simulator import _EXCHANGES, _Market, dumps

SYMBOLS = ("AAPL", "TSLA", "SPY", "BRK.B")
_BAR_EVERY = 100


def corpus(frames: int, seed: int = 1) -> list[str]:
    import random

    markets = [_Market(s, Decimal("100.00") + i, random.Random(f"{seed}:{s}")) for i, s in enumerate(SYMBOLS)]
    out: list[str] = []
    ns = 1_700_000_000_000_000_000
    step = 0
    while len(out) < frames:
        m = markets[step % len(markets)]
        step += 1
        ns += 1_234_567
        trade, quote, _ = m.step(_EXCHANGES["sip"], ns)
        out.append(dumps([trade, quote]).decode())
        if step % _BAR_EVERY == 0:
            bars = [b for b in (mk.close_bar(ns - 60_000_000_000) for mk in markets) if b is not None]
            out.append(dumps(bars).decode())
    return out[:frames]


def parse_only(*, quick: bool) -> dict[str, float]:
    frames = corpus(8_000 if quick else 20_000)
    runs = []
    for _ in range(4):  # the first pass is the warm-up
        parser = AlpacaParser()
        events = bad = 0
        t0 = time.perf_counter()
        for f in frames:
            out = parser.feed(f)
            events += len(out.events)
            bad += len(out.bad)
        runs.append((time.perf_counter() - t0, events))
        if bad:
            raise RuntimeError(f"alpaca parse-only: {bad} messages refused")
    elapsed = median([r[0] for r in runs[1:]])
    return {"frames": len(frames), "frames_per_s": len(frames) / elapsed, "events_per_s": runs[-1][1] / elapsed}


_LIBRARY = """
import exchange_calendars as xc, warnings
warnings.simplefilter("ignore")
xc.get_calendar("XNYS", start="2025-01-01", end="2027-12-31").schedule
"""
_CACHED = """
from datetime import UTC, datetime
from pathlib import Path
from ingesters.alpaca.calendar import UsEquityCalendar
cal = UsEquityCalendar("regular", cache_path=Path({path!r}))
cal.is_open(datetime(2026, 6, 1, 15, tzinfo=UTC))
assert cal.library_loads == 0
"""


def _wall(code: str, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return median(times)


def calendar_cost() -> dict[str, float]:
    from datetime import UTC, datetime

    from ingesters.alpaca.calendar import UsEquityCalendar

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "xnys.json"
        UsEquityCalendar("regular", cache_path=path).preload(datetime(2026, 6, 1, tzinfo=UTC))
        base = _wall("pass")
        lib = _wall(_LIBRARY)
        module = _wall("import ingesters.alpaca.calendar")
        cached = _wall(_CACHED.format(path=str(path)))
    return {"python_s": base, "library_s": lib, "module_s": module, "cached_s": cached}


def run(report: Report, *, quick: bool) -> dict[str, Any]:
    report.section("Alpaca: parser alone, beside Kraken's (same run); the NYSE calendar's cost")
    k = kraken.parse_only(quick=quick)
    a = parse_only(quick=quick)
    report.add("alpaca_kraken_parse_baseline_events_per_s", k["events_per_s"],
               f"kraken    parser alone (baseline, this run): {fmt_rate(k['frames_per_s'])} frames/s, "
               f"{fmt_rate(k['events_per_s'])} events/s")  # fmt: skip
    report.add("alpaca_parse_only_events_per_s", a["events_per_s"],
               f"alpaca    parser alone (AlpacaParser.feed over {a['frames']:,} stream arrays of trades, quotes and "
               f"bars): {fmt_rate(a['frames_per_s'])} frames/s, {fmt_rate(a['events_per_s'])} events/s")  # fmt: skip
    share = ratio(a["events_per_s"], k["events_per_s"])
    report.add(
        "alpaca_vs_kraken_parse_ratio", share, f"alpaca    events/s ÷ kraken events/s (parser alone): {share:.2f}"
    )
    c = calendar_cost()
    report.add("alpaca_calendar_library_s", c["library_s"],
               f"calendar  fresh process, wall: python alone {c['python_s']:.2f} s (baseline); importing "
               f"exchange-calendars and building XNYS {c['library_s']:.2f} s; importing Pulse's calendar module "
               f"{c['module_s']:.2f} s, and is_open from the cached table {c['cached_s']:.2f} s")  # fmt: skip
    report.results["alpaca_calendar_cached_s"] = c["cached_s"]
    report.results["alpaca_calendar_python_s"] = c["python_s"]
    report.results["alpaca_calendar_module_s"] = c["module_s"]
    return {"kraken": k, "alpaca": a, "ratio": share, "calendar": c}
