"""Instructions per operation of the in-process engines, counted by valgrind (callgrind), not timed.

``python -m bench.instructions matching|alerting [--from N1] [--to N2]`` runs the engine's bench workload
(``bench.matching.order_stream``; ``bench.alerting``'s 1,000 rules over 100 instruments and its tick stream)
under ``valgrind --tool=callgrind`` twice, for the first N1 and the first N2 operations, with the same setup
both times, and prints (I(N2) - I(N1)) / (N2 - N1): the instructions one operation costs, setup excluded.
``PYTHONHASHSEED=0`` keeps dict and set layouts (and so the count) the same from run to run. A wall-clock-free
figure for comparing two versions of an engine on a busy machine: run it in both trees.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STREAM = {"matching": 20_000, "alerting": 40_000}


def _run(what: str, n: int) -> None:
    """The workload: build everything for STREAM[what] operations, then run the first ``n``."""
    if what == "matching":
        from bench.matching import SPEC, order_stream
        from consumers.matching.engine import MatchingEngine
        from consumers.matching.messages import command_decoder, encode

        ops = [command_decoder.decode(encode(op)) for op in order_stream(STREAM[what])]
        engine = MatchingEngine([SPEC])
        for op in ops[:n]:
            engine.on_order(op)
    else:
        from bench.alerting import build_rules, make_events, realistic_cooldowns, symbols
        from consumers.alerting.engine import AlertEngine

        syms = symbols()
        events = make_events(syms, STREAM[what])
        on_event = AlertEngine(realistic_cooldowns(build_rules(syms))).on_event
        for ev in events[:n]:
            on_event(ev)


def count(what: str, n: int) -> int:
    """Instructions of the whole process running the first ``n`` operations (callgrind's total)."""
    res = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m", "bench.instructions",
         "--run", what, str(n)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True,
    )  # fmt: skip
    m = re.search(r"Collected : (\d+)", res.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {res.stderr[-500:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=sorted(STREAM))
    ap.add_argument("--from", dest="n1", type=int)
    ap.add_argument("--to", dest="n2", type=int)
    ap.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("n", nargs="?", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run:
        _run(a.what, a.n)
        return
    n1 = a.n1 or STREAM[a.what] // 4
    n2 = a.n2 or STREAM[a.what] * 3 // 4
    i1, i2 = count(a.what, n1), count(a.what, n2)
    print(f"{a.what}: {(i2 - i1) / (n2 - n1):,.1f} instructions per operation (ops {n1:,}..{n2:,})")


if __name__ == "__main__":
    main()
