"""SIGKILL and restart of each consumer and of the gateway while the chain runs (see tests/faults/chain.py).

What the sink stores is compared with the venue's tape as in every case (a consumer's death must not touch it);
the time to recover is until the restarted consumer applies live market data again (its own counters, read
from its /metrics, and /readyz 200), or until a client of the restarted gateway gets a live trade.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.sync.client import connect

from pulse.runtime.procs import free_port
from pulse.settings import Settings
from tests.faults.chain import Chain, Daemon, chain, metric, scrape, wait_for
from tests.procs import pulse

pytestmark = pytest.mark.timeout(420)


def consuming_again(c: Chain, name: str, family: str, since: float) -> float:
    port = c.daemons[name].metrics_port
    assert port is not None

    def ready() -> bool:
        status, text = scrape(port)
        return status == 200 and metric(text, family) > 0 and scrape(port, "/readyz")[0] == 200

    wait_for(ready, f"the restarted {name} to consume live data", timeout=180, every=0.25)
    return time.monotonic() - since


def test_matching_sigkill_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    with chain(fault_runtime, tmp_path, "kill matching") as c:
        inst = f"kraken:{c.symbols[0]}:0.01:0.00000001:crypto"  # the venue's precisions for these pairs
        c.add("matching", "consumers", "matching", "run", "--instrument", inst, "--name", f"fm-{c.tag}",
              metrics=True)  # fmt: skip
        consuming_again(c, "matching", "pulse_matching_market_events", time.monotonic())
        c.kill("matching")
        t0 = time.monotonic()
        c.spawn("matching")
        rec = consuming_again(c, "matching", "pulse_matching_market_events", t0)
        out = c.finish(rec, note="until it applies live trades")
    assert (out.lost, out.duplicates, out.extra, out.gaps) == (0, 0, 0, 0), out


def test_alerting_sigkill_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    with chain(fault_runtime, tmp_path, "kill alerting") as c:
        res = pulse(fault_runtime, "alerts", "add", "price-cross", "--symbol", f"kraken:{c.symbols[0]}",
                    "--price", "last", "--above", "1000000000", "--json")  # fmt: skip
        assert res.returncode == 0, res.stderr
        rule = json.loads(res.stdout)["id"]
        try:
            c.add("alerting", "consumers", "alerting", "run", "--name", f"fa-{c.tag}", metrics=True)
            consuming_again(c, "alerting", "pulse_alerting_ticks", time.monotonic())
            c.kill("alerting")
            t0 = time.monotonic()
            c.spawn("alerting")
            rec = consuming_again(c, "alerting", "pulse_alerting_ticks", t0)
            out = c.finish(rec, note="until it evaluates live ticks")
        finally:
            pulse(fault_runtime, "alerts", "remove", str(rule))
    assert (out.lost, out.duplicates, out.extra, out.gaps) == (0, 0, 0, 0), out


@contextmanager
def registered(settings: Settings, symbols: list[str]) -> Iterator[None]:
    res = pulse(settings, "symbols", "add", "kraken", *symbols, "--channels", "trade")
    assert res.returncode == 0, res.stderr
    try:
        yield
    finally:
        pulse(settings, "symbols", "remove", "kraken", *symbols)


def live_trade(port: int, symbol: str, tape: set[str], wait_s: float) -> bool:
    """Connect to the gateway, subscribe to ``symbol``'s trades and wait for one whose id is in ``tape``."""
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
            ws.send(json.dumps({"op": "subscribe", "venue": "kraken", "symbol": symbol, "channels": ["trade"]}))
            end = time.monotonic() + wait_s
            while time.monotonic() < end:
                msg = json.loads(ws.recv(timeout=max(0.1, end - time.monotonic())))
                if msg.get("type") == "trade" and msg.get("trade_id") in tape:
                    return True
    except (OSError, TimeoutError, ValueError):
        return False
    except Exception as exc:  # websockets' ConnectionClosed and handshake errors: not up yet
        if type(exc).__module__.startswith("websockets"):
            return False
        raise
    return False


def test_gateway_sigkill_and_restart(fault_runtime: Settings, tmp_path: Path) -> None:
    with chain(fault_runtime, tmp_path, "kill gateway") as c, registered(fault_runtime, c.symbols):
        port = free_port()
        c.add("web", "web", "--port", str(port), env={"PULSE_WEB__TOKEN": "fault-suite-token-0123456789"})
        sym = c.symbols[0]
        wait_for(lambda: live_trade(port, sym, {i for s, i in c.tape if s == sym}, 5), "the gateway's live trades")
        c.kill("web")
        mark, t0 = c.mark(), time.monotonic()
        c.spawn("web")

        def fresh() -> bool:
            return live_trade(port, sym, {i for s, i in c.tape[mark:] if s == sym}, 5)

        wait_for(fresh, "a live trade from the restarted gateway", timeout=180, diagnose=lambda: c.tail("web"))
        out = c.finish(time.monotonic() - t0, note="until a client gets a live trade")
    assert (out.lost, out.duplicates, out.extra, out.gaps) == (0, 0, 0, 0), out


def test_alerting_with_every_rule_removed_stays_alive_and_ready(fault_runtime: Settings, tmp_path: Path) -> None:
    # Its loop waited for the next rule without a heartbeat: /healthz and /readyz said 503 once stall_after_s
    # passed, and systemd's watchdog would have restarted a service that was only waiting.
    s = fault_runtime
    add = ("alerts", "add", "price-cross", "--symbol", "kraken:RR/USD", "--price", "last", "--above", "1e9", "--json")
    res = pulse(s, *add)
    assert res.returncode == 0, res.stderr
    rule = json.loads(res.stdout)["id"]
    port = free_port()
    env = {"PULSE_METRICS__STALL_AFTER_S": "2", "PULSE_ALERTING__RULES_POLL_S": "0.5"}
    c = Chain(s, tmp_path, "alerting without rules")
    c.daemons["alerting"] = Daemon("alerting", ("consumers", "alerting", "run", "--name", f"fr-{c.tag}",
                                                "--metrics-port", str(port)), env)  # fmt: skip
    c.spawn("alerting")
    try:
        wait_for(lambda: scrape(port, "/readyz")[0] == 200, "alerting to be ready", timeout=120)
        assert pulse(s, "alerts", "remove", str(rule)).returncode == 0
        wait_for(lambda: "waiting" in scrape(port, "/readyz")[1], "alerting to wait for a rule", timeout=60)
        answers = []
        for _ in range(12):  # 6 s: three times stall_after_s
            answers.append((scrape(port, "/healthz")[0], scrape(port, "/readyz")[0]))
            time.sleep(0.5)
        assert set(answers) == {(200, 200)}, answers
        res = pulse(s, *add)  # and a new rule brings it back to work
        rule = json.loads(res.stdout)["id"]
        wait_for(lambda: (r := scrape(port, "/readyz"))[0] == 200 and "waiting" not in r[1], "rules again", 60)
    finally:
        pulse(s, "alerts", "remove", str(rule))
        assert c.terminate("alerting") == 0, c.tail("alerting")
