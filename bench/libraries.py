"""What adopting structlog or Alembic would cost, measured beside what Pulse uses now, in one run.

    uv run --with alembic --with structlog python -m bench.libraries [--rounds 7] [--json]

(neither library is a dependency: ``--with`` lays them over the project's environment for this run only).

Import cost: each case is imported in a fresh interpreter (``python -c``, bytecode cached as in a deployment: a
first round writes the caches and is not counted), the cases interleaved round by round so
a machine that slows down slows every case alike; the time is taken inside the interpreter around the imports
(interpreter start-up excluded) and reported as the median and the minimum over the rounds, with the extra time
over the case it would replace. ``pulse --version`` (a whole command: start-up, click, settings not loaded) is
timed the same way from outside as the scale of a command's own cost.

Logging cost: one structured line (the same event, five fields, an ISO-8601 UTC timestamp) rendered ``LINES``
times to a null stream by ``pulse.log`` and by structlog (``TimeStamper(fmt="iso", utc=True)`` and its
``KeyValueRenderer``), alternately in one process; lines per second and the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: (name, what it would replace, the imports)
IMPORT_CASES: list[tuple[str, str, str]] = [
    ("pulse.log (now)", "", "import pulse.log"),
    ("structlog", "pulse.log (now)", "import pulse.log, structlog; structlog.configure()"),
    ("sink migrations (now)", "", "import sinks.postgres.migrations"),
    (
        "sink migrations + alembic",
        "sink migrations (now)",
        "import sinks.postgres.migrations, alembic.command, alembic.config, alembic.script, "
        "alembic.runtime.migration, alembic.runtime.environment, alembic.operations",
    ),
]
LINES = 20_000


#: bytecode is cached (a first, uncounted round writes it), as in an installed deployment: with
#: PYTHONDONTWRITEBYTECODE every import would compile its sources again and the figures measure the compiler
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _import_time(code: str) -> float:
    prog = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", prog], cwd=REPO, capture_output=True, text=True, check=True, env=ENV)
    return float(out.stdout.strip())


def _command_time(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, check=True, env=ENV)
    return time.perf_counter() - t


def imports(rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name, _, _ in IMPORT_CASES}
    samples["pulse --version (whole command)"] = []
    for r in range(rounds + 1):  # round 0 writes the bytecode caches and is not counted
        for name, _, code in IMPORT_CASES:
            t = _import_time(code)
            if r:
                samples[name].append(t)
        t = _command_time(["--version"])
        if r:
            samples["pulse --version (whole command)"].append(t)
    out: dict[str, Any] = {}
    for name, values in samples.items():
        out[name] = {"median_ms": round(statistics.median(values) * 1000, 1), "min_ms": round(min(values) * 1000, 1)}
    for name, base, _ in IMPORT_CASES:
        if base:
            out[name]["extra_ms"] = round(out[name]["median_ms"] - out[base]["median_ms"], 1)
            out[name]["ratio"] = round(out[name]["median_ms"] / out[base]["median_ms"], 2)
    return out


def logging_rate(rounds: int) -> dict[str, Any]:
    import logging

    import structlog

    from pulse.log import get_logger, setup_logging

    sink = io.StringIO()
    setup_logging("INFO", "text", stream=sink)
    ours = get_logger("bench.libraries")
    theirs = structlog.wrap_logger(
        structlog.PrintLogger(file=sink),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
    )
    fields = {"venue": "kraken", "symbol": "BTC/USD", "attempt": 3, "retry_in_s": 1.25, "error": "HTTP 503"}

    def run(log: Any) -> float:
        sink.seek(0)
        sink.truncate()
        t = time.perf_counter()
        for _ in range(LINES):
            log.info("venue unavailable, retrying", **fields)
        return LINES / (time.perf_counter() - t)

    rates: dict[str, list[float]] = {"pulse.log": [], "structlog": []}
    for _ in range(rounds):
        rates["pulse.log"].append(run(ours))
        rates["structlog"].append(run(theirs))
    logging.getLogger().handlers.clear()
    ours_rate, theirs_rate = statistics.median(rates["pulse.log"]), statistics.median(rates["structlog"])
    return {
        "pulse.log_lines_per_s": round(ours_rate),
        "structlog_lines_per_s": round(theirs_rate),
        "structlog_vs_pulse_log": round(theirs_rate / ours_rate, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    doc = {"imports": imports(args.rounds), "logging": logging_rate(args.rounds), "rounds": args.rounds}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for name, v in doc["imports"].items():
        extra = f"  +{v['extra_ms']} ms ({v['ratio']}x)" if "extra_ms" in v else ""
        print(f"{name:<34} median {v['median_ms']:>7} ms  min {v['min_ms']:>7} ms{extra}")
    lg = doc["logging"]
    print(f"pulse.log {lg['pulse.log_lines_per_s']:,} lines/s, structlog {lg['structlog_lines_per_s']:,} lines/s "
          f"({lg['structlog_vs_pulse_log']}x)")  # fmt: skip


if __name__ == "__main__":
    main()
