"""The console's WebSocket fan-out against a bare aiohttp broadcast of the same events, in the same run.

Scenario: 10 instruments, 5,000 events/s in all (half trades, half quotes, ``ts_recv`` = send time), and 1, 100
and 1,000 WebSocket clients, client i subscribed to instrument i mod 10 (trade + quote: 500 events/s each, so
the demand is clients x 500 events/s). Three processes: the publisher (to pulsar-lite, as an ingester would),
``pulse web`` (one reader per topic, the hub, the clients' outboxes) and the clients (aiohttp, one process).
Figures per client count: events delivered per second in the measured window, latency from ``ts_recv`` to
receipt (so the gateway's figure includes the broker hop, publisher -> broker -> gateway), and the server's
CPU (CPU time / wall time of its process). Baseline, measured in the same run with the same clients: a bare
aiohttp server (``bench.web_proc baseline``) generating the same events at the same pace and sending each one
to its subscribers with ``await ws.send_str`` — no broker, no conflation, no bounds. Targets: 1,000 clients with
p99 < 50 ms, and a delivery rate of at least 0.5 of the bare broadcast's.

Both servers and the clients share this machine's 2 cores with the broker: where the clients cannot keep up,
both servers are held back by the same client process, which is why the ratio is the comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import Child, Report, fmt_num, fmt_rate, ratio, run_child
from pulse.runtime import Endpoints
from pulse.runtime.procs import free_port
from pulse.settings import Settings

RATE = 5000
INSTRUMENTS = [f"BENCH{i}/USD" for i in range(10)]


def _register(ep: Endpoints) -> None:
    from control_plane.registry import Registry
    from control_plane.symbols import plan_instrument

    with Registry(ep.database_url) as reg:
        for sym in INSTRUMENTS:
            reg.upsert(plan_instrument("kraken", sym, ["trade", "ticker"])[1])


def _clients(url: str, pid: int, n: int, quick: bool, work: Path, tag: str) -> dict[str, Any]:
    cfg = {"url": url, "server_pid": pid, "clients": n, "instruments": INSTRUMENTS,
           "warmup_s": 2 if quick else 3, "window_s": 4 if quick else 8}  # fmt: skip
    return run_child("bench.web_proc", cfg, log=work / f"web-clients-{tag}-{n}.log", timeout=300)


def run(report: Report, s: Settings, ep: Endpoints, *, quick: bool, work: Path) -> dict[str, Any]:
    report.section("Console: WebSocket fan-out (pulse web) vs a bare aiohttp broadcast")
    _register(ep)
    counts = (1, 100, 1000)
    out: dict[str, Any] = {"rate": RATE, "instruments": len(INSTRUMENTS), "gateway": {}, "baseline": {}}
    pub_cfg = {"home": str(s.home), "pulsar_url": ep.pulsar_url, "instruments": INSTRUMENTS, "rate": RATE}
    port = free_port()
    with Child("cli", ["--home", str(s.home), "web", "--port", str(port)], log=work / "web-gateway.log",
               port=port) as gw, Child("bench.web_proc", ["publish", json.dumps(pub_cfg)],
                                       log=work / "web-publisher.log"):  # fmt: skip
        for n in counts:
            out["gateway"][n] = _clients(f"ws://127.0.0.1:{port}/ws", gw.pid, n, quick, work, "gateway")
    bport = free_port()
    base_cfg = {"port": bport, "instruments": INSTRUMENTS, "rate": RATE}
    with Child("bench.web_proc", ["baseline", json.dumps(base_cfg)], log=work / "web-baseline.log") as base:
        for n in counts:
            out["baseline"][n] = _clients(f"ws://127.0.0.1:{bport}/ws", base.pid, n, quick, work, "baseline")
    for n in counts:
        g, b = out["gateway"][n], out["baseline"][n]
        r = ratio(g["rate"], b["rate"])
        out[f"ratio_{n}"] = r
        report.add(
            f"web_fanout_{n}",
            {"gateway": g, "baseline": b, "ratio": r},
            f"  {n:>5} clients (demand {fmt_rate(n * RATE / len(INSTRUMENTS))} events/s): gateway "
            f"{fmt_rate(g['rate'])}/s p50 {fmt_num(g['latency']['p50_ms'])} ms p99 {fmt_num(g['latency']['p99_ms'])} "
            f"ms, {fmt_num(g['server_cores'])} cores, {g['closed_during']} closed | bare broadcast "
            f"{fmt_rate(b['rate'])}/s p50 {fmt_num(b['latency']['p50_ms'])} ms p99 "
            f"{fmt_num(b['latency']['p99_ms'])} ms, {fmt_num(b['server_cores'])} cores | ratio {fmt_num(r)} "
            f"(client process {fmt_num(g['client_cores'])} / {fmt_num(b['client_cores'])} cores)",
        )
    g1000 = out["gateway"][1000]
    report.target("console: 1,000 clients, p99 ts_recv -> client", g1000["latency"]["p99_ms"], "<", 50, " ms")
    report.target("console: 1,000 clients, delivery rate vs bare broadcast", out["ratio_1000"], ">=", 0.5)
    return out
